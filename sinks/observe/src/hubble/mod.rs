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
//! ```

pub mod convert;
pub mod filter;
pub mod ring;
pub mod service;

use std::net::SocketAddr;
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
        errs
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
        let labels = [("component_id", &*cx.id)];
        Ok(Box::new(HubbleSink {
            address,
            advertise: self.advertise_address.clone().unwrap_or_else(|| self.address.clone()),
            node_name,
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
    ring: Arc<Ring>,
    skipped: Counter,
}

impl Sink for HubbleSink {
    fn run(self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            let listener = bind_with_retry(self.address).await?;
            let local = listener.local_addr().unwrap_or(self.address);
            let (stop_tx, stop_rx) = watch::channel(false);
            let svc = HubbleService {
                ring: self.ring.clone(),
                node_name: self.node_name.as_str().into(),
                advertise: self.advertise.as_str().into(),
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
