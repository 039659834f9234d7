//! Schema-level check of config-examples/k8s/: every document parses into the real
//! k8s-openapi type of its kind, nothing in the YAML is dropped on the way (an unknown or
//! misspelt key fails, the way `kubectl --validate=strict` would), and the pieces agree with
//! each other (RBAC verbs and resources, names, ports, the pipeline in the ConfigMap).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use perisco_enrich::EnrichConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn manifest_dir() -> PathBuf {
    perisco_testutil::workspace_root().join("config-examples/k8s")
}

/// Every YAML document under config-examples/k8s, with its file name.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(manifest_dir())
        .expect("config-examples/k8s exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for (i, de) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let v = Value::deserialize(de).unwrap_or_else(|e| panic!("{name} document {i}: not YAML: {e}"));
            if !v.is_null() {
                docs.push((format!("{name}#{i}"), v));
            }
        }
    }
    docs
}

/// Parse into `T`, serialise back, and fail on any key of the YAML that did not survive:
/// k8s-openapi ignores unknown fields, so a typo would otherwise pass silently.
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
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(vb) => dropped(va, vb, &p, lost),
                    None => lost.push(p),
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

#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    accounts: Vec<ServiceAccount>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    configmaps: Vec<ConfigMap>,
    daemonsets: Vec<DaemonSet>,
}

fn load() -> Manifests {
    let mut m = Manifests::default();
    for (what, v) in documents() {
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{what}: no kind"));
        match kind {
            "Namespace" => m.namespaces.push(strict(&what, &v)),
            "ServiceAccount" => m.accounts.push(strict(&what, &v)),
            "ClusterRole" => m.roles.push(strict(&what, &v)),
            "ClusterRoleBinding" => m.bindings.push(strict(&what, &v)),
            "ConfigMap" => m.configmaps.push(strict(&what, &v)),
            "DaemonSet" => m.daemonsets.push(strict(&what, &v)),
            other => panic!("{what}: kind {other} is not expected in the deployment"),
        }
    }
    m
}

#[test]
fn every_manifest_parses_strictly_into_its_kubernetes_type() {
    let m = load();
    assert_eq!(m.namespaces.len(), 1);
    assert_eq!(m.accounts.len(), 1);
    assert_eq!(m.roles.len(), 1);
    assert_eq!(m.bindings.len(), 1);
    assert_eq!(m.configmaps.len(), 1);
    assert_eq!(m.daemonsets.len(), 1);
}

#[test]
fn the_strict_check_catches_a_typo() {
    let (_, mut v) = documents().into_iter().find(|(_, v)| v["kind"] == "DaemonSet").unwrap();
    v["spec"]["template"]["spec"]["hostPid"] = Value::Bool(true);
    let r = std::panic::catch_unwind(|| strict::<DaemonSet>("typo", &v));
    assert!(r.is_err(), "hostPid (for hostPID) must be rejected");
}

