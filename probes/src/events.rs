//! Ring-buffer records → `SocketData` events: chunks joined into messages, connections
//! numbered, kernel loss turned into `Gap` events, process info attached.

use perisco_engine::FastMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use perisco_engine::event::{Direction, Event, ProcessInfo, Role, SocketData, SocketEventKind};
use perisco_probes_common::*;

/// Why a record was not turned into an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Short,
    BadKind,
}

struct Pending {
    dir: Direction,
    ts_ns: u64,
    len: u32,
    /// The captured bytes of every piece, in order.
    data: BytesMut,
    /// Offset (in the message) the next chunk continues the current piece at.
    next_off: u32,
    /// Where each piece starts: (offset in the message, offset in `data`). A new piece
    /// starts after a hole: bytes the kernel skipped on purpose (DATA payloads of a walked
    /// HTTP/2 connection) or a chunk that was lost.
    pieces: Vec<(u32, usize)>,
    /// A chunk went backwards: later bytes are dropped (they would be misplaced).
    broken: bool,
}

struct Conn {
    id: u64,
    local: SocketAddr,
    peer: SocketAddr,
    role: Role,
    pending: Option<Pending>,
    /// The process of the connection's latest event.
    process: Arc<ProcessInfo>,
}

/// Payloads of one-record messages are copied into shared blocks of this size and handed
/// out as slices: one allocation per block instead of one per message.
const ARENA_BYTES: usize = 64 * 1024;

/// Full blocks waiting for their slices to be dropped (`parse` copies what it keeps), then
/// written again: at 20 k exchanges/s a fresh block every few ms was most of perisco's
/// page faults, as the allocator returned freed blocks to the kernel and took them back.
/// Past this many, a full block is left to the allocator.
const ARENA_RETIRED: usize = 64;

/// The payload blocks of one source.
struct Arena {
    /// Unused tail of the block being filled.
    current: BytesMut,
    /// Full blocks, oldest first.
    retired: std::collections::VecDeque<BytesMut>,
}

impl Default for Arena {
    fn default() -> Self {
        Arena {
            current: BytesMut::with_capacity(ARENA_BYTES),
            retired: Default::default(),
        }
    }
}

impl Arena {
    /// `payload` as a slice of the current block, starting a new one when it does not fit.
    fn copy(&mut self, payload: &[u8]) -> Bytes {
        if self.current.capacity() - self.current.len() < payload.len() {
            self.next_block(payload.len());
        }
        self.current.extend_from_slice(payload);
        self.current.split().freeze()
    }

    fn next_block(&mut self, need: usize) {
        let full = std::mem::take(&mut self.current);
        if self.retired.len() < ARENA_RETIRED {
            self.retired.push_back(full);
        }
        // The oldest blocks are the likeliest to have no slice left. One still in use goes
        // to the back, so a slice kept long (a slow sink of raw socket events) does not stop
        // the blocks behind it from being reused.
        if need <= ARENA_BYTES {
            for _ in 0..self.retired.len().min(2) {
                let Some(mut old) = self.retired.pop_front() else { break };
                if old.try_reclaim(ARENA_BYTES) {
                    self.current = old;
                    return;
                }
                self.retired.push_back(old);
            }
        }
        self.current = BytesMut::with_capacity(ARENA_BYTES.max(need));
    }
}

