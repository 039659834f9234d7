//! Streaming pcap / pcapng reading: one packet at a time from a bounded buffer.
//!
//! pcap-parser does the block parsing; this layer keeps the per-interface facts pcapng
//! needs (link type, timestamp resolution and offset, reset at each section) and turns
//! every timestamp into ns since the epoch.

use std::io::Read;

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};

/// Initial read buffer; grown (up to [`MAX_BUFFER`]) for blocks that do not fit.
const INITIAL_BUFFER: usize = 256 * 1024;
const MAX_BUFFER: usize = 64 * 1024 * 1024;

/// One captured frame, borrowed from the reader's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Capture time, ns since the UNIX epoch.
    pub ts_ns: u64,
    /// LINKTYPE_* value of the interface the frame was captured on.
    pub linktype: i32,
    /// Captured bytes (may be shorter than the frame on the wire: snaplen).
    pub data: &'a [u8],
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a pcap or pcapng file ({0})")]
    Format(String),
    #[error("unreadable block at byte {offset}: {reason}")]
    Corrupt { offset: usize, reason: String },
    #[error("a block larger than {MAX_BUFFER} bytes at byte {0}")]
    BlockTooLarge(usize),
    #[error("read failed at byte {0}")]
    Io(usize),
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: i32,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp (pcapng if_tsoffset).
    offset_secs: i64,
}

/// What a finished read ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The whole file was read.
    Eof,
    /// The file ends inside a block (a capture that was cut short); everything before it was read.
    Truncated,
}

/// What [`PacketReader::next_packet`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A packet was handed to the callback.
    Packet,
    /// No more packets.
    End(End),
}

pub struct PacketReader {
    inner: Box<dyn PcapReaderIterator + Send>,
    /// pcapng interfaces of the current section, by interface id.
    interfaces: Vec<Interface>,
    /// Set by a legacy pcap header.
    legacy: Option<Interface>,
    buffer_size: usize,
}

impl PacketReader {
    /// Start reading; fails when the stream is neither pcap nor pcapng.
    pub fn new<R: Read + Send + 'static>(input: R) -> Result<Self, ReadError> {
        let inner = pcap_parser::create_reader(INITIAL_BUFFER, input).map_err(|e| match e {
            PcapError::Eof => ReadError::Format("empty file".into()),
            PcapError::ReadError => ReadError::Io(0),
            PcapError::HeaderNotRecognized => ReadError::Format("unknown magic number".into()),
            other => ReadError::Format(format!("{other:?}")),
        })?;
        Ok(PacketReader {
            inner,
            interfaces: Vec::new(),
            legacy: None,
            buffer_size: INITIAL_BUFFER,
        })
    }

    /// Read until the next packet and hand it to `f`. Non-packet blocks are consumed
    /// silently; packets on an interface that was never described are skipped.
    pub fn next_packet(&mut self, f: impl FnOnce(Packet<'_>)) -> Result<Next, ReadError> {
        let mut f = Some(f);
        loop {
            let consumed = self.inner.consumed();
            match self.inner.next() {
                Ok((len, block)) => {
                    let packet = match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            let units = if h.is_nanosecond_precision() {
                                1_000_000_000
                            } else {
                                1_000_000
                            };
                            self.legacy = Some(Interface {
                                linktype: h.network.0,
                                units_per_sec: units,
                                offset_secs: 0,
                            });
                            None
                        }
                        PcapBlockOwned::Legacy(b) => self.legacy.map(|i| Packet {
                            ts_ns: ts_ns(
                                &i,
                                (u64::from(b.ts_sec) * i.units_per_sec).saturating_add(u64::from(b.ts_usec)),
                            ),
                            linktype: i.linktype,
                            data: clamp(b.data, b.caplen),
                        }),
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            self.interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            self.interfaces.push(Interface {
                                linktype: idb.linktype.0,
                                units_per_sec: units_per_sec(idb.if_tsresol),
                                offset_secs: idb.ts_offset(),
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            self.interfaces.get(epb.if_id as usize).map(|i| Packet {
                                ts_ns: ts_ns(i, (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low)),
                                linktype: i.linktype,
                                data: clamp(epb.data, epb.caplen),
                            })
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            // No timestamp in a simple packet block.
                            self.interfaces.first().map(|i| Packet {
                                ts_ns: 0,
                                linktype: i.linktype,
                                data: spb.data,
                            })
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    let delivered = match (packet, f.take()) {
                        (Some(p), Some(cb)) => {
                            cb(p);
                            true
                        }
                        (None, cb) => {
                            f = cb;
                            false
                        }
                        (Some(_), None) => false,
                    };
                    self.inner.consume(len);
                    if delivered {
                        return Ok(Next::Packet);
                    }
                }
                Err(PcapError::Eof) => return Ok(Next::End(End::Eof)),
                Err(PcapError::Incomplete(_)) => {
                    if self.inner.reader_exhausted() {
                        return Ok(Next::End(End::Truncated));
                    }
                    self.inner.refill().map_err(|_| ReadError::Io(consumed))?;
                }
                Err(PcapError::UnexpectedEof) => return Ok(Next::End(End::Truncated)),
                Err(PcapError::BufferTooSmall) => {
                    if self.buffer_size >= MAX_BUFFER {
                        return Err(ReadError::BlockTooLarge(consumed));
                    }
                    self.buffer_size *= 4;
                    self.inner.grow(self.buffer_size.min(MAX_BUFFER));
                    self.inner.refill().map_err(|_| ReadError::Io(consumed))?;
                }
                Err(PcapError::ReadError) => return Err(ReadError::Io(consumed)),
                Err(e) => {
                    let reason = match e {
                        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                            format!("{kind:?}")
                        }
                        other => format!("{other:?}"),
                    };
                    return Err(ReadError::Corrupt {
                        offset: consumed,
                        reason,
                    });
                }
            }
        }
    }
}

/// pcapng `if_tsresol`: 10^-n seconds, or 2^-n when the high bit is set. An invalid value
/// falls back to the default (µs). (pcap-parser 0.17 rejects every power-of-two resolution.)
fn units_per_sec(tsresol: u8) -> u64 {
    let n = u32::from(tsresol & 0x7f);
    let units = if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    };
    units.unwrap_or(1_000_000)
}

/// Captured data never longer than the block says (pcap-parser already bounds it; belt and braces).
fn clamp(data: &[u8], caplen: u32) -> &[u8] {
    &data[..data.len().min(caplen as usize)]
}

/// Timestamp in interface units → ns since the epoch (saturating; no panics on odd values).
fn ts_ns(i: &Interface, units: u64) -> u64 {
    let per = u128::from(i.units_per_sec.max(1));
    let units = u128::from(units);
    let ns = (units / per) * 1_000_000_000 + (units % per) * 1_000_000_000 / per;
    let ns = ns as i128 + i128::from(i.offset_secs) * 1_000_000_000;
    ns.clamp(0, i128::from(u64::MAX)) as u64
}
