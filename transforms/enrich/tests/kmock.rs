//! The enrich transform against a Kubernetes API emulator on loopback (kmock, PyPI; the
//! wrapper testutil/kmock_server.py adds resourceVersions and list kinds kube's watchers need).
//! The transform is built the way the pipeline builds it (a kubeconfig path), objects are
//! created, changed and deleted through the API while it runs, and the emulator is stopped
//! and restarted under it.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Harness, enrich, record, wait_until};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use perisco_engine::component::{FunctionTransform, TransformConfig};
use perisco_engine::health::Status;
use perisco_enrich::EnrichConfig;
use perisco_testutil::{Need, free_port, require, start_kmock, write_kmock_kubeconfig as write_kubeconfig};
use serde_json::{Value, json};

/// kmock importable by python3; a loud skip (or a failure under PERISCO_REQUIRE_ALL=1).
fn kmock_available(test: &str) -> bool {
    require(test, &[Need::Command("python3"), Need::PythonModule("kmock")])
}

/// A client of our own, to change the cluster while the transform watches it.
async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn pod(name: &str, ip: &str, labels: Value, owner: Option<(&str, &str)>) -> Pod {
    let owners =
        owner.map(|(k, n)| json!([{"apiVersion": "apps/v1", "kind": k, "name": n, "uid": "u", "controller": true}]));
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels, "ownerReferences": owners},
        "spec": {"containers": [{"name": "app", "image": "app"}], "nodeName": "node-a"},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1"}
    }))
    .unwrap()
}

async fn create_pod(c: &kube::Client, p: Pod) {
    Api::<Pod>::namespaced(c.clone(), "shop")
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
}

async fn create_service(c: &kube::Client, name: &str, cluster_ip: &str, backends: &[&str]) {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": [{"port": 80}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(c.clone(), "shop")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-abcde"), "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": backends.iter().map(|ip| json!({"addresses": [ip]})).collect::<Vec<_>>()
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(c.clone(), "shop")
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();
}

fn server_pod(t: &mut dyn FunctionTransform, ip: &str) -> Option<String> {
    enrich(t, record("127.0.0.250", ip))
        .server
        .and_then(|s| s.pod_name.clone())
}

fn server_labels(t: &mut dyn FunctionTransform, ip: &str) -> Vec<String> {
    enrich(t, record("127.0.0.250", ip))
        .server
        .map(|s| s.labels.clone())
        .unwrap_or_default()
}

fn build(h: &Harness, kubeconfig: &Path, grace: Duration) -> Box<dyn FunctionTransform> {
    let cfg = EnrichConfig {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        node_name: Some("node-a".into()),
        pod_grace_period: grace,
        ..Default::default()
    };
    cfg.build(&h.cx).expect("build enrich")
}

fn running(h: &Harness) -> bool {
    matches!(h.status(), Status::Running)
}

