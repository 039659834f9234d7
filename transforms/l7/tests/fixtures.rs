//! Replays every committed real-traffic capture (fixtures/*.pcapng) through `parse` and
//! `match` and checks the records against what the clients recorded doing
//! (fixtures/*.expected.json): every exchange exactly once, nothing else.

use std::path::PathBuf;

use perisco_engine::event::{Event, L7Message};
use perisco_engine::record::Record;
use perisco_l7::{MatchConfig, Matcher, ParseConfig, Parser};
use serde_json::Value;

fn fixtures() -> PathBuf {
    perisco_testutil::workspace_root().join("fixtures")
}

/// Records from a capture, through parse and match, with both flushed at the end.
fn records(name: &str, parse: &ParseConfig) -> (Vec<Record>, perisco_l7::ParseStats) {
    records_with(name, parse, perisco_pcap::Limits::default())
}

fn records_with(
    name: &str,
    parse: &ParseConfig,
    limits: perisco_pcap::Limits,
) -> (Vec<Record>, perisco_l7::ParseStats) {
    let (events, _) =
        perisco_pcap::read_file(&fixtures().join(format!("{name}.pcapng")), limits).expect("read fixture");
    let mut parser = Parser::new(parse);
    let mut matcher = Matcher::new(&MatchConfig::default());
    let mut msgs: Vec<L7Message> = Vec::new();
    let mut recs = Vec::new();
    for ev in &events {
        if let Event::Socket(s) = ev {
            parser.push(s, &mut msgs);
        }
        for m in msgs.drain(..) {
            matcher.push(Box::new(m), &mut recs);
        }
    }
    parser.flush(&mut msgs);
    for m in msgs.drain(..) {
        matcher.push(Box::new(m), &mut recs);
    }
    matcher.flush(&mut recs);
    (recs.into_iter().map(|r| *r).collect(), parser.stats())
}

fn expected(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.expected.json"))).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is a JSON list")
}

/// What identifies an exchange in a record, in the shape of expected.json.
fn key_of(r: &Record) -> String {
    let req = r.l7.request.as_ref().map(|q| &q.http);
    let resp = r.l7.response.as_ref().map(|q| &q.http);
    let mut k = format!(
        "{} {} {} server_port={} protocol={}",
        req.map_or("-", |q| q.method.as_str()),
        req.map_or("-", |q| q.url.as_str()),
        resp.map_or(0, |p| p.code),
        r.l4.tcp.server_port,
        resp.map_or("-", |p| p.protocol.as_ref()),
    );
    if let Some(g) = &r.l7.grpc {
        k += &format!(" grpc_status={:?}", g.status);
    }
    k
}

fn key_of_expected(e: &Value) -> String {
    let mut k = format!(
        "{} {} {} server_port={} protocol={}",
        e["method"].as_str().unwrap(),
        e["url"].as_str().unwrap(),
        e["status"].as_u64().unwrap(),
        e["server_port"].as_u64().unwrap(),
        e["protocol"].as_str().unwrap(),
    );
    if let Some(s) = e.get("grpc_status") {
        k += &format!(" grpc_status={:?}", s.as_u64().map(|s| s as u32));
    }
    k
}

fn check_fixture(name: &str) {
    let exp = expected(name);
    let (recs, stats) = records(name, &ParseConfig::default());
    let mut got: Vec<String> = recs.iter().map(key_of).collect();
    let mut want: Vec<String> = exp.iter().map(key_of_expected).collect();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "{name}: records vs exchanges the clients made (parse stats: {stats:?})"
    );
    // Where the client knew its port, the exchange is on that connection.
    for e in exp.iter().filter(|e| e.get("client_port").is_some()) {
        let port = e["client_port"].as_u64().unwrap();
        let k = key_of_expected(e);
        let n_rec = recs
            .iter()
            .filter(|r| key_of(r) == k && u64::from(r.l4.tcp.client_port) == port)
            .count();
        let n_exp = exp
            .iter()
            .filter(|x| key_of_expected(x) == k && x.get("client_port") == e.get("client_port"))
            .count();
        assert_eq!(n_rec, n_exp, "{name}: {k} client_port={port}");
    }
    for r in &recs {
        assert!(
            r.incomplete.is_empty(),
            "{name}: complete exchange marked {:?}: {}",
            r.incomplete,
            key_of(r)
        );
        let lat = r.l7.latency_ns.expect("latency");
        assert!(lat > 0 && lat < 5_000_000_000, "{name}: implausible latency {lat} ns");
        assert_eq!(r.ip.client.is_ipv6(), name == "ipv6", "{name}: ip version");
        assert_ne!(r.l4.tcp.client_port, r.l4.tcp.server_port);
    }
}

#[test]
fn http1_curl() {
    check_fixture("http1-curl");
}

#[test]
fn http1_nginx() {
    check_fixture("http1-nginx");
}

#[test]
fn h2c_nghttp() {
    check_fixture("h2c-nghttp");
}

#[test]
fn h2c_upgrade() {
    check_fixture("h2c-upgrade");
}

