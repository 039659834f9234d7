//! `type = "match"`: requests + responses → exchange records.
//!
//! HTTP/1 pairs by order per connection, HTTP/2 by stream id. Expiry runs on event time:
//! the newest message timestamp seen, advanced by the wall time elapsed since it arrived.
//! A live capture thus expires on wall time, and a replayed capture (old timestamps, read
//! fast) expires on its own clock; what is left at the end of a replay is flushed.

use std::time::Duration;

use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event, L7Body, L7Message};
use perisco_engine::metrics::{ComponentMetrics, Counter, Gauge, Registry};
use perisco_engine::record::{GrpcInfo, Incomplete, IpInfo, L4, L7, L7Request, L7Response, Record, TcpPorts};
use serde::Deserialize;

use crate::parse::{IdMap, id_map};

pub const RESPONSE_MISSING: &str = "response_missing";
pub const REQUEST_MISSING: &str = "request_missing";

/// What to do with a response whose request was never seen (a capture that starts
/// mid-exchange, lost bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmatchedResponses {
    /// Count it (`perisco_match_unmatched_responses_total`) and drop it.
    #[default]
    Drop,
    /// Emit a record without `l7.request`, marked `request_missing`.
    Emit,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Requests without a response for this long are emitted marked `response_missing`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Connections with state at once; the least recently used is evicted beyond it and
    /// its waiting requests are counted as discarded.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests waiting per connection; the oldest is emitted as `response_missing` beyond.
    #[serde(default = "default_max_pending")]
    pub max_pending_per_connection: usize,
    #[serde(default)]
    pub unmatched_responses: UnmatchedResponses,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    100_000
}
fn default_max_pending() -> usize {
    1024
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            timeout: default_timeout(),
            max_connections: default_max_connections(),
            max_pending_per_connection: default_max_pending(),
            unmatched_responses: UnmatchedResponses::Drop,
        }
    }
}

impl ComponentConfig for MatchConfig {
    fn type_name(&self) -> &'static str {
        "match"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errs = Vec::new();
        if self.timeout.is_zero() {
            errs.push(ValueError::at("timeout", "must be longer than 0s"));
        }
        if self.max_connections == 0 {
            errs.push(ValueError::at("max_connections", "must be at least 1"));
        }
        if self.max_pending_per_connection == 0 {
            errs.push(ValueError::at("max_pending_per_connection", "must be at least 1"));
        }
        errs
    }
}

impl TransformConfig for MatchConfig {
    fn accepts(&self, input: DataType) -> bool {
        input == DataType::Message
    }

    fn output(&self) -> DataType {
        DataType::Record
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        Ok(Box::new(Match {
            matcher: Matcher::new(self),
            metrics: MatchMetrics::new(&cx.registry, &cx.id, cx.metrics.clone()),
            seen: MatchStats::default(),
            records: Vec::new(),
            tick: (self.timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
        }))
    }
}

/// Counters of a [`Matcher`] since it was built.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MatchStats {
    pub records: u64,
    pub response_missing: u64,
    pub unmatched_responses: u64,
    /// Connections evicted by `max_connections` while requests waited on them.
    pub evicted_connections: u64,
    /// Waiting requests dropped with an evicted connection.
    pub evicted_requests: u64,
}

/// Requests waiting on one connection, in the order they came: HTTP/1 ones (no stream id)
/// pair by order, HTTP/2 ones by stream id. One small vector rather than a deque and a map:
/// a connection rarely has many requests in flight, and with 100 k connections each one's
/// fixed cost adds up (the vector starts with room for one request).
#[derive(Default)]
struct Pending {
    reqs: Vec<(Option<u32>, Box<L7Message>)>,
    /// How many of `reqs` are HTTP/1.
    http1: usize,
}

impl Pending {
    fn len(&self) -> usize {
        self.reqs.len()
    }

    /// Queue a request; returns the one pushed out when the connection has more than
    /// `max_pending` HTTP/1 requests waiting, or the request a reused stream id replaces.
    fn enqueue(&mut self, msg: Box<L7Message>, max_pending: usize) -> Option<Box<L7Message>> {
        match msg.stream_id {
            Some(s) => {
                let old = self.take_stream(s);
                self.add((Some(s), msg));
                old
            }
            None => {
                self.add((None, msg));
                self.http1 += 1;
                if self.http1 > max_pending {
                    self.take_http1()
                } else {
                    None
                }
            }
        }
    }

