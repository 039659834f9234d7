//! The tasks that keep the snapshot current: one watcher per resource (list, then watch),
//! and a publisher that freezes the state into a new snapshot after changes and when a
//! deleted pod's grace period ends.
//!
//! Every watch failure drops that watcher and starts a fresh one (a relist) after a
//! jittered exponential backoff. A resumed watch would report nothing when the API comes
//! back quietly, so "listed again" is the one signal that the data is current; and a
//! server whose resourceVersions went backwards (a restarted emulator, a restored etcd)
//! cannot resume anyway. Lists use `resourceVersion=0` (served from the API server's watch
//! cache), which keeps a fleet of agents relisting after an outage cheap for the server.

use std::fmt::Debug;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use perisco_engine::metrics::{Counter, Gauge, Registry};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::health::{HealthTracker, Slot};
use crate::snapshot::Snapshot;
use crate::state::{ClusterState, Resource};

/// Where the API client comes from.
#[derive(Clone)]
pub enum Connect {
    /// A kubeconfig file (the `kubeconfig` option), optionally one of its contexts.
    Kubeconfig { path: PathBuf, context: Option<String> },
    /// KUBECONFIG (or ~/.kube/config), else the in-cluster service account.
    Infer { context: Option<String> },
    /// A ready client (tests with an in-process mock).
    Client(Client),
}

