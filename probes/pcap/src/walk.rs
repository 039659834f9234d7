//! What the eBPF probe captures of one transfer under `max_capture_bytes`, so a replay with
//! the option sees what a live agent would (docs/ebpf.md, "HTTP/2 frame walk").
//!
//! A transfer is captured as a prefix of `max_capture_bytes` bytes, except on a connection
//! whose client began with the HTTP/2 preface: there every frame header and non-DATA
//! payload is kept wherever it lies in the transfer, and DATA payload only while the
//! transfer's budget lasts; the frame in progress carries over to the next transfer. The
//! kernel's limits are mirrored: at most [`COPY_STEPS`] steps and [`copy_cap`] kept bytes
//! per transfer, beyond which the walk is given up and the direction is captured as a
//! prefix from then on (a step here is a frame header, a payload, or a 4 KiB record; the
//! kernel also counts iovec segments, which a capture file does not show).

use std::ops::Range;

/// Steps of one transfer's walk (`COPY_STEPS` in probes/common).
pub const COPY_STEPS: usize = 1024;
/// Bytes the kernel puts in one ring record (`CHUNK` in probes/common).
const CHUNK: usize = 4096;
/// Kept bytes of one transfer: twice the largest live budget (`H2_COPY_CAP`), or twice the
/// budget when a replay asks for more than a live probe allows.
fn copy_cap(budget: usize) -> usize {
    (2 * 16 * 1024).max(2 * budget)
}

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const DATA: u8 = 0;
const PADDED: u8 = 0x8;

/// The walk of one direction between transfers (the kernel's `H2Walk`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DirWalk {
    /// Payload bytes left of the current frame; 0: a frame header is next.
    left: usize,
    /// The current payload is kept whole (not DATA, or padded DATA: the parser needs its
    /// pad length).
    keep: bool,
    /// A frame header split across transfers.
    hdr: [u8; FRAME_HEADER],
    have: usize,
}

/// One connection's walk state.
#[derive(Debug, Clone, Default)]
pub struct ConnWalk {
    decided: bool,
    /// Per direction (index: client 0, server 1); `None`: captured as a prefix.
    dirs: [Option<DirWalk>; 2],
    /// Transfers whose walk was given up (the kernel's `h2_walks_lost`).
    pub lost: u64,
}

impl ConnWalk {
    /// The client's first transfer was seen.
    pub fn decided(&self) -> bool {
        self.decided
    }

    /// A direction is walked.
    pub fn walking(&self) -> bool {
        self.dirs.iter().any(Option::is_some)
    }

    /// The ranges of `buf` (one transfer) that a live probe keeps, in order, adjacent
    /// ranges joined. `from_client`: `None` when the roles are unknown (never walked).
    pub fn capture(&mut self, buf: &[u8], from_client: Option<bool>, budget: usize) -> Vec<Range<usize>> {
        let i = match from_client {
            Some(true) => 0,
            Some(false) => 1,
            None => return prefix(buf, budget),
        };
        let mut preface = false;
        if i == 0 && !self.decided {
            // The client's first transfer decides, once.
            self.decided = true;
            preface = buf.starts_with(PREFACE);
            let w = preface.then(DirWalk::default);
            self.dirs = [w, w];
        }
        let Some(mut w) = self.dirs[i] else {
            return prefix(buf, budget);
        };
        if preface {
            // The preface is kept as if it were a 24-byte frame payload.
            w = DirWalk {
                left: PREFACE.len(),
                keep: true,
                ..w
            };
        }
        let mut kept = Kept::default();
        let cap = copy_cap(budget);
        let (mut pos, mut steps) = (0, 0);
        while pos < buf.len() {
            steps += 1;
            if steps > COPY_STEPS {
                return self.give_up(i, kept);
            }
            let rest = buf.len() - pos;
            let n = if w.left == 0 {
                let n = (FRAME_HEADER - w.have).min(rest);
                if kept.bytes + n > cap {
                    return self.give_up(i, kept);
                }
                w.hdr[w.have..w.have + n].copy_from_slice(&buf[pos..pos + n]);
                w.have += n;
                kept.add(pos..pos + n);
                if w.have == FRAME_HEADER {
                    let h = w.hdr;
                    w.left = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    w.keep = h[3] != DATA || h[4] & PADDED != 0;
                    w.have = 0;
                }
                n
            } else if w.keep || kept.bytes < budget {
                // A kept payload, or DATA while the budget lasts; a record holds 4 KiB.
                let room = CHUNK - kept.bytes % CHUNK;
                let mut n = w.left.min(rest).min(room);
                if !w.keep {
                    n = n.min(budget - kept.bytes);
                }
                if kept.bytes + n > cap {
                    return self.give_up(i, kept);
                }
                kept.add(pos..pos + n);
                w.left -= n;
                n
            } else {
                let n = w.left.min(rest);
                w.left -= n;
                n
            };
            pos += n;
        }
        self.dirs[i] = Some(w);
        kept.ranges
    }

