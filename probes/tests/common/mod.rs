//! Harness for live tests: a topology with the `ebpf_socket` source and a sink that keeps
//! every socket event, plus helpers to start real servers and clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event, SocketData};
use perisco_engine::metrics::Registry;
use perisco_engine::testing::TestTransform;
use perisco_engine::{Config, RunningTopology};
use perisco_probes::EbpfSocketConfig;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Src {
    EbpfSocket(EbpfSocketConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Snk {
    Store { name: String },
}

pub struct Live;

impl Components for Live {
    type Source = Src;
    type Transform = TestTransform;
    type Sink = Snk;
}

impl ComponentConfig for Src {
    fn type_name(&self) -> &'static str {
        "ebpf_socket"
    }
    fn validate(&self) -> Vec<ValueError> {
        let Src::EbpfSocket(c) = self;
        c.validate()
    }
}

impl SourceConfig for Src {
    fn output(&self) -> DataType {
        DataType::Socket
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BoxError> {
        let Src::EbpfSocket(c) = self;
        c.build(cx)
    }
    fn can_reconfigure(&self, new: &Self) -> bool {
        let (Src::EbpfSocket(a), Src::EbpfSocket(b)) = (self, new);
        a.can_reconfigure(b)
    }
    fn update_payload(&self) -> Arc<dyn std::any::Any + Send + Sync> {
        let Src::EbpfSocket(c) = self;
        c.update_payload()
    }
}

impl ComponentConfig for Snk {
    fn type_name(&self) -> &'static str {
        "store"
    }
}

impl SinkConfig for Snk {
    fn accepts(&self, _input: DataType) -> bool {
        true
    }
    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        let Snk::Store { name } = self;
        Ok(Box::new(Store(name.clone())))
    }
}

static STORED: LazyLock<Mutex<HashMap<String, Vec<SocketData>>>> = LazyLock::new(Default::default);

struct Store(String);

impl Sink for Store {
    fn run(self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            while let Some(batch) = cx.input.recv().await {
                let mut all = STORED.lock().unwrap();
                let v = all.entry(self.0.clone()).or_default();
                for e in batch {
                    if let Event::Socket(s) = e {
                        v.push(s);
                    }
                }
            }
            Ok(())
        })
    }
}

/// A running capture: the topology, its runtime and the name of its store.
pub struct Capture {
    pub rt: tokio::runtime::Runtime,
    pub topo: Option<RunningTopology<Live>>,
    pub registry: Arc<Registry>,
    pub name: String,
}

