//! Sinks inside a real engine topology: a destination down at start-up does not stop the
//! pipeline, and a reload or a stop flushes what the sink holds.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use perisco_engine::RunningTopology;
use perisco_engine::component::*;
use perisco_engine::config::Config;
use perisco_engine::event::DataType;
use perisco_engine::metrics::Registry;
use perisco_engine::testing::{TestSource, TestTransform};
use perisco_sinks::{file::FileConfig, http::HttpConfig};
use perisco_testutil::{Need, free_port, require};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Sinks {
    File(FileConfig),
    Http(Box<HttpConfig>),
}

impl ComponentConfig for Sinks {
    fn type_name(&self) -> &'static str {
        match self {
            Sinks::File(c) => c.type_name(),
            Sinks::Http(c) => c.type_name(),
        }
    }
    fn validate(&self) -> Vec<ValueError> {
        match self {
            Sinks::File(c) => c.validate(),
            Sinks::Http(c) => c.validate(),
        }
    }
}

impl SinkConfig for Sinks {
    fn accepts(&self, input: DataType) -> bool {
        match self {
            Sinks::File(c) => c.accepts(input),
            Sinks::Http(c) => c.accepts(input),
        }
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        match self {
            Sinks::File(c) => c.build(cx),
            Sinks::Http(c) => c.build(cx),
        }
    }
    fn healthcheck(&self) -> Option<BoxFuture<Result<(), BoxError>>> {
        match self {
            Sinks::File(c) => c.healthcheck(),
            Sinks::Http(c) => c.healthcheck(),
        }
    }
}

struct Comps;
impl Components for Comps {
    type Source = TestSource;
    type Transform = TestTransform;
    type Sink = Sinks;
}

fn cfg(text: &str) -> Config<Comps> {
    Config::from_str(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// conn_ids of every socket event in 2xx requests the recording server got.
async fn received_ids(port: u16) -> Vec<u64> {
    let reqs = get_json(&format!("http://127.0.0.1:{port}/_requests")).await;
    let mut ids = Vec::new();
    for r in reqs.as_array().unwrap().iter().filter(|r| r["status"] == 200) {
        for l in r["body"].as_str().unwrap().lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            ids.push(v["conn_id"].as_u64().unwrap());
        }
    }
    ids
}

/// conn_ids the file sink wrote, in order.
fn file_ids(file: &str) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["conn_id"].as_u64().unwrap())
        .collect()
}

/// A generator into a file sink and an http sink; `count = None` runs until stopped.
fn pipeline(port: u16, file: &str, count: Option<u64>, tenant: &str) -> String {
    let count = count.map_or(String::new(), |c| format!("count = {c}"));
    format!(
        r#"
[global]
channel_capacity = 4

[sources.gen]
type = "generator"
{count}
batch = 100
interval = "5ms"

[sinks.copy]
type = "file"
inputs = ["gen"]
path = {file:?}

[sinks.collector]
type = "http"
inputs = ["gen"]
uri = "http://127.0.0.1:{port}/"
headers = {{ "X-Tenant" = "{tenant}" }}
batch = {{ max_events = 200, timeout = "20ms" }}
buffer = {{ max_events = 20000 }}
retry = {{ initial_backoff = "50ms", max_backoff = "500ms" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_at_startup_does_not_stop_the_pipeline() {
    if !require(
        "a_sink_down_at_startup_does_not_stop_the_pipeline",
        &[Need::Command("python3")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("copy.json").display().to_string();
    let port = free_port(); // nothing listens yet
    const N: u64 = 3000;
    let registry = Registry::new();
    let topo = RunningTopology::start(cfg(&pipeline(port, &file, Some(N), "a")), registry.clone())
        .await
        .unwrap();
    // The file sink gets everything while the collector is down.
    assert!(
        eventually(Duration::from_secs(60), || std::fs::read_to_string(&file)
            .map_or(0, |s| s.lines().count())
            == N as usize)
        .await
    );
    let retried = || {
        registry
            .counter_value("perisco_sink_retried_events_total", &[("component_id", "collector")])
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(30), || retried() > 0).await,
        "the collector sink never retried"
    );
    let _server = spawn_server(
        Command::new("python3")
            .arg(tests_dir().join("sink_server.py"))
            .arg(port.to_string()),
        port,
    );
    let report = topo.stop(Duration::from_secs(30)).await;
    assert!(report.drained);
    let ids: BTreeSet<u64> = received_ids(port).await.into_iter().collect();
    assert_eq!(
        ids,
        (0..N).collect(),
        "every event delivered after the collector came up"
    );
    let delivered = registry.counter_value("perisco_sink_delivered_events_total", &[("component_id", "collector")]);
    assert_eq!(delivered, Some(N));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_a_sink_flushes_the_old_one_and_loses_nothing() {
    if !require(
        "reload_of_a_sink_flushes_the_old_one_and_loses_nothing",
        &[Need::Command("python3")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("copy.json").display().to_string();
    let port = free_port();
    let _server = spawn_server(
        Command::new("python3")
            .arg(tests_dir().join("sink_server.py"))
            .arg(port.to_string()),
        port,
    );
    // The source runs until the topology stops, so the reload surely lands mid-stream.
    let registry = Registry::new();
    let mut topo = RunningTopology::start(cfg(&pipeline(port, &file, None, "a")), registry.clone())
        .await
        .unwrap();
    let delivered = || {
        registry
            .counter_value("perisco_sink_delivered_events_total", &[("component_id", "collector")])
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(60), || delivered() >= 500).await,
        "the first sink generation delivered nothing"
    );
    // A changed sink is rebuilt: the old one delivers what it holds, the new one the rest.
    topo.reload(cfg(&pipeline(port, &file, None, "b"))).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tenants(port).await.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new sink generation delivered nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(topo.stop(Duration::from_secs(30)).await.drained);
    assert_eq!(
        tenants(port).await,
        ["a".to_string(), "b".to_string()].into(),
        "both sink generations delivered"
    );
    // Everything the source emitted reached the file sink (never reloaded); the http sink
    // must have delivered exactly the same events, once each.
    let emitted = file_ids(&file);
    assert_eq!(emitted, (0..emitted.len() as u64).collect::<Vec<_>>());
    let mut ids = received_ids(port).await;
    ids.sort_unstable();
    assert_eq!(ids.len(), emitted.len(), "events delivered by the two generations");
    assert_eq!(ids, emitted, "no loss and no duplicates across the reload");
}

/// X-Tenant values of the requests the recording server got.
async fn tenants(port: u16) -> BTreeSet<String> {
    let v = get_json(&format!("http://127.0.0.1:{port}/_header/x-tenant")).await;
    serde_json::from_value(v).unwrap()
}
