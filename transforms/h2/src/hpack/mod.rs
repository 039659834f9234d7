//! A passive HPACK decoder (RFC 7541).
//!
//! Differences from a decoder inside an endpoint, because we only watch:
//! - an index we do not know (the capture started mid-connection, or bytes were lost)
//!   is not fatal: that header is dropped, counted in [`BlockStatus::unknown`], and
//!   decoding goes on, so later literals with incremental indexing still fill the table
//!   at the right positions (indexes count from the newest entry);
//! - the table is never larger than [`TABLE_SIZE_CAP`] whatever the peers negotiate:
//!   entries beyond it become unknown indexes instead of memory;
//! - protocol mistakes that do not stop decoding (a size update above the advertised
//!   limit or after a field) are counted in [`BlockStatus::soft_errors`].

pub mod encoder;
pub mod huffman;
mod table;

use std::cell::RefCell;

pub use table::{DynamicTable, ENTRY_OVERHEAD, Entry, STATIC};

/// Largest dynamic table kept per direction, whatever SETTINGS_HEADER_TABLE_SIZE says.
pub const TABLE_SIZE_CAP: usize = 64 * 1024;
/// The protocol's initial SETTINGS_HEADER_TABLE_SIZE.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Why decoding of a header block stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a representation")]
    Truncated,
    #[error("integer overflows 32 bits")]
    IntegerOverflow,
    #[error("index 0")]
    ZeroIndex,
    #[error("invalid Huffman string")]
    Huffman,
}

/// Outcome of decoding one header block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStatus {
    /// Header fields dropped because they referenced an entry we do not know.
    pub unknown: u32,
    /// Of those, references past a table we believed complete (a peer or decoder bug).
    pub invalid_index: u32,
    /// Protocol errors that did not stop decoding.
    pub soft_errors: u32,
    /// Set when decoding stopped early; fields before the error were delivered.
    pub error: Option<HpackError>,
}

/// One decoded header field, borrowed from the block, the table or a scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// Sent as never-indexed (RFC 7541 §6.2.3): a hint that the value is sensitive.
    pub never_indexed: bool,
}

/// Decoder state of one direction of a connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    table: DynamicTable,
    /// Largest table size an update may set (SETTINGS_HEADER_TABLE_SIZE advertised by the receiver).
    limit: u32,
    /// The table may miss entries (capture started mid-connection, or bytes were lost).
    partial: bool,
}

/// Huffman-decoded strings of the block being decoded.
#[derive(Default)]
struct Scratch {
    name: Vec<u8>,
    value: Vec<u8>,
}

