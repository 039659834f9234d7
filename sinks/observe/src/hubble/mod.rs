//! `hubble` sink: serves Cilium's Hubble API (`observer.Observer`, `peer.Peer`, gRPC
//! reflection) over the most recent records, so the hubble CLI, hubble-relay, Hubble UI
//! and grpcurl can read perisco's exchanges as L7 flows.
//!
//! ```toml
//! [sinks.hubble]
//! type = "hubble"
//! inputs = ["k8s"]
//! address = "0.0.0.0:4245"
//! max_flows = 4095
//! peers = "kubernetes"      # announce every ready perisco agent pod (default: "local")
//! ```

pub mod convert;
pub mod filter;
pub mod kube_peers;
pub mod peers;
pub mod ring;
pub mod service;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use perisco_engine::component::*;
use perisco_engine::event::DataType;
use perisco_engine::metrics::Counter;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

use crate::document::record_of;
use crate::proto::observer::observer_server::ObserverServer;
use crate::proto::peer::peer_server::PeerServer;
use crate::{ObserveError, bind_with_retry};
use convert::{UuidGen, flow_from_record};
use filter::LabelSelector;
use kube_peers::PeerWatch;
use peers::{AgentPods, AgentSelector, PeerSet};
use perisco_enrich::watch::Connect;
use ring::Ring;
use service::HubbleService;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubbleConfig {
    /// Where the gRPC server listens. The default is the port the hubble CLI dials.
    #[serde(default = "default_address")]
    pub address: String,
    /// Flows kept for GetFlows (Hubble's default is 4095).
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// Flows a `follow` reader may fall behind before it gets a LostEvent instead.
    #[serde(default = "default_follow_buffer")]
    pub follow_buffer: usize,
    /// Node name of flows whose record has none; default: $NODE_NAME, else the hostname.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Address announced through GetNodes and peer.Notify; default: `address`.
    #[serde(default)]
    pub advertise_address: Option<String>,
    /// Which peers peer.Notify announces (and GetNodes lists): this node only, or every
    /// ready perisco agent pod found through the Kubernetes API.
    #[serde(default)]
    pub peers: PeerDiscovery,
    /// Namespace of the perisco agent pods (`peers = "kubernetes"`).
    #[serde(default = "default_peer_namespace")]
    pub peer_namespace: String,
    /// Label selector of the perisco agent pods; empty = every pod of the namespace.
    #[serde(default = "default_peer_selector")]
    pub peer_selector: String,
    /// Port the other agents' hubble servers listen on; default: the port of `address`.
    #[serde(default)]
    pub peer_port: Option<u16>,
    /// Kubeconfig file for peer discovery; without it KUBECONFIG (or ~/.kube/config),
    /// else the in-cluster service account.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; default: the file's current context.
    #[serde(default)]
    pub context: Option<String>,
}

impl Default for HubbleConfig {
    fn default() -> Self {
        HubbleConfig {
            address: default_address(),
            max_flows: default_max_flows(),
            follow_buffer: default_follow_buffer(),
            node_name: None,
            advertise_address: None,
            peers: PeerDiscovery::default(),
            peer_namespace: default_peer_namespace(),
            peer_selector: default_peer_selector(),
            peer_port: None,
            kubeconfig: None,
            context: None,
        }
    }
}

/// How the hubble sink finds its peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PeerDiscovery {
    /// This node only (no cluster membership).
    #[default]
    Local,
    /// Watch the agent pods (namespace + label selector) through the Kubernetes API.
    Kubernetes,
}

// By hand, so a wrong value's error names the key and both choices.
impl<'de> Deserialize<'de> for PeerDiscovery {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "local" => Ok(PeerDiscovery::Local),
            "kubernetes" => Ok(PeerDiscovery::Kubernetes),
            other => Err(serde::de::Error::custom(format!(
                "`peers` must be \"local\" or \"kubernetes\", not {other:?}"
            ))),
        }
    }
}

/// Where config-examples/k8s deploys the agents.
fn default_peer_namespace() -> String {
    "perisco".into()
}

fn default_peer_selector() -> String {
    "app.kubernetes.io/name=perisco".into()
}

