//! One connection seen by `parse`: who the client is, which protocol it speaks, and the
//! parser for it. The protocol is detected from the first bytes (no port lists).

use std::sync::Arc;

use perisco_engine::event::{ConnInfo, Direction, HttpRequest, HttpResponse, L7Body, L7Message, SocketData};
use perisco_h2::{Http2Conn, Http2Options, Side};

use crate::http1::{self, Flow, Head, Http1Conn, Http1Limits, Http1Message, Looks, Next};
use crate::redact::Redactor;

/// Limits (and the redactor) shared by every connection of one `parse` transform.
#[derive(Debug, Clone)]
pub(crate) struct ConnLimits {
    pub http1: Http1Limits,
    pub http2: Http2Options,
    /// HTTP/1 heads are redacted as they are parsed; `Parser` redacts HTTP/2 messages.
    pub redactor: Arc<Redactor>,
}

/// What happened while feeding, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ConnCounters {
    pub http1_errors: u64,
    pub http2_errors: u64,
    pub unknown: u64,
    pub opaque: u64,
    pub skipped_unknown: u64,
    pub skipped_resync: u64,
    pub gaps: u64,
    /// Header values redacted while parsing HTTP/1 heads.
    pub redacted: u64,
}

/// Bytes of a direction kept while the protocol is undecided (a preface is 24 bytes).
const DETECT_BYTES: usize = 32;
/// Client bytes held when HTTP/2 starts before the server's 101 was seen.
const EARLY_H2_BYTES: usize = 64 * 1024;

enum Proto {
    /// Undecided. Bytes are held only when the first write was too short to tell (boxed:
    /// rare, and it keeps every other connection's state small).
    Detect(Option<Box<Held>>),
    Http1 {
        p: Box<Http1Conn>,
        early_h2: Option<Box<(u64, Vec<u8>)>>,
    },
    Http2(Box<Http2Conn>),
    /// Not HTTP (or a tunnel after an upgrade): bytes are skipped.
    Skip,
}

/// The first bytes of each direction (index = [`dir_idx`]) while the protocol is undecided.
#[derive(Default)]
struct Held {
    buf: [Vec<u8>; 2],
    ts: [u64; 2],
}

pub(crate) struct Conn {
    info: Option<Arc<ConnInfo>>,
    /// Direction (relative to the capturing socket) of client → server bytes.
    client_dir: Option<Direction>,
    proto: Proto,
    /// A message was emitted: a close must reach `match`.
    emitted: bool,
}