    fn add(&mut self, req: (Option<u32>, Box<L7Message>)) {
        if self.reqs.capacity() == 0 {
            self.reqs.reserve_exact(1);
        }
        self.reqs.push(req);
    }

    /// The request on HTTP/2 stream `id`.
    fn take_stream(&mut self, id: u32) -> Option<Box<L7Message>> {
        let i = self.reqs.iter().position(|(s, _)| *s == Some(id))?;
        Some(self.reqs.remove(i).1)
    }

    /// The oldest HTTP/1 request.
    fn take_http1(&mut self) -> Option<Box<L7Message>> {
        if self.http1 == 0 {
            return None;
        }
        let i = self.reqs.iter().position(|(s, _)| s.is_none())?;
        self.http1 -= 1;
        Some(self.reqs.remove(i).1)
    }

    /// Requests first seen at or before `deadline`. HTTP/1 ones leave from the front only:
    /// a later one cannot be paired while an earlier one still waits. (Boxes kept: they
    /// move on into records.)
    #[allow(clippy::vec_box)]
    fn expired(&mut self, deadline: u64, into: &mut Vec<Box<L7Message>>) {
        let mut http1_front = true;
        let mut i = 0;
        while i < self.reqs.len() {
            let (stream, m) = &self.reqs[i];
            let old = m.ts_ns <= deadline;
            let take = match stream {
                None => {
                    let t = http1_front && old;
                    http1_front = t;
                    t
                }
                Some(_) => old,
            };
            match take.then(|| self.reqs.remove(i)) {
                Some((stream, m)) => {
                    self.http1 -= usize::from(stream.is_none());
                    into.push(m);
                }
                None => i += 1,
            }
        }
    }

    /// Every waiting request, oldest first (boxes kept: they move on into records).
    #[allow(clippy::vec_box)]
    fn drain(&mut self) -> Vec<Box<L7Message>> {
        self.http1 = 0;
        let mut all: Vec<_> = self.reqs.drain(..).map(|(_, m)| m).collect();
        all.sort_by_key(|m| m.ts_ns);
        all
    }
}

/// The sans-IO core of `match`: messages in, records out.
pub struct Matcher {
    timeout_ns: u64,
    max_pending: usize,
    unmatched: UnmatchedResponses,
    conns: IdMap<Pending>,
    waiting: usize,
    /// Newest message timestamp, and the wall time when it arrived.
    event_ns: u64,
    event_wall_ns: u64,
    stats: MatchStats,
}

// Records come out boxed: they travel on as `Event::Record(Box<Record>)`, and building them
// in their box saves a copy of a few hundred bytes per record.
#[allow(clippy::vec_box)]
impl Matcher {
    pub fn new(config: &MatchConfig) -> Self {
        Matcher {
            timeout_ns: u64::try_from(config.timeout.as_nanos()).unwrap_or(u64::MAX),
            max_pending: config.max_pending_per_connection,
            unmatched: config.unmatched_responses,
            conns: id_map(config.max_connections),
            waiting: 0,
            event_ns: 0,
            event_wall_ns: 0,
            stats: MatchStats::default(),
        }
    }

    pub fn stats(&self) -> MatchStats {
        self.stats
    }

    /// Requests waiting for a response.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Note the wall time at which the messages pushed so far arrived.
    pub fn arrived(&mut self, wall_ns: u64) {
        self.event_wall_ns = wall_ns;
    }

    pub fn push(&mut self, msg: Box<L7Message>, out: &mut Vec<Box<Record>>) {
        self.event_ns = self.event_ns.max(msg.ts_ns);
        let id = msg.conn.conn_id;
        match msg.body {
            L7Body::Request(_) => self.request(id, msg, out),
            L7Body::Response(_) | L7Body::NoResponse => self.response(id, msg, out),
            L7Body::Closed => {
                if let Some(mut p) = self.conns.pop(&id) {
                    self.waiting -= p.len();
                    for req in p.drain() {
                        self.missing(req, out);
                    }
                }
            }
        }
    }

