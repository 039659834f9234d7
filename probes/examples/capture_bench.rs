//! Benchmark helper (not a test): runs the `ebpf_socket` source into a sink that only
//! counts, until stdin closes or SIGTERM, then prints one JSON line of figures.
//! Used by probes/bench/ebpf-overhead.sh. Usage: capture_bench '<source keys toml>'

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event};
use perisco_engine::metrics::Registry;
use perisco_engine::testing::TestTransform;
use perisco_engine::{Config, RunningTopology};
use perisco_probes::EbpfSocketConfig;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Src {
    EbpfSocket(EbpfSocketConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Snk {
    Count {},
}

struct Bench;
impl Components for Bench {
    type Source = Src;
    type Transform = TestTransform;
    type Sink = Snk;
}

impl ComponentConfig for Src {
    fn type_name(&self) -> &'static str {
        "ebpf_socket"
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
}
impl ComponentConfig for Snk {
    fn type_name(&self) -> &'static str {
        "count"
    }
}
impl SinkConfig for Snk {
    fn accepts(&self, _: DataType) -> bool {
        true
    }
    fn build(&self, _: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(Count))
    }
}

static EVENTS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

struct Count;
impl Sink for Count {
    fn run(self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            while let Some(batch) = cx.input.recv().await {
                EVENTS.fetch_add(batch.len() as u64, Ordering::Relaxed);
                let b: usize = batch
                    .iter()
                    .map(|e| if let Event::Socket(s) = e { s.data.len() } else { 0 })
                    .sum();
                BYTES.fetch_add(b as u64, Ordering::Relaxed);
            }
            Ok(())
        })
    }
}

fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let keys = std::env::args().nth(1).unwrap_or_default();
    let text =
        format!("[sources.cap]\ntype = \"ebpf_socket\"\n{keys}\n\n[sinks.out]\ntype = \"count\"\ninputs = [\"cap\"]\n");
    let cfg = Config::<Bench>::from_str(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let registry = Registry::new();
    let topo = rt
        .block_on(RunningTopology::start(cfg, registry.clone()))
        .expect("start");
    let attached = registry.gauge("perisco_ebpf_attached", "", &[("component_id", "cap")]);
    while attached.get() != 1 {
        if topo.sources_finished() {
            eprintln!("the ebpf_socket source stopped before attaching (see the log above)");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("attached");
    // Runs until stdin is closed by the driving script.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let report = rt.block_on(topo.stop(Duration::from_secs(10)));
    let c = |n: &str| registry.counter_value(n, &[("component_id", "cap")]).unwrap_or(0);
    let fields: Arc<[(&str, u64)]> = Arc::from(vec![
        ("events", EVENTS.load(Ordering::Relaxed)),
        ("captured_bytes", BYTES.load(Ordering::Relaxed)),
        ("kernel_events", c("perisco_ebpf_kernel_events_total")),
        ("ring_dropped", c("perisco_ebpf_ring_dropped_total")),
        ("read_errors", c("perisco_ebpf_read_errors_total")),
        ("batches_dropped", c("perisco_ebpf_batches_dropped_total")),
        ("gaps", c("perisco_ebpf_gaps_total")),
        ("drained", u64::from(report.drained)),
    ]);
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!("{{{}}}", body.join(","));
}
