//! The usual HTTP/1 head, parsed without httparse.
//!
//! Taken here: a head complete in the buffer, shorter than 64 KiB, every line ended by
//! CRLF, a request line with single spaces, a status line "HTTP/1.x NNN" with or without a
//! reason, header names that are tokens followed directly by ':', no folded lines, at most
//! [`MAX_HEADERS`] fields, valid UTF-8. Anything else returns `None` and goes to httparse,
//! the reference: for every head taken here httparse gives the same method, target,
//! version, status code, fields and length (tests compare both on every prefix of a table
//! of heads and on seeded mutations of them; the http1 fuzz target on any input).
//!
//! Why: httparse and the copy of its fields were ~400 instructions per header line, half an
//! exchange. Here a line is one pass: the name by a token table, the value's end by 16-byte
//! compares; the fields are copied out after one UTF-8 check of the whole head.

use super::MAX_HEADERS;
use super::head::Fields;

/// Positions are kept as u16 (the field table is zeroed per head): longer heads go to
/// httparse.
const LIMIT: usize = u16::MAX as usize;

pub(super) struct Request<'a> {
    pub len: usize,
    pub method: &'a str,
    pub target: &'a str,
    pub version: u8,
}

pub(super) struct Response {
    pub len: usize,
    pub code: u16,
    pub version: u8,
}

/// The head at the start of `src` when it is a usual request; its fields go to `fields`.
pub(super) fn request<'a>(src: &'a [u8], fields: &mut Fields<'_>) -> Option<Request<'a>> {
    let src = &src[..src.len().min(LIMIT)];
    // "METHOD SP target SP HTTP/1.x CRLF" (httparse also skips empty lines before it and
    // takes several spaces: left to it).
    let sp = src.iter().position(|b| !is_token(*b))?;
    if sp == 0 || src[sp] != b' ' {
        return None;
    }
    let target_end = first_stop(src, sp + 1, |s| s.ctl | s.space)?;
    if target_end == sp + 1 || src[target_end] != b' ' {
        return None;
    }
    let version = match src.get(target_end + 1..target_end + 11)? {
        b"HTTP/1.0\r\n" => 0,
        b"HTTP/1.1\r\n" => 1,
        _ => return None,
    };
    let mut spans = [Span::default(); MAX_HEADERS];
    let (n, len) = scan_fields(src, target_end + 11, &mut spans)?;
    let text = simdutf8::basic::from_utf8(&src[..len]).ok()?;
    copy_fields(text, &spans[..n], fields)?;
    Some(Request {
        len,
        method: text.get(..sp)?,
        target: text.get(sp + 1..target_end)?,
        version,
    })
}

/// The head at the start of `src` when it is a usual response; its fields go to `fields`.
pub(super) fn response(src: &[u8], fields: &mut Fields<'_>) -> Option<Response> {
    let src = &src[..src.len().min(LIMIT)];
    let version = match src.get(..9)? {
        b"HTTP/1.0 " => 0,
        b"HTTP/1.1 " => 1,
        _ => return None,
    };
    let code = match *src.get(9..12)? {
        [h @ b'0'..=b'9', t @ b'0'..=b'9', o @ b'0'..=b'9'] => {
            u16::from(h - b'0') * 100 + u16::from(t - b'0') * 10 + u16::from(o - b'0')
        }
        _ => return None,
    };
    // The line ends, or a space and a reason (not kept) run to its end.
    let fields_at = match *src.get(12)? {
        b'\r' if src.get(13) == Some(&b'\n') => 14,
        b' ' => line_end(src, 13)? + 2,
        _ => return None,
    };
    let mut spans = [Span::default(); MAX_HEADERS];
    let (n, len) = scan_fields(src, fields_at, &mut spans)?;
    let text = simdutf8::basic::from_utf8(&src[..len]).ok()?;
    copy_fields(text, &spans[..n], fields)?;
    Some(Response { len, code, version })
}

/// Where one header field is: name `start..colon`, value `value..end`.
#[derive(Clone, Copy, Default)]
struct Span {
    start: u16,
    colon: u16,
    value: u16,
    end: u16,
}

