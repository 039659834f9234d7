//! Kernel programs of the `ebpf_socket` source: TCP payload capture with connection
//! lifecycle, filtered in the kernel before any copy.
//!
//! Four hook families share one core (connections, filters, chunked copy); the loader
//! picks one at run time:
//! - fentry/fexit on the socket layer (security_socket_sendmsg, sock_recvmsg,
//!   inet_csk_accept, tcp_connect, tcp_close);
//! - kprobes/kretprobes on the same functions;
//! - socket tracepoints, attached raw (sock_send_length, sock_recv_length,
//!   inet_sock_set_state; 6.3+): only socket transfers run a program, nothing else;
//! - syscall tracepoints (read/write/…/accept/connect/close): every kernel, at the cost
//!   of putting every syscall of every task on the tracing slow path.
//!
//! No kernel struct layout is compiled in: the loader reads offsets from the kernel's BTF
//! and writes them into the read-only `OFFSETS` global before load. Every kernel read is
//! a bpf_probe_read at such an offset.
use core::ffi::c_void;

use aya_ebpf::{
    Global,
    bindings::{BPF_F_NO_PREALLOC, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user, generated,
    },
    macros::{fentry, fexit, kprobe, kretprobe, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{FEntryContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext, TracePointContext},
};
use perisco_probes_common::*;

use crate::WALK_H2;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_STREAM: u16 = 1;
const IPPROTO_TCP: u16 = 6;
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const EINPROGRESS: i64 = -115;

#[unsafe(no_mangle)]
static OFFSETS: Global<Offsets> = Global::new(Offsets::UNSET);

/// Records for userspace; resized by the loader (`ring_buffer_bytes`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map]
static CIDR4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(1024, BPF_F_NO_PREALLOC);

#[map]
static CIDR6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(1024, BPF_F_NO_PREALLOC);

#[map]
static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(1024, 0);

#[map]
static LISTEN: LruHashMap<ListenKey, u8> = LruHashMap::with_max_entries(16384, 0);

/// Known TCP connections by `struct sock *`. LRU: sockets that die without close(2)
/// (process killed) age out.
#[map]
static CONNS: LruHashMap<u64, Conn> = LruHashMap::with_max_entries(65536, 0);

/// Syscall arguments saved at entry for the exit, by pid_tgid.
#[map]
static ARGS: LruHashMap<u64, PendingArgs> = LruHashMap::with_max_entries(16384, 0);

/// sock_recvmsg's iov_iter saved at entry (fentry/kprobe) for the exit.
#[map]
static RECV_ITER: LruHashMap<u64, RecvIter> = LruHashMap::with_max_entries(16384, 0);

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_MAX, 0);

#[inline(always)]
fn stat(idx: u32) {
    if let Some(p) = STATS.get_ptr_mut(idx) {
        unsafe { *p += 1 };
    }
}

/// Read a `T` at `base + off` in kernel memory.
#[inline(always)]
fn rd<T>(base: u64, off: u32) -> Result<T, i64> {
    if off == NO_OFFSET || base == 0 {
        return Err(-2);
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.map_err(|e| {
        stat(STAT_READ_ERR);
        i64::from(e)
    })
}

/// The settings, when configured and the current task is not perisco itself.
#[inline(always)]
fn settings() -> Option<&'static Settings> {
    let st = configured()?;
    if (bpf_get_current_pid_tgid() >> 32) as u32 == st.self_tgid {
        return None;
    }
    Some(st)
}

/// The settings once the loader has written them (generation 0: not yet). For hooks that
/// may run in softirq context, where the current task is whoever was interrupted.
#[inline(always)]
fn configured() -> Option<&'static Settings> {
    SETTINGS.get(0).filter(|st| st.generation != 0)
}

// ---------------------------------------------------------------------------------------
// Connections and filters
// ---------------------------------------------------------------------------------------

/// Addresses as LISTEN keys: IPv4 as v4-mapped IPv6, so AF_INET and dual-stack AF_INET6
/// sockets of one endpoint meet.
#[inline(always)]
fn listen_key(family: u16, addr: &[u8; 16], port: u16) -> ListenKey {
    let mut k = ListenKey {
        addr: *addr,
        port,
        family: 0,
        _pad: 0,
    };
    if family == AF_INET {
        k.addr = [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3],
        ];
        if addr[0] == 0 && addr[1] == 0 && addr[2] == 0 && addr[3] == 0 {
            k.addr = [0; 16];
        }
    }
    k
}

#[inline(always)]
fn is_listening(family: u16, addr: &[u8; 16], port: u16) -> bool {
    let k = listen_key(family, addr, port);
    if unsafe { LISTEN.get(&k) }.is_some() {
        return true;
    }
    let wild = ListenKey {
        addr: [0; 16],
        port,
        family: 0,
        _pad: 0,
    };
    unsafe { LISTEN.get(&wild) }.is_some()
}

#[inline(always)]
fn add_listen(family: u16, addr: &[u8; 16], port: u16) {
    let k = listen_key(family, addr, port);
    let _ = LISTEN.insert(&k, &1, 0);
}

#[inline(always)]
fn is_loopback(k: &ListenKey) -> bool {
    // ::1 or ::ffff:127.x.y.z
    let a = &k.addr;
    let head_zero = a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9] == 0;
    head_zero
        && ((a[10] == 0xff && a[11] == 0xff && a[12] == 127)
            || (a[10] | a[11] | a[12] | a[13] | a[14] == 0 && a[15] == 1))
}

/// A client socket whose server end is a socket traced on this host: its peer is an
/// endpoint we saw accept, or a wildcard listener reached over loopback / our own address.
#[inline(always)]
fn server_is_local(c: &Conn) -> bool {
    let peer = listen_key(c.family, &c.peer_addr, c.peer_port);
    if unsafe { LISTEN.get(&peer) }.is_some() {
        return true;
    }
    let wild = ListenKey {
        addr: [0; 16],
        port: c.peer_port,
        family: 0,
        _pad: 0,
    };
    if unsafe { LISTEN.get(&wild) }.is_none() {
        return false;
    }
    let local = listen_key(c.family, &c.local_addr, c.local_port);
    is_loopback(&peer) || local.addr == peer.addr
}

#[inline(always)]
fn addr_in_cidrs(family: u16, a: &[u8; 16]) -> bool {
    let mapped = family == AF_INET6
        && a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9] == 0
        && a[10] == 0xff
        && a[11] == 0xff;
    if family == AF_INET {
        CIDR4.get(Key::new(32, [a[0], a[1], a[2], a[3]])).is_some()
    } else if mapped {
        CIDR4.get(Key::new(32, [a[12], a[13], a[14], a[15]])).is_some()
    } else {
        CIDR6.get(Key::new(128, *a)).is_some()
    }
}

/// Whether this connection's events are emitted; cached per settings generation.
#[inline(always)]
fn verdict(c: &mut Conn, st: &Settings) -> bool {
    if c.generation != st.generation {
        let mut ok = st.roles & c.role != 0;
        // Both ends traced here: report the exchange once, from the server side.
        if ok && c.role == ROLE_CLIENT && c.local_dup != 0 && st.roles & ROLE_SERVER != 0 {
            stat(STAT_CONN_DUP);
            ok = false;
        }
        if ok && st.cidr_on != 0 {
            ok = addr_in_cidrs(c.family, &c.peer_addr) || addr_in_cidrs(c.family, &c.local_addr);
        }
        if ok && st.ports_on != 0 {
            ok = unsafe { PORTS.get(&c.local_port) }.is_some() || unsafe { PORTS.get(&c.peer_port) }.is_some();
        }
        c.verdict = ok as u8;
        c.generation = st.generation;
    }
    c.verdict != 0
}

