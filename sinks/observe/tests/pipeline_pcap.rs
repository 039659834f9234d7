//! The `perisco` binary on a real capture: pcap → parse → match → hubble and
//! prometheus_exporter, compared with a file sink on the same fixture.
//!
//! Run 1 (no loop) writes the fixture's records with a file sink. Run 2 replays the same
//! capture in a loop (so the servers stay up) into the hubble sink and the exporter:
//! every flow grpcurl reads must be one of run 1's records (field by field, time shifted
//! by the loop), every record must show up as a flow, and Prometheus' status-class ratio
//! and latency quantiles must be those of the records.

use crate::common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use perisco_engine::record::Record;
use perisco_observe::prometheus::red::DEFAULT_BUCKETS;
use perisco_testutil::{ChildGuard, Need, free_port, perisco_bin, require, wait_for_port, workspace_root};
use serde_json::Value;

const FIXTURE: &str = "fixtures/http1-curl.pcapng";

/// The binary, and a config that validates (parse/match are other crates; until they are
/// registered this is a missing prerequisite, loud, and fatal under PERISCO_REQUIRE_ALL=1).
fn ready(test: &str, config: &std::path::Path) -> bool {
    let bin = perisco_bin();
    let why = if !bin.is_file() {
        format!("{} not built (cargo build -p perisco)", bin.display())
    } else {
        let out = Command::new(&bin)
            .args(["validate", "--config"])
            .arg(config)
            .output()
            .expect("run perisco validate");
        if out.status.success() {
            return true;
        }
        format!(
            "perisco validate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    if std::env::var("PERISCO_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{test}: prerequisite missing under PERISCO_REQUIRE_ALL=1: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

fn pipeline(sinks: &str, r#loop: bool) -> String {
    let fixture = workspace_root().join(FIXTURE);
    format!(
        "[sources.offline]\ntype = \"pcap\"\npath = \"{}\"\nloop = {}\n\n[transforms.l7]\ntype = \"parse\"\ninputs = [\"offline\"]\n\n[transforms.pairs]\ntype = \"match\"\ninputs = [\"l7\"]\n\n{sinks}",
        fixture.display(),
        r#loop
    )
}

/// What identifies an exchange apart from its time (which the loop shifts).
fn key_of_record(r: &Record) -> String {
    let req = r.l7.request.as_ref().map(|q| &q.http);
    format!(
        "{}:{} {}:{} {} {} {}",
        r.ip.client,
        r.l4.tcp.client_port,
        r.ip.server,
        r.l4.tcp.server_port,
        req.map_or("", |q| q.method.as_str()),
        req.map_or("", |q| q.url.as_str()),
        r.l7.response.as_ref().map_or(0, |s| s.http.code)
    )
}

fn key_of_flow(f: &Value) -> String {
    format!(
        "{}:{} {}:{} {} {} {}",
        f["IP"]["source"].as_str().unwrap(),
        f["l4"]["TCP"]["sourcePort"],
        f["IP"]["destination"].as_str().unwrap(),
        f["l4"]["TCP"]["destinationPort"],
        f["l7"]["http"]["method"].as_str().unwrap(),
        f["l7"]["http"]["url"].as_str().unwrap(),
        f["l7"]["http"]["code"]
    )
}

fn promql(port: u16, q: &str) -> Vec<Value> {
    let (status, body) = http_get(port, &format!("/api/v1/query?query={}", urlencode(q))).unwrap();
    assert_eq!(status, 200, "{q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().unwrap().clone()
}

fn scalar(port: u16, q: &str) -> Option<f64> {
    promql(port, q)
        .first()
        .and_then(|r| r["value"][1].as_str())
        .and_then(|s| s.parse().ok())
}

/// Prometheus' histogram_quantile interpolation on the latencies themselves.
fn expected_quantile(q: f64, lat: &[f64]) -> f64 {
    let cumulative: Vec<f64> = DEFAULT_BUCKETS
        .iter()
        .map(|b| lat.iter().filter(|l| *l <= b).count() as f64)
        .collect();
    let rank = q * lat.len() as f64;
    let i = cumulative.iter().position(|c| *c >= rank).unwrap();
    let (start, below) = if i == 0 {
        (0.0, 0.0)
    } else {
        (DEFAULT_BUCKETS[i - 1], cumulative[i - 1])
    };
    start + (DEFAULT_BUCKETS[i] - start) * ((rank - below) / (cumulative[i] - below))
}

#[test]
fn perisco_pcap_to_hubble_and_prometheus_matches_the_file_sink() {
    let test = "perisco_pcap_to_hubble_and_prometheus_matches_the_file_sink";
    if !require(test, &[Need::Command("grpcurl"), Need::Command("prometheus")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    // Run 1: the records, through a file sink.
    let out_path = dir.path().join("records.json");
    let cfg1 = dir.path().join("file.toml");
    std::fs::write(
        &cfg1,
        pipeline(
            &format!(
                "[sinks.out]\ntype = \"file\"\ninputs = [\"pairs\"]\npath = \"{}\"\n",
                out_path.display()
            ),
            false,
        ),
    )
    .unwrap();
    if !ready(test, &cfg1) {
        return;
    }
    let status = Command::new(perisco_bin())
        .arg("--config")
        .arg(&cfg1)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "perisco run 1: {status}");
    let records: Vec<Record> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record per line"))
        .collect();
    assert_eq!(records.len(), 8, "the fixture's eight exchanges");
    let by_key: HashMap<String, &Record> = records.iter().map(|r| (key_of_record(r), r)).collect();
    assert_eq!(
        by_key.len(),
        records.len(),
        "exchanges are told apart by ports, method, url and code"
    );

    // Run 2: the same capture in a loop, into hubble and the exporter.
    let (grpc, metrics, prom_port) = (free_port(), free_port(), free_port());
    let cfg2 = dir.path().join("observe.toml");
    std::fs::write(
        &cfg2,
        pipeline(
            &format!(
                "[sinks.hubble]\ntype = \"hubble\"\ninputs = [\"pairs\"]\naddress = \"127.0.0.1:{grpc}\"\nnode_name = \"e2e\"\n\n[sinks.red]\ntype = \"prometheus_exporter\"\ninputs = [\"pairs\"]\naddress = \"127.0.0.1:{metrics}\"\n"
            ),
            true,
        ),
    )
    .unwrap();
    let perisco = ChildGuard::spawn(
        Command::new(perisco_bin())
            .arg("--config")
            .arg(&cfg2)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    assert!(
        wait_for_port(addr(grpc), Duration::from_secs(30)),
        "hubble sink listening"
    );
    assert!(
        wait_for_port(addr(metrics), Duration::from_secs(30)),
        "exporter listening"
    );

    let out = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-emit-defaults",
            "-d",
            r#"{"number":400}"#,
            &format!("127.0.0.1:{grpc}"),
            "observer.Observer/GetFlows",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let flows: Vec<Value> = serde_json::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
        .into_iter::<Value>()
        .map(|v| v.unwrap()["flow"].clone())
        .collect();
    assert!(
        flows.len() >= 2 * records.len(),
        "the loop filled the ring: {} flows",
        flows.len()
    );
    let mut seen = std::collections::HashSet::new();
    for f in &flows {
        let key = key_of_flow(f);
        let r = by_key
            .get(&key)
            .unwrap_or_else(|| panic!("flow {key} is not a record of the file sink"));
        seen.insert(key.clone());
        assert_eq!(
            f["l7"]["http"]["protocol"],
            &*r.l7.request.as_ref().unwrap().http.protocol
        );
        assert_eq!(f["l7"]["latencyNs"], r.l7.latency_ns.unwrap_or(0).to_string());
        assert_eq!(
            f["l7"]["type"],
            if r.l7.response.is_some() { "RESPONSE" } else { "REQUEST" }
        );
        let headers = |h: &[perisco_engine::record::Header]| {
            h.iter().map(|h| format!("{}={}", h.key, h.value)).collect::<Vec<_>>()
        };
        let mut want = headers(&r.l7.request.as_ref().unwrap().http.headers);
        want.extend(headers(r.l7.response.as_ref().map_or(&[][..], |s| &s.http.headers)));
        let got: Vec<String> = f["l7"]["http"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| format!("{}={}", h["key"].as_str().unwrap(), h["value"].as_str().unwrap()))
            .collect();
        assert_eq!(got, want, "headers of {key}");
        assert_eq!(f["nodeName"], r.node.as_deref().unwrap_or("e2e"));
        let t = humantime::parse_rfc3339(f["time"].as_str().unwrap())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(t >= r.ts, "loop replays shift time forward");
    }
    assert_eq!(seen.len(), records.len(), "every record appears as a flow");

    // Prometheus scrapes the exporter while the loop runs.
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(&prom_cfg, format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: perisco\n    static_configs:\n      - targets: ['127.0.0.1:{metrics}']\n")).unwrap();
    let _prom = ChildGuard::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let total_rate = "sum(rate(perisco_http_requests_total[1m]))";
    let mut ready_rate = None;
    for _ in 0..600 {
        if http_get(prom_port, "/-/ready").is_ok_and(|(s, _)| s == 200) {
            ready_rate = scalar(prom_port, total_rate).filter(|r| *r > 0.0);
            if ready_rate.is_some() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready_rate.is_some(), "prometheus computed a request rate");
    // Thousands of loops between scrapes: a partial loop moves ratios by well under 1 %.
    let n = records.len() as f64;
    let count = |pred: &dyn Fn(&Record) -> bool| records.iter().filter(|r| pred(r)).count() as f64;
    let ratio_4xx = scalar(
        prom_port,
        &format!(r#"sum(rate(perisco_http_requests_total{{status_class="4xx"}}[1m])) / {total_rate}"#),
    )
    .unwrap();
    let want_4xx = count(&|r| {
        r.l7.response
            .as_ref()
            .is_some_and(|s| (400..500).contains(&s.http.code))
    }) / n;
    assert!(
        (ratio_4xx - want_4xx).abs() < 0.01,
        "4xx ratio {ratio_4xx} vs {want_4xx}"
    );
    let post = scalar(
        prom_port,
        &format!(r#"sum(rate(perisco_http_requests_total{{method="POST"}}[1m])) / {total_rate}"#),
    )
    .unwrap();
    let want_post = count(&|r| r.l7.request.as_ref().is_some_and(|q| q.http.method == "POST")) / n;
    assert!((post - want_post).abs() < 0.01, "POST share {post} vs {want_post}");
    let lat: Vec<f64> = records
        .iter()
        .filter_map(|r| r.l7.latency_ns)
        .map(|ns| ns as f64 / 1e9)
        .collect();
    for q in [0.5, 0.9] {
        let got = scalar(
            prom_port,
            &format!("histogram_quantile({q}, sum by (le) (rate(perisco_http_request_duration_seconds_bucket[1m])))"),
        )
        .unwrap();
        let want = expected_quantile(q, &lat);
        assert!((got - want).abs() <= 0.05 * want, "p{q}: {got} vs {want}");
    }
    perisco.signal("TERM");
    drop(perisco);
}
