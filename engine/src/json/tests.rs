//! The writer against serde_json: bytes for records, parsed values for patched records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::*;
use crate::event::Event;

fn base() -> Record {
    Record {
        ts: 1_681_184_609_619_285_359,
        pid: 87111,
        ip: IpInfo::new(
            IpAddr::V4(Ipv4Addr::new(10, 244, 1, 186)),
            IpAddr::V4(Ipv4Addr::new(10, 244, 1, 42)),
        ),
        l4: L4 {
            tcp: TcpPorts {
                client_port: 38674,
                server_port: 7002,
            },
        },
        l7: L7::default(),
        client: None,
        server: None,
        client_service: None,
        server_service: None,
        comm: None,
        container_id: None,
        node: None,
        incomplete: vec![],
    }
}

fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> L7Request {
    L7Request {
        http: HttpRequest {
            protocol: "HTTP/1.1".into(),
            method: method.into(),
            url: url.into(),
            headers: headers.iter().map(|(k, v)| Header::new(*k, *v)).collect(),
            ..Default::default()
        },
    }
}

fn response(code: u16, headers: &[(&str, &str)]) -> L7Response {
    L7Response {
        http: HttpResponse {
            protocol: "HTTP/1.1".into(),
            code,
            headers: headers.iter().map(|(k, v)| Header::new(*k, *v)).collect(),
            ..Default::default()
        },
    }
}

fn endpoint(pod: &str, labels: &[&str], workload: Option<(&str, &str)>) -> Endpoint {
    Endpoint {
        namespace: Some("default".into()),
        labels: labels.iter().map(|l| (*l).into()).collect(),
        pod_name: Some(pod.into()),
        workload: workload.map(|(name, kind)| Workload {
            name: name.into(),
            kind: kind.into(),
        }),
    }
}

/// A fully populated HTTP/1 exchange between two enriched pods.
fn full() -> Record {
    let mut r = base();
    r.l7.latency_ns = Some(8_661_819);
    r.l7.request = Some(request(
        "GET",
        "/books.json?order=lower%28title%29",
        &[("Accept", "application/json"), ("User-Agent", "curl/7.88.1")],
    ));
    r.l7.response = Some(response(200, &[("Server", "WEBrick"), ("Content-Length", "42")]));
    r.client = Some(std::sync::Arc::new(endpoint(
        "webapp-5f459f867b-2zbx8",
        &["app=webapp", "tier=front"],
        None,
    )));
    r.server = Some(std::sync::Arc::new(endpoint(
        "books-0",
        &["app=books"],
        Some(("books", "StatefulSet")),
    )));
    r.client_service = Some(std::sync::Arc::new(ServiceRef {
        name: "webapp".into(),
        namespace: "default".into(),
    }));
    r.server_service = Some(std::sync::Arc::new(ServiceRef {
        name: "books".into(),
        namespace: "default".into(),
    }));
    r.comm = Some("ruby".into());
    r.container_id = Some("0123456789abcdef".into());
    r.node = Some("node-1".into());
    r
}

