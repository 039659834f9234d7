#!/usr/bin/env bash
# In-kernel cost of the HTTP/2 frame walk (benchmark, not a test). Run as root.
#
#   probes/bench/h2-walk-cost.sh BIN_BEFORE BIN_AFTER [PAIRS]
#
# Alternates two perisco binaries (e.g. two commits' builds), PAIRS times (default 4): each
# run starts the agent (ebpf_socket → parse → match → file) on an nghttpd port, drives
# `h2load -n 20000 -c 10 -m 10` over a 54 KB file and a 16-byte page — every response
# write is a multi-frame transfer whose DATA mostly lies past `max_capture_bytes` — and
# prints the average ns per run of each socket program (kernel.bpf_stats_enabled) and the
# records written. Needs nghttpd, h2load and bpftool (scripts/setup.d/10-ebpf.sh).
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/pipeline.sh"
[ $# -ge 2 ] || { sed -n 2,11p "$0"; exit 2; }
before=$1 after=$2 pairs=${3:-4}
for c in nghttpd h2load bpftool; do
  command -v "$c" >/dev/null || { echo "needs $c" >&2; exit 1; }
done
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
mkdir "$dir/www"
head -c 40000 /dev/urandom | base64 >"$dir/www/big.txt"
echo '<html>hi</html>' >"$dir/www/index.html"
port=$(free_port)
api=$(free_port)
nghttpd --no-tls -d "$dir/www" "$port" >/dev/null 2>&1 &
write_pipeline "$dir/pipeline.toml" "type = \"ebpf_socket\"
ports = [$port]" "$dir/out.jsonl" "$api"
sysctl -q kernel.bpf_stats_enabled=1

run() { # BIN LABEL
  rm -f "$dir/out.jsonl"
  "$1" --config "$dir/pipeline.toml" >"$dir/agent.log" 2>&1 &
  local agent=$!
  for _ in $(seq 1 120); do grep -q "frame walk" "$dir/agent.log" && break; sleep 0.5; done
  h2load -n 20000 -c 10 -m 10 "http://127.0.0.1:$port/big.txt" "http://127.0.0.1:$port/index.html" \
    >"$dir/h2load.log" 2>&1
  local progs
  progs=$(bpftool -j prog show | python3 -c '
import json, sys
rows = [p for p in json.load(sys.stdin)
        if p.get("run_cnt", 0) > 1000 and p.get("name", "").startswith(("tp_", "rtp_"))]
print(" ".join("%s=%.0fns/%d" % (p["name"], p["run_time_ns"] / p["run_cnt"], p["run_cnt"]) for p in rows))')
  kill -INT "$agent"; wait "$agent" || true
  echo "$2 $progs records=$(wc -l <"$dir/out.jsonl") $(grep -o '[0-9]* succeeded' "$dir/h2load.log")"
}
for _ in $(seq 1 "$pairs"); do
  run "$before" before
  run "$after" after
done
