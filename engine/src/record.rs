//! The exchange record: the JSON contract of ../shared/DESIGN.md, field for field.
//!
//! Optional parts are absent (not empty) when unknown, so dashboards can tell
//! "unknown" from "empty".

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The record's usually short strings (method, url, header names and values, gRPC names).
/// Stored inline up to 24 bytes, so most of them cost no allocation: building, moving and
/// dropping headers was a quarter of the parser's time with `String`.
pub type Text = compact_str::CompactString;

/// Heap bytes a [`Text`] holds (0 when it is stored inline), for memory accounting.
pub fn text_heap_bytes(t: &Text) -> usize {
    if t.is_heap_allocated() { t.capacity() } else { 0 }
}

/// A reason a record is incomplete, e.g. "response_missing", "request_truncated",
/// "hpack_unknown_index".
pub type Incomplete = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Time of the request's first byte (ns since the UNIX epoch), RFC 3339 with ns in JSON.
    #[serde(with = "rfc3339_ns")]
    pub ts: u64,
    /// Process on the capturing side (the server by default); 0 when unknown (pcap).
    pub pid: u32,
    pub ip: IpInfo,
    pub l4: L4,
    pub l7: L7,
    // The Kubernetes parts are shared: `enrich` hands every record of a pod the same
    // `Endpoint` (copying its strings into each record cost more than the rest of the
    // pipeline), and behind a pointer they add nothing to the moves of a record that has
    // none (a `Record` is moved several times per exchange).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Arc<Endpoint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Arc<Endpoint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_service: Option<Arc<ServiceRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_service: Option<Arc<ServiceRef>>,
    /// Process name of `pid`, when known. Shared with the connection's process info (a
    /// reference count, not a string copy per record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<Arc<str>>,
    /// Container id of `pid`, when known (used to enrich hostNetwork pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<Arc<str>>,
    /// Node that captured the exchange, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What the record does not know; absent when complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<Incomplete>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpInfo {
    pub client: IpAddr,
    pub server: IpAddr,
    pub ip_version: IpVersion,
}

