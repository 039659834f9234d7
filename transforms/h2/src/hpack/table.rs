//! The static table (RFC 7541 Appendix A) and the dynamic table with its size accounting.

use std::collections::VecDeque;

/// Per-entry overhead counted by HPACK (RFC 7541 §4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// Indexes 1..=61.
pub static STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// One dynamic entry: name and value in one allocation.
#[derive(Debug, Clone)]
pub struct Entry {
    bytes: Box<[u8]>,
    name_len: u32,
    /// False when the entry was added by a literal whose indexed name we never knew.
    name_known: bool,
}

impl Entry {
    pub fn new(name: Option<&[u8]>, value: &[u8]) -> Entry {
        let n = name.unwrap_or(b"");
        let mut bytes = Vec::with_capacity(n.len() + value.len());
        bytes.extend_from_slice(n);
        bytes.extend_from_slice(value);
        Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: n.len() as u32,
            name_known: name.is_some(),
        }
    }

    pub fn name(&self) -> Option<&[u8]> {
        self.name_known.then(|| &self.bytes[..self.name_len as usize])
    }

    pub fn value(&self) -> &[u8] {
        &self.bytes[self.name_len as usize..]
    }

    /// HPACK size. For an unknown name this undercounts, which only delays evictions of
    /// entries the encoder no longer references: safe (indexes count from the newest).
    pub fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

/// The dynamic table of one direction; newest entry first (index 62).
#[derive(Debug, Clone)]
pub struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
    capacity: usize,
}

impl DynamicTable {
    pub fn new(capacity: usize) -> Self {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            capacity,
        }
    }

    pub fn get(&self, i: usize) -> Option<&Entry> {
        self.entries.get(i)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.evict_to(capacity);
    }

    pub fn insert(&mut self, e: Entry) {
        let s = e.size();
        if s > self.capacity {
            // RFC 7541 §4.4: an entry larger than the table empties it.
            self.clear();
            return;
        }
        self.evict_to(self.capacity - s);
        self.size += s;
        self.entries.push_front(e);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.size = 0;
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size(),
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    /// Bytes of memory held (approximately).
    pub fn memory(&self) -> usize {
        self.size + self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}
