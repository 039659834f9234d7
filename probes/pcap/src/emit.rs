//! Builds the socket-data events: coalesces in-order bytes of one direction, applies
//! `max_capture_bytes`, and collects events for the next batch.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use perisco_engine::event::{Direction, Event, ProcessInfo, Role, SocketData, SocketEventKind};

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
}

impl Emitter {
    pub fn new(max_capture_bytes: Option<u32>) -> Self {
        Emitter {
            events: Vec::new(),
            open: None,
            process: Arc::new(ProcessInfo::default()),
            max_capture_bytes: max_capture_bytes.map(|m| m as usize),
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
        if let Some(open) = self.open.take() {
            let len = open.buf.len() as u64;
            let mut buf = open.buf;
            if let Some(max) = self.max_capture_bytes {
                buf.truncate(max);
            }
            let ev = self.socket_event(
                &open.meta,
                SocketEventKind::Data,
                open.direction,
                open.ts_ns,
                Bytes::from(buf),
                len,
            );
            self.events.push(ev);
        }
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
