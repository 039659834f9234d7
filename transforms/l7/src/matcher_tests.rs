use std::sync::Arc;

use perisco_engine::event::{ConnInfo, HttpRequest, HttpResponse, ProcessInfo};

use super::*;

fn conn(id: u64) -> Arc<ConnInfo> {
    Arc::new(ConnInfo {
        conn_id: id,
        client: "10.0.0.1:40000".parse().unwrap(),
        server: "10.0.0.2:8080".parse().unwrap(),
        process: Arc::new(ProcessInfo {
            pid: 42,
            comm: Some("srv".into()),
            container_id: Some("abc".into()),
        }),
    })
}

fn req(id: u64, url: &str, ts: u64, stream: Option<u32>) -> Box<L7Message> {
    Box::new(L7Message {
        conn: conn(id),
        ts_ns: ts,
        stream_id: stream,
        body: L7Body::Request(HttpRequest {
            protocol: "HTTP/1.1".into(),
            method: "GET".into(),
            url: url.into(),
            ..Default::default()
        }),
        grpc: None,
        incomplete: vec![],
    })
}

fn resp(id: u64, code: u16, ts: u64, stream: Option<u32>) -> Box<L7Message> {
    Box::new(L7Message {
        conn: conn(id),
        ts_ns: ts,
        stream_id: stream,
        body: L7Body::Response(HttpResponse {
            protocol: "HTTP/1.1".into(),
            code,
            ..Default::default()
        }),
        grpc: None,
        incomplete: vec![],
    })
}

fn closed(id: u64) -> Box<L7Message> {
    Box::new(L7Message {
        conn: conn(id),
        ts_ns: 0,
        stream_id: None,
        body: L7Body::Closed,
        grpc: None,
        incomplete: vec![],
    })
}

fn brief(r: &Record) -> String {
    format!(
        "{} {} {:?} {:?}",
        r.l7.request.as_ref().map_or("-", |q| q.http.url.as_str()),
        r.l7.response.as_ref().map_or(0, |p| p.http.code),
        r.l7.latency_ns,
        r.incomplete
    )
}

#[allow(clippy::vec_box)]
fn run(cfg: MatchConfig, msgs: Vec<Box<L7Message>>) -> (Vec<String>, Matcher) {
    let mut m = Matcher::new(&cfg);
    let mut out = Vec::new();
    for msg in msgs {
        m.push(msg, &mut out);
    }
    (out.iter().map(|r| brief(r)).collect(), m)
}

#[test]
fn http1_pairs_by_order() {
    let (r, m) = run(
        MatchConfig::default(),
        vec![
            req(1, "/a", 100, None),
            req(1, "/b", 110, None),
            resp(1, 200, 150, None),
            resp(1, 404, 170, None),
        ],
    );
    assert_eq!(r, ["/a 200 Some(50) []", "/b 404 Some(60) []"]);
    assert_eq!(m.waiting(), 0);
}

#[test]
fn http2_pairs_by_stream() {
    let (r, _) = run(
        MatchConfig::default(),
        vec![
            req(1, "/1", 100, Some(1)),
            req(1, "/3", 101, Some(3)),
            resp(1, 500, 130, Some(3)),
            resp(1, 200, 160, Some(1)),
            resp(1, 200, 170, Some(5)),
        ],
    );
    assert_eq!(r, ["/3 500 Some(29) []", "/1 200 Some(60) []"]);
}

#[test]
fn reused_stream_id_emits_the_old_request() {
    let (r, m) = run(
        MatchConfig::default(),
        vec![
            req(1, "/a", 100, Some(1)),
            req(1, "/b", 110, Some(1)),
            resp(1, 200, 150, Some(1)),
        ],
    );
    assert_eq!(r, ["/a 0 None [\"response_missing\"]", "/b 200 Some(40) []"]);
    assert_eq!(m.waiting(), 0);
}

