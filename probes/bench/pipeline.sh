# Sourced by the bench scripts (probes/bench/*.sh, scripts/bench-*.sh) and scripts/interop/run.sh: the pipeline
# they measure, SOURCE → parse → match → file, and the helpers around it.

# free_port: a TCP port free on 127.0.0.1 right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_ticks PID: user + system clock ticks the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# perisco_bin ROOT: $PERISCO_BIN when set, else the release binary, built (a no-op when
# fresh) into $CARGO_TARGET_DIR (default ROOT/target).
perisco_bin() {
  if [[ -n ${PERISCO_BIN:-} ]]; then
    echo "$PERISCO_BIN"
    return
  fi
  local target=${CARGO_TARGET_DIR:-$1/target}
  echo "building perisco (release, $target)..." >&2
  (cd "$1" && CARGO_TARGET_DIR=$target cargo build -q --release -p perisco) >&2
  echo "$target/release/perisco"
}

# write_nginx WORK PORT: WORK/nginx.conf for the benchmarks' server — nginx, one worker,
# sendfile off, keep-alive, serving a 601-byte WORK/www/index.html on 127.0.0.1:PORT.
write_nginx() {
  mkdir -p "$1/www" "$1/tmp"
  printf '%s\n' "$(head -c 600 /dev/zero | tr '\0' 'x')" >"$1/www/index.html"
  cat >"$1/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; error_log $1/error.log; pid $1/nginx.pid;
events { worker_connections 1024; }
http { access_log off; sendfile off; keepalive_requests 1000000;
  client_body_temp_path $1/tmp; proxy_temp_path $1/tmp; fastcgi_temp_path $1/tmp;
  uwsgi_temp_path $1/tmp; scgi_temp_path $1/tmp;
  server { listen 127.0.0.1:$2; root $1/www; } }
CONF
}

# write_pipeline FILE "source table keys" RECORDS [API_PORT]: the pipeline config, source
# `capture` → parse → match → file RECORDS, with the API on API_PORT when given.
write_pipeline() {
  {
    [[ -z ${4:-} ]] || printf '[api]\naddress = "127.0.0.1:%s"\n\n' "$4"
    cat <<TOML
[sources.capture]
$2

[transforms.l7]
type = "parse"
inputs = ["capture"]

[transforms.pairs]
type = "match"
inputs = ["l7"]

[sinks.out]
type = "file"
inputs = ["pairs"]
path = "$3"
TOML
  } >"$1"
}

# start_pipeline BIN WORK API_PORT "ebpf_socket keys": runs the pipeline on a live capture;
# sets CAP to perisco's pid and returns once the probe is attached.
start_pipeline() {
  write_pipeline "$2/pipeline.toml" "type = \"ebpf_socket\"
$4" "$2/records.jsonl" "$3"
  "$1" --config "$2/pipeline.toml" >/dev/null 2>"$2/perisco.log" & CAP=$!
  until curl -s "http://127.0.0.1:$3/metrics" | grep -q 'perisco_ebpf_attached{component_id="capture"} 1'; do sleep 0.2; done
}
