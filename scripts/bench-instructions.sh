#!/usr/bin/env bash
# Instructions per exchange of the whole perisco binary on pcap -> parse -> match -> file,
# counted by callgrind: a deterministic figure where CPU time on a shared VM is not.
#
#   scripts/bench-instructions.sh                     # builds perisco (release)
#   PERISCO_BIN=/path/to/perisco scripts/bench-instructions.sh
#   WORK=/tmp/bi scripts/bench-instructions.sh          # captures in WORK are used again
#   THREADS=1 WORK=/tmp/bi PERISCO_BIN=... scripts/bench-instructions.sh
#       to compare two binaries: the same input, and one worker thread, so batching does
#       not vary with scheduling (±60 instructions between runs instead of ±300)
#
# Captures h2load -> nginx (sendfile off) on loopback twice, SMALL and LARGE exchanges, runs
# perisco under callgrind on each capture, and divides the difference in instructions by the
# difference in exchanges, so start-up and shutdown cancel out. Needs nginx, h2load,
# dumpcap and valgrind (as root for the capture). A benchmark, not a test.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SMALL=${SMALL:-2000}
LARGE=${LARGE:-6000}
WORK=${WORK:-$(mktemp -d /tmp/bench-instructions.XXXXXX)}
for cmd in nginx h2load dumpcap valgrind callgrind_annotate; do
    command -v "$cmd" >/dev/null || { echo "bench-instructions: $cmd is required" >&2; exit 1; }
done
. "$ROOT/probes/bench/pipeline.sh"
PERISCO_BIN=$(perisco_bin "$ROOT")

PORT=$(free_port)
write_nginx "$WORK" "$PORT"
nginx -c "$WORK/nginx.conf" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null || true' EXIT
sleep 0.5

declare -A IR
for n in "$SMALL" "$LARGE"; do
    if [[ ! -s $WORK/cap$n.pcapng ]]; then
        dumpcap -q -i lo -f "tcp port $PORT" -w "$WORK/cap$n.pcapng" 2>/dev/null &
        D=$!
        sleep 1
        h2load --h1 -n "$n" -c 20 "http://127.0.0.1:$PORT/index.html" | grep -E '^requests'
        sleep 1
        kill -INT $D
        wait $D || true
    fi
    write_pipeline "$WORK/p$n.toml" "type = \"pcap\"
path = \"$WORK/cap$n.pcapng\"" "$WORK/records$n.jsonl"
    rm -f "$WORK/records$n.jsonl" # the file sink appends
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg$n.out" \
        "$PERISCO_BIN" --config "$WORK/p$n.toml" --threads "${THREADS:-2}" >/dev/null 2>"$WORK/valgrind$n.log"
    records=$(wc -l <"$WORK/records$n.jsonl")
    [[ $records -eq $n ]] || { echo "bench-instructions: $records records for $n exchanges" >&2; exit 1; }
    IR[$n]=$(grep -E '^(summary|totals):' "$WORK/cg$n.out" | head -1 | awk '{print $2}')
    echo "$n exchanges: ${IR[$n]} instructions"
done
echo "instructions per exchange: $(( (IR[$LARGE] - IR[$SMALL]) / (LARGE - SMALL) ))"
echo "per function: callgrind_annotate --inclusive=yes $WORK/cg$LARGE.out"
