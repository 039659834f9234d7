//! The whole `parse` → `match` path on arbitrary socket events (any protocol, any role):
//! never panics; every record built is serialisable.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use perisco_engine::event::{Direction, ProcessInfo, Role, SocketData, SocketEventKind};
use perisco_l7::{MatchConfig, Matcher, ParseConfig, Parser};

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let role = match cfg % 3 {
        0 => Role::Server,
        1 => Role::Client,
        _ => Role::Unknown,
    };
    let parse = ParseConfig {
        max_body_bytes: usize::from(cfg >> 5),
        max_connections: 4,
        ..ParseConfig::default()
    };
    let mut parser = Parser::new(&parse);
    let mut matcher = Matcher::new(&MatchConfig {
        max_connections: 4,
        ..MatchConfig::default()
    });
    let process = Arc::new(ProcessInfo::default());
    let (mut msgs, mut recs) = (Vec::new(), Vec::new());
    let mut ts = 0u64;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(n);
        rest = next;
        ts += 1 + u64::from(op >> 5);
        let kind = match (op >> 1) & 7 {
            0 => SocketEventKind::Gap,
            1 => SocketEventKind::Close,
            2 => SocketEventKind::Open,
            _ => SocketEventKind::Data,
        };
        let cut = if (op >> 4) & 1 == 1 { u32::from(*len) } else { 0 };
        let ev = SocketData {
            conn_id: u64::from(op >> 6),
            kind,
            ts_ns: ts,
            process: process.clone(),
            local: "127.0.0.1:80".parse().unwrap(),
            peer: "127.0.0.1:40000".parse().unwrap(),
            role,
            direction: if op & 1 == 0 {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            data: Bytes::copy_from_slice(chunk),
            len: n as u32 + cut,
        };
        parser.push(&ev, &mut msgs);
        for m in msgs.drain(..) {
            matcher.push(Box::new(m), &mut recs);
        }
        matcher.expire(ts, &mut recs);
    }
    parser.flush(&mut msgs);
    for m in msgs.drain(..) {
        matcher.push(Box::new(m), &mut recs);
    }
    matcher.flush(&mut recs);
    for r in &recs {
        let _ = perisco_engine::event::Event::Record(r.clone()).write_json(&mut Vec::new());
    }
});
