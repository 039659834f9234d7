#!/usr/bin/env bash
# Set up this machine (idempotent), build perisco in release mode and run it (as root:
# live eBPF capture). Without arguments: the built-in default pipeline (capture every
# server socket -> parse -> match -> JSON lines on stdout, /health and /metrics on
# 127.0.0.1:9598). Arguments are passed on: ./scripts/run.sh --config pipeline.toml
set -euo pipefail
cd "$(dirname "$0")/.."
PERISCO_SETUP=run ./scripts/setup.sh >&2
cargo build --release --bin perisco >&2
exec "${CARGO_TARGET_DIR:-target}/release/perisco" "$@"
