//! `elasticsearch` sink against osmem-server (the OpenSearch 3.8 REST API, in memory).

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use perisco_engine::component::*;
use perisco_engine::event::Event;
use perisco_sinks::elasticsearch::ElasticsearchConfig;
use perisco_testutil::{ChildGuard, Need, free_port, require};
use serde_json::Value;

/// osmem-server on `port`, with the cross-process turn lock (see `exclusive`).
fn start_osmem(port: u16) -> (std::fs::File, ChildGuard) {
    let turn = exclusive("osmem");
    (turn, start_osmem_unlocked(port))
}

fn start_osmem_unlocked(port: u16) -> ChildGuard {
    spawn_server(
        Command::new("osmem-server").args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch", "-no-ja"]),
        port,
    )
}

fn sink(h: &Harness, toml_text: &str) -> Box<dyn Sink> {
    let cfg: ElasticsearchConfig = toml::from_str(toml_text).unwrap();
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    cfg.build(&h.cx).unwrap()
}

async fn run_all(h: &Harness, sink: Box<dyn Sink>, events: Vec<Event>) {
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

async fn count(base: &str, index: &str) -> u64 {
    let _ = post_json(&format!("{base}/{index}/_refresh"), "").await;
    let c = get_json(&format!("{base}/{index}/_count")).await;
    c["count"].as_u64().unwrap_or_else(|| panic!("{c}"))
}

/// Every document's `_source` in `index`.
async fn all_docs(base: &str, index: &str, max: usize) -> Vec<Value> {
    let r = post_json(
        &format!("{base}/{index}/_search"),
        &format!(r#"{{"size":{max},"query":{{"match_all":{{}}}}}}"#),
    )
    .await;
    r["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|h| h["_source"].clone())
        .collect()
}

fn needs(test: &str) -> bool {
    require(test, &[Need::Command("osmem-server"), Need::Command("python3")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_indexes_every_record_as_the_file_sink_writes_it() {
    if !needs("elasticsearch_indexes_every_record_as_the_file_sink_writes_it") {
        return;
    }
    let port = free_port();
    let _osmem = start_osmem(port);
    let base = format!("http://127.0.0.1:{port}");
    const N: usize = 600;
    let events = records(N, 0);
    let h = Harness::new("es");
    let s = sink(
        &h,
        &format!(
            r#"
            endpoints = ["{base}"]
            index = "perisco-%Y.%m.%d"
            compression = "gzip"
            index_template = {{}}
            batch = {{ max_events = 100, timeout = "50ms" }}
            "#
        ),
    );
    run_all(&h, s, events.clone()).await;
    assert_eq!(h.delivered(), N as u64);
    assert_eq!(h.dropped_total(), 0);
    assert_eq!(count(&base, "perisco-*").await, N as u64);
    // The records span two UTC days: one index per day, from the record's ts.
    assert_eq!(count(&base, "perisco-2023.04.11").await, N as u64 / 2);
    assert_eq!(count(&base, "perisco-2023.04.12").await, N as u64 / 2);
    let got = by_seq(all_docs(&base, "perisco-*", N + 10).await);
    assert_same_records(&got, &by_seq(file_sink_output(&events).await));
    let mapping = get_json(&format!("{base}/perisco-2023.04.11/_mapping")).await;
    let props = &mapping["perisco-2023.04.11"]["mappings"]["properties"];
    assert_eq!(props["ts"]["type"], "date_nanos", "index template applied: {mapping}");
    assert_eq!(props["ip"]["properties"]["client"]["type"], "ip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_retries_items_refused_with_429() {
    if !needs("elasticsearch_retries_items_refused_with_429") {
        return;
    }
    let port = free_port();
    let _osmem = start_osmem(port);
    let base = format!("http://127.0.0.1:{port}");
    let proxy_port = free_port();
    let _proxy = spawn_server(
        Command::new("python3")
            .arg(tests_dir().join("es_fault_proxy.py"))
            .args([proxy_port.to_string(), base.clone(), "2".into()]),
        proxy_port,
    );
    const N: usize = 200;
    let events = records(N, 0);
    let h = Harness::new("es");
    let s = sink(
        &h,
        &format!(
            r#"
            endpoints = ["http://127.0.0.1:{proxy_port}"]
            index = "perisco-%Y.%m.%d"
            batch = {{ max_events = 100, timeout = "50ms" }}
            retry = {{ initial_backoff = "50ms", max_backoff = "200ms" }}
            "#
        ),
    );
    run_all(&h, s, events.clone()).await;
    let stats = get_json(&format!("http://127.0.0.1:{proxy_port}/_proxy/stats")).await;
    let faked = stats["faked_429_items"].as_u64().unwrap();
    assert!(faked >= 50, "{stats}");
    assert_eq!(h.retried(), faked, "every 429 item retried, nothing else");
    assert_eq!(h.delivered(), N as u64);
    assert_eq!(h.dropped_total(), 0);
    assert_eq!(
        count(&base, "perisco-*").await,
        N as u64,
        "exactly N: retried items are the refused ones only"
    );
    let got = by_seq(all_docs(&base, "perisco-*", N + 10).await);
    assert_same_records(&got, &by_seq(file_sink_output(&events).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_counts_items_refused_for_good() {
    if !needs("elasticsearch_counts_items_refused_for_good") {
        return;
    }
    let port = free_port();
    let _osmem = start_osmem(port);
    let base = format!("http://127.0.0.1:{port}");
    const N: usize = 100;
    const BAD: usize = 10;
    let mut events = records(N, 0);
    // Documents (as a remap would reshape them) whose ip.client is not an IP: the index
    // template maps it as `ip`, so the server refuses these items with 400.
    for i in 0..BAD {
        let doc = serde_json::json!({"ts": "2023-04-11T03:43:29Z", "pid": 100_000 + i, "ip": {"client": "not-an-ip"}});
        let Value::Object(m) = doc else { unreachable!() };
        events.push(Event::Document(Box::new(m)));
    }
    let h = Harness::new("es");
    let s = sink(
        &h,
        &format!(
            r#"
            endpoints = ["{base}"]
            index_template = {{ name = "perisco-test" }}
            batch = {{ max_events = 1000, timeout = "50ms" }}
            retry = {{ initial_backoff = "50ms" }}
            "#
        ),
    );
    run_all(&h, s, events).await;
    assert_eq!(h.dropped("rejected"), BAD as u64);
    assert_eq!(h.retried(), 0, "400 items are not retried");
    assert_eq!(h.delivered(), N as u64);
    assert_eq!(count(&base, "perisco-*").await, N as u64);
}

async fn outage(drop_newest: bool) {
    let port = free_port();
    let _osmem = start_osmem(port);
    let base = format!("http://127.0.0.1:{port}");
    let mut proxy = TcpProxy::start(free_port(), ([127, 0, 0, 1], port).into()).await;
    const N: usize = 2000;
    let when_full = if drop_newest { "drop_newest" } else { "block" };
    // With content ids a bulk retried after a lost answer overwrites instead of duplicating.
    let document_id = if drop_newest { "auto" } else { "content_hash" };
    let h = Harness::new("es");
    let s = sink(
        &h,
        &format!(
            r#"
            endpoints = ["http://127.0.0.1:{}"]
            document_id = "{document_id}"
            # A request cut half-way can leave the server waiting for the rest of its body;
            # the request timeout turns that into a retry.
            timeout = "2s"
            batch = {{ max_events = 50, timeout = "20ms" }}
            buffer = {{ max_events = 200, when_full = "{when_full}" }}
            retry = {{ initial_backoff = "50ms", max_backoff = "300ms", flush_timeout = "60s" }}
            "#,
            proxy.port
        ),
    );
    let o = Outage {
        before: 400,
        buffer_max: 200,
        sink_batch: 50,
        feed_batch: 50,
        channel: 2,
        drop_newest,
    };
    run_through_outage(&h, s, &mut proxy, records(N, 0), o).await;
    let total = count(&base, "perisco-*").await;
    let docs = all_docs(&base, "perisco-*", total as usize).await;
    let seqs: BTreeSet<u64> = docs.iter().map(|d| d["pid"].as_u64().unwrap()).collect();
    eprintln!(
        "documents {total}, distinct {}, delivered {}, retried {}",
        seqs.len(),
        h.delivered(),
        h.retried()
    );
    // Auto ids: at least once (a request cut after indexing is sent again).
    assert_eq!(seqs.len() as u64, h.delivered(), "distinct documents = delivered");
    if !drop_newest {
        assert_eq!(seqs, (0..N as u64).collect::<BTreeSet<_>>());
        assert_eq!(total, N as u64, "content ids: no duplicates");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_outage_with_block_delivers_everything_after_recovery() {
    if !needs("elasticsearch_outage_with_block_delivers_everything_after_recovery") {
        return;
    }
    outage(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_outage_with_drop_newest_counts_every_drop() {
    if !needs("elasticsearch_outage_with_drop_newest_counts_every_drop") {
        return;
    }
    outage(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_healthcheck_reports_down_and_up() {
    if !needs("elasticsearch_healthcheck_reports_down_and_up") {
        return;
    }
    let port = free_port(); // nothing listens yet
    let cfg: ElasticsearchConfig = toml::from_str(&format!("endpoints = [\"http://127.0.0.1:{port}\"]")).unwrap();
    let err = cfg.healthcheck().expect("es sink has a healthcheck").await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "error names the endpoint: {err}"
    );
    let _osmem = start_osmem(port);
    cfg.healthcheck()
        .unwrap()
        .await
        .expect("healthy once osmem-server listens");
}

/// osmem-server really killed and started again on the same port. It keeps documents in
/// memory only, so the test reads back what it holds before killing it; the sink's next
/// `_bulk` creates the index again (as it would on a fresh cluster).
struct RestartingOsmem {
    port: u16,
    child: Option<ChildGuard>,
    /// Documents read from the server's earlier lives.
    earlier: Vec<Value>,
}

impl Network for RestartingOsmem {
    async fn down(&mut self) {
        let base = format!("http://127.0.0.1:{}", self.port);
        let n = count(&base, "perisco-*").await;
        self.earlier.extend(all_docs(&base, "perisco-*", n as usize).await);
        self.child = None; // killed and reaped
    }

    async fn up(&mut self) {
        let port = self.port;
        self.child = Some(tokio::task::block_in_place(|| start_osmem_unlocked(port)));
    }
}

async fn restart(drop_newest: bool) {
    let _turn = exclusive("osmem");
    let port = free_port();
    let mut server = RestartingOsmem {
        port,
        child: None,
        earlier: Vec::new(),
    };
    server.up().await;
    let base = format!("http://127.0.0.1:{port}");
    const N: usize = 2000;
    let when_full = if drop_newest { "drop_newest" } else { "block" };
    let h = Harness::new("es");
    let s = sink(
        &h,
        &format!(
            r#"
            endpoints = ["{base}"]
            document_id = "content_hash"
            timeout = "10s"
            batch = {{ max_events = 50, timeout = "20ms" }}
            buffer = {{ max_events = 200, when_full = "{when_full}" }}
            retry = {{ initial_backoff = "50ms", max_backoff = "300ms", flush_timeout = "60s" }}
            "#
        ),
    );
    let o = Outage {
        before: 400,
        buffer_max: 200,
        sink_batch: 50,
        feed_batch: 50,
        channel: 2,
        drop_newest,
    };
    run_through_outage(&h, s, &mut server, records(N, 0), o).await;
    let later_n = count(&base, "perisco-*").await;
    let later = all_docs(&base, "perisco-*", later_n as usize).await;
    eprintln!(
        "before the restart {}, after {}, delivered {}, retried {}",
        server.earlier.len(),
        later.len(),
        h.delivered(),
        h.retried()
    );
    let seqs: BTreeSet<u64> = server
        .earlier
        .iter()
        .chain(&later)
        .map(|d| d["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len() as u64, h.delivered(), "distinct documents = delivered");
    if !drop_newest {
        assert_eq!(seqs, (0..N as u64).collect::<BTreeSet<_>>());
        assert_eq!(server.earlier.len() + later.len(), N, "content ids: no duplicates");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_server_restart_with_block_delivers_everything() {
    if !needs("elasticsearch_server_restart_with_block_delivers_everything") {
        return;
    }
    restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_server_restart_with_drop_newest_counts_every_drop() {
    if !needs("elasticsearch_server_restart_with_drop_newest_counts_every_drop") {
        return;
    }
    restart(true).await;
}
