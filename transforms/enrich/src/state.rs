//! The mutable cluster state the watchers feed: each object is cut down to the fields a
//! record shows as it arrives, so memory follows the cluster's size, not its objects'.
//! [`ClusterState::snapshot`] freezes it into the [`Snapshot`] the data path reads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use perisco_engine::FastMap;
use perisco_engine::event::{Endpoint, ServiceRef, Workload};

use crate::snapshot::{Owner, PodMeta, PodView, ServiceKey, Snapshot, normalize_container_id};

/// The resources watched, in a fixed order (index into per-resource arrays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Pods,
    Services,
    EndpointSlices,
    ReplicaSets,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Pods,
        Resource::Services,
        Resource::EndpointSlices,
        Resource::ReplicaSets,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Pods => "pods",
            Resource::Services => "services",
            Resource::EndpointSlices => "endpointslices",
            Resource::ReplicaSets => "replicasets",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Options that shape what is kept.
#[derive(Debug, Clone)]
pub struct StateOptions {
    /// Only hostNetwork pods on this node are indexed by container id.
    pub node_name: Option<String>,
    /// How long deleted (or finished) pods still resolve.
    pub grace: Duration,
    /// Label keys left out of records (noise such as pod-template-hash).
    pub exclude_labels: Vec<String>,
}

#[derive(Debug)]
struct PodEntry {
    meta: Arc<PodMeta>,
    ips: Box<[IpAddr]>,
    host_ip: Option<IpAddr>,
    /// Container ids of a hostNetwork pod on this node; empty otherwise.
    containers: Box<[Box<str>]>,
    host_network: bool,
    /// Deleted (or Succeeded/Failed, whose IP is released) since; resolves until grace ends.
    gone_since: Option<Instant>,
    deleted: bool,
    /// What records of this pod show, and the workload it was built with: kept across
    /// snapshots while neither changes, so a rebuild copies no strings for unchanged pods.
    endpoint: Option<(Option<Arc<Workload>>, Arc<Endpoint>)>,
}

#[derive(Debug)]
struct SliceEntry {
    service: Arc<ServiceKey>,
    addresses: Box<[IpAddr]>,
}

/// A ReplicaSet: namespace, name and its Deployment (None: a bare ReplicaSet).
#[derive(Debug)]
struct RsEntry {
    namespace: Arc<str>,
    name: Box<str>,
    deployment: Option<Arc<Workload>>,
}

/// Objects keyed by uid (names are reused: a StatefulSet pod comes back with the same name).
type Uid = Box<str>;

#[derive(Debug)]
pub struct ClusterState {
    opts: StateOptions,
    namespaces: HashSet<Arc<str>>,
    pods: HashMap<Uid, PodEntry>,
    services: HashMap<Uid, (Arc<ServiceKey>, Box<[IpAddr]>)>,
    slices: HashMap<Uid, SliceEntry>,
    replicasets: HashMap<Uid, RsEntry>,
    /// Per resource: uids seen since the last `Init` (a relist in progress).
    relisting: [Option<HashSet<Uid>>; 4],
    synced: [bool; 4],
}

impl ClusterState {
    pub fn new(opts: StateOptions) -> Self {
        ClusterState {
            opts,
            namespaces: HashSet::new(),
            pods: HashMap::new(),
            services: HashMap::new(),
            slices: HashMap::new(),
            replicasets: HashMap::new(),
            relisting: Default::default(),
            synced: [false; 4],
        }
    }

    pub fn synced(&self, r: Resource) -> bool {
        self.synced[r.index()]
    }

