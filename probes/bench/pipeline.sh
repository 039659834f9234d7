# Sourced by the eBPF bench scripts: the perisco pipeline they measure,
# ebpf_socket → parse → match → file.

# start_pipeline BIN WORK API_PORT "ebpf_socket keys"; sets CAP to perisco's pid and returns
# once the probe is attached.
start_pipeline() {
  cat >"$2/pipeline.toml" <<TOML
[api]
address = "127.0.0.1:$3"
[sources.capture]
type = "ebpf_socket"
$4
[transforms.l7]
type = "parse"
inputs = ["capture"]
[transforms.pairs]
type = "match"
inputs = ["l7"]
[sinks.out]
type = "file"
inputs = ["pairs"]
path = "$2/records.jsonl"
TOML
  "$1" --config "$2/pipeline.toml" >/dev/null 2>"$2/perisco.log" & CAP=$!
  until curl -s "http://127.0.0.1:$3/metrics" | grep -q 'perisco_ebpf_attached{component_id="capture"} 1'; do sleep 0.2; done
}
