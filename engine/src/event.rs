//! The events that travel between components.
//!
//! Three typed stages, one enum to carry them over the channels:
//! socket bytes ([`SocketData`]) → parsed L7 messages ([`L7Message`]) → exchange
//! records ([`Record`]). A VRL `remap` that changes a few fields emits the typed record
//! with a [`Patch`] ([`Event::Patched`]); one that reshapes the whole event emits
//! [`Event::Document`] (arbitrary JSON). Every sink accepts all three record forms.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use crate::patch::{Change, Patch, PatchedRecord};
pub use crate::record::{
    Endpoint, GrpcInfo, Header, HttpRequest, HttpResponse, Incomplete, IpInfo, L4, L7, Record, ServiceRef, TcpPorts,
    Text, Workload,
};

/// What a component consumes or produces; checked when the topology is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Socket,
    Message,
    /// Exchange records, typed or reshaped by remap.
    Record,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Socket => "socket data",
            DataType::Message => "L7 messages",
            DataType::Record => "records",
        }
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One unit moved between components. Channels carry `Vec<Event>` batches.
#[derive(Debug, Clone)]
pub enum Event {
    Socket(SocketData),
    Message(Box<L7Message>),
    Record(Box<Record>),
    /// A record with the changes a VRL program made to it, applied when it is written.
    Patched(Box<PatchedRecord>),
    /// A record reshaped by a VRL program: any JSON object.
    Document(Box<serde_json::Map<String, serde_json::Value>>),
}

impl Event {
    pub fn data_type(&self) -> DataType {
        match self {
            Event::Socket(_) => DataType::Socket,
            Event::Message(_) => DataType::Message,
            Event::Record(_) | Event::Patched(_) | Event::Document(_) => DataType::Record,
        }
    }

    /// Serialise a record-like event as one JSON line (no trailing newline) into `out`.
    /// Typed and patched records go through the hand-written writer in [`crate::json`]
    /// (the same bytes as serde_json, without its per-field cost).
    /// Socket data and messages have no JSON form in the contract; they are written as
    /// a debug summary object so a `file` sink on them is still useful when debugging.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Event::Record(r) => {
                crate::json::write_record(out, r);
                Ok(())
            }
            Event::Patched(p) => crate::json::write_patched(out, p),
            Event::Document(d) => serde_json::to_writer(out, d),
            Event::Socket(s) => serde_json::to_writer(out, &s.summary()),
            Event::Message(m) => serde_json::to_writer(out, m),
        }
    }

    /// The record as a JSON value (typed records are converted).
    pub fn to_json_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Event::Record(r) => serde_json::to_value(r),
            Event::Patched(p) => p.to_json_map().map(serde_json::Value::Object),
            Event::Document(d) => Ok(serde_json::Value::Object((**d).clone())),
            Event::Socket(s) => serde_json::to_value(s.summary()),
            Event::Message(m) => serde_json::to_value(m),
        }
    }
}

/// Which side of the connection the capturing socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An accepted socket (or the destination of the SYN in a capture).
    Server,
    /// A connected socket (or the source of the SYN).
    Client,
    /// Not known (a capture that starts mid-connection): the parser decides from the bytes.
    Unknown,
}

impl Role {
    /// The direction (relative to the capturing socket) of the client's bytes, when known.
    pub fn client_direction(self) -> Option<Direction> {
        match self {
            Role::Server => Some(Direction::Ingress),
            Role::Client => Some(Direction::Egress),
            Role::Unknown => None,
        }
    }
}

/// Direction of bytes relative to the local socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Written by the local socket (send/write).
    Egress,
    /// Read by the local socket (recv/read).
    Ingress,
}

impl Direction {
    pub fn reverse(self) -> Direction {
        match self {
            Direction::Egress => Direction::Ingress,
            Direction::Ingress => Direction::Egress,
        }
    }
}

/// What happened on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketEventKind {
    /// The connection was accepted / connected (or a SYN was seen).
    Open,
    /// Payload bytes in `data`.
    Data,
    /// The connection was closed (close(2), FIN/RST). Parser state can be freed.
    Close,
    /// Bytes were lost in this direction (ring full, capture gap): `len` bytes when known,
    /// 0 when unknown. Parsers resynchronise or give up on the connection.
    Gap,
}

/// Process that owns the local socket. Shared by every event of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Process (thread group) id; 0 when unknown (pcap).
    pub pid: u32,
    /// Process name (comm), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<Arc<str>>,
    /// Container id from /proc/PID/cgroup, when the process is in a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<Arc<str>>,
}

/// Bytes seen on one TCP connection in one direction, or a lifecycle change of it.
/// The eBPF source and the pcap source emit exactly this.
#[derive(Debug, Clone)]
pub struct SocketData {
    /// Unique per connection within one source run; stable for the connection's life.
    pub conn_id: u64,
    pub kind: SocketEventKind,
    /// Wall-clock time of the syscall / packet, ns since the UNIX epoch.
    pub ts_ns: u64,
    pub process: Arc<ProcessInfo>,
    /// Address of the capturing socket.
    pub local: SocketAddr,
    /// Address of the other end.
    pub peer: SocketAddr,
    pub role: Role,
    pub direction: Direction,
    /// Captured payload (possibly shorter than `len`).
    pub data: Bytes,
    /// True length of the message written/read (>= data.len()); for `Gap`, bytes lost.
    pub len: u32,
}

impl SocketData {
    /// True when the captured payload is shorter than what the process sent/received.
    pub fn truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.len)
    }

    /// (client, server) addresses as far as the role tells; `None` when unknown.
    pub fn client_server(&self) -> Option<(SocketAddr, SocketAddr)> {
        match self.role {
            Role::Server => Some((self.peer, self.local)),
            Role::Client => Some((self.local, self.peer)),
            Role::Unknown => None,
        }
    }

    fn summary(&self) -> SocketSummary {
        SocketSummary {
            conn_id: self.conn_id,
            kind: self.kind,
            ts_ns: self.ts_ns,
            pid: self.process.pid,
            local: self.local,
            peer: self.peer,
            role: self.role,
            direction: self.direction,
            len: self.len,
            captured: self.data.len(),
        }
    }
}

#[derive(Serialize)]
struct SocketSummary {
    conn_id: u64,
    kind: SocketEventKind,
    ts_ns: u64,
    pid: u32,
    local: SocketAddr,
    peer: SocketAddr,
    role: Role,
    direction: Direction,
    len: u32,
    captured: usize,
}

/// Identity of a connection once the parser knows who is client and who is server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    pub conn_id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub process: Arc<ProcessInfo>,
}

/// What a parsed L7 message is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum L7Body {
    Request(HttpRequest),
    Response(HttpResponse),
    /// The stream was reset before any response head (HTTP/2: a client's cancel, a refused
    /// stream): the request on it gets no response. `match` pairs it like a response and
    /// emits the request's record without one, marked by the message's `incomplete`.
    NoResponse,
    /// The connection ended: unanswered requests on it can be flushed now.
    Closed,
}

/// One request or response parsed from a connection, produced by `parse`, paired by `match`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L7Message {
    pub conn: Arc<ConnInfo>,
    /// Time of the first byte of the message, ns since the UNIX epoch.
    pub ts_ns: u64,
    /// HTTP/2 stream id; `None` on HTTP/1 (paired by order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<u32>,
    pub body: L7Body,
    /// gRPC details known from this message (service/method on requests, status on responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Box<GrpcInfo>>,
    /// What this message does not know (e.g. "request_truncated", "hpack_unknown_index").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<Incomplete>,
}
