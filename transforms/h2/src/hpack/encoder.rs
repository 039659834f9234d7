//! A small HPACK encoder, for tests, benchmarks and fuzz seeds (the data path only decodes).

use super::huffman;
use super::table::{ENTRY_OVERHEAD, STATIC};

/// How a literal is sent (RFC 7541 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexing {
    Incremental,
    Without,
    Never,
}

/// Encoder with its own dynamic table mirror; uses full and name matches.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// Newest first.
    table: Vec<(Vec<u8>, Vec<u8>)>,
    size: usize,
    capacity: usize,
    huffman: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            table: Vec::new(),
            size: 0,
            capacity: 4096,
            huffman: true,
        }
    }

    /// Use Huffman for strings when shorter (default: true).
    pub fn set_huffman(&mut self, on: bool) {
        self.huffman = on;
    }

    /// Emit a dynamic table size update and apply it.
    pub fn size_update(&mut self, size: usize, dst: &mut Vec<u8>) {
        integer(size as u32, 5, 0x20, dst);
        self.capacity = size;
        self.evict(0);
    }

    /// Encode a header list: indexed when the pair is known, otherwise a literal with
    /// incremental indexing (never-indexed for authorization and cookie values).
    pub fn encode<'a>(&mut self, headers: impl IntoIterator<Item = (&'a str, &'a str)>, dst: &mut Vec<u8>) {
        for (n, v) in headers {
            let how = if n == "authorization" || n == "cookie" {
                Indexing::Never
            } else {
                Indexing::Incremental
            };
            self.field(n.as_bytes(), v.as_bytes(), how, dst);
        }
    }

    pub fn field(&mut self, name: &[u8], value: &[u8], how: Indexing, dst: &mut Vec<u8>) {
        let (full, name_idx) = self.find(name, value);
        if let (Some(i), Indexing::Incremental | Indexing::Without) = (full, how) {
            integer(i as u32, 7, 0x80, dst);
            return;
        }
        let (prefix, flags) = match how {
            Indexing::Incremental => (6, 0x40),
            Indexing::Without => (4, 0x00),
            Indexing::Never => (4, 0x10),
        };
        match name_idx {
            Some(i) => integer(i as u32, prefix, flags, dst),
            None => {
                integer(0, prefix, flags, dst);
                self.string(name, dst);
            }
        }
        self.string(value, dst);
        if how == Indexing::Incremental {
            let s = name.len() + value.len() + ENTRY_OVERHEAD;
            if s > self.capacity {
                self.table.clear();
                self.size = 0;
            } else {
                self.evict(s);
                self.table.insert(0, (name.to_vec(), value.to_vec()));
                self.size += s;
            }
        }
    }

    fn evict(&mut self, room: usize) {
        while self.size + room > self.capacity {
            match self.table.pop() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }

    fn find(&self, name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
        let mut name_idx = None;
        for (i, (n, v)) in STATIC.iter().enumerate() {
            if n.as_bytes() == name {
                if v.as_bytes() == value {
                    return (Some(i + 1), Some(i + 1));
                }
                name_idx.get_or_insert(i + 1);
            }
        }
        for (i, (n, v)) in self.table.iter().enumerate() {
            if n == name {
                if v == value {
                    return (Some(i + 62), Some(i + 62));
                }
                name_idx.get_or_insert(i + 62);
            }
        }
        (None, name_idx)
    }

    fn string(&self, s: &[u8], dst: &mut Vec<u8>) {
        let hlen = huffman::encoded_len(s);
        if self.huffman && hlen < s.len() {
            integer(hlen as u32, 7, 0x80, dst);
            huffman::encode(s, dst);
        } else {
            integer(s.len() as u32, 7, 0, dst);
            dst.extend_from_slice(s);
        }
    }
}

/// Encode an integer with an `n`-bit prefix; `flags` fills the bits above the prefix.
pub fn integer(mut v: u32, n: u32, flags: u8, dst: &mut Vec<u8>) {
    let max = (1u32 << n) - 1;
    if v < max {
        dst.push(flags | v as u8);
        return;
    }
    dst.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        dst.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    dst.push(v as u8);
}
