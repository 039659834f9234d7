//! Sans-IO HTTP/1.0 / 1.1 parser for both directions of one connection.
//!
//! Bytes go in with [`Http1Conn::feed`]; complete message heads come out as
//! [`Http1Message`]s. Heads are parsed with httparse straight from the caller's slice;
//! only a head split across writes is copied into a small per-direction buffer. Bodies
//! are skipped by count (Content-Length, chunked framing incl. trailers, or until close),
//! never stored unless `max_body_bytes` asks for a prefix.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::mem::MaybeUninit;

use memchr::memmem;
use perisco_engine::event::{Header, HttpRequest, HttpResponse};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { size: u64, digits: u8, ext: bool },
    SizeLf { size: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
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
    out: &'a mut Vec<Http1Message>,
}

enum Step {
    Consumed(usize),
    NeedMore,
    Http2 { held: Vec<u8>, at: usize },
    Opaque,
}

fn parser_config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    // A passive observer accepts what real servers accept.
    c.allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true)
        .ignore_invalid_headers_in_responses(true);
    c
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
                dir.buf.clear();
                dir.state = State::Resync;
            }
            Step::Consumed(rest.len())
        }
        Parsed::Error => {
            cx.counters.errors += 1;
            cx.counters.resyncs += 1;
            cx.counters.skipped_bytes += old as u64;
            dir.buf.clear();
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
            dir.buf.clear();
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

enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
    /// A 1xx interim response: nothing emitted, the final response follows.
    Interim,
    /// 101 to h2c: HTTP/2 follows the head.
    Http2,
    /// Tunnel or other upgrade: stop parsing.
    Opaque,
}

enum Parsed {
    Partial,
    Error,
    Head {
        len: usize,
        framing: Framing,
        msg: Option<Http1Message>,
    },
}

/// What the headers say about the body and the connection.
#[derive(Default)]
struct HeaderFacts {
    content_length: Option<u64>,
    bad_length: bool,
    chunked: bool,
    other_encoding: bool,
    upgrade_h2c: bool,
}

fn facts(headers: &[httparse::Header<'_>]) -> HeaderFacts {
    let mut f = HeaderFacts::default();
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match parse_decimal(h.value) {
                Some(n) if f.content_length.is_none_or(|o| o == n) => f.content_length = Some(n),
                _ => f.bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default().trim_ascii();
            if last.eq_ignore_ascii_case(b"chunked") {
                f.chunked = true;
            } else if !last.is_empty() {
                f.other_encoding = true;
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            f.upgrade_h2c = h
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c"));
        }
    }
    f
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

fn protocol(version: Option<u8>) -> Cow<'static, str> {
    match version {
        Some(0) => Cow::Borrowed("HTTP/1.0"),
        _ => Cow::Borrowed("HTTP/1.1"),
    }
}

fn headers_vec(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| Header {
            key: h.name.to_owned(),
            // Header values are almost always ASCII: the strict check is faster than lossy.
            value: match std::str::from_utf8(h.value) {
                Ok(v) => v.to_owned(),
                Err(_) => String::from_utf8_lossy(h.value).into_owned(),
            },
        })
        .collect()
}

fn parse_request(src: &[u8], ts_ns: u64, cx: &mut Cx<'_>) -> Parsed {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match parser_config().parse_request_with_uninit_headers(&mut req, src, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Error,
    };
    let method = req.method.unwrap_or_default();
    let f = facts(req.headers);
    let framing = if f.bad_length || f.other_encoding {
        return Parsed::Error;
    } else if f.chunked {
        Framing::Chunked
    } else {
        f.content_length.map_or(Framing::None, Framing::Length)
    };
    let meta = RequestMeta {
        head: method == "HEAD",
        connect: method == "CONNECT",
        upgrade_h2c: f.upgrade_h2c && req.version == Some(1),
    };
    push_pending(cx, meta);
    *cx.h2c_offered |= meta.upgrade_h2c;
    let msg = Http1Message {
        ts_ns,
        head: Head::Request(HttpRequest {
            protocol: protocol(req.version),
            method: method.to_owned(),
            url: req.path.unwrap_or_default().to_owned(),
            headers: headers_vec(req.headers),
            body_bytes: None,
            body: None,
        }),
        truncated: false,
        upgrade_h2c: meta.upgrade_h2c,
    };
    Parsed::Head {
        len,
        framing,
        msg: Some(msg),
    }
}

fn push_pending(cx: &mut Cx<'_>, meta: RequestMeta) {
    if cx.pending.len() >= cx.limits.max_pipelined {
        cx.pending.pop_front();
        cx.counters.errors += 1;
    }
    cx.pending.push_back(meta);
}

