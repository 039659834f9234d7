//! A hand-written JSON writer for the exchange record.
//!
//! Why: serde_json on [`Record`] was a quarter of perisco's CPU in the live pipeline —
//! timestamps went through humantime and `fmt`, addresses through `Display`, every header
//! through the serde struct machinery. This writes the same bytes as
//! `serde_json::to_writer(&record)` (same field order, omissions and escaping) straight into
//! a `Vec<u8>`, and writes a [`PatchedRecord`] with its patch applied on the way, so a
//! `remap` result never becomes a JSON map. The tests hold it to serde_json byte for byte
//! (records) and value for value (`PatchedRecord::to_json_map`).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use crate::patch::{Change, Patch, PatchedRecord};
use crate::record::{
    Endpoint, GrpcInfo, Header, HttpRequest, HttpResponse, Incomplete, IpInfo, IpVersion, L4, L7, L7Request,
    L7Response, Record, ServiceRef, TcpPorts, Workload,
};

#[cfg(test)]
mod tests;

/// Append `record` as JSON, byte-identical to `serde_json::to_writer(out, record)`.
pub fn write_record(out: &mut Vec<u8>, record: &Record) {
    let mut w = Writer { out, err: None };
    w.record(record, None);
}

/// Append the record with its patch applied: the same JSON value as
/// [`PatchedRecord::to_json_map`] (fields in record order, then the fields the patch adds).
/// Fails only when a value set by the patch cannot be serialised; `out` is then partial.
pub fn write_patched(out: &mut Vec<u8>, patched: &PatchedRecord) -> Result<(), serde_json::Error> {
    let mut w = Writer { out, err: None };
    w.record(&patched.record, Some(&patched.patch));
    w.err.map_or(Ok(()), Err)
}

// The field names of each record object, in serde order. A patch field not in the list is
// one the patch adds; it is written after the record's own fields.
const RECORD: &[&str] = &[
    "ts",
    "pid",
    "ip",
    "l4",
    "l7",
    "client",
    "server",
    "clientService",
    "serverService",
    "comm",
    "containerId",
    "node",
    "incomplete",
];
const IP: &[&str] = &["client", "server", "ipVersion"];
const L4_FIELDS: &[&str] = &["TCP"];
const TCP: &[&str] = &["clientPort", "serverPort"];
const L7_FIELDS: &[&str] = &["latencyNs", "request", "response", "grpc"];
const HTTP_WRAPPER: &[&str] = &["http"];
const HTTP_REQUEST: &[&str] = &["protocol", "method", "url", "headers", "bodyBytes", "body"];
const HTTP_RESPONSE: &[&str] = &["protocol", "code", "headers", "bodyBytes", "body"];
const GRPC: &[&str] = &[
    "service",
    "method",
    "status",
    "message",
    "requestMessages",
    "responseMessages",
    "requestBytes",
    "responseBytes",
];
const ENDPOINT: &[&str] = &["namespace", "labels", "podName", "workload"];
const WORKLOAD: &[&str] = &["name", "kind"];
const SERVICE: &[&str] = &["name", "namespace"];

/// A record field name as written after another field: `,"name":`.
#[derive(Clone, Copy)]
struct Key(&'static str);

macro_rules! key {
    ($name:literal) => {
        Key(concat!(",\"", $name, "\":"))
    };
}

impl Key {
    fn name(self) -> &'static str {
        self.0.get(2..self.0.len() - 2).unwrap_or_default()
    }
}

struct Writer<'o> {
    out: &'o mut Vec<u8>,
    /// The first error from serialising a value a patch set.
    err: Option<serde_json::Error>,
}

/// One JSON object being written: whether a field was written yet, and the patch for it.
struct Obj<'p> {
    patch: Option<&'p Patch>,
    first: bool,
}

