//! Message heads: httparse into requests/responses, what the headers say about framing,
//! and the shape tests used for protocol detection and resynchronisation.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use memchr::memmem;
use perisco_engine::event::{Header, HttpRequest, HttpResponse, Text};

use super::{Cx, Flow, Head, Http1Message, MAX_HEADERS, RequestMeta, fast};
use crate::redact::{REDACTED, Redactor};

pub(super) fn parser_config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    // A passive observer accepts what real servers accept.
    c.allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true)
        .ignore_invalid_headers_in_responses(true);
    c
}

pub(super) enum Framing {
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

pub(super) enum Parsed {
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
pub(super) struct HeaderFacts {
    content_length: Option<u64>,
    bad_length: bool,
    chunked: bool,
    other_encoding: bool,
    upgrade_h2c: bool,
}

impl HeaderFacts {
    fn note(&mut self, name: &[u8], value: &[u8]) {
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => match parse_decimal(value) {
                Some(n) if self.content_length.is_none_or(|o| o == n) => self.content_length = Some(n),
                _ => self.bad_length = true,
            },
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                let last = value.rsplit(|b| *b == b',').next().unwrap_or_default().trim_ascii();
                if last.eq_ignore_ascii_case(b"chunked") {
                    self.chunked = true;
                } else if !last.is_empty() {
                    self.other_encoding = true;
                }
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => {
                self.upgrade_h2c = value
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c"));
            }
            _ => {}
        }
    }
}

pub(super) fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

pub(super) fn protocol(version: Option<u8>) -> Cow<'static, str> {
    match version {
        Some(0) => Cow::Borrowed("HTTP/1.0"),
        _ => Cow::Borrowed("HTTP/1.1"),
    }
}

/// Owned copies of a head's fields, what they say about framing (one pass over them), and
/// how many values were redacted: listed values are replaced here, never copied.
pub(super) struct Fields<'r> {
    pub list: Vec<Header>,
    pub facts: HeaderFacts,
    pub redacted: u64,
    redactor: Option<&'r Redactor>,
}

impl<'r> Fields<'r> {
    pub fn new(redactor: Option<&'r Redactor>) -> Self {
        Fields {
            list: Vec::new(),
            facts: HeaderFacts::default(),
            redacted: 0,
            redactor,
        }
    }

    pub fn reserve(&mut self, n: usize) {
        self.list.reserve_exact(n);
    }

    /// A field whose value is text.
    pub fn add_text(&mut self, name: &str, value: &str) {
        self.add(name, value.as_bytes(), || Text::from(value));
    }

