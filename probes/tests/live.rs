//! Live capture tests: real servers and clients on loopback, the `ebpf_socket` source in a
//! running topology. Need root (CAP_BPF + CAP_PERFMON); skipped loudly without it.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use perisco_engine::event::{Direction, Role, SocketData, SocketEventKind};
use perisco_probes::loader::Probe;
use perisco_probes::{EbpfSocketConfig, Hook};
use perisco_testutil::{ChildGuard, Need, free_port, require, wait_for_port};

fn python_http_server(dir: &Path, bind: &str, port: u16) -> ChildGuard {
    let child = ChildGuard::spawn(
        Command::new(PY)
            .args(["-m", "http.server", &port.to_string(), "--bind", bind])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("python3 http.server");
    let addr: SocketAddr = format!("{bind}:{port}").parse().unwrap();
    assert!(wait_for_port(addr, Duration::from_secs(10)), "http.server on {addr}");
    child
}

fn curl(url: &str) -> Vec<u8> {
    run(Command::new("curl").args(["-sS", "--max-time", "10", url]))
}

fn conns_with(ev: &[SocketData], pred: impl Fn(&SocketData) -> bool) -> Vec<u64> {
    let mut ids: Vec<u64> = ev.iter().filter(|e| pred(e)).map(|e| e.conn_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Every connection has exactly one Open first and one Close last.
fn assert_lifecycle(ev: &[SocketData], conn: u64) {
    let kinds: Vec<_> = ev.iter().filter(|e| e.conn_id == conn).map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&SocketEventKind::Open), "conn {conn}: {kinds:?}");
    assert_eq!(kinds.last(), Some(&SocketEventKind::Close), "conn {conn}: {kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == SocketEventKind::Open).count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == SocketEventKind::Close).count(), 1);
}

#[test]
fn python_http_server_exchanges_are_captured_once_from_the_server() {
    if !require(
        "python_http_server_exchanges_are_captured_once_from_the_server",
        &[Need::Root, Need::Command("curl")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let body: String = (0..100).map(|i| format!("line {i} of the body\n")).collect();
    std::fs::write(dir.path().join("hello.txt"), &body).unwrap();
    let port = free_port();
    let cap = Capture::start("py", &format!("ports = [{port}]"));
    let server = python_http_server(dir.path(), "127.0.0.1", port);
    for _ in 0..3 {
        assert_eq!(curl(&format!("http://127.0.0.1:{port}/hello.txt")), body.as_bytes());
    }
    cap.wait_for("3 closed connections", |ev| closed_data_conns(ev) >= 3);
    let ev = cap.stop();
    // (wait_for_port's probe connection has no data)
    let conns = conns_with(&ev, |e| e.kind == SocketEventKind::Data);
    if conns.len() != 3 {
        dump(&ev);
    }
    assert_eq!(conns.len(), 3, "one connection per curl, server side only");
    for &c in &conns {
        assert_lifecycle(&ev, c);
        let req = stream(&ev, c, Direction::Ingress);
        let resp = stream(&ev, c, Direction::Egress);
        assert!(
            req.starts_with(b"GET /hello.txt HTTP/1.1\r\n"),
            "{}",
            String::from_utf8_lossy(&req)
        );
        assert!(
            resp.starts_with(b"HTTP/1.0 200 OK\r\n"),
            "{}",
            String::from_utf8_lossy(&resp)
        );
        assert!(
            resp.ends_with(body.as_bytes()),
            "whole body captured (max 4096 per message, body {} bytes)",
            body.len()
        );
    }
    for e in &ev {
        assert_eq!(e.process.pid, server.id(), "pid of the server: {e:?}");
        assert_eq!(e.role, Role::Server);
        assert_eq!(e.local.port(), port);
        assert_eq!(e.local.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(e.peer.port(), port);
        assert!(!e.truncated());
    }
    assert!(
        ev.iter()
            .any(|e| e.process.comm.as_deref().is_some_and(|c| c.starts_with("python")))
    );
}

/// A network namespace for one test, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("perisco-{tag}-{}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        run(Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]));
        Netns(name)
    }

    fn exec(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(argv);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A server that listened before the probe attached, in another network namespace (a
/// pod's, when perisco restarts): perisco's /proc/net/tcp does not list it, so its role
/// cannot be inferred from listeners; its connections are still the server side.
#[test]
fn servers_listening_before_the_probe_in_another_netns_are_captured() {
    let name = "servers_listening_before_the_probe_in_another_netns_are_captured";
    if !require(name, &[Need::Root, Need::Command("curl"), Need::Command("ip")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pod.txt"), "in a pod\n").unwrap();
    let ns = Netns::new("pod");
    let port = free_port();
    let server = ChildGuard::spawn(
        ns.exec(&[PY, "-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/pod.txt");
    let get = || {
        run(&mut ns.exec(&[
            "curl",
            "-sf",
            "--retry",
            "20",
            "--retry-connrefused",
            "--retry-delay",
            "1",
            &url,
        ]))
    };
    assert_eq!(get(), b"in a pod\n");
    let cap = Capture::start("netns", &format!("ports = [{port}]"));
    for _ in 0..2 {
        assert_eq!(get(), b"in a pod\n");
    }
    cap.wait_for("2 closed connections", |ev| closed_data_conns(ev) >= 2);
    let ev = cap.stop();
    let conns = conns_with(&ev, |e| e.kind == SocketEventKind::Data);
    if conns.len() != 2 {
        dump(&ev);
    }
    assert_eq!(conns.len(), 2, "both exchanges, from the server side");
    for &c in &conns {
        assert_lifecycle(&ev, c);
        assert!(stream(&ev, c, Direction::Ingress).starts_with(b"GET /pod.txt HTTP/1.1\r\n"));
    }
    for e in &ev {
        assert_eq!(e.role, Role::Server, "{e:?}");
        assert_eq!(e.process.pid, server.id(), "{e:?}");
        assert_eq!(e.local.port(), port);
    }
}

fn nginx(dir: &Path, port: u16, sendfile: bool) -> ChildGuard {
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off; sendfile {sf}; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n\
           fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
           server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n",
        d = dir.display(),
        sf = if sendfile { "on" } else { "off" },
    );
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = ChildGuard::spawn(
        Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .stderr(Stdio::null()),
    )
    .expect("nginx");
    assert!(
        wait_for_port(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(10)),
        "nginx up"
    );
    child
}

fn nginx_case(name: &str, sendfile: bool) {
    if !require(name, &[Need::Root, Need::Command("nginx"), Need::Command("curl")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    let big: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(dir.path().join("www/big.txt"), &big).unwrap();
    std::fs::write(dir.path().join("www/small.txt"), b"small body\n").unwrap();
    let port = free_port();
    let cap = Capture::start(name, &format!("ports = [{port}]\nmax_capture_bytes = 4096"));
    let server = nginx(dir.path(), port, sendfile);
    assert_eq!(curl(&format!("http://127.0.0.1:{port}/big.txt")), big);
    assert_eq!(curl(&format!("http://127.0.0.1:{port}/small.txt")), b"small body\n");
    cap.wait_for("2 closed connections", |ev| closed_data_conns(ev) >= 2);
    let ev = cap.stop();
    let conns = conns_with(&ev, |e| e.kind == SocketEventKind::Data);
    assert_eq!(conns.len(), 2);
    for e in &ev {
        assert_eq!(e.process.pid, server.id());
        assert_eq!((e.role, e.local.port()), (Role::Server, port));
    }
    let big_conn = conns_with(&ev, |e| contains(&e.data, b"GET /big.txt"))[0];
    let small_conn = conns_with(&ev, |e| contains(&e.data, b"GET /small.txt"))[0];
    assert_lifecycle(&ev, big_conn);
    assert_lifecycle(&ev, small_conn);
    let egress = |c| {
        ev.iter()
            .filter(move |e| e.conn_id == c && e.direction == Direction::Egress)
            .cloned()
            .collect::<Vec<_>>()
    };
    let small_resp = stream(&ev, small_conn, Direction::Egress);
    assert!(small_resp.starts_with(b"HTTP/1.1 200 OK\r\n"));
    if sendfile {
        // Headers are written from user memory; the file body goes through sendfile(2),
        // which the syscall hooks report as a gap of its length.
        for c in [big_conn, small_conn] {
            let gaps: u64 = egress(c)
                .iter()
                .filter(|e| e.kind == SocketEventKind::Gap)
                .map(|e| u64::from(e.len))
                .sum();
            let want = if c == big_conn { big.len() } else { 11 } as u64;
            assert_eq!(gaps, want, "sendfile bytes reported as a gap");
        }
        assert!(!contains(&stream(&ev, big_conn, Direction::Egress), &big[..100]));
    } else {
        let data: Vec<SocketData> = egress(big_conn)
            .into_iter()
            .filter(|e| e.kind == SocketEventKind::Data)
            .collect();
        let total: u64 = data.iter().map(|e| u64::from(e.len)).sum();
        assert!(total >= big.len() as u64, "true lengths cover the body: {total}");
        assert!(
            data.iter().any(|e| e.truncated() && e.data.len() == 4096),
            "a message longer than 4096 is truncated"
        );
        assert!(data.iter().all(|e| e.data.len() <= 4096));
        assert!(small_resp.ends_with(b"small body\n"));
    }
}

#[test]
fn nginx_with_sendfile_off_is_captured_and_truncated_explicitly() {
    nginx_case("nginx_with_sendfile_off_is_captured_and_truncated_explicitly", false);
}

#[test]
fn nginx_with_sendfile_on_reports_the_body_as_a_gap() {
    nginx_case("nginx_with_sendfile_on_reports_the_body_as_a_gap", true);
}

#[test]
fn large_messages_are_captured_up_to_16k_in_chunks() {
    if !require(
        "large_messages_are_captured_up_to_16k_in_chunks",
        &[Need::Root, Need::Command("curl")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..50_000u32).map(|i| b'A' + (i % 23) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &body).unwrap();
    let port = free_port();
    let cap = Capture::start("chunks", &format!("ports = [{port}]\nmax_capture_bytes = 16384"));
    let _server = python_http_server(dir.path(), "127.0.0.1", port);
    assert_eq!(curl(&format!("http://127.0.0.1:{port}/big.bin")), body);
    std::fs::write(dir.path().join("mid.bin"), &body[..20_000]).unwrap();
    assert_eq!(curl(&format!("http://127.0.0.1:{port}/mid.bin")), &body[..20_000]);
    cap.wait_for("close", |ev| closed_data_conns(ev) >= 2);
    let ev = cap.stop();
    // http.server sends the file with one sendall (a 50 kB write): captured 16 KiB of it.
    let m = ev
        .iter()
        .find(|e| e.direction == Direction::Egress && e.kind == SocketEventKind::Data && e.len as usize == body.len())
        .unwrap_or_else(|| {
            dump(&ev);
            panic!("no 50 kB write")
        });
    assert_eq!(m.data.len(), 16384);
    assert!(m.truncated());
    assert_eq!(&m.data[..], &body[..16384]);
    // A write under three times the capture: still exactly the first 16 KiB.
    let m = ev
        .iter()
        .find(|e| e.direction == Direction::Egress && e.kind == SocketEventKind::Data && e.len == 20_000)
        .unwrap_or_else(|| {
            dump(&ev);
            panic!("no 20 kB write")
        });
    assert_eq!(m.data.len(), 16384);
    assert_eq!(&m.data[..], &body[..16384]);
}

#[test]
fn ports_and_cidrs_filter_in_the_kernel_and_reload_in_place() {
    if !require(
        "ports_and_cidrs_filter_in_the_kernel_and_reload_in_place",
        &[Need::Root, Need::Command("curl")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"alpha\n").unwrap();
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let _s1 = python_http_server(dir.path(), "127.0.0.1", p1);
    let _s2 = python_http_server(dir.path(), "127.0.0.1", p2);
    let _s3 = python_http_server(dir.path(), "127.0.0.2", p3);
    let get = |ip: &str, p: u16, tag: &str| curl(&format!("http://{ip}:{p}/a.txt?{tag}"));
    let mut cap = Capture::start(
        "filters",
        &format!("ports = [{p1}, {p3}]\ncidrs = [\"127.0.0.2/32\", \"127.0.0.1/32\"]"),
    );
    get("127.0.0.1", p1, "one");
    get("127.0.0.1", p2, "two");
    get("127.0.0.2", p3, "three");
    cap.wait_for("two exchanges", |ev| closed_data_conns(ev) >= 2);
    // Reload: only 127.0.0.2, only p3 and p2. The probe stays attached.
    cap.reload(&format!("ports = [{p2}, {p3}]\ncidrs = [\"127.0.0.2/32\"]"));
    get("127.0.0.1", p1, "four");
    get("127.0.0.1", p2, "five");
    get("127.0.0.2", p3, "six");
    cap.wait_for("the exchange after reload", |ev| {
        ev.iter().any(|e| contains(&e.data, b"?six"))
    });
    std::thread::sleep(Duration::from_millis(300));
    let attached = cap.gauge("perisco_ebpf_attached");
    let ev = cap.stop();
    assert_eq!(attached, 1, "never detached by the reload");
    let seen = |tag: &str| {
        ev.iter()
            .any(|e| contains(&e.data, format!("GET /a.txt?{tag} ").as_bytes()))
    };
    assert!(seen("one") && seen("three") && seen("six"), "allowed traffic captured");
    assert!(!seen("two"), "port outside `ports`");
    assert!(!seen("four"), "address outside `cidrs` after reload");
    assert!(!seen("five"), "127.0.0.1 outside `cidrs` after reload");
    assert!(ev.iter().all(|e| e.local.port() != p2), "nothing at all from port {p2}");
}

#[test]
fn client_role_is_opt_in_and_local_exchanges_are_reported_once() {
    if !require(
        "client_role_is_opt_in_and_local_exchanges_are_reported_once",
        &[Need::Root, Need::Command("curl")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"alpha\n").unwrap();
    let port = free_port();
    let _server = python_http_server(dir.path(), "127.0.0.1", port);
    let cap = Capture::start("roles", "roles = [\"server\", \"client\"]");
    // A server no probe sees (this process is never traced, and it starts listening after
    // the probe attached): curl's side is the only one, reported as a client.
    let outside = TcpListener::bind("127.0.0.1:0").unwrap();
    let outside_port = outside.local_addr().unwrap().port();
    let responder = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = outside.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n")
            .unwrap();
    });
    assert_eq!(curl(&format!("http://127.0.0.1:{outside_port}/outside")), b"hi\n");
    responder.join().unwrap();
    assert_eq!(curl(&format!("http://127.0.0.1:{port}/a.txt?local")), b"alpha\n");
    cap.wait_for("both exchanges closed", |ev| {
        ev.iter().any(|e| contains(&e.data, b"GET /outside")) && closed_data_conns(ev) >= 2
    });
    let registry = cap.registry.clone();
    let ev = cap.stop();
    let outside_conns = conns_with(&ev, |e| e.peer.port() == outside_port);
    assert_eq!(outside_conns.len(), 1);
    for e in ev.iter().filter(|e| e.conn_id == outside_conns[0]) {
        assert_eq!(e.role, Role::Client);
        assert_eq!(e.process.comm.as_deref(), Some("curl"));
    }
    let req = stream(&ev, outside_conns[0], Direction::Egress);
    assert!(req.starts_with(b"GET /outside HTTP/1.1"), "client requests are egress");
    assert_eq!(
        stream(&ev, outside_conns[0], Direction::Ingress),
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n"
    );
    // The local exchange: both ends traced, reported once, from the server.
    let local = conns_with(&ev, |e| contains(&e.data, b"GET /a.txt?local"));
    assert_eq!(local.len(), 1, "reported once");
    assert!(
        ev.iter()
            .filter(|e| e.conn_id == local[0])
            .all(|e| e.role == Role::Server)
    );
    let dups = registry.counter_value("perisco_ebpf_local_duplicates_total", &[("component_id", "cap")]);
    assert!(
        dups.unwrap_or(0) >= 1,
        "curl's side of the local exchange counted as a duplicate: {dups:?}"
    );
}

#[test]
fn grpc_and_h2c_servers_are_captured() {
    if !require(
        "grpc_and_h2c_servers_are_captured",
        &[Need::Root, Need::Command("nghttpd"), Need::Command("nghttp")],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.txt"), b"served over h2c\n").unwrap();
    let (h2_port, grpc_port) = (free_port(), free_port());
    let cap = Capture::start("h2", &format!("ports = [{h2_port}, {grpc_port}]"));
    let h2 = ChildGuard::spawn(
        Command::new("nghttpd")
            .args(["--no-tls", "-d"])
            .arg(dir.path())
            .arg(h2_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    assert!(wait_for_port(
        SocketAddr::from((Ipv4Addr::LOCALHOST, h2_port)),
        Duration::from_secs(10)
    ));
    assert_eq!(
        run(Command::new("nghttp").arg(format!("http://127.0.0.1:{h2_port}/index.txt"))),
        b"served over h2c\n"
    );

    let (script, grpc) = grpc_echo_server(dir.path(), grpc_port);
    let reply = run(Command::new(PY)
        .arg(&script)
        .arg("call")
        .arg(grpc_port.to_string())
        .arg("ping-from-client-42"));
    assert_eq!(reply, b"echo:ping-from-client-42\n");
    cap.wait_for("grpc reply captured", |ev| {
        ev.iter().any(|e| contains(&e.data, b"echo:ping-from-client-42"))
    });
    let ev = cap.stop();
    let h2_in: Vec<u8> = ev
        .iter()
        .filter(|e| e.local.port() == h2_port && e.direction == Direction::Ingress)
        .flat_map(|e| e.data.to_vec())
        .collect();
    let h2_out: Vec<u8> = ev
        .iter()
        .filter(|e| e.local.port() == h2_port && e.direction == Direction::Egress)
        .flat_map(|e| e.data.to_vec())
        .collect();
    assert!(
        h2_in.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        "h2c preface at the server"
    );
    assert!(contains(&h2_out, b"served over h2c\n"), "DATA frame payload");
    assert!(
        ev.iter()
            .filter(|e| e.local.port() == h2_port)
            .all(|e| e.process.pid == h2.id() && e.role == Role::Server)
    );
    let g_in: Vec<u8> = ev
        .iter()
        .filter(|e| e.local.port() == grpc_port && e.direction == Direction::Ingress)
        .flat_map(|e| e.data.to_vec())
        .collect();
    assert!(g_in.starts_with(b"PRI * HTTP/2.0"), "grpc preface");
    assert!(contains(&g_in, b"ping-from-client-42"), "request message");
    assert!(
        ev.iter()
            .filter(|e| e.local.port() == grpc_port)
            .all(|e| e.process.pid == grpc.id() && e.role == Role::Server)
    );
}

/// A gRPC echo server/client with raw-bytes (de)serialisers: no generated code needed.

#[test]
fn hook_selection_falls_back_to_tracepoints_with_a_reason() {
    if !require("hook_selection_falls_back_to_tracepoints_with_a_reason", &[Need::Root]) {
        return;
    }
    let auto = Probe::load(&EbpfSocketConfig::default()).expect("auto loads");
    eprintln!("auto: {:?}", auto.active);
    let no_kprobes = !Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if auto.active.hook == Hook::Tracepoint {
        assert!(auto.active.why.contains("fentry unavailable"), "{:?}", auto.active);
        assert!(auto.active.why.contains("kprobe unavailable"), "{:?}", auto.active);
    }
    drop(auto);
    let tp = Probe::load(&EbpfSocketConfig {
        hook: Hook::Tracepoint,
        ..Default::default()
    })
    .expect("tracepoints load");
    assert_eq!(tp.active.hook, Hook::Tracepoint);
    // 6.3+ on x86-64 has the socket tracepoints; said either way.
    assert!(tp.active.why.contains("socket tracepoints"), "{:?}", tp.active);
    drop(tp);
    let sys = Probe::load(&EbpfSocketConfig {
        hook: Hook::SyscallTracepoint,
        ..Default::default()
    })
    .expect("syscall tracepoints load");
    assert_eq!(sys.active.hook, Hook::SyscallTracepoint);
    assert!(sys.active.why.contains("syscall tracepoints"), "{:?}", sys.active);
    drop(sys);
    // This kernel refuses tracing programs and has no kprobes (see docs/ebpf.md): asking
    // for them explicitly must fail with a reason, not crash or attach half.
    for hook in [Hook::Fentry, Hook::Kprobe] {
        match Probe::load(&EbpfSocketConfig {
            hook,
            ..Default::default()
        }) {
            Ok(p) => eprintln!("{hook:?} loaded on this kernel: {:?}", p.active),
            Err(e) => {
                let msg = e.to_string();
                eprintln!("{hook:?}: {msg}");
                let want = if hook == Hook::Fentry { "fentry" } else { "kprobe" };
                assert!(msg.contains(want), "{msg}");
                if hook == Hook::Kprobe && no_kprobes {
                    assert!(msg.contains("CONFIG_KPROBES"), "{msg}");
                }
            }
        }
    }
}

/// sendmsg(2) with many iovec segments: the segments are captured in order, and those
/// beyond what the kernel walks (16 segments) make the message truncated, never misplaced.
/// The request is peeked (MSG_PEEK) before it is read: captured once.
#[test]
fn sendmsg_iovecs_are_captured_in_order() {
    if !require("sendmsg_iovecs_are_captured_in_order", &[Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("iov.py");
    std::fs::write(&script, IOV_SERVER).unwrap();
    let port = free_port();
    let cap = Capture::start("iov", &format!("ports = [{port}]"));
    let _server = ChildGuard::spawn(Command::new(PY).arg(&script).arg(port.to_string())).unwrap();
    assert!(wait_for_port(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(10)
    ));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"go").unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let parts = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| vec![b'A' + i as u8; 10 * (i + 1)]).collect() };
    let (six, twelve) = (parts(6), parts(20));
    assert_eq!(got, [six.clone(), twelve.clone()].concat());
    cap.wait_for("both messages", |ev| {
        ev.iter()
            .filter(|e| e.kind == SocketEventKind::Data && e.direction == Direction::Egress)
            .count()
            >= 2
    });
    let ev = cap.stop();
    let out: Vec<&SocketData> = ev
        .iter()
        .filter(|e| e.kind == SocketEventKind::Data && e.direction == Direction::Egress)
        .collect();
    let ingress: Vec<u8> = ev
        .iter()
        .filter(|e| e.kind == SocketEventKind::Data && e.direction == Direction::Ingress)
        .flat_map(|e| e.data.to_vec())
        .collect();
    assert_eq!(
        ingress, b"go",
        "a MSG_PEEK receive is not captured (the bytes are read again)"
    );
    assert_eq!(&out[0].data[..], &six[..]);
    assert_eq!(out[0].len as usize, six.len());
    assert_eq!(out[1].len as usize, twelve.len());
    assert!(
        out[1].data.len() < twelve.len() && twelve.starts_with(&out[1].data),
        "a prefix of the 20 segments (16 walked)"
    );
}

const IOV_SERVER: &str = r#"
import socket, sys, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(5)
while True:
    c, _ = l.accept()
    if c.recv(100, socket.MSG_PEEK) != b"go" or c.recv(100) != b"go":
        c.close()
        continue
    parts = lambda n: [bytes([65 + i]) * (10 * (i + 1)) for i in range(n)]
    c.sendmsg(parts(6))
    time.sleep(0.2)
    c.sendmsg(parts(20))
    c.close()
"#;

/// A server that reads after its connection closed (shutdown after the peer's FIN, as
/// Apache's lingering close does) must not make that socket look like a new connection: its
/// port is unbound by then, and an entry left for it would be inherited by whichever
/// connection reuses the `struct sock` next (which then vanished from the capture).
#[test]
fn a_read_after_the_connection_closed_is_not_a_new_connection() {
    if !require(
        "a_read_after_the_connection_closed_is_not_a_new_connection",
        &[Need::Root],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("late.py");
    std::fs::write(&script, LATE_READ).unwrap();
    let (server_port, client_port) = (free_port(), free_port());
    // Both roles and both ports: a socket mistaken for a new client connection would pass.
    let cap = Capture::start(
        "late_read",
        &format!("roles = [\"server\", \"client\"]\nports = [{server_port}, {client_port}]"),
    );
    let out = run(Command::new(PY)
        .arg(&script)
        .arg(server_port.to_string())
        .arg(client_port.to_string()));
    let read_late: usize = String::from_utf8_lossy(&out).trim().parse().unwrap();
    assert!(read_late > 0, "the server read the request after its connection closed");
    cap.wait_for("the server's Close", |ev| {
        ev.iter()
            .any(|e| e.kind == SocketEventKind::Close && e.local.port() == server_port)
    });
    // The syscall tracepoints close a connection at close(2), so there the late read is
    // still the connection's; the socket tracepoints close it at TCP_CLOSE, and count it.
    let attributed = |ev: &[SocketData]| {
        ev.iter()
            .any(|e| e.local.port() == server_port && e.data.starts_with(b"GET /late"))
    };
    let start = std::time::Instant::now();
    while !attributed(&cap.events())
        && cap.counter("perisco_ebpf_late_transfers_total") == 0
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let late_reads = cap.counter("perisco_ebpf_late_transfers_total");
    let ev = cap.stop();
    dump(&ev);
    let unbound: Vec<&SocketData> = ev.iter().filter(|e| e.local.port() == 0).collect();
    assert!(
        unbound.is_empty(),
        "events of a closed socket as a new connection: {unbound:?}"
    );
    let server = conns_with(&ev, |e| e.local.port() == server_port);
    assert_eq!(server.len(), 1, "the server's connection, once");
    assert_lifecycle(&ev, server[0]);
    assert!(
        attributed(&ev) || late_reads >= 1,
        "the read after close is the connection's or counted as late ({late_reads})"
    );
}

const LATE_READ: &str = r#"
import socket, sys, time
sp, cp = int(sys.argv[1]), int(sys.argv[2])
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", sp))
l.listen(5)
k = socket.socket()
k.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
k.bind(("127.0.0.1", cp))
k.connect(("127.0.0.1", sp))
c, _ = l.accept()
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
k.recv(100)
k.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
k.close()                      # the client's FIN
time.sleep(0.2)
c.shutdown(socket.SHUT_WR)     # ours: LAST_ACK, then CLOSE once acknowledged
time.sleep(0.2)
print(len(c.recv(4096)))       # the request, read from a socket that is closed
c.close()
"#;

// The cases above run on `auto`, which is the socket tracepoints on this kernel; kernels
// without them (before 6.3, or not x86-64) use the syscall tracepoints: the same cases again.
macro_rules! on_syscall_tracepoints {
    ($($case:ident => $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                common::on_hook("syscall_tracepoint", $case);
            }
        )*
    };
}

on_syscall_tracepoints! {
    python_http_server_exchanges_are_captured_once_from_the_server => python_http_server_exchanges_on_syscall_tracepoints,
    nginx_with_sendfile_off_is_captured_and_truncated_explicitly => nginx_with_sendfile_off_on_syscall_tracepoints,
    nginx_with_sendfile_on_reports_the_body_as_a_gap => nginx_with_sendfile_on_on_syscall_tracepoints,
    large_messages_are_captured_up_to_16k_in_chunks => large_messages_on_syscall_tracepoints,
    ports_and_cidrs_filter_in_the_kernel_and_reload_in_place => ports_and_cidrs_on_syscall_tracepoints,
    client_role_is_opt_in_and_local_exchanges_are_reported_once => client_role_on_syscall_tracepoints,
    grpc_and_h2c_servers_are_captured => grpc_and_h2c_on_syscall_tracepoints,
    sendmsg_iovecs_are_captured_in_order => sendmsg_iovecs_on_syscall_tracepoints,
    servers_listening_before_the_probe_in_another_netns_are_captured => servers_in_another_netns_on_syscall_tracepoints,
    a_read_after_the_connection_closed_is_not_a_new_connection => late_read_on_syscall_tracepoints,
}
