//! Arbitrary bytes on both sides of an `Http2Conn`, cut into chunks, with gaps, known-length
//! skips, truncated chunks and closes. Input: [flags] then records [op, len, len bytes...].
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use perisco_engine::event::{ConnInfo, ProcessInfo};
use perisco_h2::{Http2Conn, Http2Options, PREFACE, Side};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut d)) = data.split_first() else {
        return;
    };
    let info = Arc::new(ConnInfo {
        conn_id: 1,
        client: "127.0.0.1:1".parse().unwrap(),
        server: "127.0.0.1:2".parse().unwrap(),
        process: Arc::new(ProcessInfo::default()),
    });
    let opts = Http2Options {
        max_body_bytes: usize::from(flags & 0x0f) * 8,
        max_streams: 8,
        max_header_list_bytes: 512,
    };
    let mut conn = if flags & 0x40 != 0 {
        Http2Conn::upgraded(info, opts)
    } else {
        Http2Conn::new(info, opts)
    };
    let mut out = Vec::new();
    if flags & 0x80 != 0 {
        let _ = conn.feed(Side::Client, PREFACE, 0, false, &mut out);
    }
    let mut ts = 1;
    while d.len() >= 2 {
        let (op, len) = (d[0], usize::from(d[1]));
        d = &d[2..];
        let n = len.min(d.len());
        let (chunk, rest) = d.split_at(n);
        d = rest;
        let side = if op & 1 == 0 { Side::Client } else { Side::Server };
        ts += 1;
        match (op >> 1) & 7 {
            // Keep feeding after Err: the caller would stop, but nothing may panic either way.
            0..=4 => {
                let _ = conn.feed(side, chunk, ts, op & 0x10 != 0, &mut out);
            }
            5 => conn.gap(side, &mut out),
            6 => conn.skip(side, len as u64 * 13, &mut out),
            _ => conn.close(ts, &mut out),
        }
        // Bounded state whatever the input.
        assert!(conn.state_bytes() < 8 << 20, "state {}", conn.state_bytes());
        out.clear();
    }
    conn.close(ts, &mut out);
});