impl IpInfo {
    pub fn new(client: IpAddr, server: IpAddr) -> Self {
        let ip_version = if client.is_ipv4() {
            IpVersion::IPv4
        } else {
            IpVersion::IPv6
        };
        IpInfo {
            client,
            server,
            ip_version,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpVersion {
    IPv4,
    IPv6,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L4 {
    #[serde(rename = "TCP")]
    pub tcp: TcpPorts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpPorts {
    pub client_port: u16,
    pub server_port: u16,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L7 {
    /// First response byte minus first request byte; a decimal string, as in the original
    /// perisco output (protobuf JSON int64). Absent when there is no response.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_u64_string")]
    pub latency_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<L7Request>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<L7Response>,
    /// Boxed: only gRPC exchanges have it, and it is as large as the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Box<GrpcInfo>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L7Request {
    pub http: HttpRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L7Response {
    pub http: HttpResponse,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    /// "HTTP/1.0", "HTTP/1.1" or "HTTP/2".
    pub protocol: Cow<'static, str>,
    pub method: Text,
    pub url: Text,
    #[serde(default)]
    pub headers: Vec<Header>,
    /// Body length in bytes as seen on the wire (after de-chunking), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
    /// Captured body (only with `max_body_bytes` > 0), lossy UTF-8. A boxed `str`: 8 bytes
    /// less than a `String` in every message and record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    pub protocol: Cow<'static, str>,
    pub code: u16,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub key: Text,
    pub value: Text,
}

impl Header {
    pub fn new(key: impl Into<Text>, value: impl Into<Text>) -> Self {
        Header {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// gRPC details: `"l7":{"grpc":{"service":"pkg.Svc","method":"Get","status":0,"message":""}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcInfo {
    pub service: Text,
    pub method: Text,
    /// grpc-status from trailers (or a trailers-only response); absent when not seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Length-prefixed messages seen in each direction and their total payload bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_messages: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_messages: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u64>,
}

/// Kubernetes identity of one side; every field absent when unknown.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// "key=value" strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    /// "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod".
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceRef {
    pub name: String,
    pub namespace: String,
}

/// Current wall-clock time in ns since the UNIX epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `ns` since the epoch as RFC 3339 with nanoseconds: "2023-04-11T03:43:29.619285359Z".
pub fn format_ts(ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

mod rfc3339_ns {
    use super::*;

    pub fn serialize<S: Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(*ns)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        let t = humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)?;
        let d = t.duration_since(UNIX_EPOCH).map_err(serde::de::Error::custom)?;
        Ok(d.as_nanos() as u64)
    }
}

mod opt_u64_string {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Num<'a> {
            N(u64),
            #[serde(borrow)]
            S(Cow<'a, str>),
        }
        match Option::<Num<'_>>::deserialize(d)? {
            None => Ok(None),
            Some(Num::N(n)) => Ok(Some(n)),
            Some(Num::S(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            ts: 1_681_184_609_619_285_359,
            pid: 87111,
            ip: IpInfo::new("10.244.1.186".parse().unwrap(), "10.244.1.42".parse().unwrap()),
            l4: L4 {
                tcp: TcpPorts {
                    client_port: 38674,
                    server_port: 7002,
                },
            },
            l7: L7 {
                latency_ns: Some(8_661_819),
                request: Some(L7Request {
                    http: HttpRequest {
                        protocol: "HTTP/1.1".into(),
                        method: "GET".into(),
                        url: "/books.json?order=lower%28title%29".into(),
                        headers: vec![Header::new("Accept", "application/json")],
                        ..Default::default()
                    },
                }),
                response: Some(L7Response {
                    http: HttpResponse {
                        protocol: "HTTP/1.1".into(),
                        code: 200,
                        headers: vec![Header::new("Server", "WEBrick")],
                        ..Default::default()
                    },
                }),
                grpc: None,
            },
            client: Some(Arc::new(Endpoint {
                namespace: Some("default".into()),
                labels: vec!["app=webapp".into()],
                pod_name: Some("webapp-5f459f867b-2zbx8".into()),
                workload: None,
            })),
            server: None,
            client_service: Some(Arc::new(ServiceRef {
                name: "webapp".into(),
                namespace: "default".into(),
            })),
            server_service: None,
            comm: None,
            container_id: None,
            node: None,
            incomplete: vec![],
        }
    }

    #[test]
    fn serialises_to_the_contract_shape() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            json,
            r#"{"ts":"2023-04-11T03:43:29.619285359Z","pid":87111,"ip":{"client":"10.244.1.186","server":"10.244.1.42","ipVersion":"IPv4"},"l4":{"TCP":{"clientPort":38674,"serverPort":7002}},"l7":{"latencyNs":"8661819","request":{"http":{"protocol":"HTTP/1.1","method":"GET","url":"/books.json?order=lower%28title%29","headers":[{"key":"Accept","value":"application/json"}]}},"response":{"http":{"protocol":"HTTP/1.1","code":200,"headers":[{"key":"Server","value":"WEBrick"}]}}},"client":{"namespace":"default","labels":["app=webapp"],"podName":"webapp-5f459f867b-2zbx8"},"clientService":{"name":"webapp","namespace":"default"}}"#
        );
    }

    #[test]
    fn round_trips() {
        let r = sample();
        let back: Record = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn moved_values_stay_small() {
        // A record and a message are moved several times per exchange (every move is a
        // copy); rarely present parts are boxed to keep these small.
        let sizes = [
            ("Record", size_of::<Record>()),
            ("L7", size_of::<L7>()),
            ("L7Message", size_of::<crate::event::L7Message>()),
        ];
        eprintln!("{sizes:?}");
        assert!(sizes[0].1 <= 448, "{sizes:?}");
        // Boxed by `parse`, once per message: kept small (perisco-alloc explains why the
        // allocator no longer punishes sizes just under a size class).
        assert!(sizes[2].1 <= 184, "{sizes:?}");
    }

    #[test]
    fn latency_accepts_numbers_too() {
        let l7: L7 = serde_json::from_str(r#"{"latencyNs":12}"#).unwrap();
        assert_eq!(l7.latency_ns, Some(12));
    }
}