#[test]
fn grpc() {
    check_fixture("grpc");
    // Service, method and message counts come through to the record.
    let (recs, _) = records("grpc", &ParseConfig::default());
    let exp = expected("grpc");
    for e in &exp {
        let url = e["url"].as_str().unwrap();
        let r = recs
            .iter()
            .find(|r| {
                r.l7.request.as_ref().is_some_and(|q| q.http.url == url)
                    && r.l7.grpc.as_ref().and_then(|g| g.status).map(u64::from) == e["grpc_status"].as_u64()
            })
            .expect("record for the call");
        let g = r.l7.grpc.as_ref().unwrap();
        let (svc, method) = url.trim_start_matches('/').rsplit_once('/').unwrap();
        assert_eq!((g.service.as_str(), g.method.as_str()), (svc, method));
        if let Some(n) = e.get("response_messages").and_then(Value::as_u64) {
            assert_eq!(g.response_messages.map(u64::from), Some(n), "{url}");
        }
        if let Some(m) = e.get("grpc_message").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            assert_eq!(g.message.as_deref(), Some(m));
        }
    }
}

#[test]
fn ipv6() {
    check_fixture("ipv6");
}

#[test]
fn mixed_sll() {
    check_fixture("mixed-sll");
}

#[test]
fn non_http_gives_no_records() {
    check_fixture("non-http");
    let (recs, stats) = records("non-http", &ParseConfig::default());
    assert!(recs.is_empty());
    assert!(stats.unknown_connections >= 2, "{stats:?}");
    assert!(stats.skipped_unknown_bytes > 0);
    assert_eq!(stats.messages, 0);
}

/// HTTP/2 and gRPC replayed with a 32-byte `max_capture_bytes`: the pcap source keeps what
/// the live probe keeps of a connection that began with the preface (every frame header
/// and HEADERS payload, DATA within the budget), so HPACK never loses its table and every
/// exchange comes out whole. (A plain 32-byte prefix of each write lost the headers of
/// streams answered in the same write, and the dynamic table with them.)
#[test]
fn http2_with_a_small_capture_limit_is_walked_frame_by_frame() {
    for (name, max) in [("h2c-nghttp", 32), ("h2c-upgrade", 256), ("grpc", 32)] {
        let limits = perisco_pcap::Limits {
            max_capture_bytes: Some(max),
            ..perisco_pcap::Limits::default()
        };
        let (_, pcap) = perisco_pcap::read_file(&fixtures().join(format!("{name}.pcapng")), limits).unwrap();
        assert!(
            pcap.h2_walked_connections > 0 && pcap.h2_walks_lost == 0,
            "{name}: {pcap:?}"
        );
        let (recs, stats) = records_with(name, &ParseConfig::default(), limits);
        let mut got: Vec<String> = recs.iter().map(key_of).collect();
        let mut want: Vec<String> = expected(name).iter().map(key_of_expected).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name} (parse stats: {stats:?})");
        // gRPC message counts and sizes as in the whole capture: the walk keeps each DATA
        // payload's first bytes (a message's length prefix) past the budget.
        let grpc_counts = |recs: &[Record]| {
            let mut v: Vec<String> = recs
                .iter()
                .filter_map(|r| Some(format!("{} {:?}", key_of(r), r.l7.grpc.as_ref()?)))
                .collect();
            v.sort();
            v
        };
        let whole = grpc_counts(&records(name, &ParseConfig::default()).0);
        assert_eq!(grpc_counts(&recs), whole, "{name}");
        assert!(name != "grpc" || whole.iter().all(|g| g.contains("response_messages: Some(")));
        for r in &recs {
            assert!(
                r.incomplete.is_empty(),
                "{name}: marked {:?}: {}",
                r.incomplete,
                key_of(r)
            );
            assert!(
                r.l7.response.as_ref().is_some_and(|p| !p.http.headers.is_empty()),
                "{name}: response headers kept: {}",
                key_of(r)
            );
        }
    }
}

/// The same captures with each write cut to 64 bytes, as a live probe with a small
/// `max_capture_bytes` would see them: no panic, every HTTP/1 exchange still found.
#[test]
fn http1_with_truncated_capture() {
    let limits = perisco_pcap::Limits {
        max_capture_bytes: Some(64),
        ..perisco_pcap::Limits::default()
    };
    let (events, _) = perisco_pcap::read_file(&fixtures().join("http1-curl.pcapng"), limits).unwrap();
    let mut parser = Parser::new(&ParseConfig::default());
    let mut matcher = Matcher::new(&MatchConfig::default());
    let (mut msgs, mut recs) = (Vec::new(), Vec::new());
    for ev in &events {
        if let Event::Socket(s) = ev {
            parser.push(s, &mut msgs);
        }
    }
    parser.flush(&mut msgs);
    for m in msgs {
        matcher.push(Box::new(m), &mut recs);
    }
    matcher.flush(&mut recs);
    let exp = expected("http1-curl");
    for e in &exp {
        let method = e["method"].as_str().unwrap();
        let found = recs
            .iter()
            .filter(|r| r.l7.request.as_ref().is_some_and(|q| q.http.method == method))
            .count();
        assert!(found > 0, "{method} missing from truncated replay");
    }
    assert!(
        recs.iter()
            .any(|r| r.incomplete.iter().any(|i| i.ends_with("_truncated"))),
        "some heads are cut at 64 bytes"
    );
}
