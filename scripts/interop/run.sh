#!/usr/bin/env bash
# Real HTTP/1, h2c and gRPC implementations beyond the test suite, against the perisco
# binary with live eBPF (root): Go net/http, lighttpd, h2o, haproxy (h2 front, HTTP/1 and
# h2 backends), node @grpc/grpc-js, the JDK's HttpClient (h2c by Upgrade), nghttpd server
# push, ApacheBench, a WebSocket upgrade.
# Each client's exchanges are counted, and the records must hold exactly those:
# (method, path, status, server port), every gRPC call with its status and message counts.
# Not part of CI (it installs several servers and an npm package); docs/l7.md lists what it
# covers. Usage:
#
#   scripts/interop/run.sh [PERISCO_BIN]    # default: $PERISCO_BIN, else the release build
#   WORK=/tmp/perisco-interop                # servers' files, logs, records.jsonl
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${WORK:-/tmp/perisco-interop}
. "$root/probes/bench/pipeline.sh"
bin=${1:-}
[ "$(id -u)" = 0 ] || { echo "needs root (eBPF)" >&2; exit 1; }
mkdir -p "$work/www"
cd "$work"

need=()
for c in go:golang-go lighttpd:lighttpd h2o:h2o haproxy:haproxy node:nodejs npm:npm \
  java:openjdk-17-jdk-headless nghttpd:nghttp2-server nghttp:nghttp2-client h2load:nghttp2-client ab:apache2-utils curl:curl; do
  command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
  # Packaged servers start on install; these runs start their own.
  for s in lighttpd h2o haproxy; do service "$s" stop >/dev/null 2>&1 || true; done
fi
[ -d node_modules/@grpc/grpc-js ] || npm install --silent --prefix "$work" @grpc/grpc-js >/dev/null
[ -n "$bin" ] || bin=$(perisco_bin "$root")

GO=$(free_port) LIGHT=$(free_port) H2O=$(free_port) PROXY=$(free_port) BACK=$(free_port)
GRPC=$(free_port) GPROXY=$(free_port) PUSH=$(free_port) WS=$(free_port) API=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; true' EXIT

head -c 40000 /dev/urandom | base64 >www/big.txt
echo '<html>hi</html>' >www/index.html
echo '{"a":1}' >www/a.json
cat >lighttpd.conf <<EOF
server.document-root = "$work/www"
server.port = $LIGHT
server.bind = "127.0.0.1"
server.modules = ()
server.feature-flags = ("server.h2proto" => "enable", "server.h2c" => "enable")
server.errorlog = "$work/lighttpd.err"
mimetype.assign = (".html" => "text/html", ".txt" => "text/plain", ".json" => "application/json")
EOF
cat >h2o.conf <<EOF
listen:
  port: $H2O
  host: 127.0.0.1
hosts:
  default:
    paths:
      /:
        file.dir: $work/www
error-log: $work/h2o.err
EOF
cat >haproxy.cfg <<EOF
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend web
  bind 127.0.0.1:$PROXY proto h2
  default_backend python
backend python
  server p 127.0.0.1:$BACK
frontend grpc
  bind 127.0.0.1:$GPROXY proto h2
  default_backend node
backend node
  server n 127.0.0.1:$GRPC proto h2
EOF
export GOCACHE=$work/gocache GOPATH=$work/gopath GOFLAGS=-mod=mod
go build -o go-server "$here/server.go"
go build -o go-client "$here/client.go"

./go-server "127.0.0.1:$GO" & pids+=($!)
python3 -m http.server "$BACK" --bind 127.0.0.1 --directory www >/dev/null 2>&1 & pids+=($!)
lighttpd -D -f lighttpd.conf & pids+=($!)
h2o -c h2o.conf >/dev/null 2>&1 & pids+=($!)
haproxy -f haproxy.cfg & pids+=($!)
NODE_PATH=$work/node_modules node "$here/grpc.js" serve "$GRPC" & pids+=($!)
nghttpd --no-tls "-p/index.html=/a.json,/big.txt" -d www "$PUSH" >/dev/null & pids+=($!)
for p in $GO $BACK $LIGHT $H2O $PROXY $GRPC $PUSH; do
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done

write_pipeline pipeline.toml "type = \"ebpf_socket\"
ports = [$GO, $BACK, $LIGHT, $H2O, $PROXY, $GRPC, $GPROXY, $PUSH, $WS]" \
  "$work/records.jsonl" "$API"
rm -f records.jsonl
"$bin" --config pipeline.toml >agent.log 2>&1 &
agent=$!
pids+=("$agent") # stopped on any exit, also when a client fails
for _ in $(seq 1 600); do grep -q "frame walk" agent.log && break; sleep 0.2; done
grep -o "HTTP/2 frame walk [a-z]*" agent.log

# Clients; `want` lines: "METHOD PATH STATUS PORT COUNT" (lines of one key add up).
want=$work/want.txt
: >"$want"
w() { echo "$*" >>"$want"; }
fails() { ! grep -Eq "$1" "$2" || { echo "client failed: $(cat "$2")" >&2; exit 1; }; }

