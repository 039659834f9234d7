//! HTTP/2 exchanges per second through `Http2Conn` (requests + responses, realistic headers,
//! Huffman strings, dynamic table hits), and HPACK decoding per header.
//!
//! cargo bench -p perisco-h2 --bench h2

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perisco_h2::hpack::Decoder;
use perisco_h2::{Http2Conn, Http2Options};

mod common;
use common::{EXCHANGES, conversation, info};

fn bench_exchanges(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("http2_conn");
    g.throughput(Throughput::Elements(u64::from(EXCHANGES)));
    for (name, grpc) in [("http_get_exchanges", false), ("grpc_unary_exchanges", true)] {
        let chunks = conversation(grpc);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut conn = Http2Conn::new(info(), Http2Options::default());
                let mut out = Vec::with_capacity(2 * EXCHANGES as usize);
                for (ts, (side, bytes)) in chunks.iter().enumerate() {
                    conn.feed(*side, bytes, ts as u64, false, &mut out).unwrap();
                }
                assert_eq!(out.len(), 2 * EXCHANGES as usize);
                black_box(out)
            })
        });
    }
    g.finish();
}

fn bench_hpack(cr: &mut Criterion) {
    let list = common::REQUEST_HEADERS;
    let (first, repeat) = common::request_blocks();
    let mut g = cr.benchmark_group("hpack");
    g.throughput(Throughput::Elements(list.len() as u64));
    g.bench_function("first_block_huffman_literals_per_header", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            let mut n = 0usize;
            d.decode(black_box(&first), |f| n += f.value.len());
            black_box(n)
        })
    });
    // The repeat block is all indexed fields: decoding it leaves the table as it was.
    assert!(repeat.iter().all(|&b| b & 0x80 != 0));
    let mut warm = Decoder::new();
    warm.decode(&first, |_| {});
    g.bench_function("repeat_block_dynamic_hits_per_header", |b| {
        b.iter(|| {
            let mut n = 0usize;
            warm.decode(black_box(&repeat), |f| n += f.value.len());
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_exchanges, bench_hpack);
criterion_main!(benches);