/// Read the 4-tuple of a TCP socket; `None` for anything that is not AF_INET/AF_INET6
/// SOCK_STREAM IPPROTO_TCP.
#[inline(always)]
fn read_tcp_sock(o: &Offsets, sk: u64, c: &mut Conn) -> Result<bool, i64> {
    let family: u16 = rd(sk, o.skc_family)?;
    if family != AF_INET && family != AF_INET6 {
        return Ok(false);
    }
    let ty: u16 = rd(sk, o.sk_type)?;
    let proto: u16 = rd(sk, o.sk_protocol)?;
    if ty != SOCK_STREAM || proto != IPPROTO_TCP {
        return Ok(false);
    }
    c.family = family;
    c.local_port = rd(sk, o.skc_num)?;
    c.peer_port = u16::from_be(rd::<u16>(sk, o.skc_dport)?);
    if family == AF_INET6 {
        c.local_addr = rd(sk, o.skc_v6_rcv_saddr)?;
        c.peer_addr = rd(sk, o.skc_v6_daddr)?;
    } else {
        let l: [u8; 4] = rd(sk, o.skc_rcv_saddr)?;
        let p: [u8; 4] = rd(sk, o.skc_daddr)?;
        c.local_addr = [0; 16];
        c.peer_addr = [0; 16];
        c.local_addr[..4].copy_from_slice(&l);
        c.peer_addr[..4].copy_from_slice(&p);
    }
    Ok(true)
}

#[inline(always)]
fn scratch() -> Option<&'static mut Scratch> {
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn fill_hdr(h: &mut EventHdr, sk: u64, c: &Conn, kind: u8, dir: u8, hook: u8) {
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    h.sk = sk;
    h.cookie = c.cookie;
    h.pid_tgid = bpf_get_current_pid_tgid();
    h.local_addr = c.local_addr;
    h.peer_addr = c.peer_addr;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    h.local_port = c.local_port;
    h.peer_port = c.peer_port;
    h.family = c.family;
    h.kind = kind;
    h.dir = dir;
    h.role = c.role;
    h.flags = c.flags;
    h.hook = hook;
    h.msg_len = 0;
    h.chunk_off = 0;
    h.cap_len = 0;
    h.lost = 0;
}

#[inline(always)]
fn output(s: &Scratch, cap: u32) -> bool {
    let cap = if cap as usize > CHUNK { CHUNK } else { cap as usize };
    let bytes = unsafe { core::slice::from_raw_parts(s as *const Scratch as *const u8, HDR_SIZE + cap) };
    match EVENTS.output::<[u8]>(bytes, wakeup_flag()) {
        Ok(()) => {
            stat(STAT_EMITTED);
            true
        }
        Err(_) => {
            stat(STAT_RING_DROP);
            false
        }
    }
}