    /// Pods held (including deleted ones still lingering).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    fn intern_ns(&mut self, ns: &str) -> Arc<str> {
        if let Some(a) = self.namespaces.get(ns) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(ns);
        self.namespaces.insert(a.clone());
        a
    }

    /// A relist starts: objects not listed again before [`Self::init_done`] are gone.
    pub fn init(&mut self, r: Resource) {
        self.relisting[r.index()] = Some(HashSet::new());
    }

    /// The relist is complete: forget (pods: start the grace period of) what it did not list.
    pub fn init_done(&mut self, r: Resource, now: Instant) {
        let Some(seen) = self.relisting[r.index()].take() else {
            return;
        };
        match r {
            Resource::Pods => {
                for (uid, p) in self.pods.iter_mut() {
                    if !seen.contains(uid) && !p.deleted {
                        p.deleted = true;
                        p.gone_since.get_or_insert(now);
                    }
                }
            }
            Resource::Services => self.services.retain(|uid, _| seen.contains(uid)),
            Resource::EndpointSlices => self.slices.retain(|uid, _| seen.contains(uid)),
            Resource::ReplicaSets => self.replicasets.retain(|uid, _| seen.contains(uid)),
        }
        self.synced[r.index()] = true;
    }

    fn note_seen(&mut self, r: Resource, uid: &Uid) {
        if let Some(seen) = &mut self.relisting[r.index()] {
            seen.insert(uid.clone());
        }
    }

    pub fn apply_pod(&mut self, pod: &Pod, now: Instant) {
        let Some(uid) = uid_of(&pod.metadata) else {
            return;
        };
        self.note_seen(Resource::Pods, &uid);
        let md = &pod.metadata;
        let ns = self.intern_ns(md.namespace.as_deref().unwrap_or("default"));
        let name: Box<str> = md.name.as_deref().unwrap_or_default().into();
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let on_this_node = match (&self.opts.node_name, spec.and_then(|s| s.node_name.as_deref())) {
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let mut ips: Vec<IpAddr> = Vec::new();
        if let Some(st) = status {
            let all = st.pod_ip.iter().chain(st.pod_ips.iter().flatten().map(|p| &p.ip));
            for ip in all.filter_map(|s| s.parse().ok()) {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        let containers: Box<[Box<str>]> = if host_network && on_this_node {
            status
                .into_iter()
                .flat_map(|st| {
                    let lists = [
                        &st.container_statuses,
                        &st.init_container_statuses,
                        &st.ephemeral_container_statuses,
                    ];
                    lists.into_iter().flatten().flatten()
                })
                .filter_map(|c| c.container_id.as_deref())
                .map(|id| normalize_container_id(id).into())
                .collect()
        } else {
            Box::default()
        };
        let finished = matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        let labels = render_labels(md.labels.as_ref(), &self.opts.exclude_labels);
        let owner = owner_of(md.owner_references.as_deref(), &name);
        let meta = PodMeta {
            name,
            namespace: ns,
            labels,
            owner,
        };
        let previous = self.pods.get(&uid);
        // Keep the old Arc (and the endpoint built from it) when nothing shown changed:
        // snapshots share them.
        let (meta, endpoint) = match previous {
            Some(p) if *p.meta == meta => (p.meta.clone(), p.endpoint.clone()),
            _ => (Arc::new(meta), None),
        };
        let gone_since = match (finished, previous.and_then(|p| p.gone_since)) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(now),
            (false, _) => None,
        };
        let host_ip = status.and_then(|s| s.host_ip.as_deref()).and_then(|s| s.parse().ok());
        let entry = PodEntry {
            meta,
            ips: ips.into(),
            host_ip,
            containers,
            host_network,
            gone_since,
            deleted: false,
            endpoint,
        };
        self.pods.insert(uid, entry);
    }

    /// A deleted pod keeps resolving for the grace period (late records of its connections).
    pub fn delete_pod(&mut self, pod: &Pod, now: Instant) {
        if let Some(uid) = uid_of(&pod.metadata)
            && let Some(p) = self.pods.get_mut(&uid)
        {
            p.deleted = true;
            p.gone_since.get_or_insert(now);
        }
    }

    pub fn apply_service(&mut self, svc: &Service) {
        let Some(uid) = uid_of(&svc.metadata) else {
            return;
        };
        self.note_seen(Resource::Services, &uid);
        let key = self.service_key(&svc.metadata, svc.metadata.name.as_deref().unwrap_or_default());
        let spec = svc.spec.as_ref();
        let mut ips: Vec<IpAddr> = Vec::new();
        if let Some(s) = spec {
            for ip in s
                .cluster_ip
                .iter()
                .chain(s.cluster_ips.iter().flatten())
                .filter_map(|s| s.parse().ok())
            {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        self.services.insert(uid, (key, ips.into()));
    }

    pub fn delete_service(&mut self, svc: &Service) {
        if let Some(uid) = uid_of(&svc.metadata) {
            self.services.remove(&uid);
        }
    }

    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let Some(uid) = uid_of(&slice.metadata) else {
            return;
        };
        self.note_seen(Resource::EndpointSlices, &uid);
        let Some(svc_name) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            // Not managed for a service: nothing to resolve through it.
            self.slices.remove(&uid);
            return;
        };
        let service = self.service_key(&slice.metadata, svc_name);
        let addresses: Vec<IpAddr> = slice
            .endpoints
            .iter()
            .flat_map(|e| e.addresses.iter())
            .filter_map(|a| a.parse().ok())
            .collect();
        self.slices.insert(
            uid,
            SliceEntry {
                service,
                addresses: addresses.into(),
            },
        );
    }

    pub fn delete_slice(&mut self, slice: &EndpointSlice) {
        if let Some(uid) = uid_of(&slice.metadata) {
            self.slices.remove(&uid);
        }
    }

    pub fn apply_replicaset(&mut self, rs: &ReplicaSet) {
        let Some(uid) = uid_of(&rs.metadata) else {
            return;
        };
        self.note_seen(Resource::ReplicaSets, &uid);
        let ns = self.intern_ns(rs.metadata.namespace.as_deref().unwrap_or("default"));
        let name: Box<str> = rs.metadata.name.as_deref().unwrap_or_default().into();
        let deployment = controller(rs.metadata.owner_references.as_deref())
            .filter(|o| o.kind == "Deployment")
            .map(|o| {
                Arc::new(Workload {
                    name: o.name.clone(),
                    kind: "Deployment".into(),
                })
            });
        self.replicasets.insert(
            uid,
            RsEntry {
                namespace: ns,
                name,
                deployment,
            },
        );
    }

    pub fn delete_replicaset(&mut self, rs: &ReplicaSet) {
        if let Some(uid) = uid_of(&rs.metadata) {
            self.replicasets.remove(&uid);
        }
    }

    fn service_key(&mut self, md: &ObjectMeta, name: &str) -> Arc<ServiceKey> {
        let namespace = self.intern_ns(md.namespace.as_deref().unwrap_or("default"));
        Arc::new(ServiceKey {
            namespace,
            name: name.into(),
        })
    }

    /// Drop deleted pods whose grace period is over. True when something changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let grace = self.opts.grace;
        let before = self.pods.len();
        self.pods
            .retain(|_, p| !(p.deleted && p.gone_since.is_some_and(|t| now.duration_since(t) >= grace)));
        before != self.pods.len()
    }

    /// When the next pod's grace period ends (a snapshot must be rebuilt then).
    pub fn next_expiry(&self, now: Instant) -> Option<Instant> {
        let grace = self.opts.grace;
        self.pods
            .values()
            .filter_map(|p| p.gone_since)
            .map(|t| t + grace)
            .filter(|t| *t > now)
            .min()
    }

    /// Freeze the current state for the data path.
    pub fn snapshot(&mut self, now: Instant) -> Snapshot {
        let grace = self.opts.grace;
        let mut deployments: HashMap<(&str, &str), Option<&Arc<Workload>>> = HashMap::new();
        for rs in self.replicasets.values() {
            deployments.insert((&rs.namespace, &rs.name), rs.deployment.as_ref());
        }
        // For each IP the best claimant: a live pod beats a gone one; of gone ones, the latest.
        let mut by_ip: HashMap<IpAddr, (Option<Instant>, PodView)> = HashMap::with_capacity(self.pods.len());
        let mut by_container = FastMap::default();
        for p in self.pods.values_mut() {
            if p.gone_since.is_some_and(|t| now.duration_since(t) >= grace) {
                continue;
            }
            let workload = match &p.meta.owner {
                Some(Owner::Workload(w)) => Some(w.clone()),
                Some(Owner::ReplicaSet(rs)) => Some(match deployments.get(&(&*p.meta.namespace, &**rs)) {
                    Some(Some(d)) => (*d).clone(),
                    _ => Arc::new(Workload {
                        name: rs.to_string(),
                        kind: "ReplicaSet".into(),
                    }),
                }),
                None => None,
            };
            let endpoint = match &p.endpoint {
                Some((built_with, e)) if *built_with == workload => e.clone(),
                _ => {
                    let e = Arc::new(PodView::endpoint_of(&p.meta, workload.as_deref()));
                    p.endpoint = Some((workload, e.clone()));
                    e
                }
            };
            let view = PodView {
                meta: p.meta.clone(),
                endpoint,
                host_ip: p.host_ip,
            };
            for c in p.containers.iter() {
                by_container.insert(c.clone(), view.clone());
            }
            if p.host_network {
                continue;
            }
            for ip in p.ips.iter() {
                let better = match by_ip.get(ip) {
                    None => true,
                    Some((None, _)) => false,
                    Some((Some(theirs), _)) => p.gone_since.is_none_or(|mine| mine > *theirs),
                };
                if better {
                    by_ip.insert(*ip, (p.gone_since, view.clone()));
                }
            }
        }
        // One shared `ServiceRef` per service, whatever number of IPs lead to it.
        let mut refs: HashMap<Arc<ServiceKey>, Arc<ServiceRef>> = HashMap::new();
        let mut shared = |key: &Arc<ServiceKey>| -> Arc<ServiceRef> {
            refs.entry(key.clone())
                .or_insert_with(|| Arc::new(key.to_ref()))
                .clone()
        };
        let mut service_by_cluster_ip = FastMap::with_capacity_and_hasher(self.services.len(), Default::default());
        for (key, ips) in self.services.values() {
            for ip in ips.iter() {
                service_by_cluster_ip.insert(*ip, shared(key));
            }
        }
        let mut service_by_pod_ip: HashMap<IpAddr, &Arc<ServiceKey>> = HashMap::new();
        for s in self.slices.values() {
            for ip in s.addresses.iter() {
                service_by_pod_ip
                    .entry(*ip)
                    .and_modify(|cur| {
                        if s.service < **cur {
                            *cur = &s.service;
                        }
                    })
                    .or_insert(&s.service);
            }
        }
        let service_by_pod_ip = service_by_pod_ip
            .into_iter()
            .map(|(ip, key)| (ip, shared(key)))
            .collect();
        Snapshot {
            pods_by_ip: by_ip.into_iter().map(|(ip, (_, v))| (ip, v)).collect(),
            pods_by_container: by_container,
            service_by_cluster_ip,
            service_by_pod_ip,
            synced: self.synced.iter().all(|s| *s),
        }
    }
}

