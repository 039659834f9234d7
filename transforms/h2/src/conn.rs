//! [`Http2Conn`]: the per-connection entry point, and the frame reader of each side.
//!
//! Each side's bytes go through a small state machine (preface → frame header → payload),
//! which accepts input split or coalesced at any byte boundary. DATA payloads are streamed
//! (never buffered); other frames are buffered only when they straddle two chunks.

use std::sync::Arc;

use perisco_engine::event::{ConnInfo, L7Message};

use crate::core::Core;
use crate::frame::{self, FrameHeader, HEADER_LEN, PREFACE};

/// Limits of one connection's parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Options {
    /// Body bytes captured per message (lossy UTF-8 in `body`); 0 = none.
    pub max_body_bytes: usize,
    /// Open streams tracked; the oldest is evicted (and counted) beyond.
    pub max_streams: usize,
    /// Decoded header list size per block (RFC 9113 accounting: name + value + 32);
    /// fields beyond are dropped and the message marked `headers_too_large`.
    pub max_header_list_bytes: usize,
}

impl Default for Http2Options {
    fn default() -> Self {
        Http2Options {
            max_body_bytes: 0,
            max_streams: 1024,
            max_header_list_bytes: 64 * 1024,
        }
    }
}

/// Which side sent the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub(crate) fn idx(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }

    pub(crate) fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// The bytes are not HTTP/2: the caller should stop feeding this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not HTTP/2")]
pub struct NotHttp2;

/// Counters since the connection's parser was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Http2Stats {
    pub bytes: u64,
    pub frames: u64,
    /// Malformed frames: bad lengths for their type, bad padding, CONTINUATION out of place...
    pub frame_errors: u64,
    /// Frames of types this parser does not know (ignored, as the protocol requires).
    pub unknown_frames: u64,
    pub header_blocks: u64,
    /// Header blocks that could not be decoded to their end, or protocol errors in them.
    pub hpack_errors: u64,
    /// Header fields dropped because they referenced a table entry we never saw.
    pub hpack_unknown_indexes: u64,
    /// Header blocks cut by lost bytes, capture truncation or the size cap.
    pub truncated_blocks: u64,
    pub requests: u64,
    pub responses: u64,
    pub informational: u64,
    pub resets: u64,
    pub goaways: u64,
    /// PUSH_PROMISEs: each is the request of the pushed exchange on its promised stream.
    pub push_promises: u64,
    /// Responses on server-initiated streams whose PUSH_PROMISE was not seen.
    pub pushed_responses: u64,
    pub streams_evicted: u64,
    pub data_without_headers: u64,
    pub ignored_blocks: u64,
    pub gaps: u64,
    pub resyncs: u64,
    /// Bytes skipped while looking for a frame boundary after a gap.
    pub resync_skipped_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
enum ReadState {
    /// Client side: matching the preface; bytes matched so far.
    Preface(usize),
    Header,
    /// Buffering the payload of a non-DATA frame.
    Payload(FrameHeader),
    /// Streaming a DATA payload: bytes consumed, padding length (once read).
    Data {
        h: FrameHeader,
        pos: u32,
        pad: u8,
    },
    /// Discarding the rest of a frame.
    Skip(u64),
    /// After lost bytes: looking for a plausible frame header.
    Resync,
}

/// Bytes a candidate frame may span before resynchronisation decides without seeing its end.
const RESYNC_WINDOW: usize = 64 * 1024;

struct Reader {
    state: ReadState,
    hdr: [u8; HEADER_LEN],
    hdr_len: u8,
    buf: Vec<u8>,
    /// Time of the chunk holding the first byte of the current frame.
    frame_ts: u64,
    /// A valid frame or the preface was seen on this side.
    confirmed: bool,
    /// Resync: first chunk after the gap (its first byte is likely a frame start).
    fresh: bool,
}

impl Reader {
    fn new(state: ReadState) -> Reader {
        Reader {
            state,
            hdr: [0; HEADER_LEN],
            hdr_len: 0,
            buf: Vec::new(),
            frame_ts: 0,
            confirmed: false,
            fresh: false,
        }
    }
}

/// Passive parser of one HTTP/2 connection (both directions).
pub struct Http2Conn {
    readers: [Reader; 2],
    core: Core,
}

impl Http2Conn {
    pub fn new(conn: Arc<ConnInfo>, opts: Http2Options) -> Self {
        Http2Conn {
            readers: [Reader::new(ReadState::Preface(0)), Reader::new(ReadState::Header)],
            core: Core::new(conn, opts),
        }
    }

