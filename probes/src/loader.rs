//! Loads the kernel programs, attaches one hook family, and keeps the filter maps in
//! step with the config. Dropping a [`Probe`] detaches everything.

use std::collections::HashSet;
use std::net::IpAddr;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{FEntry, FExit, KProbe, RawTracePoint, TracePoint};
use aya::{Btf as AyaBtf, Ebpf, EbpfLoader};
use perisco_probes_common::*;

use crate::Error;
use crate::btf::Btf;
use crate::config::{EbpfSocketConfig, Hook};

/// The compiled kernel objects (built by build.rs through aya-build): with the HTTP/2 frame
/// walk, which needs `bpf_loop` (Linux 5.17), and without it for older kernels.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/perisco-socket"));
static OBJECT_PREFIX: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/perisco-socket-prefix"));

/// Will the programs walk HTTP/2 connections frame by frame here? Only where the kernel has
/// `bpf_loop` (5.17+), which the walk runs in; unknown versions are taken as too old (the
/// prefix capture works everywhere). `PERISCO_EBPF_PREFIX_ONLY=1` loads the programs
/// without the walk anyway (to compare, or to test what older kernels run).
pub fn walks_http2() -> bool {
    if std::env::var_os("PERISCO_EBPF_PREFIX_ONLY").is_some_and(|v| v == "1") {
        return false;
    }
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 17, 0))
}

/// Syscall tracepoints: (program, tracepoint in category "syscalls").
/// The kernel wakes the reader once this fraction of the ring is waiting (1/16: 1 MiB of
/// the default 16 MiB); below it the reader drains on its timer (`source::DRAIN_EVERY`).
const WAKEUP_FRACTION: u32 = 16;

const TRACEPOINTS: &[(&str, &str)] = &[
    ("tp_enter_read", "sys_enter_read"),
    ("tp_exit_read", "sys_exit_read"),
    ("tp_enter_recvfrom", "sys_enter_recvfrom"),
    ("tp_exit_recvfrom", "sys_exit_recvfrom"),
    ("tp_enter_readv", "sys_enter_readv"),
    ("tp_exit_readv", "sys_exit_readv"),
    ("tp_enter_recvmsg", "sys_enter_recvmsg"),
    ("tp_exit_recvmsg", "sys_exit_recvmsg"),
    ("tp_enter_write", "sys_enter_write"),
    ("tp_exit_write", "sys_exit_write"),
    ("tp_enter_sendto", "sys_enter_sendto"),
    ("tp_exit_sendto", "sys_exit_sendto"),
    ("tp_enter_writev", "sys_enter_writev"),
    ("tp_exit_writev", "sys_exit_writev"),
    ("tp_enter_sendmsg", "sys_enter_sendmsg"),
    ("tp_exit_sendmsg", "sys_exit_sendmsg"),
    ("tp_enter_sendfile64", "sys_enter_sendfile64"),
    ("tp_exit_sendfile64", "sys_exit_sendfile64"),
    ("tp_enter_connect", "sys_enter_connect"),
    ("tp_exit_connect", "sys_exit_connect"),
    ("tp_exit_accept4", "sys_exit_accept4"),
    ("tp_exit_accept", "sys_exit_accept"),
    ("tp_enter_listen", "sys_enter_listen"),
    ("tp_enter_close", "sys_enter_close"),
];

/// Socket tracepoints, attached raw: (program, tracepoint).
const SOCKET_TRACEPOINTS: &[(&str, &str)] = &[
    ("rtp_sock_send", "sock_send_length"),
    ("rtp_sock_recv", "sock_recv_length"),
    ("rtp_sock_state", "inet_sock_set_state"),
];

/// Socket-layer hooks: (fentry/fexit program, kprobe program, kernel function, is exit).
const SOCKET_HOOKS: &[(&str, &str, &str, bool)] = &[
    ("fentry_sendmsg", "kprobe_sendmsg", "security_socket_sendmsg", false),
    ("fentry_recvmsg", "kprobe_recvmsg", "sock_recvmsg", false),
    ("fexit_recvmsg", "kretprobe_recvmsg", "sock_recvmsg", true),
    ("fexit_accept", "kretprobe_accept", "inet_csk_accept", true),
    ("fentry_connect", "kprobe_connect", "tcp_connect", false),
    ("fentry_close", "kprobe_close", "tcp_close", false),
    ("fentry_listen", "kprobe_listen", "inet_csk_listen_start", false),
];

