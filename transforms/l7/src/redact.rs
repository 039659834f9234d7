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
    /// One bit per listed name, from its length and first letter ([`filter_bit`]): the
    /// usual headers are ruled out by this test alone.
    filter: u64,
}

/// A bit from a name's length and (lowercased) first byte.
fn filter_bit(name: &[u8]) -> u64 {
    let first = name.first().map_or(0, u8::to_ascii_lowercase);
    1u64 << ((name.len() * 31 + usize::from(first)) % 64)
}

impl Redactor {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let names: Vec<Box<[u8]>> = names
            .iter()
            .map(|n| n.as_ref().trim().to_ascii_lowercase().into_bytes().into())
            .collect();
        let filter = names.iter().fold(0, |m, n| m | filter_bit(n));
        Redactor { names, filter }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Is `name` (any case) listed?
    #[inline]
    pub fn matches(&self, name: &[u8]) -> bool {
        self.filter & filter_bit(name) != 0 && self.names.iter().any(|n| name.eq_ignore_ascii_case(n))
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
    fn common_headers_pass_the_filter_untouched() {
        let r = Redactor::new(&DEFAULT_REDACT);
        for name in DEFAULT_REDACT {
            assert!(r.matches(name.as_bytes()) && r.matches(name.to_ascii_uppercase().as_bytes()));
        }
        for name in [
            "Accept",
            "Server",
            "Connection",
            "User-Agent",
            "Host",
            "Cookie2",
            "cookies",
            "",
        ] {
            assert!(!r.matches(name.as_bytes()), "{name}");
        }
        assert!(!Redactor::new::<&str>(&[]).matches(b"authorization"));
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
