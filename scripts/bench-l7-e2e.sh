#!/usr/bin/env bash
# End-to-end benchmark: pcap -> parse -> match -> file sink with the perisco release binary,
# side by side with `tshark -r FILE -Y http` on the same capture. A benchmark, not a test.
#
#   scripts/bench-l7-e2e.sh                       # 2000 connections x 100 exchanges
#   CONNECTIONS=5000 EXCHANGES=100 scripts/bench-l7-e2e.sh
#   PERISCO_BIN=/path/to/perisco scripts/bench-l7-e2e.sh   # skip the build
#
# Prints wall and CPU seconds (user + sys, all threads) of each tool, exchanges per second
# and the perisco/tshark ratios. perisco runs a multi-threaded runtime; tshark is single
# threaded: compare CPU seconds as well as wall. Output goes to WORK (default a temp dir).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CONNECTIONS=${CONNECTIONS:-2000}
EXCHANGES=${EXCHANGES:-100}
CONCURRENCY=${CONCURRENCY:-100}
WORK=${WORK:-$(mktemp -d /tmp/bench-l7-e2e.XXXXXX)}
mkdir -p "$WORK"

for cmd in python3 tshark; do
    command -v "$cmd" >/dev/null || { echo "bench-l7-e2e: $cmd is required" >&2; exit 1; }
done

. "$ROOT/probes/bench/pipeline.sh"
PERISCO_BIN=$(perisco_bin "$ROOT")

PCAP=$WORK/http1-e2e.pcap
echo "writing $PCAP ($CONNECTIONS connections x $EXCHANGES exchanges)..." >&2
expected=$(python3 "$ROOT/transforms/l7/benches/gen_pcap.py" --connections "$CONNECTIONS" \
    --exchanges "$EXCHANGES" --concurrency "$CONCURRENCY" --out "$PCAP")
packets=$(( CONNECTIONS * (6 + 3 * EXCHANGES) ))

write_pipeline "$WORK/pipeline.toml" "type = \"pcap\"
path = \"$PCAP\"" "$WORK/records.jsonl"

# Runs "$@" once; sets WALL and CPU (seconds, user + sys of the command and its threads).
measure() {
    local t
    if ! /usr/bin/time -f '%e %U %S' "$@" >/dev/null 2>"$WORK/stderr.txt"; then
        echo "bench-l7-e2e: '$*' failed:" >&2
        cat "$WORK/stderr.txt" >&2
        exit 1
    fi
    # /usr/bin/time prints its line last, after the command's own stderr.
    t=$(tail -n 1 "$WORK/stderr.txt")
    WALL=$(awk '{print $1}' <<<"$t")
    CPU=$(awk '{printf "%.2f", $2 + $3}' <<<"$t")
}

best_of=${RUNS:-3}
run_best() { # name command... -> BEST_WALL BEST_CPU (the run with the least CPU)
    local name=$1
    shift
    BEST_WALL=""
    BEST_CPU=""
    for ((i = 1; i <= best_of; i++)); do
        [[ "$name" != perisco ]] || rm -f "$WORK/records.jsonl"
        measure "$@"
        echo "  $name run $i: wall ${WALL}s, cpu ${CPU}s" >&2
        if [[ -z "$BEST_CPU" ]] || awk -v a="$CPU" -v b="$BEST_CPU" 'BEGIN{exit !(a < b)}'; then
            BEST_WALL=$WALL
            BEST_CPU=$CPU
        fi
    done
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
run_best perisco "$PERISCO_BIN" --config "$WORK/pipeline.toml"
p_wall=$BEST_WALL p_cpu=$BEST_CPU
records=$(wc -l <"$WORK/records.jsonl")
missing=$(grep -c response_missing "$WORK/records.jsonl" || true)

run_best tshark tshark -r "$PCAP" -Y http
t_wall=$BEST_WALL t_cpu=$BEST_CPU
tshark_lines=$(tshark -r "$PCAP" -Y http 2>/dev/null | wc -l)
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

rate() { awk -v n="$1" -v s="$2" 'BEGIN{ if (s > 0) printf "%.0f k", n / s / 1000; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.1fx", a / b; else print "-" }'; }

cat <<EOF

capture: $PCAP ($(du -h "$PCAP" | cut -f1), $packets packets, $expected HTTP/1.1 exchanges)
perisco: $records records ($missing response_missing); tshark -Y http: $tshark_lines packets shown
best of $best_of runs (least CPU):

| tool | wall s | CPU s | exchanges / wall s | exchanges / CPU s |
|---|---|---|---|---|
| perisco (pcap -> parse -> match -> file) | $p_wall | $p_cpu | $(rate "$expected" "$p_wall") | $(rate "$expected" "$p_cpu") |
| tshark -r FILE -Y http | $t_wall | $t_cpu | $(rate "$expected" "$t_wall") | $(rate "$expected" "$t_cpu") |
| perisco / tshark speed | | | $(ratio "$t_wall" "$p_wall") | $(ratio "$t_cpu" "$p_cpu") |
EOF

if [[ "$records" -ne "$expected" ]]; then
    echo "bench-l7-e2e: perisco wrote $records records, expected $expected" >&2
    exit 1
fi
