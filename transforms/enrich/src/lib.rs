//! `enrich` transform: Kubernetes metadata on records.
//!
//! Watchers (list + watch, never polling) on Pods, Services, EndpointSlices and
//! ReplicaSets keep a cut-down cluster state; after changes it is frozen into an
//! immutable [`Snapshot`] published through `ArcSwap`. The data path only reads the
//! current snapshot: IP → pod (namespace, labels, pod name, workload), ClusterIP →
//! service, pod IP → the service whose EndpointSlices list it, and the record's container
//! id → pod for hostNetwork pods (which share the node's IP). Unknown fields stay absent.
//!
//! The API unreachable (at start or later): records pass through with what the cache
//! holds (nothing before the first list), `/health` says degraded, the watchers retry with
//! backoff and relist when the API is back. See docs/enrich.md.

mod health;
pub mod snapshot;
pub mod state;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event};
use perisco_engine::metrics::Counter;
use serde::Deserialize;

pub use health::HealthTracker;
pub use snapshot::Snapshot;
use state::{ClusterState, StateOptions};
use watch::{Connect, Shared, Watchers};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// Kubeconfig file; without it KUBECONFIG (or ~/.kube/config), else the in-cluster
    /// service account.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; default: the file's current context.
    #[serde(default)]
    pub context: Option<String>,
    /// This node's name, written to `node` on every record and used to index hostNetwork
    /// pods by container id. Default: the NODE_NAME environment variable (downward API).
    #[serde(default)]
    pub node_name: Option<String>,
    /// How long a deleted pod still resolves, so late records of its connections do.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub pod_grace_period: Duration,
    /// Label keys left out of `labels` (per-revision noise by default).
    #[serde(default = "default_exclude_labels")]
    pub exclude_labels: Vec<String>,
}

fn default_grace() -> Duration {
    Duration::from_secs(60)
}

fn default_exclude_labels() -> Vec<String> {
    [
        "pod-template-hash",
        "controller-revision-hash",
        "pod-template-generation",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            kubeconfig: None,
            context: None,
            node_name: None,
            pod_grace_period: default_grace(),
            exclude_labels: default_exclude_labels(),
        }
    }
}

impl EnrichConfig {
    /// The node name: the option, else NODE_NAME.
    pub fn resolved_node_name(&self) -> Option<String> {
        self.node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok())
            .filter(|n| !n.is_empty())
    }

    fn connect(&self, cx: &BuildContext) -> Result<Connect, BoxError> {
        let kubeconfig = self.kubeconfig.as_ref().map(|p| cx.resolve_path(p));
        Ok(Connect::from_options(kubeconfig, self.context.clone())?)
    }

    /// Build with an explicit way to reach the API (tests use an in-process mock client).
    pub fn build_with(&self, cx: &BuildContext, connect: Connect) -> Result<Enrich, BoxError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| "the enrich transform must be built inside a tokio runtime")?;
        let node = self.resolved_node_name();
        let state = ClusterState::new(StateOptions {
            node_name: node.clone(),
            grace: self.pod_grace_period,
            exclude_labels: self.exclude_labels.clone(),
        });
        let id = cx.id.as_ref();
        let label = &[("component_id", id)];
        let errors = cx.registry.counter(
            "perisco_enrich_api_errors_total",
            "Kubernetes API errors met by the enrich watchers (each is retried).",
            label,
        );
        let health = HealthTracker::new(cx.health.clone(), errors);
        let shared = Shared::new(state, health, &cx.registry, id);
        let side = |result: &'static str| {
            cx.registry.counter(
                "perisco_enrich_sides_total",
                "Record sides (client, server) looked up, by whether a pod was found.",
                &[("component_id", id), ("result", result)],
            )
        };
        let snapshot = shared.snapshot.clone();
        let watchers = watch::spawn(&rt, connect, shared.clone());
        Ok(Enrich {
            snapshot,
            node,
            shared,
            _watchers: watchers,
            resolved: side("resolved"),
            unresolved: side("unresolved"),
        })
    }
}

impl ComponentConfig for EnrichConfig {
    fn type_name(&self) -> &'static str {
        "enrich"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errors = Vec::new();
        if self.kubeconfig.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            errors.push(ValueError::at(
                "kubeconfig",
                "must not be empty (leave it out to use KUBECONFIG or in-cluster)",
            ));
        }
        if self.node_name.as_ref().is_some_and(|n| n.is_empty()) {
            errors.push(ValueError::at(
                "node_name",
                "must not be empty (leave it out to use NODE_NAME)",
            ));
        }
        if self.pod_grace_period > Duration::from_secs(24 * 3600) {
            errors.push(ValueError::at(
                "pod_grace_period",
                "must be at most 24h (deleted pods are held in memory)",
            ));
        }
        errors
    }
}

impl TransformConfig for EnrichConfig {
    fn accepts(&self, input: DataType) -> bool {
        input == DataType::Record
    }

    fn output(&self) -> DataType {
        DataType::Record
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        let connect = self.connect(cx)?;
        Ok(Box::new(self.build_with(cx, connect)?))
    }
}

/// The running transform. Dropping it stops the watchers.
pub struct Enrich {
    snapshot: Arc<ArcSwap<Snapshot>>,
    node: Option<String>,
    shared: Arc<Shared>,
    _watchers: Watchers,
    resolved: Counter,
    unresolved: Counter,
}

impl Enrich {
    /// The snapshot the data path reads now (for tests and benchmarks).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}

impl Drop for Enrich {
    fn drop(&mut self) {
        self.shared.health.stop();
    }
}

/// The typed record of an event. A record a remap patched is enriched underneath its
/// patch, so fields the program set explicitly win over looked-up names.
fn typed_record(event: &mut Event) -> Option<&mut perisco_engine::event::Record> {
    match event {
        Event::Record(r) => Some(r),
        Event::Patched(p) => Some(&mut p.record),
        _ => None,
    }
}

impl FunctionTransform for Enrich {
    fn transform(&mut self, mut event: Event, out: &mut Vec<Event>) {
        if let Some(r) = typed_record(&mut event) {
            let snap = self.snapshot.load();
            let found = snap.enrich(r);
            let hits = u64::from(found.client) + u64::from(found.server);
            self.resolved.add(hits);
            self.unresolved.add(2 - hits);
            if r.node.is_none() {
                r.node.clone_from(&self.node);
            }
        }
        out.push(event);
    }

    fn transform_batch(&mut self, batch: Vec<Event>, out: &mut Vec<Event>) {
        // One snapshot load per batch.
        let snap = self.snapshot.load();
        let (mut hits, mut sides) = (0u64, 0u64);
        out.reserve(batch.len());
        for mut event in batch {
            if let Some(r) = typed_record(&mut event) {
                let found = snap.enrich(r);
                hits += u64::from(found.client) + u64::from(found.server);
                sides += 2;
                if r.node.is_none() {
                    r.node.clone_from(&self.node);
                }
            }
            out.push(event);
        }
        self.resolved.add(hits);
        self.unresolved.add(sides - hits);
    }
}