impl<'p> Writer<'_> {
    fn open(&mut self, patch: Option<&'p Patch>) -> Obj<'p> {
        self.out.push(b'{');
        Obj { patch, first: true }
    }

    /// Write the fields the patch adds to this object, then close it.
    #[inline]
    fn close(&mut self, mut o: Obj<'p>, declared: &[&str]) {
        if let Some(patch) = o.patch {
            for (key, change) in patch.iter() {
                if !declared.contains(&key) {
                    self.change(&mut o, key, change);
                }
            }
        }
        self.out.push(b'}');
    }

    /// `,"key":` (or `"key":` first) for one of the record's own fields: one copy.
    #[inline]
    fn key(&mut self, o: &mut Obj<'p>, key: Key) {
        let json = key.0.as_bytes();
        self.out.extend_from_slice(if o.first {
            json.get(1..).unwrap_or_default()
        } else {
            json
        });
        o.first = false;
    }

    /// A field whose value is not a record object (a scalar or an array); `None` when the
    /// record omits it.
    #[inline]
    fn field<T>(&mut self, o: &mut Obj<'p>, key: Key, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match o.patch.and_then(|p| p.get(key.name())) {
            None => {
                if let Some(v) = value {
                    self.key(o, key);
                    write(self, v);
                }
            }
            Some(change) => self.change(o, key.name(), change),
        }
    }

