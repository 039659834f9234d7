use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use perisco_engine::event::{IpInfo, L4, L7, Record, TcpPorts};
use serde_json::json;

use super::*;

fn opts(grace_s: u64) -> StateOptions {
    StateOptions {
        node_name: Some("node-a".into()),
        grace: Duration::from_secs(grace_s),
        exclude_labels: vec!["pod-template-hash".into()],
    }
}

fn pod(uid: &str, name: &str, ip: &str, labels: serde_json::Value, owner: Option<(&str, &str)>) -> Pod {
    let owners = owner.map(|(k, n)| json!([{"apiVersion":"apps/v1","kind":k,"name":n,"uid":"o","controller":true}]));
    serde_json::from_value(json!({
        "metadata": {"uid": uid, "name": name, "namespace": "shop", "labels": labels, "ownerReferences": owners},
        "spec": {"containers": [], "nodeName": "node-b"},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.2", "phase": "Running"}
    }))
    .unwrap()
}

fn host_pod(uid: &str, name: &str, node: &str, node_ip: &str, cid: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"uid": uid, "name": name, "namespace": "kube-system"},
        "spec": {"containers": [], "nodeName": node, "hostNetwork": true},
        "status": {"podIP": node_ip, "hostIP": node_ip, "phase": "Running",
                   "containerStatuses": [{"name":"c","image":"i","imageID":"","ready":true,"restartCount":0,
                                          "containerID": format!("containerd://{cid}")}]}
    }))
    .unwrap()
}

fn service(uid: &str, name: &str, cluster_ip: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"uid": uid, "name": name, "namespace": "shop"},
        "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip]}
    }))
    .unwrap()
}

fn slice(uid: &str, svc: &str, ips: &[&str]) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"uid": uid, "name": format!("{svc}-x"), "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": ips.iter().map(|ip| json!({"addresses": [ip]})).collect::<Vec<_>>()
    }))
    .unwrap()
}

fn replicaset(uid: &str, name: &str, deployment: &str) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"uid": uid, "name": name, "namespace": "shop",
                     "ownerReferences": [{"apiVersion":"apps/v1","kind":"Deployment","name":deployment,"uid":"d","controller":true}]}
    }))
    .unwrap()
}

fn record(client: &str, server: &str) -> Record {
    Record {
        ts: 1,
        pid: 1,
        ip: IpInfo::new(client.parse().unwrap(), server.parse().unwrap()),
        l4: L4 {
            tcp: TcpPorts {
                client_port: 40000,
                server_port: 80,
            },
        },
        l7: L7::default(),
        client: None,
        server: None,
        client_service: None,
        server_service: None,
        comm: None,
        container_id: None,
        node: None,
        incomplete: vec![],
    }
}

#[test]
fn resolves_pods_services_and_deployments() {
    let now = Instant::now();
    let mut st = ClusterState::new(opts(60));
    st.apply_pod(
        &pod(
            "1",
            "web-7d-a",
            "10.1.0.1",
            json!({"app":"web","pod-template-hash":"7d"}),
            Some(("ReplicaSet", "web-7d")),
        ),
        now,
    );
    st.apply_pod(
        &pod(
            "2",
            "db-0",
            "10.1.0.2",
            json!({"app":"db","tier":"data"}),
            Some(("StatefulSet", "db")),
        ),
        now,
    );
    st.apply_replicaset(&replicaset("r1", "web-7d", "web"));
    st.apply_service(&service("s1", "db", "10.96.0.10"));
    st.apply_slice(&slice("e1", "db", &["10.1.0.2"]));
    st.apply_slice(&slice("e2", "web", &["10.1.0.1"]));
    let snap = st.snapshot(now);

    let mut r = record("10.1.0.1", "10.96.0.10");
    let found = snap.enrich(&mut r);
    assert_eq!(
        found,
        crate::snapshot::Resolved {
            client: true,
            server: false
        }
    );
    let c = r.client.as_ref().unwrap();
    assert_eq!(c.pod_name.as_deref(), Some("web-7d-a"));
    assert_eq!(c.namespace.as_deref(), Some("shop"));
    assert_eq!(c.labels, vec!["app=web".to_string()], "pod-template-hash is excluded");
    assert_eq!(
        c.workload,
        Some(Workload {
            name: "web".into(),
            kind: "Deployment".into()
        })
    );
    assert!(r.server.is_none(), "a ClusterIP is no pod");
    assert_eq!(r.server_service.as_ref().map(|s| s.name.as_str()), Some("db"));
    assert_eq!(r.client_service.as_ref().map(|s| s.name.as_str()), Some("web"));

    let mut r = record("10.9.9.9", "10.1.0.2");
    snap.enrich(&mut r);
    assert!(
        r.client.is_none() && r.client_service.is_none(),
        "unknown IPs stay absent"
    );
    let s = r.server.unwrap();
    assert_eq!(s.labels, vec!["app=db".to_string(), "tier=data".to_string()]);
    assert_eq!(
        s.workload,
        Some(Workload {
            name: "db".into(),
            kind: "StatefulSet".into()
        })
    );
    assert_eq!(r.server_service.unwrap().name, "db");
}