fn parse_response(src: &[u8], ts_ns: u64, cx: &mut Cx<'_>) -> Parsed {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match parser_config().parse_response_with_uninit_headers(&mut resp, src, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Error,
    };
    let code = resp.code.unwrap_or_default();
    let f = facts(resp.headers);
    if (100..200).contains(&code) && code != 101 {
        return Parsed::Head {
            len,
            framing: Framing::Interim,
            msg: None,
        };
    }
    let meta = cx.pending.pop_front().unwrap_or_default();
    if meta.upgrade_h2c && code != 101 {
        *cx.h2c_offered = false;
    }
    let framing = if code == 101 {
        if meta.upgrade_h2c && f.upgrade_h2c {
            return Parsed::Head {
                len,
                framing: Framing::Http2,
                msg: None,
            };
        }
        Framing::Opaque
    } else if meta.connect && (200..300).contains(&code) {
        Framing::Opaque
    } else if meta.head || code == 204 || code == 304 {
        Framing::None
    } else if f.chunked {
        Framing::Chunked
    } else if f.other_encoding || f.bad_length {
        Framing::UntilClose
    } else {
        f.content_length.map_or(Framing::UntilClose, Framing::Length)
    };
    let msg = Http1Message {
        ts_ns,
        head: Head::Response(HttpResponse {
            protocol: protocol(resp.version),
            code,
            headers: headers_vec(resp.headers),
            body_bytes: None,
            body: None,
        }),
        truncated: false,
        upgrade_h2c: false,
    };
    Parsed::Head {
        len,
        framing,
        msg: Some(msg),
    }
}

fn set_body_bytes(m: &mut Http1Message, n: u64) {
    match &mut m.head {
        Head::Request(r) => r.body_bytes = Some(n),
        Head::Response(r) => r.body_bytes = Some(n),
    }
}

/// A message with a body: emitted now, or held until its body prefix is collected.
fn start_body(dir: &mut Dir, cx: &mut Cx<'_>, msg: Option<Http1Message>, length: Option<u64>) {
    let Some(mut m) = msg else { return };
    if let Some(n) = length {
        set_body_bytes(&mut m, n);
    }
    if cx.limits.max_body_bytes == 0 {
        cx.out.push(m);
    } else {
        dir.held = Some(Box::new(Held {
            msg: m,
            body: Vec::new(),
        }));
    }
}

fn keep_body(dir: &mut Dir, cx: &mut Cx<'_>, bytes: &[u8]) {
    dir.body_seen += bytes.len() as u64;
    let Some(h) = dir.held.as_mut() else { return };
    let room = cx.limits.max_body_bytes.saturating_sub(h.body.len());
    h.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
    if h.body.len() >= cx.limits.max_body_bytes
        && let Some(h) = dir.held.take()
    {
        emit_held(*h, cx.out);
    }
}

fn emit_held(h: Held, out: &mut Vec<Http1Message>) {
    let Held { mut msg, body } = h;
    let text = String::from_utf8_lossy(&body).into_owned();
    match &mut msg.head {
        Head::Request(r) => r.body = Some(text),
        Head::Response(r) => r.body = Some(text),
    }
    out.push(msg);
}

/// The current message's body ended (or its framing was lost): emit a held message.
fn end_message(dir: &mut Dir, out: &mut Vec<Http1Message>) {
    if let Some(h) = dir.held.take() {
        emit_held(*h, out);
    }
    if matches!(dir.state, State::Body { .. } | State::Chunked(_)) {
        dir.state = State::Head;
    }
}

/// Chunked body framing, byte by byte except for chunk data. Returns bytes consumed.
fn chunked(dir: &mut Dir, cx: &mut Cx<'_>, mut c: Chunk, rest: &[u8]) -> usize {
    let mut i = 0;
    while i < rest.len() {
        if let Chunk::Data { remaining } = c {
            let n = remaining.min((rest.len() - i) as u64) as usize;
            keep_body(dir, cx, &rest[i..i + n]);
            i += n;
            c = if remaining == n as u64 {
                Chunk::DataCr
            } else {
                Chunk::Data {
                    remaining: remaining - n as u64,
                }
            };
            continue;
        }
        let b = rest[i];
        i += 1;
        c = match c {
            Chunk::Size { size, digits, ext } => match b {
                b'\r' => Chunk::SizeLf { size },
                b'\n' => after_size(size),
                _ if ext => c,
                b';' | b' ' | b'\t' => Chunk::Size {
                    size,
                    digits,
                    ext: true,
                },
                _ => match (b as char).to_digit(16) {
                    Some(d) if digits < 16 => Chunk::Size {
                        size: size * 16 + u64::from(d),
                        digits: digits + 1,
                        ext,
                    },
                    _ => return chunk_error(dir, cx, i),
                },
            },
            Chunk::SizeLf { size } if b == b'\n' => after_size(size),
            Chunk::DataCr if b == b'\r' => Chunk::DataLf,
            Chunk::DataCr | Chunk::DataLf if b == b'\n' => Chunk::Size {
                size: 0,
                digits: 0,
                ext: false,
            },
            Chunk::TrailerStart => match b {
                b'\r' => Chunk::FinalLf,
                b'\n' => return chunk_done(dir, cx, i),
                _ => Chunk::TrailerLine,
            },
            Chunk::TrailerLine if b == b'\n' => Chunk::TrailerStart,
            Chunk::TrailerLine => c,
            Chunk::FinalLf if b == b'\n' => return chunk_done(dir, cx, i),
            _ => return chunk_error(dir, cx, i),
        };
    }
    dir.state = State::Chunked(c);
    i
}