/// Wake the reader only once `wakeup_bytes` are waiting: a wakeup per record would cost a
/// context switch per message; the reader also drains on a short timer, so quiet periods
/// still deliver promptly.
#[inline(always)]
fn wakeup_flag() -> u64 {
    let threshold = SETTINGS.get(0).map(|s| s.wakeup_bytes).unwrap_or(0) as u64;
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// A header-only event (open/close/gap).
#[inline(always)]
fn emit_meta(sk: u64, c: &Conn, kind: u8, dir: u8, len: u32, hook: u8) {
    if let Some(s) = scratch() {
        fill_hdr(&mut s.hdr, sk, c, kind, dir, hook);
        s.hdr.msg_len = len;
        s.hdr.flags |= FLAG_LAST;
        output(s, 0);
    }
}

/// Start tracking `sk` (role 0 = infer from the listening endpoints) without announcing it.
/// Returns the map entry, or `None` when `sk` is not TCP.
#[inline(always)]
fn track_conn(o: &Offsets, sk: u64, role: u8) -> Option<*mut Conn> {
    let mut c = Conn::default();
    if !matches!(read_tcp_sock(o, sk, &mut c), Ok(true)) {
        return None;
    }
    if role == 0 && c.local_port == 0 {
        // Closed already (TCP_CLOSE unbinds the port) and read from afterwards: an entry made
        // now would never see another state change, and the connection that reuses this
        // `struct sock` would inherit it.
        stat(STAT_LATE);
        return None;
    }
    c.cookie = unsafe { bpf_ktime_get_ns() };
    if role == 0 {
        c.flags = FLAG_INFERRED;
        c.role = if is_listening(c.family, &c.local_addr, c.local_port) {
            ROLE_SERVER
        } else {
            ROLE_CLIENT
        };
    } else {
        c.role = role;
    }
    if c.role == ROLE_SERVER {
        // The concrete address clients reach this server at.
        add_listen(c.family, &c.local_addr, c.local_port);
    } else if server_is_local(&c) {
        c.local_dup = 1;
    }
    c.unannounced = 1;
    CONNS.insert(&sk, &c, 0).ok()?;
    CONNS.get_ptr_mut(&sk)
}

/// Emit Open for a tracked connection the filters pass, once, from the context of the
/// process that owns it (the event carries its pid).
#[inline(always)]
fn announce(c: &mut Conn, st: &Settings, sk: u64, hook: u8) {
    if c.unannounced == 0 {
        return;
    }
    c.unannounced = 0;
    if verdict(c, st) {
        emit_meta(sk, c, EV_OPEN, DIR_INGRESS, 0, hook);
    } else {
        stat(STAT_FILTERED);
    }
}

/// Start tracking `sk` and emit Open.
#[inline(always)]
fn open_conn(o: &Offsets, st: &Settings, sk: u64, role: u8, hook: u8) -> Option<*mut Conn> {
    let p = track_conn(o, sk, role)?;
    announce(unsafe { &mut *p }, st, sk, hook);
    Some(p)
}

#[inline(always)]
fn conn_for(o: &Offsets, st: &Settings, sk: u64, hook: u8) -> Option<*mut Conn> {
    match CONNS.get_ptr_mut(&sk) {
        Some(p) => Some(p),
        None => open_conn(o, st, sk, 0, hook),
    }
}

#[inline(always)]
fn close_conn(sk: u64, hook: u8) {
    let Some(st) = configured() else { return };
    if let Some(p) = CONNS.get_ptr_mut(&sk) {
        let c = unsafe { &mut *p };
        if c.unannounced == 0 && verdict(c, st) {
            emit_meta(sk, c, EV_CLOSE, DIR_INGRESS, 0, hook);
        }
        let _ = CONNS.remove(&sk);
    }
}

// ---------------------------------------------------------------------------------------
// Payload copy
// ---------------------------------------------------------------------------------------

/// Where the bytes of one transfer are.
#[derive(Clone, Copy)]
struct Src {
    /// A single buffer, or an iovec array when `nsegs > 0`.
    ptr: u64,
    nsegs: u64,
    /// The iovec array is in kernel memory (iov_iter), not user memory.
    iov_in_kernel: bool,
    /// Bytes to skip at the start of the first segment (iov_iter.iov_offset).
    skip: u64,
}

#[inline(always)]
fn read_iovec(src: &Src, i: u64) -> Option<(u64, u64)> {
    let p = (src.ptr + i * 16) as *const [u64; 2];
    let v = if src.iov_in_kernel {
        unsafe { bpf_probe_read_kernel(p) }
    } else {
        unsafe { bpf_probe_read_user(p) }
    };
    match v {
        Ok(v) => Some((v[0], v[1])),
        Err(_) => {
            stat(STAT_READ_ERR);
            None
        }
    }
}

/// State of one transfer's copy (`capture`, one `copy_step` at a time), kept in map
/// memory on purpose: the verifier does not track values loaded from a map, so every step
/// starts from the same abstract state, and `bpf_loop` verifies the step once however many
/// times it runs.
#[repr(C)]
struct Cursor {
    base: u64,
    left: u64,
    skip: u64,
    done: u64,
    seg: u64,
    /// Bytes gathered in the scratch record, not yet emitted.
    filled: u64,
    /// Transfer offset of the first gathered byte.
    run: u64,
    /// Bytes copied from this transfer so far.
    copied: u64,
    /// Records emitted for this transfer.
    sent: u64,
    /// The direction's `H2Walk` while the transfer is copied (a prefix capture is one
    /// DATA-like frame as long as the transfer).
    flen: u64,
    copy: u64,
    have: u64,
    dhead: u64,
    /// The frame header being read; room for a copy of up to 9 bytes at any `have` < 16.
    hdr: [u8; 32],
    // The transfer and its settings.
    src_ptr: u64,
    nsegs: u64,
    iov_in_kernel: u64,
    total: u64,
    budget: u64,
    walk: u64,
    refused: u64,
}

#[map]
static CURSOR: PerCpuArray<Cursor> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn ld(p: *const u64) -> u64 {
    unsafe { core::ptr::read_volatile(p) }
}

#[inline(always)]
fn st(p: *mut u64, v: u64) {
    unsafe { core::ptr::write_volatile(p, v) }
}

/// Does the transfer begin with the HTTP/2 client preface? (Read from its first segment.)
#[inline(always)]
fn starts_with_preface(src: &Src, total: u64) -> bool {
    let addr = match first_bytes(src, total) {
        Some((a, avail)) if avail >= H2_PREFACE.len() as u64 => a,
        _ => return false,
    };
    match unsafe { bpf_probe_read_user(addr as *const [u8; 24]) } {
        Ok(b) => b == H2_PREFACE,
        Err(_) => false,
    }
}

/// Whether this transfer's direction is walked, decided at the connection's first
/// exchanges; returns the lead (bytes before the first frame header) when a walk starts
/// here. The client's first bytes decide: the preface walks both sides from there; HTTP/1
/// leaves the server's first answer to decide, where a 101 (the h2c Upgrade accepted)
/// walks the server's side from the end of its head and the client's from its preface.
#[inline(always)]
fn decide_walk(c: &mut Conn, dir: u8, from_client: u8, src: &Src, total: u64) -> u64 {
    let d = (dir & 1) as usize;
    let other = d ^ 1;
    let state = c.h2[d].state;
    let set = |state| H2Walk {
        state,
        ..H2Walk::default()
    };
    if dir == from_client && state == H2_UNDECIDED {
        if starts_with_preface(src, total) {
            stat(STAT_H2_WALKED);
            c.h2 = [set(H2_WALK); 2];
            return H2_PREFACE.len() as u64;
        }
        c.h2 = [set(H2_UPGRADE); 2];
    } else if state == H2_UPGRADE && dir != from_client {
        match switching_head_len(src, total) {
            Some(n) => {
                stat(STAT_H2_WALKED);
                c.h2[d] = set(H2_WALK);
                return n;
            }
            None => c.h2 = [set(H2_OFF); 2],
        }
    } else if state == H2_UPGRADE {
        // The client, after the server answered: HTTP/2 follows a 101 with the preface.
        // (Before the answer, e.g. a request body, it waits.)
        match c.h2[other].state {
            H2_WALK if starts_with_preface(src, total) => {
                c.h2[d] = set(H2_WALK);
                return H2_PREFACE.len() as u64;
            }
            H2_UPGRADE => {}
            _ => c.h2[d] = set(H2_OFF),
        }
    }
    0
}

/// The first bytes of the transfer: their address and how many the first segment holds.
#[inline(always)]
fn first_bytes(src: &Src, total: u64) -> Option<(u64, u64)> {
    if src.nsegs == 0 {
        return Some((src.ptr, total));
    }
    match read_iovec(src, 0) {
        Some((b, l)) if l > src.skip => Some((b + src.skip, l - src.skip)),
        _ => None,
    }
}

/// Does the transfer begin with "HTTP/1.1 101 " and a head that ends within
/// UPGRADE_HEAD_MAX bytes? Its length. (One 16-byte read for any other first answer.)
#[inline(always)]
fn switching_head_len(src: &Src, total: u64) -> Option<u64> {
    let (addr, avail) = first_bytes(src, total)?;
    if avail < 16 {
        return None;
    }
    let start = unsafe { bpf_probe_read_user(addr as *const [u8; 16]) }.ok()?;
    if start[..13] != *b"HTTP/1.1 101 " {
        return None;
    }
    let s = scratch()?;
    let cur = CURSOR.get_ptr_mut(0)?;
    let n = if avail > UPGRADE_HEAD_MAX {
        UPGRADE_HEAD_MAX
    } else {
        avail
    };
    let n32 = (n as u32) & (2 * UPGRADE_HEAD_MAX as u32 - 1);
    if unsafe { generated::bpf_probe_read_user(s.data.as_mut_ptr() as *mut c_void, n32, addr as *const c_void) } != 0 {
        return None;
    }
    unsafe {
        st(&mut (*cur).left, 0);
        generated::bpf_loop(
            n32 - 3,
            head_end_step as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    let end = ld(unsafe { &(*cur).left });
    (end > 0).then_some(end)
}

/// One position of the search for the end of a head ("\r\n\r\n") in the scratch record;
/// a `bpf_loop` callback. The head length goes to CURSOR.left.
#[inline(never)]
extern "C" fn head_end_step(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else { return 1 };
    let Some(cur) = CURSOR.get_ptr_mut(0) else { return 1 };
    let i = (index & (UPGRADE_HEAD_MAX - 1)) as usize;
    let b = &s.data;
    if b[i] == b'\r' && b[i + 1] == b'\n' && b[i + 2] == b'\r' && b[i + 3] == b'\n' {
        st(unsafe { &mut (*cur).left }, i as u64 + 4);
        return 1;
    }
    0
}

/// Bytes moved past the walk (sendfile, or no user buffer to read): it has lost its place.
#[inline(always)]
fn walk_lost(c: &mut Conn, dir: u8) {
    let w = &mut c.h2[(dir & 1) as usize];
    if w.state == H2_WALK {
        w.state = H2_OFF;
        stat(STAT_H2_WALK_LOST);
    }
}

/// Emit the gathered run: `len` bytes found at offset `off` of the transfer.
#[inline(always)]
fn emit_run(s: &mut Scratch, cur: &mut Cursor, off: u64, len: u64, last: bool) -> bool {
    s.hdr.chunk_off = off as u32;
    s.hdr.cap_len = len as u32;
    if last {
        s.hdr.flags |= FLAG_LAST;
    }
    let ok = output(s, len as u32);
    if ok {
        st(&mut cur.sent, ld(&cur.sent) + 1);
        s.hdr.lost = 0;
    }
    ok
}

/// One step of `capture`: part of a frame header, or a copy or a skip within one iovec
/// segment. A `bpf_loop` callback; everything it needs is in CURSOR. Returns 1 to stop.
#[inline(never)]
extern "C" fn copy_step(_index: u64, _ctx: *mut c_void) -> i64 {
    const STOP: i64 = 1;
    let Some(s) = scratch() else { return STOP };
    let Some(cur) = CURSOR.get_ptr_mut(0) else { return STOP };
    let cur = unsafe { &mut *cur };
    let src = Src {
        ptr: ld(&cur.src_ptr),
        nsegs: ld(&cur.nsegs),
        iov_in_kernel: ld(&cur.iov_in_kernel) != 0,
        skip: 0,
    };
    let total = ld(&cur.total);
    let budget = ld(&cur.budget);
    let walk = WALK_H2 && ld(&cur.walk) != 0;
    let done = ld(&cur.done);
    if done >= total {
        return STOP;
    }
    let mut left = ld(&cur.left);
    let mut base = ld(&cur.base);
    if left == 0 {
        let seg = ld(&cur.seg);
        // A walk follows every segment (grpc-core writes a frame as several); a prefix
        // capture looks at the first MAX_IOV.
        if seg >= src.nsegs || (!walk && seg >= MAX_IOV) || seg >= H2_MAX_IOV {
            return STOP;
        }
        let Some((b, l)) = read_iovec(&src, seg) else {
            return STOP;
        };
        st(&mut cur.seg, seg + 1);
        let skip = ld(&cur.skip);
        if l <= skip {
            st(&mut cur.skip, skip - l);
            return 0;
        }
        st(&mut cur.skip, 0);
        base = b + skip;
        left = l - skip;
    }
    let filled = ld(&cur.filled) & (CHUNK as u64 - 1);
    let copied = ld(&cur.copied);
    let flen = ld(&cur.flen);
    let mut n = total - done;
    if n > left {
        n = left;
    }
    let mut keep = true;
    // Payload bytes read with a frame header that this step completes: the head of a DATA
    // payload is kept whatever the budget and any other payload whole, so they need no
    // step of their own (part of them may be the next header, for short payloads: only
    // the frame's own are taken; of a DATA payload, only its head).
    let mut ahead = 0u64;
    if flen > 0 {
        if n > flen {
            n = flen;
        }
        if ld(&cur.copy) == 0 {
            // DATA: copied while this transfer's budget lasts, and past it the payload's
            // head (DATA_HEAD bytes, or all of a DATA_SMALL one; a walk only); skipped
            // otherwise.
            let room = if copied < budget { budget - copied } else { 0 };
            let dhead = ld(&cur.dhead);
            let allow = if room > dhead { room } else { dhead };
            if allow == 0 {
                if !walk {
                    return STOP;
                }
                keep = false;
            } else if n > allow {
                n = allow;
            }
        }
    } else {
        let have = ld(&cur.have);
        let need = if have < 9 { 9 - have } else { 0 };
        if n > need {
            ahead = if n - need > DATA_SMALL { DATA_SMALL } else { n - need };
            n = need;
        }
    }
    if keep {
        if n + ahead > CHUNK as u64 - filled || copied + n + ahead > H2_COPY_CAP {
            ahead = 0;
        }
        if n > CHUNK as u64 - filled {
            n = CHUNK as u64 - filled;
        }
        if copied + n > H2_COPY_CAP {
            return STOP;
        }
    }
    // `n` is what this step moves past (plus the payload bytes a completed header takes
    // of `ahead`).
    if flen > 0 {
        st(&mut cur.flen, flen - n);
        let dhead = ld(&cur.dhead);
        st(&mut cur.dhead, if n < dhead { dhead - n } else { 0 });
    }
    if keep {
        let r = n + ahead;
        let r32 = if r > CHUNK as u64 { CHUNK as u32 } else { r as u32 };
        let dst = unsafe { s.data.as_mut_ptr().add(filled as usize) };
        let ret = unsafe { generated::bpf_probe_read_user(dst as *mut c_void, r32, base as *const c_void) };
        if ret != 0 {
            stat(STAT_READ_ERR);
            return STOP;
        }
        if flen == 0 {
            // Frame header bytes: also kept aside, as a header may end in a later transfer.
            let have = ld(&cur.have) & 15;
            let at = unsafe { cur.hdr.as_mut_ptr().add(have as usize) };
            let n9 = if n > 9 { 9 } else { n as u32 };
            if unsafe { generated::bpf_probe_read_user(at as *mut c_void, n9, base as *const c_void) } != 0 {
                return STOP;
            }
            if have + n >= 9 {
                let h = &cur.hdr;
                let len = (h[0] as u64) << 16 | (h[1] as u64) << 8 | h[2] as u64;
                // DATA with padding is copied whole: the parser needs its pad length.
                let copy = h[3] != 0 || h[4] & 0x8 != 0;
                let head = if copy {
                    0
                } else if len <= DATA_SMALL {
                    len
                } else {
                    DATA_HEAD
                };
                // Of the bytes read ahead, the frame's own: a copied payload's, a DATA
                // payload's head.
                let own = if copy { len } else { head };
                let took = if ahead < own { ahead } else { own };
                st(&mut cur.flen, len - took);
                st(&mut cur.copy, copy as u64);
                st(&mut cur.have, 0);
                st(&mut cur.dhead, if took < head { head - took } else { 0 });
                n += took;
            } else {
                st(&mut cur.have, have + n);
            }
        }
        st(&mut cur.filled, filled + n);
        st(&mut cur.copied, copied + n);
    } else if filled > 0 {
        // A hole follows: what is gathered goes out first.
        if !emit_run(s, cur, ld(&cur.run), filled, false) {
            st(&mut cur.refused, 1);
            return STOP;
        }
        st(&mut cur.filled, 0);
    }
    st(&mut cur.done, done + n);
    st(&mut cur.base, base + n);
    st(&mut cur.left, left - n);
    if !keep {
        st(&mut cur.run, done + n);
    } else if filled + n >= CHUNK as u64 && done + n < total {
        if !emit_run(s, cur, ld(&cur.run), CHUNK as u64, false) {
            st(&mut cur.refused, 1);
            return STOP;
        }
        st(&mut cur.filled, 0);
        st(&mut cur.run, done + n);
    }
    0
}

/// Emit `total` bytes (the true transfer size) as records of at most CHUNK bytes; iovec
/// segments are gathered into the same record, and the last record carries FLAG_LAST.
/// Most transfers are captured as a prefix of `max_capture` bytes. A connection whose client
/// began with the HTTP/2 preface, or switched to h2c by Upgrade ([`decide_walk`]), is walked
/// frame by frame instead: frame headers and non-DATA payloads are copied wherever they are
/// in the transfer, DATA payloads within `max_capture` bytes and past them each payload's
/// head (DATA_HEAD bytes, or all of one up to DATA_SMALL). Skipped bytes are holes between records (`chunk_off` jumps),
/// which userspace turns into known-length skips the HTTP/2 parser follows. The walk carries
/// over between transfers in `c.h2[dir]`; when it cannot finish a transfer (COPY_STEPS,
/// H2_COPY_CAP, a failed read, a full ring) it is given up (H2_OFF) and the direction is
/// captured as a prefix from then on.
#[inline(always)]
fn capture(sk: u64, c: &mut Conn, stg: &Settings, dir: u8, src: Src, total: u64, hook: u8) {
    let d = (dir & 1) as usize;
    let from_client = if c.role == ROLE_SERVER { DIR_INGRESS } else { DIR_EGRESS };
    // Bytes at the start of the transfer kept whole before its first frame header: the
    // preface, or the head of the 101 that switched to h2c.
    let mut lead = 0u64;
    if WALK_H2 {
        lead = decide_walk(c, dir, from_client, &src, total);
    }
    let walk = WALK_H2 && c.h2[d].state == H2_WALK;
    let Some(s) = scratch() else { return };
    let Some(cur) = CURSOR.get_ptr_mut(0) else { return };
    fill_hdr(&mut s.hdr, sk, c, EV_DATA, dir, hook);
    s.hdr.msg_len = if total > u32::MAX as u64 {
        u32::MAX
    } else {
        total as u32
    };
    s.hdr.lost = c.lost[d];
    let budget = if stg.max_capture > MAX_CAPTURE {
        MAX_CAPTURE
    } else {
        stg.max_capture
    } as u64;
    let cur = unsafe { &mut *cur };
    if src.nsegs == 0 {
        st(&mut cur.base, src.ptr);
        st(&mut cur.left, total);
    } else {
        st(&mut cur.base, 0);
        st(&mut cur.left, 0);
    }
    st(&mut cur.skip, src.skip);
    st(&mut cur.done, 0);
    st(&mut cur.seg, 0);
    st(&mut cur.filled, 0);
    st(&mut cur.run, 0);
    st(&mut cur.copied, 0);
    st(&mut cur.sent, 0);
    let w = c.h2[d];
    if !walk {
        // Not walked: the transfer is one DATA-like frame, copied up to the budget.
        st(&mut cur.flen, total);
        st(&mut cur.copy, 0);
        st(&mut cur.have, 0);
        st(&mut cur.dhead, 0);
    } else if lead > 0 {
        // The lead is copied as if it were a frame payload; the first header follows.
        st(&mut cur.flen, lead);
        st(&mut cur.copy, 1);
        st(&mut cur.have, 0);
        st(&mut cur.dhead, 0);
    } else {
        st(&mut cur.flen, w.flen as u64);
        st(&mut cur.copy, w.copy as u64);
        st(&mut cur.have, w.have as u64);
        st(&mut cur.dhead, w.dhead as u64);
        cur.hdr[..16].copy_from_slice(&w.hdr);
    }

    st(&mut cur.src_ptr, src.ptr);
    st(&mut cur.nsegs, src.nsegs);
    st(&mut cur.iov_in_kernel, src.iov_in_kernel as u64);
    st(&mut cur.total, total);
    st(&mut cur.budget, budget);
    st(&mut cur.walk, walk as u64);
    st(&mut cur.refused, 0);
    if WALK_H2 {
        unsafe {
            generated::bpf_loop(
                COPY_STEPS,
                copy_step as *const () as *mut c_void,
                core::ptr::null_mut(),
                0,
            )
        };
    } else {
        // Kernels without bpf_loop: a bounded loop, enough for a prefix.
        let mut i: u32 = 0;
        while i < MAX_CHUNKS + MAX_IOV as u32 {
            i += 1;
            if copy_step(i as u64, core::ptr::null_mut()) != 0 {
                break;
            }
        }
    }
    let mut refused = ld(&cur.refused) != 0;
    let done = ld(&cur.done);
    let filled = ld(&cur.filled);
    let filled = if filled > CHUNK as u64 { CHUNK as u64 } else { filled };
    if !refused && !emit_run(s, cur, ld(&cur.run), filled, true) {
        refused = true;
    }
    if refused && ld(&cur.sent) == 0 {
        c.lost[d] = c.lost[d].saturating_add(s.hdr.msg_len);
    } else if ld(&cur.sent) > 0 {
        c.lost[d] = 0;
    }
    if !walk {
        return;
    }
    if refused || done < total {
        // The walk lost its place: the rest of this direction is a prefix capture again.
        stat(STAT_H2_WALK_LOST);
        c.h2[d].state = H2_OFF;
        return;
    }
    let mut w = H2Walk {
        flen: ld(&cur.flen) as u32,
        have: ld(&cur.have) as u8,
        state: H2_WALK,
        copy: ld(&cur.copy) as u8,
        dhead: ld(&cur.dhead) as u8,
        ..H2Walk::default()
    };
    w.hdr.copy_from_slice(&cur.hdr[..16]);
    c.h2[d] = w;
}

/// Capture a transfer on socket `sk`, when the connection passes the filters.
#[inline(always)]
fn on_transfer(o: &Offsets, sk: u64, dir: u8, src: Src, total: u64, hook: u8) {
    let Some(st) = settings() else { return };
    let Some(p) = conn_for(o, st, sk, hook) else { return };
    let c = unsafe { &mut *p };
    if !verdict(c, st) {
        stat(STAT_FILTERED);
        return;
    }
    capture(sk, c, st, dir, src, total, hook);
}

// ---------------------------------------------------------------------------------------
// Syscall tracepoints
// Arguments follow the stable tracepoint ABI (events/syscalls/*/format): argument N at
// offset 16 + 8 * N, the return value at 16.
// ---------------------------------------------------------------------------------------

#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    unsafe { ctx.read_at::<u64>(16 + 8 * n) }.unwrap_or(u64::MAX)
}

/// current->files->fdt->fd[fd] -> file -> socket -> sk; Err when fd is not a socket.
#[inline(always)]
fn fd_to_sk(o: &Offsets, fd: u64) -> Result<u64, i64> {
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = rd(task, o.task_files)?;
    let fdt: u64 = rd(files, o.files_fdt)?;
    let max_fds: u32 = rd(fdt, o.fdt_max_fds)?;
    if fd >= max_fds as u64 {
        return Err(-9);
    }
    let fds: u64 = rd(fdt, o.fdt_fd)?;
    let file: u64 = rd(fds + fd * 8, 0)?;
    let inode: u64 = rd(file, o.file_f_inode)?;
    let mode: u16 = rd(inode, o.inode_i_mode)?;
    if mode & S_IFMT != S_IFSOCK {
        return Err(-88);
    }
    let socket: u64 = rd(file, o.file_private_data)?;
    rd(socket, o.socket_sk)
}

/// Entry of a data syscall: remember the socket and the user buffer for the exit.
#[inline(always)]
fn tp_enter(fd: u64, ptr: u64, nsegs: u64, is_iov: bool, what: u8, dir: u8) {
    let Some(stg) = settings() else { return };
    let o = OFFSETS.load();
    let Ok(sk) = fd_to_sk(&o, fd) else { return };
    // A known connection the filters reject: skip the save/restore of the arguments.
    if what == PENDING_DATA
        && let Some(p) = CONNS.get_ptr_mut(&sk)
        && !verdict(unsafe { &mut *p }, stg)
    {
        stat(STAT_FILTERED);
        return;
    }
    let a = PendingArgs {
        sk,
        ptr,
        nsegs,
        fd: fd as u32,
        is_iov: is_iov as u8,
        what,
        dir,
        _pad: 0,
    };
    let _ = ARGS.insert(&bpf_get_current_pid_tgid(), &a, 0);
}

/// Exit of a data syscall: `ret` bytes moved; copy them from the saved buffer.
#[inline(always)]
fn tp_exit(ctx: &TracePointContext) {
    let key = bpf_get_current_pid_tgid();
    let Some(a) = (unsafe { ARGS.get(&key) }).copied() else {
        return;
    };
    let _ = ARGS.remove(&key);
    let ret = arg(ctx, 0) as i64;
    let o = OFFSETS.load();
    match a.what {
        PENDING_DATA => {
            if ret > 0 {
                let nsegs = if a.is_iov != 0 { a.nsegs } else { 0 };
                let src = Src {
                    ptr: a.ptr,
                    nsegs,
                    iov_in_kernel: false,
                    skip: 0,
                };
                on_transfer(&o, a.sk, a.dir, src, ret as u64, HOOK_TRACEPOINT);
            }
        }
        PENDING_SENDFILE => {
            if ret > 0 {
                let Some(st) = settings() else { return };
                let Some(p) = conn_for(&o, st, a.sk, HOOK_TRACEPOINT) else {
                    return;
                };
                let c = unsafe { &mut *p };
                if verdict(c, st) {
                    walk_lost(c, DIR_EGRESS);
                    emit_meta(a.sk, c, EV_GAP, DIR_EGRESS, ret as u32, HOOK_TRACEPOINT);
                }
            }
        }
        PENDING_CONNECT => {
            if ret == 0 || ret == EINPROGRESS {
                let Some(st) = settings() else { return };
                let _ = open_conn(&o, st, a.sk, ROLE_CLIENT, HOOK_TRACEPOINT);
            }
        }
        _ => {}
    }
}

/// The iovec array and its length of a user `msghdr` (sendmsg/recvmsg argument).
#[inline(always)]
fn msghdr_iov(msg: u64) -> Option<(u64, u64)> {
    // struct user_msghdr { void *msg_name; int msg_namelen; struct iovec *msg_iov; size_t msg_iovlen; … }
    let v = unsafe { bpf_probe_read_user((msg + 16) as *const [u64; 2]) }.ok()?;
    Some((v[0], v[1]))
}

macro_rules! tp_data {
    ($enter:ident, $enter_tp:literal, $exit:ident, $exit_tp:literal, $dir:expr, $iov:expr, $msghdr:expr) => {
        tp_data!($enter, $enter_tp, $exit, $exit_tp, $dir, $iov, $msghdr, None);
    };
    // `$flags`: the argument holding recv flags; MSG_PEEK leaves the bytes for the next read.
    ($enter:ident, $enter_tp:literal, $exit:ident, $exit_tp:literal, $dir:expr, $iov:expr, $msghdr:expr, $flags:expr) => {
        #[tracepoint(category = "syscalls", name = $enter_tp)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            let flags: Option<usize> = $flags;
            if let Some(i) = flags
                && arg(&ctx, i) as i64 & MSG_PEEK != 0
            {
                return 0;
            }
            let (mut ptr, mut n) = (arg(&ctx, 1), arg(&ctx, 2));
            if $msghdr {
                match msghdr_iov(ptr) {
                    Some(v) => (ptr, n) = v,
                    None => return 0,
                }
            }
            tp_enter(arg(&ctx, 0), ptr, n, $iov, PENDING_DATA, $dir);
            0
        }

        #[tracepoint(category = "syscalls", name = $exit_tp)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            tp_exit(&ctx);
            0
        }
    };
}