./go-client "http://127.0.0.1:$GO" 20 >go.out; fails "err" go.out
for x in "GET /a 200" "POST /p 200" "POST /c 200" "GET /missing 404" "GET /stream 200"; do w "$x $GO 20"; done
ab -q -n 200 -c 4 -p www/a.json -T application/json "http://127.0.0.1:$GO/post" >ab1.out
grep -q "Failed requests: *0" ab1.out; w "POST /post 200 $GO 200"
curl -sS -o /dev/null -H "Expect: 100-continue" --data-binary @www/big.txt "http://127.0.0.1:$GO/up"
w "POST /up 200 $GO 1"

for port in $LIGHT $H2O; do
  h2load -n 300 -c 3 -m 10 "http://127.0.0.1:$port/big.txt" >h2load.out; grep -q "300 succeeded" h2load.out
  nghttp -nu -m 20 "http://127.0.0.1:$port/index.html"
  for _ in 1 2 3; do
    curl -sS -o /dev/null --http2 "http://127.0.0.1:$port/a.json"
    curl -sS -o /dev/null "http://127.0.0.1:$port/nope"
  done
  w "GET /big.txt 200 $port 300"; w "GET /a.json 200 $port 3"; w "GET /nope 404 $port 3"
done
w "GET /index.html 200 $LIGHT 20"
h2load --h1 -n 200 -c 2 "http://127.0.0.1:$H2O/index.html" >h2load.out; grep -q "200 succeeded" h2load.out
w "GET /index.html 200 $H2O 220"
ab -q -k -n 500 -c 5 "http://127.0.0.1:$LIGHT/a.json" >ab2.out; grep -q "Failed requests: *0" ab2.out
w "GET /a.json 200 $LIGHT 500"

h2load -n 200 -c 2 -m 10 "http://127.0.0.1:$PROXY/big.txt" >h2load.out; grep -q "200 succeeded" h2load.out
w "GET /big.txt 200 $PROXY 200"; w "GET /big.txt 200 $BACK 200"

NODE_PATH=$work/node_modules node "$here/grpc.js" call "$GRPC" 100 >grpc1.out
NODE_PATH=$work/node_modules node "$here/grpc.js" call "$GPROXY" 100 >grpc2.out
cat grpc1.out grpc2.out
# Direct, through the proxy, and the proxy's own calls to the node server.
for port in $GRPC $GPROXY $GRPC; do
  w "POST /test.Echo/Say 200 $port 40"; w "POST /test.Echo/Many 200 $port 20"
  w "POST /test.Echo/Sum 200 $port 20"; w "POST /test.Echo/Chat 200 $port 20"
done

# The JDK: h2c by Upgrade with h2o (JDK 17 fails rather than queues past lighttpd's
# stream limit); HTTP/1.1 with Go's server, which declines the upgrade.
java "$here/Client.java" "http://127.0.0.1:$H2O" 30 | tee java1.out | grep -q "HTTP_2"
java "$here/Client.java" "http://127.0.0.1:$GO" 30 >java2.out
w "GET /index.html 200 $H2O 10"; w "GET /big.txt 200 $H2O 10"; w "GET /missing 404 $H2O 10"
w "GET /index.html 200 $GO 10"; w "GET /big.txt 200 $GO 10"; w "GET /missing 404 $GO 10"

for _ in 1 2 3; do nghttp -n "http://127.0.0.1:$PUSH/index.html"; done
w "GET /index.html 200 $PUSH 3"; w "GET /a.json 200 $PUSH 3"; w "GET /big.txt 200 $PUSH 3"

python3 "$here/websocket.py" "$WS"
w "GET /chat 101 $WS 1"

want_n=$(awk '{n += $5} END {print n}' "$want")
for _ in $(seq 1 100); do
  [ "$(wc -l <records.jsonl 2>/dev/null || echo 0)" -ge "$want_n" ] && break
  sleep 0.2
done
sleep 2
kill -INT "$agent"; wait "$agent" || true

python3 - "$want" records.jsonl <<'EOF'
import collections, json, sys
want = collections.Counter()
for line in open(sys.argv[1]):
    m, path, code, port, n = line.split()
    want[(m, path, code, port)] += int(n)
got, bad = collections.Counter(), []
for line in open(sys.argv[2]):
    r = json.loads(line)
    q = r["l7"].get("request", {}).get("http", {})
    p = r["l7"].get("response", {}).get("http", {})
    key = (q.get("method", "-"), q.get("url", "-").split("?")[0], str(p.get("code", "-")),
           str(r["l4"]["TCP"]["serverPort"]))
    got[key] += 1
    g = r["l7"].get("grpc")
    if g and not (g.get("status") is not None and "requestMessages" in g and "responseMessages" in g):
        bad.append(f"gRPC call without its status or counts: {' '.join(key)} {g}")
    if r.get("incomplete"):
        bad.append(f"marked {r['incomplete']}: {key}")
print(f"{'method path status port':55} {'want':>6} {'got':>6}")
for k in sorted(set(want) | set(got)):
    flag = "" if want[k] == got[k] else "   <-- differs"
    print(f"{' '.join(k):55} {want[k]:>6} {got[k]:>6}{flag}")
for b in bad[:10]:
    print(b)
if len(bad) > 10:
    print(f"... {len(bad) - 10} more")
ok = want == got and not bad
print("interop: every exchange recorded once" if ok else "interop: FAILED")
sys.exit(0 if ok else 1)
EOF