/// The header lines from `at` to the empty line that ends the head: how many, and the
/// head's length.
fn scan_fields(src: &[u8], mut at: usize, spans: &mut [Span; MAX_HEADERS]) -> Option<(usize, usize)> {
    let mut n = 0;
    loop {
        let first = *src.get(at)?;
        if first == b'\r' {
            return (src.get(at + 1) == Some(&b'\n')).then_some((n, at + 2));
        }
        // A name of token bytes and ':' right after it. A line starting with a space or a
        // tab continues the previous value (obsolete folding), a space before ':' is
        // tolerated in responses, other bytes make the line invalid: all left to httparse.
        let colon = at + src[at..].iter().position(|b| !is_token(*b))?;
        if colon == at || src[colon] != b':' {
            return None;
        }
        let mut value = colon + 1;
        while matches!(src.get(value), Some(b' ' | b'\t')) {
            value += 1;
        }
        let cr = line_end(src, value)?;
        let mut end = cr;
        while end > value && matches!(src[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        *spans.get_mut(n)? = Span {
            start: at as u16,
            colon: colon as u16,
            value: value as u16,
            end: end as u16,
        };
        n += 1;
        at = cr + 2;
    }
}

fn copy_fields(text: &str, spans: &[Span], fields: &mut Fields<'_>) -> Option<()> {
    fields.reserve(spans.len());
    for s in spans {
        let name = text.get(usize::from(s.start)..usize::from(s.colon))?;
        let value = text.get(usize::from(s.value)..usize::from(s.end))?;
        fields.add_text(name, value);
    }
    Some(())
}

/// The '\r' ending the line that `from` is in, when a '\n' follows it and no other control
/// byte (tab aside) or DEL comes before it.
fn line_end(src: &[u8], from: usize) -> Option<usize> {
    let cr = first_stop(src, from, |s| s.ctl & !s.tab)?;
    (src[cr] == b'\r' && src.get(cr + 1) == Some(&b'\n')).then_some(cr)
}

/// The first position at or after `from` whose bit `stop` sets, 16 bytes at a time.
#[inline(always)]
fn first_stop(src: &[u8], from: usize, stop: impl Fn(Stops) -> u32) -> Option<usize> {
    let mut at = from;
    while let Some(block) = src.get(at..at + 16) {
        let m = stop(stops(block.try_into().ok()?));
        if m != 0 {
            return Some(at + m.trailing_zeros() as usize);
        }
        at += 16;
    }
    // The last, short block: padded with a byte of no class.
    let rest = src.get(at..)?;
    let mut block = [b'a'; 16];
    block[..rest.len()].copy_from_slice(rest);
    let m = stop(stops(&block));
    (m != 0).then(|| at + m.trailing_zeros() as usize)
}

/// A block's bytes by class, a bit per byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stops {
    /// Below 0x20 (tab included), or DEL.
    ctl: u32,
    space: u32,
    tab: u32,
}

#[inline(always)]
fn stops(block: &[u8; 16]) -> Stops {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline: every CPU that runs this binary has it.
    return unsafe { stops_sse2(block) };
    #[cfg(not(target_arch = "x86_64"))]
    return stops_portable(block);
}

/// SSE2: a compare and a mask per class.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn stops_sse2(b: &[u8; 16]) -> Stops {
    use std::arch::x86_64::*;
    let x = u128::from_le_bytes(*b);
    let v = _mm_set_epi64x((x >> 64) as i64, x as i64);
    let below_space = _mm_cmpeq_epi8(_mm_and_si128(v, _mm_set1_epi8(0xe0u8 as i8)), _mm_setzero_si128());
    let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
    Stops {
        ctl: _mm_movemask_epi8(_mm_or_si128(below_space, del)) as u32,
        space: _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8))) as u32,
        tab: _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8))) as u32,
    }
}

/// The same classes a byte at a time: other architectures, and the reference in tests.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn stops_portable(b: &[u8; 16]) -> Stops {
    let mut s = Stops {
        ctl: 0,
        space: 0,
        tab: 0,
    };
    for (i, &b) in b.iter().enumerate() {
        s.ctl |= u32::from(b < 0x20 || b == 0x7f) << i;
        s.space |= u32::from(b == b' ') << i;
        s.tab |= u32::from(b == b'\t') << i;
    }
    s
}

/// RFC 9110 tchar, as httparse's table.
fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        i += 1;
    }
    t
};

/// Checks this parser against httparse on `src`, read as a request and as a response:
/// whenever a head is taken here, httparse must find the same one. Panics with both
/// readings when they differ (for tests and the http1 fuzz target).
pub fn check_against_httparse(src: &[u8]) {
    use super::head::{httparse_request, httparse_response};

    let mut fields = Fields::new(None);
    if let Some(r) = request(src, &mut fields) {
        let theirs = httparse_request(src, |h, _| same_fields(h, &fields, src));
        let Ok((len, method, target, version)) = theirs else {
            panic!("httparse refused a request head taken here: {src:?}");
        };
        assert_eq!(
            (len, method, target, version),
            (r.len, r.method, r.target, Some(r.version)),
            "{src:?}"
        );
    }
    let mut fields = Fields::new(None);
    if let Some(r) = response(src, &mut fields) {
        let theirs = httparse_response(src, |h, _, _| same_fields(h, &fields, src));
        let Ok((len, code, version)) = theirs else {
            panic!("httparse refused a response head taken here: {src:?}");
        };
        assert_eq!((len, code, version), (r.len, r.code, Some(r.version)), "{src:?}");
    }
}

fn same_fields(theirs: &[httparse::Header<'_>], ours: &Fields<'_>, src: &[u8]) {
    let theirs: Vec<(&[u8], &[u8])> = theirs.iter().map(|h| (h.name.as_bytes(), h.value)).collect();
    let ours: Vec<(&[u8], &[u8])> = ours
        .list
        .iter()
        .map(|h| (h.key.as_bytes(), h.value.as_bytes()))
        .collect();
    assert_eq!(theirs, ours, "fields: {src:?}");
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