fn uid_of(md: &ObjectMeta) -> Option<Uid> {
    match (&md.uid, &md.name) {
        (Some(uid), _) if !uid.is_empty() => Some(uid.as_str().into()),
        // Without a uid (some emulators), namespace/name is the identity.
        (_, Some(name)) => Some(format!("{}/{name}", md.namespace.as_deref().unwrap_or_default()).into()),
        _ => None,
    }
}

fn render_labels(labels: Option<&BTreeMap<String, String>>, exclude: &[String]) -> Box<[Box<str>]> {
    // BTreeMap iterates in key order: labels come out sorted.
    labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| !exclude.iter().any(|e| e == *k))
        .map(|(k, v)| format!("{k}={v}").into_boxed_str())
        .collect()
}

fn controller(refs: Option<&[OwnerReference]>) -> Option<&OwnerReference> {
    let refs = refs?;
    refs.iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| refs.first())
}

/// The workload a pod belongs to, from its controller reference. Bare pods are their own
/// workload (kind "Pod").
fn owner_of(refs: Option<&[OwnerReference]>, pod_name: &str) -> Option<Owner> {
    let Some(o) = controller(refs) else {
        return Some(Owner::Workload(Arc::new(Workload {
            name: pod_name.to_string(),
            kind: "Pod".into(),
        })));
    };
    let w = |name: &str, kind: &str| {
        Some(Owner::Workload(Arc::new(Workload {
            name: name.into(),
            kind: kind.into(),
        })))
    };
    match o.kind.as_str() {
        "ReplicaSet" => Some(Owner::ReplicaSet(o.name.as_str().into())),
        "Job" => match cronjob_of(&o.name) {
            Some(cron) => w(cron, "CronJob"),
            None => w(&o.name, "Job"),
        },
        kind => w(&o.name, kind),
    }
}

/// The CronJob controller names its Jobs "<cronjob>-<scheduled time in minutes>"; pods
/// carry no CronJob reference, and Jobs are not watched (RBAC stays at four resources).
fn cronjob_of(job: &str) -> Option<&str> {
    let (prefix, suffix) = job.rsplit_once('-')?;
    (suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()) && !prefix.is_empty()).then_some(prefix)
}

#[cfg(test)]
mod tests;