/// Records of one pod share its endpoint and service: enriching is reference counting,
/// not copying the pod's strings into every record.
#[test]
fn records_of_one_pod_share_its_endpoint_and_service() {
    let now = Instant::now();
    let mut st = ClusterState::new(opts(60));
    st.apply_pod(&pod("2", "db-0", "10.1.0.2", json!({"app":"db"}), None), now);
    st.apply_service(&service("s1", "db", "10.96.0.10"));
    st.apply_slice(&slice("e1", "db", &["10.1.0.2"]));
    let snap = st.snapshot(now);
    let (mut a, mut b) = (record("10.9.9.1", "10.1.0.2"), record("10.9.9.2", "10.1.0.2"));
    snap.enrich(&mut a);
    snap.enrich(&mut b);
    assert!(Arc::ptr_eq(a.server.as_ref().unwrap(), b.server.as_ref().unwrap()));
    assert!(Arc::ptr_eq(
        a.server_service.as_ref().unwrap(),
        b.server_service.as_ref().unwrap()
    ));
    // The ClusterIP and the pod IP lead to the same service object.
    let mut c = record("10.9.9.3", "10.96.0.10");
    snap.enrich(&mut c);
    assert!(Arc::ptr_eq(
        a.server_service.as_ref().unwrap(),
        c.server_service.as_ref().unwrap()
    ));
}

#[test]
fn workload_kinds_from_owners() {
    let now = Instant::now();
    let mut st = ClusterState::new(opts(60));
    st.apply_pod(
        &pod("1", "a", "10.1.0.1", json!({}), Some(("Job", "backup-29001234"))),
        now,
    );
    st.apply_pod(&pod("2", "b", "10.1.0.2", json!({}), Some(("Job", "migrate"))), now);
    st.apply_pod(&pod("3", "c", "10.1.0.3", json!({}), None), now);
    st.apply_pod(
        &pod("4", "d", "10.1.0.4", json!({}), Some(("ReplicaSet", "orphan-rs"))),
        now,
    );
    st.apply_pod(&pod("5", "e", "10.1.0.5", json!({}), Some(("DaemonSet", "agent"))), now);
    let snap = st.snapshot(now);
    let w = |ip: &str| snap.pods_by_ip[&ip.parse().unwrap()].endpoint.workload.clone().unwrap();
    assert_eq!(
        w("10.1.0.1"),
        Workload {
            name: "backup".into(),
            kind: "CronJob".into()
        }
    );
    assert_eq!(
        w("10.1.0.2"),
        Workload {
            name: "migrate".into(),
            kind: "Job".into()
        }
    );
    assert_eq!(
        w("10.1.0.3"),
        Workload {
            name: "c".into(),
            kind: "Pod".into()
        }
    );
    assert_eq!(
        w("10.1.0.4"),
        Workload {
            name: "orphan-rs".into(),
            kind: "ReplicaSet".into()
        }
    );
    assert_eq!(
        w("10.1.0.5"),
        Workload {
            name: "agent".into(),
            kind: "DaemonSet".into()
        }
    );
}

#[test]
fn deleted_pods_linger_for_the_grace_period() {
    let t0 = Instant::now();
    let mut st = ClusterState::new(opts(60));
    let p = pod("1", "web", "10.1.0.1", json!({}), None);
    st.apply_pod(&p, t0);
    st.delete_pod(&p, t0);
    let ip = "10.1.0.1".parse().unwrap();
    assert!(st.snapshot(t0 + Duration::from_secs(59)).pods_by_ip.contains_key(&ip));
    assert_eq!(st.next_expiry(t0), Some(t0 + Duration::from_secs(60)));
    assert!(!st.expire(t0 + Duration::from_secs(59)));
    assert!(st.expire(t0 + Duration::from_secs(60)));
    assert!(!st.snapshot(t0 + Duration::from_secs(60)).pods_by_ip.contains_key(&ip));
    assert_eq!(st.pod_count(), 0);
}

