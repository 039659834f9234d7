#!/usr/bin/env bash
# Run every cargo-fuzz target of the workspace for SECONDS each (default 20).
# A crash fails the script, prints the end of the run's log (the panic and the input in
# base64) and leaves the reproducer under <crate>/fuzz/artifacts; the whole log of each
# run is kept in target/fuzz-logs. All fuzz crates share one target dir so their common
# dependencies build once.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
secs="${1:-20}"
logs="$root/target/fuzz-logs"
mkdir -p "$logs"
found=0
failed=()
for dir in */fuzz */*/fuzz; do
  [ -f "$dir/Cargo.toml" ] || continue
  crate=$(dirname "$dir")
  for target in $(cd "$crate" && cargo +nightly fuzz list); do
    found=1
    log="$logs/${crate//\//_}-$target.log"
    echo "-- fuzz $crate:$target for ${secs}s (log: $log)"
    if (cd "$crate" && cargo +nightly fuzz run --target-dir "$root/target/fuzz" "$target" -- \
      -max_total_time="$secs" -rss_limit_mb=2048) >"$log" 2>&1; then
      grep -E '^Done [0-9]+ runs' "$log" || tail -n 1 "$log"
    else
      echo "!! fuzz $crate:$target failed; the end of its log:"
      tail -n 120 "$log"
      failed+=("$crate:$target")
    fi
  done
done
[ "$found" = 1 ] || echo "no fuzz targets found"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets that failed: ${failed[*]}" >&2
  exit 1
fi
