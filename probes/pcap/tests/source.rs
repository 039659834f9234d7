//! The pcap source inside a running pipeline: fixtures in, socket events out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event, SocketData, SocketEventKind};
use perisco_engine::metrics::Registry;
use perisco_engine::testing::TestTransform;
use perisco_engine::{Config, RunningTopology};
use perisco_pcap::{Limits, PcapConfig, read_file};
use serde::Deserialize;

// The engine reads `type` itself and deserialises these externally tagged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TestSource {
    Pcap(PcapConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum TestSink {
    Gather { name: String },
}

struct Test;

impl Components for Test {
    type Source = TestSource;
    type Transform = TestTransform;
    type Sink = TestSink;
}

impl ComponentConfig for TestSource {
    fn type_name(&self) -> &'static str {
        let TestSource::Pcap(c) = self;
        c.type_name()
    }
    fn validate(&self) -> Vec<ValueError> {
        let TestSource::Pcap(c) = self;
        c.validate()
    }
}

impl SourceConfig for TestSource {
    fn output(&self) -> DataType {
        let TestSource::Pcap(c) = self;
        c.output()
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BoxError> {
        let TestSource::Pcap(c) = self;
        c.build(cx)
    }
}

impl ComponentConfig for TestSink {
    fn type_name(&self) -> &'static str {
        "gather"
    }
}

impl SinkConfig for TestSink {
    fn accepts(&self, _input: DataType) -> bool {
        true
    }
    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        let TestSink::Gather { name } = self;
        Ok(Box::new(Gather(name.clone())))
    }
}

static GATHERED: LazyLock<Mutex<HashMap<String, Vec<SocketData>>>> = LazyLock::new(Default::default);

fn gathered(name: &str) -> Vec<SocketData> {
    GATHERED.lock().unwrap().get(name).cloned().unwrap_or_default()
}

fn gathered_len(name: &str) -> usize {
    GATHERED.lock().unwrap().get(name).map_or(0, Vec::len)
}

struct Gather(String);

impl Sink for Gather {
    fn run(self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            while let Some(batch) = cx.input.recv().await {
                let mut all = GATHERED.lock().unwrap();
                let v = all.entry(self.0.clone()).or_default();
                for e in batch {
                    if let Event::Socket(s) = e {
                        v.push(s);
                    }
                }
            }
            Ok(())
        })
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

