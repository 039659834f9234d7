#!/usr/bin/env bash
# Overhead of the ebpf_socket source (benchmark, not a test). Run as root after
# scripts/setup.d/10-ebpf.sh. Alternates rounds without and with capture against nginx
# (sendfile off, one worker) on loopback:
#   max    wrk at full speed: throughput with capture / without (the ratio);
#   steady h2load --rps at a fixed rate (open loop: requests go out on schedule, not
#          after the previous answer): what capture costs the server per request at that
#          rate, and whether the ring drops anything.
# Every round reports nginx's and the load generator's CPU µs per request and how idle the
# machine was; capture rounds also perisco's CPU. With the machine saturated, what the
# with/without ratio loses is the sum of what each of them gains per request.
#
#   MODE=source   (default) the ebpf_socket source into a counting sink
#                 (probes/examples/capture_bench.rs, release build)
#   MODE=pipeline the perisco binary: ebpf_socket → parse → match → file
#                 (PERISCO_BIN, default target/release/perisco)
#   ROUNDS=5 DURATION=10 CONNS=32 RATE=20000 (steady rounds; 0 disables them)
#   HOOK=auto     the source's `hook` (auto, tracepoint, syscall_tracepoint, …)
#   RING_BYTES=16777216  the source's `ring_buffer_bytes`
#   CAPTURE_BYTES=4096   the source's `max_capture_bytes` (what the probe copies per message)
#   PIN=1         nginx alone on SERVER_CPUS (default 0); the load generator and perisco on
#                 AGENT_CPUS (default 1). Models a node where the traced server's cores are
#                 not the agent's: what remains is the in-kernel cost to the server (and to
#                 the load generator, if it becomes the bottleneck). On a machine with SMT,
#                 pick CPU lists on different cores (lscpu -e). Unset: everything floats.
set -euo pipefail
MODE=${MODE:-source}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
RATE=${RATE:-20000}
HOOK=${HOOK:-auto}
RING_BYTES=${RING_BYTES:-16777216}
CAPTURE_BYTES=${CAPTURE_BYTES:-4096}
PIN=${PIN:-}
SERVER_CPUS=${SERVER_CPUS:-0}
AGENT_CPUS=${AGENT_CPUS:-1}
# Command prefixes that pin to the server's / the agent's CPUs when PIN is set (empty otherwise).
CPU0=(); CPU1=()
[[ -z $PIN ]] || { CPU0=(taskset -c "$SERVER_CPUS"); CPU1=(taskset -c "$AGENT_CPUS"); }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
. "$ROOT/probes/bench/pipeline.sh"
WORK=$(mktemp -d)
PORT=$(free_port)
API=$(free_port)
cleanup() { [[ -n "${NGINX:-}" ]] && kill "$NGINX" 2>/dev/null; [[ -n "${CAP:-}" ]] && kill "$CAP" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

if [[ $MODE == source ]]; then
  BENCH_BIN=$TARGET/release/examples/capture_bench
  [[ -x $BENCH_BIN && -n ${NO_BUILD:-} ]] || (cd "$ROOT" && cargo build -q --release -p perisco-probes --example capture_bench)
else
  BENCH_BIN=$(perisco_bin "$ROOT")
fi

write_nginx "$WORK" "$PORT"
"${CPU0[@]}" nginx -c "$WORK/nginx.conf" & NGINX=$!
sleep 1

run_load() { # $1 = max | steady; prints requests/s; the load generator's CPU seconds go to $WORK/loadgen
  local url="http://127.0.0.1:$PORT/index.html"
  local timed=(/usr/bin/time -f '%U %S' -o "$WORK/loadgen.time")
  if [[ $1 == max ]]; then
    "${CPU1[@]}" "${timed[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" | awk '/Requests\/sec/ {print $2}'
  else
    local per_conn; per_conn=$(python3 -c "print(max(1, round($RATE / $CONNS)))")
    "${CPU1[@]}" "${timed[@]}" h2load --h1 -c"$CONNS" --rps="$per_conn" -D"$DURATION" "$url" | awk '/^finished in/ {print $4}'
  fi
  awk '{print $1 + $2}' "$WORK/loadgen.time" >"$WORK/loadgen"
}

# "idle total" jiffies of all CPUs (idle + iowait count as idle).
cpu_jiffies() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t}' /proc/stat; }
# Percent of the machine idle between two cpu_jiffies readings.
idle_pct() { python3 -c "i0,t0,i1,t1=$1,$2,$3,$4; print(round(100*(i1-i0)/max(1,t1-t0),1))"; }

