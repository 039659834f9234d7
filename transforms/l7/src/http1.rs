//! Sans-IO HTTP/1.0 / 1.1 parser for both directions of one connection.
//!
//! Bytes go in with [`Http1Conn::feed`]; complete message heads come out as
//! [`Http1Message`]s. Heads are parsed with httparse straight from the caller's slice;
//! only a head split across writes is copied into a small per-direction buffer. Bodies
//! are skipped by count (Content-Length, chunked framing incl. trailers, or until close),
//! never stored unless `max_body_bytes` asks for a prefix.

mod body;
mod fast;
mod head;

use std::collections::VecDeque;
use std::sync::Arc;

use perisco_engine::event::{HttpRequest, HttpResponse};

use crate::redact::Redactor;

use body::{Chunk, chunked, end_message, keep_body, set_body_bytes, start_body};
#[doc(hidden)]
pub use fast::check_against_httparse;
use head::{Framing, Parsed, find_head_start, parse_request, parse_response, partial_request_line, push_pending};
pub use head::{Looks, looks_like_request, looks_like_response};

/// Headers per message head; more is a parse error (counted, then resynchronised).
pub const MAX_HEADERS: usize = 64;

/// The HTTP/2 client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http1Limits {
    /// Longest message head (request/status line + headers) buffered across writes.
    pub max_head_bytes: usize,
    /// Body prefix kept per message (0: bodies are skipped, not stored).
    pub max_body_bytes: usize,
    /// Requests waiting for their response (pipelining) tracked per connection.
    pub max_pipelined: usize,
}

impl Default for Http1Limits {
    fn default() -> Self {
        Http1Limits {
            max_head_bytes: 64 * 1024,
            max_body_bytes: 0,
            max_pipelined: 64,
        }
    }
}

/// Which way bytes flow on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    ToServer,
    ToClient,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    Request(HttpRequest),
    Response(HttpResponse),
}

/// One parsed message head (and body prefix when configured).
#[derive(Debug, Clone, PartialEq)]
pub struct Http1Message {
    /// Time of the message's first byte.
    pub ts_ns: u64,
    pub head: Head,
    /// The head was cut (capture limit, gap or close): what is there is what was parsed.
    pub truncated: bool,
    /// A request asking to upgrade to h2c; its response arrives on HTTP/2 stream 1.
    pub upgrade_h2c: bool,
}

/// What the connection does after a `feed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Keep feeding HTTP/1 bytes.
    Continue,
    /// HTTP/2 starts: `held` bytes buffered earlier, then `data[at..]` of the last feed.
    Http2 { held: Vec<u8>, at: usize },
    /// The connection switched to a protocol that is not parsed (WebSocket, CONNECT tunnel).
    Opaque,
}

/// What went wrong or was skipped, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Http1Counters {
    pub errors: u64,
    pub resyncs: u64,
    /// Bytes dropped while looking for the next message head.
    pub skipped_bytes: u64,
    /// Header values replaced by the redactor (see [`Http1Conn::with_redactor`]).
    pub redacted: u64,
}

/// What the response parser must remember about a request.
#[derive(Debug, Clone, Copy, Default)]
struct RequestMeta {
    head: bool,
    connect: bool,
    upgrade_h2c: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body {
        remaining: u64,
    },
    Chunked(Chunk),
    UntilClose,
    /// Framing lost: skip until something that starts a message head.
    Resync,
    /// Handed over to another protocol.
    Done,
}

/// A message whose body prefix is still being collected.
#[derive(Debug)]
struct Held {
    msg: Http1Message,
    body: Vec<u8>,
}

#[derive(Debug)]
struct Dir {
    flow: Flow,
    state: State,
    /// A head split across writes.
    buf: Vec<u8>,
    buf_ts: u64,
    held: Option<Box<Held>>,
    /// Body bytes of the current message seen so far (for `bodyBytes` of chunked bodies).
    body_seen: u64,
}

impl Dir {
    fn new(flow: Flow) -> Self {
        Dir {
            flow,
            state: State::Head,
            buf: Vec::new(),
            buf_ts: 0,
            held: None,
            body_seen: 0,
        }
    }
}

/// Both directions of one HTTP/1 connection.
#[derive(Debug)]
pub struct Http1Conn {
    limits: Http1Limits,
    to_server: Dir,
    to_client: Dir,
    pending: VecDeque<RequestMeta>,
    /// A request offered `Upgrade: h2c` and no final HTTP/1 response declined it yet.
    h2c_offered: bool,
    counters: Http1Counters,
    redactor: Option<Arc<Redactor>>,
}