    /// Bytes of direction `from_client` went by unseen (a gap): the walk lost its place.
    pub fn gap(&mut self, from_client: Option<bool>) {
        if let Some(i) = from_client.map(|c| usize::from(!c))
            && self.dirs[i].take().is_some()
        {
            self.lost += 1;
        }
    }

    fn give_up(&mut self, i: usize, kept: Kept) -> Vec<Range<usize>> {
        self.dirs[i] = None;
        self.lost += 1;
        kept.ranges
    }
}

fn prefix(buf: &[u8], budget: usize) -> Vec<Range<usize>> {
    std::iter::once(0..buf.len().min(budget)).collect()
}

#[derive(Default)]
struct Kept {
    ranges: Vec<Range<usize>>,
    bytes: usize,
}

impl Kept {
    fn add(&mut self, r: Range<usize>) {
        self.bytes += r.len();
        match self.ranges.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => self.ranges.push(r),
        }
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // lists of kept ranges are what is checked
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn not_http2_is_a_prefix() {
        let mut w = ConnWalk::default();
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".repeat(10);
        assert_eq!(w.capture(&req, Some(true), 16), [0..16]);
        assert_eq!(w.capture(&[7; 100], Some(false), 16), [0..16]);
        // Decided once: a later preface does not start a walk.
        assert_eq!(w.capture(PREFACE, Some(true), 8), [0..8]);
        assert_eq!(ConnWalk::default().capture(PREFACE, None, 8), [0..8], "roles unknown");
    }

    #[test]
    fn frames_are_walked_and_data_beyond_the_budget_skipped() {
        let mut w = ConnWalk::default();
        let mut client = PREFACE.to_vec();
        client.extend(frame(4, 0, 0, &[]));
        client.extend(frame(1, 4, 1, &[0x82; 10]));
        assert_eq!(
            w.capture(&client, Some(true), 16),
            [0..client.len()],
            "all headers kept"
        );

        // HEADERS 1, DATA 1 (100 bytes), HEADERS 3, DATA 3 padded, with a budget of 40.
        let h1 = frame(1, 4, 1, &[0x88; 5]);
        let d1 = frame(0, 0, 1, &[b'x'; 100]);
        let h3 = frame(1, 4, 3, &[0x88; 5]);
        let d3 = frame(0, PADDED | 1, 3, &[2, b'y', b'y', 0, 0]);
        let out = [h1.clone(), d1.clone(), h3.clone(), d3.clone()].concat();
        let at_h3 = h1.len() + d1.len();
        assert_eq!(
            w.capture(&out, Some(false), 40),
            [0..40, at_h3..out.len()],
            "DATA kept up to 40 bytes, then skipped to the next header; padded DATA kept whole"
        );
    }

    #[test]
    fn a_frame_and_its_header_carry_over_between_transfers() {
        let mut w = ConnWalk::default();
        w.capture(PREFACE, Some(true), 16);
        let d = frame(0, 0, 1, &[b'x'; 50]);
        let h = frame(1, 4, 1, &[0x88; 3]);
        // Transfer 1: the DATA header and 10 payload bytes; transfer 2: 40 more payload
        // bytes and 4 bytes of the next header; transfer 3: the rest of that header.
        let all = [d.clone(), h.clone()].concat();
        let (t1, t2, t3) = (&all[..19], &all[19..63], &all[63..]);
        assert_eq!(w.capture(t1, Some(false), 12), [0..12]);
        assert_eq!(
            w.capture(t2, Some(false), 12),
            [0..12, 40..44],
            "12 of the 40 DATA bytes, then the header"
        );
        assert_eq!(w.capture(t3, Some(false), 12), [0..t3.len()]);
        assert_eq!(w.lost, 0);
    }

    #[test]
    fn too_much_to_keep_gives_the_walk_up() {
        let mut w = ConnWalk::default();
        w.capture(PREFACE, Some(true), 16);
        // 40 KiB of HEADERS/CONTINUATION payload in one transfer: past the copy cap.
        let big = frame(9, 0, 1, &vec![0x88; 40 * 1024]);
        let kept = w.capture(&big, Some(false), 16);
        assert_eq!(kept, [0..copy_cap(16) / CHUNK * CHUNK]);
        assert_eq!(w.lost, 1);
        assert_eq!(w.capture(&big, Some(false), 16), [0..16], "a prefix from then on");
        // A gap loses the client side's walk too.
        w.gap(Some(true));
        assert_eq!(w.lost, 2);
        assert_eq!(w.capture(&frame(1, 4, 3, &[0x88; 30]), Some(true), 16), [0..16]);
    }
}
