//! A perisco record as a Hubble L7 flow.
//!
//! One exchange becomes one flow seen from the server's side: source = client,
//! destination = server, traffic direction INGRESS, `is_reply` false. It is a RESPONSE
//! flow (code, latency) when the response was seen, a REQUEST flow otherwise.
//! What the record does not know (`incomplete`) is listed in the flow's summary.

use std::fmt::Write as _;
use std::net::IpAddr;

use perisco_engine::record::{Endpoint, Record, ServiceRef};

use crate::proto::flow;

/// Cilium's monitor message type of L7 access log records (`MessageTypeAccessLog`), which
/// Hubble clients use to recognise L7 flows.
pub const MESSAGE_TYPE_ACCESS_LOG: i32 = 129;

pub fn timestamp(ns: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

/// Nanoseconds since the epoch of a protobuf timestamp (negative times clamp to 0).
pub fn timestamp_ns(t: &prost_types::Timestamp) -> u64 {
    let s = u64::try_from(t.seconds).unwrap_or(0);
    s.saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.nanos).unwrap_or(0))
}

pub fn flow_from_record(r: &Record, node_name: &str, uuid: String) -> flow::Flow {
    let request = r.l7.request.as_ref().map(|q| &q.http);
    let response = r.l7.response.as_ref().map(|s| &s.http);
    let mut headers: Vec<flow::HttpHeader> = Vec::new();
    for h in request
        .iter()
        .flat_map(|q| &q.headers)
        .chain(response.iter().flat_map(|s| &s.headers))
    {
        headers.push(flow::HttpHeader {
            key: h.key.to_string(),
            value: h.value.to_string(),
        });
    }
    let protocol = request
        .map(|q| &q.protocol)
        .or(response.map(|s| &s.protocol))
        .map(|p| p.to_string());
    let http = flow::Http {
        code: response.map_or(0, |s| u32::from(s.code)),
        method: request.map(|q| q.method.to_string()).unwrap_or_default(),
        url: request.map(|q| q.url.to_string()).unwrap_or_default(),
        protocol: protocol.unwrap_or_default(),
        headers,
    };
    let l7_type = if response.is_some() {
        flow::L7FlowType::Response
    } else {
        flow::L7FlowType::Request
    };
    let summary = summary(r, &http);
    flow::Flow {
        time: Some(timestamp(r.ts)),
        uuid,
        verdict: flow::Verdict::Forwarded as i32,
        ip: Some(flow::Ip {
            source: r.ip.client.to_string(),
            destination: r.ip.server.to_string(),
            ip_version: ip_version(r.ip.client) as i32,
            encrypted: false,
        }),
        l4: Some(flow::Layer4 {
            protocol: Some(flow::layer4::Protocol::Tcp(flow::Tcp {
                source_port: u32::from(r.l4.tcp.client_port),
                destination_port: u32::from(r.l4.tcp.server_port),
                flags: None,
            })),
        }),
        source: r.client.as_deref().map(endpoint),
        destination: r.server.as_deref().map(endpoint),
        r#type: flow::FlowType::L7 as i32,
        node_name: r.node.clone().unwrap_or_else(|| node_name.to_owned()),
        source_names: Vec::new(),
        destination_names: Vec::new(),
        l7: Some(flow::Layer7 {
            r#type: l7_type as i32,
            latency_ns: r.l7.latency_ns.unwrap_or(0),
            record: Some(flow::layer7::Record::Http(http)),
        }),
        event_type: Some(flow::CiliumEventType {
            r#type: MESSAGE_TYPE_ACCESS_LOG,
            sub_type: 0,
        }),
        source_service: r.client_service.as_deref().map(service),
        destination_service: r.server_service.as_deref().map(service),
        traffic_direction: flow::TrafficDirection::Ingress as i32,
        is_reply: Some(false),
        summary,
    }
}

fn ip_version(ip: IpAddr) -> flow::IpVersion {
    if ip.is_ipv4() {
        flow::IpVersion::IPv4
    } else {
        flow::IpVersion::IPv6
    }
}

fn endpoint(e: &Endpoint) -> flow::Endpoint {
    flow::Endpoint {
        id: 0,
        identity: 0,
        namespace: e.namespace.clone().unwrap_or_default(),
        labels: e.labels.clone(),
        pod_name: e.pod_name.clone().unwrap_or_default(),
        workloads: e
            .workload
            .iter()
            .map(|w| flow::Workload {
                name: w.name.clone(),
                kind: w.kind.clone(),
            })
            .collect(),
    }
}

fn service(s: &ServiceRef) -> flow::Service {
    flow::Service {
        name: s.name.clone(),
        namespace: s.namespace.clone(),
    }
}

/// "HTTP/1.1 GET /path => 200 (12.3ms)", plus gRPC status and what is incomplete.
fn summary(r: &Record, http: &flow::Http) -> String {
    let mut s = format!("{} {} {}", http.protocol, http.method, http.url);
    if http.code != 0 {
        let _ = write!(s, " => {}", http.code);
    }
    if let Some(ns) = r.l7.latency_ns {
        let _ = write!(s, " ({:.3}ms)", ns as f64 / 1e6);
    }
    if let Some(g) = &r.l7.grpc
        && let Some(status) = g.status
    {
        let _ = write!(s, " grpc-status {status}");
    }
    if !r.incomplete.is_empty() {
        let _ = write!(s, " incomplete: {}", r.incomplete.join(","));
    }
    s
}

/// Version-4-shaped UUIDs from a per-process seed and a sequence number (no RNG needed:
/// they only have to be unique, and splitmix64 spreads the bits).
pub struct UuidGen {
    seed: u64,
}

impl UuidGen {
    pub fn new() -> Self {
        let t = perisco_engine::record::now_ns();
        UuidGen {
            seed: splitmix(t ^ u64::from(std::process::id()).rotate_left(32)),
        }
    }

    pub fn uuid(&self, seq: u64) -> String {
        let hi = splitmix(self.seed ^ seq);
        let lo = splitmix(hi ^ seq.rotate_left(17));
        let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }
}

impl Default for UuidGen {
    fn default() -> Self {
        Self::new()
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
