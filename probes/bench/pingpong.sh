#!/usr/bin/env bash
# What capture costs the traced processes per exchange (benchmark, not a test). Run as
# root. A loopback TCP ping-pong (probes/bench/pingpong.c: one connection, a ~90-byte
# request, a ~150-byte response, blocking read/write) reports the CPU µs per exchange of
# the server process (accepted socket: what perisco captures by default) and the client,
# in alternating rounds:
#   off       no perisco
#   on        perisco running ebpf_socket → parse → match → file, capturing the exchange
#   filtered  perisco attached with a ports filter that matches nothing: the cost of the
#             hooks alone, for traffic nobody wants
# for each hook family in HOOKS.
#
#   PERISCO_BIN (default target/release/perisco)  ROUNDS=3  N=200000 exchanges per round
#   HOOKS="tracepoint syscall_tracepoint"
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/probes/bench/pipeline.sh"
BIN=$(perisco_bin "$ROOT")
ROUNDS=${ROUNDS:-3}
N=${N:-200000}
HOOKS=${HOOKS:-tracepoint syscall_tracepoint}
WORK=$(mktemp -d)
cleanup() { [[ -n "${CAP:-}" ]] && kill "$CAP" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
gcc -O2 -o "$WORK/pingpong" "$ROOT/probes/bench/pingpong.c"
API=$(free_port)

round() { # $1 = off | on | filtered, $2 = hook; prints one CSV line
  local port ports cap_us="" t0 t1 out
  port=$(free_port); ports=$port; [[ $1 == filtered ]] && ports=1
  if [[ $1 != off ]]; then
    start_pipeline "$BIN" "$WORK" "$API" "hook = \"$2\"
ports = [$ports]"
    t0=$(cpu_ticks "$CAP")
  fi
  out=$("$WORK/pingpong" "$port" "$N")
  if [[ $1 != off ]]; then
    t1=$(cpu_ticks "$CAP")
    cap_us=$(python3 -c "print(round(($t1 - $t0) / $(getconf CLK_TCK) * 1e6 / $N, 2))")
    kill -TERM "$CAP"; wait "$CAP" || true; CAP=
  fi
  # "N rt/s  server S us/rt  client C us/rt"
  read -r rate _ _ server _ _ client _ <<<"$out"
  echo "$2,$1,$rate,$server,$client,$cap_us"
}

echo "hook,kind,exchanges_per_s,server_cpu_us,client_cpu_us,perisco_cpu_us"
for _ in $(seq 1 "$ROUNDS"); do
  for hook in $HOOKS; do
    for kind in off on filtered; do round "$kind" "$hook"; done
  done
done
