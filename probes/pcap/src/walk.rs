//! What the eBPF probe captures of one transfer under `max_capture_bytes`, so a replay with
//! the option sees what a live agent would (docs/ebpf.md, "HTTP/2 frame walk").
//!
//! A transfer is captured as a prefix of `max_capture_bytes` bytes, except on a connection
//! whose client began with the HTTP/2 preface, or that switched to h2c by Upgrade (the
//! server's first answer a 101): there every frame header and non-DATA payload is kept
//! wherever it lies in the transfer, DATA payload while the transfer's budget lasts, and
//! past it each DATA payload's first [`DATA_HEAD`] bytes (a gRPC length prefix; all of one
//! up to [`DATA_SMALL`] bytes); the frame
//! in progress carries over to the next transfer. The kernel's limits are mirrored: at
//! most [`COPY_STEPS`] steps and [`copy_cap`] kept bytes per transfer, beyond which the
//! walk is given up and the direction is captured as a prefix from then on (a step here is
//! a frame header with the first bytes of its payload, the rest of a payload, or
//! a 4 KiB record; the kernel also counts iovec segments, which a capture file does not
//! show).

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
/// A 101's head is searched for its end this far (`UPGRADE_HEAD_MAX`).
const UPGRADE_HEAD_MAX: usize = 256;
const FRAME_HEADER: usize = 9;
/// Bytes of every DATA payload kept past the budget (`DATA_HEAD`: a gRPC length prefix).
const DATA_HEAD: usize = 5;
/// A DATA payload up to this long is kept whole past the budget (`DATA_SMALL`).
const DATA_SMALL: usize = 64;
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
    /// Bytes of the current DATA payload's head still kept past the budget.
    head: usize,
    /// A frame header split across transfers.
    hdr: [u8; FRAME_HEADER],
    have: usize,
}

impl DirWalk {
    /// Payload bytes kept next, of `rest` in the transfer: a kept payload, or DATA while the
    /// budget lasts or its head past it (a record holds 4 KiB); None: skipped.
    fn piece(&self, rest: usize, kept: &Kept, budget: usize) -> Option<usize> {
        if self.left == 0 || !(self.keep || kept.bytes < budget || self.head > 0) {
            return None;
        }
        let n = self.left.min(rest).min(CHUNK - kept.bytes % CHUNK);
        Some(if self.keep {
            n
        } else {
            n.min(budget.saturating_sub(kept.bytes).max(self.head))
        })
    }
}

/// Where one direction stands (the kernel's `H2Walk::state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// The client has not sent a byte yet.
    #[default]
    Undecided,
    /// The client began with HTTP/1: the server's first answer decides.
    Upgrade,
    Walk(DirWalk),
    /// Captured as a prefix.
    Off,
}

/// One connection's walk state.
#[derive(Debug, Clone, Default)]
pub struct ConnWalk {
    /// Per direction (index: client 0, server 1).
    dirs: [State; 2],
    /// Connections walked (0 or 1), and transfers whose walk was given up (the kernel's
    /// `h2_walked_connections` and `h2_walks_lost`).
    pub walked: u64,
    pub lost: u64,
}