#[test]
fn rbac_is_read_only_on_exactly_four_resources() {
    let m = load();
    let role = &m.roles[0];
    let mut granted: BTreeSet<(String, String)> = BTreeSet::new();
    for rule in role.rules.as_deref().unwrap_or_default() {
        let verbs: BTreeSet<&str> = rule.verbs.iter().map(String::as_str).collect();
        assert_eq!(verbs, BTreeSet::from(["get", "list", "watch"]), "rule {rule:?}");
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for g in rule.api_groups.as_deref().unwrap_or_default() {
            for r in rule.resources.as_deref().unwrap_or_default() {
                granted.insert((g.clone(), r.clone()));
            }
        }
    }
    let want: BTreeSet<(String, String)> = [
        ("", "pods"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("apps", "replicasets"),
    ]
    .into_iter()
    .map(|(g, r)| (g.to_string(), r.to_string()))
    .collect();
    assert_eq!(granted, want);

    let binding = &m.bindings[0];
    let sa = &m.accounts[0];
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.as_deref().unwrap_or_default();
    assert!(
        subjects.iter().any(|s| s.kind == "ServiceAccount"
            && Some(&s.name) == sa.metadata.name.as_ref()
            && s.namespace == sa.metadata.namespace),
        "the binding names the agent's service account"
    );
    assert_eq!(sa.metadata.namespace, m.namespaces[0].metadata.name);
}

#[test]
fn daemonset_runs_the_agent_with_capabilities_not_privileged() {
    let m = load();
    let ds = &m.daemonsets[0];
    let ns = m.namespaces[0].metadata.name.clone();
    assert_eq!(ds.metadata.namespace, ns);
    let spec = ds.spec.as_ref().unwrap();
    let tpl_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|md| md.labels.clone())
        .unwrap_or_default();
    for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(tpl_labels.get(k), Some(v), "selector matches the pod template");
    }
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.host_pid, Some(true));
    assert_eq!(pod.service_account_name, m.accounts[0].metadata.name);
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap_or_default();
    assert!(
        args.iter().any(|a| a == "--watch-config"),
        "ConfigMap edits must apply: {args:?}"
    );
    let config_path = args
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("--config PATH");

    let sc = c.security_context.as_ref().unwrap();
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    let added: BTreeSet<&str> = caps
        .add
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect();
    for need in ["BPF", "PERFMON"] {
        assert!(added.contains(need), "missing CAP_{need}");
    }
    assert!(
        !added.contains("SYS_ADMIN"),
        "CAP_BPF + CAP_PERFMON replace CAP_SYS_ADMIN"
    );
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));

    let env = c.env.as_deref().unwrap_or_default();
    let node = env.iter().find(|e| e.name == "NODE_NAME").expect("NODE_NAME env");
    let field = node
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("from the downward API");
    assert_eq!(field.field_path, "spec.nodeName");

    let res = c.resources.as_ref().unwrap();
    for key in ["cpu", "memory"] {
        assert!(
            res.requests.as_ref().is_some_and(|r| r.contains_key(key)),
            "request {key}"
        );
        assert!(res.limits.as_ref().is_some_and(|r| r.contains_key(key)), "limit {key}");
    }

    // Mounts: the config directory from the ConfigMap, BTF read-only.
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let by_mount: BTreeMap<&str, &str> = mounts
        .iter()
        .map(|m| (m.mount_path.as_str(), m.name.as_str()))
        .collect();
    let btf = volumes
        .iter()
        .find(|v| Some(&v.name.as_str()) == by_mount.get("/sys/kernel/btf"))
        .expect("BTF mount");
    assert_eq!(btf.host_path.as_ref().map(|h| h.path.as_str()), Some("/sys/kernel/btf"));
    let config_dir = std::path::Path::new(config_path).parent().unwrap().to_str().unwrap();
    let cm_mount = mounts
        .iter()
        .find(|m| m.mount_path == config_dir)
        .expect("config directory mounted");
    assert!(
        cm_mount.sub_path.is_none(),
        "a subPath mount never sees ConfigMap updates"
    );
    let cm_volume = volumes.iter().find(|v| v.name == cm_mount.name).unwrap();
    let cm_name = cm_volume
        .config_map
        .as_ref()
        .map(|c| c.name.clone())
        .expect("a ConfigMap volume");
    let cm = m
        .configmaps
        .iter()
        .find(|c| c.metadata.name.as_ref() == Some(&cm_name))
        .expect("the ConfigMap exists");
    assert_eq!(cm.metadata.namespace, ns);
    let file = std::path::Path::new(config_path).file_name().unwrap().to_str().unwrap();
    let pipeline = cm
        .data
        .as_ref()
        .and_then(|d| d.get(file))
        .expect("the ConfigMap holds the pipeline file");

    // The liveness probe reads /health on the port [api] listens on.
    let toml: toml::Table = pipeline.parse().expect("pipeline.toml parses");
    let address = toml["api"]["address"].as_str().unwrap();
    let api_port: i32 = address.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(address.starts_with("0.0.0.0:"), "the kubelet probes the pod IP");
    let probe = c
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("HTTP liveness probe");
    assert_eq!(probe.path.as_deref(), Some("/health"));
    let port = match &probe.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => c
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.name.as_ref() == Some(name))
            .map(|p| p.container_port)
            .expect("named port"),
    };
    assert_eq!(port, api_port);
}

#[test]
fn configmap_pipeline_chains_capture_to_enrich_to_stdout() {
    let m = load();
    let pipeline = m.configmaps[0].data.as_ref().unwrap().values().next().unwrap().clone();
    let t: toml::Table = pipeline.parse().unwrap();
    let ty = |section: &str, id: &str| t[section][id]["type"].as_str().unwrap().to_string();
    let inputs = |section: &str, id: &str| -> Vec<String> {
        t[section][id]["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    // Walk back from the sink: file <- enrich <- match <- parse <- ebpf_socket.
    let (sink_id, _) = t["sinks"].as_table().unwrap().iter().next().unwrap();
    assert_eq!(ty("sinks", sink_id), "file");
    let mut chain = vec![];
    let mut next = inputs("sinks", sink_id);
    while let [id] = next.as_slice() {
        let id = id.clone();
        if t["transforms"].get(&id).is_some() {
            chain.push(ty("transforms", &id));
            next = inputs("transforms", &id);
        } else {
            chain.push(ty("sources", &id));
            break;
        }
    }
    assert_eq!(chain, ["enrich", "match", "parse", "ebpf_socket"]);

    // The enrich table is a valid EnrichConfig (deny_unknown_fields).
    let (_, table) = t["transforms"]
        .as_table()
        .unwrap()
        .iter()
        .find(|(_, v)| v["type"].as_str() == Some("enrich"))
        .unwrap();
    let mut table = table.as_table().unwrap().clone();
    table.remove("type");
    table.remove("inputs");
    let cfg: EnrichConfig = table.try_into().expect("enrich options");
    assert!(perisco_engine::component::ComponentConfig::validate(&cfg).is_empty());
}
