//! Hand-built frames and capture files for the tests.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use perisco_engine::event::{Direction, Event, Role, SocketData, SocketEventKind};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// TCP header (20 bytes, or with 12 bytes of options) + payload.
pub fn tcp(src: SocketAddr, dst: SocketAddr, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_opts(src, dst, seq, flags, payload, false)
}

pub fn tcp_opts(src: SocketAddr, dst: SocketAddr, seq: u32, flags: u8, payload: &[u8], options: bool) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(src.port().to_be_bytes());
    t.extend(dst.port().to_be_bytes());
    t.extend(seq.to_be_bytes());
    t.extend(1u32.to_be_bytes()); // ack
    let words: u8 = if options { 8 } else { 5 };
    t.push(words << 4);
    t.push(flags);
    t.extend(65535u16.to_be_bytes());
    t.extend([0, 0, 0, 0]); // checksum, urgent
    if options {
        t.extend([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP timestamps
    }
    t.extend(payload);
    t
}

/// An IP packet (v4 or v6 by the addresses) around a TCP segment.
pub fn ip(src: SocketAddr, dst: SocketAddr, l4: &[u8]) -> Vec<u8> {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0x45, 0];
            p.extend(((20 + l4.len()) as u16).to_be_bytes());
            p.extend([0, 1, 0x40, 0, 64, 6, 0, 0]); // id, DF, ttl, tcp, checksum
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend(l4);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_with_ext(s.octets(), d.octets(), &[], l4),
        _ => panic!("mixed families"),
    }
}

/// IPv6 with extension headers: each (type, body) where body length + 2 is a multiple of 8.
pub fn ipv6_with_ext(src: [u8; 16], dst: [u8; 16], ext: &[(u8, Vec<u8>)], l4: &[u8]) -> Vec<u8> {
    let mut exts = Vec::new();
    for (i, (_, body)) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(6, |(t, _)| *t);
        let total = body.len() + 2;
        assert_eq!(total % 8, 0);
        exts.push(next);
        exts.push((total / 8 - 1) as u8);
        exts.extend(body);
    }
    let first = ext.first().map_or(6, |(t, _)| *t);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend(((exts.len() + l4.len()) as u16).to_be_bytes());
    p.push(first);
    p.push(64);
    p.extend(src);
    p.extend(dst);
    p.extend(exts);
    p.extend(l4);
    p
}

pub fn ethertype_of(l3: &[u8]) -> u16 {
    if l3[0] >> 4 == 6 { 0x86dd } else { 0x0800 }
}

pub fn ethernet(l3: &[u8], vlans: &[u16]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
    for (i, tpid) in vlans.iter().enumerate() {
        f.extend(tpid.to_be_bytes());
        f.extend((100 + i as u16).to_be_bytes()); // TCI
    }
    f.extend(ethertype_of(l3).to_be_bytes());
    f.extend(l3);
    f
}

pub fn sll(l3: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(0u16.to_be_bytes()); // packet type: to us
    f.extend(772u16.to_be_bytes()); // ARPHRD_LOOPBACK
    f.extend(6u16.to_be_bytes()); // address length
    f.extend([0; 8]);
    f.extend(ethertype_of(l3).to_be_bytes());
    f.extend(l3);
    f
}

pub fn sll2(l3: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(ethertype_of(l3).to_be_bytes());
    f.extend([0, 0]); // reserved
    f.extend(1u32.to_be_bytes()); // ifindex
    f.extend(772u16.to_be_bytes()); // hatype
    f.push(0); // packet type
    f.push(6); // address length
    f.extend([0; 8]);
    f.extend(l3);
    f
}

/// LINKTYPE_NULL (host order family; `le` picks the writer's endianness) or LOOP (network order).
pub fn null(l3: &[u8], family: u32, le: bool) -> Vec<u8> {
    let mut f = if le {
        family.to_le_bytes().to_vec()
    } else {
        family.to_be_bytes().to_vec()
    };
    f.extend(l3);
    f
}

