//! Exchanges per CPU-second through `Http2Conn`, measured with the thread's own CPU time
//! (/proc/thread-self/schedstat), so a machine shared with other work skews it less than
//! wall-clock criterion figures.
//!
//! cargo run --release -p perisco-h2 --example h2_cpu [ROUNDS]

use std::hint::black_box;

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
        for _ in 0..rounds {
            let mut conn = Http2Conn::new(info(), Http2Options::default());
            let mut out = Vec::with_capacity(2 * EXCHANGES as usize);
            for (ts, (side, b)) in chunks.iter().enumerate() {
                conn.feed(*side, b, ts as u64, false, &mut out).unwrap();
            }
            messages += out.len();
            black_box(out);
        }
        let cpu = (cpu_ns() - start_cpu) as f64 / 1e9;
        let wall = start_wall.elapsed().as_secs_f64();
        let exchanges = f64::from(rounds) * f64::from(EXCHANGES);
        assert_eq!(messages as f64, 2.0 * exchanges);
        println!(
            "{name}: {:.0} exchanges/s per CPU-second ({:.0}/s wall), {:.2} µs CPU per exchange, {:.0} MB/s, {} exchanges",
            exchanges / cpu,
            exchanges / wall,
            cpu * 1e6 / exchanges,
            (bytes as f64 * f64::from(rounds)) / cpu / 1e6,
            exchanges
        );
    }
}
