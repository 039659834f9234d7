# A WebSocket upgrade on raw sockets, both ends: the 101, then frames (some holding
# "GET / HTTP/1.1") that must not be read as HTTP. Usage: websocket.py PORT
import socket, sys, threading, os
port = int(sys.argv[1])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind(("127.0.0.1", port)); srv.listen()
def serve():
    c, _ = srv.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    for _ in range(20):
        d = c.recv(65536)
        c.sendall(d)
    c.close()
t = threading.Thread(target=serve); t.start()
cl = socket.create_connection(("127.0.0.1", port))
cl.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
cl.recv(4096)
for i in range(20):
    msg = b"\x81\x05" + (b"GET / HTTP/1.1\r\n\r\n" if i % 2 else os.urandom(5))
    cl.sendall(msg); cl.recv(65536)
cl.close(); t.join(); print("ok")
