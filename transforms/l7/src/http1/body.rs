//! Bodies: skipped by count (Content-Length, chunked framing incl. trailers, until close),
//! with an optional prefix kept.

use super::{Cx, Dir, Head, Held, Http1Message, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    Size { size: u64, digits: u8, ext: bool },
    SizeLf { size: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
}

pub(super) fn set_body_bytes(m: &mut Http1Message, n: u64) {
    match &mut m.head {
        Head::Request(r) => r.body_bytes = Some(n),
        Head::Response(r) => r.body_bytes = Some(n),
    }
}

/// A message with a body: emitted now, or held until its body prefix is collected.
pub(super) fn start_body(dir: &mut Dir, cx: &mut Cx<'_>, msg: Option<Http1Message>, length: Option<u64>) {
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

pub(super) fn keep_body(dir: &mut Dir, cx: &mut Cx<'_>, bytes: &[u8]) {
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

pub(super) fn emit_held(h: Held, out: &mut Vec<Http1Message>) {
    let Held { mut msg, body } = h;
    let text: Box<str> = String::from_utf8_lossy(&body).into();
    match &mut msg.head {
        Head::Request(r) => r.body = Some(text),
        Head::Response(r) => r.body = Some(text),
    }
    out.push(msg);
}

/// The current message's body ended (or its framing was lost): emit a held message.
pub(super) fn end_message(dir: &mut Dir, out: &mut Vec<Http1Message>) {
    if let Some(h) = dir.held.take() {
        emit_held(*h, out);
    }
    if matches!(dir.state, State::Body { .. } | State::Chunked(_)) {
        dir.state = State::Head;
    }
}

/// Chunked body framing, byte by byte except for chunk data. Returns bytes consumed.
pub(super) fn chunked(dir: &mut Dir, cx: &mut Cx<'_>, mut c: Chunk, rest: &[u8]) -> usize {
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

pub(super) fn after_size(size: u64) -> Chunk {
    if size == 0 {
        Chunk::TrailerStart
    } else {
        Chunk::Data { remaining: size }
    }
}

pub(super) fn chunk_done(dir: &mut Dir, cx: &mut Cx<'_>, used: usize) -> usize {
    if let Some(h) = dir.held.as_mut() {
        set_body_bytes(&mut h.msg, dir.body_seen);
    }
    dir.state = State::Head;
    end_message(dir, cx.out);
    used
}

pub(super) fn chunk_error(dir: &mut Dir, cx: &mut Cx<'_>, used: usize) -> usize {
    cx.counters.errors += 1;
    cx.counters.resyncs += 1;
    end_message(dir, cx.out);
    dir.state = State::Resync;
    used
}