/// Which hooks are attached, and why that family was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHook {
    pub hook: Hook,
    pub why: String,
}

/// Kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub emitted: u64,
    pub ring_dropped: u64,
    pub read_errors: u64,
    pub filtered: u64,
    pub local_duplicates: u64,
    /// Transfers on sockets whose connection had closed (STAT_LATE).
    pub late_transfers: u64,
    /// Connections walked frame by frame (STAT_H2_WALKED).
    pub h2_walked: u64,
    /// HTTP/2 frame walks given up (STAT_H2_WALK_LOST).
    pub h2_walks_lost: u64,
}

pub struct Probe {
    ebpf: Ebpf,
    pub active: ActiveHook,
    generation: u32,
}

/// Kernel layout facts from BTF.
pub fn resolve_offsets(b: &Btf) -> Result<Offsets, Error> {
    let mut o = Offsets::UNSET;
    o.task_files = b.offset_of("task_struct", &["files"])?;
    o.files_fdt = b.offset_of("files_struct", &["fdt"])?;
    o.fdt_max_fds = b.offset_of("fdtable", &["max_fds"])?;
    o.fdt_fd = b.offset_of("fdtable", &["fd"])?;
    o.file_f_inode = b.offset_of("file", &["f_inode"])?;
    o.file_private_data = b.offset_of("file", &["private_data"])?;
    o.inode_i_mode = b.offset_of("inode", &["i_mode"])?;
    o.socket_sk = b.offset_of("socket", &["sk"])?;
    // u16 fields since 5.6 (bitfields before, which offset_of refuses).
    for (field, slot) in [("sk_type", &mut o.sk_type), ("sk_protocol", &mut o.sk_protocol)] {
        if b.member_size("sock", &[field])? != 2 {
            return Err(Error::Btf(format!("sock.{field} is not a u16 on this kernel")));
        }
        *slot = b.offset_of("sock", &[field])?;
    }
    let skc = |f: &str| b.offset_of("sock", &["__sk_common", f]);
    o.skc_family = skc("skc_family")?;
    o.skc_daddr = skc("skc_daddr")?;
    o.skc_rcv_saddr = skc("skc_rcv_saddr")?;
    o.skc_dport = skc("skc_dport")?;
    o.skc_num = skc("skc_num")?;
    o.skc_v6_daddr = skc("skc_v6_daddr").unwrap_or(NO_OFFSET);
    o.skc_v6_rcv_saddr = skc("skc_v6_rcv_saddr").unwrap_or(NO_OFFSET);
    // Only the socket-layer hooks need these: leave them unset when absent.
    if let Ok(off) = b.offset_of("msghdr", &["msg_iter"]) {
        o.msghdr_msg_iter = off;
        if let Ok(off) = b.offset_of("iov_iter", &["iter_type"]) {
            o.iter_type = off;
            o.iter_type_mask = if b.member_size("iov_iter", &["iter_type"])? == 1 {
                0xff
            } else {
                u32::MAX
            };
        } else if let Ok(off) = b.offset_of("iov_iter", &["type"]) {
            // before 5.14: `unsigned int type`, bit 0 = direction
            o.iter_type = off;
            o.iter_type_mask = !1;
        }
        o.iter_ubuf_value = b.enum_value("iter_type", "ITER_UBUF").map_or(NO_OFFSET, |v| v as u32);
        o.iter_iovec_value = b.enum_value("iter_type", "ITER_IOVEC").map_or(NO_OFFSET, |v| v as u32);
        o.iter_iov_offset = b.offset_of("iov_iter", &["iov_offset"]).unwrap_or(NO_OFFSET);
        o.iter_ptr = b
            .offset_of("iov_iter", &["__iov"])
            .or_else(|_| b.offset_of("iov_iter", &["iov"]))
            .unwrap_or(NO_OFFSET);
        o.iter_count = b.offset_of("iov_iter", &["count"]).unwrap_or(NO_OFFSET);
        o.iter_nr_segs = b.offset_of("iov_iter", &["nr_segs"]).unwrap_or(NO_OFFSET);
    }
    o.accept_nargs = b.func_nargs("inet_csk_accept").unwrap_or(NO_OFFSET);
    syscall_regs(b, &mut o);
    Ok(o)
}