fn table() -> Vec<(&'static str, Record)> {
    let mut t = vec![("bare", base()), ("full", full())];

    let mut r = full();
    r.l7.request.as_mut().unwrap().http.protocol = "HTTP/2".into();
    r.l7.response.as_mut().unwrap().http.protocol = "HTTP/2".into();
    r.l7.grpc = Some(Box::new(GrpcInfo {
        service: "pkg.Svc".into(),
        method: "Get".into(),
        status: Some(0),
        message: Some("".into()),
        request_messages: Some(1),
        response_messages: Some(3),
        request_bytes: Some(12),
        response_bytes: Some(u64::MAX),
    }));
    t.push(("grpc all fields", r));

    let mut r = base();
    r.l7.grpc = Some(Box::new(GrpcInfo {
        service: "a.B".into(),
        method: "C".into(),
        ..Default::default()
    }));
    t.push(("grpc minimal", r));

    let mut r = base();
    r.l7.request = Some(request("POST", "/", &[]));
    r.incomplete = vec!["response_missing".into(), "request_truncated".into()];
    t.push(("incomplete, no response, latency None", r));

    let mut r = base();
    r.l7.response = Some(response(101, &[]));
    r.incomplete = vec!["hpack_unknown_index".into()];
    t.push(("response only", r));

    let mut r = full();
    r.l7.latency_ns = Some(0);
    let req = &mut r.l7.request.as_mut().unwrap().http;
    req.body_bytes = Some(5);
    req.body = Some("{\"a\":\"b\\c\"}\n\0".into());
    let resp = &mut r.l7.response.as_mut().unwrap().http;
    resp.body_bytes = Some(0);
    resp.body = Some("".into());
    t.push(("bodies", r));

    let mut r = full();
    r.ip = IpInfo::new("2001:db8::1".parse().unwrap(), "::ffff:10.0.0.1".parse().unwrap());
    t.push(("IPv6 and mapped IPv4", r));

    let mut r = base();
    r.ip = IpInfo::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::LOCALHOST));
    t.push(("IPv6 :: and ::1", r));

    let mut r = base();
    r.ip = IpInfo::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V4(Ipv4Addr::BROADCAST));
    r.l4.tcp = TcpPorts {
        client_port: 0,
        server_port: u16::MAX,
    };
    r.pid = u32::MAX;
    t.push(("extreme v4 and ports", r));

    let every_control: String = (0u8..0x20).map(char::from).collect();
    let mut r = full();
    r.l7.request = Some(request(
        "GET",
        &format!("/\"quoted\"\\back{every_control}\u{7f}/"),
        &[
            ("X-Ctl", &every_control),
            ("X-Utf8", "héllo wörld 日本語 😀 \u{2028}\u{2029}"),
            ("", ""),
            ("X-Slash", "a/b</script>"),
        ],
    ));
    r.comm = Some("\"".into());
    r.node = Some("\\".into());
    r.client = Some(std::sync::Arc::new(Endpoint {
        labels: vec!["k=\"v\"".into(), "\u{1}".into()],
        ..Default::default()
    }));
    t.push(("every escape and non-ASCII", r));

    let mut r = base();
    r.client = Some(std::sync::Arc::new(Endpoint::default()));
    r.server = Some(std::sync::Arc::new(Endpoint {
        workload: Some(Workload::default()),
        ..Default::default()
    }));
    r.client_service = Some(std::sync::Arc::new(ServiceRef::default()));
    t.push(("empty endpoints and services", r));

    let mut r = base();
    r.ts = 0;
    t.push(("ts at the epoch", r));
    let mut r = base();
    r.ts = u64::MAX;
    t.push(("ts at u64::MAX (2554)", r));
    let mut r = base();
    r.ts = 951_782_400_000_000_000 - 1; // 2000-02-28T23:59:59.999999999Z
    t.push(("ts before a leap day", r));
    t
}

fn writer_bytes(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    write_record(&mut out, r);
    out
}

