//! TCP reassembly on hand-built segments.

use crate::common;

use common::*;
use perisco_engine::event::{Direction, Event, Role, SocketEventKind};
use perisco_pcap::decode::TcpSegment;
use perisco_pcap::{Limits, Reassembler, Stats};

const CLIENT: &str = "10.0.0.1:40000";
const SERVER: &str = "10.0.0.2:80";

fn seg(src: &str, dst: &str, seq: u32, flags: u8, payload: &'static [u8]) -> TcpSegment<'static> {
    TcpSegment {
        src: addr(src),
        dst: addr(dst),
        seq,
        flags,
        payload,
        missing: 0,
    }
}

/// Client → server segment.
fn c(seq: u32, flags: u8, payload: &'static [u8]) -> TcpSegment<'static> {
    seg(CLIENT, SERVER, seq, flags, payload)
}

/// Server → client segment.
fn s(seq: u32, flags: u8, payload: &'static [u8]) -> TcpSegment<'static> {
    seg(SERVER, CLIENT, seq, flags, payload)
}

fn run_with(limits: Limits, segs: &[TcpSegment<'_>]) -> (Vec<Event>, Stats) {
    let mut r = Reassembler::new(limits);
    for (i, sg) in segs.iter().enumerate() {
        r.segment(1_000 + i as u64, sg);
    }
    r.finish();
    (r.take_events(), r.stats())
}

fn run(segs: &[TcpSegment<'_>]) -> (Vec<Event>, Stats) {
    run_with(Limits::default(), segs)
}

/// Concatenated payload of one connection and direction, gaps as `[gap N]`.
fn stream(events: &[Event], conn: u64, dir: Direction) -> String {
    let mut out = String::new();
    for s in sockets(events)
        .into_iter()
        .filter(|s| s.conn_id == conn && s.direction == dir)
    {
        match s.kind {
            SocketEventKind::Data => out.push_str(&String::from_utf8_lossy(&s.data)),
            SocketEventKind::Gap => out.push_str(&format!("[gap {}]", s.len)),
            _ => {}
        }
    }
    out
}

fn handshake(isn_c: u32, isn_s: u32) -> Vec<TcpSegment<'static>> {
    vec![
        c(isn_c, SYN, b""),
        s(isn_s, SYN | ACK, b""),
        c(isn_c.wrapping_add(1), ACK, b""),
    ]
}

#[test]
fn handshake_exchange_and_close() {
    let mut segs = handshake(100, 500);
    segs.extend([
        c(101, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n"),
        s(501, ACK | PSH, b"HTTP/1.1 200 OK\r\n"),
        s(518, ACK | PSH, b"\r\n"),
        c(119, ACK | FIN, b""),
        s(520, ACK | FIN, b""),
        c(120, ACK, b""),
    ]);
    let (events, stats) = run(&segs);
    assert_eq!(
        shows(&events),
        [
            "open#1",
            "#1 in GET / HTTP/1.1\r\n\r\n",
            "#1 out HTTP/1.1 200 OK\r\n\r\n",
            "close#1"
        ],
        "server segments in a row are coalesced, the direction change is not"
    );
    let all = sockets(&events);
    assert!(
        all.iter()
            .all(|e| e.role == Role::Server && e.local == addr(SERVER) && e.peer == addr(CLIENT))
    );
    assert!(all.iter().all(|e| e.process.pid == 0));
    assert_eq!(all[1].ts_ns, 1_003, "packet time of the request");
    assert_eq!(stats.late_segments, 1, "the last ACK arrives after close");
    assert_eq!(stats.gaps, 0);
}

#[test]
fn out_of_order_segments_wait_for_the_hole() {
    let mut segs = handshake(1000, 9000);
    segs.extend([
        c(1012, ACK, b"world "),
        c(1018, ACK, b"again"),
        c(1001, ACK, b"hello, "),
        c(1008, ACK, b"big "),
    ]);
    let (events, stats) = run(&segs);
    assert_eq!(stream(&events, 1, Direction::Ingress), "hello, big world again");
    assert_eq!(stats.gaps, 0);
    assert_eq!(stats.bytes, 22);
    assert_eq!(stats.retransmitted_bytes, 0);
}

#[test]
fn retransmissions_are_delivered_once() {
    let mut segs = handshake(1, 1);
    segs.extend([
        c(2, ACK, b"abcdef"),
        c(2, ACK, b"abcdef"),
        s(2, ACK, b"xyz"),
        c(2, ACK, b"abcdef"),
        c(8, ACK, b"gh"),
    ]);
    let (events, stats) = run(&segs);
    assert_eq!(stream(&events, 1, Direction::Ingress), "abcdefgh");
    assert_eq!(stream(&events, 1, Direction::Egress), "xyz");
    assert_eq!(stats.retransmitted_bytes, 12);
}

#[test]
fn overlaps_are_trimmed() {
    let mut segs = handshake(0, 0);
    segs.extend([
        c(1, ACK, b"0123456789"),
        c(6, ACK, b"56789abcde"), // half old, half new
        c(21, ACK, b"klmno"),     // buffered
        c(19, ACK, b"ijkl"),      // buffered, overlaps the one above
        c(16, ACK, b"fghij"),     // fills the hole; both buffered ones drain trimmed
    ]);
    let (events, stats) = run(&segs);
    assert_eq!(stream(&events, 1, Direction::Ingress), "0123456789abcdefghijklmno");
    assert_eq!(stats.retransmitted_bytes, 5 + 2 + 2);
    assert_eq!(stats.gaps, 0);
}

#[test]
fn a_hole_that_never_fills_is_a_gap_at_close() {
    let mut segs = handshake(0, 0);
    segs.extend([
        c(1, ACK, b"aaaa"),
        c(9, ACK, b"cccc"),
        c(13, ACK | FIN, b""),
        s(1, ACK | FIN, b""),
    ]);
    let (events, stats) = run(&segs);
    assert_eq!(stream(&events, 1, Direction::Ingress), "aaaa[gap 4]cccc");
    assert_eq!((stats.gaps, stats.gap_bytes), (1, 4));
    let kinds: Vec<_> = sockets(&events).iter().map(|e| e.kind).collect();
    assert_eq!(kinds.last(), Some(&SocketEventKind::Close));
    assert_eq!(kinds.iter().filter(|k| **k == SocketEventKind::Close).count(), 1);
}

#[test]
fn a_hole_before_the_fin_is_a_gap() {
    let mut segs = handshake(0, 0);
    segs.extend([c(1, ACK, b"aaaa"), c(9, ACK | FIN, b""), s(1, ACK | FIN, b"")]);
    let (events, _) = run(&segs);
    assert_eq!(stream(&events, 1, Direction::Ingress), "aaaa[gap 4]");
}

#[test]
fn buffer_bound_declares_the_gap_and_the_stream_continues() {
    let limits = Limits {
        max_buffered_bytes: 100,
        ..Limits::default()
    };
    let mut segs = handshake(0, 0);
    segs.extend([c(1, ACK, b"head "), c(16, ACK, b"after the hole "), c(31, ACK, b"more")]);
    // Each buffered segment is charged its length + 64: the second one overflows the bound.
    let mut r = Reassembler::new(limits);
    for (i, sg) in segs.iter().enumerate() {
        r.segment(i as u64, sg);
    }
    let before_close = r.take_events();
    assert_eq!(
        stream(&before_close, 1, Direction::Ingress),
        "head [gap 10]after the hole more"
    );
    assert_eq!(r.stats().buffer_overflows, 1);
    // The late copy of the missing bytes is old news now.
    r.segment(10, &c(6, ACK, b"0123456789"));
    r.segment(11, &c(35, ACK, b"!"));
    r.finish();
    let rest = r.take_events();
    assert_eq!(stream(&rest, 1, Direction::Ingress), "!");
    assert_eq!(r.stats().retransmitted_bytes, 10);
}

#[test]
fn sequence_numbers_wrap_around() {
    let isn = u32::MAX - 5;
    let mut segs = handshake(isn, 7);
    // Bytes 0..4 before the wrap, 4..12 across it, 12..16 after; delivered out of order.
    segs.extend([
        c(isn.wrapping_add(13), ACK, b"MNOP"),
        c(isn.wrapping_add(1), ACK, b"ABCD"),
        c(isn.wrapping_add(5), ACK, b"EFGHIJKL"),
        c(isn.wrapping_add(5), ACK, b"EFGH"), // retransmitted, across the wrap
    ]);
    let (events, stats) = run(&segs);
    assert_eq!(stream(&events, 1, Direction::Ingress), "ABCDEFGHIJKLMNOP");
    assert_eq!(stats.retransmitted_bytes, 4);
    assert_eq!(stats.gaps, 0);
}

#[test]
fn long_streams_cross_the_32_bit_space() {
    // 5 GiB of sequence space: each segment carries 1 captured byte of 1 MiB on the wire
    // (a snaplen cut), so offsets keep growing past 2^32 without moving gigabytes.
    const WIRE: u32 = 1 << 20;
    let mut r = Reassembler::new(Limits::default());
    r.segment(0, &c(0, SYN, b""));
    let mut seq = 1u32;
    let n = 5u64 << 10;
    for i in 0..n {
        r.segment(
            i + 1,
            &TcpSegment {
                missing: WIRE - 1,
                ..c(seq, ACK, b"x")
            },
        );
        seq = seq.wrapping_add(WIRE);
        if r.pending_events() > 64 {
            r.take_events();
        }
    }
    // A retransmission of the first segment of the last GiB is old news, not new data.
    r.segment(n + 1, &c(seq.wrapping_sub(WIRE), ACK, b"x"));
    r.segment(n + 2, &c(seq, ACK, b"end"));
    r.finish();
    let stats = r.stats();
    assert_eq!(stats.bytes, n + 3);
    assert_eq!((stats.gaps, stats.gap_bytes), (n, n * u64::from(WIRE - 1)));
    assert_eq!(stats.retransmitted_bytes, 1);
}

#[test]
fn syn_less_connections_have_unknown_role() {
    let segs = [
        c(5000, ACK | PSH, b"GET /late HTTP/1.1\r\n\r\n"),
        s(7000, ACK | PSH, b"HTTP/1.1 204 No Content\r\n\r\n"),
        c(5022, ACK, b"GET /2 HTTP/1.1\r\n\r\n"),
    ];
    let (events, _) = run(&segs);
    let all = sockets(&events);
    assert!(all.iter().all(|e| e.role == Role::Unknown));
    // The destination of the first packet seen is `local`.
    assert!(all.iter().all(|e| e.local == addr(SERVER) && e.peer == addr(CLIENT)));
    assert_eq!(
        shows(&events),
        [
            "#1 in GET /late HTTP/1.1\r\n\r\n",
            "#1 out HTTP/1.1 204 No Content\r\n\r\n",
            "#1 in GET /2 HTTP/1.1\r\n\r\n",
            "close#1"
        ],
        "no Open without a handshake; Close at the end of the capture"
    );
}

#[test]
fn stray_acks_of_unknown_connections_are_ignored() {
    let (events, stats) = run(&[c(1, ACK, b""), s(1, ACK | FIN, b""), c(9, RST, b"")]);
    assert!(events.is_empty());
    assert_eq!(stats.connections, 0);
}

#[test]
fn syn_ack_alone_makes_its_sender_the_server() {
    let segs = [
        s(900, SYN | ACK, b""),
        c(101, ACK, b""),
        c(101, ACK, b"ping"),
        s(901, ACK, b"pong"),
    ];
    let (events, _) = run(&segs);
    assert_eq!(role_of(&events, 1), Role::Server);
    assert_eq!(stream(&events, 1, Direction::Ingress), "ping");
    assert_eq!(stream(&events, 1, Direction::Egress), "pong");
    assert!(sockets(&events).iter().all(|e| e.local == addr(SERVER)));
}

#[test]
fn rst_flushes_and_closes_once() {
    let mut segs = handshake(0, 0);
    segs.extend([
        c(1, ACK, b"abc"),
        c(7, ACK, b"ghi"), // hole of 3 before it
        s(1, RST, b""),
        c(10, ACK, b"late"), // after the reset
        s(1, RST, b""),
    ]);
    let (events, stats) = run(&segs);
    assert_eq!(stream(&events, 1, Direction::Ingress), "abc[gap 3]ghi");
    let closes = sockets(&events)
        .iter()
        .filter(|e| e.kind == SocketEventKind::Close)
        .count();
    assert_eq!(closes, 1);
    assert_eq!(stats.late_segments, 2);
}

#[test]
fn a_new_syn_on_a_reused_tuple_is_a_new_connection() {
    let mut segs = handshake(100, 200);
    segs.extend([
        c(101, ACK, b"first"),
        c(106, FIN | ACK, b""),
        s(201, FIN | ACK, b""),
        c(107, ACK, b""),
    ]);
    segs.extend(handshake(5_000, 6_000));
    segs.push(c(5_001, ACK, b"second"));
    // A retransmitted SYN of the second connection changes nothing.
    segs.push(c(5_000, SYN, b""));
    segs.extend([c(5_007, FIN | ACK, b""), s(6_001, FIN | ACK, b"")]);
    // Neither does a late copy of its SYN after it closed.
    segs.push(c(5_000, SYN, b""));
    let (events, _) = run(&segs);
    assert_eq!(
        shows(&events),
        ["open#1", "#1 in first", "close#1", "open#2", "#2 in second", "close#2"]
    );
}

#[test]
fn a_new_syn_on_an_open_tuple_closes_the_old_connection() {
    let mut segs = handshake(100, 200);
    segs.push(c(101, ACK, b"old"));
    segs.extend(handshake(777, 888));
    segs.push(c(778, ACK, b"new"));
    let (events, _) = run(&segs);
    assert_eq!(
        shows(&events),
        ["open#1", "#1 in old", "close#1", "open#2", "#2 in new", "close#2"]
    );
}

#[test]
fn max_capture_bytes_truncates_but_keeps_the_length() {
    let limits = Limits {
        max_capture_bytes: Some(4),
        ..Limits::default()
    };
    let mut segs = handshake(0, 0);
    segs.extend([c(1, ACK, b"0123456789"), s(1, ACK, b"ab")]);
    let (events, _) = run_with(limits, &segs);
    let data: Vec<_> = sockets(&events)
        .into_iter()
        .filter(|e| e.kind == SocketEventKind::Data)
        .collect();
    assert_eq!(
        (&data[0].data[..], data[0].len, data[0].truncated()),
        (&b"0123"[..], 10, true)
    );
    assert_eq!(
        (&data[1].data[..], data[1].len, data[1].truncated()),
        (&b"ab"[..], 2, false)
    );
}

#[test]
fn snaplen_cut_payload_becomes_a_gap() {
    let mut r = Reassembler::new(Limits::default());
    for (i, sg) in handshake(0, 0).iter().enumerate() {
        r.segment(i as u64, sg);
    }
    r.segment(
        5,
        &TcpSegment {
            missing: 6,
            ..c(1, ACK, b"abcd")
        },
    );
    r.segment(6, &c(11, ACK, b"next"));
    r.finish();
    assert_eq!(stream(&r.take_events(), 1, Direction::Ingress), "abcd[gap 6]next");
}

#[test]
fn connection_table_is_bounded() {
    let limits = Limits {
        max_connections: 8,
        ..Limits::default()
    };
    let mut r = Reassembler::new(limits);
    for i in 0..20u16 {
        let src = format!("10.0.0.1:{}", 1000 + i);
        let sg = TcpSegment {
            src: addr(&src),
            dst: addr(SERVER),
            seq: 1,
            flags: ACK,
            payload: b"x",
            missing: 0,
        };
        r.segment(u64::from(i), &sg);
        assert!(r.connections() <= 8);
    }
    assert_eq!(r.stats().evicted_max_connections, 20 - 8);
    let events = r.take_events();
    let closed: Vec<u64> = sockets(&events)
        .iter()
        .filter(|e| e.kind == SocketEventKind::Close)
        .map(|e| e.conn_id)
        .collect();
    assert_eq!(
        closed,
        (1..=12).collect::<Vec<u64>>(),
        "the least recently active go first"
    );
}

#[test]
fn idle_connections_are_closed() {
    let limits = Limits {
        idle_timeout_ns: 10_000_000_000,
        ..Limits::default()
    };
    let mut r = Reassembler::new(limits);
    r.segment(1_000_000_000, &c(1, ACK, b"old"));
    r.segment(2_000_000_000, &seg("10.0.0.9:5", SERVER, 1, ACK, b"busy"));
    r.segment(11_500_000_000, &seg("10.0.0.9:5", SERVER, 5, ACK, b"!"));
    r.segment(13_000_000_000, &seg("10.0.0.9:5", SERVER, 6, ACK, b"!"));
    assert_eq!(r.stats().evicted_idle, 1);
    let events = r.take_events();
    assert!(shows(&events).contains(&"close#1".to_string()));
    assert!(!shows(&events).contains(&"close#2".to_string()));
}