impl Connect {
    /// From the `kubeconfig` (already resolved against the config file's directory) and
    /// `context` options. A kubeconfig that cannot be read is a config error, reported now
    /// (failing the build, or a reload) rather than by a retrying watch later.
    pub fn from_options(kubeconfig: Option<PathBuf>, context: Option<String>) -> Result<Connect, String> {
        Ok(match kubeconfig {
            Some(path) => {
                Kubeconfig::read_from(&path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                Connect::Kubeconfig { path, context }
            }
            None => Connect::Infer { context },
        })
    }

    /// A client for the API server. Also used by the hubble sink's peer discovery, so both
    /// talk to Kubernetes the same way.
    pub async fn client(&self) -> Result<Client, String> {
        // Fails harmlessly when a provider is already installed (another component, a reload).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = match self {
            Connect::Client(c) => return Ok(c.clone()),
            Connect::Kubeconfig { path, context } => {
                let kc = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
                let opts = KubeConfigOptions {
                    context: context.clone(),
                    ..Default::default()
                };
                kube::Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Connect::Infer { context: Some(ctx) } => {
                let opts = KubeConfigOptions {
                    context: Some(ctx.clone()),
                    ..Default::default()
                };
                kube::Config::from_kubeconfig(&opts).await.map_err(|e| e.to_string())?
            }
            Connect::Infer { context: None } => kube::Config::infer().await.map_err(|e| e.to_string())?,
        };
        let mut config = config;
        // Fail fast on an unreachable API (the watch loop retries with backoff).
        config.connect_timeout = Some(Duration::from_secs(10));
        Client::try_from(config).map_err(|e| e.to_string())
    }
}

/// What the tasks share with the transform.
pub struct Shared {
    pub state: Mutex<ClusterState>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub health: HealthTracker,
    changed: Notify,
    metrics: WatchMetrics,
    /// Wait this long after a change before rebuilding, so a burst (a list of 10 k pods)
    /// costs one rebuild.
    pub debounce: Duration,
}

struct WatchMetrics {
    events: Counter,
    rebuilds: Counter,
    pods: Gauge,
    pod_ips: Gauge,
    services: Gauge,
}

impl WatchMetrics {
    fn register(registry: &Registry, id: &str) -> Self {
        let l = &[("component_id", id)];
        WatchMetrics {
            events: registry.counter(
                "perisco_enrich_watch_events_total",
                "Kubernetes watch events applied to the enrich cache.",
                l,
            ),
            rebuilds: registry.counter(
                "perisco_enrich_snapshot_rebuilds_total",
                "Snapshots of the enrich cache published to the data path.",
                l,
            ),
            pods: registry.gauge(
                "perisco_enrich_pods",
                "Pods held by the enrich cache (deleted ones lingering too).",
                l,
            ),
            pod_ips: registry.gauge(
                "perisco_enrich_pod_ips",
                "Pod IPs resolvable in the current snapshot.",
                l,
            ),
            services: registry.gauge(
                "perisco_enrich_services",
                "ClusterIPs resolvable in the current snapshot.",
                l,
            ),
        }
    }
}

impl Shared {
    pub fn new(state: ClusterState, health: HealthTracker, registry: &Registry, id: &str) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(state),
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            health,
            changed: Notify::new(),
            metrics: WatchMetrics::register(registry, id),
            debounce: Duration::from_millis(50),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The tasks, aborted together when dropped (the transform was dropped: reload, shutdown).
pub struct Watchers(tokio::task::AbortHandle);

impl Drop for Watchers {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Start the watchers on `rt`. The supervisor owns them in a `JoinSet`, so aborting it
/// aborts them all.
pub fn spawn(rt: &tokio::runtime::Handle, connect: Connect, shared: Arc<Shared>) -> Watchers {
    let task = rt.spawn(supervise(connect, shared));
    Watchers(task.abort_handle())
}

async fn supervise(connect: Connect, shared: Arc<Shared>) {
    let mut backoff = Backoff::default();
    let client = loop {
        match connect.client().await {
            Ok(c) => {
                shared.health.ok(Slot::Client);
                break c;
            }
            Err(e) => {
                shared
                    .health
                    .error(Slot::Client, &format!("no Kubernetes API client: {e}"));
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(publish(shared.clone()));
    tasks.spawn(watch::<Pod>(Api::all(client.clone()), shared.clone()));
    tasks.spawn(watch::<Service>(Api::all(client.clone()), shared.clone()));
    tasks.spawn(watch::<EndpointSlice>(Api::all(client.clone()), shared.clone()));
    tasks.spawn(watch::<ReplicaSet>(Api::all(client), shared.clone()));
    // The tasks loop forever; this only returns if one panicked (then the rest keep going).
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r
            && e.is_panic()
        {
            shared.health.error(Slot::Client, "an enrich watcher task panicked");
        }
    }
}

/// A watched resource and how it updates the state.
pub trait Watched: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    const RESOURCE: Resource;
    fn apply(&self, st: &mut ClusterState, now: Instant);
    fn delete(&self, st: &mut ClusterState, now: Instant);
}

impl Watched for Pod {
    const RESOURCE: Resource = Resource::Pods;
    fn apply(&self, st: &mut ClusterState, now: Instant) {
        st.apply_pod(self, now);
    }
    fn delete(&self, st: &mut ClusterState, now: Instant) {
        st.delete_pod(self, now);
    }
}

impl Watched for Service {
    const RESOURCE: Resource = Resource::Services;
    fn apply(&self, st: &mut ClusterState, _now: Instant) {
        st.apply_service(self);
    }
    fn delete(&self, st: &mut ClusterState, _now: Instant) {
        st.delete_service(self);
    }
}

impl Watched for EndpointSlice {
    const RESOURCE: Resource = Resource::EndpointSlices;
    fn apply(&self, st: &mut ClusterState, _now: Instant) {
        st.apply_slice(self);
    }
    fn delete(&self, st: &mut ClusterState, _now: Instant) {
        st.delete_slice(self);
    }
}

impl Watched for ReplicaSet {
    const RESOURCE: Resource = Resource::ReplicaSets;
    fn apply(&self, st: &mut ClusterState, _now: Instant) {
        st.apply_replicaset(self);
    }
    fn delete(&self, st: &mut ClusterState, _now: Instant) {
        st.delete_replicaset(self);
    }
}

/// List + watch one resource forever; on any error, back off and relist.
pub async fn watch<K: Watched>(api: Api<K>, shared: Arc<Shared>) {
    let r = K::RESOURCE;
    let config = watcher::Config::default().any_semantic();
    let mut backoff = Backoff::default();
    loop {
        let mut stream = pin!(watcher::watcher(api.clone(), config.clone()));
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(ev) => ev,
                Err(e) => {
                    shared
                        .health
                        .error(Slot::Watch(r), &format!("{} watch: {e}", r.as_str()));
                    break;
                }
            };
            let now = Instant::now();
            let listed = {
                let mut st = shared.lock();
                match &event {
                    Event::Init => st.init(r),
                    Event::InitApply(o) | Event::Apply(o) => o.apply(&mut st, now),
                    Event::Delete(o) => o.delete(&mut st, now),
                    Event::InitDone => st.init_done(r, now),
                }
                matches!(event, Event::InitDone)
            };
            shared.metrics.events.inc();
            shared.changed.notify_one();
            if listed {
                backoff.reset();
                shared.health.ok(Slot::Watch(r));
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Rebuild and publish the snapshot after changes (debounced) and at grace-period ends.
async fn publish(shared: Arc<Shared>) {
    let mut wait = shared.debounce;
    loop {
        let next_expiry = shared.lock().next_expiry(Instant::now());
        match next_expiry {
            Some(at) => {
                tokio::select! {
                    _ = shared.changed.notified() => tokio::time::sleep(wait).await,
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => {
                shared.changed.notified().await;
                tokio::time::sleep(wait).await;
            }
        }
        let cost = publish_now(&shared);
        // A rebuild costs O(cluster): under constant churn in a big cluster, space them so
        // they take at most about a tenth of a core.
        wait = shared.debounce.max(cost * 10);
    }
}

/// Expire what is due and publish a fresh snapshot; returns how long the build took.
pub fn publish_now(shared: &Shared) -> Duration {
    let start = Instant::now();
    let now = Instant::now();
    let (snap, pods) = {
        let mut st = shared.lock();
        st.expire(now);
        (st.snapshot(now), st.pod_count())
    };
    let cost = start.elapsed();
    let m = &shared.metrics;
    m.pods.set(pods as i64);
    m.pod_ips.set(snap.pods_by_ip.len() as i64);
    m.services.set(snap.service_by_cluster_ip.len() as i64);
    m.rebuilds.inc();
    if snap.synced {
        shared.health.synced();
    }
    shared.snapshot.store(Arc::new(snap));
    cost
}

/// Exponential backoff, 0.5 s doubling to 30 s, with ±25 % jitter so a fleet of agents
/// does not relist in lockstep after an API outage.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    pub fn next_delay(&mut self) -> Duration {
        let base = Self::MIN.saturating_mul(1 << self.attempt.min(6)).min(Self::MAX);
        self.attempt = self.attempt.saturating_add(1);
        // Jitter from the clock's low bits: no RNG dependency, different per process.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
        base.mul_f64(factor)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
