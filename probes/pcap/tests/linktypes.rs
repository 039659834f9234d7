//! Hand-built frames of every supported link type, in pcap and pcapng files.

use crate::common;

use std::io::Cursor;
use std::net::SocketAddr;

use common::*;
use perisco_engine::event::{Event, Role};
use perisco_pcap::decode::{self, Skip};
use perisco_pcap::{Limits, PacketReader, ReadError, read_events, read_file};

/// A whole HTTP-ish exchange as IP packets: handshake, request, response, FINs.
fn conversation(client: SocketAddr, server: SocketAddr) -> Vec<Vec<u8>> {
    let seg = |from_client: bool, seq: u32, flags: u8, payload: &[u8]| {
        let (s, d) = if from_client {
            (client, server)
        } else {
            (server, client)
        };
        ip(s, d, &tcp_opts(s, d, seq, flags, payload, true))
    };
    vec![
        seg(true, 10, SYN, b""),
        seg(false, 20, SYN | ACK, b""),
        seg(true, 11, ACK, b""),
        seg(true, 11, ACK | PSH, b"GET /x HTTP/1.1\r\n\r\n"),
        seg(false, 21, ACK | PSH, b"HTTP/1.1 200 OK\r\n\r\n"),
        seg(true, 30, ACK | FIN, b""),
        seg(false, 40, ACK | FIN, b""),
    ]
}

fn check_conversation(events: &[Event], client: SocketAddr, server: SocketAddr) {
    assert_eq!(
        shows(events),
        [
            "open#1",
            "#1 in GET /x HTTP/1.1\r\n\r\n",
            "#1 out HTTP/1.1 200 OK\r\n\r\n",
            "close#1"
        ]
    );
    for s in sockets(events) {
        assert_eq!((s.local, s.peer, s.role), (server, client, Role::Server));
    }
}

fn v4() -> (SocketAddr, SocketAddr) {
    (addr("192.168.1.10:51000"), addr("192.168.1.20:8080"))
}

fn v6() -> (SocketAddr, SocketAddr) {
    (addr("[2001:db8::1]:51000"), addr("[2001:db8::2]:8080"))
}

/// Wrap each IP packet with `link`, write a pcap with `linktype`, read it back.
fn roundtrip(linktype: u32, link: impl Fn(&[u8]) -> Vec<u8>, (client, server): (SocketAddr, SocketAddr)) {
    let frames: Vec<(u64, Vec<u8>)> = conversation(client, server)
        .iter()
        .enumerate()
        .map(|(i, p)| (1_700_000_000_000_000_000 + i as u64 * 1000, link(p)))
        .collect();
    let file = pcap_file(linktype, true, &frames);
    let (events, stats) = read_events(Cursor::new(file), Limits::default()).unwrap();
    assert_eq!(stats.skipped, [0; 4], "linktype {linktype}");
    check_conversation(&events, client, server);
    assert_eq!(sockets(&events)[1].ts_ns, 1_700_000_000_000_003_000);
}

#[test]
fn ethernet() {
    roundtrip(1, |p| common::ethernet(p, &[]), v4());
    roundtrip(1, |p| common::ethernet(p, &[]), v6());
}

#[test]
fn ethernet_with_vlan_and_qinq_tags() {
    roundtrip(1, |p| common::ethernet(p, &[0x8100]), v4());
    roundtrip(1, |p| common::ethernet(p, &[0x88a8, 0x8100]), v6());
}

#[test]
fn linux_cooked_v1_and_v2() {
    roundtrip(113, sll, v4());
    roundtrip(113, sll, v6());
    roundtrip(276, sll2, v4());
    roundtrip(276, sll2, v6());
}

#[test]
fn bsd_loopback_null_and_loop() {
    roundtrip(0, |p| null(p, if p[0] >> 4 == 4 { 2 } else { 30 }, true), v4());
    roundtrip(0, |p| null(p, if p[0] >> 4 == 4 { 2 } else { 30 }, true), v6());
    roundtrip(0, |p| null(p, 2, false), v4()); // written by a big-endian host
    roundtrip(0, |p| null(p, 10, true), v6()); // Linux AF_INET6
    roundtrip(108, |p| null(p, if p[0] >> 4 == 4 { 2 } else { 24 }, false), v4());
    roundtrip(108, |p| null(p, 24, false), v6());
}

