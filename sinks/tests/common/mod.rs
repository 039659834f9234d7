//! Shared by the sink integration tests: realistic records, the file sink's reference
//! output, a harness that drives a sink, servers, and a TCP proxy to cut the network.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use perisco_engine::component::*;
use perisco_engine::event::Event;
use perisco_engine::metrics::Registry;
use perisco_engine::record::*;
use perisco_engine::topology::BatchReceiver;
use perisco_testutil::{ChildGuard, wait_for_port};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Namespaces the records cycle through; `None` leaves `server` absent (template fallback).
pub const NAMESPACES: [Option<&str>; 3] = [Some("shop"), Some("default"), None];

/// `n` exchange records as the match/enrich transforms would emit them. `pid` is the
/// sequence number (`start + i`), the key the tests match records on.
pub fn records(n: usize, start: u32) -> Vec<Event> {
    (0..n as u32)
        .map(|i| {
            let seq = start + i;
            let ns = NAMESPACES[(seq % 3) as usize];
            let code = if seq.is_multiple_of(7) { 503 } else { 200 };
            // Two calendar days, so date-named indices get two names.
            let day = u64::from(seq % 2) * 86_400_000_000_000;
            let r = Record {
                ts: 1_681_184_609_619_285_359 + day + u64::from(seq) * 1_000_000,
                pid: seq,
                ip: IpInfo::new(
                    IpAddr::V4(Ipv4Addr::new(10, 244, 1, (seq % 250) as u8)),
                    IpAddr::V4(Ipv4Addr::new(10, 244, 2, 42)),
                ),
                l4: L4 {
                    tcp: TcpPorts {
                        client_port: 30_000 + (seq % 30_000) as u16,
                        server_port: 8080,
                    },
                },
                l7: L7 {
                    latency_ns: Some(8_661_819 + u64::from(seq)),
                    request: Some(L7Request {
                        http: HttpRequest {
                            protocol: "HTTP/1.1".into(),
                            method: if seq.is_multiple_of(5) {
                                "POST".into()
                            } else {
                                "GET".into()
                            },
                            url: format!("/books.json?order=lower%28title%29&page={seq}").into(),
                            headers: vec![
                                Header::new("Accept", "application/json"),
                                Header::new("Authorization", "[REDACTED]"),
                                Header::new("User-Agent", "curl/7.88.1 \"quoted\" ünïcode"),
                            ],
                            body_bytes: Some(u64::from(seq % 100)),
                            body: None,
                        },
                    }),
                    response: Some(L7Response {
                        http: HttpResponse {
                            protocol: "HTTP/1.1".into(),
                            code,
                            headers: vec![
                                Header::new("Server", "WEBrick"),
                                Header::new("Content-Type", "application/json"),
                            ],
                            body_bytes: Some(1234),
                            body: None,
                        },
                    }),
                    grpc: None,
                },
                client: Some(Arc::new(Endpoint {
                    namespace: Some("default".into()),
                    labels: vec!["app=webapp".into()],
                    pod_name: Some("webapp-5f459f867b-2zbx8".into()),
                    workload: Some(Workload {
                        name: "webapp".into(),
                        kind: "Deployment".into(),
                    }),
                })),
                server: ns.map(|ns| {
                    Arc::new(Endpoint {
                        namespace: Some(ns.into()),
                        labels: vec!["app=books".into()],
                        pod_name: Some(format!("books-675456b8d-{seq}")),
                        workload: None,
                    })
                }),
                client_service: Some(Arc::new(ServiceRef {
                    name: "webapp".into(),
                    namespace: "default".into(),
                })),
                server_service: ns.map(|ns| {
                    Arc::new(ServiceRef {
                        name: "books".into(),
                        namespace: ns.into(),
                    })
                }),
                comm: Some("ruby".into()),
                container_id: None,
                node: Some("node-1".into()),
                incomplete: if seq.is_multiple_of(11) {
                    vec!["response_truncated".into()]
                } else {
                    vec![]
                },
            };
            Event::Record(Box::new(r))
        })
        .collect()
}

/// What the `file` sink writes for `events`, one JSON value per line, read back from a
/// real file sink run.
pub async fn file_sink_output(events: &[Event]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let cfg: perisco_sinks::file::FileConfig =
        toml::from_str(&format!("path = {:?}", path.display().to_string())).unwrap();
    let h = Harness::new("file_ref");
    let sink = cfg.build(&h.cx).unwrap();
    let (tx, task) = h.start(sink, 4);
    tx.send(events.to_vec()).await.unwrap();
    drop(tx);
    task.await.unwrap().unwrap();
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Sort JSON records by their sequence number (`pid`).
pub fn by_seq(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|r| r["pid"].as_u64());
    v
}

/// Assert two lists of records are equal field by field, naming the first difference.
pub fn assert_same_records(got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), want.len(), "record count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "record pid={} differs from the file sink's output", w["pid"]);
    }
}