#[test]
fn records_are_byte_identical_to_serde_json() {
    for (name, r) in table() {
        let want = serde_json::to_string(&r).unwrap();
        let got = String::from_utf8(writer_bytes(&r)).unwrap();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn write_json_uses_the_writer_and_appends() {
    let r = full();
    let mut out = b"prefix ".to_vec();
    Event::Record(Box::new(r.clone())).write_json(&mut out).unwrap();
    let mut want = b"prefix ".to_vec();
    serde_json::to_writer(&mut want, &r).unwrap();
    assert_eq!(out, want);
}

#[test]
fn timestamps_match_humantime() {
    let mut rng = Rng(7);
    let mut stamps = vec![
        0,
        1,
        999_999_999,
        1_000_000_000,
        86_399_999_999_999,
        86_400_000_000_000,
        u64::MAX,
    ];
    // Around leap days, centuries and year ends, to the second.
    for day_secs in [
        951_782_400u64,
        4_107_542_400,
        13_574_563_200,
        946_684_800,
        1_704_067_199,
    ] {
        for delta in [-86_401i64, -1, 0, 1, 86_399, 86_400] {
            stamps.push(day_secs.saturating_add_signed(delta) * 1_000_000_000 + 5);
        }
    }
    stamps.extend((0..20_000).map(|_| rng.next()));
    for ns in stamps {
        let want = format!(
            "\"{}\"",
            humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns))
        );
        let mut w = Vec::new();
        Writer { out: &mut w, err: None }.timestamp(ns);
        assert_eq!(String::from_utf8(w).unwrap(), want, "ns {ns}");
    }
}

/// Deterministic (fixed seed) random records: every optional part on or off, strings drawn
/// from pieces that need each kind of escape.
#[test]
fn random_records_are_byte_identical_to_serde_json() {
    let mut rng = Rng(0x5eed);
    for i in 0..5_000 {
        let r = random_record(&mut rng);
        let want = serde_json::to_string(&r).unwrap();
        let got = String::from_utf8(writer_bytes(&r)).unwrap();
        assert_eq!(got, want, "record {i}: {r:?}");
    }
}

/// The writer's patched output is the value `to_json_map` gives, without duplicate keys.
fn assert_patched_matches(p: &PatchedRecord, what: &str) {
    let mut out = Vec::new();
    write_patched(&mut out, p).unwrap();
    let got: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{what}: invalid JSON ({e}): {}", String::from_utf8_lossy(&out)));
    let want = Value::Object(p.to_json_map().unwrap());
    assert_eq!(got, want, "{what}: {}", String::from_utf8_lossy(&out));
    // A duplicate key would parse (the last one wins) but make the text longer.
    assert_eq!(
        out.len(),
        serde_json::to_vec(&got).unwrap().len(),
        "{what}: duplicate keys in {}",
        String::from_utf8_lossy(&out)
    );
}

fn patch(changes: &[(&[&str], Change)]) -> Patch {
    let mut p = Patch::default();
    for (path, change) in changes {
        p.insert(path, change.clone());
    }
    p
}

fn set(v: Value) -> Change {
    Change::Set(v)
}

