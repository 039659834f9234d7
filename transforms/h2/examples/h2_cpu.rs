//! Exchanges per CPU-second through `Http2Conn`, measured with the thread's own CPU time
//! (/proc/thread-self/schedstat), so a machine shared with other work skews it less than
//! wall-clock criterion figures.
//!
//! cargo run --release -p perisco-h2 --example h2_cpu [ROUNDS]

use std::hint::black_box;

use perisco_h2::hpack::Decoder;
use perisco_h2::{Http2Conn, Http2Options};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{EXCHANGES, conversation, info};

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let rounds: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    for (name, grpc) in [("http_get", false), ("grpc_unary", true)] {
        let chunks = conversation(grpc);
        let bytes: usize = chunks.iter().map(|(_, b)| b.len()).sum();
        let start_cpu = cpu_ns();
        let start_wall = std::time::Instant::now();
        let mut messages = 0usize;
        let mut state = 0usize;
        for _ in 0..rounds {
            let mut conn = Http2Conn::new(info(), Http2Options::default());
            let mut out = Vec::with_capacity(2 * EXCHANGES as usize);
            for (ts, (side, b)) in chunks.iter().enumerate() {
                conn.feed(*side, b, ts as u64, false, &mut out).unwrap();
            }
            messages += out.len();
            state = conn.state_bytes();
            black_box(out);
        }
        let cpu = (cpu_ns() - start_cpu) as f64 / 1e9;
        let wall = start_wall.elapsed().as_secs_f64();
        let exchanges = f64::from(rounds) * f64::from(EXCHANGES);
        assert_eq!(messages as f64, 2.0 * exchanges);
        println!(
            "{name}: {:.0} exchanges/s per CPU-second ({:.0}/s wall), {:.2} µs CPU per exchange, {:.0} MB/s, {} exchanges, {} bytes of state after them",
            exchanges / cpu,
            exchanges / wall,
            cpu * 1e6 / exchanges,
            (bytes as f64 * f64::from(rounds)) / cpu / 1e6,
            exchanges,
            state
        );
    }
    let (first, repeat) = common::request_blocks();
    let fields = common::REQUEST_HEADERS.len() as f64;
    let n = 200_000u32;
    let t = cpu_ns();
    for _ in 0..n {
        let mut d = Decoder::new();
        d.decode(black_box(&first), |f| {
            black_box(f);
        });
    }
    let first_ns = (cpu_ns() - t) as f64 / f64::from(n) / fields;
    let mut warm = Decoder::new();
    warm.decode(&first, |_| {});
    let t = cpu_ns();
    for _ in 0..n {
        warm.decode(black_box(&repeat), |f| {
            black_box(f);
        });
    }
    let repeat_ns = (cpu_ns() - t) as f64 / f64::from(n) / fields;
    println!(
        "hpack: {first_ns:.0} ns CPU per header (first block: Huffman literals, table inserts), {repeat_ns:.1} ns per header (dynamic table hits)"
    );
}