impl Http1Conn {
    pub fn new(limits: Http1Limits) -> Self {
        Http1Conn {
            limits,
            to_server: Dir::new(Flow::ToServer),
            to_client: Dir::new(Flow::ToClient),
            pending: VecDeque::new(),
            h2c_offered: false,
            counters: Http1Counters::default(),
            redactor: None,
        }
    }

    /// Listed header values are replaced as heads are parsed (the name is checked on the
    /// raw bytes, and the value is never copied).
    pub fn with_redactor(limits: Http1Limits, redactor: Arc<Redactor>) -> Self {
        Http1Conn {
            redactor: Some(redactor),
            ..Http1Conn::new(limits)
        }
    }

    pub fn counters(&self) -> Http1Counters {
        self.counters
    }

    /// Heap bytes held by this connection (buffers and queues).
    pub fn state_bytes(&self) -> usize {
        let held = |d: &Dir| d.held.as_ref().map_or(0, |h| h.body.capacity() + size_of::<Held>());
        self.to_server.buf.capacity()
            + self.to_client.buf.capacity()
            + held(&self.to_server)
            + held(&self.to_client)
            + self.pending.capacity() * size_of::<RequestMeta>()
    }

    /// Parse `data` flowing `flow`; completed messages are appended to `out`.
    pub fn feed(&mut self, flow: Flow, data: &[u8], ts_ns: u64, out: &mut Vec<Http1Message>) -> Next {
        let (dir, pending) = match flow {
            Flow::ToServer => (&mut self.to_server, &mut self.pending),
            Flow::ToClient => (&mut self.to_client, &mut self.pending),
        };
        let mut cx = Cx {
            limits: &self.limits,
            pending,
            h2c_offered: &mut self.h2c_offered,
            counters: &mut self.counters,
            redactor: self.redactor.as_deref(),
            out,
        };
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            match dir.state {
                State::Head => match head(dir, &mut cx, rest, ts_ns) {
                    Step::Consumed(n) => pos += n,
                    Step::NeedMore => return Next::Continue,
                    Step::Http2 { held, at } => {
                        dir.state = State::Done;
                        return Next::Http2 { held, at: pos + at };
                    }
                    Step::Opaque => {
                        dir.state = State::Done;
                        return Next::Opaque;
                    }
                },
                State::Body { remaining } => {
                    let n = remaining.min(rest.len() as u64) as usize;
                    keep_body(dir, &mut cx, &rest[..n]);
                    pos += n;
                    dir.state = State::Body {
                        remaining: remaining - n as u64,
                    };
                    if remaining == n as u64 {
                        end_message(dir, cx.out);
                    }
                }
                State::Chunked(c) => pos += chunked(dir, &mut cx, c, rest),
                State::UntilClose => {
                    keep_body(dir, &mut cx, rest);
                    return Next::Continue;
                }
                State::Resync => match find_head_start(dir.flow, rest) {
                    Some(off) => {
                        cx.counters.skipped_bytes += off as u64;
                        pos += off;
                        dir.state = State::Head;
                    }
                    None => {
                        // A head may begin on the last line of this write: keep that line.
                        let start = memchr::memrchr(b'\n', rest).map_or(0, |i| i + 1);
                        let tail = &rest[start..];
                        let plausible = !tail.is_empty()
                            && tail.len() < 256
                            && match dir.flow {
                                Flow::ToServer => looks_like_request(tail) != Looks::No,
                                Flow::ToClient => looks_like_response(tail) != Looks::No,
                            };
                        if !plausible {
                            cx.counters.skipped_bytes += rest.len() as u64;
                            return Next::Continue;
                        }
                        cx.counters.skipped_bytes += start as u64;
                        pos += start;
                        dir.state = State::Head;
                    }
                },
                State::Done => return Next::Continue,
            }
        }
        Next::Continue
    }

    /// `n` bytes following the last `feed` in `flow` were not captured (a truncated write).
    /// Body bytes are skipped by count; a cut head is emitted as far as it parsed.
    pub fn missing(&mut self, flow: Flow, n: u64, out: &mut Vec<Http1Message>) {
        if n == 0 {
            return;
        }
        let dir = match flow {
            Flow::ToServer => &mut self.to_server,
            Flow::ToClient => &mut self.to_client,
        };
        let mut cx = Cx {
            limits: &self.limits,
            pending: &mut self.pending,
            h2c_offered: &mut self.h2c_offered,
            counters: &mut self.counters,
            redactor: self.redactor.as_deref(),
            out,
        };
        match dir.state {
            State::Head => {
                cut_head(dir, &mut cx);
                dir.state = State::Resync;
            }
            State::Body { remaining } if n <= remaining => {
                dir.body_seen += n;
                dir.state = State::Body {
                    remaining: remaining - n,
                };
                if remaining == n {
                    end_message(dir, cx.out);
                }
            }
            State::Body { .. } | State::Chunked(_) => {
                end_message(dir, cx.out);
                dir.state = State::Resync;
            }
            State::UntilClose | State::Resync | State::Done => {}
        }
    }

    /// Bytes were lost in `flow` (`len` when known, 0 when unknown). Returns true when the
    /// message framing was lost, so pairing by order can no longer be trusted.
    pub fn gap(&mut self, flow: Flow, len: u64, out: &mut Vec<Http1Message>) -> bool {
        let dir = match flow {
            Flow::ToServer => &mut self.to_server,
            Flow::ToClient => &mut self.to_client,
        };
        match dir.state {
            State::Body { remaining } if len > 0 && len <= remaining => {
                self.missing(flow, len, out);
                false
            }
            State::UntilClose | State::Done => false,
            State::Head if dir.buf.is_empty() => {
                dir.state = State::Resync;
                self.pending.clear();
                true
            }
            _ => {
                let mut cx = Cx {
                    limits: &self.limits,
                    pending: &mut self.pending,
                    h2c_offered: &mut self.h2c_offered,
                    counters: &mut self.counters,
                    redactor: self.redactor.as_deref(),
                    out,
                };
                if dir.state == State::Head {
                    cut_head(dir, &mut cx);
                } else {
                    end_message(dir, cx.out);
                }
                dir.state = State::Resync;
                self.pending.clear();
                true
            }
        }
    }

    /// The connection closed: a body delimited by close ends, a head cut by the close is
    /// emitted as truncated.
    pub fn close(&mut self, out: &mut Vec<Http1Message>) {
        for flow in [Flow::ToServer, Flow::ToClient] {
            let dir = match flow {
                Flow::ToServer => &mut self.to_server,
                Flow::ToClient => &mut self.to_client,
            };
            let mut cx = Cx {
                limits: &self.limits,
                pending: &mut self.pending,
                h2c_offered: &mut self.h2c_offered,
                counters: &mut self.counters,
                redactor: self.redactor.as_deref(),
                out,
            };
            match dir.state {
                State::Head => cut_head(dir, &mut cx),
                State::UntilClose => {
                    if let Some(h) = dir.held.as_mut() {
                        set_body_bytes(&mut h.msg, dir.body_seen);
                    }
                    end_message(dir, cx.out)
                }
                _ => end_message(dir, cx.out),
            }
            dir.state = State::Done;
        }
    }
}