tp_data!(
    tp_enter_read,
    "sys_enter_read",
    tp_exit_read,
    "sys_exit_read",
    DIR_INGRESS,
    false,
    false
);
tp_data!(
    tp_enter_recvfrom,
    "sys_enter_recvfrom",
    tp_exit_recvfrom,
    "sys_exit_recvfrom",
    DIR_INGRESS,
    false,
    false,
    Some(3)
);
tp_data!(
    tp_enter_readv,
    "sys_enter_readv",
    tp_exit_readv,
    "sys_exit_readv",
    DIR_INGRESS,
    true,
    false
);
tp_data!(
    tp_enter_recvmsg,
    "sys_enter_recvmsg",
    tp_exit_recvmsg,
    "sys_exit_recvmsg",
    DIR_INGRESS,
    true,
    true,
    Some(2)
);
tp_data!(
    tp_enter_write,
    "sys_enter_write",
    tp_exit_write,
    "sys_exit_write",
    DIR_EGRESS,
    false,
    false
);
tp_data!(
    tp_enter_sendto,
    "sys_enter_sendto",
    tp_exit_sendto,
    "sys_exit_sendto",
    DIR_EGRESS,
    false,
    false
);
tp_data!(
    tp_enter_writev,
    "sys_enter_writev",
    tp_exit_writev,
    "sys_exit_writev",
    DIR_EGRESS,
    true,
    false
);
tp_data!(
    tp_enter_sendmsg,
    "sys_enter_sendmsg",
    tp_exit_sendmsg,
    "sys_exit_sendmsg",
    DIR_EGRESS,
    true,
    true
);