    fn request(&mut self, id: u64, msg: Box<L7Message>, out: &mut Vec<Box<Record>>) {
        self.waiting += 1;
        let overflow = match self.conns.get_mut(&id) {
            Some(p) => p.enqueue(msg, self.max_pending),
            None => {
                let mut p = Pending::default();
                let overflow = p.enqueue(msg, self.max_pending);
                if let Some((old, evicted)) = self.conns.push(id, p)
                    && old != id
                    && evicted.len() > 0
                {
                    self.waiting -= evicted.len();
                    self.stats.evicted_connections += 1;
                    self.stats.evicted_requests += evicted.len() as u64;
                }
                overflow
            }
        };
        if let Some(old) = overflow {
            self.waiting -= 1;
            self.missing(old, out);
        }
    }

    fn response(&mut self, id: u64, msg: Box<L7Message>, out: &mut Vec<Box<Record>>) {
        let req = self.conns.get_mut(&id).and_then(|p| match msg.stream_id {
            Some(s) => p.take_stream(s),
            // A declined h2c upgrade: the request went in as stream 1, the answer is HTTP/1.
            None => p.take_http1().or_else(|| p.take_stream(1)),
        });
        match req {
            Some(req) => {
                self.waiting -= 1;
                self.stats.records += 1;
                out.push(build_record(Some(req), Some(msg), None));
            }
            None => {
                self.stats.unmatched_responses += 1;
                // A reset stream whose request was not seen: nothing to report of it.
                if self.unmatched == UnmatchedResponses::Emit && !matches!(msg.body, L7Body::NoResponse) {
                    self.stats.records += 1;
                    out.push(build_record(None, Some(msg), Some(REQUEST_MISSING)));
                }
            }
        }
    }

    fn missing(&mut self, req: Box<L7Message>, out: &mut Vec<Box<Record>>) {
        self.stats.response_missing += 1;
        self.stats.records += 1;
        out.push(build_record(Some(req), None, Some(RESPONSE_MISSING)));
    }

    /// Emit requests older than the timeout. `wall_ns`: now, wall clock.
    pub fn expire(&mut self, wall_ns: u64, out: &mut Vec<Box<Record>>) {
        if self.waiting == 0 {
            return;
        }
        let now = self.event_ns.saturating_add(wall_ns.saturating_sub(self.event_wall_ns));
        let deadline = now.saturating_sub(self.timeout_ns);
        let mut expired = Vec::new();
        for (_, p) in self.conns.iter_mut() {
            p.expired(deadline, &mut expired);
        }
        expired.sort_by_key(|m| m.ts_ns);
        self.waiting -= expired.len();
        for req in expired {
            self.missing(req, out);
        }
    }

    /// Emit every waiting request (end of input).
    pub fn flush(&mut self, out: &mut Vec<Box<Record>>) {
        while let Some((_, mut p)) = self.conns.pop_lru() {
            for req in p.drain() {
                self.missing(req, out);
            }
        }
        self.waiting = 0;
    }
}

/// One record from a request and/or its response, built in its final box: a `Record` is
/// a few hundred bytes and every move of it is a copy.
pub fn build_record(
    req: Option<Box<L7Message>>,
    resp: Option<Box<L7Message>>,
    reason: Option<&'static str>,
) -> Box<Record> {
    let first = req.as_deref().or(resp.as_deref()).expect("a request or a response");
    // Read through the message rather than cloning its `Arc` (atomic operations).
    let conn = &*first.conn;
    let mut r = Box::new(Record {
        ts: first.ts_ns,
        pid: conn.process.pid,
        ip: IpInfo::new(conn.client.ip(), conn.server.ip()),
        l4: L4 {
            tcp: TcpPorts {
                client_port: conn.client.port(),
                server_port: conn.server.port(),
            },
        },
        l7: L7::default(),
        client: None,
        server: None,
        client_service: None,
        server_service: None,
        comm: conn.process.comm.clone(),
        container_id: conn.process.container_id.clone(),
        node: None,
        incomplete: Vec::new(),
    });
    let mut grpc = None;
    let has_req = req.is_some();
    // Fields are taken out of the boxed messages one by one (not `*m`: that copies the
    // whole message first).
    if let Some(mut m) = req {
        r.incomplete = std::mem::take(&mut m.incomplete);
        grpc = m.grpc.take();
        if let L7Body::Request(http) = std::mem::replace(&mut m.body, L7Body::Closed) {
            r.l7.request = Some(L7Request { http });
        }
    }
    if let Some(mut m) = resp {
        // `NoResponse` (a stream reset before any response head) adds only its reasons.
        if has_req && !matches!(m.body, L7Body::NoResponse) {
            r.l7.latency_ns = Some(m.ts_ns.saturating_sub(r.ts));
        }
        r.incomplete.append(&mut m.incomplete);
        grpc = merge_grpc(grpc, m.grpc.take());
        if let L7Body::Response(http) = std::mem::replace(&mut m.body, L7Body::Closed) {
            r.l7.response = Some(L7Response { http });
        }
    }
    r.incomplete.extend(reason.map(Incomplete::Borrowed));
    dedup(&mut r.incomplete);
    r.l7.grpc = grpc;
    r
}