fn config(name: &str, source: &str) -> Config<Test> {
    let text = format!(
        "[sources.cap]\ntype = \"pcap\"\n{source}\n[sinks.out]\ntype = \"gather\"\ninputs = [\"cap\"]\nname = \"{name}\"\n"
    );
    Config::from_str(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_a_fixture_and_ends() {
    let path = fixture("http1-curl.pcapng");
    let registry = Registry::new();
    let topo = RunningTopology::start(config("once", &format!("path = {:?}", path)), registry.clone())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), topo.wait_sources_finished())
        .await
        .unwrap();
    assert!(topo.stop(Duration::from_secs(10)).await.drained);

    let got = gathered("once");
    let (want, stats) = read_file(&path, Limits::default()).unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        let Event::Socket(w) = w else { panic!() };
        assert_eq!(
            (g.conn_id, g.kind, g.direction, &g.data, g.ts_ns),
            (w.conn_id, w.kind, w.direction, &w.data, w.ts_ns)
        );
    }
    let labels: &[(&str, &str)] = &[("component_id", "cap")];
    assert_eq!(
        registry.counter_value("perisco_pcap_packets_total", labels),
        Some(stats.packets)
    );
    assert_eq!(
        registry.counter_value("perisco_pcap_payload_bytes_total", labels),
        Some(stats.bytes)
    );
    assert_eq!(registry.counter_value("perisco_pcap_passes_total", labels), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_replays_with_time_moving_forward() {
    let path = fixture("ipv6.pcapng");
    let (once, _) = read_file(&path, Limits::default()).unwrap();
    let per_pass = once.len();
    let registry = Registry::new();
    let cfg = config(
        "loop",
        &format!("path = {:?}\nloop = true\nmax_capture_bytes = 16", path),
    );
    let topo = RunningTopology::start(cfg, registry.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while gathered_len("loop") < per_pass * 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("three passes");
    assert!(topo.stop(Duration::from_secs(10)).await.drained);
    let got = gathered("loop");
    let passes: Vec<&[SocketData]> = got.chunks(per_pass).take(3).collect();
    let conns = |p: &[SocketData]| p.iter().map(|s| s.conn_id).collect::<std::collections::BTreeSet<_>>();
    assert!(
        conns(passes[0]).is_disjoint(&conns(passes[1])),
        "each pass has new connection ids"
    );
    let last_ts = |p: &[SocketData]| p.iter().map(|s| s.ts_ns).max().unwrap();
    let first_ts = |p: &[SocketData]| p.iter().map(|s| s.ts_ns).min().unwrap();
    assert!(first_ts(passes[1]) > last_ts(passes[0]));
    assert!(first_ts(passes[2]) > last_ts(passes[1]));
    // Same shape each pass; payloads cut to 16 bytes, true lengths kept.
    for (a, b) in passes[0].iter().zip(passes[1]) {
        assert_eq!(
            (a.kind, a.direction, a.len, &a.data),
            (b.kind, b.direction, b.len, &b.data)
        );
        assert!(a.data.len() <= 16);
    }
    assert!(got.iter().any(|s| s.kind == SocketEventKind::Data && s.truncated()));
    let labels: &[(&str, &str)] = &[("component_id", "cap")];
    assert!(registry.counter_value("perisco_pcap_passes_total", labels).unwrap() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("mixed-sll.pcapng"), dir.path().join("traffic.pcapng")).unwrap();
    let toml = dir.path().join("pipeline.toml");
    std::fs::write(
        &toml,
        "[sources.cap]\ntype = \"pcap\"\npath = \"traffic.pcapng\"\n[sinks.out]\ntype = \"gather\"\ninputs = [\"cap\"]\nname = \"rel\"\n",
    )
    .unwrap();
    let cfg = Config::<Test>::load(&toml).unwrap();
    let topo = RunningTopology::start(cfg, Registry::new()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), topo.wait_sources_finished())
        .await
        .unwrap();
    topo.stop(Duration::from_secs(10)).await;
    assert!(gathered("rel").iter().any(|s| s.kind == SocketEventKind::Data));
}

#[tokio::test]
async fn a_missing_or_bad_file_fails_the_start_naming_it() {
    let err = RunningTopology::start(
        config("missing", "path = \"/nonexistent/capture.pcapng\""),
        Registry::new(),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("/nonexistent/capture.pcapng"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pcap");
    std::fs::write(&bad, vec![0x42; 4096]).unwrap();
    let err = RunningTopology::start(config("bad", &format!("path = {:?}", bad)), Registry::new())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("bad.pcap") && err.contains("not a pcap or pcapng"),
        "{err}"
    );
}

#[test]
fn config_errors_point_at_the_key() {
    let text = "[sources.cap]\ntype = \"pcap\"\npath = \"x.pcap\"\nmax_capture_bytes = 0\nidle_timeout = \"0s\"\n[sinks.out]\ntype = \"gather\"\ninputs = [\"cap\"]\nname = \"x\"\n";
    let err = Config::<Test>::from_str(text, "p.toml").err().unwrap().to_string();
    assert!(err.contains("p.toml:4:") && err.contains("max_capture_bytes"), "{err}");
    assert!(err.contains("p.toml:5:"), "{err}");
    let unknown = "[sources.cap]\ntype = \"pcap\"\npath = \"x.pcap\"\nloops = true\n[sinks.out]\ntype = \"gather\"\ninputs = [\"cap\"]\nname = \"x\"\n";
    let err = Config::<Test>::from_str(unknown, "p.toml").err().unwrap().to_string();
    assert!(err.contains("loops"), "{err}");
}
