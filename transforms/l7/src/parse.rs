//! `type = "parse"`: socket bytes → L7 messages (HTTP/1.x, HTTP/2, gRPC).

use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event, L7Body, L7Message, SocketData, SocketEventKind};
use perisco_engine::metrics::{Counter, Gauge, Registry};
use perisco_h2::Http2Options;
use serde::Deserialize;

use crate::conn::{Conn, ConnCounters, ConnLimits, Scratch, headers_mut};
use crate::http1::Http1Limits;
use crate::redact::{DEFAULT_REDACT, Redactor};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseConfig {
    /// Body prefix kept per message, in bytes (0: bodies are skipped, never stored).
    #[serde(default)]
    pub max_body_bytes: usize,
    /// Header names whose values are replaced by "[REDACTED]" (case-insensitive).
    #[serde(default = "default_redact")]
    pub redact_headers: Vec<String>,
    /// Connections tracked at once; the least recently used is evicted (and counted) beyond.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Longest HTTP/1 message head, and largest decoded HTTP/2 header list, in bytes.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// HTTP/1 requests awaiting a response (pipelining) tracked per connection.
    #[serde(default = "default_max_pipelined")]
    pub max_pipelined: usize,
    /// HTTP/2 streams tracked per connection; the oldest is evicted beyond.
    #[serde(default = "default_http2_max_streams")]
    pub http2_max_streams: usize,
}

fn default_redact() -> Vec<String> {
    DEFAULT_REDACT.iter().map(|s| (*s).to_string()).collect()
}
fn default_max_connections() -> usize {
    100_000
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_pipelined() -> usize {
    64
}
fn default_http2_max_streams() -> usize {
    Http2Options::default().max_streams
}

impl Default for ParseConfig {
    fn default() -> Self {
        ParseConfig {
            max_body_bytes: 0,
            redact_headers: default_redact(),
            max_connections: default_max_connections(),
            max_header_bytes: default_max_header_bytes(),
            max_pipelined: default_max_pipelined(),
            http2_max_streams: default_http2_max_streams(),
        }
    }
}

impl ParseConfig {
    fn limits(&self) -> ConnLimits {
        ConnLimits {
            http1: Http1Limits {
                max_head_bytes: self.max_header_bytes,
                max_body_bytes: self.max_body_bytes,
                max_pipelined: self.max_pipelined,
            },
            http2: Http2Options {
                max_body_bytes: self.max_body_bytes,
                max_streams: self.http2_max_streams,
                max_header_list_bytes: self.max_header_bytes,
            },
            redactor: Arc::new(Redactor::new(&self.redact_headers)),
        }
    }
}

impl ComponentConfig for ParseConfig {
    fn type_name(&self) -> &'static str {
        "parse"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errs = Vec::new();
        if self.max_connections == 0 {
            errs.push(ValueError::at("max_connections", "must be at least 1"));
        }
        if self.max_header_bytes < 256 {
            errs.push(ValueError::at("max_header_bytes", "must be at least 256"));
        }
        if self.max_pipelined == 0 {
            errs.push(ValueError::at("max_pipelined", "must be at least 1"));
        }
        if self.http2_max_streams == 0 {
            errs.push(ValueError::at("http2_max_streams", "must be at least 1"));
        }
        for (i, h) in self.redact_headers.iter().enumerate() {
            if h.trim().is_empty() || !h.trim().bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                errs.push(ValueError::at(
                    format!("redact_headers.{i}"),
                    format!("{h:?} is not a header name"),
                ));
            }
        }
        errs
    }
}

impl TransformConfig for ParseConfig {
    fn accepts(&self, input: DataType) -> bool {
        input == DataType::Socket
    }

    fn output(&self) -> DataType {
        DataType::Message
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        Ok(Box::new(Parse {
            parser: Parser::new(self),
            metrics: ParseMetrics::new(&cx.registry, &cx.id),
            seen: ParseStats::default(),
            out: Vec::new(),
        }))
    }
}

/// Counters of a [`Parser`] since it was built.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseStats {
    pub http1_errors: u64,
    pub http2_errors: u64,
    /// Connections whose bytes were not HTTP (skipped afterwards).
    pub unknown_connections: u64,
    /// Connections that switched to a tunnel or WebSocket (skipped afterwards).
    pub opaque_connections: u64,
    pub evicted_connections: u64,
    pub gaps: u64,
    /// Bytes of unknown/opaque connections skipped.
    pub skipped_unknown_bytes: u64,
    /// Bytes skipped while resynchronising after errors or gaps.
    pub skipped_resync_bytes: u64,
    pub redacted_headers: u64,
    pub messages: u64,
}

