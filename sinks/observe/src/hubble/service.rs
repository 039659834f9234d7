//! The gRPC services: `observer.Observer` (GetFlows, GetNodes, ServerStatus) and
//! `peer.Peer` (Notify) over the ring.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::hubble::convert::{timestamp, timestamp_ns};
use crate::hubble::filter::Filters;
use crate::hubble::peers::PeerSet;
use crate::hubble::ring::{Entry, Ring};
use crate::proto::flow::{Flow, LostEvent, LostEventSource};
use crate::proto::observer::get_flows_response::ResponseTypes;
use crate::proto::observer::observer_server::Observer;
use crate::proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNodesRequest, GetNodesResponse, Node, ServerStatusRequest,
    ServerStatusResponse,
};
use crate::proto::peer::peer_server::Peer;
use crate::proto::peer::{ChangeNotification, NotifyRequest};
use crate::proto::relay::NodeState;

pub const VERSION: &str = concat!("perisco-v", env!("CARGO_PKG_VERSION"));

#[derive(Clone)]
pub struct HubbleService {
    pub ring: Arc<Ring>,
    pub node_name: Arc<str>,
    /// Address other Hubble components should dial (GetNodes, peer.Notify).
    pub advertise: Arc<str>,
    /// What peer.Notify announces and GetNodes lists.
    pub peers: Arc<PeerSet>,
    pub started: Instant,
    /// Set when the sink stops: open streams end so the server can shut down.
    pub stopping: watch::Receiver<bool>,
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<GetFlowsResponse, Status>> + Send>>;
type PeerStream = Pin<Box<dyn Stream<Item = Result<ChangeNotification, Status>> + Send>>;

/// What a GetFlows request selects, once validated.
struct Selection {
    filters: Filters,
    number: u64,
    first: bool,
    follow: bool,
    since: Option<u64>,
    until: Option<u64>,
}

impl Selection {
    fn new(req: &GetFlowsRequest) -> Result<Self, Status> {
        if req.first && req.follow {
            return Err(Status::invalid_argument("`first` cannot be combined with `follow`"));
        }
        let filters =
            Filters::new(&req.whitelist, &req.blacklist).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Selection {
            filters,
            number: req.number,
            first: req.first,
            follow: req.follow,
            since: req.since.as_ref().map(timestamp_ns),
            until: req.until.as_ref().map(timestamp_ns),
        })
    }

    fn in_window(&self, f: &Flow) -> bool {
        let t = f.time.as_ref().map_or(0, timestamp_ns);
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }

    fn keep(&self, f: &Flow) -> bool {
        self.in_window(f) && self.filters.keep(f)
    }

    /// The stored flows to send first: all matching, the first `number` or the last `number`.
    fn initial<'a>(&self, snapshot: &'a [Arc<Entry>]) -> Vec<&'a Arc<Entry>> {
        let matching = snapshot.iter().filter(|e| self.keep(&e.flow));
        match (self.number, self.first) {
            (0, _) => matching.collect(),
            (n, true) => matching.take(n as usize).collect(),
            (n, false) => {
                let mut last: Vec<_> = snapshot
                    .iter()
                    .rev()
                    .filter(|e| self.keep(&e.flow))
                    .take(n as usize)
                    .collect();
                last.reverse();
                last
            }
        }
    }
}

impl HubbleService {
    fn response(&self, r: ResponseTypes, node_name: String, time: Option<prost_types::Timestamp>) -> GetFlowsResponse {
        let time = time.or_else(|| Some(timestamp(perisco_engine::record::now_ns())));
        let node_name = if node_name.is_empty() {
            self.node_name.to_string()
        } else {
            node_name
        };
        GetFlowsResponse {
            response_types: Some(r),
            node_name,
            time,
        }
    }

    fn flow_response(&self, f: &Flow) -> GetFlowsResponse {
        self.response(ResponseTypes::Flow(f.clone()), f.node_name.clone(), f.time)
    }

    fn lost_response(&self, n: u64) -> GetFlowsResponse {
        let lost = LostEvent {
            source: LostEventSource::HubbleRingBuffer as i32,
            num_events_lost: n,
            cpu: None,
        };
        self.response(ResponseTypes::LostEvents(lost), String::new(), None)
    }

