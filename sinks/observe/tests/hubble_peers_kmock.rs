//! `peers = "kubernetes"`: the hubble sink watches perisco agent pods through a Kubernetes
//! API emulator on loopback (kmock, PyPI; testutil/kmock_server.py adds the resourceVersions
//! and list kinds kube's watcher needs) and announces them through `peer.Peer/Notify`,
//! read with grpcurl (a real third-party client, through reflection) as hubble-relay
//! would: PEER_ADDED for the known set, then PEER_ADDED / PEER_UPDATED / PEER_DELETED as
//! pods become ready, move and go away; an API restart relists and announces the
//! difference.

use crate::common;

use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use perisco_engine::health::Status;
use perisco_observe::HubbleConfig;
use perisco_observe::hubble::PeerDiscovery;
use perisco_testutil::{
    ChildGuard, Need, free_port, require, start_kmock, wait_for_port, write_kmock_kubeconfig as write_kubeconfig,
};
use serde_json::{Value, json};

/// A generous wait for an event (not a speed assertion: the machine may be loaded).
const WAIT: Duration = Duration::from_secs(90);

/// grpcurl and kmock importable by python3; a loud skip (or a failure under
/// PERISCO_REQUIRE_ALL=1).
fn prerequisites(test: &str) -> bool {
    require(
        test,
        &[
            Need::Command("python3"),
            Need::Command("grpcurl"),
            Need::PythonModule("kmock"),
        ],
    )
}

/// Our own client, to change the cluster while the sink watches it.
async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// A pod as the DaemonSet of config-examples/k8s makes it (its label), or another app's.
fn pod(name: &str, app: &str, node: &str, ip: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "perisco",
                     "labels": {"app.kubernetes.io/name": app}},
        "spec": {"containers": [{"name": "perisco", "image": "perisco"}], "nodeName": node},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.0.2.10",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .unwrap()
}

fn pods(c: &kube::Client) -> Api<Pod> {
    Api::namespaced(c.clone(), "perisco")
}

async fn create(c: &kube::Client, p: Pod) {
    pods(c).create(&PostParams::default(), &p).await.unwrap();
}

