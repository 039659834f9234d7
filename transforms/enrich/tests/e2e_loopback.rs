//! End to end with real traffic: curl from 127.0.0.2 to an HTTP server on 127.0.0.3,
//! captured on lo, replayed through pcap → parse → match → enrich (against kmock, which
//! serves the pods and services of those addresses) → a collecting sink. The records must
//! name both pods, their workloads and services.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use perisco_engine::component::*;
use perisco_engine::config::Config;
use perisco_engine::event::DataType;
use perisco_engine::metrics::Registry;
use perisco_engine::topology::RunningTopology;
use perisco_testutil::{ChildGuard, Need, free_port, require, wait_for_port};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Sources {
    Pcap(perisco_pcap::PcapConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Transforms {
    Parse(perisco_l7::ParseConfig),
    Match(perisco_l7::MatchConfig),
    Enrich(perisco_enrich::EnrichConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Sinks {
    Keep(KeepConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepConfig {}

struct Comps;

impl Components for Comps {
    type Source = Sources;
    type Transform = Transforms;
    type Sink = Sinks;
}

impl ComponentConfig for Sources {
    fn type_name(&self) -> &'static str {
        let Sources::Pcap(c) = self;
        c.type_name()
    }
}

impl SourceConfig for Sources {
    fn output(&self) -> DataType {
        let Sources::Pcap(c) = self;
        c.output()
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BoxError> {
        let Sources::Pcap(c) = self;
        c.build(cx)
    }
}

impl ComponentConfig for Transforms {
    fn type_name(&self) -> &'static str {
        match self {
            Transforms::Parse(c) => c.type_name(),
            Transforms::Match(c) => c.type_name(),
            Transforms::Enrich(c) => c.type_name(),
        }
    }
}

impl TransformConfig for Transforms {
    fn accepts(&self, input: DataType) -> bool {
        match self {
            Transforms::Parse(c) => c.accepts(input),
            Transforms::Match(c) => c.accepts(input),
            Transforms::Enrich(c) => c.accepts(input),
        }
    }
    fn output(&self) -> DataType {
        match self {
            Transforms::Parse(c) => c.output(),
            Transforms::Match(c) => c.output(),
            Transforms::Enrich(c) => c.output(),
        }
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        match self {
            Transforms::Parse(c) => c.build(cx),
            Transforms::Match(c) => c.build(cx),
            Transforms::Enrich(c) => c.build(cx),
        }
    }
}

/// Records from the first completely enriched one on (the cache only grows in this test,
/// so every later one is enriched from a complete snapshot too), at most 100; and how many
/// records arrived in all.
static KEPT: LazyLock<Mutex<(Vec<Value>, u64)>> = LazyLock::new(Default::default);

fn complete(v: &Value) -> bool {
    ["client", "server", "clientService", "serverService"]
        .iter()
        .all(|k| v.get(k).is_some())
}

impl ComponentConfig for Sinks {
    fn type_name(&self) -> &'static str {
        "keep"
    }
}

impl SinkConfig for Sinks {
    fn accepts(&self, input: DataType) -> bool {
        input == DataType::Record
    }
    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(Keep))
    }
}

struct Keep;

impl Sink for Keep {
    fn run(self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            while let Some(batch) = cx.input.recv().await {
                let mut kept = KEPT.lock().unwrap();
                kept.1 += batch.len() as u64;
                for v in batch.iter().filter_map(|e| e.to_json_value().ok()) {
                    if (!kept.0.is_empty() || complete(&v)) && kept.0.len() < 100 {
                        kept.0.push(v);
                    }
                }
            }
            Ok(())
        })
    }
}

