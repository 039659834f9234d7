//! gRPC over HTTP/2: the 5-byte length-prefixed message framing, `:path` and `grpc-message`.

/// Counts length-prefixed messages in one direction of a call, across DATA frames split
/// anywhere. Lengths are counted as sent (compressed size when the flag says compressed).
#[derive(Debug, Clone, Default)]
pub struct Framing {
    prefix: [u8; 5],
    have: u8,
    /// Payload bytes left in the current message.
    remaining: u64,
    pub messages: u32,
    pub bytes: u64,
    /// A prefix with a flag other than 0 (identity) or 1 (compressed), or lost bytes that
    /// held a message boundary: counting stops, and the counts are not reported.
    pub broken: bool,
}

impl Framing {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.broken {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let want = 5 - self.have as usize;
            let n = want.min(data.len());
            self.prefix[self.have as usize..self.have as usize + n].copy_from_slice(&data[..n]);
            self.have += n as u8;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                if self.prefix[0] > 1 {
                    self.broken = true;
                    return;
                }
                let len = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]);
                self.messages = self.messages.saturating_add(1);
                self.bytes += u64::from(len);
                self.remaining = u64::from(len);
            }
        }
    }

    /// `n` payload bytes were not captured. Still in step when they fall inside the current message.
    pub fn skip(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if self.have == 0 && n <= self.remaining {
            self.remaining -= n;
        } else {
            self.broken = true;
        }
    }
}

use perisco_engine::record::Text;

/// `/pkg.Service/Method` → ("pkg.Service", "Method"). Anything else: the path (without the
/// leading slash) as service and an empty method.
pub fn split_path(path: &str) -> (Text, Text) {
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.split_once('/') {
        Some((svc, method)) if !svc.is_empty() && !method.contains('/') => (Text::from(svc), Text::from(method)),
        _ => (Text::from(p), Text::default()),
    }
}

/// `grpc-message` is percent-encoded UTF-8; invalid escapes are kept as they are.
pub fn percent_decode(v: &[u8]) -> String {
    if !v.contains(&b'%') {
        return String::from_utf8_lossy(v).into_owned();
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%'
            && let (Some(h), Some(l)) = (v.get(i + 1).and_then(hexval), v.get(i + 2).and_then(hexval))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexval(c: &u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc-web`, ...
pub fn is_grpc_content_type(v: &[u8]) -> bool {
    v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/grpc")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn framing_split_anywhere() {
        let mut all = msg(0, b"hello");
        all.extend(msg(1, &[7; 300]));
        all.extend(msg(0, b""));
        for split in 0..=all.len() {
            for split2 in split..=all.len() {
                let mut f = Framing::default();
                f.feed(&all[..split]);
                f.feed(&all[split..split2]);
                f.feed(&all[split2..]);
                assert_eq!(
                    (f.messages, f.bytes, f.broken),
                    (3, 305, false),
                    "split {split} {split2}"
                );
            }
        }
    }

    #[test]
    fn framing_bad_flag_and_skips() {
        let mut f = Framing::default();
        f.feed(&msg(2, b"x"));
        assert!(f.broken);
        assert_eq!(f.messages, 0);
        let mut f = Framing::default();
        let m = msg(0, &[0; 100]);
        f.feed(&m[..10]);
        f.skip(95);
        f.feed(&msg(0, b"ab"));
        assert_eq!((f.messages, f.bytes, f.broken), (2, 102, false));
        f.skip(1);
        assert!(f.broken);
    }

    #[test]
    fn paths_and_messages() {
        assert_eq!(
            split_path("/helloworld.Greeter/SayHello"),
            ("helloworld.Greeter".into(), "SayHello".into())
        );
        assert_eq!(split_path("/x"), ("x".into(), "".into()));
        assert_eq!(split_path("/a/b/c"), ("a/b/c".into(), "".into()));
        assert_eq!(
            percent_decode(b"no%20such%20key %E2%9C%93 %zz%4"),
            "no such key ✓ %zz%4"
        );
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(is_grpc_content_type(b"Application/GRPC"));
        assert!(!is_grpc_content_type(b"application/json"));
    }
}
