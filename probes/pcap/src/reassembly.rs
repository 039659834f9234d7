//! TCP reassembly per connection and direction.
//!
//! Each direction ("half") keeps the stream offset of the next byte it expects, in a
//! 64-bit space unwrapped from the 32-bit sequence numbers, so wrap-around is invisible.
//! In-order bytes go out at once; later bytes wait in a bounded buffer until the hole
//! before them fills; a hole that cannot fill (buffer bound, connection end) goes out as a
//! `Gap` event with the number of missing bytes, and the stream continues after it.
//! Retransmitted and overlapping bytes are trimmed (the first copy wins).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use perisco_engine::FastMap;
use perisco_engine::event::{Direction, Event, Role, SocketEventKind};

use crate::decode::{self, Skip, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpSegment};
use crate::emit::{ConnMeta, Emitter};
use crate::reader::Packet;

/// Bookkeeping charged per buffered out-of-order segment, so many tiny segments are bounded too.
const SEGMENT_OVERHEAD: usize = 64;

/// Bounds on the reassembly state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections tracked at once; beyond it the least recently active eighth is evicted.
    pub max_connections: usize,
    /// Out-of-order bytes buffered per direction before the hole is declared a gap.
    pub max_buffered_bytes: usize,
    /// A connection without packets for this long (capture time) is closed and forgotten.
    pub idle_timeout_ns: u64,
    /// Payload kept per emitted data event (`len` keeps the true length).
    pub max_capture_bytes: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            max_buffered_bytes: 1 << 20,
            idle_timeout_ns: 300_000_000_000,
            max_capture_bytes: None,
        }
    }
}

/// What the reassembler has seen; monotonic counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    /// Frames without a usable TCP segment, by [`Skip`] (index = position in `Skip::ALL`).
    pub skipped: [u64; 4],
    pub segments: u64,
    pub connections: u64,
    /// Payload bytes delivered in order.
    pub bytes: u64,
    pub retransmitted_bytes: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Holes declared because the out-of-order buffer of a direction was full.
    pub buffer_overflows: u64,
    pub evicted_max_connections: u64,
    pub evicted_idle: u64,
    /// Segments of a connection that had already closed (late retransmissions, final ACKs).
    pub late_segments: u64,
    /// With `max_capture_bytes`: connections walked frame by frame as HTTP/2, and walks
    /// given up (as the eBPF probe counts them).
    pub h2_walked_connections: u64,
    pub h2_walks_lost: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey(SocketAddr, SocketAddr);

impl ConnKey {
    fn new(a: SocketAddr, b: SocketAddr) -> Self {
        if a <= b { ConnKey(a, b) } else { ConnKey(b, a) }
    }
}

/// The sink of one half's output while it is borrowed.
struct Out<'a> {
    emit: &'a mut Emitter,
    stats: &'a mut Stats,
    meta: &'a ConnMeta,
    direction: Direction,
    ts_ns: u64,
}

impl Out<'_> {
    fn deliver(&mut self, bytes: &[u8]) {
        self.stats.bytes += bytes.len() as u64;
        self.emit.data(self.meta, self.direction, self.ts_ns, bytes);
    }

    fn gap(&mut self, missing: u64) {
        self.stats.gaps += 1;
        self.stats.gap_bytes += missing;
        self.emit
            .event(self.meta, SocketEventKind::Gap, self.direction, self.ts_ns, missing);
    }
}

/// One direction of a connection.
#[derive(Default)]
struct Half {
    /// Sequence number of stream offset 0; unknown until the first segment of this half.
    base: Option<u32>,
    /// Stream offset of the next byte to deliver.
    next: u64,
    /// Stream offset of the FIN, once seen.
    fin: Option<u64>,
    fin_done: bool,
    ooo: BTreeMap<u64, Vec<u8>>,
    ooo_bytes: usize,
}

impl Half {
    /// Stream offset of `seq`, the one nearest to `next` (handles wrap-around); `None`
    /// before the start of the stream.
    fn offset(&self, seq: u32) -> Option<u64> {
        let base = self.base?;
        let rel = seq.wrapping_sub(base);
        let delta = i64::from(rel.wrapping_sub(self.next as u32) as i32);
        u64::try_from(self.next as i64 + delta).ok()
    }