struct Cx<'a> {
    limits: &'a Http1Limits,
    pending: &'a mut VecDeque<RequestMeta>,
    h2c_offered: &'a mut bool,
    counters: &'a mut Http1Counters,
    redactor: Option<&'a Redactor>,
    out: &'a mut Vec<Http1Message>,
}

enum Step {
    Consumed(usize),
    NeedMore,
    Http2 { held: Vec<u8>, at: usize },
    Opaque,
}

/// Parse one head from `dir.buf` + `rest` (or `rest` alone).
fn head(dir: &mut Dir, cx: &mut Cx<'_>, rest: &[u8], ts_ns: u64) -> Step {
    let old = dir.buf.len();
    if old == 0 {
        dir.buf_ts = ts_ns;
    } else {
        let room = cx.limits.max_head_bytes.saturating_sub(old);
        dir.buf.extend_from_slice(&rest[..rest.len().min(room)]);
    }
    if dir.flow == Flow::ToServer {
        let src = if old == 0 { rest } else { &dir.buf[..] };
        if let Some(step) = preface_after_upgrade(cx, src, old) {
            if matches!(step, Step::NeedMore) && old == 0 {
                dir.buf.extend_from_slice(rest);
            }
            return step;
        }
    }
    let src: &[u8] = if old == 0 { rest } else { &dir.buf };
    let parsed = match dir.flow {
        Flow::ToServer => parse_request(src, dir.buf_ts, cx),
        Flow::ToClient => parse_response(src, dir.buf_ts, cx),
    };
    // A head longer than the limit is refused whether or not it arrived in one write.
    let parsed = match parsed {
        Parsed::Head { len, .. } if len > cx.limits.max_head_bytes => Parsed::Error,
        p => p,
    };
    match parsed {
        Parsed::Partial => {
            if old == 0 {
                let take = rest.len().min(cx.limits.max_head_bytes);
                dir.buf.extend_from_slice(&rest[..take]);
            }
            if dir.buf.len() >= cx.limits.max_head_bytes {
                cx.counters.errors += 1;
                cx.counters.skipped_bytes += dir.buf.len() as u64;
                dir.buf = Vec::new();
                dir.state = State::Resync;
            }
            Step::Consumed(rest.len())
        }
        Parsed::Error => {
            cx.counters.errors += 1;
            cx.counters.resyncs += 1;
            cx.counters.skipped_bytes += old as u64;
            dir.buf = Vec::new();
            dir.state = State::Resync;
            // Skip the bad line so the resync does not find the same head again; buffered
            // bytes are dropped and `rest` is searched afresh.
            if old == 0 {
                let n = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                cx.counters.skipped_bytes += n as u64;
                Step::Consumed(n)
            } else {
                Step::Consumed(0)
            }
        }
        Parsed::Head { len, framing, msg } => {
            let used = len.saturating_sub(old);
            // Released, not kept: an idle connection holds no head buffer.
            dir.buf = Vec::new();
            dir.body_seen = 0;
            match framing {
                Framing::Interim => {}
                Framing::Http2 => {
                    return Step::Http2 {
                        held: Vec::new(),
                        at: used,
                    };
                }
                Framing::Opaque => {
                    if let Some(m) = msg {
                        cx.out.push(m);
                    }
                    return Step::Opaque;
                }
                Framing::None | Framing::Length(0) => {
                    if let Some(mut m) = msg {
                        set_body_bytes(&mut m, 0);
                        cx.out.push(m);
                    }
                }
                Framing::Length(n) => {
                    start_body(dir, cx, msg, Some(n));
                    dir.state = State::Body { remaining: n };
                }
                Framing::Chunked => {
                    start_body(dir, cx, msg, None);
                    dir.state = State::Chunked(Chunk::Size {
                        size: 0,
                        digits: 0,
                        ext: false,
                    });
                }
                Framing::UntilClose => {
                    start_body(dir, cx, msg, None);
                    dir.state = State::UntilClose;
                }
            }
            Step::Consumed(used)
        }
    }
}