    /// A field whose value is a record object; a patch's `Fields` change edits it in place.
    fn object<T: ?Sized>(
        &mut self,
        o: &mut Obj<'p>,
        key: Key,
        value: Option<&T>,
        write: impl FnOnce(&mut Self, &T, Option<&'p Patch>),
    ) {
        match (o.patch.and_then(|p| p.get(key.name())), value) {
            (None, None) => {}
            (None, Some(v)) => {
                self.key(o, key);
                write(self, v, None);
            }
            (Some(Change::Fields(p)), Some(v)) => {
                self.key(o, key);
                write(self, v, Some(p));
            }
            (Some(change), _) => self.change(o, key.name(), change),
        }
    }

    /// A field as the patch makes it, whatever the record held (as `Patch::apply` does).
    fn change(&mut self, o: &mut Obj<'p>, key: &str, change: &'p Change) {
        match change {
            Change::Delete => {}
            Change::Set(v) => {
                self.escaped_key(o, key);
                self.value(v);
            }
            Change::Fields(p) => {
                self.escaped_key(o, key);
                self.new_object(p);
            }
        }
    }

    /// The object `p` makes out of nothing (an absent field or a scalar it replaces).
    fn new_object(&mut self, p: &'p Patch) {
        let mut o = self.open(None);
        for (key, change) in p.iter() {
            self.change(&mut o, key, change);
        }
        self.out.push(b'}');
    }

    fn escaped_key(&mut self, o: &mut Obj<'p>, key: &str) {
        if !o.first {
            self.out.push(b',');
        }
        o.first = false;
        self.string(key);
        self.out.push(b':');
    }

    fn value(&mut self, v: &Value) {
        if let Err(e) = serde_json::to_writer(&mut *self.out, v) {
            self.err.get_or_insert(e);
        }
    }

    fn record(&mut self, r: &Record, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.field(&mut o, key!("ts"), Some(r.ts), Self::timestamp);
        self.field(&mut o, key!("pid"), Some(r.pid), Self::uint);
        self.object(&mut o, key!("ip"), Some(&r.ip), Self::ip_info);
        self.object(&mut o, key!("l4"), Some(&r.l4), Self::l4);
        self.object(&mut o, key!("l7"), Some(&r.l7), Self::l7);
        self.object(&mut o, key!("client"), r.client.as_deref(), Self::endpoint);
        self.object(&mut o, key!("server"), r.server.as_deref(), Self::endpoint);
        self.object(
            &mut o,
            key!("clientService"),
            r.client_service.as_deref(),
            Self::service,
        );
        self.object(
            &mut o,
            key!("serverService"),
            r.server_service.as_deref(),
            Self::service,
        );
        self.field(&mut o, key!("comm"), r.comm.as_deref(), Self::string);
        self.field(&mut o, key!("containerId"), r.container_id.as_deref(), Self::string);
        self.field(&mut o, key!("node"), r.node.as_deref(), Self::string);
        self.field(&mut o, key!("incomplete"), non_empty(&r.incomplete), Self::incomplete);
        self.close(o, RECORD);
    }

    fn ip_info(&mut self, ip: &IpInfo, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.field(&mut o, key!("client"), Some(ip.client), Self::ip);
        self.field(&mut o, key!("server"), Some(ip.server), Self::ip);
        self.field(&mut o, key!("ipVersion"), Some(ip.ip_version), |w, v| {
            w.out.extend_from_slice(match v {
                IpVersion::IPv4 => b"\"IPv4\"",
                IpVersion::IPv6 => b"\"IPv6\"",
            })
        });
        self.close(o, IP);
    }

    fn l4(&mut self, l4: &L4, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.object(&mut o, key!("TCP"), Some(&l4.tcp), Self::tcp);
        self.close(o, L4_FIELDS);
    }

    fn tcp(&mut self, tcp: &TcpPorts, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.field(&mut o, key!("clientPort"), Some(tcp.client_port), Self::uint);
        self.field(&mut o, key!("serverPort"), Some(tcp.server_port), Self::uint);
        self.close(o, TCP);
    }

    fn l7(&mut self, l7: &L7, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        // A decimal string, as serde writes it (`collect_str`).
        self.field(&mut o, key!("latencyNs"), l7.latency_ns, |w, ns| {
            w.out.push(b'"');
            w.uint(ns);
            w.out.push(b'"');
        });
        self.object(&mut o, key!("request"), l7.request.as_ref(), Self::l7_request);
        self.object(&mut o, key!("response"), l7.response.as_ref(), Self::l7_response);
        self.object(&mut o, key!("grpc"), l7.grpc.as_deref(), Self::grpc);
        self.close(o, L7_FIELDS);
    }

    fn l7_request(&mut self, r: &L7Request, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.object(&mut o, key!("http"), Some(&r.http), Self::http_request);
        self.close(o, HTTP_WRAPPER);
    }

    fn l7_response(&mut self, r: &L7Response, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.object(&mut o, key!("http"), Some(&r.http), Self::http_response);
        self.close(o, HTTP_WRAPPER);
    }

    fn http_request(&mut self, h: &HttpRequest, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.field(&mut o, key!("protocol"), Some(&*h.protocol), Self::string);
        self.field(&mut o, key!("method"), Some(h.method.as_str()), Self::string);
        self.field(&mut o, key!("url"), Some(h.url.as_str()), Self::string);
        self.field(&mut o, key!("headers"), Some(&h.headers[..]), Self::headers);
        self.field(&mut o, key!("bodyBytes"), h.body_bytes, Self::uint);
        self.field(&mut o, key!("body"), h.body.as_deref(), Self::string);
        self.close(o, HTTP_REQUEST);
    }

    fn http_response(&mut self, h: &HttpResponse, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.field(&mut o, key!("protocol"), Some(&*h.protocol), Self::string);
        self.field(&mut o, key!("code"), Some(h.code), Self::uint);
        self.field(&mut o, key!("headers"), Some(&h.headers[..]), Self::headers);
        self.field(&mut o, key!("bodyBytes"), h.body_bytes, Self::uint);
        self.field(&mut o, key!("body"), h.body.as_deref(), Self::string);
        self.close(o, HTTP_RESPONSE);
    }

    fn grpc(&mut self, g: &GrpcInfo, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.field(&mut o, key!("service"), Some(g.service.as_str()), Self::string);
        self.field(&mut o, key!("method"), Some(g.method.as_str()), Self::string);
        self.field(&mut o, key!("status"), g.status, Self::uint);
        self.field(&mut o, key!("message"), g.message.as_deref(), Self::string);
        self.field(&mut o, key!("requestMessages"), g.request_messages, Self::uint);
        self.field(&mut o, key!("responseMessages"), g.response_messages, Self::uint);
        self.field(&mut o, key!("requestBytes"), g.request_bytes, Self::uint);
        self.field(&mut o, key!("responseBytes"), g.response_bytes, Self::uint);
        self.close(o, GRPC);
    }

    fn endpoint(&mut self, e: &Endpoint, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.field(&mut o, key!("namespace"), e.namespace.as_deref(), Self::string);
        self.field(&mut o, key!("labels"), non_empty(&e.labels), |w, labels| {
            w.array(labels, |w, l| w.string(l))
        });
        self.field(&mut o, key!("podName"), e.pod_name.as_deref(), Self::string);
        self.object(&mut o, key!("workload"), e.workload.as_ref(), Self::workload);
        self.close(o, ENDPOINT);
    }

    fn workload(&mut self, wl: &Workload, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.field(&mut o, key!("name"), Some(wl.name.as_str()), Self::string);
        self.field(&mut o, key!("kind"), Some(wl.kind.as_str()), Self::string);
        self.close(o, WORKLOAD);
    }

    fn service(&mut self, s: &ServiceRef, patch: Option<&'p Patch>) {
        let mut o = self.open(patch);
        self.field(&mut o, key!("name"), Some(s.name.as_str()), Self::string);
        self.field(&mut o, key!("namespace"), Some(s.namespace.as_str()), Self::string);
        self.close(o, SERVICE);
    }

    fn headers(&mut self, headers: &[Header]) {
        self.array(headers, |w, h| {
            let (key, value) = (h.key.as_bytes(), h.value.as_bytes());
            if needs_escape(key) || needs_escape(value) {
                w.out.extend_from_slice(b"{\"key\":");
                w.string(h.key.as_str());
                w.out.extend_from_slice(b",\"value\":");
                w.string(h.value.as_str());
                w.out.push(b'}');
                return;
            }
            // The usual case, a header is most of a record's strings: one reservation and
            // the quotes joined to the literals around them.
            const OPEN: &[u8] = b"{\"key\":\"";
            const MID: &[u8] = b"\",\"value\":\"";
            const CLOSE: &[u8] = b"\"}";
            w.out
                .reserve(OPEN.len() + key.len() + MID.len() + value.len() + CLOSE.len());
            w.out.extend_from_slice(OPEN);
            w.out.extend_from_slice(key);
            w.out.extend_from_slice(MID);
            w.out.extend_from_slice(value);
            w.out.extend_from_slice(CLOSE);
        });
    }

    fn incomplete(&mut self, reasons: &[Incomplete]) {
        self.array(reasons, |w, r| w.string(r));
    }

    fn array<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        self.out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write(self, item);
        }
        self.out.push(b']');
    }

    fn uint(&mut self, n: impl itoa::Integer) {
        self.out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A JSON string with serde_json's escaping: `"` `\` and control characters only.
    /// Header values, URLs and names almost never contain one, so the whole string is
    /// checked first ([`needs_escape`]) and then copied at once.
    #[inline]
    fn string(&mut self, s: &str) {
        let bytes = s.as_bytes();
        if needs_escape(bytes) {
            self.escaped(bytes);
            return;
        }
        self.out.reserve(bytes.len() + 2);
        self.out.push(b'"');
        self.out.extend_from_slice(bytes);
        self.out.push(b'"');
    }

    /// The slow path of [`Self::string`]: byte by byte, runs without escapes copied at once.
    #[cold]
    fn escaped(&mut self, bytes: &[u8]) {
        self.out.reserve(bytes.len() + 8);
        self.out.push(b'"');
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc = ESCAPE[b as usize];
            if esc == 0 {
                continue;
            }
            self.out.extend_from_slice(&bytes[start..i]);
            start = i + 1;
            if esc == b'u' {
                self.out.extend_from_slice(b"\\u00");
                self.out.push(HEX[(b >> 4) as usize]);
                self.out.push(HEX[(b & 0xf) as usize]);
            } else {
                self.out.extend_from_slice(&[b'\\', esc]);
            }
        }
        self.out.extend_from_slice(&bytes[start..]);
        self.out.push(b'"');
    }

    fn ip(&mut self, ip: IpAddr) {
        self.out.push(b'"');
        match ip {
            IpAddr::V4(v4) => self.ipv4(v4),
            // std's canonical form (zero-run compression, embedded IPv4) is what serde
            // writes; it is rare enough here to keep.
            IpAddr::V6(v6) => {
                let _ = write!(self.out, "{v6}");
            }
        }
        self.out.push(b'"');
    }

    fn ipv4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.out.push(b'.');
            }
            if octet >= 100 {
                self.out.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                self.out.push(b'0' + octet / 10 % 10);
            }
            self.out.push(b'0' + octet % 10);
        }
    }

    /// `"2023-04-11T03:43:29.619285359Z"`, as humantime's `format_rfc3339_nanos` writes it
    /// (u64 nanoseconds end in the year 2554, so the year always has four digits).
    fn timestamp(&mut self, ns: u64) {
        let secs = ns / 1_000_000_000;
        let nanos = (ns % 1_000_000_000) as u32;
        let (year, month, day) = civil_date(secs / 86_400);
        let sod = (secs % 86_400) as u32;
        let mut b = *b"\"0000-00-00T00:00:00.000000000Z\"";
        digits(&mut b[1..5], year);
        digits(&mut b[6..8], month);
        digits(&mut b[9..11], day);
        digits(&mut b[12..14], sod / 3600);
        digits(&mut b[15..17], sod / 60 % 60);
        digits(&mut b[18..20], sod % 60);
        digits(&mut b[21..30], nanos);
        self.out.extend_from_slice(&b);
    }
}