/// sendfile(out_fd, in_fd, offset, count): file bytes go to the socket without passing
/// through user memory; reported as a gap of the bytes sent.
#[tracepoint(category = "syscalls", name = "sys_enter_sendfile64")]
pub fn tp_enter_sendfile64(ctx: TracePointContext) -> u32 {
    tp_enter(arg(&ctx, 0), 0, 0, false, PENDING_SENDFILE, DIR_EGRESS);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_sendfile64")]
pub fn tp_exit_sendfile64(ctx: TracePointContext) -> u32 {
    tp_exit(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn tp_enter_connect(ctx: TracePointContext) -> u32 {
    tp_enter(arg(&ctx, 0), 0, 0, false, PENDING_CONNECT, DIR_EGRESS);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn tp_exit_connect(ctx: TracePointContext) -> u32 {
    tp_exit(&ctx);
    0
}

/// accept/accept4 return the new fd: the server side of a connection.
#[inline(always)]
fn tp_accepted(ctx: &TracePointContext) {
    let fd = arg(ctx, 0) as i64;
    if fd < 0 {
        return;
    }
    let Some(st) = settings() else { return };
    let o = OFFSETS.load();
    if let Ok(sk) = fd_to_sk(&o, fd as u64) {
        let _ = open_conn(&o, st, sk, ROLE_SERVER, HOOK_TRACEPOINT);
    }
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn tp_exit_accept4(ctx: TracePointContext) -> u32 {
    tp_accepted(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn tp_exit_accept(ctx: TracePointContext) -> u32 {
    tp_accepted(&ctx);
    0
}

/// listen(fd, backlog): remember the endpoint, so clients of it on this host are known.
#[tracepoint(category = "syscalls", name = "sys_enter_listen")]
pub fn tp_enter_listen(ctx: TracePointContext) -> u32 {
    if settings().is_none() {
        return 0;
    }
    let o = OFFSETS.load();
    if let Ok(sk) = fd_to_sk(&o, arg(&ctx, 0)) {
        let mut c = Conn::default();
        if let Ok(true) = read_tcp_sock(&o, sk, &mut c) {
            add_listen(c.family, &c.local_addr, c.local_port);
        }
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn tp_enter_close(ctx: TracePointContext) -> u32 {
    if settings().is_none() {
        return 0;
    }
    let o = OFFSETS.load();
    if let Ok(sk) = fd_to_sk(&o, arg(&ctx, 0)) {
        close_conn(sk, HOOK_TRACEPOINT);
    }
    0
}

// ---------------------------------------------------------------------------------------
// Socket tracepoints (raw): sock_send_length and sock_recv_length hand over the `struct
// sock` of every socket send and receive, inet_sock_set_state every TCP state change.
// No syscall tracepoint is enabled, so no syscall takes the kernel's tracing slow path and
// reads of files, pipes or untraced sockets cost nothing; the fd → socket walk is gone too.
// The user buffer comes from the syscall's saved registers.
// ---------------------------------------------------------------------------------------

const MSG_PEEK: i64 = 2;
const TCP_ESTABLISHED: u64 = 1;
const TCP_SYN_SENT: u64 = 2;
const TCP_SYN_RECV: u64 = 3;
const TCP_CLOSE: u64 = 7;
const TCP_LAST_ACK: u64 = 9;
const TCP_LISTEN: u64 = 10;

/// The current syscall's number and arguments 0..2, from the task's saved user registers.
#[inline(always)]
fn syscall_args(o: &Offsets) -> Option<(u64, [u64; 3])> {
    if o.regs_window == NO_OFFSET {
        return None;
    }
    let regs = unsafe { generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) } as u64;
    let w: [u64; 4] = rd(regs, o.regs_window).ok()?;
    let at = |i: u32| w[(i & 3) as usize];
    Some((at(o.regs_nr), [at(o.regs_arg[0]), at(o.regs_arg[1]), at(o.regs_arg[2])]))
}

/// The user bytes of the syscall that moved data on a socket, by its number; `None` for
/// callers whose bytes are not in one user buffer or iovec array (sendfile, splice,
/// recvmmsg, io_uring, kernel sockets): reported as a gap.
#[inline(always)]
fn syscall_src(o: &Offsets, dir: u8, nr: u64, a: [u64; 3]) -> Option<Src> {
    let nr = nr as u32;
    let (plain, vec, msg) = if dir == DIR_INGRESS {
        (
            nr == o.nr_read || nr == o.nr_recvfrom,
            nr == o.nr_readv,
            nr == o.nr_recvmsg,
        )
    } else {
        (
            nr == o.nr_write || nr == o.nr_sendto,
            nr == o.nr_writev,
            nr == o.nr_sendmsg,
        )
    };
    let (ptr, nsegs) = if plain {
        (a[1], 0)
    } else if vec {
        (a[1], a[2])
    } else if msg {
        msghdr_iov(a[1])?
    } else {
        return None;
    };
    if nsegs == 0 && !plain {
        return None;
    }
    Some(Src {
        ptr,
        nsegs,
        iov_in_kernel: false,
        skip: 0,
    })
}

#[inline(always)]
fn sock_moved(sk: u64, ret: i64, flags: i64, dir: u8) {
    if ret <= 0 || sk == 0 || (dir == DIR_INGRESS && flags & MSG_PEEK != 0) {
        return;
    }
    let Some(st) = settings() else { return };
    let o = OFFSETS.load();
    let Some(p) = conn_for(&o, st, sk, HOOK_SOCKET_TP) else {
        return;
    };
    let c = unsafe { &mut *p };
    announce(c, st, sk, HOOK_SOCKET_TP);
    if !verdict(c, st) {
        stat(STAT_FILTERED);
        return;
    }
    match syscall_args(&o).and_then(|(nr, a)| syscall_src(&o, dir, nr, a)) {
        Some(src) => capture(sk, c, st, dir, src, ret as u64, HOOK_SOCKET_TP),
        None => {
            walk_lost(c, dir);
            emit_meta(sk, c, EV_GAP, dir, ret as u32, HOOK_SOCKET_TP)
        }
    }
}

/// trace_sock_send_length(struct sock *sk, int ret, int flags)
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn rtp_sock_send(ctx: RawTracePointContext) -> u32 {
    let ret: u64 = ctx.arg(1);
    sock_moved(ctx.arg(0), ret as i32 as i64, 0, DIR_EGRESS);
    0
}

/// trace_sock_recv_length(struct sock *sk, int ret, int flags)
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn rtp_sock_recv(ctx: RawTracePointContext) -> u32 {
    let ret: u64 = ctx.arg(1);
    let flags: u64 = ctx.arg(2);
    sock_moved(ctx.arg(0), ret as i32 as i64, flags as i32 as i64, DIR_INGRESS);
    0
}

/// trace_inet_sock_set_state(const struct sock *sk, const int oldstate, const int newstate).
/// Connections open lazily at their first transfer (in the process's context, with its
/// pid); here: listeners for role inference, and the end of a connection — LAST_ACK
/// (closed after the peer) or CLOSE. FIN_WAIT1 is not an end: after shutdown(SHUT_WR) the
/// process may still read.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn rtp_sock_state(ctx: RawTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    let (old, new): (u64, u64) = (ctx.arg(1), ctx.arg(2));
    let (old, new) = (old as u32 as u64, new as u32 as u64);
    if new == TCP_ESTABLISHED {
        // Passive opens come from SYN_RECV, active ones from SYN_SENT: the role, known
        // even for listeners that predate the probe. Often in softirq: no Open here.
        let role = match old {
            TCP_SYN_RECV => ROLE_SERVER,
            TCP_SYN_SENT => ROLE_CLIENT,
            _ => 0,
        };
        if configured().is_some() {
            let o = OFFSETS.load();
            let known = CONNS
                .get_ptr_mut(&sk)
                .is_some_and(|p| same_connection(&o, sk, unsafe { &*p }, role));
            if !known {
                let _ = track_conn(&o, sk, role);
            }
        }
    } else if new == TCP_CLOSE || new == TCP_LAST_ACK {
        close_conn(sk, HOOK_SOCKET_TP);
    } else if new == TCP_LISTEN {
        sk_listening(sk);
    }
    0
}

/// Whether the entry for `sk` describes the connection it holds now. An entry left by an
/// earlier connection whose `struct sock` memory was reused has another 4-tuple or role; a
/// connection entering ESTABLISHED replaces it (and userspace closes the old one: the
/// cookie differs).
#[inline(always)]
fn same_connection(o: &Offsets, sk: u64, old: &Conn, role: u8) -> bool {
    let mut now = Conn::default();
    matches!(read_tcp_sock(o, sk, &mut now), Ok(true))
        && now.local_port == old.local_port
        && now.peer_port == old.peer_port
        && now.local_addr == old.local_addr
        && now.peer_addr == old.peer_addr
        && (role == 0 || role == old.role)
}

// ---------------------------------------------------------------------------------------
// Socket-layer hooks (fentry/fexit and kprobes): the same core, reached from kernel
// functions instead of syscalls. Not loadable on kernels that refuse tracing programs /
// lack CONFIG_KPROBES; the loader falls back to the tracepoints.
// ---------------------------------------------------------------------------------------

/// Snapshot of a msghdr's iov_iter: (type, ptr, iov_offset, count, nr_segs).
#[inline(always)]
fn read_iter(o: &Offsets, msg: u64) -> Result<(u32, u64, u64, u64, u64), i64> {
    if o.msghdr_msg_iter == NO_OFFSET {
        return Err(-2);
    }
    let it = msg + o.msghdr_msg_iter as u64;
    let ty = rd::<u32>(it, o.iter_type)? & o.iter_type_mask;
    Ok((
        ty,
        rd(it, o.iter_ptr)?,
        rd(it, o.iter_iov_offset)?,
        rd(it, o.iter_count)?,
        rd(it, o.iter_nr_segs)?,
    ))
}

/// The bytes an iov_iter describes, for user-backed iterators only.
#[inline(always)]
fn iter_src(o: &Offsets, ty: u32, ptr: u64, off: u64, nr_segs: u64) -> Option<Src> {
    if ty == o.iter_ubuf_value {
        Some(Src {
            ptr: ptr + off,
            nsegs: 0,
            iov_in_kernel: false,
            skip: 0,
        })
    } else if ty == o.iter_iovec_value {
        Some(Src {
            ptr,
            nsegs: nr_segs,
            iov_in_kernel: true,
            skip: off,
        })
    } else {
        None
    }
}

#[inline(always)]
fn sock_send(sock: u64, msg: u64, hook: u8) {
    let o = OFFSETS.load();
    let Ok(sk) = rd::<u64>(sock, o.socket_sk) else { return };
    let Ok((ty, ptr, off, count, nr)) = read_iter(&o, msg) else {
        return;
    };
    if let Some(src) = iter_src(&o, ty, ptr, off, nr) {
        on_transfer(&o, sk, DIR_EGRESS, src, count, hook);
    }
}

#[inline(always)]
fn sock_recv_entry(sock: u64, msg: u64, flags: i64) {
    if settings().is_none() || flags & MSG_PEEK != 0 {
        return;
    }
    let o = OFFSETS.load();
    let Ok(sk) = rd::<u64>(sock, o.socket_sk) else { return };
    let Ok((ty, ptr, off, _count, nr)) = read_iter(&o, msg) else {
        return;
    };
    let r = RecvIter {
        sk,
        ptr,
        iov_offset: off,
        nr_segs: nr,
        iter_type: ty,
        _pad: 0,
    };
    let _ = RECV_ITER.insert(&bpf_get_current_pid_tgid(), &r, 0);
}

#[inline(always)]
fn sock_recv_exit(ret: i64, hook: u8) {
    let key = bpf_get_current_pid_tgid();
    let Some(r) = (unsafe { RECV_ITER.get(&key) }).copied() else {
        return;
    };
    let _ = RECV_ITER.remove(&key);
    if ret <= 0 {
        return;
    }
    let o = OFFSETS.load();
    if let Some(src) = iter_src(&o, r.iter_type, r.ptr, r.iov_offset, r.nr_segs) {
        on_transfer(&o, r.sk, DIR_INGRESS, src, ret as u64, hook);
    }
}

#[inline(always)]
fn sk_opened(sk: u64, role: u8, hook: u8) {
    let Some(st) = settings() else { return };
    if sk != 0 {
        let o = OFFSETS.load();
        let _ = open_conn(&o, st, sk, role, hook);
    }
}

#[inline(always)]
fn sk_listening(sk: u64) {
    if settings().is_none() {
        return;
    }
    let o = OFFSETS.load();
    let mut c = Conn::default();
    if let Ok(true) = read_tcp_sock(&o, sk, &mut c) {
        add_listen(c.family, &c.local_addr, c.local_port);
    }
}

/// int security_socket_sendmsg(struct socket *sock, struct msghdr *msg, int size): on
/// every send path (the 6.7+ __sock_sendmsg that calls it is inlined).
#[fentry(function = "security_socket_sendmsg")]
pub fn fentry_sendmsg(ctx: FEntryContext) -> u32 {
    sock_send(ctx.arg(0), ctx.arg(1), HOOK_FENTRY);
    0
}

/// int sock_recvmsg(struct socket *sock, struct msghdr *msg, int flags)
#[fentry(function = "sock_recvmsg")]
pub fn fentry_recvmsg(ctx: FEntryContext) -> u32 {
    let flags: u64 = ctx.arg(2);
    sock_recv_entry(ctx.arg(0), ctx.arg(1), flags as i32 as i64);
    0
}

#[fexit(function = "sock_recvmsg")]
pub fn fexit_recvmsg(ctx: FExitContext) -> u32 {
    let ret: i64 = ctx.arg::<i64>(3) as i32 as i64;
    sock_recv_exit(ret, HOOK_FENTRY);
    0
}

/// struct sock *inet_csk_accept(struct sock *sk, struct proto_accept_arg *arg) (6.10+;
/// 4 arguments before): the return value follows the arguments in the context.
#[fexit(function = "inet_csk_accept")]
pub fn fexit_accept(ctx: FExitContext) -> u32 {
    let o = OFFSETS.load();
    let sk: u64 = match o.accept_nargs {
        2 => ctx.arg(2),
        3 => ctx.arg(3),
        4 => ctx.arg(4),
        _ => 0,
    };
    sk_opened(sk, ROLE_SERVER, HOOK_FENTRY);
    0
}

/// int tcp_connect(struct sock *sk): the 4-tuple is set by now.
#[fentry(function = "tcp_connect")]
pub fn fentry_connect(ctx: FEntryContext) -> u32 {
    sk_opened(ctx.arg(0), ROLE_CLIENT, HOOK_FENTRY);
    0
}

/// void tcp_close(struct sock *sk, long timeout)
#[fentry(function = "tcp_close")]
pub fn fentry_close(ctx: FEntryContext) -> u32 {
    close_conn(ctx.arg(0), HOOK_FENTRY);
    0
}

/// int inet_csk_listen_start(struct sock *sk)
#[fentry(function = "inet_csk_listen_start")]
pub fn fentry_listen(ctx: FEntryContext) -> u32 {
    sk_listening(ctx.arg(0));
    0
}

#[kprobe]
pub fn kprobe_sendmsg(ctx: ProbeContext) -> u32 {
    if let (Some(sock), Some(msg)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) {
        sock_send(sock, msg, HOOK_KPROBE);
    }
    0
}

#[kprobe]
pub fn kprobe_recvmsg(ctx: ProbeContext) -> u32 {
    if let (Some(sock), Some(msg), Some(flags)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<u64>(2)) {
        sock_recv_entry(sock, msg, flags as i32 as i64);
    }
    0
}

#[kretprobe]
pub fn kretprobe_recvmsg(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret::<i64>() as i32 as i64;
    sock_recv_exit(ret, HOOK_KPROBE);
    0
}

#[kretprobe]
pub fn kretprobe_accept(ctx: RetProbeContext) -> u32 {
    sk_opened(ctx.ret::<u64>(), ROLE_SERVER, HOOK_KPROBE);
    0
}

#[kprobe]
pub fn kprobe_connect(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        sk_opened(sk, ROLE_CLIENT, HOOK_KPROBE);
    }
    0
}

#[kprobe]
pub fn kprobe_close(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        close_conn(sk, HOOK_KPROBE);
    }
    0
}

#[kprobe]
pub fn kprobe_listen(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        sk_listening(sk);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
