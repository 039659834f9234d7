//! The `perisco` binary: validate, graph, run to the end of a pcap, SIGTERM drain,
//! SIGHUP / --watch-config reload, SIGUSR1 reopen.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perisco_testutil::{ChildGuard, free_port, workspace_root};

fn perisco() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perisco"));
    c.env("RUST_LOG", "info");
    c
}

fn root() -> PathBuf {
    // The binary's package is the workspace root.
    let r = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert!(r.join("fixtures").is_dir() || workspace_root().join("fixtures").is_dir());
    r
}

fn fixture(name: &str) -> String {
    root().join("fixtures").join(name).display().to_string()
}

fn validate(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pipeline.toml");
    std::fs::write(&p, text).unwrap();
    let out = perisco().arg("validate").arg("--config").arg(&p).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&p.display().to_string(), "pipeline.toml");
    (out.status.code().unwrap_or(-1), stderr)
}

/// (name, config, expected lines on stderr)
const BROKEN: &[(&str, &str, &[&str])] = &[
    (
        "unknown component type",
        "[sources.in]\ntype = \"pcapp\"\npath = \"x.pcap\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"-\"\n",
        &["pipeline.toml:2:8: component `in`: unknown component type `pcapp`"],
    ),
    (
        "unknown value of an option's enum",
        "[sources.in]\ntype = \"ebpf_socket\"\nhook = \"fentri\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"-\"\n",
        &["pipeline.toml:3:8: component `in`: unknown variant `fentri`, expected one of"],
    ),
    (
        "unknown key",
        "[sources.in]\ntype = \"pcap\"\npath = \"x.pcap\"\nloops = true\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"-\"\n",
        &["pipeline.toml:4:1: component `in`: unknown field `loops`"],
    ),
    (
        "unknown input and a sink as input",
        "[sources.in]\ntype = \"pcap\"\npath = \"x.pcap\"\n[sinks.a]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"-\"\n[sinks.b]\ntype = \"file\"\ninputs = [\"a\", \"nope\"]\npath = \"-\"\n",
        &[
            "pipeline.toml:10:11: `b` takes input from `a`, which is a sink",
            "pipeline.toml:10:16: `b` takes input from unknown component `nope`",
        ],
    ),
    (
        "empty file sink path",
        "[sources.in]\ntype = \"pcap\"\npath = \"x.pcap\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"\"\n",
        &["pipeline.toml:7:8: component `out`: `path`: must not be empty"],
    ),
    (
        "toml syntax",
        "[sources.in]\ntype = \"pcap\"\npath = \n",
        &["pipeline.toml:3:8: "],
    ),
    (
        "unset variable",
        "[sources.in]\ntype = \"pcap\"\npath = \"${PERISCO_TEST_UNSET_VAR}\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"-\"\n",
        &["pipeline.toml:3:9: environment variable `PERISCO_TEST_UNSET_VAR` is not set"],
    ),
];

