//! Real traffic: the committed loopback captures in fixtures/ (nghttp/nghttpd, h2load, curl
//! and nghttp upgrading to h2c against Apache, python grpcio). tshark extracts each TCP
//! segment; the segments are fed to `Http2Conn` in capture order, and the result is compared
//! with (1) what the clients recorded (`NAME.expected.json`) and (2) tshark's own HTTP/2
//! dissector, header by header.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use perisco_engine::event::{ConnInfo, L7Body, L7Message, ProcessInfo};
use perisco_h2::{Http2Conn, Http2Options, Side};
use perisco_testutil::{Need, require, workspace_root};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    workspace_root().join("fixtures").join(name)
}

fn expected(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(&format!("{name}.expected.json"))).expect("expected.json");
    serde_json::from_str(&text).expect("expected json")
}

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark").args(args).output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

struct Segment {
    ts_ns: u64,
    side: Side,
    bytes: Vec<u8>,
    client_port: u16,
}

/// TCP payload segments per TCP stream, in capture order.
fn segments(pcap: &Path, server_port: u16) -> BTreeMap<u32, Vec<Segment>> {
    let out = tshark(&[
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        // Loopback captures hold a few retransmitted copies; the pcap source drops them, so do we.
        "tcp.len > 0 && !tcp.analysis.retransmission && !tcp.analysis.spurious_retransmission",
        "-T",
        "fields",
        "-e",
        "tcp.stream",
        "-e",
        "frame.time_epoch",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.payload",
    ]);
    let mut map: BTreeMap<u32, Vec<Segment>> = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (secs, frac) = f[1].split_once('.').unwrap();
        let ts_ns = secs.parse::<u64>().unwrap() * 1_000_000_000 + format!("{frac:0<9}")[..9].parse::<u64>().unwrap();
        let src: u16 = f[2].parse().unwrap();
        let dst: u16 = f[3].parse().unwrap();
        let side = if src == server_port { Side::Server } else { Side::Client };
        let client_port = if side == Side::Server { dst } else { src };
        map.entry(f[0].parse().unwrap()).or_default().push(Segment {
            ts_ns,
            side,
            bytes: unhex(f[4]),
            client_port,
        });
    }
    map
}

/// One HTTP/2 message as a comparable header list: pseudo-headers rebuilt from the fields.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    tcp_stream: u32,
    from_server: bool,
    stream_id: u32,
    headers: Vec<(String, String)>,
}

struct Parsed {
    messages: Vec<(u32, L7Message)>,
    /// Upgraded connections: (tcp stream, method, url) of the HTTP/1.1 request that became stream 1.
    upgraded: Vec<(u32, String, String)>,
}