fn non_empty<T>(v: &[T]) -> Option<&[T]> {
    if v.is_empty() { None } else { Some(v) }
}

/// Fill `buf` with the low decimal digits of `n`, zero-padded.
fn digits(buf: &mut [u8], mut n: u32) {
    for d in buf.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_date(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of the 400-year era
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

/// True when some byte of `bytes` is `"`, `\\` or below 0x20. Sixteen bytes at a time
/// with SSE2 (every x86-64 has it), eight at a time (SWAR) elsewhere.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    let word = |w: &[u8; 8]| u64::from_le_bytes(*w);
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU has it.
        let test = |lo: u64, hi: u64| unsafe { words_need_escape(lo, hi) };
        let block = |b: &[u8; 16]| {
            let (w, _) = b.as_chunks::<8>();
            test(word(&w[0]), word(&w[1]))
        };
        let (blocks, tail) = bytes.as_chunks::<16>();
        if !blocks.is_empty() {
            // The last sixteen bytes cover the tail (checking bytes twice changes nothing).
            return blocks.iter().any(block) || (!tail.is_empty() && bytes.last_chunk::<16>().is_some_and(block));
        }
        // Under sixteen bytes: the first and last eight (overlapping), or one short word.
        match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            (Some(first), Some(last)) => test(word(first), word(last)),
            _ => test(short_word(bytes), short_word(bytes)),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let (words, tail) = bytes.as_chunks::<8>();
        if words.iter().any(|w| may_need_escape(word(w))) {
            return true;
        }
        match bytes.last_chunk::<8>() {
            // The last eight bytes cover the tail (overlapping checked bytes changes nothing).
            Some(last) if !tail.is_empty() => may_need_escape(word(last)),
            Some(_) => false,
            None => may_need_escape(short_word(bytes)),
        }
    }
}

