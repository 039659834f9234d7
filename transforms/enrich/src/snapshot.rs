//! The immutable view the data path reads: IP → pod, ClusterIP → service, pod IP →
//! services, container id → pod. Built off the data path by [`crate::state`], published
//! through an `ArcSwap`; a lookup is a few hash reads, never an API call.

use std::net::IpAddr;
use std::sync::Arc;

use perisco_engine::FastMap;
use perisco_engine::event::{Endpoint, Record, ServiceRef, Workload};

/// What is kept of a pod: only the fields a record shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    pub name: Box<str>,
    pub namespace: Arc<str>,
    /// "key=value", sorted, without the excluded keys.
    pub labels: Box<[Box<str>]>,
    pub owner: Option<Owner>,
}

/// The pod's controller, as its owner reference says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Resolved to its Deployment (if any) through the ReplicaSet watch.
    ReplicaSet(Box<str>),
    /// A known workload kind that needs no further lookup.
    Workload(Arc<Workload>),
}

/// A pod as the snapshot resolves it: the shared meta, and what its records show, shared
/// by every record of the pod (and by snapshots while the pod and its workload stay).
#[derive(Debug, Clone)]
pub struct PodView {
    pub meta: Arc<PodMeta>,
    pub endpoint: Arc<Endpoint>,
    /// Node IP (status.hostIP); used to tell which side a hostNetwork pod is on.
    pub host_ip: Option<IpAddr>,
}

impl PodView {
    /// What the records of a pod with `meta`, run by `workload`, show.
    pub fn endpoint_of(meta: &PodMeta, workload: Option<&Workload>) -> Endpoint {
        Endpoint {
            namespace: Some(meta.namespace.to_string()),
            labels: meta.labels.iter().map(|l| l.to_string()).collect(),
            pod_name: Some(meta.name.to_string()),
            workload: workload.cloned(),
        }
    }
}

/// A service, interned: many IPs point at the same one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: Arc<str>,
    pub name: Box<str>,
}

impl ServiceKey {
    pub fn to_ref(&self) -> ServiceRef {
        ServiceRef {
            name: self.name.to_string(),
            namespace: self.namespace.to_string(),
        }
    }
}

/// Everything the data path may ask, frozen at one point in time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Pod IPs of pods that do not use the host network.
    pub pods_by_ip: FastMap<IpAddr, PodView>,
    /// Container id (no `runtime://` prefix) → pod, for pods on this node.
    pub pods_by_container: FastMap<Box<str>, PodView>,
    pub service_by_cluster_ip: FastMap<IpAddr, Arc<ServiceRef>>,
    /// Pod IP → the first (by namespace, name) service whose EndpointSlices list it.
    pub service_by_pod_ip: FastMap<IpAddr, Arc<ServiceRef>>,
    /// True once every watch has listed at least once.
    pub synced: bool,
}

/// What one record's enrichment found, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub client: bool,
    pub server: bool,
}

impl Snapshot {
    fn service_for(&self, ip: IpAddr) -> Option<&Arc<ServiceRef>> {
        self.service_by_cluster_ip
            .get(&ip)
            .or_else(|| self.service_by_pod_ip.get(&ip))
    }

    /// Fill the record's absent Kubernetes fields; fields already set are left alone.
    ///
    /// A side is a pod IP, or, for hostNetwork pods (which share the node's IP), the pod of
    /// the capturing process's container when that side's address is the pod's node IP.
    pub fn enrich(&self, r: &mut Record) -> Resolved {
        let container = r
            .container_id
            .as_deref()
            .and_then(|id| self.pods_by_container.get(normalize_container_id(id)));
        let on_host = |ip: IpAddr| container.filter(|p| p.host_ip == Some(ip));
        let server_by_ip = self.pods_by_ip.get(&r.ip.server);
        let server_pod = server_by_ip.or_else(|| on_host(r.ip.server));
        let client_pod = self.pods_by_ip.get(&r.ip.client).or_else(|| {
            // One container is one process's: when it already is the server (both sides on
            // the node IP), it is not the client too. The server is the default capturing role.
            if server_by_ip.is_none() && server_pod.is_some() {
                None
            } else {
                on_host(r.ip.client)
            }
        });
        let mut found = Resolved::default();
        if r.client.is_none()
            && let Some(p) = client_pod
        {
            r.client = Some(p.endpoint.clone());
            found.client = true;
        }
        if r.server.is_none()
            && let Some(p) = server_pod
        {
            r.server = Some(p.endpoint.clone());
            found.server = true;
        }
        if r.client_service.is_none() {
            r.client_service = self.service_for(r.ip.client).cloned();
        }
        if r.server_service.is_none() {
            r.server_service = self.service_for(r.ip.server).cloned();
        }
        found
    }
}

/// "containerd://abc…" → "abc…"; ids from /proc/PID/cgroup come without the prefix.
pub fn normalize_container_id(id: &str) -> &str {
    id.rsplit_once("://").map_or(id, |(_, rest)| rest)
}