fn dedup(v: &mut Vec<Incomplete>) {
    let mut i = 0;
    while i < v.len() {
        if v[..i].contains(&v[i]) {
            v.remove(i);
        } else {
            i += 1;
        }
    }
}

/// Request side gives service/method and request counts; response side status and
/// response counts; either fills what the other lacks.
fn merge_grpc(req: Option<Box<GrpcInfo>>, resp: Option<Box<GrpcInfo>>) -> Option<Box<GrpcInfo>> {
    match (req, resp) {
        (None, r) | (r, None) => r,
        (Some(mut a), Some(b)) => {
            let b = *b;
            if a.service.is_empty() {
                a.service = b.service;
            }
            if a.method.is_empty() {
                a.method = b.method;
            }
            a.status = b.status.or(a.status);
            a.message = b.message.or(a.message.take());
            a.request_messages = a.request_messages.or(b.request_messages);
            a.response_messages = b.response_messages.or(a.response_messages);
            a.request_bytes = a.request_bytes.or(b.request_bytes);
            a.response_bytes = b.response_bytes.or(a.response_bytes);
            Some(a)
        }
    }
}

struct MatchMetrics {
    component: ComponentMetrics,
    response_missing: Counter,
    unmatched: Counter,
    evicted: Counter,
    waiting: Gauge,
}

impl MatchMetrics {
    fn new(r: &Registry, id: &str, component: ComponentMetrics) -> Self {
        let l = &[("component_id", id)];
        MatchMetrics {
            component,
            response_missing: r.counter(
                "perisco_match_response_missing_total",
                "Requests emitted without a response (timeout, close, eviction of the stream).",
                l,
            ),
            unmatched: r.counter(
                "perisco_match_unmatched_responses_total",
                "Responses whose request was never seen.",
                l,
            ),
            evicted: r.counter(
                "perisco_match_evicted_connections_total",
                "Connections evicted (max_connections) while requests waited on them.",
                l,
            ),
            waiting: r.gauge(
                "perisco_match_waiting_requests",
                "Requests waiting for their response.",
                l,
            ),
        }
    }
}

#[allow(clippy::vec_box)] // records are boxed as events carry them
struct Match {
    matcher: Matcher,
    metrics: MatchMetrics,
    seen: MatchStats,
    records: Vec<Box<Record>>,
    tick: Duration,
}

impl Match {
    fn drain(&mut self, out: &mut Vec<Event>) {
        out.extend(self.records.drain(..).map(Event::Record));
        let s = self.matcher.stats();
        let p = self.seen;
        let m = &self.metrics;
        m.response_missing.add(s.response_missing - p.response_missing);
        m.evicted.add(s.evicted_connections - p.evicted_connections);
        let unmatched = s.unmatched_responses - p.unmatched_responses;
        m.unmatched.add(unmatched);
        let mut discarded = s.evicted_requests - p.evicted_requests;
        if self.matcher.unmatched == UnmatchedResponses::Drop {
            discarded += unmatched;
        }
        m.component.discarded.add(discarded);
        m.waiting.set(self.matcher.waiting() as i64);
        self.seen = s;
    }
}

impl FunctionTransform for Match {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>) {
        self.transform_batch(vec![event], out);
    }

    fn transform_batch(&mut self, batch: Vec<Event>, out: &mut Vec<Event>) {
        for event in batch {
            if let Event::Message(m) = event {
                self.matcher.push(m, &mut self.records);
            }
        }
        self.matcher.arrived(perisco_engine::now_ns());
        self.drain(out);
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.tick)
    }

    fn tick(&mut self, now_ns: u64, out: &mut Vec<Event>) {
        self.matcher.expire(now_ns, &mut self.records);
        self.drain(out);
    }

    fn flush(&mut self, out: &mut Vec<Event>) {
        self.matcher.flush(&mut self.records);
        self.drain(out);
    }
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
