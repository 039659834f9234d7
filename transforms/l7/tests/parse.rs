//! `parse` on hand-made socket events: roles, detection split at every byte, redaction,
//! unknown protocols, gaps, truncation, eviction and the h2c upgrade hand-over.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use perisco_engine::event::{Direction, L7Body, L7Message, ProcessInfo, Role, SocketData, SocketEventKind};
use perisco_l7::{MatchConfig, Matcher, ParseConfig, Parser};

const SERVER: &str = "10.0.0.2:8080";
const CLIENT: &str = "10.0.0.1:40000";

fn ev(conn_id: u64, role: Role, dir: Direction, kind: SocketEventKind, ts: u64, data: &[u8], len: u32) -> SocketData {
    // The capturing socket is the server for Role::Server and Unknown, the client for Role::Client.
    let (local, peer): (SocketAddr, SocketAddr) = match role {
        Role::Client => (CLIENT.parse().unwrap(), SERVER.parse().unwrap()),
        _ => (SERVER.parse().unwrap(), CLIENT.parse().unwrap()),
    };
    SocketData {
        conn_id,
        kind,
        ts_ns: ts,
        process: Arc::new(ProcessInfo {
            pid: 7,
            comm: Some("app".into()),
            container_id: None,
        }),
        local,
        peer,
        role,
        direction: dir,
        data: Bytes::copy_from_slice(data),
        len,
    }
}

fn data(conn_id: u64, role: Role, dir: Direction, ts: u64, d: &[u8]) -> SocketData {
    ev(conn_id, role, dir, SocketEventKind::Data, ts, d, d.len() as u32)
}

fn brief(m: &L7Message) -> String {
    let who = format!("{}>{}", m.conn.client, m.conn.server);
    match &m.body {
        L7Body::Request(r) => format!(
            "{who} {} {} @{} {:?} {:?}",
            r.method, r.url, m.ts_ns, m.stream_id, m.incomplete
        ),
        L7Body::Response(r) => format!("{who} {} @{} {:?} {:?}", r.code, m.ts_ns, m.stream_id, m.incomplete),
        L7Body::NoResponse => format!("{who} no response @{} {:?} {:?}", m.ts_ns, m.stream_id, m.incomplete),
        L7Body::Closed => format!("{who} closed"),
    }
}

fn run(cfg: &ParseConfig, evs: &[SocketData]) -> (Vec<String>, Vec<L7Message>, perisco_l7::ParseStats) {
    let mut p = Parser::new(cfg);
    let mut out = Vec::new();
    for e in evs {
        p.push(e, &mut out);
    }
    (out.iter().map(brief).collect(), out, p.stats())
}

const REQ: &[u8] = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cret\r\n\r\n";
const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nSet-Cookie: id=1\r\nContent-Length: 2\r\n\r\nok";

fn exchange(role: Role) -> Vec<SocketData> {
    use Direction::*;
    let (req_dir, resp_dir) = if role == Role::Client {
        (Egress, Ingress)
    } else {
        (Ingress, Egress)
    };
    vec![
        ev(1, role, req_dir, SocketEventKind::Open, 1, b"", 0),
        data(1, role, req_dir, 10, REQ),
        data(1, role, resp_dir, 20, RESP),
        ev(1, role, req_dir, SocketEventKind::Close, 30, b"", 0),
    ]
}

#[test]
fn server_client_and_unknown_roles_agree() {
    let want = [
        "10.0.0.1:40000>10.0.0.2:8080 GET /a?x=1 @10 None []",
        "10.0.0.1:40000>10.0.0.2:8080 200 @20 None []",
        "10.0.0.1:40000>10.0.0.2:8080 closed",
    ];
    for role in [Role::Server, Role::Client, Role::Unknown] {
        let (got, _, _) = run(&ParseConfig::default(), &exchange(role));
        assert_eq!(got, want, "{role:?}");
    }
}

#[test]
fn unknown_role_learns_the_client_from_a_status_line_first() {
    // The response direction is seen first (e.g. a capture that misses the request's packet).
    let evs = [
        data(
            1,
            Role::Unknown,
            Direction::Egress,
            5,
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ),
        data(1, Role::Unknown, Direction::Ingress, 10, b"GET /n HTTP/1.1\r\n\r\n"),
    ];
    let (got, _, _) = run(&ParseConfig::default(), &evs);
    assert_eq!(
        got,
        [
            "10.0.0.1:40000>10.0.0.2:8080 204 @5 None []",
            "10.0.0.1:40000>10.0.0.2:8080 GET /n @10 None []"
        ]
    );
}

#[test]
fn detection_split_at_every_byte() {
    let whole = run(&ParseConfig::default(), &exchange(Role::Unknown)).0;
    for k in 1..REQ.len() {
        for role in [Role::Server, Role::Unknown] {
            let evs = [
                data(1, role, Direction::Ingress, 10, &REQ[..k]),
                data(1, role, Direction::Ingress, 11, &REQ[k..]),
                data(1, role, Direction::Egress, 20, RESP),
                ev(1, role, Direction::Ingress, SocketEventKind::Close, 30, b"", 0),
            ];
            assert_eq!(run(&ParseConfig::default(), &evs).0, whole, "split at {k}, {role:?}");
        }
    }
}