async fn patch_status(c: &kube::Client, name: &str, status: Value) {
    pods(c)
        .patch(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
        .await
        .unwrap();
}

/// A running `grpcurl ... peer.Peer/Notify`: the messages it prints, as they arrive.
struct NotifyStream {
    _grpcurl: ChildGuard,
    rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl NotifyStream {
    fn open(port: u16) -> Self {
        let mut child = ChildGuard::spawn(
            Command::new("grpcurl")
                .args(["-plaintext", &format!("127.0.0.1:{port}"), "peer.Peer/Notify"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("start grpcurl");
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for v in serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>() {
                let Ok(v) = v else { break };
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        NotifyStream { _grpcurl: child, rx }
    }

    /// The next notification as (type, name, address).
    async fn next(&mut self) -> (String, String, String) {
        let v = tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a peer notification in time")
            .expect("grpcurl stream still open");
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        (s("type"), s("name"), s("address"))
    }
}

fn change(kind: &str, name: &str, address: &str) -> (String, String, String) {
    (kind.to_owned(), name.to_owned(), address.to_owned())
}

/// `observer.Observer/GetNodes` through grpcurl: (name, state, address) per node.
fn get_nodes(port: u16) -> Vec<(String, String, String)> {
    let out = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-emit-defaults",
            &format!("127.0.0.1:{port}"),
            "observer.Observer/GetNodes",
        ])
        .output()
        .expect("run grpcurl");
    assert!(
        out.status.success(),
        "GetNodes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("GetNodes JSON");
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("state"), s("address"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_follows_the_agent_pods_through_the_kubernetes_api() {
    let test = "notify_follows_the_agent_pods_through_the_kubernetes_api";
    if !prerequisites(test) {
        return;
    }
    let api_port = free_port();
    let mut kmock = start_kmock(api_port);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), api_port);
    let c = client(&kubeconfig).await;

    // One ready agent, one not ready yet, and another app's pod in the same namespace
    // (the emulator ignores labelSelector: the sink must check it too).
    create(&c, pod("perisco-aaaaa", "perisco", "node-a", "10.0.0.1", true)).await;
    create(&c, pod("perisco-bbbbb", "perisco", "node-b", "10.0.0.2", false)).await;
    create(&c, pod("web-zzzzz", "web", "node-a", "10.0.0.50", true)).await;

    let port = free_port();
    let cfg = HubbleConfig {
        address: format!("127.0.0.1:{port}"),
        node_name: Some("node-a".into()),
        peers: PeerDiscovery::Kubernetes,
        kubeconfig: Some(kubeconfig.clone()),
        ..HubbleConfig::default()
    };
    let sink = start_sink_observed(&cfg);
    assert!(wait_for_port(addr(port), WAIT));
    let at = |ip: &str| format!("{ip}:{port}");

    // Announced whether the subscriber came before or after the first list.
    let mut relay = NotifyStream::open(port);
    assert_eq!(relay.next().await, change("PEER_ADDED", "node-a", &at("10.0.0.1")));

    patch_status(
        &c,
        "perisco-bbbbb",
        json!({"conditions": [{"type": "Ready", "status": "True"}]}),
    )
    .await;
    assert_eq!(relay.next().await, change("PEER_ADDED", "node-b", &at("10.0.0.2")));

    patch_status(
        &c,
        "perisco-bbbbb",
        json!({"podIP": "10.0.0.22", "podIPs": [{"ip": "10.0.0.22"}]}),
    )
    .await;
    assert_eq!(relay.next().await, change("PEER_UPDATED", "node-b", &at("10.0.0.22")));

    pods(&c)
        .delete("perisco-aaaaa", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(relay.next().await, change("PEER_DELETED", "node-a", &at("10.0.0.1")));

    // GetNodes: this node (connected, the address it was last announced with, or its
    // advertise address) and the other known peers.
    let nodes = get_nodes(port);
    assert_eq!(nodes[0].0, "node-a");
    assert_eq!(nodes[0].1, "NODE_CONNECTED");
    assert_eq!(
        nodes[1..],
        [("node-b".to_owned(), "UNKNOWN_NODE_STATE".to_owned(), at("10.0.0.22"))]
    );

    // A new subscriber starts with the current set (node-b only), then changes.
    let mut late = NotifyStream::open(port);
    assert_eq!(late.next().await, change("PEER_ADDED", "node-b", &at("10.0.0.22")));
    create(&c, pod("perisco-ccccc", "perisco", "node-c", "10.0.0.3", true)).await;
    assert_eq!(late.next().await, change("PEER_ADDED", "node-c", &at("10.0.0.3")));
    assert_eq!(relay.next().await, change("PEER_ADDED", "node-c", &at("10.0.0.3")));

    assert_eq!(peers_gauge(&sink), Some(2));

    // The API goes away: the health says so, the peers stay announced.
    drop(kmock);
    wait_until("degraded health while the API is down", || {
        matches!(sink.status(), Some(Status::Degraded(_)))
    })
    .await;
    let nodes = get_nodes(port);
    assert_eq!(
        nodes.len(),
        3,
        "node-a (this node), node-b and node-c still listed: {nodes:?}"
    );
    assert!(api_errors(&sink) >= 1);

    // It comes back with other agents: the relist announces exactly the difference.
    kmock = start_kmock(api_port);
    create(&c, pod("perisco-ddddd", "perisco", "node-d", "10.0.0.4", true)).await;
    let mut got = vec![relay.next().await, relay.next().await, relay.next().await];
    got.sort();
    assert_eq!(
        got,
        [
            change("PEER_ADDED", "node-d", &at("10.0.0.4")),
            change("PEER_DELETED", "node-b", &at("10.0.0.22")),
            change("PEER_DELETED", "node-c", &at("10.0.0.3")),
        ]
    );

    wait_until("health back to running after the relist", || {
        sink.status() == Some(Status::Running)
    })
    .await;
    assert_eq!(peers_gauge(&sink), Some(1));

    drop(sink.tx);
    tokio::time::timeout(WAIT, sink.handle).await.unwrap().unwrap().unwrap();
    drop(kmock);
}

/// A sample of the sink's metrics (`perisco_hubble_peers` is a gauge).
fn metric(sink: &Observed, name: &str) -> Option<i64> {
    sink.registry.render().lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (labels, value) = rest.rsplit_once(' ')?;
        (labels.is_empty() || labels.starts_with('{')).then(|| value.parse().ok())?
    })
}

fn peers_gauge(sink: &Observed) -> Option<i64> {
    metric(sink, "perisco_hubble_peers")
}

fn api_errors(sink: &Observed) -> i64 {
    metric(sink, "perisco_hubble_peer_api_errors_total").unwrap_or(0)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn peer_options_are_validated() {
    use perisco_engine::component::ComponentConfig;
    let keys = |c: &HubbleConfig| {
        c.validate()
            .into_iter()
            .map(|e| e.key.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let local = HubbleConfig {
        peer_namespace: "other".into(),
        kubeconfig: Some("/x".into()),
        ..HubbleConfig::default()
    };
    assert_eq!(keys(&local), ["peer_namespace", "kubeconfig"], "kubernetes-only keys");
    let k8s = HubbleConfig {
        peers: PeerDiscovery::Kubernetes,
        peer_selector: "app in (a".into(),
        peer_port: Some(0),
        peer_namespace: String::new(),
        ..HubbleConfig::default()
    };
    assert_eq!(keys(&k8s), ["peer_namespace", "peer_selector", "peer_port"]);
    let ok = HubbleConfig {
        peers: PeerDiscovery::Kubernetes,
        peer_selector: String::new(),
        ..HubbleConfig::default()
    };
    assert!(keys(&ok).is_empty());

    let parsed: HubbleConfig = toml::from_str("peers = \"kubernetes\"").unwrap();
    assert_eq!(parsed.peers, PeerDiscovery::Kubernetes);
    let bad = toml::from_str::<HubbleConfig>("peers = \"cluster\"").unwrap_err();
    assert!(bad.to_string().contains("must be \"local\" or \"kubernetes\""), "{bad}");
}