    fn insert(&mut self, o: &mut Out<'_>, start: u64, data: &[u8], max_buffered: usize) {
        let end = start + data.len() as u64;
        if end <= self.next {
            o.stats.retransmitted_bytes += data.len() as u64;
            return;
        }
        if start <= self.next {
            let skip = (self.next - start) as usize;
            o.stats.retransmitted_bytes += skip as u64;
            o.deliver(&data[skip..]);
            self.next = end;
            self.drain(o);
            return;
        }
        match self.ooo.get_mut(&start) {
            Some(held) if held.len() >= data.len() => o.stats.retransmitted_bytes += data.len() as u64,
            Some(held) => {
                o.stats.retransmitted_bytes += held.len() as u64;
                self.ooo_bytes += data.len() - held.len();
                *held = data.to_vec();
            }
            None => {
                self.ooo_bytes += data.len() + SEGMENT_OVERHEAD;
                self.ooo.insert(start, data.to_vec());
            }
        }
        while self.ooo_bytes > max_buffered && !self.ooo.is_empty() {
            o.stats.buffer_overflows += 1;
            self.skip_hole(o);
        }
    }

    /// Give up on the hole before the first buffered segment: a gap, then what follows.
    fn skip_hole(&mut self, o: &mut Out<'_>) {
        if let Some((&first, _)) = self.ooo.first_key_value() {
            if first > self.next {
                o.gap(first - self.next);
                self.next = first;
            }
            self.drain(o);
        }
    }

    /// Deliver buffered segments that are now in order.
    fn drain(&mut self, o: &mut Out<'_>) {
        while let Some(entry) = self.ooo.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let data = entry.remove();
            self.ooo_bytes -= data.len() + SEGMENT_OVERHEAD;
            let end = start + data.len() as u64;
            if end <= self.next {
                o.stats.retransmitted_bytes += data.len() as u64;
                continue;
            }
            let skip = (self.next - start) as usize;
            o.stats.retransmitted_bytes += skip as u64;
            o.deliver(&data[skip..]);
            self.next = end;
        }
    }

    fn check_fin(&mut self) {
        if let Some(fin) = self.fin
            && self.next >= fin
        {
            self.fin_done = true;
        }
    }

    /// The connection ends: everything buffered goes out, holes (also before a FIN) as gaps.
    fn flush(&mut self, o: &mut Out<'_>) {
        while !self.ooo.is_empty() {
            self.skip_hole(o);
        }
        if let Some(fin) = self.fin
            && fin > self.next
        {
            o.gap(fin - self.next);
            self.next = fin;
        }
        self.ooo_bytes = 0;
    }
}

struct Conn {
    meta: ConnMeta,
    /// `[0]`: bytes from peer to local (ingress); `[1]`: from local to peer (egress).
    halves: [Half; 2],
    last_ts: u64,
    /// Close was emitted; kept as a tombstone that swallows late segments until a new SYN.
    closed: bool,
}

impl Conn {
    fn new(meta: ConnMeta, ts_ns: u64) -> Self {
        Conn {
            meta,
            halves: Default::default(),
            last_ts: ts_ns,
            closed: false,
        }
    }

    fn index(&self, src: SocketAddr) -> usize {
        usize::from(src == self.meta.local)
    }

    /// Flush both directions and emit `Close` once.
    fn close(&mut self, emit: &mut Emitter, stats: &mut Stats, ts_ns: u64, direction: Direction) {
        if self.closed {
            return;
        }
        for (i, half) in self.halves.iter_mut().enumerate() {
            let mut o = Out {
                emit,
                stats,
                meta: &self.meta,
                direction: direction_of(i),
                ts_ns,
            };
            half.flush(&mut o);
            half.ooo = BTreeMap::new();
        }
        emit.event(&self.meta, SocketEventKind::Close, direction, ts_ns, 0);
        self.closed = true;
    }
}

