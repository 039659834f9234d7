"""Recording HTTP sink for the http-sink integration tests (stdlib only).
Usage: python3 sink_server.py PORT [OUT_JSONL]
- Any POST/PUT: records {method,path,headers,status,body(gunzipped)} and replies with the
  current status (200 by default, env SINK_STATUS, or set at run time by POST /_status/NNN).
- GET /_requests -> every recorded request; GET /_stats -> {"requests":N,"bytes":B};
  GET /_header/NAME -> the distinct values of header NAME over all requests;
  POST /_reset clears.
- SINK_TLS_CERT / SINK_TLS_KEY (PEM files): serve HTTPS instead.
- OUT_JSONL (optional) gets every record too, so a restarted server keeps history.
"""
import gzip, json, os, sys, threading, zlib
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

LOCK = threading.Lock(); REQS = []; BYTES = [0]
OUT = open(sys.argv[2], "a") if len(sys.argv) > 2 else None
STATUS = [int(os.environ.get("SINK_STATUS", "200"))]

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The reply goes out in two writes (headers, body): with Nagle on, the body waits for
    # the client's delayed ACK (40 ms per request on Linux).
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def _reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                n = int(self.rfile.readline().strip(), 16)
                if n == 0: self.rfile.readline(); break
                data += self.rfile.read(n); self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        enc = self.headers.get("Content-Encoding", "")
        if enc == "gzip": data = gzip.decompress(data)
        elif enc == "deflate": data = zlib.decompress(data)
        return data
    def do_GET(self):
        if self.path == "/_stats":
            with LOCK: return self._reply(200, {"requests": len(REQS), "bytes": BYTES[0]})
        if self.path == "/_requests":
            with LOCK: return self._reply(200, REQS)
        if self.path.startswith("/_header/"):
            name = self.path.rsplit("/", 1)[1].lower()
            with LOCK: vals = {v for r in REQS for k, v in r["headers"].items() if k.lower() == name}
            return self._reply(200, sorted(vals))
        self._reply(200, {"ok": True})
    def do_POST(self):
        body = self._body()
        if self.path == "/_reset":
            with LOCK: REQS.clear(); BYTES[0] = 0
            return self._reply(200, {"ok": True})
        if self.path.startswith("/_status/"):
            STATUS[0] = int(self.path.rsplit("/", 1)[1])
            return self._reply(200, {"ok": True})
        status = STATUS[0]
        rec = {"method": self.command, "path": self.path, "headers": dict(self.headers),
               "status": status, "body": body.decode("utf-8", "replace")}
        with LOCK:
            REQS.append(rec); BYTES[0] += len(body)
            if OUT: OUT.write(json.dumps(rec) + "\n"); OUT.flush()
        self._reply(status, {"ok": status < 300})
    do_PUT = do_POST

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 18080
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    if os.environ.get("SINK_TLS_CERT"):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.environ["SINK_TLS_CERT"], os.environ["SINK_TLS_KEY"])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"http://127.0.0.1:{port}", flush=True)
    srv.serve_forever()
