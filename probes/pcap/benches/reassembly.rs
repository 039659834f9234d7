//! pcap read + TCP reassembly throughput: MB/s of capture and socket events/s.
//!
//! Each fixture is replayed N times from memory (like `loop = true`: one reassembler,
//! connections closed at the end of each pass), plus a synthetic capture of many short
//! HTTP/1.1 connections (small packets: the per-packet cost dominates).
//! Run: cargo bench -p perisco-pcap --bench reassembly

use std::hint::black_box;
use std::io::Cursor;
use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perisco_pcap::{Limits, Next, PacketReader, Reassembler};

const PASSES: usize = 20;

/// Replay `file` `passes` times; returns the number of events produced.
fn replay(file: &'static [u8], passes: usize) -> usize {
    let mut r = Reassembler::new(Limits::default());
    let mut events = 0;
    let mut shift = 0;
    for _ in 0..passes {
        let mut reader = PacketReader::new(Cursor::new(file)).expect("capture");
        while let Next::Packet = reader.next_packet(|p| r.packet(&p, shift)).expect("read") {
            if r.pending_events() >= 1024 {
                events += black_box(r.take_events()).len();
            }
        }
        r.finish();
        events += black_box(r.take_events()).len();
        shift += 3_600_000_000_000;
    }
    events
}

/// A legacy pcap (Ethernet) of `conns` HTTP/1.1 connections: handshake, request,
/// response, FIN/ACKs — 9 packets each.
fn synthetic(conns: u32) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(0xa1b2c3d4u32.to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(4u16.to_le_bytes());
    f.extend([0; 8]);
    f.extend(65535u32.to_le_bytes());
    f.extend(1u32.to_le_bytes());
    let req = b"GET /api/v1/items?id=42 HTTP/1.1\r\nHost: svc.default.svc.cluster.local\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"id\":42,\"name\":\"item-42\"}\n";
    let server: SocketAddr = "10.1.0.2:8080".parse().unwrap();
    let mut t = 1_700_000_000u64 * 1_000_000;
    for i in 0..conns {
        let client: SocketAddr = format!("10.0.{}.{}:{}", (i >> 8) & 0xff, i & 0xff, 20000 + (i % 40000))
            .parse()
            .unwrap();
        let (c0, s0) = (1000u32.wrapping_mul(i), 7u32.wrapping_mul(i));
        let (rl, sl) = (req.len() as u32, resp.len() as u32);
        let packets: [(bool, u32, u8, &[u8]); 9] = [
            (true, c0, 0x02, b""),
            (false, s0, 0x12, b""),
            (true, c0 + 1, 0x10, b""),
            (true, c0 + 1, 0x18, req),
            (false, s0 + 1, 0x10, b""),
            (false, s0 + 1, 0x18, resp),
            (true, c0 + 1 + rl, 0x11, b""),
            (false, s0 + 1 + sl, 0x11, b""),
            (true, c0 + 2 + rl, 0x10, b""),
        ];
        for (from_client, seq, flags, payload) in packets {
            let (s, d) = if from_client {
                (client, server)
            } else {
                (server, client)
            };
            let frame = frame(s, d, seq, flags, payload);
            t += 7;
            f.extend(((t / 1_000_000) as u32).to_le_bytes());
            f.extend(((t % 1_000_000) as u32).to_le_bytes());
            f.extend((frame.len() as u32).to_le_bytes());
            f.extend((frame.len() as u32).to_le_bytes());
            f.extend(frame);
        }
    }
    f
}

fn frame(s: SocketAddr, d: SocketAddr, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (s, d) else {
        unreachable!()
    };
    let mut f = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0];
    f.extend(((40 + payload.len()) as u16).to_be_bytes());
    f.extend([0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend(s.ip().octets());
    f.extend(d.ip().octets());
    f.extend(s.port().to_be_bytes());
    f.extend(d.port().to_be_bytes());
    f.extend(seq.to_be_bytes());
    f.extend(1u32.to_be_bytes());
    f.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(payload);
    f
}

fn bench(c: &mut Criterion) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/");
    let mut inputs: Vec<(String, &'static [u8], usize)> = Vec::new();
    for name in ["http1-curl", "h2c-nghttp", "grpc"] {
        let bytes = std::fs::read(format!("{root}{name}.pcapng")).expect("fixture");
        inputs.push((format!("{name} x{PASSES}"), Box::leak(bytes.into_boxed_slice()), PASSES));
    }
    inputs.push((
        "synthetic-http1 10k conns".into(),
        Box::leak(synthetic(10_000).into_boxed_slice()),
        1,
    ));

    for (name, file, passes) in inputs {
        let events = replay(file, passes);
        let mut g = c.benchmark_group("pcap_bytes");
        g.throughput(Throughput::Bytes((file.len() * passes) as u64));
        g.bench_function(&name, |b| b.iter(|| replay(file, passes)));
        g.finish();
        let mut g = c.benchmark_group("pcap_events");
        g.throughput(Throughput::Elements(events as u64));
        g.bench_function(&name, |b| b.iter(|| replay(file, passes)));
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
