//! Connection state shared by both directions: HPACK decoders, header blocks spanning
//! CONTINUATION frames, streams and their messages. The frame reader (conn.rs) calls in
//! with whole frames (or DATA payload pieces).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use perisco_engine::event::{ConnInfo, L7Message};
use perisco_engine::record::{Text, text_heap_bytes};

use crate::conn::{Http2Options, Http2Stats, Side};
use crate::frame::{self, FrameHeader};
use crate::grpc;
use crate::hpack::{Decoder, HpackError};
use crate::message::{Block, Kind, Msg, reason};

/// Stream ids are small integers chosen by the peers: a multiplicative hash is enough.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
pub struct PendingBlock {
    pub stream: u32,
    pub end_stream: bool,
    pub push: Push,
    pub ts: u64,
    pub buf: Vec<u8>,
}

/// Whether a header block is a PUSH_PROMISE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    No,
    /// The stream it promises (None when that part of the frame was not captured).
    Promise(Option<u32>),
}

#[derive(Debug, Default)]
pub struct Stream {
    // Boxed: a stream waiting for its response (the request already emitted) then costs
    // a few words in the stream table instead of two inline messages.
    pub req: Option<Box<Msg>>,
    pub resp: Option<Box<Msg>>,
    /// The request was emitted (or is not ours to emit: upgrade, or never seen).
    pub req_done: bool,
    pub resp_done: bool,
    /// gRPC (service, method) when the request said so.
    pub call: Option<Box<(Text, Text)>>,
}

pub struct Core {
    pub conn: Arc<ConnInfo>,
    pub opts: Http2Options,
    pub decoders: [Decoder; 2],
    /// Boxed: blocks spanning CONTINUATION frames are rare; idle connections stay small.
    pub pending: [Option<Box<PendingBlock>>; 2],
    /// Largest frame each side may send (raised by the other side's SETTINGS).
    pub max_frame: [u32; 2],
    /// A header block was decoded on this side (so its table is no longer "from the start").
    pub blocks_seen: [bool; 2],
    /// The client preface was seen: the connection is watched from its start.
    pub from_start: bool,
    pub streams: HashMap<u32, Stream, BuildHasherDefault<IdHasher>>,
    pub stats: Http2Stats,
}

impl Core {
    pub fn new(conn: Arc<ConnInfo>, opts: Http2Options) -> Core {
        Core {
            conn,
            opts,
            decoders: [Decoder::partial(), Decoder::partial()],
            pending: [None, None],
            max_frame: [frame::DEFAULT_MAX_FRAME; 2],
            blocks_seen: [false; 2],
            from_start: false,
            streams: HashMap::default(),
            stats: Http2Stats::default(),
        }
    }

    /// Largest payload buffered for a non-DATA frame, and largest header block.
    pub fn block_cap(&self) -> usize {
        self.opts.max_header_list_bytes.max(frame::DEFAULT_MAX_FRAME as usize) + frame::DEFAULT_MAX_FRAME as usize
    }

    /// Largest frame length accepted from `side`.
    pub fn frame_limit(&self, side: Side) -> u32 {
        if self.from_start {
            self.max_frame[side.idx()]
        } else {
            frame::MAX_FRAME_LIMIT
        }
    }

    pub fn preface_seen(&mut self) {
        self.from_start = true;
        for i in 0..2 {
            if !self.blocks_seen[i] {
                self.decoders[i].set_partial(false);
            }
        }
    }

