//! Shared by the integration tests: the sample records and a tiny component set
//! (`records` source, `filter` / `remap`, the real `file` sink and a minimal `jsonl` one)
//! to run real pipelines.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event, Record};
use perisco_engine::metrics::ComponentMetrics;
use perisco_vrl::{FilterConfig, Remap, RemapConfig};
use serde::Deserialize;

pub const RECORDS_JSONL: &str = include_str!("../data/records.jsonl");

/// A `remap` built from inline source, and its metrics.
pub fn remap(source: &str, drop_on_error: bool, drop_on_abort: bool) -> (Remap, ComponentMetrics) {
    let cfg = RemapConfig {
        source: Some(source.into()),
        file: None,
        drop_on_error,
        drop_on_abort,
    };
    let m = ComponentMetrics::default();
    let r = Remap::new(&cfg, source, "test".into(), m.clone()).unwrap_or_else(|e| panic!("{source}: {e}"));
    (r, m)
}

/// The sample records (shaped exactly like DESIGN.md's record), in file order.
pub fn records() -> Vec<Record> {
    RECORDS_JSONL
        .lines()
        .map(|l| serde_json::from_str(l).expect("sample record"))
        .collect()
}

pub fn record_events() -> Vec<Event> {
    records().into_iter().map(|r| Event::Record(Box::new(r))).collect()
}

/// The JSON a sink writes for an event.
pub fn json_of(e: &Event) -> serde_json::Value {
    e.to_json_value().expect("event as JSON")
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestSource {
    Records(RecordsConfig),
    /// The real pcap source (fixtures/*.pcapng).
    Pcap(perisco_pcap::PcapConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestTransform {
    Filter(FilterConfig),
    Remap(RemapConfig),
    /// The real parse and match transforms, to make records from captures.
    Parse(perisco_l7::ParseConfig),
    Match(perisco_l7::MatchConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestSink {
    Jsonl(JsonlConfig),
    /// The real file sink of the binary.
    File(perisco_sinks::file::FileConfig),
}

pub struct VrlComponents;

impl Components for VrlComponents {
    type Source = TestSource;
    type Transform = TestTransform;
    type Sink = TestSink;
}

/// Emits the records of a JSON-lines file once; with `hold`, then waits for shutdown
/// (so the pipeline stays up for reload tests).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub hold: bool,
}

/// Writes every event as one JSON line (`Event::write_json`, as the file sink does).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    pub path: PathBuf,
}

impl ComponentConfig for TestSource {
    fn type_name(&self) -> &'static str {
        match self {
            TestSource::Records(_) => "records",
            TestSource::Pcap(c) => c.type_name(),
        }
    }
    fn validate(&self) -> Vec<ValueError> {
        match self {
            TestSource::Records(_) => Vec::new(),
            TestSource::Pcap(c) => c.validate(),
        }
    }
}

impl SourceConfig for TestSource {
    fn output(&self) -> DataType {
        match self {
            TestSource::Records(_) => DataType::Record,
            TestSource::Pcap(c) => c.output(),
        }
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BoxError> {
        let c = match self {
            TestSource::Records(c) => c,
            TestSource::Pcap(c) => return c.build(cx),
        };
        let text = std::fs::read_to_string(cx.resolve_path(&c.path))?;
        let mut batch = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let r: Record = serde_json::from_str(line)?;
            batch.push(Event::Record(Box::new(r)));
        }
        Ok(Box::new(RecordsSource { batch, hold: c.hold }))
    }
}

struct RecordsSource {
    batch: Vec<Event>,
    hold: bool,
}

impl Source for RecordsSource {
    fn run(self: Box<Self>, mut cx: SourceContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            cx.out.send(self.batch).await;
            if self.hold {
                cx.shutdown.wait().await;
            }
            Ok(())
        })
    }
}