thread_local! {
    /// Shared by every decoder of the thread, so a connection keeps no string buffers
    /// between blocks (100 k idle connections would otherwise each hold some).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

enum Name {
    Static(&'static [u8]),
    Dynamic(usize),
    Literal,
    Unknown,
}

#[derive(Clone, Copy)]
enum Str {
    Raw(usize, usize),
    Buf,
}

impl Decoder {
    /// A decoder for a connection seen from its start.
    pub fn new() -> Self {
        Decoder {
            table: DynamicTable::new(DEFAULT_TABLE_SIZE),
            limit: DEFAULT_TABLE_SIZE as u32,
            partial: false,
        }
    }

    /// A decoder whose table may already hold entries we never saw.
    pub fn partial() -> Self {
        Decoder {
            partial: true,
            ..Decoder::new()
        }
    }

    pub fn is_partial(&self) -> bool {
        self.partial
    }

    pub fn set_partial(&mut self, partial: bool) {
        self.partial = partial;
    }

    /// Bytes were lost: what the table holds can no longer be trusted. Entries added from
    /// now on are known again; older indexes decode as unknown.
    pub fn forget(&mut self) {
        self.table.clear();
        self.partial = true;
    }

    /// SETTINGS_HEADER_TABLE_SIZE advertised by the peer that decodes this direction.
    /// Kept as the largest value seen: a passive observer cannot tell when it was acknowledged.
    pub fn advertise_limit(&mut self, size: u32) {
        self.limit = self.limit.max(size);
    }

    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Approximate bytes of memory held.
    pub fn memory(&self) -> usize {
        self.table.memory()
    }

    /// Decode one complete header block, calling `emit` for each field in order.
    /// A truncated block (capture cut it) decodes up to the cut and reports [`HpackError::Truncated`].
    pub fn decode(&mut self, block: &[u8], emit: impl FnMut(Field<'_>)) -> BlockStatus {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.decode_with(block, &mut scratch, emit),
            // Only if `emit` itself decodes: give that call buffers of its own.
            Err(_) => self.decode_with(block, &mut Scratch::default(), emit),
        })
    }

    fn decode_with(&mut self, block: &[u8], scratch: &mut Scratch, mut emit: impl FnMut(Field<'_>)) -> BlockStatus {
        let mut st = BlockStatus::default();
        let mut pos = 0;
        let mut fields = 0u32;
        while pos < block.len() {
            if let Err(e) = self.representation(block, scratch, &mut pos, &mut fields, &mut st, &mut emit) {
                st.error = Some(e);
                break;
            }
        }
        st
    }

    fn representation(
        &mut self,
        block: &[u8],
        scratch: &mut Scratch,
        pos: &mut usize,
        fields: &mut u32,
        st: &mut BlockStatus,
        emit: &mut impl FnMut(Field<'_>),
    ) -> Result<(), HpackError> {
        let b = block[*pos];
        if b & 0x80 != 0 {
            // Indexed header field.
            let idx = integer(block, pos, 7)? as usize;
            *fields += 1;
            match idx {
                0 => return Err(HpackError::ZeroIndex),
                1..=61 => {
                    let (n, v) = STATIC[idx - 1];
                    emit(Field {
                        name: n.as_bytes(),
                        value: v.as_bytes(),
                        never_indexed: false,
                    });
                }
                _ => match self.table.get(idx - 62) {
                    Some(e) => match e.name() {
                        Some(n) => emit(Field {
                            name: n,
                            value: e.value(),
                            never_indexed: false,
                        }),
                        None => st.unknown += 1,
                    },
                    None => self.unknown_index(st),
                },
            }
            return Ok(());
        }
        if b & 0xe0 == 0x20 {
            // Dynamic table size update: only before the first field of a block.
            let size = integer(block, pos, 5)? as usize;
            if *fields > 0 || size > self.limit as usize {
                st.soft_errors += 1;
            }
            self.table.set_capacity(size.min(TABLE_SIZE_CAP));
            return Ok(());
        }
        let (prefix, indexing, never_indexed) = if b & 0x40 != 0 {
            (6, true, false)
        } else {
            (4, false, b & 0x10 != 0)
        };
        let idx = integer(block, pos, prefix)? as usize;
        *fields += 1;
        let name = match idx {
            0 => {
                let s = string(block, pos, &mut scratch.name)?;
                match s {
                    Str::Raw(a, b) => {
                        scratch.name.clear();
                        scratch.name.extend_from_slice(&block[a..b]);
                    }
                    Str::Buf => {}
                }
                Name::Literal
            }
            1..=61 => Name::Static(STATIC[idx - 1].0.as_bytes()),
            _ => match self.table.get(idx - 62).map(|e| e.name().is_some()) {
                Some(true) => Name::Dynamic(idx - 62),
                Some(false) => Name::Unknown,
                None => {
                    if !self.partial {
                        st.invalid_index += 1;
                    }
                    Name::Unknown
                }
            },
        };
        let name = match name {
            // The table changes below: copy the name out of it first.
            Name::Dynamic(i) if indexing => {
                scratch.name.clear();
                if let Some(n) = self.table.get(i).and_then(|e| e.name()) {
                    scratch.name.extend_from_slice(n);
                }
                Name::Literal
            }
            n => n,
        };
        let value = string(block, pos, &mut scratch.value)?;
        let value: &[u8] = match value {
            Str::Raw(a, b) => &block[a..b],
            Str::Buf => &scratch.value,
        };
        let known = match name {
            Name::Static(n) => Some(n),
            Name::Dynamic(i) => self.table.get(i).and_then(|e| e.name()),
            Name::Literal => Some(&scratch.name[..]),
            Name::Unknown => None,
        };
        match known {
            Some(n) => emit(Field {
                name: n,
                value,
                never_indexed,
            }),
            None => st.unknown += 1,
        }
        if indexing {
            let name = match name {
                Name::Static(n) => Some(n),
                Name::Literal => Some(&scratch.name[..]),
                // A dynamic name was copied to the scratch buffer above.
                Name::Dynamic(_) | Name::Unknown => None,
            };
            self.table.insert(name, value);
        }
        Ok(())
    }

    fn unknown_index(&self, st: &mut BlockStatus) {
        st.unknown += 1;
        if !self.partial {
            st.invalid_index += 1;
        }
    }
}

/// Decode an HPACK integer with an `n`-bit prefix at `block[*pos]`.
fn integer(block: &[u8], pos: &mut usize, n: u32) -> Result<u32, HpackError> {
    let max = (1u32 << n) - 1;
    let first = u32::from(*block.get(*pos).ok_or(HpackError::Truncated)?) & max;
    *pos += 1;
    if first < max {
        return Ok(first);
    }
    let mut value = u64::from(max);
    let mut shift = 0u32;
    loop {
        let b = *block.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok(value as u32);
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// Decode a string literal: raw strings are returned as a range of `block`; Huffman ones
/// are decoded into `buf`.
fn string(block: &[u8], pos: &mut usize, buf: &mut Vec<u8>) -> Result<Str, HpackError> {
    let huffman = block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, pos, 7)? as usize;
    let start = *pos;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= block.len())
        .ok_or(HpackError::Truncated)?;
    *pos = end;
    if huffman {
        buf.clear();
        huffman::decode(&block[start..end], buf).map_err(|_| HpackError::Huffman)?;
        Ok(Str::Buf)
    } else {
        Ok(Str::Raw(start, end))
    }
}

#[cfg(test)]
mod tests;
