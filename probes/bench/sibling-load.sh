#!/usr/bin/env bash
# What any CPU work on the other vCPU costs nginx (benchmark, not a test): nginx alone on
# CPU 0, h2load on CPU 1 at a steady RATE, with and without a busy loop pinned to CPU 1.
# No perisco, no probe. On a VM whose vCPUs share a physical core (or its caches), nginx's
# CPU per request rises with its neighbour's load; the full-load ratio of ebpf-overhead.sh
# pays that for perisco's userspace work on top of the probe's own cost.
#
#   ROUNDS=3 RATE=10000 probes/bench/sibling-load.sh
set -euo pipefail
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-10000}
CONNS=32
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/probes/bench/pipeline.sh"
WORK=$(mktemp -d)
PORT=$(free_port)
write_nginx "$WORK" "$PORT"
taskset -c 0 nginx -c "$WORK/nginx.conf" &
NGINX=$!
BUSY=
cleanup() { kill $NGINX ${BUSY:-} 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
sleep 1
echo "round,cpu1_busy_loop,req_per_s,nginx_cpu_us_per_req"
for r in $(seq 1 "$ROUNDS"); do
  for busy in no yes; do
    if [[ $busy == yes ]]; then
      taskset -c 1 sh -c 'while :; do :; done' &
      BUSY=$!
    fi
    n0=$(cpu_ticks "$NGINX")
    rps=$(taskset -c 1 h2load --h1 -c$CONNS --rps=$((RATE / CONNS)) -D10 "http://127.0.0.1:$PORT/index.html" |
      awk '/^finished in/ {print $4}')
    n1=$(cpu_ticks "$NGINX")
    if [[ -n $BUSY ]]; then kill "$BUSY"; wait "$BUSY" 2>/dev/null || true; BUSY=; fi
    echo "$r,$busy,$rps,$(python3 -c "print(round(($n1 - $n0) / $(getconf CLK_TCK) * 1e6 / ($rps * 10), 2))")"
  done
done
