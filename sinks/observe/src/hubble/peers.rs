//! The peers `peer.Peer/Notify` announces and `GetNodes` lists: this node alone
//! (`peers = "local"`), or every ready perisco agent pod of the cluster
//! (`peers = "kubernetes"`, fed by [`crate::hubble::kube_peers`]).
//!
//! [`PeerSet`] holds the announced set (name → address) and fans out the changes: a new
//! subscriber gets `PEER_ADDED` for every known peer, then `PEER_ADDED` / `PEER_DELETED` /
//! `PEER_UPDATED` as the set changes, as Cilium's peer service does. [`AgentPods`] turns
//! watched pods into that set.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::broadcast;

use crate::hubble::filter::LabelSelector;
use crate::proto::peer::{ChangeNotification, ChangeNotificationType};

/// Changes a Notify subscriber may fall behind before its stream is ended (it reconnects
/// and gets the full set again). Peer changes are rare; a whole cluster appearing at the
/// first list is the largest burst.
const NOTIFY_BUFFER: usize = 4096;

/// The announced peers, by name (the node name), and the change feed.
pub struct PeerSet {
    inner: Mutex<BTreeMap<String, String>>,
    changes: broadcast::Sender<ChangeNotification>,
}

fn notification(name: &str, address: &str, kind: ChangeNotificationType) -> ChangeNotification {
    ChangeNotification {
        name: name.to_owned(),
        address: address.to_owned(),
        r#type: kind as i32,
        // perisco's server is plaintext: no TLS server name to verify.
        tls: None,
    }
}

