//! Watcher edge cases against kube's in-process mock client (tower-test): a scripted API
//! server answers each list and watch request, so relists, deletes, 410 Gone without
//! bookmarks and failing lists happen exactly when the test says.

use crate::common;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Harness, enrich, record, wait_until};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use perisco_enrich::EnrichConfig;
use perisco_enrich::watch::Connect;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

/// One scripted answer.
enum Reply {
    /// A list (or error) body with this status.
    Json(StatusCode, Value),
    /// A watch response: these events, then the stream ends.
    Events(Vec<Value>),
}

#[derive(Default)]
struct Script {
    lists: HashMap<&'static str, VecDeque<Reply>>,
    watches: HashMap<&'static str, VecDeque<Reply>>,
    /// Requests seen, as "list pods" / "watch pods".
    log: Vec<String>,
}

type Shared = Arc<Mutex<Script>>;

fn resource_of(path: &str) -> &'static str {
    ["pods", "services", "endpointslices", "replicasets"]
        .into_iter()
        .find(|r| path.ends_with(r))
        .unwrap_or("other")
}

fn kind_of(resource: &str) -> (&'static str, &'static str) {
    match resource {
        "pods" => ("PodList", "v1"),
        "services" => ("ServiceList", "v1"),
        "endpointslices" => ("EndpointSliceList", "discovery.k8s.io/v1"),
        _ => ("ReplicaSetList", "apps/v1"),
    }
}

fn list(resource: &str, rv: &str, items: Vec<Value>) -> Reply {
    let (kind, api) = kind_of(resource);
    Reply::Json(
        StatusCode::OK,
        json!({"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": rv}, "items": items}),
    )
}

/// Answer requests from the script: lists without a script entry are empty; watches
/// without one never answer (an idle watch).
async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, script: Shared) {
    let mut idle: Vec<SendResponse<Response<Body>>> = Vec::new();
    while let Some((req, send)) = handle.next_request().await {
        let resource = resource_of(req.uri().path());
        let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
        let reply = {
            let mut s = script.lock().unwrap();
            s.log
                .push(format!("{} {resource}", if watch { "watch" } else { "list" }));
            let queue = if watch {
                s.watches.entry(resource)
            } else {
                s.lists.entry(resource)
            };
            queue.or_default().pop_front()
        };
        let reply = match reply {
            Some(r) => r,
            None if watch => {
                idle.push(send);
                continue;
            }
            None => list(resource, "1", vec![]),
        };
        let (status, body) = match reply {
            Reply::Json(status, v) => (status, serde_json::to_vec(&v).unwrap()),
            Reply::Events(events) => {
                let mut body = Vec::new();
                for e in events {
                    serde_json::to_writer(&mut body, &e).unwrap();
                    body.push(b'\n');
                }
                (StatusCode::OK, body)
            }
        };
        send.send_response(Response::builder().status(status).body(Body::from(body)).unwrap());
    }
}

fn pod(name: &str, ip: &str, rv: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": rv, "labels": labels},
           "spec": {"containers": []},
           "status": {"podIP": ip, "phase": "Running"}})
}

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

fn gone() -> Value {
    event(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}),
    )
}

struct Setup {
    harness: Harness,
    script: Shared,
    enrich: perisco_enrich::Enrich,
    /// Ends when every clone of the mock client is gone.
    server: tokio::task::JoinHandle<()>,
}

fn start(script: Script, grace: Duration) -> Setup {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let script = Arc::new(Mutex::new(script));
    let server = tokio::spawn(serve(handle, script.clone()));
    let harness = Harness::new();
    let cfg = EnrichConfig {
        pod_grace_period: grace,
        node_name: Some("node-a".into()),
        ..Default::default()
    };
    let enrich = cfg.build_with(&harness.cx, Connect::Client(client)).unwrap();
    Setup {
        harness,
        script,
        enrich,
        server,
    }
}

fn pod_at(e: &mut perisco_enrich::Enrich, ip: &str) -> Option<String> {
    enrich(e, record("10.9.9.9", ip))
        .server
        .and_then(|s| s.pod_name.clone())
}

