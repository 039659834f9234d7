//! `peers = "kubernetes"`: list + watch the perisco agent pods and keep the announced
//! [`PeerSet`] equal to the ready ones.
//!
//! The API client is the enrich transform's ([`Connect`]): a kubeconfig file, else
//! KUBECONFIG / ~/.kube/config, else the in-cluster service account. Any watch
//! error drops the watch and relists after a jittered backoff; the peers known so far stay
//! announced meanwhile (an API outage says nothing about the agents), and the relist's
//! result replaces them.

use std::pin::pin;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use perisco_engine::health::HealthHandle;
use perisco_engine::metrics::{Counter, Gauge};
use perisco_enrich::watch::{Backoff, Connect};
use tokio_stream::StreamExt;
use tracing::{debug, info, warn};

use crate::hubble::peers::{AgentPods, PeerSet};

/// What the watch task needs.
pub struct PeerWatch {
    pub connect: Connect,
    pub namespace: String,
    /// Sent to the API server as `labelSelector` (and checked again by [`AgentPods`]).
    pub selector: String,
    pub agents: AgentPods,
    pub peers: Arc<PeerSet>,
    pub health: HealthHandle,
    pub errors: Counter,
    pub known: Gauge,
}

impl PeerWatch {
    fn failed(&self, degraded: &mut bool, what: &str) {
        self.errors.inc();
        warn!(error = %what, "hubble peer discovery: Kubernetes API error (retrying)");
        // The flows are still served: degraded, not failed.
        self.health.degraded(format!("peer discovery: {what}"));
        *degraded = true;
    }

    /// Runs until aborted (the sink stops).
    pub async fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut degraded = false;
        let client = loop {
            match self.connect.client().await {
                Ok(c) => break c,
                Err(e) => {
                    self.failed(&mut degraded, &format!("no Kubernetes API client: {e}"));
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        };
        let api: Api<Pod> = Api::namespaced(client, &self.namespace);
        let mut config = watcher::Config::default().any_semantic();
        if !self.selector.is_empty() {
            config = config.labels(&self.selector);
        }
        loop {
            let mut stream = pin!(watcher::watcher(api.clone(), config.clone()));
            while let Some(item) = stream.next().await {
                let event = match item {
                    Ok(ev) => ev,
                    Err(e) => {
                        self.failed(&mut degraded, &format!("watch pods in {}: {e}", self.namespace));
                        break;
                    }
                };
                match &event {
                    Event::Init => self.agents.relist_started(),
                    Event::InitApply(p) | Event::Apply(p) => self.agents.apply(p),
                    Event::Delete(p) => self.agents.delete(p),
                    Event::InitDone => {
                        self.agents.relist_done();
                        backoff.reset();
                        if std::mem::take(&mut degraded) {
                            self.health.running();
                        }
                    }
                }
                if !self.agents.relisting() {
                    let desired = self.agents.peers();
                    self.known.set(desired.len() as i64);
                    let n = self.peers.replace(desired);
                    if n > 0 {
                        info!(changes = n, peers = self.known.get(), "hubble peers changed");
                    }
                }
            }
            debug!("hubble peer watch ended; relisting after a backoff");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}