#[test]
fn sensitive_headers_are_redacted_by_default() {
    let (_, msgs, stats) = run(&ParseConfig::default(), &exchange(Role::Server));
    let all: Vec<(String, String)> = msgs
        .iter()
        .flat_map(|m| match &m.body {
            L7Body::Request(r) => r.headers.clone(),
            L7Body::Response(r) => r.headers.clone(),
            L7Body::NoResponse | L7Body::Closed => vec![],
        })
        .map(|h| (h.key.to_string(), h.value.to_string()))
        .collect();
    assert!(all.contains(&("Authorization".into(), "[REDACTED]".into())), "{all:?}");
    assert!(all.contains(&("Set-Cookie".into(), "[REDACTED]".into())), "{all:?}");
    assert!(all.contains(&("Host".into(), "h".into())));
    assert!(!format!("{msgs:?}").contains("s3cret"));
    assert_eq!(stats.redacted_headers, 2);

    let cfg = ParseConfig {
        redact_headers: vec!["host".into()],
        ..ParseConfig::default()
    };
    let (_, msgs, _) = run(&cfg, &exchange(Role::Server));
    let dbg = format!("{msgs:?}");
    assert!(
        dbg.contains("s3cret") && !dbg.contains("value: \"h\""),
        "only the configured list is redacted"
    );
}

#[test]
fn redaction_applies_to_http2_too() {
    // h2c prior knowledge: preface, SETTINGS, HEADERS (literal "authorization" with a value).
    let mut client = perisco_h2::PREFACE.to_vec();
    client.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut block = vec![0x82, 0x86, 0x84]; // :method GET, :scheme http, :path /
    block.push(0x00); // literal without indexing, new name
    block.push(13);
    block.extend_from_slice(b"authorization");
    block.push(6);
    block.extend_from_slice(b"Basic!");
    client.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x05, 0, 0, 0, 1]);
    client.extend_from_slice(&block);
    let server = [0u8, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x05, 0, 0, 0, 1, 0x88];
    let evs = [
        data(3, Role::Server, Direction::Ingress, 10, &client),
        data(3, Role::Server, Direction::Egress, 20, &server),
    ];
    let (got, msgs, _) = run(&ParseConfig::default(), &evs);
    assert_eq!(
        got,
        [
            "10.0.0.1:40000>10.0.0.2:8080 GET / @10 Some(1) []",
            "10.0.0.1:40000>10.0.0.2:8080 200 @20 Some(1) []"
        ]
    );
    let L7Body::Request(r) = &msgs[0].body else { panic!() };
    assert!(
        r.headers
            .iter()
            .any(|h| h.key == "authorization" && h.value == "[REDACTED]"),
        "{:?}",
        r.headers
    );
}

#[test]
fn not_http_is_skipped_and_counted() {
    let evs = [
        data(5, Role::Server, Direction::Ingress, 1, b"*1\r\n$4\r\nPING\r\n"),
        data(5, Role::Server, Direction::Egress, 2, b"+PONG\r\n"),
        data(5, Role::Server, Direction::Ingress, 3, b"GET / HTTP/1.1\r\n\r\n"),
        data(
            6,
            Role::Server,
            Direction::Ingress,
            4,
            &[0x16, 3, 1, 0, 0xa5, 1, 0, 0, 0xa1, 3, 3],
        ),
        ev(5, Role::Server, Direction::Ingress, SocketEventKind::Close, 5, b"", 0),
    ];
    let (got, _, stats) = run(&ParseConfig::default(), &evs);
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(stats.unknown_connections, 2);
    assert!(stats.skipped_unknown_bytes >= 14 + 7 + 18, "{stats:?}");
}