#[test]
fn patched_records_match_apply() {
    use Change::Delete;
    let cases: Vec<(&str, Patch)> = vec![
        ("empty patch", Patch::default()),
        ("add a top-level field", patch(&[(&["cluster"], set(json!("prod")))])),
        ("set a top-level scalar", patch(&[(&["pid"], set(json!(1)))])),
        ("delete a top-level scalar", patch(&[(&["ts"], Delete)])),
        ("delete an object", patch(&[(&["l7"], Delete)])),
        ("replace an object", patch(&[(&["ip"], set(json!([1, 2])))])),
        (
            "fields into a scalar",
            patch(&[(&["pid", "x"], set(json!(1))), (&["pid", "y"], Delete)]),
        ),
        (
            "fields into an array",
            patch(&[(&["l7", "request", "http", "headers", "n"], set(json!(null)))]),
        ),
        (
            "fields with only deletes into a scalar",
            patch(&[(&["comm", "x"], Delete)]),
        ),
        (
            "fields into an absent optional",
            patch(&[(&["server", "podName"], set(json!("p")))]),
        ),
        (
            "fields into absent grpc",
            patch(&[(&["l7", "grpc", "status"], set(json!(2)))]),
        ),
        (
            "delete inside an absent optional",
            patch(&[(&["server", "podName"], Delete)]),
        ),
        ("set an absent optional scalar", patch(&[(&["node"], set(json!("n1")))])),
        (
            "set an absent empty list",
            patch(&[(&["incomplete"], set(json!(["x"])))]),
        ),
        (
            "delete an absent field",
            patch(&[(&["containerId"], Delete), (&["nope"], Delete)]),
        ),
        (
            "nested set, delete and add",
            patch(&[
                (&["l7", "request", "http", "method"], set(json!("get"))),
                (&["l7", "request", "http", "headers"], Delete),
                (
                    &["l7", "request", "http", "extra"],
                    set(json!({"a": [1, {"b": "\"\n"}]})),
                ),
                (&["l7", "latencyNs"], set(json!(1.5))),
            ]),
        ),
        (
            "deep into every level",
            patch(&[
                (&["ip", "ipVersion"], Delete),
                (&["ip", "zone"], set(json!("a"))),
                (&["l4", "TCP", "serverPort"], set(json!("http"))),
                (&["l4", "UDP"], set(json!({}))),
                (&["client", "workload", "kind"], set(json!("Pod"))),
                (&["server", "workload", "name"], Delete),
                (&["clientService", "namespace"], Delete),
                (&["l7", "response", "http", "code", "x"], set(json!(true))),
                (&["l7", "response", "http", "bodyBytes"], set(json!(7))),
            ]),
        ),
        (
            "keys that need escaping",
            patch(&[
                (&["we\"ird\n"], set(json!(1))),
                (&["l7", "\\", "\u{1}"], set(json!("é"))),
            ]),
        ),
        (
            "set then edit below",
            patch(&[(&["labels"], set(json!({"a": 1}))), (&["labels", "b"], set(json!(2)))]),
        ),
        (
            "delete then edit below",
            patch(&[(&["l7"], Delete), (&["l7", "request"], set(json!(0)))]),
        ),
        ("empty object via fields", patch(&[(&["a", "b", "c"], Delete)])),
    ];
    let records = [base(), full(), table().remove(2).1];
    for (name, p) in &cases {
        for (i, r) in records.iter().enumerate() {
            let pr = PatchedRecord {
                record: r.clone(),
                patch: p.clone(),
            };
            assert_patched_matches(&pr, &format!("{name} (record {i})"));
        }
    }
}

#[test]
fn every_record_field_can_be_set_deleted_and_edited() {
    let r = table().remove(2).1; // grpc all fields: every object present
    let full_value = serde_json::to_value(&r).unwrap();
    let mut paths = Vec::new();
    collect_paths(&full_value, &mut Vec::new(), &mut paths);
    for path in &paths {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let deeper: Vec<&str> = path.iter().copied().chain(["added"]).collect();
        for (what, p) in [
            ("set", patch(&[(&path, set(json!({"s": 1})))])),
            ("delete", patch(&[(&path, Change::Delete)])),
            ("edit below", patch(&[(&deeper, set(json!(3)))])),
        ] {
            let pr = PatchedRecord {
                record: r.clone(),
                patch: p,
            };
            assert_patched_matches(&pr, &format!("{what} {path:?}"));
        }
    }
}

fn collect_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            prefix.push(k.clone());
            out.push(prefix.clone());
            collect_paths(child, prefix, out);
            prefix.pop();
        }
    }
}

#[test]
fn random_patches_match_apply() {
    let mut rng = Rng(42);
    let names: Vec<&str> = [
        RECORD,
        IP,
        TCP,
        L7_FIELDS,
        HTTP_REQUEST,
        HTTP_RESPONSE,
        GRPC,
        ENDPOINT,
        WORKLOAD,
    ]
    .concat()
    .into_iter()
    .chain(["TCP", "http", "extra", "x\"y"])
    .collect();
    for i in 0..3_000 {
        let record = random_record(&mut rng);
        let mut p = Patch::default();
        for _ in 0..rng.below(6) {
            // Mostly real paths (top level, then a field of that object), sometimes any name.
            let depth = 1 + rng.below(4) as usize;
            let path: Vec<&str> = (0..depth)
                .map(|_| names[rng.below(names.len() as u64) as usize])
                .collect();
            let change = match rng.below(3) {
                0 => Change::Delete,
                1 => Change::Set(random_value(&mut rng, 2)),
                _ => Change::Fields(Patch::default()),
            };
            p.insert(&path, change);
        }
        let pr = PatchedRecord { record, patch: p };
        assert_patched_matches(&pr, &format!("random patch {i}: {:?}", pr.patch));
    }
}

