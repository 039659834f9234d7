//! #[repr(C)] types shared by the kernel programs (probes/ebpf) and the loader (probes).
//!
//! Layout rules: every struct is `#[repr(C)]`, 8-byte aligned, with explicit padding, so
//! the kernel and userspace agree byte for byte without relying on the compiler's choices.
#![no_std]

/// Payload bytes copied per ring-buffer record. Longer messages are split into chunks.
pub const CHUNK: usize = 4096;
/// Most payload bytes captured per message (`max_capture_bytes` upper bound).
pub const MAX_CAPTURE: u32 = 16 * 1024;
/// Chunks per message the kernel loops over without bpf_loop (MAX_CAPTURE / CHUNK, plus
/// one spare for iovec segment boundaries).
pub const MAX_CHUNKS: u32 = 6;
/// iovec segments a prefix capture looks at per readv/writev/sendmsg/recvmsg (gRPC writes
/// many small ones); a walked HTTP/2 transfer follows up to H2_MAX_IOV.
pub const MAX_IOV: u64 = 16;

/// `u32::MAX` in an offset: the field does not exist on this kernel.
pub const NO_OFFSET: u32 = u32::MAX;

// Event kinds (EventHdr::kind).
pub const EV_OPEN: u8 = 1;
pub const EV_DATA: u8 = 2;
pub const EV_CLOSE: u8 = 3;
/// Bytes moved without passing through user memory (sendfile): `msg_len` lost.
pub const EV_GAP: u8 = 4;

// Directions (EventHdr::dir).
pub const DIR_EGRESS: u8 = 0;
pub const DIR_INGRESS: u8 = 1;

// Roles (EventHdr::role, Conn::role). Bits, so Settings::roles can be a mask.
pub const ROLE_SERVER: u8 = 1;
pub const ROLE_CLIENT: u8 = 2;

// EventHdr::flags
/// Last chunk of a message.
pub const FLAG_LAST: u8 = 1;
/// The connection existed before the probe attached: its role was inferred from the
/// listening ports, not seen at accept/connect.
pub const FLAG_INFERRED: u8 = 2;

// Which hook family produced the event (EventHdr::hook).
pub const HOOK_TRACEPOINT: u8 = 1;
pub const HOOK_FENTRY: u8 = 2;
pub const HOOK_KPROBE: u8 = 3;
/// Socket tracepoints (sock_send_length / sock_recv_length / inet_sock_set_state).
pub const HOOK_SOCKET_TP: u8 = 4;

// Per-CPU counters (STATS index).
pub const STAT_EMITTED: u32 = 0;
pub const STAT_RING_DROP: u32 = 1;
pub const STAT_READ_ERR: u32 = 2;
pub const STAT_FILTERED: u32 = 3;
pub const STAT_CONN_DUP: u32 = 4;
/// Transfers on a socket whose connection had already closed (its port unbound, e.g. a read
/// after a lingering close): neither attributed nor tracked.
pub const STAT_LATE: u32 = 5;
/// HTTP/2 frame walks given up (steps or copy cap exhausted, or a record the ring refused):
/// that direction falls back to prefix capture.
pub const STAT_H2_WALK_LOST: u32 = 6;
/// Connections that began with the HTTP/2 preface: walked frame by frame.
pub const STAT_H2_WALKED: u32 = 7;
pub const STAT_MAX: u32 = 8;

/// Kernel struct layout, read from /sys/kernel/btf/vmlinux by the loader and written
/// into the programs' read-only `OFFSETS` global before load. Byte offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    // current->files->fdt->fd[fd] -> file
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_f_inode: u32,
    pub file_private_data: u32,
    pub inode_i_mode: u32,
    // struct socket / struct sock
    pub socket_sk: u32,
    pub sk_type: u32,
    pub sk_protocol: u32,
    pub skc_family: u32,
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    // struct msghdr / iov_iter / iovec (socket-layer hooks)
    pub msghdr_msg_iter: u32,
    pub iter_type: u32,
    /// Mask applied to the u32 read at `iter_type` (0xff for the u8 field of 5.14+).
    pub iter_type_mask: u32,
    pub iter_ubuf_value: u32,
    pub iter_iovec_value: u32,
    pub iter_iov_offset: u32,
    pub iter_ptr: u32,
    pub iter_count: u32,
    pub iter_nr_segs: u32,
    /// Position of the return value in inet_csk_accept's fexit context (= its arg count).
    pub accept_nargs: u32,
    // The current syscall as the socket tracepoints see it: a 32-byte window of the task's
    // saved user registers (struct pt_regs) at `regs_window`, holding the syscall number
    // and arguments 0..2 at these u64 indexes (x86-64: dx, si, di, orig_ax).
    pub regs_window: u32,
    pub regs_nr: u32,
    pub regs_arg: [u32; 3],
    // This architecture's syscall numbers, for telling the socket tracepoints' callers apart.
    pub nr_read: u32,
    pub nr_readv: u32,
    pub nr_recvfrom: u32,
    pub nr_recvmsg: u32,
    pub nr_write: u32,
    pub nr_writev: u32,
    pub nr_sendto: u32,
    pub nr_sendmsg: u32,
    pub nr_sendfile: u32,
    pub _pad: u32,
}