    /// After an HTTP/1.1 `Upgrade: h2c` + `101`: stream 1 is the upgraded request (already
    /// emitted by the HTTP/1 parser with stream_id Some(1)); its response arrives as HTTP/2
    /// on stream 1. Feed the client's bytes from its preface and the server's from the first
    /// byte after the 101 response.
    pub fn upgraded(conn: Arc<ConnInfo>, opts: Http2Options) -> Self {
        let mut c = Http2Conn::new(conn, opts);
        c.core.preface_seen();
        c.core.streams.insert(
            1,
            crate::core::Stream {
                req_done: true,
                ..Default::default()
            },
        );
        c
    }

    /// Feed bytes in arrival order for one side; complete messages are appended to `out`.
    /// `truncated`: the capture cut this chunk short, so what follows is a gap (see [`Http2Conn::gap`];
    /// when the number of lost bytes is known, prefer `truncated = false` + [`Http2Conn::skip`]).
    /// Returns `Err` only while nothing on the connection looked like HTTP/2.
    pub fn feed(
        &mut self,
        side: Side,
        data: &[u8],
        ts_ns: u64,
        truncated: bool,
        out: &mut Vec<L7Message>,
    ) -> Result<(), NotHttp2> {
        self.core.stats.bytes += data.len() as u64;
        let mut again = self.run(side, data, ts_ns, out)?;
        while let Some(v) = again {
            again = self.run(side, &v, ts_ns, out)?;
        }
        if truncated {
            self.gap(side, out);
        }
        Ok(())
    }

    /// Bytes were lost on `side` (how many is unknown): open messages of that side are marked,
    /// a header block in progress is decoded as far as it goes, the HPACK table of that side
    /// is forgotten (later dynamic references decode as unknown), and reading resumes at the
    /// next plausible frame header.
    pub fn gap(&mut self, side: Side, out: &mut Vec<L7Message>) {
        let i = side.idx();
        self.core.stats.gaps += 1;
        let r = &mut self.readers[i];
        match r.state {
            ReadState::Payload(h) => self.core.cut_frame(side, &h, &r.buf, r.frame_ts, out),
            ReadState::Data { h, .. } => {
                if let Some(m) = self.core.msg_mut(side, h.stream) {
                    m.mark_gap();
                }
                // The frame said END_STREAM: its message ends even though its bytes are gone.
                self.core.data_end(side, &h, out);
            }
            _ => {}
        }
        self.core.cut_pending(side, out);
        self.core.mark_open(side);
        self.core.decoders[i].forget();
        let r = &mut self.readers[i];
        r.buf.clear();
        r.hdr_len = 0;
        r.state = ReadState::Resync;
        r.fresh = true;
    }

    /// `lost` bytes of `side` were not captured, but their count is known (the rest of a
    /// write cut by the capture length). Inside a DATA payload this keeps the parser in step
    /// (counts stay exact, gRPC framing too when the loss is within one message); anywhere
    /// else it is a [`Http2Conn::gap`].
    pub fn skip(&mut self, side: Side, lost: u64, out: &mut Vec<L7Message>) {
        if lost == 0 {
            return;
        }
        let i = side.idx();
        match self.readers[i].state {
            ReadState::Skip(n) if lost <= n => {
                self.readers[i].state = if lost == n {
                    ReadState::Header
                } else {
                    ReadState::Skip(n - lost)
                };
            }
            ReadState::Data { h, pos, pad } if (pos > 0 || !h.has(frame::PADDED)) && lost <= u64::from(h.len - pos) => {
                let new_pos = pos + lost as u32;
                let data_end = h
                    .len
                    .saturating_sub(if h.has(frame::PADDED) { u32::from(pad) } else { 0 });
                let data_lost = data_end.min(new_pos).saturating_sub(pos);
                self.core.data_lost(side, h.stream, u64::from(data_lost));
                if new_pos == h.len {
                    self.readers[i].state = ReadState::Header;
                    self.core.data_end(side, &h, out);
                } else {
                    self.readers[i].state = ReadState::Data { h, pos: new_pos, pad };
                }
            }
            _ => self.gap(side, out),
        }
    }

    /// Connection closed: a header block cut by the close is decoded as far as it goes; open
    /// messages are emitted marked `request_unfinished` / `response_unfinished`. Requests
    /// already emitted without a response are left to `match` (it knows the timeout).
    pub fn close(&mut self, _ts_ns: u64, out: &mut Vec<L7Message>) {
        for side in [Side::Client, Side::Server] {
            let r = &mut self.readers[side.idx()];
            if let ReadState::Payload(h) = r.state {
                self.core.cut_frame(side, &h, &r.buf, r.frame_ts, out);
            }
            let r = &mut self.readers[side.idx()];
            r.state = ReadState::Resync;
            r.buf = Vec::new();
        }
        self.core.close(out);
    }