fn direction_of(index: usize) -> Direction {
    if index == 0 {
        Direction::Ingress
    } else {
        Direction::Egress
    }
}

/// TCP reassembly for every connection of a capture; produces socket-data events.
pub struct Reassembler {
    /// SipHash here was 6 % of a capture's pipeline.
    conns: FastMap<ConnKey, Conn>,
    next_conn_id: u64,
    limits: Limits,
    stats: Stats,
    emit: Emitter,
    /// Latest capture time seen (timestamps of multi-interface captures may go back a little).
    now_ns: u64,
    last_sweep_ns: u64,
}

impl Reassembler {
    pub fn new(limits: Limits) -> Self {
        Reassembler {
            conns: FastMap::default(),
            next_conn_id: 1,
            emit: Emitter::new(limits.max_capture_bytes),
            limits,
            stats: Stats::default(),
            now_ns: 0,
            last_sweep_ns: 0,
        }
    }

    pub fn stats(&self) -> Stats {
        Stats {
            h2_walked_connections: self.emit.walk_stats.walked_connections,
            h2_walks_lost: self.emit.walk_stats.walks_lost,
            ..self.stats.clone()
        }
    }

    /// Connections (and tombstones) held.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Events waiting for [`Reassembler::take_events`].
    pub fn pending_events(&self) -> usize {
        self.emit.pending()
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        self.emit.take()
    }

    /// Decode one captured frame and reassemble it; `ts_shift_ns` is added to its time.
    pub fn packet(&mut self, packet: &Packet<'_>, ts_shift_ns: u64) {
        self.stats.packets += 1;
        match decode::decode(packet.linktype, packet.data) {
            Ok(seg) => self.segment(packet.ts_ns.saturating_add(ts_shift_ns), &seg),
            Err(skip) => {
                let i = Skip::ALL.iter().position(|s| *s == skip).unwrap_or(0);
                self.stats.skipped[i] += 1;
            }
        }
    }

    /// Reassemble one TCP segment captured at `ts_ns`.
    pub fn segment(&mut self, ts_ns: u64, seg: &TcpSegment<'_>) {
        self.stats.segments += 1;
        self.now_ns = self.now_ns.max(ts_ns);
        self.sweep_idle();
        let key = ConnKey::new(seg.src, seg.dst);
        let syn = seg.has(TCP_SYN);
        let pure_syn = syn && !seg.has(TCP_ACK);

        // A SYN on a known 4-tuple: a retransmission, or a new connection reusing it.
        if let Some(conn) = self.conns.get_mut(&key) {
            let isn_next = Some(seg.seq.wrapping_add(1));
            let half = &conn.halves[conn.index(seg.src)];
            if syn && half.base == isn_next {
                conn.last_ts = conn.last_ts.max(ts_ns);
                return; // retransmitted SYN / SYN-ACK (also after the close)
            }
            if pure_syn && (conn.closed || half.base.is_some()) {
                let dir = direction_of(conn.index(seg.src));
                conn.close(&mut self.emit, &mut self.stats, ts_ns, dir);
                self.conns.remove(&key);
            }
        }

        if !self.conns.contains_key(&key) {
            // Only a SYN or payload starts tracking; stray ACKs/FINs/RSTs of unknown
            // connections carry nothing to deliver.
            let meta = if syn {
                // The SYN sender is the client; the SYN-ACK sender the server.
                let (local, peer) = if pure_syn {
                    (seg.dst, seg.src)
                } else {
                    (seg.src, seg.dst)
                };
                ConnMeta {
                    conn_id: 0,
                    local,
                    peer,
                    role: Role::Server,
                }
            } else if !seg.payload.is_empty() || seg.missing > 0 {
                ConnMeta {
                    conn_id: 0,
                    local: seg.dst,
                    peer: seg.src,
                    role: Role::Unknown,
                }
            } else {
                return;
            };
            if self.conns.len() >= self.limits.max_connections {
                self.evict_oldest();
            }
            let meta = ConnMeta {
                conn_id: self.next_conn_id,
                ..meta
            };
            self.next_conn_id += 1;
            self.stats.connections += 1;
            if syn {
                self.emit
                    .event(&meta, SocketEventKind::Open, Direction::Ingress, ts_ns, 0);
            }
            self.conns.insert(key, Conn::new(meta, ts_ns));
        }

        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        conn.last_ts = conn.last_ts.max(ts_ns);
        if conn.closed {
            self.stats.late_segments += 1;
            return;
        }
        let index = conn.index(seg.src);
        let direction = direction_of(index);
        let Conn { meta, halves, .. } = conn;
        let half = &mut halves[index];
        // The SYN takes one sequence number: data starts after it.
        let data_seq = if syn { seg.seq.wrapping_add(1) } else { seg.seq };
        if half.base.is_none() {
            half.base = Some(data_seq);
        }
        let mut o = Out {
            emit: &mut self.emit,
            stats: &mut self.stats,
            meta,
            direction,
            ts_ns,
        };
        match half.offset(data_seq) {
            Some(start) => {
                if !seg.payload.is_empty() {
                    half.insert(&mut o, start, seg.payload, self.limits.max_buffered_bytes);
                }
                let end = start + seg.payload.len() as u64;
                if seg.missing > 0 && half.next == end {
                    // Cut by the snaplen: those bytes were on the wire but not in the file.
                    o.gap(u64::from(seg.missing));
                    half.next = end + u64::from(seg.missing);
                    half.drain(&mut o);
                }
                if seg.has(TCP_FIN) {
                    let fin = end + u64::from(seg.missing);
                    half.fin = Some(half.fin.map_or(fin, |f| f.min(fin)));
                }
            }
            None => o.stats.retransmitted_bytes += seg.payload.len() as u64,
        }
        half.check_fin();
        let both_done = halves.iter().all(|h| h.fin_done);
        if seg.has(TCP_RST) || both_done {
            conn.close(&mut self.emit, &mut self.stats, ts_ns, direction);
        }
    }