impl PeerSet {
    pub fn new(initial: BTreeMap<String, String>) -> Self {
        PeerSet {
            inner: Mutex::new(initial),
            changes: broadcast::channel(NOTIFY_BUFFER).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current peers (name → address).
    pub fn peers(&self) -> BTreeMap<String, String> {
        self.lock().clone()
    }

    /// Make `desired` the announced set and notify subscribers of each difference, in
    /// name order. Returns the number of notifications.
    pub fn replace(&self, desired: BTreeMap<String, String>) -> usize {
        let mut cur = self.lock();
        let mut out = Vec::new();
        for (name, addr) in cur.iter() {
            match desired.get(name) {
                None => out.push(notification(name, addr, ChangeNotificationType::PeerDeleted)),
                Some(a) if a != addr => out.push(notification(name, a, ChangeNotificationType::PeerUpdated)),
                Some(_) => {}
            }
        }
        for (name, addr) in &desired {
            if !cur.contains_key(name) {
                out.push(notification(name, addr, ChangeNotificationType::PeerAdded));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        *cur = desired;
        // Sent under the lock, so a subscriber's snapshot and its feed never overlap or gap.
        for n in &out {
            let _ = self.changes.send(n.clone());
        }
        out.len()
    }

    /// `PEER_ADDED` for every current peer, and the feed of later changes.
    pub fn subscribe(&self) -> (Vec<ChangeNotification>, broadcast::Receiver<ChangeNotification>) {
        let cur = self.lock();
        let rx = self.changes.subscribe();
        let added = cur
            .iter()
            .map(|(n, a)| notification(n, a, ChangeNotificationType::PeerAdded))
            .collect();
        (added, rx)
    }
}

/// One perisco agent pod, as far as peer discovery cares.
#[derive(Debug, Clone, PartialEq)]
struct Agent {
    node: String,
    address: SocketAddr,
    /// RFC 3339 creation time: of two agents on one node, the newer wins (rolling update).
    created: String,
}

/// Where to find the agents: the selector (checked here too, since an API emulator may
/// ignore it) and the hubble port they listen on.
pub struct AgentSelector {
    pub selector: Option<LabelSelector>,
    pub port: u16,
}

/// The watched agent pods, by namespace/name. Pods that cannot serve (not ready,
/// terminating, no node or IP yet) are not kept.
pub struct AgentPods {
    select: AgentSelector,
    pods: HashMap<String, Agent>,
    /// Pods of a relist in progress; they replace `pods` when it completes.
    relisting: Option<HashMap<String, Agent>>,
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn is_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

impl AgentPods {
    pub fn new(select: AgentSelector) -> Self {
        AgentPods {
            select,
            pods: HashMap::new(),
            relisting: None,
        }
    }

    /// The agent a pod is, if it can serve now.
    fn agent(&self, pod: &Pod) -> Option<Agent> {
        if pod.metadata.deletion_timestamp.is_some() || !is_ready(pod) {
            return None;
        }
        if let Some(sel) = &self.select.selector {
            let labels: Vec<String> = pod
                .metadata
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if !sel.matches(&labels) {
                return None;
            }
        }
        let spec = pod.spec.as_ref()?;
        let node = spec.node_name.clone().filter(|n| !n.is_empty())?;
        let status = pod.status.as_ref()?;
        // A hostNetwork pod listens on the node's address (its podIP is the same one).
        let ip = if spec.host_network == Some(true) {
            status.host_ip.as_deref()
        } else {
            status.pod_ip.as_deref()
        };
        let ip: IpAddr = ip?.parse().ok()?;
        Some(Agent {
            node,
            address: SocketAddr::new(ip, self.select.port),
            created: pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        })
    }

    fn target(&mut self) -> &mut HashMap<String, Agent> {
        self.relisting.as_mut().unwrap_or(&mut self.pods)
    }

    /// A pod was listed, added or changed.
    pub fn apply(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        match self.agent(pod) {
            Some(a) => {
                self.target().insert(key, a);
            }
            None => {
                self.target().remove(&key);
            }
        }
    }

    pub fn delete(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        self.target().remove(&key);
    }

    /// A relist starts: what it lists replaces everything known when it completes.
    pub fn relist_started(&mut self) {
        self.relisting = Some(HashMap::new());
    }

    pub fn relist_done(&mut self) {
        if let Some(fresh) = self.relisting.take() {
            self.pods = fresh;
        }
    }

    /// Whether a relist is in progress (its pods are not announced until it completes).
    pub fn relisting(&self) -> bool {
        self.relisting.is_some()
    }

    /// The peers to announce: one per node, the newest ready agent there.
    pub fn peers(&self) -> BTreeMap<String, String> {
        let mut newest: BTreeMap<&str, (&str, &str, SocketAddr)> = BTreeMap::new();
        for (key, a) in &self.pods {
            let cand = (a.created.as_str(), key.as_str(), a.address);
            let slot = newest.entry(&a.node).or_insert(cand);
            if (cand.0, cand.1) > (slot.0, slot.1) {
                *slot = cand;
            }
        }
        newest
            .into_iter()
            .map(|(node, (_, _, addr))| (node.to_owned(), addr.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, node: &str, ip: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "perisco",
                         "labels": {"app.kubernetes.io/name": "perisco"},
                         "creationTimestamp": format!("2026-01-01T00:00:0{}Z", name.len() % 10)},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Running", "podIP": ip, "hostIP": "192.0.2.1",
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    fn agents() -> AgentPods {
        AgentPods::new(AgentSelector {
            selector: Some(LabelSelector::parse("s", "app.kubernetes.io/name=perisco").unwrap()),
            port: 4245,
        })
    }

    fn kinds(ns: &[ChangeNotification]) -> Vec<(String, String, i32)> {
        ns.iter()
            .map(|n| (n.name.clone(), n.address.clone(), n.r#type))
            .collect()
    }

    #[test]
    fn ready_agents_become_peers_by_node() {
        let mut a = agents();
        a.apply(&pod("p1", "node-a", "10.0.0.1", true));
        a.apply(&pod("p2", "node-b", "10.0.0.2", false));
        a.apply(&pod("p3", "node-c", "fd00::3", true));
        let peers = a.peers();
        assert_eq!(peers.get("node-a").map(String::as_str), Some("10.0.0.1:4245"));
        assert_eq!(peers.get("node-c").map(String::as_str), Some("[fd00::3]:4245"));
        assert!(!peers.contains_key("node-b"), "not ready: not a peer");
        a.apply(&pod("p1", "node-a", "10.0.0.1", false));
        assert!(!a.peers().contains_key("node-a"), "became unready: gone");
    }

    #[test]
    fn host_network_uses_the_host_ip_and_foreign_labels_are_ignored() {
        let mut a = agents();
        let mut p = pod("p1", "node-a", "10.0.0.1", true);
        p.spec.as_mut().unwrap().host_network = Some(true);
        a.apply(&p);
        assert_eq!(a.peers()["node-a"], "192.0.2.1:4245");
        let mut other = pod("x", "node-b", "10.0.0.9", true);
        other.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
        a.apply(&other);
        assert!(!a.peers().contains_key("node-b"));
    }

    #[test]
    fn newest_agent_on_a_node_wins_and_relist_replaces() {
        let mut a = agents();
        a.apply(&pod("old", "node-a", "10.0.0.1", true));
        a.apply(&pod("newer", "node-a", "10.0.0.2", true));
        assert_eq!(a.peers()["node-a"], "10.0.0.2:4245");
        a.relist_started();
        a.apply(&pod("p9", "node-z", "10.0.0.9", true));
        assert_eq!(a.peers().len(), 1, "a relist in progress announces nothing new");
        a.relist_done();
        assert_eq!(a.peers().keys().collect::<Vec<_>>(), ["node-z"]);
    }

    #[test]
    fn replace_sends_the_differences_and_subscribers_start_with_the_set() {
        let set = PeerSet::new(BTreeMap::new());
        let (init, mut rx) = set.subscribe();
        assert!(init.is_empty());
        let m = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(set.replace(m(&[("a", "1.1.1.1:1"), ("b", "2.2.2.2:1")])), 2);
        assert_eq!(set.replace(m(&[("a", "1.1.1.1:1"), ("b", "2.2.2.2:1")])), 0);
        assert_eq!(set.replace(m(&[("b", "3.3.3.3:1"), ("c", "4.4.4.4:1")])), 3);
        let mut got = Vec::new();
        while let Ok(n) = rx.try_recv() {
            got.push(n);
        }
        let (added, deleted, updated) = (
            ChangeNotificationType::PeerAdded as i32,
            ChangeNotificationType::PeerDeleted as i32,
            ChangeNotificationType::PeerUpdated as i32,
        );
        assert_eq!(
            kinds(&got),
            [
                ("a".into(), "1.1.1.1:1".into(), added),
                ("b".into(), "2.2.2.2:1".into(), added),
                ("a".into(), "1.1.1.1:1".into(), deleted),
                ("b".into(), "3.3.3.3:1".into(), updated),
                ("c".into(), "4.4.4.4:1".into(), added),
            ]
        );
        let (init, _) = set.subscribe();
        assert_eq!(
            kinds(&init),
            [
                ("b".into(), "3.3.3.3:1".into(), added),
                ("c".into(), "4.4.4.4:1".into(), added)
            ]
        );
    }
}