impl ComponentConfig for TestTransform {
    fn type_name(&self) -> &'static str {
        match self {
            TestTransform::Filter(c) => c.type_name(),
            TestTransform::Remap(c) => c.type_name(),
            TestTransform::Parse(c) => c.type_name(),
            TestTransform::Match(c) => c.type_name(),
        }
    }
    fn validate(&self) -> Vec<ValueError> {
        match self {
            TestTransform::Filter(c) => c.validate(),
            TestTransform::Remap(c) => c.validate(),
            TestTransform::Parse(c) => c.validate(),
            TestTransform::Match(c) => c.validate(),
        }
    }
}

impl TransformConfig for TestTransform {
    fn accepts(&self, input: DataType) -> bool {
        match self {
            TestTransform::Filter(c) => c.accepts(input),
            TestTransform::Remap(c) => c.accepts(input),
            TestTransform::Parse(c) => c.accepts(input),
            TestTransform::Match(c) => c.accepts(input),
        }
    }
    fn output(&self) -> DataType {
        match self {
            TestTransform::Filter(c) => c.output(),
            TestTransform::Remap(c) => c.output(),
            TestTransform::Parse(c) => c.output(),
            TestTransform::Match(c) => c.output(),
        }
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        match self {
            TestTransform::Filter(c) => c.build(cx),
            TestTransform::Remap(c) => c.build(cx),
            TestTransform::Parse(c) => c.build(cx),
            TestTransform::Match(c) => c.build(cx),
        }
    }
}

impl ComponentConfig for TestSink {
    fn type_name(&self) -> &'static str {
        match self {
            TestSink::Jsonl(_) => "jsonl",
            TestSink::File(c) => c.type_name(),
        }
    }
    fn validate(&self) -> Vec<ValueError> {
        match self {
            TestSink::Jsonl(_) => Vec::new(),
            TestSink::File(c) => c.validate(),
        }
    }
}

impl SinkConfig for TestSink {
    fn accepts(&self, input: DataType) -> bool {
        match self {
            TestSink::Jsonl(_) => input == DataType::Record,
            TestSink::File(c) => c.accepts(input),
        }
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        match self {
            TestSink::Jsonl(c) => Ok(Box::new(JsonlSink(cx.resolve_path(&c.path)))),
            TestSink::File(c) => c.build(cx),
        }
    }
}

struct JsonlSink(PathBuf);

impl Sink for JsonlSink {
    fn run(self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.0)?;
            while let Some(batch) = cx.input.recv().await {
                let mut buf = Vec::new();
                for e in &batch {
                    e.write_json(&mut buf)?;
                    buf.push(b'\n');
                }
                file.write_all(&buf)?;
                cx.metrics.sent.add(batch.len() as u64);
            }
            file.flush()?;
            Ok(())
        })
    }
}

/// The JSON lines a `jsonl` (or `file`) sink wrote.
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The records the real pcap source and parse/match transforms make from every committed
/// capture (fixtures/*.pcapng), in capture order.
pub fn fixture_records() -> Vec<Record> {
    let fixtures = perisco_testutil::workspace_root().join("fixtures");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .expect("fixtures/")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcapng"))
        .collect();
    names.sort();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = Vec::new();
    for capture in names {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[sources.cap]\ntype = \"pcap\"\npath = \"{}\"\n\n[transforms.l7]\ntype = \"parse\"\ninputs = [\"cap\"]\n\n\
             [transforms.pairs]\ntype = \"match\"\ninputs = [\"l7\"]\n\n[sinks.out]\ntype = \"jsonl\"\ninputs = [\"pairs\"]\npath = \"out.jsonl\"\n",
            capture.display()
        );
        let path = dir.path().join("pipeline.toml");
        std::fs::write(&path, text).expect("write pipeline");
        let cfg = perisco_engine::config::Config::<VrlComponents>::load(&path).unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let topo = perisco_engine::RunningTopology::start(cfg, perisco_engine::metrics::Registry::new())
                .await
                .expect("starts");
            topo.wait_sources_finished().await;
            assert!(topo.stop(STOP_DEADLINE).await.drained);
        });
        for line in read_jsonl(&dir.path().join("out.jsonl")) {
            out.push(serde_json::from_value(line).expect("a record"));
        }
    }
    out
}
