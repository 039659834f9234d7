#![allow(dead_code)]
//! Synthetic but realistic traffic for the benchmarks: curl-like HTTP/1.1 keep-alive
//! exchanges and h2c streams (HPACK with a dynamic table in use).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use perisco_engine::event::{Direction, ProcessInfo, Role, SocketData, SocketEventKind};

pub fn event(conn_id: u64, dir: Direction, ts: u64, data: Bytes, process: &Arc<ProcessInfo>) -> SocketData {
    let local: SocketAddr = "10.0.0.2:8080".parse().unwrap();
    let peer = SocketAddr::from(([10, 0, 0, 1], 30000 + (conn_id % 30000) as u16));
    SocketData {
        conn_id,
        kind: SocketEventKind::Data,
        ts_ns: ts,
        process: process.clone(),
        local,
        peer,
        role: Role::Server,
        direction: dir,
        len: data.len() as u32,
        data,
    }
}

pub const H1_REQ: &[u8] = b"GET /api/v1/items?id=42&fields=name,price HTTP/1.1\r\nHost: shop.default.svc:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
pub const H1_RESP: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 13:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 27\r\nConnection: keep-alive\r\n\r\n{\"name\":\"pen\",\"price\":1.5}\n";

/// `conns` connections × `per_conn` keep-alive exchanges, one write per message.
pub fn http1(conns: u64, per_conn: u64) -> Vec<SocketData> {
    let process = Arc::new(ProcessInfo {
        pid: 1,
        comm: Some("nginx".into()),
        container_id: None,
    });
    // Copied to the heap: aligned as captured bytes are, whatever the binary's layout (the
    // static's alignment moved instruction counts by 1.5 % between builds).
    let (req, resp) = (Bytes::copy_from_slice(H1_REQ), Bytes::copy_from_slice(H1_RESP));
    let mut evs = Vec::new();
    let mut ts = 1_700_000_000_000_000_000u64;
    for _ in 0..per_conn {
        for c in 0..conns {
            ts += 1000;
            evs.push(event(c, Direction::Ingress, ts, req.clone(), &process));
            evs.push(event(c, Direction::Egress, ts + 500, resp.clone(), &process));
        }
    }
    evs
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn literal(block: &mut Vec<u8>, name_index: u8, value: &[u8]) {
    block.push(0x40 | name_index); // literal with incremental indexing, indexed name
    block.push(value.len() as u8);
    block.extend_from_slice(value);
}

/// `conns` h2c connections × `per_conn` streams; one write per HEADERS/DATA group.
pub fn http2(conns: u64, per_conn: u32) -> Vec<SocketData> {
    let process = Arc::new(ProcessInfo {
        pid: 1,
        comm: Some("nghttpd".into()),
        container_id: None,
    });
    let mut evs = Vec::new();
    let mut ts = 1_700_000_000_000_000_000u64;
    // One buffer shared by every connection's preface (and SETTINGS), as for the streams.
    let mut pre = perisco_h2::PREFACE.to_vec();
    frame(&mut pre, 4, 0, 0, &[]);
    let pre = Bytes::from(pre);
    let mut settings = Vec::new();
    frame(&mut settings, 4, 0, 0, &[]);
    let settings = Bytes::from(settings);
    for c in 0..conns {
        evs.push(event(c, Direction::Ingress, ts, pre.clone(), &process));
        evs.push(event(c, Direction::Egress, ts, settings.clone(), &process));
    }
    for i in 0..per_conn {
        let stream = 1 + 2 * i;
        let mut req_block = vec![0x82, 0x86];
        literal(&mut req_block, 4, b"/api/v1/items?id=42");
        literal(&mut req_block, 1, b"shop.default.svc:8080");
        literal(&mut req_block, 58, b"nghttp2/1.52.0");
        let mut req = Vec::new();
        frame(&mut req, 1, 0x05, stream, &req_block);
        let req = Bytes::from(req);
        let mut resp_block = vec![0x88];
        literal(&mut resp_block, 31, b"application/json");
        literal(&mut resp_block, 54, b"nghttpd nghttp2/1.52.0");
        let mut resp = Vec::new();
        frame(&mut resp, 1, 0x04, stream, &resp_block);
        frame(&mut resp, 0, 0x01, stream, b"{\"name\":\"pen\",\"price\":1.5}\n");
        let resp = Bytes::from(resp);
        for c in 0..conns {
            ts += 1000;
            evs.push(event(c, Direction::Ingress, ts, req.clone(), &process));
            evs.push(event(c, Direction::Egress, ts + 500, resp.clone(), &process));
        }
    }
    evs
}
