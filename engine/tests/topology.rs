//! The running topology: fan-out/fan-in, drain on stop, reload without loss.

use std::collections::HashSet;
use std::time::Duration;

use perisco_engine::RunningTopology;
use perisco_engine::config::Config;
use perisco_engine::metrics::Registry;
use perisco_engine::testing::{TestComponents, collected, collected_count};

type Cfg = Config<TestComponents>;

fn cfg(text: &str) -> Cfg {
    Cfg::from_str(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Every id in `start..start+n` exactly once.
fn assert_exactly_once(name: &str, ids: &[u64], expected: impl Iterator<Item = u64>) {
    let expected: Vec<u64> = expected.collect();
    let set: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(set.len(), ids.len(), "{name}: duplicates");
    assert_eq!(ids.len(), expected.len(), "{name}: count");
    for e in expected {
        assert!(set.contains(&e), "{name}: {e} missing");
    }
}

/// Events the `gen` source sent.
fn gen_sent(registry: &Registry) -> u64 {
    let labels = [
        ("component_id", "gen"),
        ("component_kind", "source"),
        ("component_type", "generator"),
    ];
    registry
        .counter_value("perisco_component_sent_events_total", &labels)
        .unwrap()
}

async fn run_to_end(c: Cfg) -> RunningTopology<TestComponents> {
    let topo = RunningTopology::start(c, Registry::new()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), topo.wait_sources_finished())
        .await
        .unwrap();
    topo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_and_fan_in_deliver_every_event_once_per_path() {
    let c = cfg(r#"
[global]
channel_capacity = 2

[sources.a]
type = "generator"
count = 20000
batch = 100

[sources.b]
type = "generator"
count = 5000
start = 1000000
batch = 7

[transforms.t1]
type = "passthrough"
inputs = ["a", "b"]

[transforms.t2]
type = "passthrough"
inputs = ["t1"]

[sinks.fan_all]
type = "collect"
inputs = ["t2"]
name = "fan_all"

[sinks.fan_a_direct_and_t1]
type = "collect"
inputs = ["a", "t1"]
name = "fan_twice"

[sinks.fan_b]
type = "collect"
inputs = ["b"]
name = "fan_b"
"#);
    let topo = run_to_end(c).await;
    let report = topo.stop(Duration::from_secs(30)).await;
    assert!(report.drained);
    let all = (0..20000).chain(1_000_000..1_005_000);
    assert_exactly_once("fan_all", &collected("fan_all"), all);
    assert_exactly_once("fan_b", &collected("fan_b"), 1_000_000..1_005_000);
    // `a` reaches fan_twice directly and through t1: each id of a exactly twice, b once.
    let twice = collected("fan_twice");
    assert_eq!(twice.len(), 2 * 20000 + 5000);
    let mut counts = std::collections::HashMap::new();
    for id in twice {
        *counts.entry(id).or_insert(0) += 1;
    }
    assert!((0..20000).all(|i| counts[&i] == 2));
    assert!((1_000_000..1_005_000).all(|i| counts[&i] == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_everything_sent() {
    // An endless source stopped mid-stream: what it sent is exactly what the sink got.
    let c = cfg(r#"
[global]
channel_capacity = 4

[sources.gen]
type = "generator"
batch = 64

[transforms.t]
type = "passthrough"
inputs = ["gen"]

[sinks.out]
type = "collect"
inputs = ["t"]
name = "shutdown_out"
"#);
    let registry = Registry::new();
    let topo = RunningTopology::start(c, registry.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = topo.stop(Duration::from_secs(30)).await;
    assert!(report.drained);
    let sent = gen_sent(&registry);
    assert!(sent > 0);
    let ids = collected("shutdown_out");
    assert_exactly_once("shutdown_out", &ids, 0..sent);
}

const RELOAD_BASE: &str = r#"
[global]
channel_capacity = 4

[sources.gen]
type = "generator"
batch = 50
interval = "1ms"

[transforms.stable]
type = "passthrough"
inputs = ["gen"]

[transforms.changing]
type = "passthrough"
inputs = ["gen"]
generation = GEN

[sinks.keep]
type = "collect"
inputs = ["stable"]
name = "reload_keep_NAME"

[sinks.swap]
type = "collect"
inputs = ["changing"]
name = "SWAP"
"#;

fn reload_cfg(name: &str, generation: u64, swap: &str) -> Cfg {
    cfg(&RELOAD_BASE
        .replace("GEN", &generation.to_string())
        .replace("NAME", name)
        .replace("SWAP", swap))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_a_sink_without_loss_or_duplicates() {
    let registry = Registry::new();
    let mut topo = RunningTopology::start(reload_cfg("swap", 0, "swap_a"), registry.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Swap the sink (changed: new name) while events flow.
    topo.reload(reload_cfg("swap", 0, "swap_b")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // An invalid config never reaches the topology: the pipeline keeps running.
    assert!(Cfg::from_str("[sources.gen]\ntype = \"nope\"\n", "bad.toml").is_err());
    topo.reload_failed();
    let before = collected_count("reload_keep_swap");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        collected_count("reload_keep_swap") > before,
        "pipeline stopped after a rejected reload"
    );
    let report = topo.stop(Duration::from_secs(30)).await;
    assert!(report.drained);

    let sent = gen_sent(&registry);
    // The unchanged path saw every event exactly once.
    assert_exactly_once("keep", &collected("reload_keep_swap"), 0..sent);
    // The swapped path: old + new sink together saw every event exactly once.
    let a = collected("swap_a");
    let b = collected("swap_b");
    assert!(!a.is_empty() && !b.is_empty());
    let both: Vec<u64> = a.into_iter().chain(b).collect();
    assert_exactly_once("swap_a+swap_b", &both, 0..sent);
    assert_eq!(
        registry.counter_value("perisco_config_reloads_total", &[("result", "ok")]),
        Some(1)
    );
    assert_eq!(
        registry.counter_value("perisco_config_reloads_total", &[("result", "failed")]),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_stay_healthy() {
    let registry = Registry::new();
    let mut topo = RunningTopology::start(reload_cfg("fifty", 0, "fifty_swap"), registry.clone())
        .await
        .unwrap();
    for g in 1..=50u64 {
        // Rebuild the `changing` transform each time; everything else stays.
        topo.reload(reload_cfg("fifty", g, "fifty_swap")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(topo.health().healthy(), "unhealthy after reload {g}");
    }
    let report = topo.stop(Duration::from_secs(30)).await;
    assert!(report.drained);
    let sent = gen_sent(&registry);
    assert_exactly_once("fifty keep", &collected("reload_keep_fifty"), 0..sent);
    // 50 rebuilt transforms in a row: their outputs together still hold each event once.
    assert_exactly_once("fifty swap", &collected("fifty_swap"), 0..sent);
    assert_eq!(
        registry.counter_value("perisco_config_reloads_total", &[("result", "ok")]),
        Some(50)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_source_counts_what_it_drops() {
    let c = cfg(r#"
[global]
channel_capacity = 1

[sources.gen]
type = "generator"
count = 200000
batch = 100
lossy = true

[sinks.out]
type = "collect"
inputs = ["gen"]
name = "lossy_out"
"#);
    let registry = Registry::new();
    let topo = RunningTopology::start(c, registry.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), topo.wait_sources_finished())
        .await
        .unwrap();
    assert!(topo.stop(Duration::from_secs(30)).await.drained);
    let l = [
        ("component_id", "gen"),
        ("component_kind", "source"),
        ("component_type", "generator"),
    ];
    let dropped = registry
        .counter_value("perisco_component_discarded_events_total", &l)
        .unwrap();
    let got = collected_count("lossy_out");
    assert_eq!(got + dropped, 200000, "delivered {got} + dropped {dropped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_serves_health_and_metrics() {
    let port = perisco_testutil::free_port();
    let c = cfg(&format!(
        r#"
[api]
address = "127.0.0.1:{port}"

[sources.gen]
type = "generator"
batch = 10
interval = "5ms"

[sinks.out]
type = "collect"
inputs = ["gen"]
name = "api_out"
count_only = true
"#
    ));
    let topo = RunningTopology::start(c, Registry::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = http_get(port, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let metrics = http_get(port, "/metrics").await;
    assert!(
        metrics.contains("perisco_component_sent_events_total{component_id=\"gen\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("perisco_channel_used_batches{component_id=\"out\"}"),
        "{metrics}"
    );
    let body = metrics.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    if perisco_testutil::require(
        "api_serves_health_and_metrics/promtool",
        &[perisco_testutil::Need::Command("promtool")],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.txt");
        std::fs::write(&f, &body).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("promtool check metrics < {}", f.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(topo.stop(Duration::from_secs(10)).await.drained);
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}