#[test]
fn raw_ip() {
    roundtrip(101, |p| p.to_vec(), v4());
    roundtrip(101, |p| p.to_vec(), v6());
    roundtrip(228, |p| p.to_vec(), v4());
    roundtrip(229, |p| p.to_vec(), v6());
}

#[test]
fn ipv6_extension_headers_are_skipped() {
    let (c, s) = (addr("[fe80::1]:1234"), addr("[fe80::2]:80"));
    let (SocketAddr::V6(c6), SocketAddr::V6(s6)) = (c, s) else {
        unreachable!()
    };
    let l4 = tcp(c, s, 7, ACK | PSH, b"payload");
    let ext = vec![
        (0u8, vec![0u8; 6]),            // hop-by-hop (8 bytes)
        (60u8, vec![0u8; 14]),          // destination options (16 bytes)
        (43u8, vec![0u8; 6]),           // routing
        (44u8, vec![0, 0, 0, 0, 0, 0]), // fragment header, offset 0, no more fragments: atomic
    ];
    let pkt = ipv6_with_ext(c6.ip().octets(), s6.ip().octets(), &ext, &l4);
    let seg = decode::decode(229, &pkt).unwrap();
    assert_eq!((seg.src, seg.dst, seg.seq, seg.payload), (c, s, 7, &b"payload"[..]));

    // A real fragment is not reassembled.
    let frag = vec![(44u8, vec![0, 1, 0, 0, 0, 1])]; // M flag set
    let pkt = ipv6_with_ext(c6.ip().octets(), s6.ip().octets(), &frag, &l4);
    assert_eq!(decode::decode(229, &pkt), Err(Skip::Fragment));
    // ESP: encrypted, not TCP as far as we can tell.
    let mut esp = ipv6_with_ext(c6.ip().octets(), s6.ip().octets(), &[], &l4);
    esp[6] = 50;
    assert_eq!(decode::decode(229, &esp), Err(Skip::NotTcp));
}

#[test]
fn ethernet_padding_is_not_payload() {
    let (c, s) = v4();
    let mut frame = common::ethernet(&ip(c, s, &tcp(c, s, 1, ACK, b"")), &[]);
    frame.extend([0u8; 6]); // a minimum-size frame is padded to 60 bytes
    let seg = decode::decode(1, &frame).unwrap();
    assert!(seg.payload.is_empty());
    assert_eq!(seg.missing, 0);
}

#[test]
fn snaplen_cut_is_reported_as_missing() {
    let (c, s) = v4();
    let frame = common::ethernet(&ip(c, s, &tcp(c, s, 1, ACK, b"0123456789")), &[]);
    let seg = decode::decode(1, &frame[..frame.len() - 4]).unwrap();
    assert_eq!((seg.payload, seg.missing), (&b"012345"[..], 4));
}

#[test]
fn skip_reasons() {
    let (c, s) = v4();
    let tcp_pkt = ip(c, s, &tcp(c, s, 1, ACK, b"x"));
    let mut udp = tcp_pkt.clone();
    udp[9] = 17;
    assert_eq!(decode::decode(101, &udp), Err(Skip::NotTcp));
    let mut frag = tcp_pkt.clone();
    frag[6] = 0x20; // more fragments
    assert_eq!(decode::decode(101, &frag), Err(Skip::Fragment));
    assert_eq!(decode::decode(147, &tcp_pkt), Err(Skip::UnsupportedLink));
    assert_eq!(decode::decode(101, &tcp_pkt[..30]), Err(Skip::Malformed));
    let mut arp = common::ethernet(&tcp_pkt, &[]);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(decode::decode(1, &arp), Err(Skip::NotTcp));
    let mut bad_ihl = tcp_pkt.clone();
    bad_ihl[0] = 0x43;
    assert_eq!(decode::decode(101, &bad_ihl), Err(Skip::Malformed));
}