/// Where the socket tracepoints find the current syscall's number and arguments: x86-64
/// keeps them in adjacent `struct pt_regs` slots (dx, si, di, orig_ax), read in one copy.
/// Left unset elsewhere: the loader then uses the syscall tracepoints.
fn syscall_regs(b: &Btf, o: &mut Offsets) {
    #[cfg(target_arch = "x86_64")]
    {
        let field = |f: &str| b.offset_of("pt_regs", &[f]).ok();
        let (Some(di), Some(si), Some(dx), Some(nr)) = (field("di"), field("si"), field("dx"), field("orig_ax")) else {
            return;
        };
        let base = di.min(si).min(dx).min(nr);
        let slot = |off: u32| (off - base) / 8;
        if [di, si, dx, nr].iter().any(|&off| off - base >= 32 || off % 8 != 0) {
            return;
        }
        o.regs_window = base;
        o.regs_nr = slot(nr);
        o.regs_arg = [slot(di), slot(si), slot(dx)];
        let nr = |n: libc::c_long| n as u32;
        o.nr_read = nr(libc::SYS_read);
        o.nr_readv = nr(libc::SYS_readv);
        o.nr_recvfrom = nr(libc::SYS_recvfrom);
        o.nr_recvmsg = nr(libc::SYS_recvmsg);
        o.nr_write = nr(libc::SYS_write);
        o.nr_writev = nr(libc::SYS_writev);
        o.nr_sendto = nr(libc::SYS_sendto);
        o.nr_sendmsg = nr(libc::SYS_sendmsg);
        o.nr_sendfile = nr(libc::SYS_sendfile);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (b, o);
}

fn map_err(e: impl std::fmt::Display, what: &str) -> Error {
    Error::Load(format!("{what}: {e}"))
}

/// An error with its causes; verifier logs are cut to their end (where the reason is).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    const KEEP: usize = 1500;
    if s.len() > KEEP {
        let mut cut = s.len() - KEEP;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = format!("…{}", &s[cut..]);
    }
    s
}

impl Probe {
    /// Load the programs, attach the configured hook family, apply the filters. The
    /// programs stay idle until the settings are written (last step), so the listening
    /// endpoints are seeded before any connection is classified.
    pub fn load(cfg: &EbpfSocketConfig) -> Result<Probe, Error> {
        let btf = Btf::from_sys_fs()?;
        let offsets = resolve_offsets(&btf)?;
        let aya_btf = AyaBtf::from_sys_fs().map_err(|e| map_err(e, "aya BTF"))?;
        let walk_h2 = walks_http2();
        let ebpf = EbpfLoader::new()
            .btf(Some(&aya_btf))
            .override_global("OFFSETS", &offsets, true)
            .map_max_entries("EVENTS", cfg.ring_buffer_bytes)
            .load(if walk_h2 { OBJECT } else { OBJECT_PREFIX })
            .map_err(|e| {
                Error::Load(format!(
                    "loading the eBPF object: {} (needs CAP_BPF + CAP_PERFMON)",
                    chain(&e)
                ))
            })?;
        let mut probe = Probe {
            ebpf,
            active: ActiveHook {
                hook: Hook::Tracepoint,
                why: String::new(),
            },
            generation: 0,
        };
        probe.active = probe.attach(cfg.hook, &aya_btf, &btf, &offsets)?;
        probe.active.why.push_str(if walk_h2 {
            "; HTTP/2 frame walk on"
        } else {
            "; HTTP/2 frame walk off (needs bpf_loop, Linux 5.17+): HTTP/2 transfers are captured as prefixes"
        });
        probe.seed_listeners();
        probe.apply(cfg)?;
        Ok(probe)
    }

    fn attach(&mut self, want: Hook, aya_btf: &AyaBtf, btf: &Btf, o: &Offsets) -> Result<ActiveHook, Error> {
        let mut reasons = Vec::new();
        if matches!(want, Hook::Auto | Hook::Fentry) {
            match self.attach_socket_hooks(Hook::Fentry, aya_btf, btf, o) {
                Ok(()) => {
                    return Ok(ActiveHook {
                        hook: Hook::Fentry,
                        why: "fentry/fexit loaded".into(),
                    });
                }
                Err(e) if want == Hook::Auto => reasons.push(format!("fentry unavailable ({e})")),
                Err(e) => return Err(e),
            }
        }
        if matches!(want, Hook::Auto | Hook::Kprobe) {
            match self.attach_socket_hooks(Hook::Kprobe, aya_btf, btf, o) {
                Ok(()) => {
                    let why = if reasons.is_empty() {
                        "kprobes requested".into()
                    } else {
                        reasons.join("; ")
                    };
                    return Ok(ActiveHook {
                        hook: Hook::Kprobe,
                        why,
                    });
                }
                Err(e) if want == Hook::Auto => reasons.push(format!("kprobe unavailable ({e})")),
                Err(e) => return Err(e),
            }
        }
        if matches!(want, Hook::Auto | Hook::Tracepoint) {
            match self.attach_socket_tracepoints(o) {
                Ok(()) => {
                    reasons.push("socket tracepoints (sock_send_length, sock_recv_length, inet_sock_set_state)".into());
                    return Ok(ActiveHook {
                        hook: Hook::Tracepoint,
                        why: reasons.join("; "),
                    });
                }
                Err(e) => reasons.push(format!("socket tracepoints unavailable ({e})")),
            }
        }
        self.attach_tracepoints()?;
        reasons.push("syscall tracepoints".into());
        Ok(ActiveHook {
            hook: if want == Hook::SyscallTracepoint {
                Hook::SyscallTracepoint
            } else {
                Hook::Tracepoint
            },
            why: reasons.join("; "),
        })
    }

