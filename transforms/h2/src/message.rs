//! One request or response under construction: header blocks (headers, then trailers),
//! DATA counts, captured body, gRPC framing; turned into an [`L7Message`] when it ends.

use std::borrow::Cow;
use std::sync::Arc;

use perisco_engine::event::{ConnInfo, GrpcInfo, Header, HttpRequest, HttpResponse, Incomplete, L7Body, L7Message};

use perisco_engine::record::{Text, text_heap_bytes};

use crate::grpc::{self, Framing};
use crate::hpack::{ENTRY_OVERHEAD, Field};

/// The `incomplete` reasons this crate emits (see the crate docs).
pub mod reason {
    pub const HPACK_UNKNOWN_INDEX: &str = "hpack_unknown_index";
    pub const HPACK_ERROR: &str = "hpack_error";
    pub const REQUEST_TRUNCATED: &str = "request_truncated";
    pub const RESPONSE_TRUNCATED: &str = "response_truncated";
    pub const HEADERS_TOO_LARGE: &str = "headers_too_large";
    pub const REQUEST_RESET: &str = "request_reset";
    pub const RESPONSE_RESET: &str = "response_reset";
    pub const REQUEST_GAP: &str = "request_gap";
    pub const RESPONSE_GAP: &str = "response_gap";
    pub const REQUEST_UNFINISHED: &str = "request_unfinished";
    pub const RESPONSE_UNFINISHED: &str = "response_unfinished";
    pub const STREAM_EVICTED: &str = "stream_evicted";
}

pub const PROTOCOL: &str = "HTTP/2";

/// The fields of one decoded header block.
#[derive(Debug, Default)]
pub struct Block {
    pub method: Option<Text>,
    pub path: Option<Text>,
    pub status: Option<u16>,
    pub headers: Vec<Header>,
    /// RFC 9113 header list size so far (name + value + 32 per field).
    size: usize,
    limit: usize,
    pub too_large: bool,
    pub grpc: bool,
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    pub unknown: bool,
    pub truncated: bool,
    pub hpack_error: bool,
}

fn text(b: &[u8]) -> Text {
    match std::str::from_utf8(b) {
        Ok(s) => Text::from(s),
        Err(_) => Text::from(String::from_utf8_lossy(b)),
    }
}

impl Block {
    pub fn new(limit: usize) -> Self {
        // Typical blocks carry 5-15 regular fields: one allocation instead of regrowing.
        Block {
            limit,
            headers: Vec::with_capacity(12),
            ..Block::default()
        }
    }

    /// Add one decoded field. Pseudo-headers fill method/url/status; `:authority` is kept
    /// as a header named ":authority"; other pseudo-headers (`:scheme`, `:protocol`) are dropped.
    pub fn add(&mut self, f: Field<'_>) {
        self.size += f.name.len() + f.value.len() + ENTRY_OVERHEAD;
        if self.size > self.limit {
            self.too_large = true;
            return;
        }
        match f.name {
            b":method" => self.method = Some(text(f.value)),
            b":path" => self.path = Some(text(f.value)),
            b":status" => self.status = std::str::from_utf8(f.value).ok().and_then(|s| s.parse().ok()),
            b":authority" => self.headers.push(Header {
                key: Text::const_new(":authority"),
                value: text(f.value),
            }),
            n if n.first() == Some(&b':') => {}
            n => {
                match n {
                    b"content-type" if grpc::is_grpc_content_type(f.value) => self.grpc = true,
                    b"grpc-status" => self.grpc_status = std::str::from_utf8(f.value).ok().and_then(|s| s.parse().ok()),
                    b"grpc-message" => self.grpc_message = Some(grpc::percent_decode(f.value)),
                    _ => {}
                }
                self.headers.push(Header {
                    key: text(n),
                    value: text(f.value),
                });
            }
        }
    }

    /// Approximate heap bytes.
    pub fn memory(&self) -> usize {
        self.headers
            .iter()
            .map(|h| text_heap_bytes(&h.key) + text_heap_bytes(&h.value))
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    /// In place of a response that never began (see [`Msg::reset_placeholder`]).
    NoResponse,
}

/// gRPC state of one direction of a call.
#[derive(Debug, Default)]
pub struct GrpcPart {
    pub framing: Framing,
    pub status: Option<u32>,
    pub message: Option<String>,
}

#[derive(Debug)]
pub struct Msg {
    pub kind: Kind,
    pub ts_ns: u64,
    pub method: Text,
    pub path: Text,
    pub code: u16,
    pub headers: Vec<Header>,
    pub body_bytes: u64,
    pub body: Vec<u8>,
    /// Body capture stopped (limit reached or bytes lost).
    pub body_closed: bool,
    pub grpc: Option<GrpcPart>,
    pub incomplete: Vec<Incomplete>,
    pub memory: usize,
}

impl Msg {
    pub fn new(kind: Kind, ts_ns: u64, mut b: Block, grpc_call: bool) -> Msg {
        let mut m = Msg {
            kind,
            ts_ns,
            method: Text::default(),
            path: Text::default(),
            code: 0,
            headers: Vec::new(),
            body_bytes: 0,
            body: Vec::new(),
            body_closed: false,
            grpc: (b.grpc || grpc_call).then(GrpcPart::default),
            incomplete: Vec::new(),
            memory: 0,
        };
        m.method = b.method.take().unwrap_or_default();
        m.path = b.path.take().unwrap_or_default();
        m.code = b.status.unwrap_or(0);
        m.merge(b);
        m
    }