#[test]
fn write_json_writes_patched_records() {
    let pr = PatchedRecord {
        record: full(),
        patch: patch(&[(&["cluster"], set(json!("prod"))), (&["l7", "request"], Change::Delete)]),
    };
    let mut out = Vec::new();
    Event::Patched(Box::new(pr.clone())).write_json(&mut out).unwrap();
    let got: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(got, Value::Object(pr.to_json_map().unwrap()));
    assert_eq!(got["cluster"], "prod");
    assert!(got["l7"].get("request").is_none());
}

/// SplitMix64: a fixed seed gives the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.coin() { Some(f(self)) } else { None }
    }

    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            " ",
            "/",
            "-",
            "=",
            "abcdefgh",
            "application/json",
            "\"",
            "\\",
            "\n",
            "\r",
            "\t",
            "\u{8}",
            "\u{c}",
            "\0",
            "\u{1f}",
            "\u{7f}",
            "é",
            "日本",
            "😀",
            "\u{2028}",
            "%28",
            "</",
        ];
        let n = self.below(8);
        let mut s = String::new();
        for _ in 0..n {
            if self.below(8) == 0 {
                s.push(char::from(self.below(0x20) as u8));
            } else {
                s.push_str(PIECES[self.below(PIECES.len() as u64) as usize]);
            }
        }
        s
    }

    fn text<T: From<String>>(&mut self) -> T {
        self.string().into()
    }

    fn ip(&mut self) -> IpAddr {
        match self.below(6) {
            0 | 1 => IpAddr::V4(Ipv4Addr::from(self.next() as u32)),
            2 => IpAddr::V4(Ipv4Addr::from(self.next() as u32 & 0x0f0f_0f0f)),
            3 => IpAddr::V6(Ipv6Addr::from(self.next() as u128 * self.next() as u128)),
            4 => IpAddr::V6(Ipv4Addr::from(self.next() as u32).to_ipv6_mapped()),
            _ => {
                // Runs of zero segments in random places, for "::" compression.
                let mut seg = [0u16; 8];
                for s in &mut seg {
                    if self.coin() {
                        *s = self.next() as u16;
                    }
                }
                IpAddr::V6(Ipv6Addr::from(seg))
            }
        }
    }
}

fn random_headers(rng: &mut Rng) -> Vec<Header> {
    (0..rng.below(5))
        .map(|_| Header::new(rng.string().as_str(), rng.string().as_str()))
        .collect()
}

fn random_endpoint(rng: &mut Rng) -> Endpoint {
    Endpoint {
        namespace: rng.maybe(Rng::text),
        labels: (0..rng.below(3)).map(|_| rng.text()).collect(),
        pod_name: rng.maybe(Rng::text),
        workload: rng.maybe(|rng| Workload {
            name: rng.text(),
            kind: rng.text(),
        }),
    }
}

fn random_service(rng: &mut Rng) -> ServiceRef {
    ServiceRef {
        name: rng.text(),
        namespace: rng.text(),
    }
}