    fn attach_tracepoints(&mut self) -> Result<(), Error> {
        ensure_tracefs()?;
        for (prog, tp) in TRACEPOINTS {
            let p: &mut TracePoint = self
                .ebpf
                .program_mut(prog)
                .ok_or_else(|| Error::Load(format!("program {prog} missing from the object")))?
                .try_into()
                .map_err(|e| map_err(e, prog))?;
            p.load()
                .map_err(|e| Error::Load(format!("load {prog}: {}", chain(&e))))?;
            p.attach("syscalls", tp)
                .map_err(|e| Error::Load(format!("attach syscalls/{tp}: {}", chain(&e))))?;
        }
        Ok(())
    }

    /// The socket tracepoints, all or nothing.
    fn attach_socket_tracepoints(&mut self, o: &Offsets) -> Result<(), Error> {
        if o.regs_window == NO_OFFSET {
            return Err(Error::Load(
                "the syscall registers' layout is only known for x86-64".into(),
            ));
        }
        let steps: Vec<_> = SOCKET_TRACEPOINTS.iter().map(|&(prog, tp)| (prog, tp, ())).collect();
        self.attach_all(&steps, |p, tp, ()| {
            <&mut RawTracePoint>::try_from(p)
                .map_err(|e| chain(&e))
                .and_then(|p| p.load().map_err(|e| chain(&e)).map(|_| p))
                .and_then(|p| p.attach(tp).map(drop).map_err(|e| chain(&e)))
        })
    }