    /// httparse's fields. `head` is the whole head when it is valid UTF-8 (checked once:
    /// values are almost always ASCII), so each value is a slice of it rather than a UTF-8
    /// check of its own.
    fn add_parsed(&mut self, headers: &[httparse::Header<'_>], src: &[u8], head: Option<&str>) {
        let base = src.as_ptr() as usize;
        self.reserve(headers.len());
        for h in headers {
            let start = (h.value.as_ptr() as usize).wrapping_sub(base);
            self.add(h.name, h.value, || {
                head.and_then(|t| t.get(start..start.checked_add(h.value.len())?))
                    .map(Text::from)
                    .unwrap_or_else(|| Text::from(String::from_utf8_lossy(h.value)))
            });
        }
    }

    #[inline]
    fn add(&mut self, name: &str, value: &[u8], text: impl FnOnce() -> Text) {
        // Only three names say anything about framing; their lengths rule out the rest here,
        // without a call per field.
        if matches!(name.len(), 7 | 14 | 17) {
            self.facts.note(name.as_bytes(), value);
        }
        let value = if self.redactor.is_some_and(|r| r.matches(name.as_bytes())) && value != REDACTED.as_bytes() {
            self.redacted += 1;
            Text::const_new(REDACTED)
        } else {
            text()
        };
        self.list.push(Header {
            key: Text::from(name),
            value,
        });
    }
}

/// The head as text when it is valid UTF-8. simdutf8: std's check was ~5 % of an
/// exchange's instructions (a head is a few hundred bytes, almost always ASCII).
fn head_text(src: &[u8], len: usize) -> Option<&str> {
    simdutf8::basic::from_utf8(src.get(..len)?).ok()
}

pub(super) fn parse_request(src: &[u8], ts_ns: u64, cx: &mut Cx<'_>) -> Parsed {
    let mut fields = Fields::new(cx.redactor);
    let (len, method, target, version) = match fast::request(src, &mut fields) {
        Some(r) => (r.len, r.method, r.target, Some(r.version)),
        None => {
            // What a fast pass read before giving up is dropped: httparse reads it all.
            fields = Fields::new(cx.redactor);
            match httparse_request(src, |h, len| fields.add_parsed(h, src, head_text(src, len))) {
                Ok(head) => head,
                Err(n) => return n.into(),
            }
        }
    };
    let f = &fields.facts;
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
        upgrade_h2c: f.upgrade_h2c && version == Some(1),
    };
    push_pending(cx, meta);
    *cx.h2c_offered |= meta.upgrade_h2c;
    cx.counters.redacted += fields.redacted;
    let msg = Http1Message {
        ts_ns,
        head: Head::Request(HttpRequest {
            protocol: protocol(version),
            method: Text::from(method),
            url: Text::from(target),
            headers: fields.list,
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

pub(super) fn push_pending(cx: &mut Cx<'_>, meta: RequestMeta) {
    if cx.pending.len() >= cx.limits.max_pipelined {
        cx.pending.pop_front();
        cx.counters.errors += 1;
    }
    cx.pending.push_back(meta);
}

pub(super) fn parse_response(src: &[u8], ts_ns: u64, cx: &mut Cx<'_>) -> Parsed {
    let mut fields = Fields::new(cx.redactor);
    let (len, code, version) = match fast::response(src, &mut fields) {
        Some(r) => (r.len, r.code, Some(r.version)),
        None => {
            fields = Fields::new(cx.redactor);
            // An interim response's fields are not kept.
            let read = |h: &[httparse::Header<'_>], len, code| {
                if !is_interim(code) {
                    fields.add_parsed(h, src, head_text(src, len));
                }
            };
            match httparse_response(src, read) {
                Ok(head) => head,
                Err(n) => return n.into(),
            }
        }
    };
    if is_interim(code) {
        return Parsed::Head {
            len,
            framing: Framing::Interim,
            msg: None,
        };
    }
    let f = &fields.facts;
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
    cx.counters.redacted += fields.redacted;
    let msg = Http1Message {
        ts_ns,
        head: Head::Response(HttpResponse {
            protocol: protocol(version),
            code,
            headers: fields.list,
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

/// Why httparse found no head.
pub(super) enum NotHead {
    Partial,
    Invalid,
}

impl From<NotHead> for Parsed {
    fn from(n: NotHead) -> Parsed {
        match n {
            NotHead::Partial => Parsed::Partial,
            NotHead::Invalid => Parsed::Error,
        }
    }
}

/// httparse on a request head: its length, method, target and version; `fields` is given
/// the header fields and the length.
pub(super) fn httparse_request<'a>(
    src: &'a [u8],
    fields: impl FnOnce(&[httparse::Header<'a>], usize),
) -> Result<(usize, &'a str, &'a str, Option<u8>), NotHead> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match parser_config().parse_request_with_uninit_headers(&mut req, src, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(NotHead::Partial),
        Err(_) => return Err(NotHead::Invalid),
    };
    fields(req.headers, len);
    Ok((
        len,
        req.method.unwrap_or_default(),
        req.path.unwrap_or_default(),
        req.version,
    ))
}

/// httparse on a response head: its length, status code and version; `fields` is given the
/// header fields, the length and the code.
pub(super) fn httparse_response<'a>(
    src: &'a [u8],
    fields: impl FnOnce(&[httparse::Header<'a>], usize, u16),
) -> Result<(usize, u16, Option<u8>), NotHead> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match parser_config().parse_response_with_uninit_headers(&mut resp, src, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(NotHead::Partial),
        Err(_) => return Err(NotHead::Invalid),
    };
    let code = resp.code.unwrap_or_default();
    fields(resp.headers, len, code);
    Ok((len, code, resp.version))
}

/// 1xx but 101: an interim response, the final one follows.
fn is_interim(code: u16) -> bool {
    (100..200).contains(&code) && code != 101
}

/// "METHOD partial-url" from a request line cut before its end.
pub(super) fn partial_request_line(buf: &[u8], ts_ns: u64) -> Option<Http1Message> {
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
            method: Text::from(String::from_utf8_lossy(method)),
            url: Text::from(String::from_utf8_lossy(url)),
            ..Default::default()
        }),
        truncated: true,
        upgrade_h2c: false,
    })
}

pub(super) fn is_method_byte(b: u8) -> bool {
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
pub(super) fn find_head_start(flow: Flow, data: &[u8]) -> Option<usize> {
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