/// Fast hash for connection ids (already unique numbers).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

pub(crate) type IdMap<V> = LruCache<u64, V, BuildHasherDefault<IdHasher>>;

/// An LRU map holding at most `cap` connections. Built unbounded, then resized: its table
/// grows with the connections seen instead of being allocated for `cap` up front (a few MiB
/// at the default 100 k, whose scattered buckets cost a cache miss per lookup).
pub(crate) fn id_map<V>(cap: usize) -> IdMap<V> {
    let mut m = LruCache::unbounded_with_hasher(BuildHasherDefault::default());
    m.resize(NonZeroUsize::new(cap.max(1)).unwrap_or(NonZeroUsize::MIN));
    m
}

/// The sans-IO core of `parse`: socket events in, L7 messages out.
pub struct Parser {
    limits: ConnLimits,
    conns: IdMap<Conn>,
    scratch: Scratch,
    counters: ConnCounters,
    stats: ParseStats,
}

impl Parser {
    pub fn new(config: &ParseConfig) -> Self {
        Parser {
            limits: config.limits(),
            conns: id_map(config.max_connections),
            scratch: Scratch::default(),
            counters: ConnCounters::default(),
            stats: ParseStats::default(),
        }
    }

    pub fn stats(&self) -> ParseStats {
        let c = &self.counters;
        ParseStats {
            http1_errors: c.http1_errors,
            http2_errors: c.http2_errors,
            unknown_connections: c.unknown,
            opaque_connections: c.opaque,
            gaps: c.gaps,
            skipped_unknown_bytes: c.skipped_unknown,
            skipped_resync_bytes: c.skipped_resync,
            redacted_headers: self.stats.redacted_headers + c.redacted,
            ..self.stats
        }
    }

    /// Connections tracked now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Approximate bytes of parser state for all tracked connections.
    pub fn state_bytes(&self) -> usize {
        self.conns
            .iter()
            .map(|(_, c)| c.state_bytes() + 3 * size_of::<usize>())
            .sum()
    }

    /// Connections by protocol: (http1, http2, skipped).
    pub fn protocols(&self) -> (usize, usize, usize) {
        let mut r = (0, 0, 0);
        for (_, c) in self.conns.iter() {
            match c.protocol() {
                Some("http1") => r.0 += 1,
                Some(_) => r.1 += 1,
                None if c.is_skipped() => r.2 += 1,
                None => {}
            }
        }
        r
    }

    /// One socket event; messages are appended to `out`.
    pub fn push(&mut self, ev: &SocketData, out: &mut Vec<L7Message>) {
        let start = out.len();
        match ev.kind {
            SocketEventKind::Open => {}
            SocketEventKind::Data => {
                if ev.data.is_empty() && ev.len == 0 {
                    return;
                }
                let conn = match self.conns.get_mut(&ev.conn_id) {
                    Some(c) => c,
                    None => {
                        if let Some((id, _)) = self.conns.push(ev.conn_id, Conn::new(ev))
                            && id != ev.conn_id
                        {
                            self.stats.evicted_connections += 1;
                        }
                        match self.conns.get_mut(&ev.conn_id) {
                            Some(c) => c,
                            None => return,
                        }
                    }
                };
                conn.data(ev, &self.limits, &mut self.scratch, &mut self.counters, out);
            }
            SocketEventKind::Gap => {
                if let Some(conn) = self.conns.get_mut(&ev.conn_id)
                    && conn.gap(
                        ev.direction,
                        u64::from(ev.len),
                        &mut self.scratch,
                        &mut self.counters,
                        out,
                    )
                    && let Some(info) = conn.close_marker()
                {
                    // Framing lost on an HTTP/1 connection: requests waiting for a response
                    // can no longer be paired by order, so `match` flushes them now.
                    out.push(closed(info, ev.ts_ns));
                }
            }
            SocketEventKind::Close => {
                if let Some(mut conn) = self.conns.pop(&ev.conn_id)
                    && let Some(info) = conn.close(ev.ts_ns, &mut self.scratch, out)
                {
                    out.push(closed(info, ev.ts_ns));
                }
            }
        }
        self.redact(&mut out[start..]);
    }

    /// Count the messages and redact the HTTP/2 ones (stream ids; the HTTP/1 parser redacted
    /// its heads as it parsed them, the h2c upgrade request included, which is not counted
    /// twice: a value already redacted is not counted again).
    fn redact(&mut self, msgs: &mut [L7Message]) {
        for m in msgs {
            let http2 = m.stream_id.is_some();
            if let Some(h) = headers_mut(m) {
                if http2 {
                    self.stats.redacted_headers += self.limits.redactor.apply(h) as u64;
                }
                self.stats.messages += 1;
            }
        }
    }