/// Per-source state turning records into events.
pub struct Assembler {
    arena: Arena,
    /// (sk, cookie) → connection
    conns: FastMap<(u64, u64), Conn>,
    /// sk → cookie of the live connection on that socket (sockets are reused)
    by_sk: FastMap<u64, u64>,
    next_id: u64,
    procs: crate::procinfo::ProcCache,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, ns
    wall_offset: i128,
    pub gaps: u64,
    pub rejected: u64,
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new()
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; clock ids are constants.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

fn addr(family: u16, a: &[u8; 16], port: u16) -> SocketAddr {
    let ip = if family == 2 {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        // v4-mapped addresses of dual-stack sockets shown as IPv4
        Ipv6Addr::from(*a).to_canonical()
    };
    SocketAddr::new(ip, port)
}

impl Assembler {
    pub fn new() -> Self {
        let mut a = Assembler {
            arena: Arena::default(),
            conns: FastMap::default(),
            by_sk: FastMap::default(),
            next_id: 1,
            procs: Default::default(),
            wall_offset: 0,
            gaps: 0,
            rejected: 0,
        };
        a.sync_clock();
        a
    }

    /// Re-read the monotonic → wall-clock offset (NTP steps the wall clock).
    pub fn sync_clock(&mut self) {
        self.wall_offset = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn evict_processes(&mut self, now: Instant) {
        self.procs.evict(now);
    }

    fn wall(&self, mono: u64) -> u64 {
        (i128::from(mono) + self.wall_offset).max(0) as u64
    }

    /// One ring-buffer record; events are appended to `out`.
    pub fn push(&mut self, rec: &[u8], now: Instant, out: &mut Vec<Event>) -> Result<(), Reject> {
        if rec.len() < HDR_SIZE {
            self.rejected += 1;
            return Err(Reject::Short);
        }
        // SAFETY: EventHdr is plain old data and `rec` holds at least HDR_SIZE bytes.
        let h: EventHdr = unsafe { std::ptr::read_unaligned(rec.as_ptr().cast()) };
        let cap = (h.cap_len as usize).min(rec.len() - HDR_SIZE).min(CHUNK);
        let payload = &rec[HDR_SIZE..HDR_SIZE + cap];
        if !matches!(h.kind, EV_OPEN | EV_DATA | EV_CLOSE | EV_GAP) {
            self.rejected += 1;
            return Err(Reject::BadKind);
        }
        let key = (h.sk, h.cookie);
        // A close may be seen in softirq context (socket tracepoints), where the current
        // task is not the connection's process: it keeps the process it had.
        let kept = if h.kind == EV_CLOSE {
            self.conns.get(&key).map(|c| c.process.clone())
        } else {
            None
        };
        let process = kept.unwrap_or_else(|| self.procs.get((h.pid_tgid >> 32) as u32, &h.comm, now));
        let ts_ns = self.wall(h.ts_ns);
        let dir = if h.dir == DIR_EGRESS {
            Direction::Egress
        } else {
            Direction::Ingress
        };

        // A new cookie on a known socket: the old connection is over even if its close
        // was missed.
        if let Some(&old) = self.by_sk.get(&h.sk)
            && old != h.cookie
            && let Some(c) = self.conns.remove(&(h.sk, old))
        {
            self.finish(c, ts_ns, &process, out);
        }
        self.by_sk.insert(h.sk, h.cookie);
        let is_new = !self.conns.contains_key(&key);
        if is_new {
            let role = match h.role {
                ROLE_SERVER => Role::Server,
                ROLE_CLIENT => Role::Client,
                _ => Role::Unknown,
            };
            let c = Conn {
                id: self.next_id,
                local: addr(h.family, &h.local_addr, h.local_port),
                peer: addr(h.family, &h.peer_addr, h.peer_port),
                role,
                pending: None,
                process: process.clone(),
            };
            self.next_id += 1;
            self.conns.insert(key, c);
        }
        let Some(c) = self.conns.get_mut(&key) else {
            return Ok(());
        };
        if !Arc::ptr_eq(&c.process, &process) {
            c.process = process.clone();
        }
        let ev = |c: &Conn, kind, dir, data: Bytes, len: u32, ts_ns: u64| {
            Event::Socket(SocketData {
                conn_id: c.id,
                kind,
                ts_ns,
                process: process.clone(),
                local: c.local,
                peer: c.peer,
                role: c.role,
                direction: dir,
                data,
                len,
            })
        };
        // Open is emitted once per connection, also when the kernel's Open was lost or
        // the connection predates the probe, so downstream always sees it first.
        if is_new {
            out.push(ev(c, SocketEventKind::Open, Direction::Ingress, Bytes::new(), 0, ts_ns));
        }
        if h.lost > 0 {
            flush(c, &process, out);
            self.gaps += 1;
            out.push(ev(c, SocketEventKind::Gap, dir, Bytes::new(), h.lost, ts_ns));
        }
        match h.kind {
            EV_OPEN => {}
            EV_GAP => {
                flush(c, &process, out);
                self.gaps += 1;
                out.push(ev(c, SocketEventKind::Gap, dir, Bytes::new(), h.msg_len, ts_ns));
            }
            EV_CLOSE => {
                if let Some(c) = self.conns.remove(&key) {
                    self.by_sk.remove(&h.sk);
                    self.finish(c, ts_ns, &process, out);
                }
            }
            _ => {
                let last = h.flags & FLAG_LAST != 0;
                if h.chunk_off == 0 || c.pending.as_ref().is_some_and(|p| p.dir != dir) {
                    flush(c, &process, out);
                }
                if h.chunk_off == 0 && last {
                    // The common case: a message in one record.
                    out.push(ev(
                        c,
                        SocketEventKind::Data,
                        dir,
                        self.arena.copy(payload),
                        h.msg_len,
                        ts_ns,
                    ));
                    return Ok(());
                }
                let p = c.pending.get_or_insert_with(|| Pending {
                    dir,
                    ts_ns,
                    len: h.msg_len,
                    data: BytesMut::with_capacity(h.msg_len.min(MAX_CAPTURE) as usize),
                    next_off: h.chunk_off,
                    pieces: vec![(h.chunk_off, 0)],
                    broken: false,
                });
                if h.chunk_off < p.next_off || cap < (h.cap_len as usize) {
                    p.broken = true;
                }
                if !p.broken {
                    if h.chunk_off > p.next_off {
                        p.pieces.push((h.chunk_off, p.data.len()));
                    }
                    p.data.extend_from_slice(payload);
                    p.next_off = h.chunk_off.saturating_add(cap as u32);
                }
                if last {
                    flush(c, &process, out);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, mut c: Conn, ts_ns: u64, process: &Arc<ProcessInfo>, out: &mut Vec<Event>) {
        flush(&mut c, process, out);
        out.push(Event::Socket(SocketData {
            conn_id: c.id,
            kind: SocketEventKind::Close,
            ts_ns,
            process: process.clone(),
            local: c.local,
            peer: c.peer,
            role: c.role,
            direction: Direction::Ingress,
            data: Bytes::new(),
            len: 0,
        }));
    }
}

/// Emit a held (multi-chunk) message: one event per piece, each one's `len` reaching to the
/// next piece, so the bytes between pieces arrive as known-length holes (a parser skips
/// them and stays in step). The last piece is truncated if the message's end never came.
fn flush(c: &mut Conn, process: &Arc<ProcessInfo>, out: &mut Vec<Event>) {
    let Some(p) = c.pending.take() else { return };
    let data = p.data.freeze();
    let mut emit = |data: Bytes, len: u32| {
        out.push(Event::Socket(SocketData {
            conn_id: c.id,
            kind: SocketEventKind::Data,
            ts_ns: p.ts_ns,
            process: process.clone(),
            local: c.local,
            peer: c.peer,
            role: c.role,
            direction: p.dir,
            len: len.max(data.len() as u32),
            data,
        }))
    };
    let first = p.pieces.first().map_or(0, |f| f.0);
    if first > 0 {
        emit(Bytes::new(), first);
    }
    for (k, &(off, start)) in p.pieces.iter().enumerate() {
        let (end_off, end) = p.pieces.get(k + 1).map_or((p.len, data.len()), |&(o, e)| (o, e));
        emit(data.slice(start..end), end_off.saturating_sub(off));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn payloads_are_slices_of_shared_blocks_and_outlive_them() {
        let mut arena = Arena::default();
        let a = arena.copy(b"GET / HTTP/1.1\r\n\r\n");
        let b = arena.copy(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(&a[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(&b[..], b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr(), "one block");
        let big = vec![7u8; ARENA_BYTES + 1];
        let c = arena.copy(&big);
        assert_eq!(&c[..], &big[..]);
        let d = arena.copy(b"x");
        assert_eq!(&d[..], b"x");
        drop(arena);
        assert_eq!(&a[..], b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn a_block_is_written_again_only_once_its_slices_are_gone() {
        let mut arena = Arena::default();
        let fill = vec![1u8; ARENA_BYTES];
        let first = arena.copy(&fill);
        let kept = arena.copy(&[2u8; 100]); // second block; the first is retired
        // The first block still has a live slice: a third block is allocated.
        let third = arena.copy(&vec![3u8; ARENA_BYTES]);
        assert_ne!(third.as_ptr(), first.as_ptr());
        let first_ptr = first.as_ptr();
        drop(first);
        // Now the oldest retired block (the first) has no slice left and is reused.
        let again = arena.copy(&[4u8; 10]);
        assert_eq!(again.as_ptr(), first_ptr, "the freed block is reused");
        assert_eq!(&again[..], &[4u8; 10]);
        assert!(
            kept.iter().all(|&b| b == 2) && third.iter().all(|&b| b == 3),
            "live slices untouched"
        );
    }

    /// One ring record with every header field a test varies.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        kind: u8,
        sk: u64,
        cookie: u64,
        dir: u8,
        msg_len: u32,
        off: u32,
        payload: &[u8],
        flags: u8,
    ) -> Vec<u8> {
        let mut h = EventHdr {
            ts_ns: 1_000,
            sk,
            cookie,
            pid_tgid: u64::from(std::process::id()) << 32,
            local_port: 8080,
            peer_port: 40000,
            family: 2,
            kind,
            dir,
            role: ROLE_SERVER,
            flags,
            msg_len,
            chunk_off: off,
            cap_len: payload.len() as u32,
            ..Default::default()
        };
        h.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        h.peer_addr[..4].copy_from_slice(&[127, 0, 0, 2]);
        // SAFETY: EventHdr is repr(C) plain data.
        let bytes = unsafe { std::slice::from_raw_parts((&h as *const EventHdr).cast::<u8>(), HDR_SIZE) };
        let mut v = bytes.to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn socket(e: &Event) -> &SocketData {
        match e {
            Event::Socket(s) => s,
            _ => panic!("not socket data"),
        }
    }

    #[test]
    fn open_data_close_with_addresses_roles_and_wall_clock() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        let now = Instant::now();
        a.push(&record(EV_OPEN, 1, 7, DIR_INGRESS, 0, 0, b"", FLAG_LAST), now, &mut out)
            .unwrap();
        a.push(
            &record(EV_DATA, 1, 7, DIR_INGRESS, 5, 0, b"GET /", FLAG_LAST),
            now,
            &mut out,
        )
        .unwrap();
        a.push(
            &record(EV_CLOSE, 1, 7, DIR_INGRESS, 0, 0, b"", FLAG_LAST),
            now,
            &mut out,
        )
        .unwrap();
        let kinds: Vec<_> = out.iter().map(|e| socket(e).kind).collect();
        assert_eq!(
            kinds,
            [SocketEventKind::Open, SocketEventKind::Data, SocketEventKind::Close]
        );
        let d = socket(&out[1]);
        assert_eq!(&d.data[..], b"GET /");
        assert_eq!(d.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(d.peer, "127.0.0.2:40000".parse().unwrap());
        assert_eq!(d.role, Role::Server);
        assert_eq!(d.direction, Direction::Ingress);
        assert_eq!(d.process.pid, std::process::id());
        assert!(d.ts_ns > 1_600_000_000_000_000_000, "wall clock, got {}", d.ts_ns);
        assert_eq!(a.connections(), 0);
    }

    /// The socket tracepoints may see a close in softirq context, on whatever task was
    /// interrupted: the close keeps the process of the connection's data.
    #[test]
    fn a_close_seen_on_another_task_keeps_the_connections_process() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        let now = Instant::now();
        a.push(
            &record(EV_DATA, 1, 7, DIR_INGRESS, 5, 0, b"GET /", FLAG_LAST),
            now,
            &mut out,
        )
        .unwrap();
        let mut close = record(EV_CLOSE, 1, 7, DIR_INGRESS, 0, 0, b"", FLAG_LAST);
        // The idle task (pid 0) was interrupted.
        let at = std::mem::offset_of!(EventHdr, pid_tgid);
        close[at..at + 8].copy_from_slice(&0u64.to_ne_bytes());
        a.push(&close, now, &mut out).unwrap();
        let kinds: Vec<_> = out.iter().map(|e| socket(e).kind).collect();
        assert_eq!(
            kinds,
            [SocketEventKind::Open, SocketEventKind::Data, SocketEventKind::Close]
        );
        for e in &out {
            assert_eq!(socket(e).process.pid, std::process::id(), "{:?}", socket(e).kind);
        }
    }

    #[test]
    fn chunks_are_joined_and_truncation_is_explicit() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        let now = Instant::now();
        let c1 = vec![b'a'; CHUNK];
        let c2 = vec![b'b'; 100];
        a.push(&record(EV_DATA, 1, 7, DIR_EGRESS, 100_000, 0, &c1, 0), now, &mut out)
            .unwrap();
        a.push(
            &record(EV_DATA, 1, 7, DIR_EGRESS, 100_000, CHUNK as u32, &c2, FLAG_LAST),
            now,
            &mut out,
        )
        .unwrap();
        let d = socket(&out[1]);
        assert_eq!(d.data.len(), CHUNK + 100);
        assert_eq!(d.len, 100_000);
        assert!(d.truncated());
        assert_eq!(d.direction, Direction::Egress);
    }

    #[test]
    fn holes_between_chunks_become_known_length_skips_and_nothing_is_misplaced() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        let now = Instant::now();
        let c = vec![b'x'; CHUNK];
        a.push(
            &record(EV_DATA, 1, 7, DIR_EGRESS, 3 * CHUNK as u32, 0, &c, 0),
            now,
            &mut out,
        )
        .unwrap();
        // The chunk at CHUNK never came (lost, or skipped by the HTTP/2 walk): the last one
        // is a second piece, and the first piece's `len` reaches to it.
        let d = vec![b'y'; 10];
        a.push(
            &record(
                EV_DATA,
                1,
                7,
                DIR_EGRESS,
                3 * CHUNK as u32,
                2 * CHUNK as u32,
                &d,
                FLAG_LAST,
            ),
            now,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 3, "open + two pieces");
        let (p1, p2) = (socket(&out[1]), socket(&out[2]));
        assert_eq!((&p1.data[..], p1.len as usize), (&c[..], 2 * CHUNK));
        assert_eq!((&p2.data[..], p2.len as usize), (&d[..], CHUNK), "10 bytes, then a cut");
        // A message that begins with a hole: an empty event of that length comes first.
        a.push(
            &record(EV_DATA, 1, 7, DIR_EGRESS, 100, 90, &d, FLAG_LAST),
            now,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!((socket(&out[3]).data.len(), socket(&out[3]).len), (0, 90));
        assert_eq!((&socket(&out[4]).data[..], socket(&out[4]).len), (&d[..], 10));
        // A chunk that goes backwards: later bytes are dropped, the message is truncated.
        a.push(
            &record(EV_DATA, 1, 7, DIR_EGRESS, 3 * CHUNK as u32, 0, &c, 0),
            now,
            &mut out,
        )
        .unwrap();
        a.push(
            &record(EV_DATA, 1, 7, DIR_EGRESS, 3 * CHUNK as u32, 10, &d, 0),
            now,
            &mut out,
        )
        .unwrap();
        // A message whose last chunk never came is flushed by the next message.
        a.push(
            &record(EV_DATA, 1, 7, DIR_INGRESS, 2, 0, b"ok", FLAG_LAST),
            now,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 7);
        assert_eq!(
            (&socket(&out[5]).data[..], socket(&out[5]).len as usize),
            (&c[..], 3 * CHUNK)
        );
        assert_eq!(&socket(&out[6]).data[..], b"ok");
    }

    #[test]
    fn kernel_loss_and_sendfile_become_gaps_before_the_data() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        let now = Instant::now();
        let mut rec = record(EV_DATA, 1, 7, DIR_INGRESS, 3, 0, b"abc", FLAG_LAST);
        // lost: bytes field at offset 92 (msg_len 80, chunk_off 84, cap_len 88, lost 92)
        rec[92..96].copy_from_slice(&1234u32.to_ne_bytes());
        a.push(&rec, now, &mut out).unwrap();
        a.push(
            &record(EV_GAP, 1, 7, DIR_EGRESS, 5000, 0, b"", FLAG_LAST),
            now,
            &mut out,
        )
        .unwrap();
        let kinds: Vec<_> = out.iter().map(|e| socket(e).kind).collect();
        assert_eq!(
            kinds,
            [
                SocketEventKind::Open,
                SocketEventKind::Gap,
                SocketEventKind::Data,
                SocketEventKind::Gap
            ]
        );
        assert_eq!(socket(&out[1]).len, 1234);
        assert_eq!(socket(&out[1]).direction, Direction::Ingress);
        assert_eq!(socket(&out[3]).len, 5000);
        assert_eq!(socket(&out[3]).direction, Direction::Egress);
        assert_eq!(a.gaps, 2);
    }

    #[test]
    fn a_reused_socket_is_a_new_connection() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        let now = Instant::now();
        a.push(
            &record(EV_DATA, 1, 7, DIR_INGRESS, 1, 0, b"a", FLAG_LAST),
            now,
            &mut out,
        )
        .unwrap();
        a.push(
            &record(EV_DATA, 1, 8, DIR_INGRESS, 1, 0, b"b", FLAG_LAST),
            now,
            &mut out,
        )
        .unwrap();
        let evs: Vec<_> = out.iter().map(|e| (socket(e).kind, socket(e).conn_id)).collect();
        assert_eq!(
            evs,
            [
                (SocketEventKind::Open, 1),
                (SocketEventKind::Data, 1),
                (SocketEventKind::Close, 1),
                (SocketEventKind::Open, 2),
                (SocketEventKind::Data, 2)
            ]
        );
    }

    #[test]
    fn garbage_records_are_rejected_and_counted() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        assert_eq!(a.push(&[1, 2, 3], Instant::now(), &mut out), Err(Reject::Short));
        let rec = record(99, 1, 7, DIR_INGRESS, 0, 0, b"", 0);
        assert_eq!(a.push(&rec, Instant::now(), &mut out), Err(Reject::BadKind));
        // a cap_len larger than the record is clamped, not trusted
        let mut rec = record(EV_DATA, 1, 7, DIR_INGRESS, 10, 0, b"abc", FLAG_LAST);
        rec[88..92].copy_from_slice(&9999u32.to_ne_bytes());
        a.push(&rec, Instant::now(), &mut out).unwrap();
        assert_eq!(&socket(&out[1]).data[..], b"abc");
        assert_eq!(a.rejected, 2);
        assert!(out.len() == 2);
    }
}
