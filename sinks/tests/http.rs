//! `http` sink against a real recording HTTP server (tests/sink_server.py).

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use perisco_engine::component::*;
use perisco_sinks::http::HttpConfig;
use perisco_testutil::{ChildGuard, Need, free_port, require};
use serde_json::Value;

fn start_server(port: u16, status: u16) -> ChildGuard {
    let script = tests_dir().join("sink_server.py");
    spawn_server(
        Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .env("SINK_STATUS", status.to_string()),
        port,
    )
}

fn sink(h: &Harness, toml_text: &str) -> Box<dyn Sink> {
    let cfg: HttpConfig = toml::from_str(toml_text).unwrap();
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    cfg.build(&h.cx).unwrap()
}

/// Every record in requests the server answered with `status`, and those requests.
async fn received(port: u16, status: u64) -> (Vec<Value>, Vec<Value>) {
    let reqs = get_json(&format!("http://127.0.0.1:{port}/_requests")).await;
    let reqs: Vec<Value> = reqs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == status)
        .cloned()
        .collect();
    let mut records = Vec::new();
    for r in &reqs {
        let body = r["body"].as_str().unwrap();
        if body.starts_with('[') {
            let arr: Vec<Value> = serde_json::from_str(body).unwrap();
            records.extend(arr);
        } else {
            records.extend(body.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
    }
    (records, reqs)
}

async fn run_all(h: &Harness, sink: Box<dyn Sink>, events: Vec<perisco_engine::event::Event>) {
    let (tx, task) = h.start(sink, 4);
    for b in events.chunks(100) {
        tx.send(b.to_vec()).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("sink did not finish")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_delivers_every_record_as_the_file_sink_writes_it() {
    if !require(
        "http_delivers_every_record_as_the_file_sink_writes_it",
        &[Need::Command("python3")],
    ) {
        return;
    }
    let port = free_port();
    let _server = start_server(port, 200);
    const N: usize = 1000;
    let events = records(N, 0);
    let want = by_seq(file_sink_output(&events).await);
    for (encoding, compression) in [("ndjson", "gzip"), ("json_array", "none")] {
        post_json(&format!("http://127.0.0.1:{port}/_reset"), "").await;
        let h = Harness::new("out");
        let s = sink(
            &h,
            &format!(
                r#"
                uri = "http://127.0.0.1:{port}/ingest"
                encoding = "{encoding}"
                compression = "{compression}"
                headers = {{ "X-Tenant" = "t1" }}
                auth = {{ strategy = "bearer", token = "s3cret" }}
                batch = {{ max_events = 100, timeout = "50ms" }}
                "#
            ),
        );
        run_all(&h, s, events.clone()).await;
        assert_eq!(h.delivered(), N as u64);
        assert_eq!(h.dropped_total(), 0);
        let (got, reqs) = received(port, 200).await;
        assert_same_records(&by_seq(got), &want);
        assert_eq!(reqs.len(), N / 100, "batch.max_events = 100");
        for r in &reqs {
            assert_eq!(r["path"], "/ingest");
            // hyper sends header names in lowercase.
            let hdr = |k: &str| r["headers"][k].as_str().map(str::to_string);
            assert_eq!(hdr("authorization").as_deref(), Some("Bearer s3cret"));
            assert_eq!(hdr("x-tenant").as_deref(), Some("t1"));
            let ct = if encoding == "ndjson" {
                "application/x-ndjson"
            } else {
                "application/json"
            };
            assert_eq!(hdr("content-type").as_deref(), Some(ct));
            assert_eq!(
                hdr("content-encoding").as_deref() == Some("gzip"),
                compression == "gzip"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_retries_through_a_503_period() {
    if !require("http_retries_through_a_503_period", &[Need::Command("python3")]) {
        return;
    }
    let port = free_port();
    let _server = start_server(port, 503);
    const N: usize = 300;
    let events = records(N, 0);
    let h = Harness::new("out");
    let s = sink(
        &h,
        &format!(
            r#"
            uri = "http://127.0.0.1:{port}/"
            batch = {{ max_events = 100, timeout = "20ms" }}
            retry = {{ initial_backoff = "50ms", max_backoff = "200ms" }}
            "#
        ),
    );
    let (tx, task) = h.start(s, 4);
    for b in events.chunks(100) {
        tx.send(b.to_vec()).await.unwrap();
    }
    drop(tx);
    // Several refused attempts, then the server recovers.
    assert!(
        eventually(Duration::from_secs(30), || h.retried() >= 300).await,
        "retried {}",
        h.retried()
    );
    assert_eq!(h.delivered(), 0);
    post_json(&format!("http://127.0.0.1:{port}/_status/200"), "").await;
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (got, _) = received(port, 200).await;
    let seqs: BTreeSet<u64> = got.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
    assert_eq!(got.len(), N, "exactly N records in 2xx requests");
    assert_eq!(seqs.len(), N);
    assert_eq!(h.delivered(), N as u64);
    assert_eq!(h.dropped_total(), 0);
    let (_, refused) = received(port, 503).await;
    assert!(refused.len() >= 3, "{} refused requests", refused.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_permanent_400_is_counted_not_retried() {
    if !require("http_permanent_400_is_counted_not_retried", &[Need::Command("python3")]) {
        return;
    }
    let port = free_port();
    let _server = start_server(port, 400);
    const N: usize = 300;
    let h = Harness::new("out");
    let s = sink(
        &h,
        &format!(
            r#"
            uri = "http://127.0.0.1:{port}/"
            batch = {{ max_events = 100, timeout = "20ms" }}
            retry = {{ initial_backoff = "50ms" }}
            "#
        ),
    );
    run_all(&h, s, records(N, 0)).await;
    let (_, reqs) = received(port, 400).await;
    assert_eq!(reqs.len(), N / 100, "one request per batch, none retried");
    assert_eq!(h.retried(), 0);
    assert_eq!(h.delivered(), 0);
    assert_eq!(h.dropped("rejected"), N as u64);
    assert_eq!(h.cx.metrics.discarded.get(), N as u64);
    assert!(h.cx.metrics.errors.get() >= 3);
}

/// The recording server as a process that the outage tests really stop (SIGKILL) and
/// start again on the same port; it appends every request to `log`, which outlives it.
struct RestartingServer {
    port: u16,
    log: std::path::PathBuf,
    child: Option<ChildGuard>,
}

impl RestartingServer {
    fn spawn(&self) -> ChildGuard {
        spawn_server(
            Command::new("python3")
                .arg(tests_dir().join("sink_server.py"))
                .arg(self.port.to_string())
                .arg(&self.log),
            self.port,
        )
    }

    /// Every record in 2xx requests over all the server's lives.
    fn received(&self) -> Vec<Value> {
        let mut records = Vec::new();
        for line in std::fs::read_to_string(&self.log).unwrap().lines() {
            let r: Value = serde_json::from_str(line).unwrap();
            if r["status"] == 200 {
                let body = r["body"].as_str().unwrap();
                records.extend(body.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
            }
        }
        records
    }
}

impl Network for RestartingServer {
    async fn down(&mut self) {
        self.child = None; // ChildGuard's drop kills and reaps the process
    }
    async fn up(&mut self) {
        let child = tokio::task::block_in_place(|| self.spawn());
        self.child = Some(child);
    }
}

async fn outage(drop_newest: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RestartingServer {
        port: free_port(),
        log: dir.path().join("requests.jsonl"),
        child: None,
    };
    server.up().await;
    const N: usize = 3000;
    let when_full = if drop_newest { "drop_newest" } else { "block" };
    let h = Harness::new("out");
    let s = sink(
        &h,
        &format!(
            r#"
            uri = "http://127.0.0.1:{}/"
            timeout = "10s"
            batch = {{ max_events = 50, timeout = "20ms" }}
            buffer = {{ max_events = 200, when_full = "{when_full}" }}
            retry = {{ initial_backoff = "50ms", max_backoff = "300ms" }}
            "#,
            server.port
        ),
    );
    let o = Outage {
        before: 500,
        buffer_max: 200,
        sink_batch: 50,
        feed_batch: 50,
        channel: 2,
        drop_newest,
    };
    run_through_outage(&h, s, &mut server, records(N, 0), o).await;
    let got = server.received();
    let seqs: BTreeSet<u64> = got.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
    // A request cut after the server read it but before the reply arrived is sent again:
    // at-least-once, so compare distinct records.
    assert_eq!(
        seqs.len() as u64,
        h.delivered(),
        "distinct records received = delivered"
    );
    if !drop_newest {
        assert_eq!(seqs, (0..N as u64).collect::<BTreeSet<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_outage_with_block_delivers_everything_after_recovery() {
    if !require(
        "http_outage_with_block_delivers_everything_after_recovery",
        &[Need::Command("python3")],
    ) {
        return;
    }
    outage(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_outage_with_drop_newest_counts_every_drop() {
    if !require(
        "http_outage_with_drop_newest_counts_every_drop",
        &[Need::Command("python3")],
    ) {
        return;
    }
    outage(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_healthcheck_names_the_unreachable_address() {
    if !require(
        "http_healthcheck_names_the_unreachable_address",
        &[Need::Command("python3")],
    ) {
        return;
    }
    let port = free_port(); // nothing listens yet
    let cfg: HttpConfig = toml::from_str(&format!("uri = \"http://127.0.0.1:{port}/ingest\"")).unwrap();
    let err = cfg
        .healthcheck()
        .expect("http sink has a healthcheck")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "error names the address: {err}"
    );
    let _server = start_server(port, 200);
    cfg.healthcheck()
        .unwrap()
        .await
        .expect("healthy once the server listens");
    // A TCP connect only: the check sent no request to the receiver.
    let stats = get_json(&format!("http://127.0.0.1:{port}/_stats")).await;
    assert_eq!(stats["requests"], 0, "{stats}");
}

/// A test CA and a server certificate for 127.0.0.1 signed by it, made with openssl(1):
/// (ca.pem, server cert, server key).
fn make_certs(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=perisco test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tls_trusts_tls_ca_file_and_refuses_an_unknown_ca() {
    if !require(
        "http_tls_trusts_tls_ca_file_and_refuses_an_unknown_ca",
        &[Need::Command("python3"), Need::Command("openssl")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    let port = free_port();
    let _server = spawn_server(
        Command::new("python3")
            .arg(tests_dir().join("sink_server.py"))
            .arg(port.to_string())
            .env("SINK_TLS_CERT", &cert)
            .env("SINK_TLS_KEY", &key),
        port,
    );
    const N: usize = 200;
    let events = records(N, 0);
    let common = format!(
        "uri = \"https://127.0.0.1:{port}/\"\nbatch = {{ max_events = 100, timeout = \"20ms\" }}\nretry = {{ initial_backoff = \"20ms\", max_attempts = 2 }}\n"
    );
    // Without the CA the certificate is unknown: every attempt fails, nothing arrives.
    let h = Harness::new("out");
    run_all(&h, sink(&h, &common), events.clone()).await;
    assert_eq!(h.delivered(), 0);
    assert_eq!(h.dropped("retries_exhausted"), N as u64);
    // tls.ca_file trusts it.
    let h = Harness::new("out");
    let with_ca = format!("{common}tls = {{ ca_file = {:?} }}\n", ca.display().to_string());
    run_all(&h, sink(&h, &with_ca), events.clone()).await;
    assert_eq!(h.delivered(), N as u64);
    let client = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let body = client
        .get(format!("https://127.0.0.1:{port}/_requests"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reqs: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let got: Vec<Value> = reqs
        .iter()
        .flat_map(|r| {
            r["body"]
                .as_str()
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_same_records(&by_seq(got), &by_seq(file_sink_output(&events).await));
}