fn default_address() -> String {
    "127.0.0.1:4245".into()
}

fn default_max_flows() -> usize {
    4095
}

fn default_follow_buffer() -> usize {
    4096
}

/// Upper bound on `max_flows` and `follow_buffer` (memory: about 1 KiB per flow).
const MAX_RING: usize = 1 << 22;

impl ComponentConfig for HubbleConfig {
    fn type_name(&self) -> &'static str {
        "hubble"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errs = Vec::new();
        if let Err(e) = self.address.parse::<SocketAddr>() {
            errs.push(ValueError::at("address", format!("not an ip:port address: {e}")));
        }
        if self.max_flows == 0 || self.max_flows > MAX_RING {
            errs.push(ValueError::at("max_flows", format!("must be between 1 and {MAX_RING}")));
        }
        if self.follow_buffer == 0 || self.follow_buffer > MAX_RING {
            errs.push(ValueError::at(
                "follow_buffer",
                format!("must be between 1 and {MAX_RING}"),
            ));
        }
        if self.node_name.as_deref() == Some("") {
            errs.push(ValueError::at(
                "node_name",
                "must not be empty (leave it out for the default)",
            ));
        }
        errs.extend(self.validate_peers());
        errs
    }
}

impl HubbleConfig {
    fn validate_peers(&self) -> Vec<ValueError> {
        let mut errs = Vec::new();
        if self.peers == PeerDiscovery::Local {
            let k8s_only = [
                ("peer_namespace", self.peer_namespace != default_peer_namespace()),
                ("peer_selector", self.peer_selector != default_peer_selector()),
                ("peer_port", self.peer_port.is_some()),
                ("kubeconfig", self.kubeconfig.is_some()),
                ("context", self.context.is_some()),
            ];
            for (key, set) in k8s_only {
                if set {
                    errs.push(ValueError::at(key, "only used with peers = \"kubernetes\""));
                }
            }
            return errs;
        }
        if self.peer_namespace.is_empty() {
            errs.push(ValueError::at("peer_namespace", "must not be empty"));
        }
        if !self.peer_selector.trim().is_empty()
            && let Err(e) = LabelSelector::parse("peer_selector", &self.peer_selector)
        {
            errs.push(ValueError::at("peer_selector", e.message().to_owned()));
        }
        if self.peer_port == Some(0) {
            errs.push(ValueError::at("peer_port", "must be between 1 and 65535"));
        }
        if self.kubeconfig.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            errs.push(ValueError::at(
                "kubeconfig",
                "must not be empty (leave it out to use KUBECONFIG or in-cluster)",
            ));
        }
        errs
    }

    /// The watch for `peers = "kubernetes"` (None for "local").
    fn peer_watch(&self, cx: &BuildContext, port: u16, peers: &Arc<PeerSet>) -> Result<Option<PeerWatch>, BoxError> {
        if self.peers == PeerDiscovery::Local {
            return Ok(None);
        }
        let kubeconfig = self.kubeconfig.as_ref().map(|p| cx.resolve_path(p));
        let connect = Connect::from_options(kubeconfig, self.context.clone())?;
        let selector = self.peer_selector.trim();
        let parsed = if selector.is_empty() {
            None
        } else {
            Some(LabelSelector::parse("peer_selector", selector).map_err(|e| e.to_string())?)
        };
        let labels = [("component_id", &*cx.id)];
        Ok(Some(PeerWatch {
            connect,
            namespace: self.peer_namespace.clone(),
            selector: selector.to_owned(),
            agents: AgentPods::new(AgentSelector {
                selector: parsed,
                port: self.peer_port.unwrap_or(port),
            }),
            peers: peers.clone(),
            health: cx.health.clone(),
            errors: cx.registry.counter(
                "perisco_hubble_peer_api_errors_total",
                "Kubernetes API errors met by the hubble sink's peer discovery (each is retried).",
                &labels,
            ),
            known: cx.registry.gauge(
                "perisco_hubble_peers",
                "Peers (ready perisco agents, one per node) announced through peer.Notify.",
                &labels,
            ),
        }))
    }
}

