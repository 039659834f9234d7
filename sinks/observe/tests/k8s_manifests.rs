//! config-examples/k8s/hubble/ (peer Service, hubble-relay, the hubble sink's pipeline
//! snippet) against the deployment in config-examples/k8s/: every document parses into its
//! Kubernetes type with no key lost (a typo fails, as `kubectl --validate=strict` would),
//! and the pieces agree — the sink's selector and namespace find the DaemonSet's pods, RBAC
//! lets it list and watch them, the Service reaches the sink's port, and relay dials that
//! Service with TLS off.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use perisco_engine::component::ComponentConfig;
use perisco_observe::HubbleConfig;
use perisco_observe::hubble::PeerDiscovery;
use perisco_observe::hubble::filter::LabelSelector;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn k8s_dir() -> PathBuf {
    perisco_testutil::workspace_root().join("config-examples/k8s")
}

/// The YAML documents of `file` (relative to config-examples/k8s).
fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(k8s_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|de| Value::deserialize(de).unwrap_or_else(|e| panic!("{file}: not YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// Parse into `T` and fail on any key that did not survive the round trip
/// (k8s-openapi ignores unknown fields).
fn strict<T: DeserializeOwned + serde::Serialize>(what: &str, v: &Value) -> T {
    let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    let mut lost = Vec::new();
    dropped(v, &back, "", &mut lost);
    assert!(lost.is_empty(), "{what}: unknown or mistyped fields: {lost:?}");
    typed
}

fn dropped(orig: &Value, back: &Value, path: &str, lost: &mut Vec<String>) {
    match (orig, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => dropped(va, vb, &format!("{path}.{k}"), lost),
                    None => lost.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                dropped(va, vb, &format!("{path}[{i}]"), lost);
            }
        }
        (a, b) if a != b => lost.push(format!("{path} ({a} became {b})")),
        _ => {}
    }
}

fn one<T: DeserializeOwned + serde::Serialize>(file: &str, kind: &str) -> T {
    let docs: Vec<Value> = documents(file).into_iter().filter(|v| v["kind"] == kind).collect();
    assert_eq!(docs.len(), 1, "{file}: one {kind}");
    strict(&format!("{file} {kind}"), &docs[0])
}

/// The `[sinks.hubble]` table of the snippet, as the sink's config.
fn sink_config() -> HubbleConfig {
    let text = std::fs::read_to_string(k8s_dir().join("hubble/pipeline-hubble.toml")).unwrap();
    let t: toml::Table = text.parse().expect("pipeline-hubble.toml parses");
    let mut table = t["sinks"]["hubble"].as_table().expect("[sinks.hubble]").clone();
    assert_eq!(
        table
            .remove("type")
            .and_then(|v| v.as_str().map(String::from))
            .as_deref(),
        Some("hubble")
    );
    table.remove("inputs");
    let cfg: HubbleConfig = table.try_into().expect("hubble sink options");
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    cfg
}

fn label_strings(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[test]
fn hubble_manifests_parse_strictly_and_agree_with_the_deployment() {
    let ds: DaemonSet = one("30-daemonset.yaml", "DaemonSet");
    let role: ClusterRole = one("10-rbac.yaml", "ClusterRole");
    let binding: ClusterRoleBinding = one("10-rbac.yaml", "ClusterRoleBinding");
    let peer_svc: Service = one("hubble/10-peer-service.yaml", "Service");
    let relay: Deployment = one("hubble/20-hubble-relay.yaml", "Deployment");
    let relay_svc: Service = one("hubble/20-hubble-relay.yaml", "Service");
    let cfg = sink_config();

    let ds_ns = ds.metadata.namespace.clone().unwrap();
    let template = ds.spec.as_ref().unwrap().template.clone();
    let pod_labels = template.metadata.as_ref().unwrap().labels.clone().unwrap();
    let pod_spec = template.spec.unwrap();

    // The sink finds the DaemonSet's pods.
    assert_eq!(cfg.peers, PeerDiscovery::Kubernetes);
    assert_eq!(cfg.peer_namespace, ds_ns);
    let sel = LabelSelector::parse("peer_selector", &cfg.peer_selector).unwrap();
    assert!(
        sel.matches(&label_strings(&pod_labels)),
        "peer_selector matches the agent pods"
    );
    assert!(
        pod_spec
            .containers
            .iter()
            .flat_map(|c| c.env.iter().flatten())
            .any(|e| e.name == "NODE_NAME"),
        "the node name (peer name) comes from NODE_NAME"
    );

    // RBAC: the agents' service account may list and watch pods.
    let sa = pod_spec.service_account_name.clone().unwrap();
    let bound = binding
        .subjects
        .iter()
        .flatten()
        .any(|s| s.kind == "ServiceAccount" && s.name == sa && s.namespace.as_deref() == Some(ds_ns.as_str()));
    assert!(bound, "the ClusterRole is bound to the agents' service account");
    assert_eq!(Some(binding.role_ref.name.as_str()), role.metadata.name.as_deref());
    let can = |verb: &str| {
        role.rules.iter().flatten().any(|r| {
            r.api_groups.iter().flatten().any(|g| g.is_empty())
                && r.resources.iter().flatten().any(|x| x == "pods")
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    assert!(can("list") && can("watch"), "pods: list and watch");

    // The peer Service selects the agents on the local node and reaches the sink's port.
    let ps = peer_svc.spec.as_ref().unwrap();
    assert_eq!(peer_svc.metadata.namespace.as_deref(), Some(ds_ns.as_str()));
    for (k, v) in ps.selector.as_ref().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v), "the peer Service selects the agent pods");
    }
    assert_eq!(ps.internal_traffic_policy.as_deref(), Some("Local"));
    let sink_port: i32 = cfg.address.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(cfg.address.starts_with("0.0.0.0:"), "relay dials the pod IP");
    let port = &ps.ports.as_ref().unwrap()[0];
    assert_eq!(port.target_port, Some(IntOrString::Int(sink_port)));

    // Relay dials that Service, plaintext both ways.
    let c = &relay.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    let args = c.args.clone().unwrap();
    let want = format!(
        "--peer-service={}.{}.svc.cluster.local:{}",
        peer_svc.metadata.name.as_deref().unwrap(),
        ds_ns,
        port.port
    );
    assert!(args.contains(&want), "{args:?} has {want}");
    for flag in ["--disable-client-tls", "--disable-server-tls"] {
        assert!(args.iter().any(|a| a == flag), "{flag}");
    }
    let listen: i32 = args
        .iter()
        .find_map(|a| a.strip_prefix("--listen-address=:"))
        .expect("--listen-address")
        .parse()
        .unwrap();
    let grpc = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("grpc"))
        .unwrap();
    assert_eq!(grpc.container_port, listen);
    let rs = relay_svc.spec.unwrap();
    assert_eq!(rs.selector, relay.spec.unwrap().selector.match_labels);
    assert_eq!(
        rs.ports.unwrap()[0].target_port,
        Some(IntOrString::String("grpc".into()))
    );
}
