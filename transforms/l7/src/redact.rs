//! Header redaction: sensitive values are replaced before any other component sees them.

use perisco_engine::event::{Header, Text};

pub const REDACTED: &str = "[REDACTED]";

/// The headers redacted when `redact_headers` is not set.
pub const DEFAULT_REDACT: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// Header names compared case-insensitively (HTTP/2 names are lowercase on the wire,
/// HTTP/1 names keep the sender's case).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    names: Vec<Box<[u8]>>,
    /// Bit `n % 64` is set when a listed name is `n` bytes long: most headers are
    /// ruled out by their length alone.
    lengths: u64,
}

impl Redactor {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let names: Vec<Box<[u8]>> = names
            .iter()
            .map(|n| n.as_ref().trim().to_ascii_lowercase().into_bytes().into())
            .collect();
        let lengths = names.iter().fold(0, |m, n| m | 1u64 << (n.len() % 64));
        Redactor { names, lengths }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Is `name` (any case) listed?
    pub fn matches(&self, name: &[u8]) -> bool {
        if self.lengths & (1u64 << (name.len() % 64)) == 0 {
            return false;
        }
        // First byte before the whole name: "Accept" and "Server" have the length of
        // "cookie", "Connection" and "User-Agent" that of "set-cookie".
        let first = name.first().map(u8::to_ascii_lowercase);
        self.names
            .iter()
            .any(|n| n.len() == name.len() && n.first().copied() == first && name.eq_ignore_ascii_case(n))
    }

    /// Replace the value of every listed header; returns how many were replaced (a value
    /// that already is [`REDACTED`] is not counted again).
    pub fn apply(&self, headers: &mut [Header]) -> usize {
        let mut n = 0;
        for h in headers {
            if self.matches(h.key.as_bytes()) && h.value != REDACTED {
                h.value = Text::const_new(REDACTED);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_and_only_listed() {
        let r = Redactor::new(&DEFAULT_REDACT);
        let mut h = vec![
            Header::new("Authorization", "Bearer secret"),
            Header::new("cookie", "a=b"),
            Header::new("SET-COOKIE", "c=d"),
            Header::new("Proxy-Authorization", "Basic x"),
            Header::new("Authorization-Extra", "keep"),
            Header::new("Accept", "*/*"),
        ];
        assert_eq!(r.apply(&mut h), 4);
        let values: Vec<&str> = h.iter().map(|h| h.value.as_str()).collect();
        assert_eq!(values, [REDACTED, REDACTED, REDACTED, REDACTED, "keep", "*/*"]);
    }

    #[test]
    fn configurable_list() {
        let r = Redactor::new(&["X-Api-Key"]);
        let mut h = vec![Header::new("x-api-key", "k"), Header::new("Authorization", "a")];
        r.apply(&mut h);
        assert_eq!(h[0].value, REDACTED);
        assert_eq!(h[1].value, "a");
    }
}