thread_local! {
    /// `hook` of the captures this test thread starts (unset: the source's default).
    static HOOK: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Run `case` with every capture on this hook family (`hook = "..."`).
pub fn on_hook(hook: &'static str, case: fn()) {
    HOOK.with(|h| h.set(Some(hook)));
    case();
}

pub fn config_text(name: &str, source_keys: &str) -> String {
    let hook = HOOK
        .with(|h| h.get())
        .map(|h| format!("hook = \"{h}\"\n"))
        .unwrap_or_default();
    format!(
        "[sources.cap]\ntype = \"ebpf_socket\"\n{hook}{source_keys}\n\n[sinks.out]\ntype = \"store\"\ninputs = [\"cap\"]\nname = \"{name}\"\n"
    )
}

impl Capture {
    /// Start capturing with these extra `[sources.cap]` keys; returns once the probe is
    /// attached.
    pub fn start(name: &str, source_keys: &str) -> Capture {
        STORED.lock().unwrap().remove(name);
        let cfg =
            Config::<Live>::from_str(&config_text(name, source_keys), "test.toml").unwrap_or_else(|e| panic!("{e}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let registry = Registry::new();
        let topo = rt
            .block_on(RunningTopology::start(cfg, registry.clone()))
            .expect("topology starts");
        let c = Capture {
            rt,
            topo: Some(topo),
            registry,
            name: name.to_string(),
        };
        c.wait_until("probe attached", || c.gauge("perisco_ebpf_attached") == 1);
        c
    }

    pub fn gauge(&self, name: &str) -> i64 {
        self.registry.gauge(name, "", &[("component_id", "cap")]).get()
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.registry
            .counter_value(name, &[("component_id", "cap")])
            .unwrap_or(0)
    }

    fn wait_until(&self, what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(120), "{what}: never happened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Apply a new config in place (reload) and wait until the probe took it.
    pub fn reload(&mut self, source_keys: &str) {
        let before = self.counter("perisco_ebpf_reconfigurations_total");
        let cfg = Config::<Live>::from_str(&config_text(&self.name, source_keys), "test.toml").unwrap();
        let topo = self.topo.as_mut().unwrap();
        self.rt.block_on(topo.reload(cfg)).expect("reload");
        self.wait_until("filters applied", || {
            self.counter("perisco_ebpf_reconfigurations_total") > before
        });
    }

    pub fn events(&self) -> Vec<SocketData> {
        STORED.lock().unwrap().get(&self.name).cloned().unwrap_or_default()
    }

    /// Wait until `pred` holds on the captured events (bounded, not a timing assertion).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[SocketData]) -> bool) -> Vec<SocketData> {
        let start = Instant::now();
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            if start.elapsed() > Duration::from_secs(20) {
                dump(&ev);
                panic!("timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the topology (detaching the probe) and return everything captured.
    pub fn stop(mut self) -> Vec<SocketData> {
        if let Some(t) = self.topo.take() {
            let report = self.rt.block_on(t.stop(Duration::from_secs(10)));
            assert!(report.drained, "pipeline drained");
        }
        self.events()
    }
}

pub fn dump(ev: &[SocketData]) {
    for e in ev {
        eprintln!(
            "conn={} {:?} {:?} {:?} pid={} {} -> {} len={} cap={} {:?}",
            e.conn_id,
            e.kind,
            e.role,
            e.direction,
            e.process.pid,
            e.local,
            e.peer,
            e.len,
            e.data.len(),
            String::from_utf8_lossy(&e.data[..e.data.len().min(60)])
        );
    }
}

/// Concatenated payload of `conn` in one direction.
pub fn stream(ev: &[SocketData], conn: u64, dir: perisco_engine::event::Direction) -> Vec<u8> {
    ev.iter()
        .filter(|e| e.conn_id == conn && e.direction == dir && e.kind == perisco_engine::event::SocketEventKind::Data)
        .flat_map(|e| e.data.iter().copied())
        .collect()
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Run a command to completion, panicking with its output on failure.
pub fn run(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Connections that carried data and are closed.
pub fn closed_data_conns(ev: &[SocketData]) -> usize {
    use perisco_engine::event::SocketEventKind as K;
    let data: std::collections::HashSet<u64> = ev.iter().filter(|e| e.kind == K::Data).map(|e| e.conn_id).collect();
    ev.iter()
        .filter(|e| e.kind == K::Close && data.contains(&e.conn_id))
        .count()
}

pub const PY: &str = "/usr/bin/python3";

/// A python grpcio server of `test.Echo/Say` ("fail" → NOT_FOUND, a number → that many
/// bytes, anything else echoed) and its clients: `call PORT [MESSAGE]` (one call, "hello"
/// by default; prints the reply), `load PORT` (8 threads × 100 calls on one channel; prints
/// how many succeeded and how many failed).
pub const GRPC_ECHO: &str = r#"
import sys, grpc, threading
from concurrent import futures
if sys.argv[1] == "serve":
    def say(req, ctx):
        if req == b"fail":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return b"x" * int(req) if req.isdigit() else b"echo:" + req
    h = grpc.method_handlers_generic_handler("test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)})
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    s.add_generic_rpc_handlers((h,))
    s.add_insecure_port("127.0.0.1:" + sys.argv[2])
    s.start()
    s.wait_for_termination()
elif sys.argv[1] == "call":
    msg = sys.argv[3].encode() if len(sys.argv) > 3 else b"hello"
    with grpc.insecure_channel("127.0.0.1:" + sys.argv[2]) as ch:
        print(ch.unary_unary("/test.Echo/Say")(msg, timeout=10).decode())
else:
    f = grpc.insecure_channel("127.0.0.1:" + sys.argv[2]).unary_unary("/test.Echo/Say")
    ok = nf = 0
    lock = threading.Lock()
    def worker(n):
        global ok, nf
        for i in range(n):
            req = b"fail" if i % 5 == 0 else str([100, 3000, 50000][i % 3]).encode()
            try:
                f(req, timeout=20)
                with lock: ok += 1
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
                with lock: nf += 1
    ts = [threading.Thread(target=worker, args=(100,)) for _ in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    print(ok, nf)
"#;

/// [`GRPC_ECHO`] written into `dir` and its server started on `port` (and up): the script,
/// for the clients, and the server.
pub fn grpc_echo_server(dir: &std::path::Path, port: u16) -> (std::path::PathBuf, perisco_testutil::ChildGuard) {
    let script = dir.join("grpc_echo.py");
    std::fs::write(&script, GRPC_ECHO).unwrap();
    let server = perisco_testutil::ChildGuard::spawn(
        std::process::Command::new(PY)
            .arg(&script)
            .arg("serve")
            .arg(port.to_string())
            .stdout(std::process::Stdio::null()),
    )
    .unwrap();
    assert!(
        perisco_testutil::wait_for_port(
            std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
            Duration::from_secs(20)
        ),
        "gRPC echo server on port {port}"
    );
    (script, server)
}
