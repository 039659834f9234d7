//! Helpers shared by perisco's tests.
//!
//! Tests that need root, a command or a server call [`require`] first. When the
//! prerequisite is missing the test prints a loud `SKIPPED` line and returns early —
//! unless `PERISCO_REQUIRE_ALL=1` (set by the test command and CI), where a missing
//! prerequisite fails the test, so a skip is never counted as a pass in CI.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// What a test needs.
pub enum Need<'a> {
    /// A command on PATH.
    Command(&'a str),
    /// Running as root (eBPF).
    Root,
    /// A module `python3` can import.
    PythonModule(&'a str),
}

/// True when every need is met. Otherwise: a loud skip, or a panic under
/// `PERISCO_REQUIRE_ALL=1`.
pub fn require(test: &str, needs: &[Need<'_>]) -> bool {
    let mut missing = Vec::new();
    for n in needs {
        match n {
            Need::Command(c) => {
                if which(c).is_none() {
                    missing.push(format!("command `{c}` not found (run scripts/setup.sh)"));
                }
            }
            Need::PythonModule(m) => {
                let ok = Command::new("python3")
                    .args(["-c", &format!("import {m}")])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    missing.push(format!("python3 module `{m}` not found (run scripts/setup.sh)"));
                }
            }
            Need::Root => {
                if !is_root() {
                    missing.push("root (CAP_BPF + CAP_PERFMON) is required".to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    if std::env::var("PERISCO_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{test}: prerequisite missing under PERISCO_REQUIRE_ALL=1: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Full path of a command on PATH.
pub fn which(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Path::new(cmd).is_file().then(|| PathBuf::from(cmd));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| p.is_file())
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Wait until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        cmd.spawn().map(ChildGuard)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Send a signal (e.g. libc::SIGTERM = 15) through `kill(1)`.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.0.id().to_string())
            .status();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workspace root (for fixtures and scripts).
pub fn workspace_root() -> PathBuf {
    let mut p = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    p.pop();
    p
}

/// Path of the `perisco` binary built for tests (`target/<profile>/perisco`).
pub fn perisco_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PERISCO_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let exe = std::env::current_exe().ok();
    // Tests run from target/<profile>/deps/<test>; the binary is in target/<profile>.
    if let Some(deps) = exe.as_deref().and_then(Path::parent)
        && let Some(profile) = deps.parent()
        && profile.join("perisco").is_file()
    {
        return profile.join("perisco");
    }
    target.join("debug").join("perisco")
}

/// Start the Kubernetes API emulator (kmock, PyPI, wrapped by testutil/kmock_server.py to add
/// the resourceVersions and list kinds kube's watchers need) on `port`, and wait until it
/// listens. Callers first `require(.., &[Need::PythonModule("kmock")])`.
pub fn start_kmock(port: u16) -> ChildGuard {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kmock_server.py");
    let child = ChildGuard::spawn(
        Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit()),
    )
    .expect("start kmock_server.py");
    assert!(
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(90)),
        "kmock did not listen on {port}"
    );
    child
}

/// A kubeconfig in `dir` pointing at a kmock on `port` (no auth).
pub fn write_kmock_kubeconfig(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kmock\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         users:\n- name: test\n  user: {{}}\ncontexts:\n- name: kmock\n  context:\n    cluster: kmock\n    user: test\n\
         current-context: kmock\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}