    /// A complete non-DATA frame.
    pub fn on_frame(&mut self, side: Side, h: &FrameHeader, payload: &[u8], ts: u64, out: &mut Vec<L7Message>) {
        let i = side.idx();
        match h.kind {
            frame::HEADERS | frame::PUSH_PROMISE => {
                if let Some(p) = self.pending[i].take() {
                    // A new block while CONTINUATION was expected: the old one is cut short.
                    self.stats.frame_errors += 1;
                    self.finish_pending(side, *p, true, out);
                }
                let Some(frag) = fragment(h, payload, true) else {
                    self.stats.frame_errors += 1;
                    return;
                };
                let push = push_of(h, payload);
                if h.has(frame::END_HEADERS) {
                    self.block(side, h.stream, h.has(frame::END_STREAM), push, ts, frag, false, out);
                } else {
                    self.pending[i] = Some(Box::new(PendingBlock {
                        stream: h.stream,
                        end_stream: h.has(frame::END_STREAM) && push == Push::No,
                        push,
                        ts,
                        buf: frag.to_vec(),
                    }));
                }
            }
            frame::CONTINUATION => self.continuation(side, h, payload, false, out),
            frame::RST_STREAM => {
                let code = payload.first_chunk::<4>().map(|c| u32::from_be_bytes(*c));
                self.reset(side, h.stream, code, ts, out);
            }
            frame::SETTINGS if !h.has(frame::ACK) => {
                // Settings bound what the other side may send.
                let other = side.other().idx();
                for s in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([s[0], s[1]]);
                    let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                    match id {
                        frame::SETTINGS_HEADER_TABLE_SIZE => self.decoders[other].advertise_limit(v),
                        frame::SETTINGS_MAX_FRAME_SIZE => {
                            self.max_frame[other] = self.max_frame[other].max(v.min(frame::MAX_FRAME_LIMIT));
                        }
                        _ => {}
                    }
                }
            }
            frame::GOAWAY => self.stats.goaways += 1,
            _ => {}
        }
    }

    /// A CONTINUATION frame, or the part of one captured before a cut (`truncated`).
    pub fn continuation(
        &mut self,
        side: Side,
        h: &FrameHeader,
        payload: &[u8],
        truncated: bool,
        out: &mut Vec<L7Message>,
    ) {
        let i = side.idx();
        let cap = self.block_cap();
        match self.pending[i].take() {
            Some(mut p) if p.stream == h.stream => {
                let too_big = p.buf.len() + payload.len() > cap;
                let room = cap.saturating_sub(p.buf.len()).min(payload.len());
                p.buf.extend_from_slice(&payload[..room]);
                if too_big || truncated {
                    self.finish_pending(side, *p, true, out);
                } else if h.has(frame::END_HEADERS) {
                    self.finish_pending(side, *p, false, out);
                } else {
                    self.pending[i] = Some(p);
                }
            }
            other => {
                // CONTINUATION without its HEADERS (lost before a gap): cannot decode a block's tail.
                self.stats.frame_errors += 1;
                if let Some(p) = other {
                    self.finish_pending(side, *p, true, out);
                }
            }
        }
    }

    /// The captured start of a header-carrying frame that was cut (gap, close, too large).
    pub fn cut_frame(&mut self, side: Side, h: &FrameHeader, partial: &[u8], ts: u64, out: &mut Vec<L7Message>) {
        match h.kind {
            frame::HEADERS | frame::PUSH_PROMISE => {
                if let Some(p) = self.pending[side.idx()].take() {
                    self.finish_pending(side, *p, true, out);
                }
                // Only the fragment part of what was captured: padding is at the end.
                let frag = fragment(h, partial, false).unwrap_or_default();
                let push = push_of(h, partial);
                let end = h.has(frame::END_STREAM) && push == Push::No;
                self.block(side, h.stream, end, push, ts, frag, true, out);
            }
            frame::CONTINUATION => self.continuation(side, h, partial, true, out),
            _ => {}
        }
    }

    /// A block still waiting for CONTINUATION when bytes were lost or the connection closed.
    pub fn cut_pending(&mut self, side: Side, out: &mut Vec<L7Message>) {
        if let Some(p) = self.pending[side.idx()].take() {
            self.finish_pending(side, *p, true, out);
        }
    }

    fn finish_pending(&mut self, side: Side, p: PendingBlock, truncated: bool, out: &mut Vec<L7Message>) {
        self.block(side, p.stream, p.end_stream, p.push, p.ts, &p.buf, truncated, out);
    }

    /// Decode one header block (always: the table must follow) and apply it to its stream.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        side: Side,
        stream: u32,
        end_stream: bool,
        push: Push,
        ts: u64,
        frag: &[u8],
        truncated: bool,
        out: &mut Vec<L7Message>,
    ) {
        let i = side.idx();
        self.stats.header_blocks += 1;
        self.blocks_seen[i] = true;
        let mut b = Block::new(self.opts.max_header_list_bytes);
        let st = self.decoders[i].decode(frag, |f| b.add(f));
        self.stats.hpack_unknown_indexes += u64::from(st.unknown);
        self.stats.hpack_errors += u64::from(st.invalid_index + st.soft_errors);
        b.unknown = st.unknown > 0;
        match st.error {
            Some(HpackError::Truncated) if truncated => {}
            Some(_) => {
                self.stats.hpack_errors += 1;
                b.hpack_error = true;
            }
            None => {}
        }
        if truncated {
            self.stats.truncated_blocks += 1;
            b.truncated = true;
        }
        if truncated || st.error.is_some() {
            // The rest of the block may have changed the table.
            self.decoders[i].forget();
        }
        if let Push::Promise(promised) = push {
            self.stats.push_promises += 1;
            if let Some(id) = promised {
                self.promised_request(id, ts, b, out);
            }
            return;
        }
        match side {
            Side::Client => self.request_block(stream, end_stream, ts, b, out),
            Side::Server => self.response_block(stream, end_stream, ts, b, out),
        }
    }

    fn request_block(&mut self, id: u32, end_stream: bool, ts: u64, b: Block, out: &mut Vec<L7Message>) {
        if id.is_multiple_of(2) {
            self.stats.frame_errors += 1;
            return;
        }
        self.ensure_stream(id, false, out);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.req_done {
            self.stats.ignored_blocks += 1;
            return;
        }
        match s.req.as_mut() {
            None => {
                if b.grpc {
                    s.call = Some(Box::new(grpc::split_path(b.path.as_deref().unwrap_or(""))));
                }
                let m = Msg::new(Kind::Request, ts, b, false);
                if end_stream {
                    // A request in one block (a GET): emitted at once, never boxed.
                    s.req_done = true;
                    self.stats.requests += 1;
                    out.push(m.into_message(&self.conn, id, s.call.as_deref()));
                    if s.resp_done {
                        self.remove_stream(id);
                    }
                    return;
                }
                s.req = Some(Box::new(m));
            }
            Some(m) => m.merge(b),
        }
        if end_stream {
            self.finish(Side::Client, id, out);
        }
    }

    /// A server push: the PUSH_PROMISE's header block is the request of the exchange on the
    /// promised stream (from the time of the promise); the response follows on that stream.
    fn promised_request(&mut self, id: u32, ts: u64, b: Block, out: &mut Vec<L7Message>) {
        if id == 0 || !id.is_multiple_of(2) || self.streams.contains_key(&id) {
            self.stats.frame_errors += 1;
            return;
        }
        self.ensure_stream(id, false, out);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.req_done = true;
        self.stats.requests += 1;
        out.push(Msg::new(Kind::Request, ts, b, false).into_message(&self.conn, id, None));
    }

    fn response_block(&mut self, id: u32, end_stream: bool, ts: u64, b: Block, out: &mut Vec<L7Message>) {
        if id.is_multiple_of(2) && !self.streams.contains_key(&id) {
            // A pushed response whose PUSH_PROMISE was not seen (lost in a gap, or before the
            // capture began): a response without its request, like any other.
            self.stats.pushed_responses += 1;
        }
        self.ensure_stream(id, true, out);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.resp_done {
            self.stats.ignored_blocks += 1;
            return;
        }
        match s.resp.as_mut() {
            None => {
                if let Some(code @ 100..=199) = b.status
                    && code != 101
                {
                    self.stats.informational += 1;
                    return;
                }
                let grpc_call = s.call.is_some();
                s.resp = Some(Box::new(Msg::new(Kind::Response, ts, b, grpc_call)));
            }
            Some(m) => m.merge(b),
        }
        if end_stream {
            self.finish(Side::Server, id, out);
        }
    }

    /// Create stream `id` if absent, evicting the oldest when full. A stream first seen
    /// from its response never had a request we could see.
    fn ensure_stream(&mut self, id: u32, from_response: bool, out: &mut Vec<L7Message>) {
        if self.streams.contains_key(&id) {
            return;
        }
        if self.streams.len() >= self.opts.max_streams.max(1) {
            self.evict_oldest(out);
        }
        self.streams.insert(
            id,
            Stream {
                req_done: from_response,
                ..Stream::default()
            },
        );
    }

    fn evict_oldest(&mut self, out: &mut Vec<L7Message>) {
        let Some(&oldest) = self.streams.keys().min() else {
            return;
        };
        if let Some(s) = self.streams.remove(&oldest) {
            self.stats.streams_evicted += 1;
            self.flush_stream(oldest, s, reason::STREAM_EVICTED, reason::STREAM_EVICTED, out);
        }
    }

    fn flush_stream(
        &mut self,
        id: u32,
        mut s: Stream,
        req_why: &'static str,
        resp_why: &'static str,
        out: &mut Vec<L7Message>,
    ) {
        if let Some(mut m) = s.req.take() {
            m.mark(req_why);
            self.stats.requests += 1;
            out.push(m.into_message(&self.conn, id, s.call.as_deref()));
        }
        if let Some(mut m) = s.resp.take() {
            m.mark(resp_why);
            self.stats.responses += 1;
            out.push(m.into_message(&self.conn, id, s.call.as_deref()));
        }
    }

    /// The message of `side` on stream `id` ended: emit it (a response ends its request too).
    pub fn finish(&mut self, side: Side, id: u32, out: &mut Vec<L7Message>) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if let Some(m) = s.req.take() {
            s.req_done = true;
            self.stats.requests += 1;
            out.push(m.into_message(&self.conn, id, s.call.as_deref()));
        }
        if side == Side::Server
            && let Some(m) = s.resp.take()
        {
            s.resp_done = true;
            self.stats.responses += 1;
            out.push(m.into_message(&self.conn, id, s.call.as_deref()));
        }
        if s.req_done && s.resp_done {
            self.remove_stream(id);
        }
    }

    fn remove_stream(&mut self, id: u32) {
        self.streams.remove(&id);
        if self.streams.is_empty() {
            // An idle connection keeps no stream table (it is reallocated on the next stream).
            self.streams = HashMap::default();
        }
    }

    /// RST_STREAM (`code`: its error code) from either side: what is open on the stream
    /// ends, marked. A server's NO_ERROR after its response headers ends that response as
    /// sent (RFC 9113 §8.1: a server may answer before the request is complete and then
    /// reset the stream; node's http2 ends body-less responses this way), not as reset.
    pub fn reset(&mut self, side: Side, id: u32, code: Option<u32>, ts: u64, out: &mut Vec<L7Message>) {
        self.stats.resets += 1;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if let Some(m) = s.req.as_mut() {
            m.mark(reason::REQUEST_RESET);
        }
        let ended_by_server = side == Side::Server && code == Some(frame::NO_ERROR);
        if !s.resp_done {
            match s.resp.as_mut() {
                Some(_) if ended_by_server => {}
                Some(m) => m.mark(reason::RESPONSE_RESET),
                None => s.resp = Some(Box::new(Msg::reset_placeholder(ts))),
            }
        }
        self.finish(Side::Server, id, out);
    }

    pub fn msg_mut(&mut self, side: Side, id: u32) -> Option<&mut Msg> {
        let s = self.streams.get_mut(&id)?;
        match side {
            Side::Client => s.req.as_deref_mut(),
            Side::Server => s.resp.as_deref_mut(),
        }
    }

    /// DATA frame header read: count its payload (padding excluded once known).
    pub fn data_start(&mut self, side: Side, h: &FrameHeader) {
        match self.msg_mut(side, h.stream) {
            Some(m) => {
                if !h.has(frame::PADDED) {
                    m.body_bytes += u64::from(h.len);
                }
            }
            None => self.stats.data_without_headers += 1,
        }
    }

    pub fn data_pad(&mut self, side: Side, h: &FrameHeader, pad: u8) {
        let Some(n) = h.len.checked_sub(1 + u32::from(pad)) else {
            self.stats.frame_errors += 1;
            return;
        };
        if let Some(m) = self.msg_mut(side, h.stream) {
            m.body_bytes += u64::from(n);
        }
    }

    pub fn data_chunk(&mut self, side: Side, id: u32, bytes: &[u8]) {
        let max = self.opts.max_body_bytes;
        if let Some(m) = self.msg_mut(side, id) {
            m.data(bytes, max);
        }
    }

    pub fn data_lost(&mut self, side: Side, id: u32, n: u64) {
        if let Some(m) = self.msg_mut(side, id) {
            m.data_lost(n);
        }
    }

    pub fn data_end(&mut self, side: Side, h: &FrameHeader, out: &mut Vec<L7Message>) {
        if h.has(frame::END_STREAM) {
            self.finish(side, h.stream, out);
        }
    }

    /// Bytes of `side` were lost: every message of that side still open may miss data.
    pub fn mark_open(&mut self, side: Side) {
        for s in self.streams.values_mut() {
            let m = match side {
                Side::Client => s.req.as_deref_mut(),
                Side::Server => s.resp.as_deref_mut(),
            };
            if let Some(m) = m {
                m.mark_gap();
            }
        }
    }

    /// Connection closed: emit every open message, marked unfinished, oldest stream first.
    pub fn close(&mut self, out: &mut Vec<L7Message>) {
        for side in [Side::Client, Side::Server] {
            self.cut_pending(side, out);
        }
        let mut ids: Vec<u32> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(s) = self.streams.remove(&id) {
                self.flush_stream(id, s, reason::REQUEST_UNFINISHED, reason::RESPONSE_UNFINISHED, out);
            }
        }
    }

    /// Heap bytes held (the struct itself lives in its `Http2Conn`).
    pub fn memory(&self) -> usize {
        let streams: usize = self
            .streams
            .values()
            .map(|s| {
                s.req.as_ref().map_or(0, |m| size_of::<Msg>() + m.memory())
                    + s.resp.as_ref().map_or(0, |m| size_of::<Msg>() + m.memory())
                    + s.call.as_ref().map_or(0, |c| {
                        size_of::<(Text, Text)>() + text_heap_bytes(&c.0) + text_heap_bytes(&c.1)
                    })
            })
            .sum();
        // The stream table's slots (key, value, control byte), used or not.
        let table = self.streams.capacity() * (size_of::<u32>() + size_of::<Stream>() + 1);
        let pending: usize = self
            .pending
            .iter()
            .flatten()
            .map(|p| size_of::<PendingBlock>() + p.buf.capacity())
            .sum();
        table + streams + pending + self.decoders.iter().map(Decoder::memory).sum::<usize>()
    }
}

/// A PUSH_PROMISE and its promised stream id (when `payload` holds it), or not a push.
fn push_of(h: &FrameHeader, payload: &[u8]) -> Push {
    if h.kind != frame::PUSH_PROMISE {
        return Push::No;
    }
    let at = usize::from(h.has(frame::PADDED));
    Push::Promise(
        payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff),
    )
}

/// The header block fragment of a HEADERS / PUSH_PROMISE payload. With `complete` false the
/// payload is only the captured start of the frame: the fragment is what of it precedes the padding.
fn fragment<'a>(h: &FrameHeader, payload: &'a [u8], complete: bool) -> Option<&'a [u8]> {
    let mut start = 0usize;
    let mut pad = 0usize;
    if h.has(frame::PADDED) {
        pad = usize::from(*payload.first()?);
        start = 1;
    }
    if h.kind == frame::HEADERS && h.has(frame::PRIORITY_FLAG) {
        start += 5;
    }
    if h.kind == frame::PUSH_PROMISE {
        start += 4;
    }
    let end = (h.len as usize).checked_sub(pad)?;
    if end < start {
        return None;
    }
    if complete {
        payload.get(start..end)
    } else {
        Some(payload.get(start..end.min(payload.len())).unwrap_or_default())
    }
}