/// After a request asking for h2c, the client may start HTTP/2 with the preface.
fn preface_after_upgrade(cx: &Cx<'_>, src: &[u8], old: usize) -> Option<Step> {
    if !*cx.h2c_offered || src.is_empty() {
        return None;
    }
    let n = src.len().min(H2_PREFACE.len());
    if src[..n] != H2_PREFACE[..n] {
        return None;
    }
    if n < H2_PREFACE.len() {
        return Some(Step::NeedMore);
    }
    // The preface starts at the beginning of the buffered head.
    if old == 0 {
        Some(Step::Http2 {
            held: Vec::new(),
            at: 0,
        })
    } else {
        Some(Step::Http2 {
            held: src.to_vec(),
            at: src.len() - old,
        })
    }
}

/// A head cut short: emit what parses of it, marked truncated.
fn cut_head(dir: &mut Dir, cx: &mut Cx<'_>) {
    if dir.buf.iter().all(|b| b.is_ascii_whitespace()) {
        dir.buf.clear();
        return;
    }
    let buf = std::mem::take(&mut dir.buf);
    let ts = dir.buf_ts;
    // Keep the complete header lines, end the head there and parse that.
    let mut msg = memchr::memrchr(b'\n', &buf).and_then(|i| {
        let mut closed = buf[..=i].to_vec();
        closed.extend_from_slice(b"\r\n");
        match dir.flow {
            Flow::ToServer => match parse_request(&closed, ts, cx) {
                Parsed::Head { msg, .. } => msg,
                _ => None,
            },
            Flow::ToClient => match parse_response(&closed, ts, cx) {
                Parsed::Head { msg, .. } => msg,
                _ => None,
            },
        }
    });
    if msg.is_none() && dir.flow == Flow::ToServer {
        msg = partial_request_line(&buf, ts);
        if msg.is_some() {
            push_pending(cx, RequestMeta::default());
        }
    }
    if let Some(mut m) = msg {
        m.truncated = true;
        if let Head::Request(r) = &mut m.head {
            r.body_bytes = None;
        }
        cx.out.push(m);
    }
}

/// A seeded xorshift generator for the tests' random inputs.
#[cfg(test)]
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

#[cfg(test)]
#[path = "http1_tests.rs"]
mod tests;
