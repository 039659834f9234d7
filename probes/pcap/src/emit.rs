//! Builds the socket-data events: coalesces in-order bytes of one direction, applies
//! `max_capture_bytes` as the eBPF probe would ([`crate::walk`]), and collects events for
//! the next batch.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use perisco_engine::FastMap;
use perisco_engine::event::{Direction, Event, ProcessInfo, Role, SocketData, SocketEventKind};

use crate::walk::ConnWalk;

/// Largest event built from consecutive segments: about what one read() returns.
pub const MAX_COALESCE: usize = 64 * 1024;

/// Who a connection's events are about; copied into every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnMeta {
    pub conn_id: u64,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub role: Role,
}

struct OpenData {
    meta: ConnMeta,
    direction: Direction,
    ts_ns: u64,
    buf: Vec<u8>,
}

pub struct Emitter {
    events: Vec<Event>,
    open: Option<OpenData>,
    process: Arc<ProcessInfo>,
    max_capture_bytes: Option<usize>,
    /// What the live probe would keep of each connection's transfers (with
    /// `max_capture_bytes` only).
    walks: FastMap<u64, ConnWalk>,
    pub walk_stats: WalkStats,
}

/// The HTTP/2 frame walk's counters (the eBPF source's `perisco_ebpf_h2_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkStats {
    pub walked_connections: u64,
    pub walks_lost: u64,
}

impl Emitter {
    pub fn new(max_capture_bytes: Option<u32>) -> Self {
        Emitter {
            events: Vec::new(),
            open: None,
            process: Arc::new(ProcessInfo::default()),
            max_capture_bytes: max_capture_bytes.map(|m| m as usize),
            walks: FastMap::default(),
            walk_stats: WalkStats::default(),
        }
    }

    /// In-order payload bytes; appended to the previous event when that one is data of
    /// the same connection and direction (no other event in between).
    pub fn data(&mut self, meta: &ConnMeta, direction: Direction, ts_ns: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(open) = &mut self.open
            && open.meta.conn_id == meta.conn_id
            && open.direction == direction
            && open.buf.len() + bytes.len() <= MAX_COALESCE
        {
            open.buf.extend_from_slice(bytes);
            return;
        }
        self.close_open();
        self.open = Some(OpenData {
            meta: *meta,
            direction,
            ts_ns,
            buf: bytes.to_vec(),
        });
    }

    /// A lifecycle or gap event (`len`: lost bytes for a gap, 0 otherwise).
    pub fn event(&mut self, meta: &ConnMeta, kind: SocketEventKind, direction: Direction, ts_ns: u64, len: u64) {
        self.close_open();
        match kind {
            SocketEventKind::Gap => {
                if let Some(w) = self.walks.get_mut(&meta.conn_id) {
                    let lost = w.lost;
                    w.gap(from_client(meta.role, direction));
                    self.walk_stats.walks_lost += w.lost - lost;
                }
            }
            SocketEventKind::Close => {
                self.walks.remove(&meta.conn_id);
            }
            SocketEventKind::Open | SocketEventKind::Data => {}
        }
        self.events
            .push(self.socket_event(meta, kind, direction, ts_ns, Bytes::new(), len));
    }

    /// Events ready to send (the open data event counts as one).
    pub fn pending(&self) -> usize {
        self.events.len() + usize::from(self.open.is_some())
    }

    pub fn take(&mut self) -> Vec<Event> {
        self.close_open();
        std::mem::take(&mut self.events)
    }

    fn close_open(&mut self) {
        let Some(mut open) = self.open.take() else { return };
        let total = open.buf.len();
        let data = Bytes::from(std::mem::take(&mut open.buf));
        let Some(max) = self.max_capture_bytes else {
            let ev = self.data_event(&open, data, total);
            self.events.push(ev);
            return;
        };
        let w = self.walks.entry(open.meta.conn_id).or_default();
        let (walked, lost) = (w.walked, w.lost);
        let kept = w.capture(&data, from_client(open.meta.role, open.direction), max);
        self.walk_stats.walked_connections += w.walked - walked;
        self.walk_stats.walks_lost += w.lost - lost;
        // As the eBPF source hands on a transfer with holes: each kept run with the length
        // up to the next one (the bytes between are known-length skips), an empty event
        // first when the transfer begins with a skip.
        let first = kept.first().map_or(total, |r| r.start);
        if first > 0 {
            let ev = self.data_event(&open, Bytes::new(), first);
            self.events.push(ev);
        }
        for (k, r) in kept.iter().enumerate() {
            let end = kept.get(k + 1).map_or(total, |n| n.start);
            let ev = self.data_event(&open, data.slice(r.clone()), end - r.start);
            self.events.push(ev);
        }
    }

    fn data_event(&self, open: &OpenData, data: Bytes, len: usize) -> Event {
        self.socket_event(
            &open.meta,
            SocketEventKind::Data,
            open.direction,
            open.ts_ns,
            data,
            len as u64,
        )
    }

    fn socket_event(
        &self,
        meta: &ConnMeta,
        kind: SocketEventKind,
        direction: Direction,
        ts_ns: u64,
        data: Bytes,
        len: u64,
    ) -> Event {
        Event::Socket(SocketData {
            conn_id: meta.conn_id,
            kind,
            ts_ns,
            process: self.process.clone(),
            local: meta.local,
            peer: meta.peer,
            role: meta.role,
            direction,
            data,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        })
    }
}

/// Whether `direction` carries the client's bytes; `None` when the roles are unknown.
fn from_client(role: Role, direction: Direction) -> Option<bool> {
    role.client_direction().map(|d| d == direction)
}