/// Does one of the 16 bytes of two words need escaping? SSE2 (part of x86-64 itself).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn words_need_escape(lo: u64, hi: u64) -> bool {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
    };
    let v = _mm_set_epi64x(hi as i64, lo as i64);
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    // max(v, 0x1f) == 0x1f exactly for the bytes below 0x20 (unsigned).
    let control = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) != 0
}

/// The bytes of a slice shorter than 8 in one word, every byte of it covered: the first
/// and last four (overlapping) from 4 bytes up, else first, middle and last, and bytes
/// that never need escaping in the rest.
#[inline]
fn short_word(b: &[u8]) -> u64 {
    const PAD: u64 = 0x6161_6161_6161_6161; // "aaaaaaaa"
    match (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        (Some(head), Some(last)) => u64::from(u32::from_le_bytes(*head)) | u64::from(u32::from_le_bytes(*last)) << 32,
        _ => match b {
            [] => PAD,
            [x, .., y] => PAD & !0xff_ffff | u64::from(*x) | u64::from(b[b.len() / 2]) << 8 | u64::from(*y) << 16,
            [x] => PAD & !0xff | u64::from(*x),
        },
    }
}

/// True when one of the 8 bytes is `"`, `\` or below 0x20 (SWAR "has byte less than /
/// equal to" tests: a borrow can flag a byte wrongly only above a byte that really
/// matches, so the answer for the word is exact).
#[cfg(not(target_arch = "x86_64"))]
fn may_need_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = word ^ (ONES * b'"' as u64);
    let backslash = word ^ (ONES * b'\\' as u64);
    let control = word.wrapping_sub(ONES * 0x20);
    (control | quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES)) & !word & HIGH != 0
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Per byte: 0 = copy as is, `u` = `\u00XX`, else the letter after the backslash.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};