#[test]
fn pcapng_with_interfaces_of_different_link_types_and_resolutions() {
    let (c, s) = v4();
    let (c6, s6) = v6();
    let a = conversation(c, s);
    let b = conversation(c6, s6);
    // Interface 0: Ethernet, default µs; 1: SLL2, ns (tsresol 9); 2: raw IP, 2^-10 s units.
    let t0 = 1_700_000_000u64;
    let mut packets = Vec::new();
    for (i, p) in a.iter().enumerate() {
        packets.push((0u32, (t0 * 1_000_000) + i as u64, common::ethernet(p, &[])));
    }
    for (i, p) in b.iter().enumerate() {
        packets.push((1u32, (t0 + 1) * 1_000_000_000 + i as u64, sll2(p)));
    }
    packets.push((2u32, (t0 + 2) * 1024 + 512, ip(c, s, &tcp(c, s, 1, ACK, b""))));
    let file = pcapng_file(&[(1, None), (276, Some(9)), (101, Some(0x80 | 10))], &packets);

    let mut reader = PacketReader::new(Cursor::new(file.clone())).unwrap();
    let mut seen = Vec::new();
    while let perisco_pcap::Next::Packet = reader.next_packet(|p| seen.push((p.ts_ns, p.linktype))).unwrap() {}
    assert_eq!(seen.len(), 15);
    assert_eq!(seen[0], (t0 * 1_000_000_000, 1));
    assert_eq!(seen[1], (t0 * 1_000_000_000 + 1_000, 1));
    assert_eq!(seen[8], ((t0 + 1) * 1_000_000_000 + 1, 276));
    assert_eq!(seen[14], ((t0 + 2) * 1_000_000_000 + 500_000_000, 101));

    let (events, _) = read_events(Cursor::new(file), Limits::default()).unwrap();
    let v4_events: Vec<Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Socket(s) if s.conn_id == 1))
        .cloned()
        .collect();
    check_conversation(&v4_events, c, s);
    let v6_events = sockets(&events).into_iter().filter(|s| s.conn_id == 2).count();
    assert_eq!(v6_events, 4);
}

#[test]
fn legacy_pcap_microseconds() {
    let (c, s) = v4();
    let frames = vec![(
        1_600_000_000_123_456_000u64,
        common::ethernet(&ip(c, s, &tcp(c, s, 1, ACK, b"x")), &[]),
    )];
    let mut reader = PacketReader::new(Cursor::new(pcap_file(1, false, &frames))).unwrap();
    let mut ts = 0;
    reader.next_packet(|p| ts = p.ts_ns).unwrap();
    assert_eq!(ts, 1_600_000_000_123_456_000);
}

#[test]
fn a_cut_short_file_ends_like_eof() {
    let (c, s) = v4();
    let frames: Vec<(u64, Vec<u8>)> = conversation(c, s)
        .into_iter()
        .map(|p| (1, common::ethernet(&p, &[])))
        .collect();
    let file = pcap_file(1, false, &frames);
    let cut = file[..file.len() - 10].to_vec();
    let mut reader = PacketReader::new(Cursor::new(cut.clone())).unwrap();
    let mut n = 0;
    let end = loop {
        match reader.next_packet(|_| n += 1).unwrap() {
            perisco_pcap::Next::Packet => {}
            perisco_pcap::Next::End(e) => break e,
        }
    };
    assert_eq!((n, end), (6, perisco_pcap::End::Truncated));
    let (events, _) = read_events(Cursor::new(cut), Limits::default()).unwrap();
    assert_eq!(shows(&events).len(), 4, "open, request, response, close at the end");
}

#[test]
fn not_a_capture_is_an_error() {
    let err = PacketReader::new(Cursor::new(b"GET / HTTP/1.1\r\n\r\nnot a pcap at all".to_vec()))
        .err()
        .unwrap();
    assert!(matches!(err, ReadError::Format(_)), "{err}");
    assert!(PacketReader::new(Cursor::new(Vec::new())).is_err());
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pcap");
    let err = read_file(&missing, Limits::default()).unwrap_err().to_string();
    assert!(err.contains("nope.pcap"), "{err}");
    let junk = dir.path().join("junk.pcapng");
    std::fs::write(&junk, b"\x00\x01garbage garbage garbage garbage").unwrap();
    let err = read_file(&junk, Limits::default()).unwrap_err().to_string();
    assert!(
        err.contains("junk.pcapng") && err.contains("not a pcap or pcapng"),
        "{err}"
    );
}