    /// Approximate bytes of state held.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.readers.iter().map(|r| r.buf.capacity()).sum::<usize>() + self.core.memory()
    }

    pub fn stats(&self) -> &Http2Stats {
        &self.core.stats
    }

    /// One pass over `input`. Returns bytes to run again after a resynchronisation found a boundary.
    fn run(
        &mut self,
        side: Side,
        mut input: &[u8],
        ts: u64,
        out: &mut Vec<L7Message>,
    ) -> Result<Option<Vec<u8>>, NotHttp2> {
        let i = side.idx();
        let other_confirmed = self.readers[1 - i].confirmed;
        let r = &mut self.readers[i];
        let core = &mut self.core;
        loop {
            match r.state {
                ReadState::Preface(m) => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let n = (PREFACE.len() - m).min(input.len());
                    if input[..n] == PREFACE[m..m + n] {
                        input = &input[n..];
                        if m + n == PREFACE.len() {
                            r.state = ReadState::Header;
                            r.confirmed = true;
                            core.preface_seen();
                        } else {
                            r.state = ReadState::Preface(m + n);
                        }
                    } else if m == 0 {
                        // No preface: a capture that starts after it.
                        r.state = ReadState::Header;
                    } else if other_confirmed {
                        r.state = ReadState::Resync;
                        r.fresh = true;
                    } else {
                        return Err(NotHttp2);
                    }
                }
                ReadState::Header => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let raw: [u8; HEADER_LEN] = if r.hdr_len == 0 && input.len() >= HEADER_LEN {
                        r.frame_ts = ts;
                        let mut raw = [0u8; HEADER_LEN];
                        raw.copy_from_slice(&input[..HEADER_LEN]);
                        input = &input[HEADER_LEN..];
                        raw
                    } else {
                        if r.hdr_len == 0 {
                            r.frame_ts = ts;
                        }
                        let have = usize::from(r.hdr_len);
                        let n = (HEADER_LEN - have).min(input.len());
                        r.hdr[have..have + n].copy_from_slice(&input[..n]);
                        r.hdr_len = (have + n) as u8;
                        input = &input[n..];
                        if have + n < HEADER_LEN {
                            return Ok(None);
                        }
                        r.hdr_len = 0;
                        r.hdr
                    };
                    let h = FrameHeader::parse(&raw);
                    let ok = if r.confirmed {
                        h.len <= core.frame_limit(side) && h.well_formed()
                    } else {
                        FrameHeader::plausible(&raw, frame::DEFAULT_MAX_FRAME.max(core.max_frame[i]))
                    };
                    if !ok {
                        if !r.confirmed && !other_confirmed {
                            return Err(NotHttp2);
                        }
                        core.stats.frame_errors += 1;
                        // Lost framing: behave as after a gap, scanning from the byte after this header.
                        let mut rest = Vec::with_capacity(HEADER_LEN - 1 + input.len());
                        rest.extend_from_slice(&raw[1..]);
                        rest.extend_from_slice(input);
                        Self::lose_sync(r, core, side, out);
                        r.fresh = false;
                        r.buf = rest;
                        input = &[];
                        continue;
                    }
                    r.confirmed = true;
                    core.stats.frames += 1;
                    match h.kind {
                        frame::DATA => {
                            core.data_start(side, &h);
                            r.state = ReadState::Data { h, pos: 0, pad: 0 };
                            if h.len == 0 {
                                r.state = ReadState::Header;
                                core.data_end(side, &h, out);
                            }
                        }
                        frame::HEADERS
                        | frame::PUSH_PROMISE
                        | frame::CONTINUATION
                        | frame::SETTINGS
                        | frame::RST_STREAM
                        | frame::GOAWAY
                        | frame::PING
                        | frame::PRIORITY
                        | frame::WINDOW_UPDATE => {
                            let len = h.len as usize;
                            if len > core.block_cap() {
                                // Too large to buffer: decode what fits as a cut block, skip the rest.
                                core.stats.frame_errors += 1;
                                let n = input.len().min(core.block_cap());
                                core.cut_frame(side, &h, &input[..n], r.frame_ts, out);
                                r.state = ReadState::Skip(u64::from(h.len));
                            } else if input.len() >= len {
                                core.on_frame(side, &h, &input[..len], r.frame_ts, out);
                                input = &input[len..];
                            } else {
                                r.buf.clear();
                                r.buf.extend_from_slice(input);
                                input = &[];
                                r.state = ReadState::Payload(h);
                            }
                        }
                        _ => {
                            core.stats.unknown_frames += 1;
                            r.state = ReadState::Skip(u64::from(h.len));
                        }
                    }
                }
                ReadState::Payload(h) => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let n = (h.len as usize - r.buf.len()).min(input.len());
                    r.buf.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    if r.buf.len() == h.len as usize {
                        r.state = ReadState::Header;
                        core.on_frame(side, &h, &r.buf, r.frame_ts, out);
                        // Released, not kept: an idle connection holds no frame buffer.
                        r.buf = Vec::new();
                    }
                }
                ReadState::Data { h, mut pos, mut pad } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    if pos == 0 && h.has(frame::PADDED) {
                        pad = input[0];
                        pos = 1;
                        input = &input[1..];
                        core.data_pad(side, &h, pad);
                    }
                    let data_end = if h.has(frame::PADDED) {
                        h.len.saturating_sub(u32::from(pad)).max(1)
                    } else {
                        h.len
                    };
                    let n = ((h.len - pos) as usize).min(input.len());
                    if pos < data_end {
                        let m = ((data_end - pos) as usize).min(n);
                        core.data_chunk(side, h.stream, &input[..m]);
                    }
                    pos += n as u32;
                    input = &input[n..];
                    if pos == h.len {
                        r.state = ReadState::Header;
                        core.data_end(side, &h, out);
                    } else {
                        r.state = ReadState::Data { h, pos, pad };
                    }
                }
                ReadState::Skip(n) => {
                    if n == 0 {
                        r.state = ReadState::Header;
                        continue;
                    }
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let k = (n.min(input.len() as u64)) as usize;
                    input = &input[k..];
                    r.state = if k as u64 == n {
                        ReadState::Header
                    } else {
                        ReadState::Skip(n - k as u64)
                    };
                }
                ReadState::Resync => {
                    r.buf.extend_from_slice(input);
                    let max_len = core.frame_limit(side).min(RESYNC_WINDOW as u32);
                    match find_boundary(&r.buf, 0, r.fresh, max_len) {
                        Some(k) => {
                            core.stats.resyncs += 1;
                            core.stats.resync_skipped_bytes += k as u64;
                            let mut v = std::mem::take(&mut r.buf);
                            v.drain(..k);
                            r.state = ReadState::Header;
                            r.fresh = false;
                            r.confirmed = true;
                            return Ok(Some(v));
                        }
                        None => {
                            // Too few bytes yet to judge the first offset after the gap: keep it special.
                            r.fresh = r.fresh && r.buf.len() < HEADER_LEN;
                            // Keep at most the last window of bytes: any boundary before it was rejected.
                            let undecided = undecided_from(&r.buf, max_len);
                            if undecided > 0 {
                                core.stats.resync_skipped_bytes += undecided as u64;
                                r.buf.drain(..undecided);
                            }
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// A malformed frame header after the side was confirmed: same effects as a gap.
    fn lose_sync(r: &mut Reader, core: &mut Core, side: Side, out: &mut Vec<L7Message>) {
        core.stats.gaps += 1;
        core.cut_pending(side, out);
        core.mark_open(side);
        core.decoders[side.idx()].forget();
        r.hdr_len = 0;
        r.state = ReadState::Resync;
    }
}

/// Offset of the first frame boundary we trust in `buf`: a plausible header whose frame
/// either ends exactly at the end of `buf` or is followed by another plausible header. The
/// very first byte after a gap (`fresh`) only needs a plausible header: writes start frames.
fn find_boundary(buf: &[u8], from: usize, fresh: bool, max_len: u32) -> Option<usize> {
    let mut i = from;
    while i + HEADER_LEN <= buf.len() {
        let raw: &[u8; HEADER_LEN] = buf[i..i + HEADER_LEN].try_into().ok()?;
        if FrameHeader::plausible(raw, max_len) {
            if i == 0 && fresh {
                return Some(0);
            }
            let end = i + HEADER_LEN + FrameHeader::parse(raw).len as usize;
            if end == buf.len() {
                return Some(i);
            }
            if let Some(next) = buf.get(end..end + HEADER_LEN) {
                let next: &[u8; HEADER_LEN] = next.try_into().ok()?;
                if FrameHeader::plausible(next, frame::MAX_FRAME_LIMIT) {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// How many leading bytes of `buf` can be dropped after [`find_boundary`] found nothing:
/// every offset whose candidate frame (if any) could still be confirmed by more bytes is kept.
fn undecided_from(buf: &[u8], max_len: u32) -> usize {
    let mut i = 0;
    while i + HEADER_LEN <= buf.len() {
        let raw: &[u8; HEADER_LEN] = match buf[i..i + HEADER_LEN].try_into() {
            Ok(r) => r,
            Err(_) => break,
        };
        if FrameHeader::plausible(raw, max_len) {
            let end = i + HEADER_LEN + FrameHeader::parse(raw).len as usize;
            if end + HEADER_LEN > buf.len() {
                // Its end (or the next header) is not here yet: keep from this offset.
                return i;
            }
        }
        i += 1;
    }
    i
}