fn random_record(rng: &mut Rng) -> Record {
    let ts = match rng.below(4) {
        0 => rng.below(4_102_444_800) * 1_000_000_000, // whole seconds up to 2100
        _ => rng.next(),
    };
    Record {
        ts,
        pid: rng.next() as u32,
        ip: IpInfo::new(rng.ip(), rng.ip()),
        l4: L4 {
            tcp: TcpPorts {
                client_port: rng.next() as u16,
                server_port: rng.next() as u16,
            },
        },
        l7: L7 {
            latency_ns: rng.maybe(|rng| rng.next() >> rng.below(64)),
            request: rng.maybe(|rng| L7Request {
                http: HttpRequest {
                    protocol: rng.string().into(),
                    method: rng.string().as_str().into(),
                    url: rng.string().as_str().into(),
                    headers: random_headers(rng),
                    body_bytes: rng.maybe(Rng::next),
                    body: rng.maybe(Rng::text),
                },
            }),
            response: rng.maybe(|rng| L7Response {
                http: HttpResponse {
                    protocol: "HTTP/2".into(),
                    code: rng.next() as u16,
                    headers: random_headers(rng),
                    body_bytes: rng.maybe(Rng::next),
                    body: rng.maybe(Rng::text),
                },
            }),
            grpc: rng.maybe(|rng| {
                Box::new(GrpcInfo {
                    service: rng.string().as_str().into(),
                    method: rng.string().as_str().into(),
                    status: rng.maybe(|rng| rng.next() as u32),
                    message: rng.maybe(Rng::text),
                    request_messages: rng.maybe(|rng| rng.next() as u32),
                    response_messages: rng.maybe(|rng| rng.next() as u32),
                    request_bytes: rng.maybe(Rng::next),
                    response_bytes: rng.maybe(Rng::next),
                })
            }),
        },
        client: rng.maybe(random_endpoint).map(std::sync::Arc::new),
        server: rng.maybe(random_endpoint).map(std::sync::Arc::new),
        client_service: rng.maybe(random_service).map(std::sync::Arc::new),
        server_service: rng.maybe(random_service).map(std::sync::Arc::new),
        comm: rng.maybe(Rng::text),
        container_id: rng.maybe(Rng::text),
        node: rng.maybe(Rng::text),
        incomplete: (0..rng.below(3)).map(|_| rng.string().into()).collect(),
    }
}

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.coin()),
        2 => json!(rng.next() >> rng.below(64)),
        // Short dyadic fractions: serde_json (without float_roundtrip) parses them exactly.
        3 => json!(f64::from(rng.next() as i16) / 8.0),
        4 => Value::String(rng.string()),
        5 => Value::Array((0..rng.below(3)).map(|_| random_value(rng, depth - 1)).collect()),
        _ => Value::Object(
            (0..rng.below(3))
                .map(|_| (rng.string(), random_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// Every ASCII byte at every position of strings of every length up to past two 8-byte
/// words and around two and three 16-byte blocks, alone and next to a quote (the
/// word- and block-at-a-time scans, short strings' included, must find each of them), as
/// a string and as a header's key and value.
#[test]
fn strings_escape_every_byte_at_every_position() {
    for len in (1..=20).chain([31, 32, 33, 47]) {
        for b in 0u8..0x80 {
            for pos in 0..len {
                for neighbour in [b'a', b'"', 0x1f, 0x20] {
                    let mut bytes = vec![b'x'; len];
                    bytes[pos] = b;
                    if pos + 1 < bytes.len() {
                        bytes[pos + 1] = neighbour;
                    }
                    let s = String::from_utf8(bytes).unwrap();
                    let mut got = Vec::new();
                    let mut w = Writer {
                        out: &mut got,
                        err: None,
                    };
                    w.string(&s);
                    assert_eq!(got, serde_json::to_vec(&s).unwrap(), "byte {b:#x} at {pos} of {len}");
                    for h in [Header::new(s.as_str(), "v"), Header::new("k", s.as_str())] {
                        let mut got = Vec::new();
                        let mut w = Writer {
                            out: &mut got,
                            err: None,
                        };
                        w.headers(std::slice::from_ref(&h));
                        let want = serde_json::to_vec(&[&h]).unwrap();
                        assert_eq!(got, want, "header {h:?}");
                    }
                }
            }
        }
    }
}
