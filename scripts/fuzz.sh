#!/usr/bin/env bash
# Run every cargo-fuzz target of the workspace for SECONDS each (default 20).
# A crash fails the script and leaves the reproducer under <crate>/fuzz/artifacts.
# All fuzz crates share one target dir so their common dependencies build once.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
secs="${1:-20}"
found=0
for dir in */fuzz */*/fuzz; do
  [ -f "$dir/Cargo.toml" ] || continue
  crate=$(dirname "$dir")
  for target in $(cd "$crate" && cargo +nightly fuzz list); do
    found=1
    echo "-- fuzz $crate:$target for ${secs}s"
    (cd "$crate" && cargo +nightly fuzz run --target-dir "$root/target/fuzz" "$target" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3)
  done
done
[ "$found" = 1 ] || echo "no fuzz targets found"
