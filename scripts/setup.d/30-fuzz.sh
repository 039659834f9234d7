#!/usr/bin/env bash
# cargo-fuzz for the fuzz targets (transforms/h2/fuzz and others); runs on the image's nightly.
# Idempotent and instant when present.
set -euo pipefail
if ! command -v cargo-fuzz >/dev/null 2>&1 && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz" ]]; then
  cargo install cargo-fuzz --locked
fi