/// The SIGUSR1 trigger of a sink run by the harness.
pub type Reopen = tokio::sync::broadcast::Sender<()>;
/// A sink's task.
pub type SinkTask = JoinHandle<Result<(), BoxError>>;

/// A build context with its own registry, to read the sink's counters.
pub struct Harness {
    pub cx: BuildContext,
    pub registry: Arc<Registry>,
}

impl Harness {
    pub fn new(id: &str) -> Harness {
        // Sink logs in the test output (shown for failing tests); RUST_LOG filters.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .with_test_writer()
            .try_init();
        let registry = Registry::new();
        let metrics = perisco_engine::metrics::ComponentMetrics::register(&registry, id, "sink", "test");
        let cx = BuildContext {
            id: id.into(),
            kind: Kind::Sink,
            metrics,
            registry: registry.clone(),
            health: perisco_engine::health::HealthRegistry::new().handle(id.into()),
            config_dir: None,
        };
        Harness { cx, registry }
    }

    /// Run `sink` on a test input channel of `capacity` batches.
    pub fn start(
        &self,
        sink: Box<dyn Sink>,
        capacity: usize,
    ) -> (mpsc::Sender<Vec<Event>>, JoinHandle<Result<(), BoxError>>) {
        let (tx, input) = BatchReceiver::for_test(capacity);
        let (_reopen_tx, reopen) = tokio::sync::broadcast::channel(1);
        let metrics = self.cx.metrics.clone();
        let task = tokio::spawn(async move {
            // Keep the reopen sender alive for the sink's whole run.
            let _keep = _reopen_tx;
            sink.run(SinkContext { input, reopen, metrics }).await
        });
        (tx, task)
    }

    /// Like `start`, also returning the SIGUSR1 (reopen) trigger.
    pub fn start_with_reopen(
        &self,
        sink: Box<dyn Sink>,
        capacity: usize,
    ) -> (mpsc::Sender<Vec<Event>>, Reopen, SinkTask) {
        let (tx, input) = BatchReceiver::for_test(capacity);
        let (reopen_tx, reopen) = tokio::sync::broadcast::channel(1);
        let metrics = self.cx.metrics.clone();
        let task = tokio::spawn(sink.run(SinkContext { input, reopen, metrics }));
        (tx, reopen_tx, task)
    }

    fn id(&self) -> &str {
        &self.cx.id
    }

    pub fn delivered(&self) -> u64 {
        self.registry
            .counter_value("perisco_sink_delivered_events_total", &[("component_id", self.id())])
            .unwrap_or(0)
    }

    pub fn retried(&self) -> u64 {
        self.registry
            .counter_value("perisco_sink_retried_events_total", &[("component_id", self.id())])
            .unwrap_or(0)
    }

    pub fn dropped(&self, reason: &str) -> u64 {
        self.registry
            .counter_value(
                "perisco_sink_dropped_events_total",
                &[("component_id", self.id()), ("reason", reason)],
            )
            .unwrap_or(0)
    }

    pub fn dropped_total(&self) -> u64 {
        ["buffer_full", "rejected", "encode", "retries_exhausted", "shutdown"]
            .iter()
            .map(|r| self.dropped(r))
            .sum()
    }

    pub fn buffered(&self) -> i64 {
        let text = self.registry.render();
        let prefix = format!("perisco_sink_buffer_events{{component_id=\"{}\"}} ", self.id());
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Send `events` in batches of `batch`, counting how many the sink has taken.
pub fn feed(tx: mpsc::Sender<Vec<Event>>, events: Vec<Event>, batch: usize) -> (Arc<AtomicU64>, JoinHandle<()>) {
    let sent = Arc::new(AtomicU64::new(0));
    let s = sent.clone();
    let task = tokio::spawn(async move {
        let mut it = events.into_iter().peekable();
        while it.peek().is_some() {
            let b: Vec<Event> = it.by_ref().take(batch).collect();
            let n = b.len() as u64;
            if tx.send(b).await.is_err() {
                return;
            }
            s.fetch_add(n, Ordering::SeqCst);
        }
    });
    (sent, task)
}

/// Poll `f` until true or `timeout`; returns the last value.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy on a fixed port, to cut the network between a sink and its server
/// (`stop` closes the listener and every connection; `start` listens again).
pub struct TcpProxy {
    pub port: u16,
    upstream: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl TcpProxy {
    pub async fn start(port: u16, upstream: SocketAddr) -> TcpProxy {
        let mut p = TcpProxy {
            port,
            upstream,
            task: None,
        };
        p.resume().await;
        p
    }

    pub async fn resume(&mut self) {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        }));
    }