#[test]
fn a_live_pod_wins_a_reused_ip() {
    let t0 = Instant::now();
    let mut st = ClusterState::new(opts(60));
    let old = pod("1", "old", "10.1.0.1", json!({}), None);
    st.apply_pod(&old, t0);
    st.delete_pod(&old, t0);
    st.apply_pod(&pod("2", "new", "10.1.0.1", json!({}), None), t0);
    let snap = st.snapshot(t0);
    assert_eq!(&*snap.pods_by_ip[&"10.1.0.1".parse().unwrap()].meta.name, "new");
}

#[test]
fn finished_pods_release_their_ip_after_grace() {
    let t0 = Instant::now();
    let mut st = ClusterState::new(opts(10));
    let mut p = pod("1", "job", "10.1.0.1", json!({}), None);
    p.status.as_mut().unwrap().phase = Some("Succeeded".into());
    st.apply_pod(&p, t0);
    // A later update of the finished pod keeps the first time it was seen finished.
    st.apply_pod(&p, t0 + Duration::from_secs(5));
    let ip = "10.1.0.1".parse().unwrap();
    assert!(st.snapshot(t0 + Duration::from_secs(9)).pods_by_ip.contains_key(&ip));
    assert!(!st.snapshot(t0 + Duration::from_secs(10)).pods_by_ip.contains_key(&ip));
}

#[test]
fn relist_drops_what_it_did_not_see() {
    let t0 = Instant::now();
    let mut st = ClusterState::new(opts(60));
    st.apply_pod(&pod("1", "a", "10.1.0.1", json!({}), None), t0);
    st.apply_pod(&pod("2", "b", "10.1.0.2", json!({}), None), t0);
    st.apply_service(&service("s1", "gone", "10.96.0.1"));
    assert!(!st.synced(Resource::Pods));
    st.init(Resource::Pods);
    st.apply_pod(&pod("2", "b", "10.1.0.2", json!({}), None), t0);
    st.init_done(Resource::Pods, t0);
    st.init(Resource::Services);
    st.init_done(Resource::Services, t0);
    assert!(st.synced(Resource::Pods));
    // "a" was deleted while the watch was down: it lingers, then goes.
    assert!(st.snapshot(t0).pods_by_ip.contains_key(&"10.1.0.1".parse().unwrap()));
    st.expire(t0 + Duration::from_secs(60));
    let snap = st.snapshot(t0 + Duration::from_secs(60));
    assert!(!snap.pods_by_ip.contains_key(&"10.1.0.1".parse().unwrap()));
    assert!(snap.pods_by_ip.contains_key(&"10.1.0.2".parse().unwrap()));
    assert!(snap.service_by_cluster_ip.is_empty());
}

#[test]
fn host_network_pods_resolve_by_container_id_on_this_node() {
    let now = Instant::now();
    let mut st = ClusterState::new(opts(60));
    st.apply_pod(&host_pod("h1", "proxy", "node-a", "10.0.0.1", "abc123"), now);
    st.apply_pod(&host_pod("h2", "elsewhere", "node-b", "10.0.0.2", "def456"), now);
    st.apply_pod(&pod("1", "web", "10.1.0.1", json!({}), None), now);
    let snap = st.snapshot(now);
    assert!(
        !snap.pods_by_ip.contains_key(&"10.0.0.1".parse().unwrap()),
        "node IPs are not pod IPs"
    );
    assert_eq!(snap.pods_by_container.len(), 1, "only this node's hostNetwork pods");

    // The proxy (hostNetwork, capturing side) serves a pod client.
    let mut r = record("10.1.0.1", "10.0.0.1");
    r.container_id = Some("abc123".into());
    snap.enrich(&mut r);
    assert_eq!(r.server.unwrap().pod_name.as_deref(), Some("proxy"));
    assert_eq!(r.client.unwrap().pod_name.as_deref(), Some("web"));

    // Both ends on the node IP: the container is the (capturing) server only.
    let mut r = record("10.0.0.1", "10.0.0.1");
    r.container_id = Some("containerd://abc123".into());
    snap.enrich(&mut r);
    assert_eq!(r.server.unwrap().pod_name.as_deref(), Some("proxy"));
    assert!(r.client.is_none());

    // A container id that is not ours, or a node IP it does not live on: nothing.
    let mut r = record("10.1.0.1", "10.0.0.2");
    r.container_id = Some("abc123".into());
    snap.enrich(&mut r);
    assert!(r.server.is_none());
}