fn after_size(size: u64) -> Chunk {
    if size == 0 {
        Chunk::TrailerStart
    } else {
        Chunk::Data { remaining: size }
    }
}

fn chunk_done(dir: &mut Dir, cx: &mut Cx<'_>, used: usize) -> usize {
    if let Some(h) = dir.held.as_mut() {
        set_body_bytes(&mut h.msg, dir.body_seen);
    }
    dir.state = State::Head;
    end_message(dir, cx.out);
    used
}

fn chunk_error(dir: &mut Dir, cx: &mut Cx<'_>, used: usize) -> usize {
    cx.counters.errors += 1;
    cx.counters.resyncs += 1;
    end_message(dir, cx.out);
    dir.state = State::Resync;
    used
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

/// "METHOD partial-url" from a request line cut before its end.
fn partial_request_line(buf: &[u8], ts_ns: u64) -> Option<Http1Message> {
    let line = buf.split(|b| *b == b'\n').next()?;
    let sp = memchr::memchr(b' ', line)?;
    let method = &line[..sp];
    if method.is_empty() || !method.iter().all(|b| is_method_byte(*b)) {
        return None;
    }
    let url = line[sp + 1..]
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default()
        .trim_ascii_end();
    if url.is_empty() {
        return None;
    }
    Some(Http1Message {
        ts_ns,
        head: Head::Request(HttpRequest {
            protocol: Cow::Borrowed("HTTP/1.1"),
            method: String::from_utf8_lossy(method).into_owned(),
            url: String::from_utf8_lossy(url).into_owned(),
            ..Default::default()
        }),
        truncated: true,
        upgrade_h2c: false,
    })
}

fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// How the first bytes of a direction look, for protocol detection and resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Looks {
    Yes,
    No,
    NeedMore,
}

/// Does `data` start like an HTTP/1 request line ("METHOD SP target")?
pub fn looks_like_request(data: &[u8]) -> Looks {
    for (i, &b) in data.iter().enumerate() {
        if b == b' ' {
            return if i == 0 { Looks::No } else { Looks::Yes };
        }
        if !is_method_byte(b) || i >= 20 {
            return Looks::No;
        }
    }
    Looks::NeedMore
}

/// Does `data` start like an HTTP/1 status line ("HTTP/1.x NNN")?
pub fn looks_like_response(data: &[u8]) -> Looks {
    const P: &[u8] = b"HTTP/1.";
    let n = data.len().min(P.len() + 1);
    if data[..n.min(P.len())] != P[..n.min(P.len())] {
        return Looks::No;
    }
    match data.get(P.len()) {
        None => Looks::NeedMore,
        Some(b'0' | b'1') => Looks::Yes,
        Some(_) => Looks::No,
    }
}

/// Offset of the first plausible message head in `data`, for resynchronisation.
fn find_head_start(flow: Flow, data: &[u8]) -> Option<usize> {
    match flow {
        Flow::ToClient => {
            if looks_like_response(data) != Looks::No {
                return Some(0);
            }
            memmem::find_iter(data, b"\nHTTP/1.")
                .map(|p| p + 1)
                .find(|&p| looks_like_response(&data[p..]) != Looks::No)
        }
        Flow::ToServer => {
            if looks_like_request(data) == Looks::Yes {
                return Some(0);
            }
            memmem::find_iter(data, b" HTTP/1.").find_map(|p| {
                let start = memchr::memrchr(b'\n', &data[..p]).map_or(0, |i| i + 1);
                let line = &data[start..p];
                let sp = memchr::memchr(b' ', line)?;
                let ok = sp > 0 && line[..sp].iter().all(|b| is_method_byte(*b)) && sp + 1 < line.len();
                ok.then_some(start)
            })
        }
    }
}

#[cfg(test)]
#[path = "http1_tests.rs"]
mod tests;
