#!/usr/bin/env bash
# cargo-fuzz for the fuzz targets (transforms/h2/fuzz and others); runs on the image's nightly.
# Idempotent and instant when present.
set -euo pipefail
# Test-only step: skipped by ./scripts/run.sh (PERISCO_SETUP=run), which only builds and runs.
[[ "${PERISCO_SETUP:-test}" == run ]] && exit 0
if ! command -v cargo-fuzz >/dev/null 2>&1 && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz" ]]; then
  cargo install cargo-fuzz --locked
fi