    /// fentry/fexit or kprobes on the socket layer, all or nothing.
    fn attach_socket_hooks(&mut self, kind: Hook, aya_btf: &AyaBtf, btf: &Btf, o: &Offsets) -> Result<(), Error> {
        if o.msghdr_msg_iter == NO_OFFSET || o.iter_ptr == NO_OFFSET || o.iter_type == NO_OFFSET {
            return Err(Error::Load("iov_iter layout not found in BTF".into()));
        }
        if kind == Hook::Kprobe && !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
            return Err(Error::Load(
                "this kernel has no kprobes (CONFIG_KPROBES is not set)".into(),
            ));
        }
        if let Some(&(_, _, func, _)) = SOCKET_HOOKS.iter().find(|h| !btf.has_func(h.2)) {
            return Err(Error::Load(format!("kernel function {func} not found")));
        }
        let steps: Vec<_> = SOCKET_HOOKS
            .iter()
            .map(|&(fentry, kprobe, func, exit)| (if kind == Hook::Fentry { fentry } else { kprobe }, func, exit))
            .collect();
        self.attach_all(&steps, |p, func, exit| match (kind, exit) {
            (Hook::Fentry, false) => <&mut FEntry>::try_from(p)
                .map_err(|e| chain(&e))
                .and_then(|p| p.load(func, aya_btf).map_err(|e| chain(&e)).map(|_| p))
                .and_then(|p| p.attach().map(drop).map_err(|e| chain(&e))),
            (Hook::Fentry, true) => <&mut FExit>::try_from(p)
                .map_err(|e| chain(&e))
                .and_then(|p| p.load(func, aya_btf).map_err(|e| chain(&e)).map(|_| p))
                .and_then(|p| p.attach().map(drop).map_err(|e| chain(&e))),
            _ => <&mut KProbe>::try_from(p)
                .map_err(|e| chain(&e))
                .and_then(|p| p.load().map_err(|e| chain(&e)).map(|_| p))
                .and_then(|p| p.attach(func, 0).map(drop).map_err(|e| chain(&e))),
        })
    }

    /// Load and attach each `(program, target, extra)` with `one`, all or nothing: a
    /// partial set would miss directions, so what did attach is unloaded again.
    fn attach_all<T: Copy>(
        &mut self,
        steps: &[(&'static str, &'static str, T)],
        mut one: impl FnMut(&mut aya::programs::Program, &'static str, T) -> Result<(), String>,
    ) -> Result<(), Error> {
        let mut loaded = Vec::new();
        for &(name, target, extra) in steps {
            let r = match self.ebpf.program_mut(name) {
                None => Err(format!("program {name} missing from the object")),
                Some(p) => {
                    loaded.push(name);
                    one(p, target, extra)
                }
            };
            if let Err(e) = r {
                for name in loaded {
                    unload(self.ebpf.program_mut(name));
                }
                return Err(Error::Load(format!("{name} on {target}: {e}")));
            }
        }
        Ok(())
    }

    /// Listening TCP endpoints of this network namespace, so connections that predate the
    /// probe get the right role. (Listeners opened later are seen by the programs.)
    fn seed_listeners(&mut self) {
        let Some(m) = self.ebpf.map_mut("LISTEN") else { return };
        let Ok(mut listen) = BpfHashMap::<&mut MapData, ListenKey, u8>::try_from(m) else {
            return;
        };
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            for key in parse_listeners(&text) {
                let _ = listen.insert(key, 1, 0);
            }
        }
    }

    /// Write filters and settings; the programs re-evaluate every connection's verdict.
    pub fn apply(&mut self, cfg: &EbpfSocketConfig) -> Result<(), Error> {
        let cidrs = cfg.parsed_cidrs();
        let v4: HashSet<(u32, [u8; 4])> = cidrs
            .iter()
            .filter_map(|c| match c.addr {
                IpAddr::V4(a) => Some((u32::from(c.prefix), a.octets())),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: HashSet<(u32, [u8; 16])> = cidrs
            .iter()
            .filter_map(|c| match c.addr {
                IpAddr::V6(a) => Some((u32::from(c.prefix), a.octets())),
                IpAddr::V4(_) => None,
            })
            .collect();
        sync_trie(self.map("CIDR4")?, &v4)?;
        sync_trie(self.map("CIDR6")?, &v6)?;
        let mut ports =
            BpfHashMap::<&mut MapData, u16, u8>::try_from(self.map("PORTS")?).map_err(|e| map_err(e, "PORTS"))?;
        let want: HashSet<u16> = cfg.ports.iter().copied().collect();
        for p in &want {
            ports.insert(p, 1, 0).map_err(|e| map_err(e, "PORTS insert"))?;
        }
        let stale: Vec<u16> = ports
            .keys()
            .filter_map(Result::ok)
            .filter(|p| !want.contains(p))
            .collect();
        for p in stale {
            let _ = ports.remove(&p);
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        let st = Settings {
            generation: self.generation,
            self_tgid: std::process::id(),
            max_capture: cfg.max_capture_bytes.min(MAX_CAPTURE),
            roles: cfg.role_mask(),
            cidr_on: u8::from(!cidrs.is_empty()),
            ports_on: u8::from(!want.is_empty()),
            _pad: 0,
            wakeup_bytes: cfg.ring_buffer_bytes / WAKEUP_FRACTION,
        };
        let mut settings =
            Array::<&mut MapData, Settings>::try_from(self.map("SETTINGS")?).map_err(|e| map_err(e, "SETTINGS"))?;
        settings.set(0, st, 0).map_err(|e| map_err(e, "SETTINGS set"))
    }

    fn map(&mut self, name: &str) -> Result<&mut aya::maps::Map, Error> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| Error::Load(format!("map {name} missing from the object")))
    }

    /// The ring buffer, taken out of the object for the reader.
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, Error> {
        let m = self
            .ebpf
            .take_map("EVENTS")
            .ok_or_else(|| Error::Load("map EVENTS missing".into()))?;
        RingBuf::try_from(m).map_err(|e| map_err(e, "EVENTS"))
    }

    pub fn stats(&self) -> KernelStats {
        let Some(m) = self.ebpf.map("STATS") else {
            return KernelStats::default();
        };
        let Ok(stats) = PerCpuArray::<&MapData, u64>::try_from(m) else {
            return KernelStats::default();
        };
        let sum = |i: u32| stats.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0);
        KernelStats {
            emitted: sum(STAT_EMITTED),
            ring_dropped: sum(STAT_RING_DROP),
            read_errors: sum(STAT_READ_ERR),
            filtered: sum(STAT_FILTERED),
            local_duplicates: sum(STAT_CONN_DUP),
            late_transfers: sum(STAT_LATE),
            h2_walked: sum(STAT_H2_WALKED),
            h2_walks_lost: sum(STAT_H2_WALK_LOST),
        }
    }
}