#[test]
fn truncated_write_marks_and_keeps_pairing() {
    // The capture kept 40 of the 300 bytes of the request head.
    let long = format!(
        "GET /cut HTTP/1.1\r\nHost: h\r\nUser-Agent: {}\r\n\r\n",
        "x".repeat(250)
    );
    let evs = [
        ev(
            1,
            Role::Server,
            Direction::Ingress,
            SocketEventKind::Data,
            10,
            &long.as_bytes()[..40],
            long.len() as u32,
        ),
        data(
            1,
            Role::Server,
            Direction::Egress,
            20,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
        data(1, Role::Server, Direction::Ingress, 30, b"GET /next HTTP/1.1\r\n\r\n"),
        data(
            1,
            Role::Server,
            Direction::Egress,
            40,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    let (got, _, _) = run(&ParseConfig::default(), &evs);
    assert_eq!(
        got,
        [
            "10.0.0.1:40000>10.0.0.2:8080 GET /cut @10 None [\"request_truncated\"]",
            "10.0.0.1:40000>10.0.0.2:8080 200 @20 None []",
            "10.0.0.1:40000>10.0.0.2:8080 GET /next @30 None []",
            "10.0.0.1:40000>10.0.0.2:8080 200 @40 None []",
        ]
    );
}

#[test]
fn gap_that_loses_framing_flushes_match() {
    let evs = [
        data(1, Role::Server, Direction::Ingress, 10, b"GET /1 HTTP/1.1\r\n\r\n"),
        data(
            1,
            Role::Server,
            Direction::Egress,
            20,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ),
        ev(1, Role::Server, Direction::Egress, SocketEventKind::Gap, 25, b"", 0),
        data(1, Role::Server, Direction::Ingress, 30, b"GET /2 HTTP/1.1\r\n\r\n"),
        ev(1, Role::Server, Direction::Ingress, SocketEventKind::Gap, 35, b"", 0),
        data(
            1,
            Role::Server,
            Direction::Egress,
            40,
            b"cde\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    let (got, msgs, stats) = run(&ParseConfig::default(), &evs);
    assert_eq!(stats.gaps, 2);
    assert!(got.iter().any(|g| g.ends_with("closed")), "{got:?}");
    let mut m = Matcher::new(&MatchConfig::default());
    let mut recs = Vec::new();
    for msg in msgs {
        m.push(Box::new(msg), &mut recs);
    }
    m.flush(&mut recs);
    assert_eq!(recs[0].l7.response.as_ref().map(|r| r.http.code), Some(200));
    assert!(
        recs[1..].iter().all(|r| !r.incomplete.is_empty()),
        "after lost framing nothing is paired by guess"
    );
}

#[test]
fn max_connections_evicts_least_recent() {
    let cfg = ParseConfig {
        max_connections: 2,
        ..ParseConfig::default()
    };
    let evs: Vec<SocketData> = (1..=3)
        .map(|i| data(i, Role::Server, Direction::Ingress, i, b"GET / HTTP/1.1\r\n"))
        .collect();
    let mut p = Parser::new(&cfg);
    let mut out = Vec::new();
    for e in &evs {
        p.push(e, &mut out);
    }
    assert_eq!(p.connections(), 2);
    assert_eq!(p.stats().evicted_connections, 1);
}

#[test]
fn h2c_upgrade_with_the_preface_before_the_101() {
    let req = b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let mut preface = perisco_h2::PREFACE.to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut server = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    server.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x05, 0, 0, 0, 1, 0x88]);
    for early in [true, false] {
        let mut evs = vec![data(1, Role::Server, Direction::Ingress, 10, req)];
        if early {
            evs.push(data(1, Role::Server, Direction::Ingress, 11, &preface));
            evs.push(data(1, Role::Server, Direction::Egress, 20, &server));
        } else {
            evs.push(data(1, Role::Server, Direction::Egress, 20, &server));
            evs.push(data(1, Role::Server, Direction::Ingress, 21, &preface));
        }
        let (got, msgs, stats) = run(&ParseConfig::default(), &evs);
        assert_eq!(
            got,
            [
                "10.0.0.1:40000>10.0.0.2:8080 GET /up @10 Some(1) []",
                "10.0.0.1:40000>10.0.0.2:8080 200 @20 Some(1) []"
            ],
            "early preface: {early}"
        );
        assert_eq!(stats.http2_errors + stats.http1_errors, 0);
        let mut m = Matcher::new(&MatchConfig::default());
        let mut recs = Vec::new();
        for msg in msgs {
            m.push(Box::new(msg), &mut recs);
        }
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].l7.latency_ns, Some(10));
        assert_eq!(recs[0].l7.response.as_ref().unwrap().http.protocol, "HTTP/2");
    }
}

#[test]
fn h2c_upgrade_request_is_redacted_and_counted_once() {
    // HTTP/1 heads are redacted as they are parsed, HTTP/2 messages afterwards; the upgrade
    // request is an HTTP/1 head that travels as stream 1, so it meets both.
    let req = b"GET /up HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cret\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let (got, msgs, stats) = run(
        &ParseConfig::default(),
        &[data(1, Role::Server, Direction::Ingress, 10, req)],
    );
    assert_eq!(got, ["10.0.0.1:40000>10.0.0.2:8080 GET /up @10 Some(1) []"]);
    assert!(!format!("{msgs:?}").contains("s3cret"));
    assert_eq!(stats.redacted_headers, 1);
}

#[test]
fn config_validation_names_the_key() {
    let bad = ParseConfig {
        max_connections: 0,
        redact_headers: vec!["ok".into(), "bad header".into()],
        ..ParseConfig::default()
    };
    let keys: Vec<_> = perisco_engine::ComponentConfig::validate(&bad)
        .into_iter()
        .filter_map(|e| e.key)
        .collect();
    assert_eq!(keys, ["max_connections", "redact_headers.1"]);
}