/// Capture HTTP exchanges 127.0.0.2 → 127.0.0.3:port on lo into `out`.
fn capture_traffic(out: &Path, port: u16, requests: usize) {
    let mut dumpcap = ChildGuard::spawn(
        Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("start dumpcap");
    // dumpcap writes the pcapng section header once it captures.
    let t0 = std::time::Instant::now();
    while std::fs::metadata(out).map_or(0, |m| m.len()) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(60), "dumpcap did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("books.json"), b"[{\"title\":\"perisco\"}]").unwrap();
    let _server = ChildGuard::spawn(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.3", &port.to_string()])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    assert!(wait_for_port(([127, 0, 0, 3], port).into(), Duration::from_secs(60)));
    for _ in 0..requests {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--interface", "127.0.0.2"])
            .arg(format!("http://127.0.0.3:{port}/books.json"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "curl failed");
    }
    std::thread::sleep(Duration::from_millis(500));
    dumpcap.signal("INT");
    let _ = dumpcap.0.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_traffic_comes_out_enriched() {
    let test = "loopback_traffic_comes_out_enriched";
    if !require(
        test,
        &[
            Need::Root,
            Need::Command("dumpcap"),
            Need::Command("curl"),
            Need::Command("python3"),
        ],
    ) {
        return;
    }
    let kmock_ok = Command::new("python3")
        .args(["-c", "import kmock"])
        .status()
        .is_ok_and(|s| s.success());
    if !kmock_ok {
        assert!(
            std::env::var("PERISCO_REQUIRE_ALL").map_or(true, |v| v != "1"),
            "{test}: kmock missing"
        );
        eprintln!("SKIPPED {test}: python module kmock missing (run scripts/setup.d/40-enrich.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("lo.pcapng");
    let http_port = free_port();
    let requests = 3;
    tokio::task::spawn_blocking({
        let pcap = pcap.clone();
        move || capture_traffic(&pcap, http_port, requests)
    })
    .await
    .unwrap();

    // The cluster: webapp (127.0.0.2) calls books (127.0.0.3).
    let api_port = free_port();
    let _kmock = perisco_testutil::start_kmock(api_port);
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: http://127.0.0.1:{api_port}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: u\ncurrent-context: k\n"
        ),
    )
    .unwrap();
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    let post = |path: &str, body: Value| {
        let req = http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
        let client = client.clone();
        async move { client.request::<Value>(req).await.unwrap() }
    };
    for (name, ip, app) in [
        ("webapp-5f459f867b-2zbx8", "127.0.0.2", "webapp"),
        ("books-675456b8d-prpht", "127.0.0.3", "books"),
    ] {
        post(
            "/api/v1/namespaces/default/pods",
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
                   "spec": {"containers": [{"name": "c", "image": "i"}]},
                   "status": {"phase": "Running", "podIP": ip}}),
        )
        .await;
        post(
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": format!("{app}-x"), "namespace": "default",
                                "labels": {"kubernetes.io/service-name": app}},
                   "addressType": "IPv4", "endpoints": [{"addresses": [ip]}]}),
        )
        .await;
    }

    let toml = format!(
        r#"
[sources.capture]
type = "pcap"
path = "{}"
loop = true

[transforms.l7]
type = "parse"
inputs = ["capture"]

[transforms.pairs]
type = "match"
inputs = ["l7"]

[transforms.k8s]
type = "enrich"
inputs = ["pairs"]
kubeconfig = "{}"
node_name = "node-a"

[sinks.out]
type = "keep"
inputs = ["k8s"]
"#,
        pcap.display(),
        kubeconfig.display()
    );
    // Replayed in a loop, like a live capture that keeps going: records that pass before
    // the enrich cache has listed the emulator go out un-enriched, later ones enriched.
    let cfg: Config<Comps> = Config::from_str(&toml, "e2e.toml").unwrap();
    let topo = RunningTopology::start(cfg, Registry::new()).await.unwrap();
    common::wait_until("enriched records", || KEPT.lock().unwrap().0.len() >= 2 * requests).await;
    topo.stop(Duration::from_secs(30)).await;

    let (kept, total) = KEPT.lock().unwrap().clone();
    assert!(total >= kept.len() as u64);
    let exchanges: Vec<&Value> = kept
        .iter()
        .filter(|r| r["l7"]["request"]["http"]["url"] == "/books.json")
        .collect();
    assert_eq!(exchanges.len(), kept.len(), "only the captured exchanges: {kept:#?}");
    for r in exchanges {
        assert_eq!(r["ip"]["client"], "127.0.0.2");
        assert_eq!(r["ip"]["server"], "127.0.0.3");
        assert_eq!(r["l7"]["response"]["http"]["code"], 200);
        assert_eq!(r["client"]["podName"], "webapp-5f459f867b-2zbx8", "{r:#}");
        assert_eq!(r["client"]["labels"], json!(["app=webapp"]));
        assert_eq!(r["client"]["namespace"], "default");
        assert_eq!(r["server"]["podName"], "books-675456b8d-prpht");
        assert_eq!(r["server"]["labels"], json!(["app=books"]));
        assert_eq!(r["clientService"], json!({"name": "webapp", "namespace": "default"}));
        assert_eq!(r["serverService"], json!({"name": "books", "namespace": "default"}));
        assert_eq!(r["node"], "node-a");
    }
}