/// Tracepoints are attached by id, read from tracefs. Mount it when the host did not
/// (a container usually gets /sys/kernel/tracing from the host instead).
fn ensure_tracefs() -> Result<(), Error> {
    let tracing = std::path::Path::new("/sys/kernel/tracing");
    if tracing.join("events").exists() || std::path::Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let (src, dir, fs) = (c"nodev", c"/sys/kernel/tracing", c"tracefs");
    // SAFETY: NUL-terminated constant strings, no data argument.
    let r = unsafe { libc::mount(src.as_ptr(), dir.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        return Err(Error::Load(format!(
            "tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({}); \
             mount it (mount -t tracefs nodev /sys/kernel/tracing) or give the pod the host's /sys/kernel/tracing",
            std::io::Error::last_os_error()
        )));
    }
    tracing::info!("mounted tracefs at /sys/kernel/tracing");
    Ok(())
}

/// Detach and unload a socket-layer program, whatever its type.
fn unload(p: Option<&mut aya::programs::Program>) {
    match p {
        Some(aya::programs::Program::FEntry(p)) => drop(p.unload()),
        Some(aya::programs::Program::FExit(p)) => drop(p.unload()),
        Some(aya::programs::Program::KProbe(p)) => drop(p.unload()),
        _ => {}
    }
}

/// Make an LPM trie hold exactly `want`: add first, then remove what is no longer wanted,
/// so a reload never passes through an empty (= unfiltered) state.
fn sync_trie<const N: usize>(m: &mut aya::maps::Map, want: &HashSet<(u32, [u8; N])>) -> Result<(), Error>
where
    [u8; N]: aya::Pod,
{
    let mut trie = LpmTrie::<&mut MapData, [u8; N], u8>::try_from(m).map_err(|e| map_err(e, "CIDR trie"))?;
    for (prefix, addr) in want {
        trie.insert(&Key::new(*prefix, *addr), 1, 0)
            .map_err(|e| map_err(e, "CIDR insert"))?;
    }
    let stale: Vec<Key<[u8; N]>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !want.contains(&(k.prefix_len(), k.data())))
        .collect();
    for k in stale {
        let _ = trie.remove(&k);
    }
    Ok(())
}

/// LISTEN keys (IPv4 as v4-mapped IPv6, wildcard = all zero) of the sockets in state
/// LISTEN (0A) in a /proc/net/tcp{,6} table.
pub fn parse_listeners(text: &str) -> Vec<ListenKey> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (Some(local), Some(_remote), Some(state)) = (f.nth(1), f.next(), f.next()) else {
            continue;
        };
        if state != "0A" {
            continue;
        }
        let Some((addr, port)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        // Each 32-bit word is printed in host (little-endian) order.
        let words: Option<Vec<[u8; 4]>> = (0..addr.len() / 8)
            .map(|i| {
                u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16)
                    .ok()
                    .map(u32::to_le_bytes)
            })
            .collect();
        let Some(words) = words else { continue };
        let mut key = ListenKey {
            addr: [0; 16],
            port,
            family: 0,
            _pad: 0,
        };
        match words.len() {
            1 if words[0] != [0; 4] => {
                key.addr[10] = 0xff;
                key.addr[11] = 0xff;
                key.addr[12..].copy_from_slice(&words[0]);
            }
            1 => {}
            4 => {
                for (i, w) in words.iter().enumerate() {
                    key.addr[i * 4..i * 4 + 4].copy_from_slice(w);
                }
            }
            _ => continue,
        }
        out.push(key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp_listeners() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n\
   2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n";
        let keys = parse_listeners(v4);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].port, 8080);
        assert_eq!(keys[0].addr, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
        assert_eq!(keys[1].port, 80);
        assert_eq!(keys[1].addr, [0; 16]);
        let v6 = "  sl  local_address                         remote_address                        st\n\
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 0\n";
        let keys = parse_listeners(v6);
        assert_eq!(keys.len(), 1);
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(keys[0].addr, one);
        assert_eq!(keys[0].port, 8081);
    }
}