fn labels_at(e: &mut perisco_enrich::Enrich, ip: &str) -> Vec<String> {
    enrich(e, record("10.9.9.9", ip))
        .server
        .map(|s| s.labels.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn watch_events_apply_and_deletes_linger_for_the_grace_period() {
    let mut script = Script::default();
    script.lists.entry("pods").or_default().push_back(list(
        "pods",
        "10",
        vec![pod("a", "10.0.0.1", "5", json!({"app": "a"}))],
    ));
    script.watches.entry("pods").or_default().push_back(Reply::Events(vec![
        event("ADDED", pod("c", "10.0.0.3", "11", json!({"app": "c"}))),
        event("MODIFIED", pod("a", "10.0.0.1", "12", json!({"app": "a2"}))),
        event("DELETED", pod("c", "10.0.0.3", "13", json!({"app": "c"}))),
    ]));
    let grace = Duration::from_millis(1500);
    let mut s = start(script, grace);
    let e = &mut s.enrich;
    wait_until("the relabel of a", || labels_at(e, "10.0.0.1") == ["app=a2"]).await;
    // c was added then deleted: it still resolves during the grace period...
    assert_eq!(pod_at(e, "10.0.0.3").as_deref(), Some("c"));
    // ...and goes after it, without any further API event.
    wait_until("c expires", || pod_at(e, "10.0.0.3").is_none()).await;
    assert_eq!(pod_at(e, "10.0.0.1").as_deref(), Some("a"));
    // The finished watch stream was resumed, not relisted (no error, no Init).
    let log = s.script.lock().unwrap().log.clone();
    assert_eq!(log.iter().filter(|l| *l == "list pods").count(), 1, "{log:?}");
    assert!(log.iter().filter(|l| *l == "watch pods").count() >= 2, "{log:?}");
    wait_until("running health", || {
        matches!(s.harness.status(), perisco_engine::health::Status::Running)
    })
    .await;
}

#[tokio::test]
async fn gone_without_bookmarks_relists_and_forgets_pods_deleted_meanwhile() {
    let mut script = Script::default();
    let pods = script.lists.entry("pods").or_default();
    pods.push_back(list(
        "pods",
        "10",
        vec![
            pod("a", "10.0.0.1", "5", json!({"v": "1"})),
            pod("b", "10.0.0.2", "6", json!({})),
        ],
    ));
    // After the 410 the watcher must list again: b was deleted while it could not watch,
    // and a changed; no DELETED event ever arrives for b.
    pods.push_back(list("pods", "30", vec![pod("a", "10.0.0.1", "25", json!({"v": "2"}))]));
    script
        .watches
        .entry("pods")
        .or_default()
        .push_back(Reply::Events(vec![gone()]));
    let grace = Duration::from_millis(1500);
    let mut s = start(script, grace);
    let e = &mut s.enrich;
    wait_until("the relist", || labels_at(e, "10.0.0.1") == ["v=2"]).await;
    // b lingers like any deleted pod, then goes.
    wait_until("b expires", || pod_at(e, "10.0.0.2").is_none()).await;
    assert_eq!(pod_at(e, "10.0.0.1").as_deref(), Some("a"));
    let log = s.script.lock().unwrap().log.clone();
    assert_eq!(log.iter().filter(|l| *l == "list pods").count(), 2, "{log:?}");
    wait_until("running health after the relist", || {
        matches!(s.harness.status(), perisco_engine::health::Status::Running)
    })
    .await;
}

#[tokio::test]
async fn failing_lists_degrade_health_and_records_pass_through() {
    let mut script = Script::default();
    let err = || {
        Reply::Json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd down", "reason": "ServiceUnavailable", "code": 503}),
        )
    };
    let pods = script.lists.entry("pods").or_default();
    pods.push_back(err());
    pods.push_back(err());
    pods.push_back(list("pods", "10", vec![pod("a", "10.0.0.1", "5", json!({}))]));
    let mut s = start(script, Duration::from_secs(60));
    wait_until(
        "degraded health",
        || matches!(&s.harness.status(), perisco_engine::health::Status::Degraded(r) if r.contains("pods")),
    )
    .await;
    // Un-enriched but not lost.
    let r = enrich(&mut s.enrich, record("10.9.9.9", "10.0.0.1"));
    assert!(r.server.is_none() || r.server.as_ref().unwrap().pod_name.as_deref() == Some("a"));
    assert_eq!(r.node.as_deref(), Some("node-a"));
    let e = &mut s.enrich;
    wait_until("recovery", || pod_at(e, "10.0.0.1").is_some()).await;
    wait_until("running health", || {
        matches!(s.harness.status(), perisco_engine::health::Status::Running)
    })
    .await;
    let log = s.script.lock().unwrap().log.clone();
    assert!(log.iter().filter(|l| *l == "list pods").count() >= 3, "{log:?}");
}

#[tokio::test]
async fn services_endpointslices_and_replicasets_resolve_through_the_watchers() {
    let mut script = Script::default();
    let owned = |name: &str, ip: &str, rs: &str| {
        let mut p = pod(name, ip, "3", json!({"app": "web", "pod-template-hash": "abc"}));
        p["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "rs1", "controller": true}]);
        p
    };
    script.lists.entry("pods").or_default().push_back(list(
        "pods",
        "10",
        vec![owned("web-abc-1", "10.0.0.1", "web-abc")],
    ));
    script.lists.entry("services").or_default().push_back(list(
        "services",
        "10",
        vec![
            json!({"metadata": {"name": "web", "namespace": "shop", "uid": "s1", "resourceVersion": "4"},
                    "spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]}}),
        ],
    ));
    script.lists.entry("endpointslices").or_default().push_back(list(
        "endpointslices",
        "10",
        vec![
            json!({"metadata": {"name": "web-xyz", "namespace": "shop", "uid": "e1", "resourceVersion": "4",
                                 "labels": {"kubernetes.io/service-name": "web"}},
                    "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]}),
        ],
    ));
    script.lists.entry("replicasets").or_default().push_back(list(
        "replicasets",
        "10",
        vec![json!({"metadata": {"name": "web-abc", "namespace": "shop", "uid": "rs1", "resourceVersion": "4",
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1", "controller": true}]}})],
    ));
    let mut s = start(script, Duration::from_secs(60));
    let e = &mut s.enrich;
    wait_until("everything listed", || {
        let r = enrich(e, record("10.0.0.1", "10.96.0.5"));
        r.server_service.is_some()
            && r.client
                .as_ref()
                .is_some_and(|c| c.workload.as_ref().is_some_and(|w| w.kind == "Deployment"))
    })
    .await;
    let r = enrich(e, record("10.0.0.1", "10.96.0.5"));
    let c = r.client.unwrap();
    assert_eq!(c.pod_name.as_deref(), Some("web-abc-1"));
    assert_eq!(c.labels, ["app=web"]);
    assert_eq!(c.workload.as_ref().unwrap().name, "web");
    assert_eq!(r.client_service.unwrap().name, "web");
    assert_eq!(r.server_service.unwrap().name, "web");
    assert!(r.server.is_none());
}

#[tokio::test]
async fn dropping_the_transform_stops_the_watchers() {
    let mut script = Script::default();
    script
        .lists
        .entry("pods")
        .or_default()
        .push_back(list("pods", "10", vec![pod("a", "10.0.0.1", "5", json!({}))]));
    let s = start(script, Duration::from_secs(60));
    let mut e = s.enrich;
    wait_until("the first list", || pod_at(&mut e, "10.0.0.1").is_some()).await;
    wait_until("every watch started", || {
        s.script
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.starts_with("watch"))
            .count()
            == 4
    })
    .await;
    // A reload that changes the transform drops it: its tasks must go, and with them every
    // clone of the client, which closes the mock's request stream.
    drop(e);
    tokio::time::timeout(Duration::from_secs(60), s.server)
        .await
        .expect("watchers still running")
        .unwrap();
    // The component's health is left to whoever replaced it.
    let before = s.harness.status();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.harness.status(), before);
}
