//! The HTTP/1 parser on arbitrary bytes in both directions, cut at arbitrary points,
//! with truncations, gaps and a close: it must never panic and its state stays bounded.
//! The fast head parser must agree with httparse on every head it takes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perisco_l7::http1::{Flow, Http1Conn, Http1Limits, Next};

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    // As they come, and after a start line (so that header lines alone make a head).
    perisco_l7::http1::check_against_httparse(rest);
    for start in [&b"GET / HTTP/1.1\r\n"[..], b"HTTP/1.1 200 OK\r\n"] {
        perisco_l7::http1::check_against_httparse(&[start, rest].concat());
    }
    let limits = Http1Limits {
        max_head_bytes: 256 + usize::from(cfg & 0x0f) * 64,
        max_body_bytes: usize::from(cfg >> 4),
        max_pipelined: 8,
    };
    let mut conn = Http1Conn::new(limits);
    let mut out = Vec::new();
    let mut ts = 0u64;
    // Each step: [op][len] then `len` bytes. op bit 0: direction; bits 1-2: what to do.
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(n);
        rest = next;
        ts += 1;
        let flow = if op & 1 == 0 { Flow::ToServer } else { Flow::ToClient };
        match (op >> 1) & 3 {
            0 | 1 => {
                if conn.feed(flow, chunk, ts, &mut out) != Next::Continue {
                    return;
                }
            }
            2 => {
                conn.feed(flow, chunk, ts, &mut out);
                conn.missing(flow, u64::from(op >> 3), &mut out);
            }
            _ => {
                conn.gap(flow, u64::from(op >> 3), &mut out);
            }
        }
        assert!(conn.state_bytes() <= 2 * (limits.max_head_bytes + limits.max_body_bytes) + 1024);
        out.clear();
    }
    conn.close(&mut out);
});