impl ConnWalk {
    /// The ranges of `buf` (one transfer) that a live probe keeps, in order, adjacent
    /// ranges joined. `from_client`: `None` when the roles are unknown (never walked).
    pub fn capture(&mut self, buf: &[u8], from_client: Option<bool>, budget: usize) -> Vec<Range<usize>> {
        let i = match from_client {
            Some(true) => 0,
            Some(false) => 1,
            None => return prefix(buf, budget),
        };
        let lead = self.decide(i, buf);
        let State::Walk(mut w) = self.dirs[i] else {
            return prefix(buf, budget);
        };
        if lead > 0 {
            // The preface or the 101's head is kept as if it were a frame payload.
            w = DirWalk {
                left: lead,
                keep: true,
                ..w
            };
        }
        let mut kept = Kept::default();
        let cap = copy_cap(budget);
        let (mut pos, mut steps) = (0, 0);
        // The kernel reads a payload's first bytes in the step that completes its frame's
        // header (up to DATA_SMALL; of a larger DATA payload its head): a piece it covers,
        // right after its header, takes no step.
        let mut after_header = false;
        while pos < buf.len() {
            let rest = buf.len() - pos;
            let piece = w.piece(rest, &kept, budget);
            let covered = if w.keep { DATA_SMALL } else { w.head };
            let free = std::mem::take(&mut after_header) && piece.is_some_and(|n| n <= covered);
            if !free {
                steps += 1;
            }
            if steps > COPY_STEPS {
                return self.give_up(i, kept);
            }
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
                    w.head = match (w.keep, w.left) {
                        (true, _) => 0,
                        (false, n) if n <= DATA_SMALL => n,
                        (false, _) => DATA_HEAD,
                    };
                    w.have = 0;
                    after_header = true;
                }
                n
            } else if let Some(n) = piece {
                if kept.bytes + n > cap {
                    return self.give_up(i, kept);
                }
                kept.add(pos..pos + n);
                w.left -= n;
                w.head = w.head.saturating_sub(n);
                n
            } else {
                let n = w.left.min(rest);
                w.left -= n;
                n
            };
            pos += n;
        }
        self.dirs[i] = State::Walk(w);
        kept.ranges
    }

    /// The kernel's `decide_walk`: the client's first bytes decide (the preface walks
    /// both sides); after HTTP/1 the server's first answer does (a 101 walks its side from
    /// the end of its head, and the client's from its preface). Returns the lead when a
    /// walk starts with this transfer.
    fn decide(&mut self, i: usize, buf: &[u8]) -> usize {
        let walk = State::Walk(DirWalk::default());
        match (i, self.dirs[i]) {
            (0, State::Undecided) => {
                if buf.starts_with(PREFACE) {
                    self.walked = 1;
                    self.dirs = [walk; 2];
                    return PREFACE.len();
                }
                self.dirs = [State::Upgrade; 2];
            }
            (1, State::Upgrade) => match switching_head_len(buf) {
                Some(n) => {
                    self.walked = 1;
                    self.dirs[1] = walk;
                    return n;
                }
                None => self.dirs = [State::Off; 2],
            },
            (0, State::Upgrade) => match self.dirs[1] {
                State::Walk(_) if buf.starts_with(PREFACE) => {
                    self.dirs[0] = walk;
                    return PREFACE.len();
                }
                State::Upgrade => {}
                _ => self.dirs[0] = State::Off,
            },
            _ => {}
        }
        0
    }

    /// Bytes of direction `from_client` went by unseen (a gap): the walk lost its place.
    pub fn gap(&mut self, from_client: Option<bool>) {
        if let Some(i) = from_client.map(|c| usize::from(!c))
            && matches!(self.dirs[i], State::Walk(_))
        {
            self.dirs[i] = State::Off;
            self.lost += 1;
        }
    }

    fn give_up(&mut self, i: usize, kept: Kept) -> Vec<Range<usize>> {
        self.dirs[i] = State::Off;
        self.lost += 1;
        kept.ranges
    }
}

