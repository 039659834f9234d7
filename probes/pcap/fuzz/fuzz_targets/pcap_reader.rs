//! Arbitrary bytes through the pcap reader and the reassembler: never a panic, and the
//! events keep their invariants.
//!
//! The input is used twice: as a whole capture file (reader + decoder + reassembly), and
//! as a list of frames `[link type selector][len][frame]...` fed straight to the decoder
//! and reassembler, which reaches TCP states much faster than whole files do.
#![no_main]

use std::collections::HashSet;
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use perisco_engine::event::{Event, SocketEventKind};
use perisco_pcap::{Limits, Packet, Reassembler, read_events};

const LINKTYPES: [i32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

fn limits() -> Limits {
    Limits {
        max_connections: 8,
        max_buffered_bytes: 512,
        idle_timeout_ns: 1_000_000_000,
        max_capture_bytes: Some(64),
    }
}

/// `walked`: some connection was walked as HTTP/2, whose events keep frame headers past
/// the 64-byte limit (up to the probe's 32 KiB per transfer); any other event holds at most
/// a 64-byte prefix.
fn check(events: &[Event], walked: bool) {
    let mut closed = HashSet::new();
    for e in events {
        let Event::Socket(s) = e else {
            panic!("not a socket event")
        };
        assert!(s.data.len() as u64 <= u64::from(s.len));
        assert!(s.data.len() <= if walked { 32 * 1024 } else { 64 });
        match s.kind {
            SocketEventKind::Close => assert!(closed.insert(s.conn_id), "closed twice"),
            SocketEventKind::Data => assert!(s.len > 0 && !closed.contains(&s.conn_id), "data after close"),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok((events, stats)) = read_events(Cursor::new(data.to_vec()), limits()) {
        check(&events, stats.h2_walked_connections > 0);
    }

    let mut r = Reassembler::new(limits());
    let mut rest = data;
    let mut ts = 0u64;
    let mut events = Vec::new();
    while rest.len() >= 3 {
        let linktype = LINKTYPES[usize::from(rest[0]) % LINKTYPES.len()];
        ts += u64::from(rest[1]) << 24; // sometimes seconds apart: idle sweeps run
        let len = usize::from(rest[2]).min(rest.len() - 3);
        let frame = &rest[3..3 + len];
        rest = &rest[3 + len..];
        r.packet(
            &Packet {
                ts_ns: ts,
                linktype,
                data: frame,
            },
            0,
        );
        events.extend(r.take_events());
    }
    r.finish();
    events.extend(r.take_events());
    check(&events, r.stats().h2_walked_connections > 0);
});