start_capture() {
  if [[ $MODE == source ]]; then
    coproc CAPP { exec "$BENCH_BIN" "ports = [$PORT]
hook = \"$HOOK\"
max_capture_bytes = $CAPTURE_BYTES
ring_buffer_bytes = $RING_BYTES" 2>"$WORK/capture.log"; }
    CAP=$CAPP_PID
    read -r line <&"${CAPP[0]}"   # "attached"
    START_TICKS=$(cpu_ticks "$CAP")
  else
    start_pipeline "$BENCH_BIN" "$WORK" "$API" "hook = \"$HOOK\"
max_capture_bytes = $CAPTURE_BYTES
ring_buffer_bytes = $RING_BYTES
ports = [$PORT]"
    START_TICKS=$(cpu_ticks "$CAP")
  fi
  # Every thread, and those it starts later (they inherit the mask).
  [[ -z $PIN ]] || taskset -a -p -c "$AGENT_CPUS" "$CAP" >/dev/null
}

stop_capture() { # writes "cpu_seconds peak_rss_kib ring_dropped" to $WORK/stop (runs in this shell: it closes the coproc)
  local ticks hwm drops
  # CPU spent after attaching (loading the programs is charged to the process too).
  ticks=$(( $(cpu_ticks "$CAP") - START_TICKS )); hwm=$(awk '/VmHWM/ {print $2}' "/proc/$CAP/status")
  if [[ $MODE == source ]]; then
    eval "exec ${CAPP[1]}>&-"
    local stats; read -r stats <&"${CAPP[0]}"
    wait "$CAP" || true
    drops=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ring_dropped'])" "$stats")
  else
    drops=$(curl -s "http://127.0.0.1:$API/metrics" | awk -F' ' '/^perisco_ebpf_ring_dropped_total/ {print $2}')
    kill -TERM "$CAP"; wait "$CAP" || true
  fi
  CAP=
  echo "$(python3 -c "print($ticks/$(getconf CLK_TCK))") $hwm ${drops:-0}" >"$WORK/stop"
}

echo "mode=$MODE hook=$HOOK pin=${PIN:-no} capture_bytes=$CAPTURE_BYTES rounds=$ROUNDS duration=${DURATION}s conns=$CONNS steady_rate=$RATE nginx=127.0.0.1:$PORT"
echo "round,kind,load,req_per_s,nginx_cpu_us_per_req,capture_cpu_s,cpu_us_per_req,peak_rss_kib,ring_dropped,loadgen_cpu_us_per_req,idle_pct"
us_per_req() { python3 -c "print(round($1 * 1e6 / ($2 * $DURATION), 2))"; }
for r in $(seq 1 "$ROUNDS"); do
  for load in max steady; do
    [[ $load == steady && $RATE == 0 ]] && continue
    read -r i0 t0 < <(cpu_jiffies)
    n0=$(cpu_ticks "$NGINX"); base=$(run_load $load); n1=$(cpu_ticks "$NGINX")
    read -r i1 t1 < <(cpu_jiffies)
    echo "$r,off,$load,$base,$(us_per_req "($n1 - $n0) / $(getconf CLK_TCK)" "$base"),,,,,$(us_per_req "$(cat "$WORK/loadgen")" "$base"),$(idle_pct "$i0" "$t0" "$i1" "$t1")"
    start_capture
    read -r i0 t0 < <(cpu_jiffies)
    n0=$(cpu_ticks "$NGINX"); probed=$(run_load $load); n1=$(cpu_ticks "$NGINX")
    read -r i1 t1 < <(cpu_jiffies)
    stop_capture
    read -r cpu hwm drops <"$WORK/stop"
    echo "$r,on,$load,$probed,$(us_per_req "($n1 - $n0) / $(getconf CLK_TCK)" "$probed"),$cpu,$(us_per_req "$cpu" "$probed"),$hwm,$drops,$(us_per_req "$(cat "$WORK/loadgen")" "$probed"),$(idle_pct "$i0" "$t0" "$i1" "$t1")"
  done
done