fn dir_idx(d: Direction) -> usize {
    match d {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

/// Scratch buffers reused across events (no allocation on the hot path beyond messages).
#[derive(Default)]
pub(crate) struct Scratch {
    h1: Vec<Http1Message>,
}

/// What the first bytes of a direction say.
enum Detected {
    Http1 { from_client: bool },
    Http2Preface,
    Http2Frames,
    NeedMore,
    NotHttp,
}

impl Conn {
    pub(crate) fn new(ev: &SocketData) -> Self {
        Conn {
            info: None,
            client_dir: ev.role.client_direction(),
            proto: Proto::Detect(None),
            emitted: false,
        }
    }

    pub(crate) fn is_skipped(&self) -> bool {
        matches!(self.proto, Proto::Skip)
    }

    pub(crate) fn protocol(&self) -> Option<&'static str> {
        match self.proto {
            Proto::Http1 { .. } => Some("http1"),
            Proto::Http2(_) => Some("http2"),
            _ => None,
        }
    }

    /// Heap bytes held (approximate), for the memory benchmark.
    pub(crate) fn state_bytes(&self) -> usize {
        size_of::<Self>()
            + match &self.proto {
                Proto::Detect(held) => held
                    .as_ref()
                    .map_or(0, |h| size_of::<Held>() + h.buf[0].capacity() + h.buf[1].capacity()),
                Proto::Http1 { p, early_h2 } => {
                    size_of::<Http1Conn>() + p.state_bytes() + early_h2.as_ref().map_or(0, |e| e.1.capacity())
                }
                Proto::Http2(h) => h.state_bytes(),
                Proto::Skip => 0,
            }
            + self.info.as_ref().map_or(0, |_| size_of::<ConnInfo>())
    }

    fn info(&mut self, ev: &SocketData, client_dir: Direction) -> Arc<ConnInfo> {
        self.info
            .get_or_insert_with(|| {
                let (client, server) = if client_dir == Direction::Egress {
                    (ev.local, ev.peer)
                } else {
                    (ev.peer, ev.local)
                };
                Arc::new(ConnInfo {
                    conn_id: ev.conn_id,
                    client,
                    server,
                    process: ev.process.clone(),
                })
            })
            .clone()
    }

    /// Payload bytes of `ev`.
    pub(crate) fn data(
        &mut self,
        ev: &SocketData,
        lim: &ConnLimits,
        s: &mut Scratch,
        c: &mut ConnCounters,
        out: &mut Vec<L7Message>,
    ) {
        let missing = u64::from(ev.len).saturating_sub(ev.data.len() as u64);
        let before = out.len();
        match &mut self.proto {
            Proto::Skip => c.skipped_unknown += u64::from(ev.len.max(ev.data.len() as u32)),
            Proto::Detect(_) => self.detect(ev, lim, s, c, out),
            Proto::Http1 { .. } | Proto::Http2(_) => {
                let from_client = Some(ev.direction) == self.client_dir;
                self.feed(from_client, &ev.data, ev.ts_ns, lim, s, c, out);
                if missing > 0 {
                    self.missing(from_client, missing, s, c, out);
                }
            }
        }
        self.emitted |= out.len() > before;
    }

    /// Decide the protocol from the bytes seen so far in `ev`'s direction.
    fn detect(
        &mut self,
        ev: &SocketData,
        lim: &ConnLimits,
        s: &mut Scratch,
        c: &mut ConnCounters,
        out: &mut Vec<L7Message>,
    ) {
        let Proto::Detect(held) = &mut self.proto else {
            return;
        };
        let i = dir_idx(ev.direction);
        let from_client = self.client_dir.map(|d| d == ev.direction);
        let buffered = held.as_ref().map_or(&[][..], |h| &h.buf[i][..]);
        let verdict = if buffered.is_empty() {
            classify(&ev.data, from_client)
        } else {
            let mut joined = buffered.to_vec();
            joined.extend_from_slice(&ev.data[..ev.data.len().min(DETECT_BYTES)]);
            classify(&joined, from_client)
        };
        let buffered = buffered.len();
        let missing = u64::from(ev.len).saturating_sub(ev.data.len() as u64);
        match verdict {
            Detected::NeedMore if missing == 0 && buffered + ev.data.len() < DETECT_BYTES => {
                let h = held.get_or_insert_with(Box::default);
                if h.buf[i].is_empty() {
                    h.ts[i] = ev.ts_ns;
                }
                h.buf[i].extend_from_slice(&ev.data);
                return;
            }
            Detected::NeedMore | Detected::NotHttp => {
                let all = held.as_ref().map_or(0, |h| h.buf[0].len() + h.buf[1].len());
                c.unknown += 1;
                c.skipped_unknown += u64::from(ev.len) + all as u64;
                self.proto = Proto::Skip;
                return;
            }
            Detected::Http1 { from_client: fc } => {
                let client_dir = if fc { ev.direction } else { ev.direction.reverse() };
                self.client_dir = Some(client_dir);
            }
            Detected::Http2Preface => self.client_dir = Some(ev.direction),
            Detected::Http2Frames => {
                // Mid-connection HTTP/2 with no role: the lower port is taken as the server's.
                let guess = if ev.local.port() < ev.peer.port() {
                    Direction::Ingress
                } else {
                    Direction::Egress
                };
                self.client_dir = Some(self.client_dir.unwrap_or(guess));
            }
        }
        let client_dir = self.client_dir.unwrap_or(Direction::Ingress);
        let info = self.info(ev, client_dir);
        let Proto::Detect(held) = std::mem::replace(&mut self.proto, Proto::Skip) else {
            return;
        };
        self.proto = match verdict {
            Detected::Http1 { .. } => Proto::Http1 {
                p: Box::new(Http1Conn::with_redactor(lim.http1, lim.redactor.clone())),
                early_h2: None,
            },
            _ => Proto::Http2(Box::new(Http2Conn::new(info, lim.http2))),
        };
        // Replay what was held: the other direction first (it came earlier), then this one.
        let this = dir_idx(ev.direction);
        if let Some(h) = held {
            for j in [1 - this, this] {
                if !h.buf[j].is_empty() {
                    self.feed(dir_of(j) == client_dir, &h.buf[j], h.ts[j], lim, s, c, out);
                }
            }
        }
        let from_client = ev.direction == client_dir;
        self.feed(from_client, &ev.data, ev.ts_ns, lim, s, c, out);
        self.missing(from_client, missing, s, c, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn feed(
        &mut self,
        from_client: bool,
        data: &[u8],
        ts_ns: u64,
        lim: &ConnLimits,
        s: &mut Scratch,
        c: &mut ConnCounters,
        out: &mut Vec<L7Message>,
    ) {
        // Borrowed, not cloned: an `Arc` clone is two atomic operations per write.
        let Some(info) = &self.info else { return };
        match &mut self.proto {
            Proto::Http1 { p, early_h2 } => {
                if from_client && let Some(e) = early_h2 {
                    let room = EARLY_H2_BYTES.saturating_sub(e.1.len());
                    e.1.extend_from_slice(&data[..data.len().min(room)]);
                    return;
                }
                let flow = if from_client { Flow::ToServer } else { Flow::ToClient };
                let errors = p.counters();
                let next = p.feed(flow, data, ts_ns, &mut s.h1);
                account_h1(errors, p.counters(), c);
                emit_h1(info, &mut s.h1, out);
                match next {
                    Next::Continue => {}
                    Next::Opaque => {
                        c.opaque += 1;
                        self.proto = Proto::Skip;
                    }
                    Next::Http2 { mut held, at } => {
                        held.extend_from_slice(&data[at.min(data.len())..]);
                        if from_client {
                            // The client sent its preface before the 101 was seen: hold it.
                            *early_h2 = Some(Box::new((ts_ns, held)));
                        } else {
                            let early = early_h2.take();
                            let mut h2 = Box::new(Http2Conn::upgraded(info.clone(), lim.http2));
                            feed_h2(&mut h2, Side::Server, &held, ts_ns, c, out);
                            if let Some(e) = early {
                                feed_h2(&mut h2, Side::Client, &e.1, e.0, c, out);
                            }
                            self.proto = Proto::Http2(h2);
                        }
                    }
                }
            }
            Proto::Http2(h2) => {
                let side = if from_client { Side::Client } else { Side::Server };
                if !feed_h2(h2, side, data, ts_ns, c, out) {
                    c.unknown += 1;
                    self.proto = Proto::Skip;
                }
            }
            Proto::Detect(_) | Proto::Skip => {}
        }
    }

    /// `n` bytes after the last feed were not captured (rare: out of line).
    #[cold]
    fn missing(&mut self, from_client: bool, n: u64, s: &mut Scratch, c: &mut ConnCounters, out: &mut Vec<L7Message>) {
        if n == 0 {
            return;
        }
        let Some(info) = &self.info else { return };
        match &mut self.proto {
            Proto::Http1 { p, .. } => {
                let flow = if from_client { Flow::ToServer } else { Flow::ToClient };
                let before = p.counters();
                p.missing(flow, n, &mut s.h1);
                account_h1(before, p.counters(), c);
                emit_h1(info, &mut s.h1, out);
            }
            Proto::Http2(h2) => {
                let side = if from_client { Side::Client } else { Side::Server };
                let before = h2_errors(h2);
                h2.skip(side, n, out);
                c.http2_errors += h2_errors(h2) - before;
            }
            Proto::Detect(_) | Proto::Skip => {}
        }
    }

    /// Bytes lost in `direction`. Returns true when pairing by order can no longer be
    /// trusted (the caller then tells `match` to flush the connection).
    pub(crate) fn gap(
        &mut self,
        direction: Direction,
        len: u64,
        s: &mut Scratch,
        c: &mut ConnCounters,
        out: &mut Vec<L7Message>,
    ) -> bool {
        c.gaps += 1;
        let from_client = Some(direction) == self.client_dir;
        let Some(info) = self.info.clone() else {
            // Still detecting: what was held no longer continues; start again.
            if let Proto::Detect(Some(h)) = &mut self.proto {
                h.buf[dir_idx(direction)].clear();
            }
            return false;
        };
        let before = out.len();
        let lost = match &mut self.proto {
            Proto::Http1 { p, .. } => {
                let flow = if from_client { Flow::ToServer } else { Flow::ToClient };
                let lost = p.gap(flow, len, &mut s.h1);
                emit_h1(&info, &mut s.h1, out);
                lost
            }
            Proto::Http2(h2) => {
                let side = if from_client { Side::Client } else { Side::Server };
                if len > 0 {
                    h2.skip(side, len, out);
                } else {
                    h2.gap(side, out);
                }
                false
            }
            Proto::Detect(_) | Proto::Skip => false,
        };
        self.emitted |= out.len() > before;
        lost && self.emitted
    }

    /// The conn info when `match` has state for this connection.
    pub(crate) fn close_marker(&self) -> Option<Arc<ConnInfo>> {
        self.info.clone().filter(|_| self.emitted)
    }

    /// The connection closed: flush the parsers; returns the conn info when `match` must
    /// hear about the close.
    pub(crate) fn close(&mut self, ts_ns: u64, s: &mut Scratch, out: &mut Vec<L7Message>) -> Option<Arc<ConnInfo>> {
        let info = self.info.clone()?;
        let before = out.len();
        match &mut self.proto {
            Proto::Http1 { p, .. } => {
                p.close(&mut s.h1);
                emit_h1(&info, &mut s.h1, out);
            }
            Proto::Http2(h2) => h2.close(ts_ns, out),
            Proto::Detect(_) | Proto::Skip => {}
        }
        self.emitted |= out.len() > before;
        self.emitted.then_some(info)
    }
}

fn dir_of(i: usize) -> Direction {
    if i == 0 { Direction::Egress } else { Direction::Ingress }
}

fn classify(data: &[u8], from_client: Option<bool>) -> Detected {
    let mut need_more = false;
    if from_client != Some(false) {
        let n = data.len().min(perisco_h2::PREFACE.len());
        if data[..n] == perisco_h2::PREFACE[..n] {
            if n == perisco_h2::PREFACE.len() {
                return Detected::Http2Preface;
            }
            need_more = true;
        }
        match http1::looks_like_request(data) {
            Looks::Yes if !data.starts_with(b"PRI ") => return Detected::Http1 { from_client: true },
            Looks::NeedMore => need_more = true,
            _ => {}
        }
    }
    if from_client != Some(true) {
        match http1::looks_like_response(data) {
            Looks::Yes => return Detected::Http1 { from_client: false },
            Looks::NeedMore => need_more = true,
            Looks::No => {}
        }
    }
    if need_more {
        return Detected::NeedMore;
    }
    if data.len() < 9 {
        return Detected::NeedMore;
    }
    if perisco_h2::looks_like_frames(data) {
        return Detected::Http2Frames;
    }
    Detected::NotHttp
}

fn h2_errors(h2: &Http2Conn) -> u64 {
    let s = h2.stats();
    s.frame_errors + s.hpack_errors
}

/// Feed HTTP/2 bytes; false when they are not HTTP/2.
fn feed_h2(
    h2: &mut Http2Conn,
    side: Side,
    data: &[u8],
    ts: u64,
    c: &mut ConnCounters,
    out: &mut Vec<L7Message>,
) -> bool {
    let before = h2_errors(h2);
    let skipped = h2.stats().resync_skipped_bytes;
    let ok = h2.feed(side, data, ts, false, out).is_ok();
    c.http2_errors += h2_errors(h2) - before;
    c.skipped_resync += h2.stats().resync_skipped_bytes - skipped;
    ok
}

fn account_h1(before: http1::Http1Counters, after: http1::Http1Counters, c: &mut ConnCounters) {
    c.http1_errors += after.errors - before.errors;
    c.skipped_resync += after.skipped_bytes - before.skipped_bytes;
    c.redacted += after.redacted - before.redacted;
}

fn emit_h1(info: &Arc<ConnInfo>, msgs: &mut Vec<Http1Message>, out: &mut Vec<L7Message>) {
    // `extend` builds each message in `out`'s buffer (a push would copy it there).
    out.extend(msgs.drain(..).map(|m| {
        let (body, reason) = match m.head {
            Head::Request(r) => (L7Body::Request(r), perisco_h2::reason::REQUEST_TRUNCATED),
            Head::Response(r) => (L7Body::Response(r), perisco_h2::reason::RESPONSE_TRUNCATED),
        };
        L7Message {
            conn: info.clone(),
            ts_ns: m.ts_ns,
            stream_id: m.upgrade_h2c.then_some(1),
            body,
            grpc: None,
            incomplete: if m.truncated { vec![reason.into()] } else { Vec::new() },
        }
    }));
}

/// Headers of a message, for redaction.
pub(crate) fn headers_mut(m: &mut L7Message) -> Option<&mut Vec<perisco_engine::event::Header>> {
    match &mut m.body {
        L7Body::Request(HttpRequest { headers, .. }) | L7Body::Response(HttpResponse { headers, .. }) => Some(headers),
        L7Body::NoResponse | L7Body::Closed => None,
    }
}