impl SinkConfig for HubbleConfig {
    fn accepts(&self, input: DataType) -> bool {
        input == DataType::Record
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        let address: SocketAddr = self
            .address
            .parse()
            .map_err(|e| ObserveError::Address(self.address.clone(), e))?;
        let node_name = self.node_name.clone().unwrap_or_else(default_node_name);
        let advertise = self.advertise_address.clone().unwrap_or_else(|| self.address.clone());
        // "local": this node, for good. "kubernetes": empty until the first list.
        let initial = match self.peers {
            PeerDiscovery::Local => BTreeMap::from([(node_name.clone(), advertise.clone())]),
            PeerDiscovery::Kubernetes => BTreeMap::new(),
        };
        let peers = Arc::new(PeerSet::new(initial));
        let peer_watch = self.peer_watch(cx, address.port(), &peers)?;
        let labels = [("component_id", &*cx.id)];
        Ok(Box::new(HubbleSink {
            address,
            advertise,
            node_name,
            peers,
            peer_watch,
            ring: Arc::new(Ring::new(self.max_flows, self.follow_buffer)),
            skipped: cx.registry.counter(
                "perisco_hubble_skipped_events_total",
                "Events the hubble sink could not turn into a flow (not a record).",
                &labels,
            ),
        }))
    }
}

/// $NODE_NAME (set from the downward API in the DaemonSet), else the hostname.
fn default_node_name() -> String {
    if let Ok(n) = std::env::var("NODE_NAME")
        && !n.is_empty()
    {
        return n;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "perisco".into())
}

struct HubbleSink {
    address: SocketAddr,
    advertise: String,
    node_name: String,
    peers: Arc<PeerSet>,
    peer_watch: Option<PeerWatch>,
    ring: Arc<Ring>,
    skipped: Counter,
}

impl Sink for HubbleSink {
    fn run(mut self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            let listener = bind_with_retry(self.address).await?;
            let local = listener.local_addr().unwrap_or(self.address);
            let (stop_tx, stop_rx) = watch::channel(false);
            // Aborted when the sink ends (drop of the guard).
            let _peer_watch = self.peer_watch.take().map(|w| AbortOnDrop(tokio::spawn(w.run())));
            let svc = HubbleService {
                ring: self.ring.clone(),
                node_name: self.node_name.as_str().into(),
                advertise: self.advertise.as_str().into(),
                peers: self.peers.clone(),
                started: Instant::now(),
                stopping: stop_rx.clone(),
            };
            let server = serve(svc, listener, stop_rx)?;
            let server = tokio::spawn(server);
            info!(address = %local, "hubble observer API listening");

            let uuids = UuidGen::new();
            let mut seq = 0u64;
            while let Some(batch) = cx.input.recv().await {
                let mut flows = Vec::with_capacity(batch.len());
                for event in &batch {
                    match record_of(event) {
                        Some(r) => {
                            flows.push(flow_from_record(&r, &self.node_name, uuids.uuid(seq)));
                            seq += 1;
                        }
                        None => {
                            self.skipped.inc();
                            cx.metrics.discarded.inc();
                        }
                    }
                }
                let n = flows.len() as u64;
                self.ring.push(flows);
                cx.metrics.sent.add(n);
            }

            let _ = stop_tx.send(true);
            match server.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ObserveError::Serve(local, e.to_string()).into()),
                Err(e) => {
                    warn!(error = %e, "hubble server task failed");
                    Err(ObserveError::Serve(local, e.to_string()).into())
                }
            }
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type ServeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// The gRPC server with both reflection versions (grpcurl 1.8 speaks v1alpha, newer
/// clients v1).
fn serve(
    svc: HubbleService,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) -> Result<ServeFuture, BoxError> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let router = tonic::transport::Server::builder()
        .add_service(ObserverServer::new(svc.clone()))
        .add_service(PeerServer::new(svc))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    // `Server::tcp_nodelay` only applies to listeners tonic binds itself: without it, the
    // last small messages of a stream wait for delayed ACKs on every GetFlows.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn {
            let _ = c.set_nodelay(true);
        }
        conn
    });
    Ok(Box::pin(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop.wait_for(|s| *s).await;
    })))
}