#[test]
fn validate_reports_every_error_with_its_position() {
    let mut failures = Vec::new();
    for (name, text, expected) in BROKEN {
        let (code, stderr) = validate(text);
        if code != 78 {
            failures.push(format!("{name}: exit {code}, stderr:\n{stderr}"));
        }
        for e in *expected {
            if !stderr.lines().any(|l| l.starts_with(e)) {
                failures.push(format!("{name}: missing `{e}` in:\n{stderr}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_config_example_validates() {
    let dir = root().join("config-examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            // Examples name their servers through variables with defaults; files they read exist.
            let out = perisco().arg("validate").arg("--config").arg(&p).output().unwrap();
            assert!(
                out.status.success(),
                "{}: {}{}",
                p.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no examples in {}", dir.display());
    // The built-in default pipeline too.
    let out = perisco().arg("validate").output().unwrap();
    assert!(
        out.status.success(),
        "default pipeline: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn graph_prints_dot() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        format!(
            "[sources.in]\ntype = \"pcap\"\npath = \"{}\"\n[sinks.a]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"-\"\n",
            fixture("http1-curl.pcapng")
        ),
    )
    .unwrap();
    let out = perisco().arg("graph").arg("--config").arg(&p).output().unwrap();
    assert!(out.status.success());
    let dot = String::from_utf8_lossy(&out.stdout);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("\"in\" -> \"a\";"), "{dot}");
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0)
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn assert_all_json(p: &Path) {
    let text = std::fs::read_to_string(p).unwrap();
    for (i, l) in text.lines().enumerate() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{}:{}: {e}: {l}", p.display(), i + 1));
    }
}

#[test]
fn threads_must_be_at_least_one() {
    let out = perisco().args(["--threads", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--threads"), "{err}");
}

#[test]
fn a_finite_pcap_run_ends_by_itself_after_draining() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let cfg = write_config(
        dir.path(),
        "p.toml",
        &format!(
            "[sources.in]\ntype = \"pcap\"\npath = \"{}\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"{}\"\n",
            fixture("http1-curl.pcapng"),
            out.display()
        ),
    );
    let mut child = ChildGuard::spawn(perisco().arg("--config").arg(&cfg).stderr(Stdio::null())).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || child.0.try_wait().unwrap().is_some()),
        "did not exit"
    );
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
    let n = lines(&out);
    assert!(n > 10, "only {n} lines");
    assert_all_json(&out);
    // A second run, on one worker thread, appends the same number of lines.
    let mut child = ChildGuard::spawn(
        perisco()
            .args(["--threads", "1", "--config"])
            .arg(&cfg)
            .stderr(Stdio::null()),
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(60), || child
        .0
        .try_wait()
        .unwrap()
        .is_some()));
    assert_eq!(lines(&out), 2 * n);
}

fn looping(pcap: &str, sink_path: &Path, port: u16) -> String {
    format!(
        "[api]\naddress = \"127.0.0.1:{port}\"\n[sources.in]\ntype = \"pcap\"\npath = \"{pcap}\"\nloop = true\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"{}\"\n",
        sink_path.display()
    )
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        "p.toml",
        &looping(&fixture("http1-curl.pcapng"), &out, port),
    );
    let mut child = ChildGuard::spawn(perisco().arg("--config").arg(&cfg).stderr(Stdio::null())).unwrap();
    assert!(wait_until(Duration::from_secs(30), || lines(&out) > 1000), "no output");
    let metrics = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("perisco_component_sent_events_total{component_id=\"in\""),
        "{metrics}"
    );
    child.signal("TERM");
    assert!(
        wait_until(Duration::from_secs(30), || child.0.try_wait().unwrap().is_some()),
        "did not stop"
    );
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
    // Drained: every line complete.
    assert_all_json(&out);
}

#[test]
fn sighup_reload_swaps_a_sink_and_rejects_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let port = free_port();
    let pcap = fixture("http1-curl.pcapng");
    let cfg = write_config(dir.path(), "p.toml", &looping(&pcap, &a, port));
    let mut child = ChildGuard::spawn(perisco().arg("--config").arg(&cfg).stderr(Stdio::null())).unwrap();
    assert!(wait_until(Duration::from_secs(30), || lines(&a) > 100));
    // Swap the sink's file.
    write_config(dir.path(), "p.toml", &looping(&pcap, &b, port));
    child.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(30), || lines(&b) > 100),
        "new sink got nothing"
    );
    let a_after = lines(&a);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&a), a_after, "old sink still written after the swap");
    // An invalid config is rejected; the pipeline keeps running.
    std::fs::write(&cfg, "[sources.in]\ntype = \"nope\"\n").unwrap();
    child.signal("HUP");
    let before = lines(&b);
    assert!(
        wait_until(Duration::from_secs(30), || lines(&b) > before + 100),
        "stopped after a bad reload"
    );
    let health = http_get(port, "/health").unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("perisco_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("perisco_config_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    child.signal("TERM");
    assert!(wait_until(Duration::from_secs(30), || child
        .0
        .try_wait()
        .unwrap()
        .is_some()));
    assert_all_json(&a);
    assert_all_json(&b);
}

#[test]
fn watch_config_reloads_on_file_change_and_sigusr1_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let port = free_port();
    let pcap = fixture("http1-curl.pcapng");
    let cfg = write_config(dir.path(), "p.toml", &looping(&pcap, &a, port));
    let mut child = ChildGuard::spawn(
        perisco()
            .arg("--config")
            .arg(&cfg)
            .arg("--watch-config")
            .stderr(Stdio::null()),
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(30), || lines(&a) > 100));
    // logrotate: move the file away, SIGUSR1, a new file appears at the path.
    let rotated = dir.path().join("a.json.1");
    std::fs::rename(&a, &rotated).unwrap();
    child.signal("USR1");
    assert!(wait_until(Duration::from_secs(30), || lines(&a) > 10), "not reopened");
    // A ConfigMap-style change without a signal.
    write_config(dir.path(), "p.toml", &looping(&pcap, &b, port));
    assert!(
        wait_until(Duration::from_secs(30), || lines(&b) > 10),
        "file change not picked up"
    );
    child.signal("TERM");
    assert!(wait_until(Duration::from_secs(30), || child
        .0
        .try_wait()
        .unwrap()
        .is_some()));
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}
