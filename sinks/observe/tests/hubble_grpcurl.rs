//! The hubble sink queried by real third-party clients: grpcurl 1.8.6 (through gRPC
//! reflection, so it also checks the served schema) and the generated tonic client.

use crate::common;

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use perisco_engine::record::Record;
use perisco_observe::HubbleConfig;
use perisco_testutil::{ChildGuard, Need, free_port, require, wait_for_port};
use serde_json::Value;

fn config(port: u16) -> HubbleConfig {
    HubbleConfig {
        address: format!("127.0.0.1:{port}"),
        max_flows: 4095,
        follow_buffer: 4096,
        node_name: Some("fallback-node".into()),
        advertise_address: None,
        ..HubbleConfig::default()
    }
}

/// Six exchanges: successes, a 404, two 5xx on different services, one unanswered.
fn sample() -> Vec<Record> {
    let reports = Spec {
        client: ("ops", "cron-28301-x7", "cron"),
        server: ("ops", "reports-7d9c-k2", "reports"),
        service: "reports",
        url: "/reports/daily",
        code: Some(500),
        latency_us: Some(900_000),
        client_ip: "10.244.3.7",
        server_ip: "10.245.0.9",
        server_port: 8080,
        ..Spec::default()
    };
    vec![
        record(0, &Spec::default()),
        record(
            1,
            &Spec {
                method: "POST",
                url: "/books",
                code: Some(201),
                latency_us: Some(5_000),
                ..Spec::default()
            },
        ),
        record(
            2,
            &Spec {
                url: "/books/42",
                code: Some(404),
                latency_us: Some(2_000),
                ..Spec::default()
            },
        ),
        record(
            3,
            &Spec {
                code: Some(503),
                latency_us: Some(40_000),
                ..Spec::default()
            },
        ),
        record(4, &reports),
        record(
            5,
            &Spec {
                url: "/slow",
                code: None,
                latency_us: None,
                ..Spec::default()
            },
        ),
    ]
}

fn grpcurl_cmd(port: u16, method: &str, data: &str) -> Command {
    let mut c = Command::new("grpcurl");
    c.args([
        "-plaintext",
        "-emit-defaults",
        "-d",
        data,
        &format!("127.0.0.1:{port}"),
        method,
    ]);
    c
}