impl Offsets {
    /// Every field absent: the loader fills in what BTF has.
    pub const UNSET: Offsets = Offsets {
        task_files: NO_OFFSET,
        files_fdt: NO_OFFSET,
        fdt_max_fds: NO_OFFSET,
        fdt_fd: NO_OFFSET,
        file_f_inode: NO_OFFSET,
        file_private_data: NO_OFFSET,
        inode_i_mode: NO_OFFSET,
        socket_sk: NO_OFFSET,
        sk_type: NO_OFFSET,
        sk_protocol: NO_OFFSET,
        skc_family: NO_OFFSET,
        skc_daddr: NO_OFFSET,
        skc_rcv_saddr: NO_OFFSET,
        skc_dport: NO_OFFSET,
        skc_num: NO_OFFSET,
        skc_v6_daddr: NO_OFFSET,
        skc_v6_rcv_saddr: NO_OFFSET,
        msghdr_msg_iter: NO_OFFSET,
        iter_type: NO_OFFSET,
        iter_type_mask: NO_OFFSET,
        iter_ubuf_value: NO_OFFSET,
        iter_iovec_value: NO_OFFSET,
        iter_iov_offset: NO_OFFSET,
        iter_ptr: NO_OFFSET,
        iter_count: NO_OFFSET,
        iter_nr_segs: NO_OFFSET,
        accept_nargs: NO_OFFSET,
        regs_window: NO_OFFSET,
        regs_nr: 0,
        regs_arg: [0; 3],
        nr_read: NO_OFFSET,
        nr_readv: NO_OFFSET,
        nr_recvfrom: NO_OFFSET,
        nr_recvmsg: NO_OFFSET,
        nr_write: NO_OFFSET,
        nr_writev: NO_OFFSET,
        nr_sendto: NO_OFFSET,
        nr_sendmsg: NO_OFFSET,
        nr_sendfile: NO_OFFSET,
        _pad: 0,
    };
}

/// Run-time settings, in a one-entry array map so a reload can change them in place.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Bumped on every change: connections re-evaluate their cached filter verdict.
    pub generation: u32,
    /// The loader's own tgid: never traced.
    pub self_tgid: u32,
    /// Payload bytes copied per message, at most MAX_CAPTURE.
    pub max_capture: u32,
    /// ROLE_* bits to emit.
    pub roles: u8,
    /// 1 when the CIDR4 / CIDR6 tries are in force (empty list = no address filter).
    pub cidr_on: u8,
    /// 1 when PORTS is in force.
    pub ports_on: u8,
    pub _pad: u8,
    /// Ring-buffer fill (bytes) at which a record wakes the reader; below it the reader
    /// finds records on its drain timer.
    pub wakeup_bytes: u32,
}

/// A TCP connection the kernel has seen (CONNS, keyed by `struct sock *`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Conn {
    /// bpf_ktime_get_ns at open: (sk, cookie) names one connection even when the kernel
    /// reuses the `struct sock` memory.
    pub cookie: u64,
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
    pub local_port: u16,
    pub peer_port: u16,
    pub family: u16,
    pub role: u8,
    pub flags: u8,
    /// Settings generation the verdict below was computed for.
    pub generation: u32,
    /// 1 = emit this connection's events.
    pub verdict: u8,
    /// 1 = a client socket whose server end is traced on this host (reported there).
    pub local_dup: u8,
    /// 1 = tracked (role known) but Open not emitted yet: the socket tracepoints learn of
    /// connections in softirq context and announce them at the first transfer.
    pub unannounced: u8,
    pub _pad: u8,
    /// Payload bytes lost to a full ring, per direction, reported on the next event.
    pub lost: [u32; 2],
    /// HTTP/2 frame walk per direction (index = `dir`).
    pub h2: [H2Walk; 2],
}

// H2Walk::state
/// The client has not sent a byte yet.
pub const H2_UNDECIDED: u8 = 0;
/// The connection began with the HTTP/2 preface: transfers are walked frame by frame.
pub const H2_WALK: u8 = 1;
/// Not walked: the first bytes were not the preface, or the walk lost its place.
pub const H2_OFF: u8 = 2;
/// The client began with HTTP/1: the server's first answer decides (a 101 switching to h2c
/// starts the walk right after its head; anything else: H2_OFF).
pub const H2_UPGRADE: u8 = 3;
/// Bytes of a 101 head searched for its end ("\r\n\r\n").
pub const UPGRADE_HEAD_MAX: u64 = 256;