#[test]
fn fields_already_set_are_kept() {
    let now = Instant::now();
    let mut st = ClusterState::new(opts(60));
    st.apply_pod(&pod("1", "web", "10.1.0.1", json!({}), None), now);
    let snap = st.snapshot(now);
    let mut r = record("10.1.0.1", "10.1.0.1");
    r.client = Some(Default::default());
    snap.enrich(&mut r);
    assert_eq!(r.client, Some(Default::default()));
    assert_eq!(r.server.unwrap().pod_name.as_deref(), Some("web"));
}

#[test]
fn multiple_services_pick_the_first_by_name() {
    let now = Instant::now();
    let mut st = ClusterState::new(opts(60));
    st.apply_slice(&slice("e1", "zeta", &["10.1.0.1"]));
    st.apply_slice(&slice("e2", "alpha", &["10.1.0.1"]));
    let snap = st.snapshot(now);
    assert_eq!(&*snap.service_by_pod_ip[&"10.1.0.1".parse().unwrap()].name, "alpha");
    st.delete_slice(&slice("e2", "alpha", &[]));
    assert_eq!(
        &*st.snapshot(now).service_by_pod_ip[&"10.1.0.1".parse().unwrap()].name,
        "zeta"
    );
}

#[test]
fn unchanged_pods_keep_their_shared_meta() {
    let now = Instant::now();
    let mut st = ClusterState::new(opts(60));
    let p = pod("1", "web", "10.1.0.1", json!({"app":"a"}), None);
    st.apply_pod(&p, now);
    let a = st.snapshot(now).pods_by_ip[&"10.1.0.1".parse().unwrap()].meta.clone();
    st.apply_pod(&p, now);
    let b = st.snapshot(now).pods_by_ip[&"10.1.0.1".parse().unwrap()].meta.clone();
    assert!(Arc::ptr_eq(&a, &b));
    st.apply_pod(&pod("1", "web", "10.1.0.1", json!({"app":"b"}), None), now);
    let c = st.snapshot(now).pods_by_ip[&"10.1.0.1".parse().unwrap()].meta.clone();
    assert_eq!(&*c.labels, &["app=b".into()] as &[Box<str>]);
}

/// A snapshot rebuild reuses the endpoint of a pod whose meta and workload did not change,
/// and builds a new one when either does.
#[test]
fn endpoints_are_rebuilt_only_for_changed_pods() {
    let now = Instant::now();
    let ip: IpAddr = "10.1.0.1".parse().unwrap();
    let mut st = ClusterState::new(opts(60));
    let p = pod(
        "1",
        "web-7d-a",
        "10.1.0.1",
        json!({"app":"a"}),
        Some(("ReplicaSet", "web-7d")),
    );
    st.apply_pod(&p, now);
    let a = st.snapshot(now).pods_by_ip[&ip].endpoint.clone();
    st.apply_pod(&p, now);
    let b = st.snapshot(now).pods_by_ip[&ip].endpoint.clone();
    assert!(Arc::ptr_eq(&a, &b), "unchanged pod: same endpoint");
    assert_eq!(a.workload.as_ref().map(|w| w.kind.as_str()), Some("ReplicaSet"));
    // Its ReplicaSet turns out to belong to a Deployment: the workload changes.
    st.apply_replicaset(&replicaset("r1", "web-7d", "web"));
    let c = st.snapshot(now).pods_by_ip[&ip].endpoint.clone();
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(c.workload.as_ref().map(|w| w.kind.as_str()), Some("Deployment"));
    // New labels: a new endpoint.
    st.apply_pod(
        &pod(
            "1",
            "web-7d-a",
            "10.1.0.1",
            json!({"app":"b"}),
            Some(("ReplicaSet", "web-7d")),
        ),
        now,
    );
    let d = st.snapshot(now).pods_by_ip[&ip].endpoint.clone();
    assert!(!Arc::ptr_eq(&c, &d));
    assert_eq!(d.labels, vec!["app=b".to_string()]);
}