/// Degraded because of an API error (not just "waiting for the first list").
fn api_failing(h: &Harness) -> bool {
    matches!(h.status(), Status::Degraded(r) if !r.contains("waiting"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmock_enriches_and_follows_pod_lifecycle() {
    if !kmock_available("kmock_enriches_and_follows_pod_lifecycle") {
        return;
    }
    let port = free_port();
    let _kmock = start_kmock(port);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), port);
    let c = client(&kubeconfig).await;

    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "webapp-5f459f867b", "namespace": "shop",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "webapp", "uid": "d", "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": "webapp"}}}
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(c.clone(), "shop")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let web_labels = json!({"app": "webapp", "pod-template-hash": "5f459f867b"});
    create_pod(
        &c,
        pod(
            "webapp-5f459f867b-2zbx8",
            "127.0.0.2",
            web_labels,
            Some(("ReplicaSet", "webapp-5f459f867b")),
        ),
    )
    .await;
    create_pod(
        &c,
        pod(
            "books-0",
            "127.0.0.3",
            json!({"app": "books", "tier": "backend"}),
            Some(("StatefulSet", "books")),
        ),
    )
    .await;
    create_service(&c, "webapp", "127.0.0.10", &["127.0.0.2"]).await;
    create_service(&c, "books", "127.0.0.11", &["127.0.0.3"]).await;

    let h = Harness::new();
    let grace = Duration::from_secs(8);
    let mut t = build(&h, &kubeconfig, grace);
    let t = t.as_mut();
    wait_until("the first list", || running(&h)).await;
    wait_until("both pods and services", || {
        let r = enrich(t, record("127.0.0.2", "127.0.0.3"));
        r.client.is_some() && r.server.is_some() && r.client_service.is_some() && r.server_service.is_some()
    })
    .await;
    let r = enrich(t, record("127.0.0.2", "127.0.0.3"));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["client"],
        json!({"namespace": "shop", "labels": ["app=webapp"], "podName": "webapp-5f459f867b-2zbx8",
               "workload": {"name": "webapp", "kind": "Deployment"}})
    );
    assert_eq!(
        json["server"],
        json!({"namespace": "shop", "labels": ["app=books", "tier=backend"], "podName": "books-0",
               "workload": {"name": "books", "kind": "StatefulSet"}})
    );
    assert_eq!(json["clientService"], json!({"name": "webapp", "namespace": "shop"}));
    assert_eq!(json["serverService"], json!({"name": "books", "namespace": "shop"}));
    assert_eq!(json["node"], json!("node-a"));

    // To a ClusterIP: the service is known, no pod is claimed.
    let r = enrich(t, record("127.0.0.2", "127.0.0.11"));
    assert_eq!(r.server_service.map(|s| s.name.clone()).as_deref(), Some("books"));
    assert!(r.server.is_none());
    // An address nobody has: absent, not empty.
    let r = enrich(t, record("127.0.0.200", "127.0.0.201"));
    assert!(r.client.is_none() && r.server.is_none() && r.client_service.is_none() && r.server_service.is_none());

    // A pod created, relabelled and deleted during the run.
    assert_eq!(server_pod(t, "127.0.0.4"), None);
    create_pod(&c, pod("late", "127.0.0.4", json!({"app": "late"}), None)).await;
    wait_until("the new pod", || server_pod(t, "127.0.0.4").as_deref() == Some("late")).await;
    let patch = json!({"metadata": {"labels": {"app": "late", "version": "v2"}}});
    Api::<Pod>::namespaced(c.clone(), "shop")
        .patch("late", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_until("the relabel", || {
        server_labels(t, "127.0.0.4") == ["app=late", "version=v2"]
    })
    .await;

    let deleted_at = Instant::now();
    Api::<Pod>::namespaced(c.clone(), "shop")
        .delete("late", &DeleteParams::default())
        .await
        .unwrap();
    // Events of one watch arrive in order: once the marker shows, the delete was applied.
    create_pod(&c, pod("marker", "127.0.0.9", json!({}), None)).await;
    wait_until("the marker pod", || server_pod(t, "127.0.0.9").is_some()).await;
    if deleted_at.elapsed() < grace {
        assert_eq!(
            server_pod(t, "127.0.0.4").as_deref(),
            Some("late"),
            "a deleted pod lingers for the grace period"
        );
    }
    wait_until("the deleted pod expires", || server_pod(t, "127.0.0.4").is_none()).await;
    assert!(deleted_at.elapsed() >= grace, "gone before its grace period ended");
    assert_eq!(server_pod(t, "127.0.0.3").as_deref(), Some("books-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmock_unreachable_then_stopped_and_restarted() {
    if !kmock_available("kmock_unreachable_then_stopped_and_restarted") {
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), port);
    let h = Harness::new();
    let grace = Duration::from_secs(2);
    let mut t = build(&h, &kubeconfig, grace);
    let t = t.as_mut();

    // Nothing listens yet: degraded, records pass through un-enriched.
    wait_until("degraded health while the API is down", || api_failing(&h)).await;
    let r = enrich(t, record("127.0.0.2", "127.0.0.3"));
    assert!(r.client.is_none() && r.server.is_none());
    assert_eq!(r.node.as_deref(), Some("node-a"));

    let kmock = start_kmock(port);
    let c = client(&kubeconfig).await;
    create_pod(&c, pod("web", "127.0.0.2", json!({"app": "web"}), None)).await;
    wait_until("enrichment once the API is up", || {
        server_pod(t, "127.0.0.2").as_deref() == Some("web")
    })
    .await;
    wait_until("running health", || running(&h)).await;

    // The emulator goes away: degraded; the cache keeps serving what it had.
    drop(kmock);
    wait_until("degraded health after the API went away", || api_failing(&h)).await;
    assert_eq!(server_pod(t, "127.0.0.2").as_deref(), Some("web"));

    // It comes back empty (an emulator keeps nothing): the relist brings the new state.
    let _kmock = start_kmock(port);
    let c = client(&kubeconfig).await;
    create_pod(&c, pod("api", "127.0.0.5", json!({"app": "api"}), None)).await;
    wait_until("the pod created after the restart", || {
        server_pod(t, "127.0.0.5").as_deref() == Some("api")
    })
    .await;
    wait_until("running health after the restart", || running(&h)).await;
    // "web" is not in the new list: it lingers like a deleted pod, then goes.
    wait_until("the vanished pod expires", || server_pod(t, "127.0.0.2").is_none()).await;
}