/// Where one direction of an HTTP/2 connection stands between two transfers. On a walked
/// connection every frame header and every non-DATA payload is copied whatever its place
/// in the transfer, and DATA payloads within `max_capture` bytes per transfer (past them,
/// each payload's first [`DATA_HEAD`] bytes): the
/// HPACK state userspace decodes with never misses a header block behind a large body.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct H2Walk {
    /// The frame header being read (the first `have` bytes).
    pub hdr: [u8; 16],
    /// Payload bytes of the current frame still to come.
    pub flen: u32,
    /// Bytes of the current frame header read so far (0..9).
    pub have: u8,
    /// H2_UNDECIDED, H2_WALK, H2_OFF or H2_UPGRADE.
    pub state: u8,
    /// 1 = the current frame's payload is copied in full (anything but DATA, or padded DATA).
    pub copy: u8,
    /// Bytes of the current DATA payload's head still copied past the budget ([`DATA_HEAD`],
    /// or the whole of a payload up to [`DATA_SMALL`]).
    pub dhead: u8,
}

/// Steps one transfer may take in `bpf_loop` (a step is part of a frame header with up to
/// DATA_SMALL bytes of its payload, or one copy or skip within one iovec segment): a 256 KiB
/// write of 16 KiB DATA frames takes ~35.
/// Without `bpf_loop` a prefix capture takes at most MAX_CHUNKS + MAX_IOV.
pub const COPY_STEPS: u32 = 1024;
/// iovec segments a walk follows (UIO_MAXIOV).
pub const H2_MAX_IOV: u64 = 1024;
/// Most bytes copied from one walked transfer (header blocks beyond this lose the walk).
pub const H2_COPY_CAP: u64 = 2 * MAX_CAPTURE as u64;
/// Bytes at the start of every DATA payload a walk copies even when the transfer's budget
/// is spent: a gRPC message's length prefix (flag + 4-byte length), so message counts stay
/// exact when each message starts a DATA frame, however far into a write it is.
pub const DATA_HEAD: u64 = 5;
/// A DATA payload up to this long is copied whole even past the budget: small messages
/// that a proxy packs into one frame (haproxy, for a server stream) keep every prefix.
/// Read with the frame header, in the same step.
pub const DATA_SMALL: u64 = 64;
/// The HTTP/2 client connection preface.
pub const H2_PREFACE: [u8; 24] = *b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A listening endpoint (LISTEN map): used to infer roles of connections that predate the
/// probe and to recognise a client whose server end is on this host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// All zero for a wildcard listener.
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u16,
    pub _pad: u32,
}

/// Header of every ring-buffer record; the payload (`cap_len` bytes) follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHdr {
    /// bpf_ktime_get_ns (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    pub sk: u64,
    pub cookie: u64,
    pub pid_tgid: u64,
    pub local_addr: [u8; 16],
    pub peer_addr: [u8; 16],
    pub comm: [u8; 16],
    /// True length of the message (whole syscall transfer), or bytes lost for EV_GAP.
    pub msg_len: u32,
    /// Offset of this chunk's payload within the message.
    pub chunk_off: u32,
    /// Payload bytes following the header.
    pub cap_len: u32,
    /// Bytes lost (ring full) in this direction just before this event.
    pub lost: u32,
    pub local_port: u16,
    pub peer_port: u16,
    pub family: u16,
    pub kind: u8,
    pub dir: u8,
    pub role: u8,
    pub flags: u8,
    pub hook: u8,
    pub _pad: u8,
    pub _pad2: u32,
}

pub const HDR_SIZE: usize = core::mem::size_of::<EventHdr>();

/// Per-CPU scratch: one record (header + one chunk), too big for the 512-byte BPF stack.
/// `data` is twice a chunk so the verifier can check a copy that starts anywhere in the
/// first chunk (iovec segments are gathered into one record) without knowing it ends there.
#[repr(C)]
pub struct Scratch {
    pub hdr: EventHdr,
    pub data: [u8; 2 * CHUNK],
}

/// Arguments saved at syscall entry for the matching exit (ARGS, keyed by pid_tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingArgs {
    pub sk: u64,
    /// User buffer, or user iovec array when `is_iov == 1`.
    pub ptr: u64,
    pub nsegs: u64,
    pub fd: u32,
    pub is_iov: u8,
    /// What the exit completes: PENDING_*.
    pub what: u8,
    /// DIR_* of a data transfer.
    pub dir: u8,
    pub _pad: u8,
}

pub const PENDING_DATA: u8 = 1;
pub const PENDING_CONNECT: u8 = 2;
pub const PENDING_SENDFILE: u8 = 3;
pub const PENDING_LISTEN: u8 = 4;

/// Socket-layer receive state saved at fentry/kprobe entry for the exit hook.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RecvIter {
    pub sk: u64,
    pub ptr: u64,
    pub iov_offset: u64,
    pub nr_segs: u64,
    pub iter_type: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for Offsets {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for Conn {}
    unsafe impl aya::Pod for ListenKey {}
    unsafe impl aya::Pod for EventHdr {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<EventHdr>(), 112);
        assert_eq!(core::mem::size_of::<H2Walk>(), 24);
        assert_eq!(core::mem::size_of::<Conn>(), 64 + 2 * 24);
        assert_eq!(core::mem::size_of::<Conn>() % 8, 0);
        assert_eq!(core::mem::size_of::<ListenKey>(), 24);
        assert_eq!(core::mem::size_of::<Settings>(), 20);
        assert_eq!(core::mem::size_of::<Offsets>() % 8, 0);
    }
}