    /// End of the capture (or of one pass of a loop): flush and close every connection,
    /// in the order they were opened, and forget them.
    pub fn finish(&mut self) {
        let mut conns: Vec<Conn> = self.conns.drain().map(|(_, c)| c).collect();
        conns.sort_by_key(|c| c.meta.conn_id);
        for mut c in conns {
            c.close(&mut self.emit, &mut self.stats, self.now_ns, Direction::Ingress);
        }
    }

    /// Close connections idle for longer than the idle timeout (checked a few times per timeout).
    fn sweep_idle(&mut self) {
        let every = (self.limits.idle_timeout_ns / 4).max(1_000_000_000);
        if self.now_ns < self.last_sweep_ns.saturating_add(every) {
            return;
        }
        self.last_sweep_ns = self.now_ns;
        let deadline = self.now_ns.saturating_sub(self.limits.idle_timeout_ns);
        let stale: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.last_ts < deadline)
            .map(|(k, _)| *k)
            .collect();
        self.remove(stale, false);
    }

    /// Make room: drop the least recently active eighth of the table.
    fn evict_oldest(&mut self) {
        let mut by_age: Vec<(u64, ConnKey)> = self.conns.iter().map(|(k, c)| (c.last_ts, *k)).collect();
        let n = (by_age.len() / 8).max(1).min(by_age.len());
        if n == 0 {
            return;
        }
        by_age.select_nth_unstable_by_key(n - 1, |(ts, _)| *ts);
        let oldest = by_age[..n].iter().map(|(_, k)| *k).collect();
        self.remove(oldest, true);
    }

    fn remove(&mut self, keys: Vec<ConnKey>, for_room: bool) {
        let mut gone: Vec<Conn> = keys.iter().filter_map(|k| self.conns.remove(k)).collect();
        gone.sort_by_key(|c| c.meta.conn_id);
        for mut c in gone {
            if c.closed {
                continue; // a tombstone: nothing to tell
            }
            if for_room {
                self.stats.evicted_max_connections += 1;
            } else {
                self.stats.evicted_idle += 1;
            }
            c.close(&mut self.emit, &mut self.stats, self.now_ns, Direction::Ingress);
        }
    }
}
