//! pid → process name and container id, from /proc, cached per pid.

use perisco_engine::FastMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use perisco_engine::event::ProcessInfo;

/// Entries older than this are re-read (pids are reused; a process may exec).
const TTL: Duration = Duration::from_secs(30);
/// Above this many entries, stale ones are evicted (all of them if none is stale).
const MAX_ENTRIES: usize = 8192;

pub struct ProcCache {
    entries: FastMap<u32, (Arc<ProcessInfo>, Instant)>,
    proc_root: std::path::PathBuf,
}

impl Default for ProcCache {
    fn default() -> Self {
        ProcCache {
            entries: FastMap::default(),
            proc_root: "/proc".into(),
        }
    }
}

impl ProcCache {
    /// Process info for `pid`; `comm` (the kernel's task comm) is used when /proc has no
    /// entry any more (short-lived process).
    pub fn get(&mut self, pid: u32, comm: &[u8; 16], now: Instant) -> Arc<ProcessInfo> {
        if let Some((p, at)) = self.entries.get(&pid)
            && now.duration_since(*at) < TTL
        {
            return p.clone();
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.evict(now);
        }
        let p = Arc::new(self.read(pid, comm));
        self.entries.insert(pid, (p.clone(), now));
        p
    }

    pub fn evict(&mut self, now: Instant) {
        self.entries.retain(|_, (_, at)| now.duration_since(*at) < TTL);
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn read(&self, pid: u32, comm: &[u8; 16]) -> ProcessInfo {
        let dir = self.proc_root.join(pid.to_string());
        let name = std::fs::read_to_string(dir.join("comm"))
            .ok()
            .map(|s| s.trim_end().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| {
                let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                (end > 0).then(|| String::from_utf8_lossy(&comm[..end]).into_owned())
            });
        let container_id = std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|t| container_id_from_cgroup(&t))
            .map(Arc::from);
        ProcessInfo {
            pid,
            comm: name.map(Arc::from),
            container_id,
        }
    }
}

/// The container id in a /proc/PID/cgroup file: a 64-hex-digit path segment, possibly
/// wrapped as `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `libpod-<id>.scope` (systemd driver) or bare (cgroupfs driver: `/kubepods/.../<id>`).
pub fn container_id_from_cgroup(text: &str) -> Option<String> {
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2)?;
        for seg in path.rsplit('/') {
            let s = seg.strip_suffix(".scope").unwrap_or(seg);
            let s = s.rsplit(['-', ':']).next().unwrap_or(s);
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(s.to_ascii_lowercase());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1e0c6b2f0e8a9d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d";

    #[test]
    fn finds_container_ids_of_common_runtimes() {
        for text in [
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope\n"
            ),
            format!("0::/system.slice/docker-{ID}.scope\n"),
            format!("12:pids:/kubepods/besteffort/pod0a1b/{ID}\n1:name=systemd:/kubepods/besteffort/pod0a1b/{ID}\n"),
            format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
            format!("0::/kubepods.slice/crio-{ID}.scope\n"),
        ] {
            assert_eq!(container_id_from_cgroup(&text).as_deref(), Some(ID), "{text}");
        }
    }

    #[test]
    fn host_processes_have_no_container_id() {
        assert_eq!(
            container_id_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
        assert_eq!(container_id_from_cgroup("0::/\n"), None);
        assert_eq!(container_id_from_cgroup("garbage"), None);
    }

    #[test]
    fn caches_and_falls_back_to_kernel_comm() {
        let mut c = ProcCache::default();
        let now = Instant::now();
        let me = c.get(std::process::id(), &[0; 16], now);
        assert!(me.comm.is_some());
        assert!(Arc::ptr_eq(&me, &c.get(std::process::id(), &[0; 16], now)));
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"ghost");
        let gone = c.get(u32::MAX - 1, &comm, now);
        assert_eq!(gone.comm.as_deref(), Some("ghost"));
        c.evict(now + TTL * 2);
        assert!(c.is_empty());
    }
}
