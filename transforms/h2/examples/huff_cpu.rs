//! Huffman decode speed, CPU time (/proc/thread-self/schedstat).
use std::hint::black_box;

use perisco_h2::hpack::huffman;

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let text = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
    let mut enc = Vec::new();
    huffman::encode(text, &mut enc);
    let mut out = Vec::with_capacity(256);
    let n = 1_000_000u64;
    let t = cpu_ns();
    for _ in 0..n {
        out.clear();
        huffman::decode(black_box(&enc), &mut out).unwrap();
        black_box(&out);
    }
    let ns = (cpu_ns() - t) as f64 / n as f64;
    println!(
        "huffman decode: {ns:.1} ns per {}-byte string, {:.2} ns per decoded byte",
        text.len(),
        ns / text.len() as f64
    );
}
