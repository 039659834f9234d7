//! End to end, as deployed: the `perisco` binary running `ebpf_socket → parse → match →
//! file` while real clients talk to real servers on loopback. Every exchange the clients
//! made must be in the output exactly once, with method, url, status, the server's pid and
//! ports. Needs root and the `perisco` binary (built by `cargo nextest run --workspace`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{PY, grpc_echo_server};
use perisco_probes::loader::walks_http2;
use perisco_testutil::{ChildGuard, Need, free_port, perisco_bin, require, wait_for_port};
use serde_json::Value;

fn up(port: u16) {
    assert!(
        wait_for_port(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(20)),
        "port {port}"
    );
}

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn metrics(api: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", api)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The `perisco` binary running `ebpf_socket (ports) → parse → match → file`, attached.
struct Agent {
    child: ChildGuard,
    out: std::path::PathBuf,
    /// The `[api]` port (`/metrics`).
    api: u16,
}

impl Agent {
    fn start(bin: &Path, dir: &Path, ports: &[u16]) -> Agent {
        let api = free_port();
        let out = dir.join("records.jsonl");
        let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        let config = format!(
            "[api]\naddress = \"127.0.0.1:{api}\"\n\n\
             [sources.capture]\ntype = \"ebpf_socket\"\nports = [{ports}]\n\n\
             [transforms.l7]\ntype = \"parse\"\ninputs = [\"capture\"]\n\n\
             [transforms.pairs]\ntype = \"match\"\ninputs = [\"l7\"]\n\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"pairs\"]\npath = \"{}\"\n",
            out.display()
        );
        std::fs::write(dir.join("pipeline.toml"), &config).unwrap();
        let child = ChildGuard::spawn(
            Command::new(bin)
                .arg("--config")
                .arg(dir.join("pipeline.toml"))
                .stdout(Stdio::null()),
        )
        .expect("perisco starts");
        let start = Instant::now();
        while !metrics(api).contains("perisco_ebpf_attached{component_id=\"capture\"} 1") {
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "perisco never attached: {}",
                metrics(api)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Agent { child, out, api }
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wait for `want` records (bounded), let anything late (duplicates) arrive, stop
    /// perisco cleanly and return everything it wrote.
    fn settle_and_stop(mut self, want: usize) -> Vec<Value> {
        let start = Instant::now();
        while self.records().len() < want && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(2));
        self.child.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.records()
    }
}

fn field(r: &Value, pointer: &str) -> Value {
    r.pointer(pointer).cloned().unwrap_or(Value::Null)
}

fn incomplete(r: &Value) -> Vec<&str> {
    r["incomplete"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn nginx_conf(dir: &Path, port: u16) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), b"<h1>nginx</h1>\n").unwrap();
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\nevents {{ }}\n\
         http {{ access_log off; sendfile off; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n\
           fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
           server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n",
        d = dir.display()
    );
    let p = dir.join("nginx.conf");
    std::fs::write(&p, conf).unwrap();
    p
}

#[test]
fn every_exchange_is_recorded_once_by_the_perisco_binary() {
    let bin = perisco_bin();
    let bin_s = bin.to_string_lossy().to_string();
    let needs = [
        Need::Root,
        Need::Command(&bin_s),
        Need::Command("nginx"),
        Need::Command("nghttpd"),
        Need::Command("curl"),
    ];
    if !require("every_exchange_is_recorded_once_by_the_perisco_binary", &needs) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("py")).unwrap();
    std::fs::write(d.join("py/a.txt"), b"alpha\n").unwrap();
    std::fs::write(d.join("index.txt"), b"h2c body\n").unwrap();
    std::fs::write(d.join("pushed.txt"), b"pushed with index.txt\n").unwrap();
    let (py_port, nginx_port, h2_port, grpc_port, quiet_port) =
        (free_port(), free_port(), free_port(), free_port(), free_port());
    let agent = Agent::start(&bin, d, &[py_port, nginx_port, h2_port, grpc_port]);

    let py = ChildGuard::spawn(
        Command::new(PY)
            .args(["-m", "http.server", &py_port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(d.join("py"))
            .stderr(Stdio::null()),
    )
    .unwrap();
    let ngx = ChildGuard::spawn(
        Command::new("nginx")
            .arg("-c")
            .arg(nginx_conf(&d.join("nginx"), nginx_port))
            .stderr(Stdio::null()),
    )
    .unwrap();
    let h2 = ChildGuard::spawn(
        // Server push: the PUSH_PROMISE is the request of a record of its own.
        Command::new("nghttpd")
            .args(["--no-tls", "-p/index.txt=/pushed.txt", "-d"])
            .arg(d)
            .arg(h2_port.to_string())
            .stdout(Stdio::null()),
    )
    .unwrap();
    let (grpc_echo, grpc) = grpc_echo_server(d, grpc_port);
    // Traffic on a port outside `ports`: must not appear.
    let _quiet = ChildGuard::spawn(
        Command::new(PY)
            .args(["-m", "http.server", &quiet_port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(d.join("py"))
            .stderr(Stdio::null()),
    )
    .unwrap();
    for p in [py_port, nginx_port, h2_port, grpc_port, quiet_port] {
        up(p);
    }

    let curl = |url: String| run_ok(Command::new("curl").args(["-sS", "-o", "/dev/null", "--max-time", "10", &url]));
    curl(format!("http://127.0.0.1:{py_port}/a.txt?n=1"));
    curl(format!("http://127.0.0.1:{py_port}/a.txt?n=2"));
    curl(format!("http://127.0.0.1:{py_port}/missing"));
    curl(format!("http://127.0.0.1:{nginx_port}/index.html"));
    curl(format!("http://127.0.0.1:{nginx_port}/nope"));
    curl(format!("http://127.0.0.1:{quiet_port}/a.txt?quiet"));
    run_ok(Command::new("nghttp").arg(format!("http://127.0.0.1:{h2_port}/index.txt")));
    assert_eq!(
        run_ok(Command::new(PY).arg(&grpc_echo).arg("call").arg(grpc_port.to_string())),
        b"echo:hello\n"
    );

    // (method, url, status, server port, server pid)
    let want: Vec<(&str, String, u64, u16, u32)> = vec![
        ("GET", "/a.txt?n=1".into(), 200, py_port, py.id()),
        ("GET", "/a.txt?n=2".into(), 200, py_port, py.id()),
        ("GET", "/missing".into(), 404, py_port, py.id()),
        ("GET", "/index.html".into(), 200, nginx_port, ngx.id()),
        ("GET", "/nope".into(), 404, nginx_port, ngx.id()),
        ("GET", "/index.txt".into(), 200, h2_port, h2.id()),
        ("GET", "/pushed.txt".into(), 200, h2_port, h2.id()),
        ("POST", "/test.Echo/Say".into(), 200, grpc_port, grpc.id()),
    ];
    let records = agent.settle_and_stop(want.len());
    for r in &records {
        eprintln!("{r}");
    }
    for (method, url, status, port, pid) in &want {
        let hits: Vec<&Value> = records
            .iter()
            .filter(|r| field(r, "/l7/request/http/url") == url.as_str() && field(r, "/l4/TCP/serverPort") == *port)
            .collect();
        assert_eq!(hits.len(), 1, "{method} {url} on {port}: exactly once");
        let r = hits[0];
        assert_eq!(field(r, "/l7/request/http/method"), *method);
        assert_eq!(field(r, "/l7/response/http/code"), *status, "{url}");
        assert_eq!(field(r, "/pid"), *pid, "{url}: pid of the server");
    }
    assert_eq!(
        records.len(),
        want.len(),
        "nothing else (no client sides, nothing from port {quiet_port})"
    );
}

/// Apache httpd with mod_http2 on h2c prior knowledge, plus HTTP/1.1 keep-alive.
fn apache(dir: &Path, port: u16) -> ChildGuard {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), b"<h1>apache</h1>\n").unwrap();
    // Larger than a capture (4 KiB) and than a DATA frame (16 KiB): responses that mod_http2
    // writes in several frames, interleaved with other streams' HEADERS.
    let big: String = (0..BIG_LINES).map(|i| format!("{i:07} perisco e2e line\n")).collect();
    std::fs::write(www.join("big.txt"), big).unwrap();
    let conf = format!(
        "ServerRoot {d}\nLoadModule mpm_worker_module /usr/lib/apache2/modules/mod_mpm_worker.so\n\
         LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so\n\
         LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so\n\
         LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so\n\
         LoadModule http2_module /usr/lib/apache2/modules/mod_http2.so\n\
         Listen 127.0.0.1:{port}\nServerName localhost\nPidFile {d}/httpd.pid\nErrorLog {d}/error.log\n\
         User nobody\nGroup nogroup\nDocumentRoot {w}\nDirectoryIndex index.html\n\
         Protocols h2c http/1.1\nH2Direct on\nEnableSendfile Off\nTypesConfig {d}/mime.types\n\
         LogFormat \"%r %>s\" exchange\nCustomLog {d}/access.log exchange\n\
         <Directory {w}>\n  Require all granted\n</Directory>\n",
        d = dir.display(),
        w = www.display()
    );
    std::fs::write(dir.join("httpd.conf"), conf).unwrap();
    // Our own types file: /etc/mime.types belongs to a package a minimal host may lack.
    std::fs::write(dir.join("mime.types"), "text/html html\ntext/plain txt\n").unwrap();
    let child = ChildGuard::spawn(
        Command::new("/usr/sbin/apache2")
            .arg("-f")
            .arg(dir.join("httpd.conf"))
            .arg("-DFOREGROUND")
            .stderr(Stdio::null()),
    )
    .expect("apache2 starts");
    up(port);
    child
}

const BIG_LINES: usize = 2000;

/// Busy h2c and HTTP/1.1 keep-alive traffic from h2load against Apache, in three runs of
/// new connections, and nghttp switching to h2c by Upgrade: every exchange is recorded
/// exactly once, from Apache's processes, and a response header the capture lost (HPACK
/// state cut with a long write) is said, not made up.
#[test]
fn apache_under_h2load_every_exchange_is_recorded_once() {
    let bin = perisco_bin();
    let bin_s = bin.to_string_lossy().to_string();
    let needs = [
        Need::Root,
        Need::Command(&bin_s),
        Need::Command("/usr/sbin/apache2"),
        Need::Command("h2load"),
        Need::Command("nghttp"),
    ];
    if !require("apache_under_h2load_every_exchange_is_recorded_once", &needs) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Apache's children run as nobody: they must reach the document root.
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = free_port();
    let agent = Agent::start(&bin, d, &[port]);
    let httpd = apache(&d.join("apache"), port);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let h2load = |args: &[&str], paths: &[&str]| {
        let mut cmd = Command::new("h2load");
        cmd.args(args).args(paths.iter().map(|p| url(p)));
        let report = String::from_utf8_lossy(&run_ok(&mut cmd)).to_string();
        assert!(report.contains(" 0 errored, 0 timeout"), "{report}");
    };
    // Multiplexed h2c: 10 streams in flight on each of 6 connections.
    h2load(&["-n", "600", "-c", "6", "-m", "10"], &["/", "/big.txt", "/missing"]);
    // New connections after those closed (a closed socket's memory is reused).
    h2load(&["-n", "100", "-c", "1"], &["/", "/missing"]);
    // HTTP/1.1 keep-alive.
    h2load(&["--h1", "-n", "200", "-c", "4"], &["/", "/missing"]);
    // h2c by Upgrade: the first request is HTTP/1.1, answered on stream 1 after the 101,
    // then 149 more multiplexed on the connection. Only where the walk runs: with prefix
    // captures 90 streams in flight can lose a response's HEADERS frame whole.
    let walked = walks_http2();
    let mut want = 900;
    if walked {
        let mut nghttp = Command::new("nghttp");
        nghttp
            .args(["-nu", "-m", "50"])
            .args(["/", "/big.txt", "/missing"].iter().map(|p| url(p)));
        run_ok(&mut nghttp);
        want += 150;
    }

    let records = agent.settle_and_stop(want);
    httpd.signal("TERM");
    let mut seen = std::collections::BTreeMap::<(String, String, u64), usize>::new();
    for r in &records {
        let key = (
            field(r, "/l7/request/http/protocol")
                .as_str()
                .unwrap_or("-")
                .to_string(),
            field(r, "/l7/request/http/url").as_str().unwrap_or("-").to_string(),
            field(r, "/l7/response/http/code").as_u64().unwrap_or(0),
        );
        *seen.entry(key).or_default() += 1;
    }
    // What Apache itself logged, one line per exchange.
    let mut logged = std::collections::BTreeMap::<(String, String, u64), usize>::new();
    let log = std::fs::read_to_string(d.join("apache/access.log")).expect("access log");
    for line in log.lines() {
        // "%r %>s": the request line as received, then the status.
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!((f.len(), f[0]), (4, "GET"), "{line}");
        let protocol = if f[2] == "HTTP/2.0" { "HTTP/2" } else { f[2] };
        *logged
            .entry((protocol.to_string(), f[1].to_string(), f[3].parse().unwrap()))
            .or_default() += 1;
    }
    // Apache logs the upgrade twice: its 101, and stream 1's answer as HTTP/2. That is one
    // exchange: the HTTP/1.1 request with its final response.
    if logged.remove(&("HTTP/1.1".into(), "/".into(), 101)) == Some(1) {
        *logged.entry(("HTTP/2".into(), "/".into(), 200)).or_default() -= 1;
        *logged.entry(("HTTP/1.1".into(), "/".into(), 200)).or_default() += 1;
    }
    assert_eq!(
        logged.values().sum::<usize>(),
        want,
        "Apache logged every request: {logged:?}"
    );
    assert_eq!(seen, logged, "(protocol, url, status) → records, against Apache's log");
    let big_len = (BIG_LINES * 25).to_string();
    for r in &records {
        assert_eq!(field(r, "/comm"), "apache2", "{r}");
        assert_eq!(field(r, "/l7/request/http/method"), "GET", "{r}");
        let incomplete = incomplete(r);
        if walked {
            // Walked frame by frame: no header block is lost behind a long DATA frame.
            assert!(incomplete.is_empty(), "{r}");
        }
        assert!(
            !incomplete
                .iter()
                .any(|i| i.starts_with("request") || *i == "response_missing"),
            "{r}"
        );
        // What is there is Apache's; what the capture lost is said.
        let headers = field(r, "/l7/response/http/headers");
        let header = |k: &str| {
            headers
                .as_array()
                .and_then(|hs| {
                    hs.iter()
                        .find(|h| h["key"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(k)))
                })
                .and_then(|h| h["value"].as_str().map(str::to_string))
        };
        match header("server") {
            Some(server) => assert!(server.starts_with("Apache"), "{r}"),
            None => assert!(!walked, "{r}"),
        }
        if field(r, "/l7/request/http/url") == "/big.txt" {
            match header("content-length") {
                Some(n) => assert_eq!(n, big_len, "{r}"),
                None => assert!(incomplete.contains(&"hpack_unknown_index"), "{r}"),
            }
        }
    }
}

/// grpcio under load: 8 threads share one channel (one HTTP/2 connection), so responses of up
/// to 50 KB are multiplexed into long writes, and grpc-core indexes `grpc-status` in HPACK.
/// Every call must be recorded once with its service, method and status — which needs every
/// header block of the connection, however far into a write it is.
#[test]
fn grpc_calls_multiplexed_on_one_channel_each_have_their_status() {
    let bin = perisco_bin();
    let bin_s = bin.to_string_lossy().to_string();
    let needs = [Need::Root, Need::Command(&bin_s), Need::Command(PY)];
    if !require("grpc_calls_multiplexed_on_one_channel_each_have_their_status", &needs) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let agent = Agent::start(&bin, d, &[port]);
    let (grpc_echo, server) = grpc_echo_server(d, port);
    let out = run_ok(Command::new(PY).arg(&grpc_echo).arg("load").arg(port.to_string()));
    let out = String::from_utf8_lossy(&out);
    let mut counts = out.split_whitespace().map(|n| n.parse::<usize>().unwrap());
    let (ok, not_found) = (counts.next().unwrap(), counts.next().unwrap());
    assert_eq!((ok, not_found), (640, 160), "the client's own count");

    // One value of the agent's /metrics (summed over label sets), once it says so.
    let metric = |name: &str| -> u64 {
        metrics(agent.api)
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    if walks_http2() {
        let start = Instant::now();
        while metric("perisco_ebpf_h2_walked_connections_total") == 0 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            metric("perisco_ebpf_h2_walked_connections_total") >= 1,
            "the channel is walked"
        );
        assert_eq!(
            metric("perisco_ebpf_h2_walks_lost_total"),
            0,
            "and its walk never lost its place"
        );
    }
    let records = agent.settle_and_stop(ok + not_found);
    server.signal("TERM");
    assert_eq!(records.len(), ok + not_found, "one record per call");
    let walked = walks_http2();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for r in &records {
        assert_eq!(field(r, "/l7/request/http/url"), "/test.Echo/Say", "{r}");
        assert_eq!(field(r, "/l7/grpc/service"), "test.Echo", "{r}");
        assert_eq!(field(r, "/l7/grpc/method"), "Say", "{r}");
        *statuses.entry(field(r, "/l7/grpc/status").to_string()).or_default() += 1;
        if walked {
            assert_eq!(field(r, "/l7/response/http/code"), 200, "{r}");
            assert!(incomplete(r).is_empty(), "{r}");
        }
    }
    if walked {
        let want = std::collections::BTreeMap::from([("0".to_string(), ok), ("5".to_string(), not_found)]);
        assert_eq!(statuses, want, "grpc-status of every call, as the client saw them");
        // Message counts and sizes too, each response's prefix being kept past the capture
        // limit: (status, request messages/bytes, response messages/bytes) per call, as
        // GRPC_ECHO's load makes them (a request names the response size; "fail" fails).
        let mut want = std::collections::BTreeMap::<String, usize>::new();
        for i in 0..100 {
            let (req, resp) = match i % 5 {
                0 => ("fail".to_string(), None),
                _ => {
                    let n = [100, 3000, 50000][i % 3];
                    (n.to_string(), Some(n))
                }
            };
            let (status, msgs, bytes) = resp.map_or((5, 0, 0), |n| (0, 1, n));
            *want
                .entry(format!("{status} 1 {} {msgs} {bytes}", req.len()))
                .or_default() += 8;
        }
        let mut got = std::collections::BTreeMap::<String, usize>::new();
        for r in &records {
            let g = |k: &str| {
                r.pointer(&format!("/l7/grpc/{k}"))
                    .map_or("-".to_string(), |v| v.to_string())
            };
            let key = [
                "status",
                "requestMessages",
                "requestBytes",
                "responseMessages",
                "responseBytes",
            ]
            .map(g);
            *got.entry(key.join(" ")).or_default() += 1;
        }
        assert_eq!(got, want, "gRPC message counts and sizes of every call");
    } else {
        eprintln!("no HTTP/2 frame walk (kernel < 5.17, or PERISCO_EBPF_PREFIX_ONLY=1): statuses {statuses:?}");
    }
}