    async fn stream_flows(self, sel: Selection, tx: mpsc::Sender<Result<GetFlowsResponse, Status>>) {
        let (mut live, snapshot) = if sel.follow {
            let (rx, snap) = self.ring.subscribe_and_snapshot();
            (Some(rx), snap)
        } else {
            (None, self.ring.snapshot())
        };
        let mut last_seq = snapshot.last().map(|e| e.seq);
        for e in sel.initial(&snapshot) {
            if tx.send(Ok(self.flow_response(&e.flow))).await.is_err() {
                return;
            }
        }
        let Some(live) = live.as_mut() else { return };
        let mut stopping = self.stopping.clone();
        let mut draining = false;
        loop {
            let next = if draining {
                // The sink stopped: hand over what was already broadcast, then end.
                match live.try_recv() {
                    Ok(e) => Ok(e),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => Err(broadcast::error::RecvError::Lagged(n)),
                    Err(_) => return,
                }
            } else {
                tokio::select! {
                    biased;
                    r = live.recv() => r,
                    _ = stopping.wait_for(|s| *s) => {
                        draining = true;
                        continue;
                    }
                    _ = tx.closed() => return,
                }
            };
            let msg = match next {
                Ok(e) => {
                    if last_seq.is_some_and(|s| e.seq <= s) {
                        continue;
                    }
                    last_seq = Some(e.seq);
                    if !sel.keep(&e.flow) {
                        if sel
                            .until
                            .is_some_and(|u| e.flow.time.as_ref().map_or(0, timestamp_ns) > u)
                        {
                            return;
                        }
                        continue;
                    }
                    self.flow_response(&e.flow)
                }
                Err(broadcast::error::RecvError::Lagged(n)) => self.lost_response(n),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(Ok(msg)).await.is_err() {
                return;
            }
        }
    }

    /// This node; its address as announced to peers when discovery knows it.
    fn node(&self, peers: &std::collections::BTreeMap<String, String>) -> Node {
        let address = peers
            .get(&*self.node_name)
            .map_or_else(|| self.advertise.to_string(), Clone::clone);
        Node {
            name: self.node_name.to_string(),
            version: VERSION.to_owned(),
            address,
            state: NodeState::NodeConnected as i32,
            tls: None,
            uptime_ns: self.started.elapsed().as_nanos() as u64,
            num_flows: self.ring.len() as u64,
            max_flows: self.ring.capacity() as u64,
            seen_flows: self.ring.seen(),
        }
    }
}

#[tonic::async_trait]
impl Observer for HubbleService {
    type GetFlowsStream = FlowStream;

    async fn get_flows(&self, request: Request<GetFlowsRequest>) -> Result<Response<FlowStream>, Status> {
        let sel = Selection::new(request.get_ref())?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(self.clone().stream_flows(sel, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// This node (connected, with its counters), then the other known peers: this agent
    /// does not connect to them (hubble-relay does), so their state is unknown here.
    async fn get_nodes(&self, _request: Request<GetNodesRequest>) -> Result<Response<GetNodesResponse>, Status> {
        let peers = self.peers.peers();
        let mut nodes = vec![self.node(&peers)];
        nodes.extend(
            peers
                .into_iter()
                .filter(|(name, _)| **name != *self.node_name)
                .map(|(name, address)| Node {
                    name,
                    address,
                    state: NodeState::UnknownNodeState as i32,
                    ..Node::default()
                }),
        );
        Ok(Response::new(GetNodesResponse { nodes }))
    }

    async fn server_status(
        &self,
        _request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let n = self.node(&Default::default());
        Ok(Response::new(ServerStatusResponse {
            num_flows: n.num_flows,
            max_flows: n.max_flows,
            seen_flows: n.seen_flows,
            uptime_ns: n.uptime_ns,
            num_connected_nodes: Some(1),
            num_unavailable_nodes: Some(0),
            unavailable_nodes: Vec::new(),
            version: VERSION.to_owned(),
        }))
    }
}

#[tonic::async_trait]
impl Peer for HubbleService {
    type NotifyStream = PeerStream;

    /// `PEER_ADDED` for every known peer, then each change. The stream stays open until
    /// the sink stops (hubble-relay treats a closed stream as a reason to reconnect); a
    /// subscriber too slow to keep up gets `ABORTED` and resynchronises by reconnecting.
    async fn notify(&self, _request: Request<NotifyRequest>) -> Result<Response<PeerStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let (known, mut changes) = self.peers.subscribe();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            for n in known {
                if tx.send(Ok(n)).await.is_err() {
                    return;
                }
            }
            loop {
                let msg = tokio::select! {
                    r = changes.recv() => match r {
                        Ok(n) => Ok(n),
                        Err(broadcast::error::RecvError::Lagged(n)) => Err(Status::aborted(format!(
                            "{n} peer changes missed: reconnect to get the current peers"
                        ))),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = stopping.wait_for(|s| *s) => return,
                    _ = tx.closed() => return,
                };
                let end = msg.is_err();
                if tx.send(msg).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