fn end_of_head(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse(pcap: &Path, server_port: u16, upgrade: bool) -> Parsed {
    let mut parsed = Parsed {
        messages: Vec::new(),
        upgraded: Vec::new(),
    };
    for (tcp_stream, segs) in segments(pcap, server_port) {
        let conn = Arc::new(ConnInfo {
            conn_id: u64::from(tcp_stream),
            client: SocketAddr::from(([127, 0, 0, 1], segs[0].client_port)),
            server: SocketAddr::from(([127, 0, 0, 1], server_port)),
            process: Arc::new(ProcessInfo::default()),
        });
        let opts = Http2Options {
            max_body_bytes: 64,
            ..Http2Options::default()
        };
        let mut c = if upgrade {
            Http2Conn::upgraded(conn, opts)
        } else {
            Http2Conn::new(conn, opts)
        };
        // HTTP/1.1 bytes before the switch, per side (upgrade only).
        let mut head: [Option<Vec<u8>>; 2] = if upgrade {
            [Some(Vec::new()), Some(Vec::new())]
        } else {
            [None, None]
        };
        let mut out = Vec::new();
        let mut last_ts = 0;
        for s in segs {
            last_ts = s.ts_ns;
            let i = if s.side == Side::Client { 0 } else { 1 };
            let mut bytes = &s.bytes[..];
            if let Some(h) = head[i].as_mut() {
                h.extend_from_slice(bytes);
                let Some(end) = end_of_head(h) else { continue };
                let rest = h.split_off(end);
                if i == 0 {
                    let line = String::from_utf8_lossy(h)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let mut parts = line.split(' ');
                    let (m, u) = (
                        parts.next().unwrap_or_default().to_string(),
                        parts.next().unwrap_or_default().to_string(),
                    );
                    parsed.upgraded.push((tcp_stream, m, u));
                } else {
                    assert!(
                        h.starts_with(b"HTTP/1.1 101"),
                        "server did not switch: {}",
                        String::from_utf8_lossy(h)
                    );
                }
                head[i] = None;
                c.feed(s.side, &rest, s.ts_ns, false, &mut out)
                    .expect("HTTP/2 after the upgrade");
                continue;
            }
            c.feed(s.side, bytes, s.ts_ns, false, &mut out).expect("HTTP/2");
            bytes = &[];
            let _ = bytes;
        }
        c.close(last_ts, &mut out);
        let st = c.stats();
        assert_eq!(
            (st.frame_errors, st.hpack_errors, st.hpack_unknown_indexes, st.gaps),
            (0, 0, 0, 0),
            "stats of {}: {st:?}",
            pcap.display()
        );
        parsed.messages.extend(out.into_iter().map(|m| (tcp_stream, m)));
    }
    parsed
}

fn ours(parsed: &Parsed) -> Vec<Seen> {
    let mut v: Vec<Seen> = parsed
        .messages
        .iter()
        .map(|(tcp_stream, m)| {
            let mut headers: Vec<(String, String)> = Vec::new();
            let from_server = match &m.body {
                L7Body::Request(r) => {
                    headers.push((":method".into(), r.method.to_string()));
                    headers.push((":path".into(), r.url.to_string()));
                    headers.extend(r.headers.iter().map(|h| (h.key.to_string(), h.value.to_string())));
                    false
                }
                L7Body::Response(r) => {
                    headers.push((":status".into(), r.code.to_string()));
                    headers.extend(r.headers.iter().map(|h| (h.key.to_string(), h.value.to_string())));
                    true
                }
                // A reset before the response: no header block to compare with tshark's.
                L7Body::NoResponse => true,
                L7Body::Closed => panic!("Closed is not ours to emit"),
            };
            headers.sort();
            Seen {
                tcp_stream: *tcp_stream,
                from_server,
                stream_id: m.stream_id.unwrap(),
                headers,
            }
        })
        .collect();
    v.sort();
    v
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

/// tshark's dissection of every HEADERS frame, header blocks of one stream and direction
/// concatenated (headers, then trailers), 1xx responses left out.
fn theirs(pcap: &Path, server_port: u16, upgrade: bool) -> Vec<Seen> {
    let port = format!("tcp.port=={server_port},http2");
    let mut args = vec![
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        "http2.type == 1",
        "-T",
        "json",
        "--no-duplicate-keys",
    ];
    if !upgrade {
        // Prior knowledge: tell tshark the port speaks HTTP/2 (it follows an Upgrade by itself).
        args.extend(["-d", &port]);
    }
    let json = tshark(&args);
    let packets: Value = serde_json::from_str(&json).expect("tshark json");
    let mut merged: BTreeMap<(u32, bool, u32), Vec<(String, String)>> = BTreeMap::new();
    for p in packets.as_array().unwrap() {
        let layers = &p["_source"]["layers"];
        let tcp = &layers["tcp"];
        let tcp_stream: u32 = tcp["tcp.stream"].as_str().unwrap().parse().unwrap();
        let from_server = tcp["tcp.srcport"].as_str().unwrap() == server_port.to_string();
        for http2 in as_list(&layers["http2"]) {
            for frame in as_list(&http2["http2.stream"]) {
                if frame["http2.type"].as_str() != Some("1") {
                    continue;
                }
                let id: u32 = frame["http2.streamid"].as_str().unwrap().parse().unwrap();
                let mut list: Vec<(String, String)> = as_list(&frame["http2.header"])
                    .into_iter()
                    .map(|h| {
                        let s = |k: &str| h[k].as_str().unwrap_or_default().to_string();
                        (s("http2.header.name"), s("http2.header.value"))
                    })
                    .collect();
                if list.iter().any(|(n, v)| n == ":status" && v.starts_with('1')) {
                    continue;
                }
                list.retain(|(n, _)| n != ":scheme" && n != ":protocol");
                merged.entry((tcp_stream, from_server, id)).or_default().extend(list);
            }
        }
    }
    let mut v: Vec<Seen> = merged
        .into_iter()
        .map(|((tcp_stream, from_server, stream_id), mut headers)| {
            headers.sort();
            Seen {
                tcp_stream,
                from_server,
                stream_id,
                headers,
            }
        })
        .collect();
    v.sort();
    v
}

/// Exchanges as the clients describe them, and as we parsed them (paired by stream).
fn exchanges(parsed: &Parsed, exp: &[Value]) -> (Vec<String>, Vec<String>) {
    let describe = |m: &str, u: &str, status: u64, g: Option<(u64, &str, Option<u64>)>| match g {
        Some((gs, gm, n)) => format!("{m} {u} {status} grpc={gs} {gm:?} msgs={n:?}"),
        None => format!("{m} {u} {status}"),
    };
    let want: Vec<String> = exp
        .iter()
        .map(|e| {
            let g = e.get("grpc_status").map(|gs| {
                (
                    gs.as_u64().unwrap(),
                    e["grpc_message"].as_str().unwrap_or(""),
                    e.get("response_messages").and_then(Value::as_u64),
                )
            });
            describe(
                e["method"].as_str().unwrap(),
                e["url"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
                g,
            )
        })
        .collect();
    let mut reqs: BTreeMap<(u32, u32), (String, String, u64)> = BTreeMap::new();
    for (tcp, m, u) in &parsed.upgraded {
        reqs.insert((*tcp, 1), (m.clone(), u.clone(), 0));
    }
    for (tcp, m) in &parsed.messages {
        if let L7Body::Request(r) = &m.body {
            assert!(
                reqs.insert(
                    (*tcp, m.stream_id.unwrap()),
                    (r.method.to_string(), r.url.to_string(), m.ts_ns)
                )
                .is_none(),
                "request twice"
            );
        }
    }
    let mut got = Vec::new();
    for (tcp, m) in &parsed.messages {
        if let L7Body::Response(r) = &m.body {
            let (method, url, req_ts) = reqs
                .remove(&(*tcp, m.stream_id.unwrap()))
                .expect("a request for every response");
            assert!(req_ts == 0 || m.ts_ns >= req_ts, "latency must not be negative");
            assert!(m.incomplete.is_empty(), "{:?}", m.incomplete);
            let g = m.grpc.as_ref().map(|g| {
                // Like the client: message counts only for successful calls.
                let n = (g.status == Some(0)).then_some(u64::from(g.response_messages.unwrap_or(0)));
                (
                    u64::from(g.status.expect("grpc-status")),
                    g.message.as_deref().unwrap_or(""),
                    n,
                )
            });
            got.push(describe(&method, &url, u64::from(r.code), g));
        }
    }
    assert!(reqs.is_empty(), "requests without responses: {reqs:?}");
    (want, got)
}

fn check_fixture(name: &str, upgrade: bool) {
    if !require(&format!("h2_real_traffic_{name}"), &[Need::Command("tshark")]) {
        return;
    }
    let pcap = fixture(&format!("{name}.pcapng"));
    let exp = expected(name);
    let port = exp[0]["server_port"].as_u64().unwrap() as u16;
    let parsed = parse(&pcap, port, upgrade);
    assert_eq!(
        ours(&parsed),
        theirs(&pcap, port, upgrade),
        "{name}: headers differ from tshark's dissector"
    );
    let (mut want, mut got) = exchanges(&parsed, &exp);
    want.sort();
    got.sort();
    assert_eq!(got, want, "{name}: exchanges differ from what the clients recorded");
}

#[test]
fn nghttp_and_h2load_prior_knowledge() {
    check_fixture("h2c-nghttp", false);
}

#[test]
fn grpc_python() {
    check_fixture("grpc", false);
}

#[test]
fn upgrade_to_h2c() {
    check_fixture("h2c-upgrade", true);
}