    /// A response that never came: the stream was reset before response headers
    /// (emitted as [`L7Body::NoResponse`]).
    pub fn reset_placeholder(ts_ns: u64) -> Msg {
        let mut m = Msg::new(Kind::NoResponse, ts_ns, Block::default(), false);
        m.mark(reason::RESPONSE_RESET);
        m
    }

    /// Headers of a later block (trailers) are appended after the first block's.
    pub fn merge(&mut self, b: Block) {
        self.memory += b.memory();
        if b.grpc && self.grpc.is_none() {
            self.grpc = Some(GrpcPart::default());
        }
        if let Some(g) = self.grpc.as_mut() {
            if b.grpc_status.is_some() {
                g.status = b.grpc_status;
            }
            if b.grpc_message.is_some() {
                g.message = b.grpc_message;
            }
        }
        if b.unknown {
            self.mark(reason::HPACK_UNKNOWN_INDEX);
        }
        if b.hpack_error {
            self.mark(reason::HPACK_ERROR);
        }
        if b.too_large {
            self.mark(reason::HEADERS_TOO_LARGE);
        }
        if b.truncated {
            self.mark(match self.kind {
                Kind::Request => reason::REQUEST_TRUNCATED,
                Kind::Response | Kind::NoResponse => reason::RESPONSE_TRUNCATED,
            });
        }
        if self.headers.is_empty() {
            self.headers = b.headers;
        } else {
            self.headers.extend(b.headers);
        }
    }

    pub fn mark(&mut self, why: &'static str) {
        if !self.incomplete.iter().any(|r| r == why) {
            self.incomplete.push(Cow::Borrowed(why));
        }
    }

    pub fn mark_gap(&mut self) {
        self.mark(match self.kind {
            Kind::Request => reason::REQUEST_GAP,
            Kind::Response | Kind::NoResponse => reason::RESPONSE_GAP,
        });
        self.body_closed = true;
    }

    /// Payload bytes of DATA frames (padding excluded), in order.
    pub fn data(&mut self, bytes: &[u8], max_body: usize) {
        if !self.body_closed && self.body.len() < max_body {
            let n = (max_body - self.body.len()).min(bytes.len());
            self.body.extend_from_slice(&bytes[..n]);
        }
        if let Some(g) = self.grpc.as_mut() {
            g.framing.feed(bytes);
        }
    }

    /// `n` payload bytes were not captured but their count is known.
    pub fn data_lost(&mut self, n: u64) {
        self.body_closed = true;
        if let Some(g) = self.grpc.as_mut() {
            g.framing.skip(n);
        }
    }

    /// Heap bytes held besides the struct itself.
    pub fn memory(&self) -> usize {
        self.memory
            + self.headers.capacity() * std::mem::size_of::<Header>()
            + self.body.capacity()
            + text_heap_bytes(&self.method)
            + text_heap_bytes(&self.path)
    }

    /// The message to emit. `call` is the gRPC (service, method) of the stream, when known.
    pub fn into_message(mut self, conn: &Arc<ConnInfo>, stream_id: u32, call: Option<&(Text, Text)>) -> L7Message {
        // Blocks start with room for a typical header count; the message keeps only what
        // it uses (it may wait in `match` for a long time). Shrinking in place is cheap.
        self.headers.shrink_to_fit();
        let body = (!self.body.is_empty()).then(|| Box::<str>::from(String::from_utf8_lossy(&self.body)));
        let grpc = self.grpc.map(|g| {
            let (service, method) = call.cloned().unwrap_or_default();
            let mut info = GrpcInfo {
                service,
                method,
                status: g.status,
                message: g.message,
                ..GrpcInfo::default()
            };
            // Counts that lost their place (a message boundary in bytes not captured, or an
            // unknown flag) would only be lower bounds: left out, not reported as exact.
            let counts = (!g.framing.broken).then_some((g.framing.messages, g.framing.bytes));
            match self.kind {
                Kind::Request => {
                    info.request_messages = counts.map(|c| c.0);
                    info.request_bytes = counts.map(|c| c.1);
                }
                Kind::Response => {
                    info.response_messages = counts.map(|c| c.0);
                    info.response_bytes = counts.map(|c| c.1);
                }
                Kind::NoResponse => {}
            }
            Box::new(info)
        });
        let body_kind = match self.kind {
            Kind::Request => L7Body::Request(HttpRequest {
                protocol: Cow::Borrowed(PROTOCOL),
                method: self.method,
                url: self.path,
                headers: self.headers,
                body_bytes: Some(self.body_bytes),
                body,
            }),
            Kind::Response => L7Body::Response(HttpResponse {
                protocol: Cow::Borrowed(PROTOCOL),
                code: self.code,
                headers: self.headers,
                body_bytes: Some(self.body_bytes),
                body,
            }),
            Kind::NoResponse => L7Body::NoResponse,
        };
        L7Message {
            conn: Arc::clone(conn),
            ts_ns: self.ts_ns,
            stream_id: Some(stream_id),
            body: body_kind,
            grpc,
            incomplete: self.incomplete,
        }
    }
}