/// A legacy pcap file (little endian), microsecond or nanosecond timestamps.
pub fn pcap_file(linktype: u32, nanos: bool, packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(if nanos { 0xa1b23c4du32 } else { 0xa1b2c3d4u32 }.to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(4u16.to_le_bytes());
    f.extend([0; 8]);
    f.extend(65535u32.to_le_bytes());
    f.extend(linktype.to_le_bytes());
    for (ts_ns, data) in packets {
        let frac = if nanos {
            ts_ns % 1_000_000_000
        } else {
            ts_ns % 1_000_000_000 / 1000
        };
        f.extend(((ts_ns / 1_000_000_000) as u32).to_le_bytes());
        f.extend((frac as u32).to_le_bytes());
        f.extend((data.len() as u32).to_le_bytes());
        f.extend((data.len() as u32).to_le_bytes());
        f.extend(data);
    }
    f
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    pad4(&mut body);
    let len = (12 + body.len()) as u32;
    let mut b = Vec::new();
    b.extend(kind.to_le_bytes());
    b.extend(len.to_le_bytes());
    b.extend(body);
    b.extend(len.to_le_bytes());
    b
}

/// A pcapng section: interfaces as (linktype, if_tsresol option or None), packets as
/// (interface id, timestamp in that interface's units, frame).
pub fn pcapng_file(interfaces: &[(u16, Option<u8>)], packets: &[(u32, u64, Vec<u8>)]) -> Vec<u8> {
    let mut f = Vec::new();
    let mut shb = Vec::new();
    shb.extend(0x1a2b3c4du32.to_le_bytes());
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    f.extend(block(0x0a0d0d0a, &shb));
    for (linktype, tsresol) in interfaces {
        let mut idb = Vec::new();
        idb.extend(linktype.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(0u32.to_le_bytes()); // snaplen
        if let Some(r) = tsresol {
            idb.extend(9u16.to_le_bytes());
            idb.extend(1u16.to_le_bytes());
            idb.extend([*r, 0, 0, 0]);
            idb.extend([0, 0, 0, 0]); // opt_endofopt
        }
        f.extend(block(1, &idb));
    }
    for (if_id, ts, data) in packets {
        let mut epb = Vec::new();
        epb.extend(if_id.to_le_bytes());
        epb.extend(((ts >> 32) as u32).to_le_bytes());
        epb.extend((*ts as u32).to_le_bytes());
        epb.extend((data.len() as u32).to_le_bytes());
        epb.extend((data.len() as u32).to_le_bytes());
        epb.extend(data);
        pad4(&mut epb);
        f.extend(block(6, &epb));
    }
    f
}

/// The socket events in a batch.
pub fn sockets(events: &[Event]) -> Vec<&SocketData> {
    events
        .iter()
        .map(|e| match e {
            Event::Socket(s) => s,
            other => panic!("not a socket event: {other:?}"),
        })
        .collect()
}

/// A compact view of one event: kind, direction and payload (as text) or gap length.
pub fn show(s: &SocketData) -> String {
    let dir = match s.direction {
        Direction::Ingress => "in",
        Direction::Egress => "out",
    };
    match s.kind {
        SocketEventKind::Open => format!("open#{}", s.conn_id),
        SocketEventKind::Close => format!("close#{}", s.conn_id),
        SocketEventKind::Gap => format!("gap#{} {dir} {}", s.conn_id, s.len),
        SocketEventKind::Data => format!("#{} {dir} {}", s.conn_id, String::from_utf8_lossy(&s.data)),
    }
}

pub fn shows(events: &[Event]) -> Vec<String> {
    sockets(events).into_iter().map(show).collect()
}

pub fn role_of(events: &[Event], conn: u64) -> Role {
    sockets(events)
        .into_iter()
        .find(|s| s.conn_id == conn)
        .map(|s| s.role)
        .unwrap()
}