    /// Stop listening and cut every open connection (the JoinSet aborts them on drop).
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Hold an exclusive lock named `name` across test processes (nextest runs tests in
/// parallel processes). Two osmem-server instances under load were seen stalling requests
/// for seconds, so the osmem tests take turns.
pub fn exclusive(name: &str) -> std::fs::File {
    let path = std::env::temp_dir().join(format!("perisco-test-{name}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    f.lock().unwrap();
    f
}

pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Start a server process and wait for its port.
pub fn spawn_server(cmd: &mut Command, port: u16) -> ChildGuard {
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let child = ChildGuard::spawn(cmd).expect("start server");
    assert!(
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(30)),
        "server on port {port} did not start: {cmd:?}"
    );
    child
}

/// A plain HTTP client for assertions.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// GET a URL and parse the JSON answer.
pub async fn get_json(url: &str) -> Value {
    let b = client().get(url).send().await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{url}: {e}: {}", String::from_utf8_lossy(&b)))
}

/// POST a JSON/NDJSON body and parse the JSON answer.
pub async fn post_json(url: &str, body: &str) -> Value {
    let b = client()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{url}: {e}: {}", String::from_utf8_lossy(&b)))
}

/// Something that can cut the network between a sink and its server.
pub trait Network {
    fn down(&mut self) -> impl std::future::Future<Output = ()>;
    fn up(&mut self) -> impl std::future::Future<Output = ()>;
}

impl Network for TcpProxy {
    async fn down(&mut self) {
        self.stop().await
    }
    async fn up(&mut self) {
        self.resume().await
    }
}

/// How a fault test runs the sink through an outage.
pub struct Outage {
    /// Events sent before the network is cut (and delivered first).
    pub before: usize,
    /// `buffer.max_events` of the sink, for the memory bound.
    pub buffer_max: usize,
    /// `batch.max_events` of the sink (the batch held by the writer while retrying).
    pub sink_batch: usize,
    /// Events per input batch, and input channel capacity in batches.
    pub feed_batch: usize,
    pub channel: usize,
    pub drop_newest: bool,
}

/// Deliver `before` events, cut the network, push the rest, check that memory stays
/// bounded (block) or that drops are counted (drop_newest), restore the network, and wait
/// for the sink to finish. Asserts the sink's own counters add up to every event.
pub async fn run_through_outage(
    h: &Harness,
    sink: Box<dyn Sink>,
    proxy: &mut impl Network,
    events: Vec<Event>,
    o: Outage,
) {
    let n = events.len() as u64;
    let (tx, task) = h.start(sink, o.channel);
    let mut rest = events;
    let first: Vec<Event> = rest.drain(..o.before).collect();
    // Paced, so that even `drop_newest` delivers all of them.
    let mut pushed = 0;
    for b in first.chunks(o.feed_batch) {
        tx.send(b.to_vec()).await.unwrap();
        pushed += b.len() as u64;
        assert!(
            eventually(Duration::from_secs(60), || h.delivered() >= pushed).await,
            "the first {pushed} events were not delivered (delivered {})",
            h.delivered()
        );
    }
    proxy.down().await;
    let (sent, mut feeder) = feed(tx, rest, o.feed_batch);
    if o.drop_newest {
        // The sink never blocks its input: the feeder finishes during the outage.
        tokio::time::timeout(Duration::from_secs(60), &mut feeder)
            .await
            .expect("feeder blocked with drop_newest")
            .unwrap();
        assert!(
            eventually(Duration::from_secs(30), || h.dropped("buffer_full") > 0).await,
            "nothing dropped"
        );
    } else {
        // Backpressure: the feeder stalls with a bounded number of events inside the sink.
        let mut last = u64::MAX;
        assert!(
            eventually(Duration::from_secs(60), || {
                let s = sent.load(Ordering::SeqCst);
                let stalled = s == last;
                last = s;
                stalled
            })
            .await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let inside = o.before as u64 + sent.load(Ordering::SeqCst) - h.delivered();
        let bound = (o.buffer_max + o.sink_batch + (o.channel + 1) * o.feed_batch) as u64;
        assert!(
            sent.load(Ordering::SeqCst) < n - o.before as u64,
            "the feeder never blocked"
        );
        assert!(inside <= bound, "{inside} events held inside the sink, bound {bound}");
        assert!(
            h.buffered() <= o.buffer_max as i64,
            "buffer gauge {} > {}",
            h.buffered(),
            o.buffer_max
        );
    }
    assert!(
        eventually(Duration::from_secs(60), || h.retried() > 0).await,
        "no retry during the outage"
    );
    proxy.up().await;
    if !o.drop_newest {
        tokio::time::timeout(Duration::from_secs(120), feeder)
            .await
            .expect("feeder still blocked after recovery")
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("sink did not finish")
        .unwrap()
        .unwrap();
    let counters: Vec<String> = h
        .registry
        .render()
        .lines()
        .filter(|l| l.starts_with("perisco_sink") && !l.ends_with(" 0"))
        .map(String::from)
        .collect();
    if o.drop_newest {
        assert_eq!(
            h.delivered() + h.dropped_total(),
            n,
            "delivered + dropped: {counters:#?}"
        );
        assert_eq!(h.dropped_total(), h.dropped("buffer_full"), "{counters:#?}");
    } else {
        assert_eq!(h.delivered(), n, "delivered: {counters:#?}");
        assert_eq!(h.dropped_total(), 0, "dropped: {counters:#?}");
    }
}