/// Every JSON object grpcurl printed (one per streamed message).
fn grpcurl(port: u16, method: &str, data: &str) -> Vec<Value> {
    let out = grpcurl_cmd(port, method, data).output().expect("run grpcurl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "grpcurl {method} {data} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .map(|v| v.expect("grpcurl JSON"))
        .collect()
}

fn flows(port: u16, data: &str) -> Vec<Value> {
    grpcurl(port, "observer.Observer/GetFlows", data)
        .into_iter()
        .map(|r| r["flow"].clone())
        .collect()
}

fn ts_ns(v: &Value) -> u64 {
    let t = humantime::parse_rfc3339(v.as_str().expect("time string")).expect("RFC 3339");
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn assert_endpoint(f: &Value, e: &perisco_engine::record::Endpoint) {
    assert_eq!(f["namespace"], e.namespace.as_deref().unwrap_or(""));
    assert_eq!(f["podName"], e.pod_name.as_deref().unwrap_or(""));
    let labels: Vec<&str> = f["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(labels, e.labels);
    let w = e.workload.as_ref().unwrap();
    assert_eq!(f["workloads"][0]["name"], w.name.as_str());
    assert_eq!(f["workloads"][0]["kind"], w.kind.as_str());
}

/// A flow printed by grpcurl carries the record, field by field, for everything that maps.
fn assert_flow_is(f: &Value, r: &Record) {
    assert_eq!(ts_ns(&f["time"]), r.ts, "time of {f}");
    assert_eq!(f["IP"]["source"], r.ip.client.to_string());
    assert_eq!(f["IP"]["destination"], r.ip.server.to_string());
    assert_eq!(f["IP"]["ipVersion"], "IPv4");
    assert_eq!(f["l4"]["TCP"]["sourcePort"], u64::from(r.l4.tcp.client_port));
    assert_eq!(f["l4"]["TCP"]["destinationPort"], u64::from(r.l4.tcp.server_port));
    assert_endpoint(&f["source"], r.client.as_ref().unwrap());
    assert_endpoint(&f["destination"], r.server.as_ref().unwrap());
    assert_eq!(f["Type"], "L7");
    assert_eq!(f["verdict"], "FORWARDED");
    assert_eq!(f["nodeName"], r.node.as_deref().unwrap());
    assert_eq!(f["trafficDirection"], "INGRESS");
    assert_eq!(f["isReply"], false);
    let cs = r.client_service.as_ref().unwrap();
    let ss = r.server_service.as_ref().unwrap();
    assert_eq!(f["sourceService"]["name"], cs.name.as_str());
    assert_eq!(f["sourceService"]["namespace"], cs.namespace.as_str());
    assert_eq!(f["destinationService"]["name"], ss.name.as_str());
    assert_eq!(f["destinationService"]["namespace"], ss.namespace.as_str());
    let l7 = &f["l7"];
    let req = &r.l7.request.as_ref().unwrap().http;
    let resp = r.l7.response.as_ref().map(|s| &s.http);
    assert_eq!(l7["type"], if resp.is_some() { "RESPONSE" } else { "REQUEST" });
    assert_eq!(l7["latencyNs"], r.l7.latency_ns.unwrap_or(0).to_string());
    assert_eq!(l7["http"]["method"], req.method.as_str());
    assert_eq!(l7["http"]["url"], req.url.as_str());
    assert_eq!(l7["http"]["protocol"], &*req.protocol);
    assert_eq!(l7["http"]["code"], resp.map_or(0, |s| u64::from(s.code)));
    let headers: Vec<(String, String)> = l7["http"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap().to_owned(),
                h["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = req
        .headers
        .iter()
        .chain(resp.iter().flat_map(|s| &s.headers))
        .map(|h| (h.key.to_string(), h.value.to_string()))
        .collect();
    assert_eq!(headers, want);
    for reason in &r.incomplete {
        assert!(
            f["Summary"].as_str().unwrap().contains(&**reason),
            "summary names {reason}: {f}"
        );
    }
}

fn urls(flows: &[Value]) -> Vec<String> {
    flows
        .iter()
        .map(|f| f["l7"]["http"]["url"].as_str().unwrap().to_owned())
        .collect()
}

fn codes(flows: &[Value]) -> Vec<u64> {
    flows
        .iter()
        .map(|f| f["l7"]["http"]["code"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_reads_flows_status_and_filters() {
    if !require("grpcurl_reads_flows_status_and_filters", &[Need::Command("grpcurl")]) {
        return;
    }
    let port = free_port();
    let (tx, sink) = start_sink(&config(port));
    let records = sample();
    tx.send(events(&records)).await.unwrap();
    assert!(wait_for_port(addr(port), Duration::from_secs(10)));

    let all = tokio::task::spawn_blocking(move || {
        // Reflection lists the services a Hubble client expects.
        let out = Command::new("grpcurl")
            .args(["-plaintext", &format!("127.0.0.1:{port}"), "list"])
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&out.stdout).to_string();
        for svc in ["observer.Observer", "peer.Peer"] {
            assert!(list.lines().any(|l| l == svc), "{svc} in {list}");
        }

        // The ring may not hold everything yet the first time: wait for all six.
        let mut all = Vec::new();
        for _ in 0..100 {
            all = flows(port, "{}");
            if all.len() == 6 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        all
    })
    .await
    .unwrap();
    assert_eq!(all.len(), records.len());
    for (f, r) in all.iter().zip(&records) {
        assert_flow_is(f, r);
    }
    let uuids: std::collections::HashSet<&str> = all.iter().map(|f| f["uuid"].as_str().unwrap()).collect();
    assert_eq!(uuids.len(), 6, "uuids are unique");

    let checks = tokio::task::spawn_blocking(move || {
        let q = |data: &str| flows(port, data);
        // Status code prefixes.
        assert_eq!(codes(&q(r#"{"whitelist":[{"http_status_code":["5+"]}]}"#)), [503, 500]);
        assert_eq!(
            codes(&q(r#"{"whitelist":[{"http_status_code":["404","201"]}]}"#)),
            [201, 404]
        );
        // Blacklist: everything that is not a 2xx.
        assert_eq!(
            codes(&q(r#"{"blacklist":[{"http_status_code":["2+"]}]}"#)),
            [404, 503, 500, 0]
        );
        // Pods ("namespace/" prefix semantics), services, labels, workloads.
        assert_eq!(q(r#"{"whitelist":[{"destination_pod":["ops/"]}]}"#).len(), 1);
        assert_eq!(q(r#"{"whitelist":[{"destination_pod":["shop/books-"]}]}"#).len(), 5);
        assert_eq!(
            q(r#"{"whitelist":[{"source_pod":["web"]}]}"#).len(),
            0,
            "no namespace means default"
        );
        assert_eq!(q(r#"{"whitelist":[{"destination_service":["ops/reports"]}]}"#).len(), 1);
        assert_eq!(q(r#"{"whitelist":[{"source_label":["app=cron"]}]}"#).len(), 1);
        assert_eq!(
            q(r#"{"whitelist":[{"destination_label":["app in (books,reports),tier=demo"]}]}"#).len(),
            6
        );
        assert_eq!(
            q(r#"{"whitelist":[{"destination_workload":[{"name":"reports"}]}]}"#).len(),
            1
        );
        // IPs and CIDRs, ports.
        assert_eq!(q(r#"{"whitelist":[{"destination_ip":["10.245.0.0/16"]}]}"#).len(), 1);
        assert_eq!(q(r#"{"whitelist":[{"source_ip":["10.244.1.186"]}]}"#).len(), 5);
        assert_eq!(q(r#"{"whitelist":[{"destination_port":["8080"]}]}"#).len(), 1);
        // Method and path regex; several fields in one filter all have to match.
        assert_eq!(urls(&q(r#"{"whitelist":[{"http_method":["post"]}]}"#)), ["/books"]);
        assert_eq!(
            urls(&q(r#"{"whitelist":[{"http_path":["^/books/[0-9]+$"]}]}"#)),
            ["/books/42"]
        );
        assert_eq!(
            q(r#"{"whitelist":[{"http_path":["^/books"],"http_status_code":["5+"]}]}"#).len(),
            1
        );
        // Two whitelist filters: either may match.
        assert_eq!(
            q(r#"{"whitelist":[{"http_method":["POST"]},{"destination_pod":["ops/"]}]}"#).len(),
            2
        );
        // Filters on things perisco never knows match nothing.
        assert_eq!(q(r#"{"whitelist":[{"dns_query":[".*"]}]}"#).len(), 0);
        // number / first / since / until.
        assert_eq!(urls(&q(r#"{"number":2}"#)), ["/reports/daily", "/slow"]);
        assert_eq!(
            urls(&q(r#"{"number":2,"first":true}"#)),
            ["/books.json?order=title", "/books"]
        );
        assert_eq!(
            q(r#"{"since":"2023-11-14T22:13:20.002Z","until":"2023-11-14T22:13:20.004Z"}"#).len(),
            3
        );
        // A bad regex is the client's error, said clearly.
        let out = grpcurl_cmd(
            port,
            "observer.Observer/GetFlows",
            r#"{"whitelist":[{"http_path":["("]}]}"#,
        )
        .output()
        .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("InvalidArgument"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let status = grpcurl(port, "observer.Observer/ServerStatus", "{}");
        assert_eq!(status[0]["numFlows"], "6");
        assert_eq!(status[0]["seenFlows"], "6");
        assert_eq!(status[0]["maxFlows"], "4095");
        assert_eq!(status[0]["numConnectedNodes"], 1);
        let nodes = grpcurl(port, "observer.Observer/GetNodes", "{}");
        assert_eq!(nodes[0]["nodes"][0]["name"], "fallback-node");
        assert_eq!(nodes[0]["nodes"][0]["state"], "NODE_CONNECTED");
        assert_eq!(nodes[0]["nodes"][0]["address"], format!("127.0.0.1:{port}"));
    });
    checks.await.unwrap();
    drop(tx);
    sink.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_follow_streams_new_matching_flows() {
    if !require("grpcurl_follow_streams_new_matching_flows", &[Need::Command("grpcurl")]) {
        return;
    }
    let port = free_port();
    let (tx, sink) = start_sink(&config(port));
    let records = sample();
    // Already in the ring: a 503 (shown first), a 200 (filtered out).
    tx.send(events(&records[..4])).await.unwrap();
    assert!(wait_for_port(addr(port), Duration::from_secs(10)));
    for _ in 0..100 {
        let n = tokio::task::spawn_blocking(move || flows(port, "{}").len())
            .await
            .unwrap();
        if n == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut child = ChildGuard::spawn(
        grpcurl_cmd(
            port,
            "observer.Observer/GetFlows",
            r#"{"follow":true,"whitelist":[{"http_status_code":["5+"]}]}"#,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null()),
    )
    .unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for v in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>() {
            let Ok(v) = v else { break };
            if got_tx.send(v).is_err() {
                break;
            }
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(30), got_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_flow_is(&first["flow"], &records[3]);

    // The stream is open: new flows arrive, filtered.
    let more = vec![
        records[4].clone(),
        records[0].clone(),
        common::record(
            9,
            &Spec {
                code: Some(502),
                ..Spec::default()
            },
        ),
    ];
    tx.send(events(&more)).await.unwrap();
    let a = tokio::time::timeout(Duration::from_secs(30), got_rx.recv())
        .await
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(30), got_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_flow_is(&a["flow"], &more[0]);
    assert_flow_is(&b["flow"], &more[2]);
    drop(child);
    drop(tx);
    sink.await.unwrap().unwrap();
}
