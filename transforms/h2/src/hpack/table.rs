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

/// One dynamic entry, borrowed from its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    name: Option<&'a [u8]>,
    value: &'a [u8],
}

impl<'a> Entry<'a> {
    /// `None` when the entry was added by a literal whose indexed name we never knew.
    pub fn name(&self) -> Option<&'a [u8]> {
        self.name
    }

    pub fn value(&self) -> &'a [u8] {
        self.value
    }
}

/// Where an entry's bytes (name then value) are in the table's buffer.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: u32,
    name_len: u32,
    value_len: u32,
    name_known: bool,
}

impl Slot {
    fn len(&self) -> usize {
        self.name_len as usize + self.value_len as usize
    }

    /// HPACK size. For an unknown name this undercounts, which only delays evictions of
    /// entries the encoder no longer references: safe (indexes count from the newest).
    fn size(&self) -> usize {
        self.len() + ENTRY_OVERHEAD
    }
}

/// The dynamic table of one direction; index 0 here is HPACK index 62 (the newest entry).
///
/// Entries live in one byte buffer, oldest first, sized by what they hold rather than by
/// the negotiated limit: a table with three small entries costs two small allocations, and
/// inserting or evicting allocates nothing once the buffer has grown. Evicted bytes at the
/// front are reclaimed when they are half the buffer (amortised), so the buffer stays under
/// twice the live bytes.
#[derive(Debug, Clone)]
pub struct DynamicTable {
    bytes: Vec<u8>,
    /// Oldest first; `at` is an offset into `bytes`.
    slots: VecDeque<Slot>,
    // u32: tables are capped at TABLE_SIZE_CAP; two words fewer per direction.
    size: u32,
    capacity: u32,
}

impl DynamicTable {
    pub fn new(capacity: usize) -> Self {
        DynamicTable {
            bytes: Vec::new(),
            slots: VecDeque::new(),
            size: 0,
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
        }
    }

    pub fn get(&self, i: usize) -> Option<Entry<'_>> {
        let slot = self.slots.get(self.slots.len().checked_sub(i.checked_add(1)?)?)?;
        let at = slot.at as usize;
        let bytes = self.bytes.get(at..at + slot.len())?;
        let (name, value) = bytes.split_at(slot.name_len as usize);
        Some(Entry {
            name: slot.name_known.then_some(name),
            value,
        })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn size(&self) -> usize {
        self.size as usize
    }

    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
        self.evict_to(self.capacity());
    }

    /// Add an entry (`name` `None`: a name we never knew).
    pub fn insert(&mut self, name: Option<&[u8]>, value: &[u8]) {
        let n = name.unwrap_or(b"");
        let s = n.len() + value.len() + ENTRY_OVERHEAD;
        if s > self.capacity() {
            // RFC 7541 §4.4: an entry larger than the table empties it.
            self.clear();
            return;
        }
        self.evict_to(self.capacity() - s);
        self.reclaim();
        let need = self.bytes.len() + n.len() + value.len();
        if need > self.bytes.capacity() {
            // Grow by half (amortised) but from a small start in 16-byte steps: most tables
            // hold a few short entries.
            let want = need.max(self.bytes.capacity() * 3 / 2).next_multiple_of(16);
            self.bytes.reserve_exact(want - self.bytes.len());
        }
        let (Ok(at), Ok(name_len), Ok(value_len)) = (
            u32::try_from(self.bytes.len()),
            u32::try_from(n.len()),
            u32::try_from(value.len()),
        ) else {
            // Unreachable with capacities up to TABLE_SIZE_CAP; never panic on input.
            self.clear();
            return;
        };
        self.bytes.extend_from_slice(n);
        self.bytes.extend_from_slice(value);
        self.slots.push_back(Slot {
            at,
            name_len,
            value_len,
            name_known: name.is_some(),
        });
        self.size += s as u32;
    }

    /// Forget every entry and release the memory.
    pub fn clear(&mut self) {
        self.slots = VecDeque::new();
        self.bytes = Vec::new();
        self.size = 0;
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size() > limit {
            match self.slots.pop_front() {
                Some(e) => self.size -= e.size() as u32,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
        if self.slots.is_empty() {
            self.bytes.clear();
        }
    }

    /// Drop the bytes of evicted entries once they are at least half of the buffer.
    fn reclaim(&mut self) {
        let dead = self.slots.front().map_or(self.bytes.len(), |s| s.at as usize);
        if dead == 0 || dead * 2 < self.bytes.len() {
            return;
        }
        self.bytes.drain(..dead);
        for s in &mut self.slots {
            s.at -= dead as u32;
        }
    }

    /// Bytes of memory held (approximately).
    pub fn memory(&self) -> usize {
        self.bytes.capacity() + self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    /// Entries, newest first.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> {
        (0..self.slots.len()).filter_map(move |i| self.get(i))
    }
}
