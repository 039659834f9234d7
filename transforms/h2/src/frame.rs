//! Frame headers (RFC 9113 §4.1) and the plausibility checks used to detect HTTP/2 and to
//! find a frame boundary again after lost bytes.

pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE default, and the bound used before SETTINGS are seen.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// Largest frame the protocol can express (2^24 - 1).
pub const MAX_FRAME_LIMIT: u32 = (1 << 24) - 1;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// RST_STREAM / GOAWAY error code of a graceful end.
pub const NO_ERROR: u32 = 0x0;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHeader {
    pub fn parse(b: &[u8; HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub fn from_slice(b: &[u8]) -> Option<FrameHeader> {
        let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(FrameHeader::parse(h))
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// What the protocol requires of a known frame type regardless of state
    /// (stream 0 or not, fixed lengths). Unknown types pass: they must be ignored.
    pub fn well_formed(&self) -> bool {
        let on_stream = self.stream != 0;
        match self.kind {
            DATA | HEADERS | CONTINUATION => on_stream,
            PUSH_PROMISE => on_stream && self.len >= 4,
            PRIORITY => on_stream && self.len == 5,
            RST_STREAM => on_stream && self.len == 4,
            SETTINGS => !on_stream && self.len.is_multiple_of(6) && (!self.has(ACK) || self.len == 0),
            PING => !on_stream && self.len == 8,
            GOAWAY => !on_stream && self.len >= 8,
            WINDOW_UPDATE => self.len == 4,
            _ => true,
        }
    }

    /// Strict check for detection and resynchronisation: a known type, only its defined
    /// flags, a length within `max_len`, and the reserved bit clear.
    pub fn plausible(raw: &[u8; HEADER_LEN], max_len: u32) -> bool {
        let h = FrameHeader::parse(raw);
        let defined: u8 = match h.kind {
            DATA => END_STREAM | PADDED,
            HEADERS => END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG,
            PUSH_PROMISE => END_HEADERS | PADDED,
            CONTINUATION => END_HEADERS,
            SETTINGS | PING => ACK,
            PRIORITY | RST_STREAM | GOAWAY | WINDOW_UPDATE => 0,
            _ => return false,
        };
        raw[5] & 0x80 == 0 && h.flags & !defined == 0 && h.len <= max_len && h.well_formed()
    }
}

/// Append one frame (header + payload) to `out`: for tests, benchmarks and fuzz seeds.
pub fn write(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = (payload.len() as u32).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Heuristic for captures that start mid-connection: `data` begins with a plausible frame
/// header, and every following header that lies within `data` is plausible too (at most 8 checked).
pub fn looks_like_frames(data: &[u8]) -> bool {
    let mut pos = 0usize;
    for checked in 0..8 {
        let Some(raw) = data.get(pos..pos + HEADER_LEN) else {
            return checked > 0;
        };
        let raw: &[u8; HEADER_LEN] = raw.try_into().unwrap_or(&[0xff; HEADER_LEN]);
        if !FrameHeader::plausible(raw, DEFAULT_MAX_FRAME) {
            return false;
        }
        pos += HEADER_LEN + FrameHeader::parse(raw).len as usize;
        if pos >= data.len() {
            return true;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        let settings = [0, 0, 6, SETTINGS, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        assert!(looks_like_frames(&settings));
        let mut two = settings.to_vec();
        two.extend_from_slice(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0]);
        assert!(looks_like_frames(&two));
        two.extend_from_slice(&[0, 0, 0, 0x42, 0, 0, 0, 0, 0]);
        assert!(!looks_like_frames(&two));
        assert!(!looks_like_frames(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!looks_like_frames(b"HTTP/1.1 200 OK\r\n"));
        assert!(!looks_like_frames(b"*1\r\n$4\r\nPING\r\n"));
        assert!(!looks_like_frames(&[0x16, 3, 1, 0, 0xa5, 1, 0, 0, 0xa1]));
        assert!(!looks_like_frames(PREFACE));
        assert!(!looks_like_frames(&settings[..8]));
        // DATA on stream 0 is not well formed.
        assert!(!looks_like_frames(&[0, 0, 1, DATA, 0, 0, 0, 0, 0, b'x']));
        assert!(looks_like_frames(&[0, 0, 1, DATA, 1, 0, 0, 0, 1, b'x']));
    }
}