    /// Flush every connection (end of input): cut heads and open messages are emitted.
    pub fn flush(&mut self, out: &mut Vec<L7Message>) {
        let start = out.len();
        while let Some((_, mut conn)) = self.conns.pop_lru() {
            if let Some(info) = conn.close(0, &mut self.scratch, out) {
                out.push(closed(info, 0));
            }
        }
        self.redact(&mut out[start..]);
    }
}

fn closed(info: Arc<perisco_engine::event::ConnInfo>, ts_ns: u64) -> L7Message {
    L7Message {
        conn: info,
        ts_ns,
        stream_id: None,
        body: L7Body::Closed,
        grpc: None,
        incomplete: Vec::new(),
    }
}

struct ParseMetrics {
    http1_errors: Counter,
    http2_errors: Counter,
    unknown: Counter,
    opaque: Counter,
    evicted: Counter,
    gaps: Counter,
    skipped_unknown: Counter,
    skipped_resync: Counter,
    redacted: Counter,
    connections: Gauge,
}

impl ParseMetrics {
    fn new(r: &Registry, id: &str) -> Self {
        let errors = |proto: &str| {
            r.counter(
                "perisco_parse_errors_total",
                "Bytes that could not be parsed as the connection's protocol (then resynchronised).",
                &[("component_id", id), ("protocol", proto)],
            )
        };
        let skipped = |reason: &str| {
            r.counter(
                "perisco_parse_skipped_bytes_total",
                "Bytes skipped without parsing: unknown protocol / tunnel, or resynchronisation.",
                &[("component_id", id), ("reason", reason)],
            )
        };
        let l = &[("component_id", id)];
        ParseMetrics {
            http1_errors: errors("http1"),
            http2_errors: errors("http2"),
            unknown: r.counter(
                "perisco_parse_unknown_connections_total",
                "Connections whose bytes are not HTTP; their later bytes are skipped.",
                l,
            ),
            opaque: r.counter(
                "perisco_parse_opaque_connections_total",
                "Connections that switched to a tunnel or WebSocket; their later bytes are skipped.",
                l,
            ),
            evicted: r.counter(
                "perisco_parse_evicted_connections_total",
                "Connections evicted from the parse state (max_connections, least recently used).",
                l,
            ),
            gaps: r.counter(
                "perisco_parse_gaps_total",
                "Gaps (lost bytes) reported by the source.",
                l,
            ),
            skipped_unknown: skipped("unknown"),
            skipped_resync: skipped("resync"),
            redacted: r.counter(
                "perisco_parse_redacted_headers_total",
                "Header values replaced by [REDACTED].",
                l,
            ),
            connections: r.gauge("perisco_parse_connections", "Connections tracked by parse.", l),
        }
    }
}

/// The runtime `parse` transform.
struct Parse {
    parser: Parser,
    metrics: ParseMetrics,
    /// Stats already published.
    seen: ParseStats,
    out: Vec<L7Message>,
}

impl Parse {
    fn publish(&mut self) {
        let s = self.parser.stats();
        let m = &self.metrics;
        let p = self.seen;
        m.http1_errors.add(s.http1_errors - p.http1_errors);
        m.http2_errors.add(s.http2_errors - p.http2_errors);
        m.unknown.add(s.unknown_connections - p.unknown_connections);
        m.opaque.add(s.opaque_connections - p.opaque_connections);
        m.evicted.add(s.evicted_connections - p.evicted_connections);
        m.gaps.add(s.gaps - p.gaps);
        m.skipped_unknown.add(s.skipped_unknown_bytes - p.skipped_unknown_bytes);
        m.skipped_resync.add(s.skipped_resync_bytes - p.skipped_resync_bytes);
        m.redacted.add(s.redacted_headers - p.redacted_headers);
        m.connections.set(self.parser.connections() as i64);
        self.seen = s;
    }

    fn drain(&mut self, out: &mut Vec<Event>) {
        out.extend(self.out.drain(..).map(|m| Event::Message(Box::new(m))));
    }
}

impl FunctionTransform for Parse {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>) {
        if let Event::Socket(ev) = event {
            self.parser.push(&ev, &mut self.out);
            self.drain(out);
        }
    }

    fn transform_batch(&mut self, batch: Vec<Event>, out: &mut Vec<Event>) {
        for event in batch {
            if let Event::Socket(ev) = event {
                self.parser.push(&ev, &mut self.out);
            }
        }
        self.drain(out);
        self.publish();
    }

    fn flush(&mut self, out: &mut Vec<Event>) {
        self.parser.flush(&mut self.out);
        self.drain(out);
        self.publish();
    }
}