#[test]
fn expiry_takes_old_streams_anywhere_but_http1_only_from_the_front() {
    let cfg = MatchConfig {
        timeout: Duration::from_secs(1),
        ..MatchConfig::default()
    };
    let mut m = Matcher::new(&cfg);
    let mut out = Vec::new();
    let s = 1_000_000_000u64;
    // Same connection (an h2c upgrade mixes both): HTTP/1 /new then HTTP/1 /old2 (older
    // timestamp, behind it in order), streams 3 (new) and 5 (old).
    m.push(req(1, "/new", 10 * s, None), &mut out);
    m.push(req(1, "/old2", 2 * s, None), &mut out);
    m.push(req(1, "/s3", 10 * s, Some(3)), &mut out);
    m.push(req(1, "/s5", 2 * s, Some(5)), &mut out);
    m.arrived(10 * s);
    m.expire(10 * s, &mut out);
    assert_eq!(
        out.iter().map(|r| brief(r)).collect::<Vec<_>>(),
        ["/s5 0 None [\"response_missing\"]"],
        "/old2 waits behind /new: HTTP/1 pairs by order"
    );
    assert_eq!(m.waiting(), 3);
    out.clear();
    m.push(resp(1, 200, 11 * s, None), &mut out);
    m.push(resp(1, 204, 11 * s, Some(3)), &mut out);
    assert_eq!(
        out.iter().map(|r| brief(r)).collect::<Vec<_>>(),
        ["/new 200 Some(1000000000) []", "/s3 204 Some(1000000000) []"]
    );
    assert_eq!(m.waiting(), 1);
}

#[test]
fn connections_are_separate() {
    let (r, _) = run(
        MatchConfig::default(),
        vec![
            req(1, "/x", 1, None),
            req(2, "/y", 2, None),
            resp(2, 201, 5, None),
            resp(1, 200, 9, None),
        ],
    );
    assert_eq!(r, ["/y 201 Some(3) []", "/x 200 Some(8) []"]);
}

#[test]
fn declined_upgrade_pairs_the_http1_answer() {
    let (r, _) = run(
        MatchConfig::default(),
        vec![req(1, "/up", 10, Some(1)), resp(1, 200, 20, None)],
    );
    assert_eq!(r, ["/up 200 Some(10) []"]);
}

#[test]
fn close_flushes_unanswered() {
    let (r, m) = run(
        MatchConfig::default(),
        vec![
            req(1, "/a", 1, None),
            req(1, "/b", 2, Some(3)),
            closed(1),
            resp(1, 200, 9, None),
        ],
    );
    assert_eq!(
        r,
        ["/a 0 None [\"response_missing\"]", "/b 0 None [\"response_missing\"]"]
    );
    assert_eq!(m.stats().unmatched_responses, 1);
}

#[test]
fn unmatched_response_dropped_or_emitted() {
    let (r, m) = run(MatchConfig::default(), vec![resp(1, 200, 9, None)]);
    assert!(r.is_empty());
    assert_eq!(m.stats().unmatched_responses, 1);
    let cfg = MatchConfig {
        unmatched_responses: UnmatchedResponses::Emit,
        ..MatchConfig::default()
    };
    let (r, _) = run(cfg, vec![resp(1, 200, 9, None)]);
    assert_eq!(r, ["- 200 None [\"request_missing\"]"]);
}

