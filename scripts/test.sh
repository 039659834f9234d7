#!/usr/bin/env bash
# Set up this machine (idempotent) and run perisco's whole test suite: unit and
# integration tests (real servers on loopback, live eBPF as root), short fuzz runs and
# formatting. Missing prerequisites fail the run (PERISCO_REQUIRE_ALL=1) instead of
# being skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"  # no incremental cache: a one-shot build does not reuse it and it costs GBs of disk
export PERISCO_REQUIRE_ALL="${PERISCO_REQUIRE_ALL:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== build"
cargo build --workspace --all-targets

echo "== tests"
cargo nextest run --workspace --no-fail-fast --failure-output final

echo "== fuzz (short runs)"
./scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
echo "== all tests passed"
