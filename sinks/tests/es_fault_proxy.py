"""HTTP proxy in front of an Elasticsearch/OpenSearch API that makes bulk items fail with 429.
Usage: python3 es_fault_proxy.py PORT UPSTREAM_URL FAILING_BULKS
For the first FAILING_BULKS `_bulk` requests, only every other document is forwarded;
the others get a fabricated per-item 429 (es_rejected_execution_exception), exactly what a
busy cluster answers. Everything else is passed through. GET /_proxy/stats -> counts.
"""
import gzip, json, sys, threading, urllib.request, urllib.error
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

UP = sys.argv[2].rstrip("/"); LEFT = [int(sys.argv[3])]; LOCK = threading.Lock()
STATS = {"bulks": 0, "faked_429_items": 0}

def forward(method, path, headers, body):
    req = urllib.request.Request(UP + path, data=body if method != "GET" else None, method=method)
    for k in ("Content-Type", "Authorization"):
        if headers.get(k): req.add_header(k, headers[k])
    try:
        with urllib.request.urlopen(req, timeout=30) as r: return r.status, r.read()
    except urllib.error.HTTPError as e: return e.code, e.read()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall
    def log_message(self, *a): pass
    def _send(self, code, b):
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def _handle(self):
        n = int(self.headers.get("Content-Length", 0) or 0)
        body = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding") == "gzip": body = gzip.decompress(body)
        if self.path == "/_proxy/stats":
            with LOCK: return self._send(200, json.dumps(STATS).encode())
        if self.path.endswith("/_bulk"):
            with LOCK:
                STATS["bulks"] += 1
                fault = LEFT[0] > 0
                if fault: LEFT[0] -= 1
            if fault: return self._bulk_with_429(body)
        code, out = forward(self.command, self.path, self.headers, body)
        self._send(code, out)
    def _bulk_with_429(self, body):
        lines = body.decode().splitlines()
        pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
        keep = [p for i, p in enumerate(pairs) if i % 2 == 0]
        fwd = "".join(a + "\n" + d + "\n" for a, d in keep).encode()
        code, out = forward("POST", "/_bulk", {"Content-Type": "application/x-ndjson"}, fwd)
        if code != 200: return self._send(code, out)
        real = json.loads(out)["items"]; items = []; errors = real and any(
            list(x.values())[0].get("status", 200) >= 300 for x in real)
        for i, _ in enumerate(pairs):
            if i % 2 == 0: items.append(real[i // 2])
            else:
                items.append({"index": {"status": 429, "error": {"type": "es_rejected_execution_exception",
                              "reason": "rejected execution (injected by es_fault_proxy)"}}})
                with LOCK: STATS["faked_429_items"] += 1
        self._send(200, json.dumps({"took": 1, "errors": True if len(pairs) > 1 else bool(errors), "items": items}).encode())
    do_GET = do_PUT = do_POST = do_HEAD = _handle

if __name__ == "__main__":
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    print("ready", flush=True)
    srv.serve_forever()