#[test]
fn timeout_runs_on_event_time_advanced_by_wall_time() {
    let cfg = MatchConfig {
        timeout: Duration::from_secs(30),
        ..MatchConfig::default()
    };
    let mut m = Matcher::new(&cfg);
    let mut out = Vec::new();
    let s = 1_000_000_000u64;
    // A replayed capture: message times are far in the past of the wall clock.
    m.push(req(1, "/old", 100 * s, None), &mut out);
    m.push(req(2, "/new", 125 * s, None), &mut out);
    m.arrived(10_000 * s);
    m.expire(10_001 * s, &mut out);
    assert!(
        out.is_empty(),
        "wall clock far ahead of capture time must not expire anything"
    );
    m.expire(10_005 * s, &mut out);
    assert_eq!(
        out.iter().map(|r| brief(r)).collect::<Vec<_>>(),
        ["/old 0 None [\"response_missing\"]"]
    );
    // Event time moves on with newer messages.
    m.push(req(3, "/x", 160 * s, None), &mut out);
    m.arrived(10_006 * s);
    m.expire(10_006 * s, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(m.waiting(), 1);
    m.flush(&mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(m.waiting(), 0);
}

#[test]
fn eviction_counts_waiting_requests() {
    let cfg = MatchConfig {
        max_connections: 2,
        ..MatchConfig::default()
    };
    let (r, m) = run(
        cfg,
        vec![
            req(1, "/a", 1, None),
            req(2, "/b", 2, None),
            req(3, "/c", 3, None),
            resp(1, 200, 4, None),
        ],
    );
    assert!(r.is_empty());
    assert_eq!(m.stats().evicted_connections, 1);
    assert_eq!(m.stats().evicted_requests, 1);
    assert_eq!(m.waiting(), 2);
}

#[test]
fn pending_overflow_emits_oldest() {
    let cfg = MatchConfig {
        max_pending_per_connection: 2,
        ..MatchConfig::default()
    };
    let (r, m) = run(
        cfg,
        vec![req(1, "/a", 1, None), req(1, "/b", 2, None), req(1, "/c", 3, None)],
    );
    assert_eq!(r, ["/a 0 None [\"response_missing\"]"]);
    assert_eq!(m.waiting(), 2);
}

#[test]
fn record_fields_from_conn_and_messages() {
    let mut q = req(7, "/g", 1000, Some(1));
    q.incomplete = vec!["request_truncated".into(), "hpack_unknown_index".into()];
    q.grpc = Some(Box::new(GrpcInfo {
        service: "pkg.Svc".into(),
        method: "Get".into(),
        request_messages: Some(1),
        ..Default::default()
    }));
    let mut p = resp(7, 200, 1500, Some(1));
    p.incomplete = vec!["hpack_unknown_index".into()];
    p.grpc = Some(Box::new(GrpcInfo {
        status: Some(5),
        message: Some("nope".into()),
        response_messages: Some(0),
        ..Default::default()
    }));
    let r = build_record(Some(q), Some(p), None);
    assert_eq!(r.ts, 1000);
    assert_eq!(r.pid, 42);
    assert_eq!(r.comm.as_deref(), Some("srv"));
    assert_eq!(r.container_id.as_deref(), Some("abc"));
    assert_eq!(r.ip.client.to_string(), "10.0.0.1");
    assert_eq!((r.l4.tcp.client_port, r.l4.tcp.server_port), (40000, 8080));
    assert_eq!(r.l7.latency_ns, Some(500));
    assert_eq!(r.incomplete, ["request_truncated", "hpack_unknown_index"]);
    let g = r.l7.grpc.unwrap();
    assert_eq!(
        (g.service.as_str(), g.method.as_str(), g.status, g.message.as_deref()),
        ("pkg.Svc", "Get", Some(5), Some("nope"))
    );
    assert_eq!((g.request_messages, g.response_messages), (Some(1), Some(0)));
}

#[test]
fn config_defaults_and_validation() {
    let c: MatchConfig = toml_like(r#"{"timeout":"5s"}"#);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.unmatched_responses, UnmatchedResponses::Drop);
    let bad = MatchConfig {
        timeout: Duration::ZERO,
        max_connections: 0,
        ..MatchConfig::default()
    };
    let keys: Vec<_> = bad.validate().into_iter().filter_map(|e| e.key).collect();
    assert_eq!(keys, ["timeout", "max_connections"]);
}

fn toml_like<T: serde::de::DeserializeOwned>(json: &str) -> T {
    serde_json::from_str(json).unwrap()
}

/// A stream reset before any response head: the request's record, no response and no
/// latency, the reset said; with its request unseen, nothing is emitted (even with `emit`).
#[test]
fn a_stream_reset_before_its_response_has_no_response() {
    let reset = |stream| {
        Box::new(L7Message {
            conn: conn(1),
            ts_ns: 900,
            stream_id: Some(stream),
            body: L7Body::NoResponse,
            grpc: None,
            incomplete: vec![Incomplete::Borrowed("response_reset")],
        })
    };
    let cfg = MatchConfig {
        unmatched_responses: UnmatchedResponses::Emit,
        ..MatchConfig::default()
    };
    let (got, m) = run(cfg, vec![req(1, "/slow", 100, Some(3)), reset(3), reset(5)]);
    assert_eq!(got, ["/slow 0 None [\"response_reset\"]"]);
    assert_eq!(
        (m.stats().records, m.stats().unmatched_responses, m.waiting()),
        (1, 1, 0)
    );
}
