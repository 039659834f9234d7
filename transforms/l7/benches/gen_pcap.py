#!/usr/bin/env python3
"""Write a large HTTP/1.1 capture for the end-to-end benchmark (scripts/bench-l7-e2e.sh).

Classic pcap, Ethernet + IPv4 + TCP. `--connections` keep-alive connections, each with
SYN / SYN-ACK / ACK, `--exchanges` request/response pairs (curl-like GET, nginx-like 200
with a Content-Length body, each answered by a pure ACK), then FIN / FIN / ACK.
`--concurrency` connections are open at once and their exchanges interleave packet by
packet, as on a busy server. Every connection has its own client address and port, so no
5-tuple is reused and neither perisco nor tshark sees retransmissions.

Standard library only. TCP checksums are left 0 (as a capture with checksum offload
shows them); tshark does not check them by default, perisco never does.
"""

import argparse
import struct
import sys

SERVER_IP = bytes([10, 0, 0, 2])
SERVER_PORT = 8080
MAC_C = bytes.fromhex("020000000001")
MAC_S = bytes.fromhex("020000000002")

SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01

REQUEST = (
    "GET /api/v1/items?id={n}&fields=name,price HTTP/1.1\r\n"
    "Host: shop.default.svc:8080\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n\r\n"
)
BODY = '{"name":"pen","price":1.5}\n'
RESPONSE = (
    "HTTP/1.1 200 OK\r\n"
    "Server: nginx/1.22.1\r\n"
    "Date: Thu, 26 Nov 2026 13:00:00 GMT\r\n"
    "Content-Type: application/json\r\n"
    f"Content-Length: {len(BODY)}\r\n"
    "Connection: keep-alive\r\n\r\n" + BODY
)


def ip_checksum(header: bytes) -> int:
    s = sum(struct.unpack("!10H", header))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class Conn:
    def __init__(self, i: int):
        self.client_ip = bytes([10, 1, (i >> 8) & 0xFF, i & 0xFF])
        self.client_port = 20000 + (i % 40000)
        self.seq = [1000, 5000]  # next sequence number: client, server
        self.ip_id = 0

    def segment(self, from_client: bool, flags: int, payload: bytes = b"") -> bytes:
        side = 0 if from_client else 1
        src, dst = (self.client_ip, SERVER_IP) if from_client else (SERVER_IP, self.client_ip)
        sport, dport = (self.client_port, SERVER_PORT) if from_client else (SERVER_PORT, self.client_port)
        seq, ack = self.seq[side], self.seq[1 - side]
        if not flags & ACK:
            ack = 0
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
        self.seq[side] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        total = 20 + len(tcp) + len(payload)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, self.ip_id, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
        eth = (MAC_S + MAC_C if from_client else MAC_C + MAC_S) + b"\x08\x00"
        return eth + ip + tcp + payload

    def opening(self):
        yield self.segment(True, SYN)
        yield self.segment(False, SYN | ACK)
        yield self.segment(True, ACK)

    def exchange(self, n: int):
        yield self.segment(True, PSH | ACK, REQUEST.format(n=n).encode())
        yield self.segment(False, PSH | ACK, RESPONSE.encode())
        yield self.segment(True, ACK)

    def closing(self):
        yield self.segment(True, FIN | ACK)
        yield self.segment(False, FIN | ACK)
        yield self.segment(True, ACK)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--exchanges", type=int, default=100, help="per connection")
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    ts_us = 1_764_000_000 * 1_000_000
    with open(a.out, "wb") as f:
        # pcap global header: magic, v2.4, thiszone, sigfigs, snaplen, Ethernet.
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))

        def write(pkt: bytes):
            nonlocal ts_us
            ts_us += 7
            f.write(struct.pack("<IIII", ts_us // 1_000_000, ts_us % 1_000_000, len(pkt), len(pkt)))
            f.write(pkt)

        n = 0
        for first in range(0, a.connections, a.concurrency):
            batch = [Conn(i) for i in range(first, min(first + a.concurrency, a.connections))]
            for c in batch:
                for p in c.opening():
                    write(p)
            for _ in range(a.exchanges):
                for c in batch:
                    for p in c.exchange(n):
                        write(p)
                    n += 1
            for c in batch:
                for p in c.closing():
                    write(p)
    print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