/// The length of a "HTTP/1.1 101 " head at the start of `buf`, when it ends within
/// UPGRADE_HEAD_MAX bytes.
fn switching_head_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 16 || !buf.starts_with(b"HTTP/1.1 101 ") {
        return None;
    }
    let head = &buf[..buf.len().min(UPGRADE_HEAD_MAX)];
    head.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
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
        assert_eq!(w.capture(&[7; 100], Some(false), 16), [0..16], "not a 101");
        // Decided: a later preface does not start a walk.
        assert_eq!(w.capture(PREFACE, Some(true), 8), [0..8]);
        assert_eq!(w.walked, 0);
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
    fn every_data_payload_keeps_its_head_past_the_budget() {
        let mut w = ConnWalk::default();
        w.capture(PREFACE, Some(true), 16);
        // Three gRPC responses in one write: HEADERS, DATA (a 5-byte prefix and the
        // message); the budget is spent by the first.
        let message = |n: usize| [vec![0, 0, 0, 0, n as u8], vec![b'm'; n]].concat();
        let mut out = Vec::new();
        let mut want = Vec::new();
        for (stream, n) in [(1, 200), (3, 70), (5, 100)] {
            let h = frame(1, 4, stream, &[0x88; 4]);
            let d = frame(0, 1, stream, &message(n));
            let at = out.len();
            // The HEADERS and the DATA header whole, then DATA_HEAD bytes of the payload.
            want.push(at..at + h.len() + 9 + DATA_HEAD);
            out.extend(h);
            out.extend(d);
        }
        assert_eq!(w.capture(&out, Some(false), 16), want);
        // Five small messages a proxy packed into one frame: kept whole, every prefix in it.
        let packed = frame(0, 0, 7, &(0..5).flat_map(|_| message(2)).collect::<Vec<u8>>());
        assert_eq!(w.capture(&packed, Some(false), 1), [0..packed.len()]);
        // A 2-byte DATA payload is kept whole; a frame's head is kept once, not per step.
        let tiny = frame(0, 0, 7, &[1, 2]);
        assert_eq!(w.capture(&tiny, Some(false), 1), [0..tiny.len()]);
        let mut big = frame(0, 0, 9, &[7; 300]);
        let tail = big.split_off(100);
        assert_eq!(w.capture(&big, Some(false), 1), [0..9 + DATA_HEAD]);
        assert_eq!(w.capture(&tail, Some(false), 1), [0..1], "the budget only");
        assert_eq!(w.lost, 0);
    }

    #[test]
    fn a_payload_head_is_read_with_its_frame_header() {
        // 500 DATA frames past the budget: a step for each header (with its payload's
        // head) and one to skip the rest; 1 000 WINDOW_UPDATEs: one step each.
        let data: Vec<u8> = (0..500).flat_map(|i| frame(0, 0, 1 + 2 * i, &[0; 100])).collect();
        let updates: Vec<u8> = (0..1000).flat_map(|_| frame(8, 0, 0, &[0, 0, 1, 0])).collect();
        for (name, t) in [("data", &data), ("window updates", &updates)] {
            let mut w = ConnWalk::default();
            w.capture(PREFACE, Some(true), 16);
            let kept: usize = w.capture(t, Some(false), 16).iter().map(|r| r.len()).sum();
            assert_eq!(w.lost, 0, "{name}: within COPY_STEPS");
            // The first frame: its header and the 16-byte budget; each other: header and head.
            assert_eq!(
                kept,
                if name == "data" {
                    16 + 499 * (9 + DATA_HEAD)
                } else {
                    t.len()
                }
            );
        }
    }

    #[test]
    fn a_frame_and_its_header_carry_over_between_transfers() {
        let mut w = ConnWalk::default();
        w.capture(PREFACE, Some(true), 16);
        let d = frame(0, 0, 1, &[b'x'; 100]);
        let h = frame(1, 4, 1, &[0x88; 3]);
        // Transfer 1: the DATA header and 10 payload bytes; transfer 2: 90 more payload
        // bytes and 4 bytes of the next header; transfer 3: the rest of that header.
        let all = [d.clone(), h.clone()].concat();
        let (t1, t2, t3) = (&all[..19], &all[19..113], &all[113..]);
        assert_eq!(
            w.capture(t1, Some(false), 12),
            [0..14],
            "the header, and the payload's head past the 12-byte budget"
        );
        assert_eq!(
            w.capture(t2, Some(false), 12),
            [0..12, 90..94],
            "12 of the 90 DATA bytes, then the header"
        );
        assert_eq!(w.capture(t3, Some(false), 12), [0..t3.len()]);
        assert_eq!(w.lost, 0);
    }

    #[test]
    fn an_h2c_upgrade_is_walked_from_the_end_of_the_101() {
        let mut w = ConnWalk::default();
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n";
        assert_eq!(w.capture(req, Some(true), 16), [0..16]);
        // The 101, the server's SETTINGS and stream 1's answer in one transfer.
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
        let out = [
            head.to_vec(),
            frame(4, 0, 0, &[]),
            frame(1, 4, 1, &[0x88]),
            frame(0, 1, 1, &[b'x'; 100]),
        ]
        .concat();
        let data_at = head.len() + 9 + 10;
        assert_eq!(
            w.capture(&out, Some(false), 16),
            [0..data_at + 9 + DATA_HEAD],
            "the head, SETTINGS and HEADERS kept whole, DATA beyond the budget skipped but its head"
        );
        assert_eq!(w.walked, 1);
        // The client's preface, then a request on stream 3.
        let client = [PREFACE.to_vec(), frame(4, 0, 0, &[]), frame(1, 5, 3, &[0x82; 20])].concat();
        assert_eq!(w.capture(&client, Some(true), 16), [0..client.len()]);
        // Without a 101, both sides stay prefixes.
        let mut h1 = ConnWalk::default();
        h1.capture(req, Some(true), 16);
        assert_eq!(
            h1.capture(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Some(false), 16),
            [0..16]
        );
        assert_eq!(h1.capture(&client, Some(true), 16), [0..16]);
        assert_eq!(h1.walked, 0);
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
