//! Components for testing and benchmarking the engine itself: a `generator` source, a
//! `passthrough` transform and a `collect` sink that records what reached it.
//! They are not part of the `perisco` binary.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::component::*;
use crate::event::{DataType, Direction, Event, ProcessInfo, Role, SocketData, SocketEventKind};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestSource {
    Generator(GeneratorConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestTransform {
    Passthrough(PassthroughConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestSink {
    Collect(CollectConfig),
}

pub struct TestComponents;

impl Components for TestComponents {
    type Source = TestSource;
    type Transform = TestTransform;
    type Sink = TestSink;
}

/// Emits `count` socket events (conn_id = sequence number from `start`), then ends;
/// without `count`, runs until shutdown. `interval` paces batches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    pub count: Option<u64>,
    #[serde(default)]
    pub start: u64,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Drop on full channels instead of waiting (what a live capture does).
    #[serde(default)]
    pub lossy: bool,
}

fn default_batch() -> usize {
    1000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughConfig {
    /// Changing this rebuilds the transform (for reload tests).
    #[serde(default)]
    pub generation: u64,
}

/// Records the conn_id of every event under `name` (see [`collected`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    pub name: String,
    /// Only count, don't keep ids (benchmarks).
    #[serde(default)]
    pub count_only: bool,
}

impl ComponentConfig for TestSource {
    fn type_name(&self) -> &'static str {
        "generator"
    }
    fn validate(&self) -> Vec<ValueError> {
        let TestSource::Generator(g) = self;
        if g.batch == 0 {
            vec![ValueError::at("batch", "must be at least 1")]
        } else {
            vec![]
        }
    }
}

impl SourceConfig for TestSource {
    fn output(&self) -> DataType {
        DataType::Socket
    }
    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, BoxError> {
        let TestSource::Generator(g) = self;
        Ok(Box::new(Generator(g.clone())))
    }
}

impl ComponentConfig for TestTransform {
    fn type_name(&self) -> &'static str {
        "passthrough"
    }
}

impl TransformConfig for TestTransform {
    fn accepts(&self, _input: DataType) -> bool {
        true
    }
    fn output(&self) -> DataType {
        DataType::Socket
    }
    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        Ok(Box::new(Passthrough))
    }
}

impl ComponentConfig for TestSink {
    fn type_name(&self) -> &'static str {
        "collect"
    }
}

impl SinkConfig for TestSink {
    fn accepts(&self, _input: DataType) -> bool {
        true
    }
    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        let TestSink::Collect(c) = self;
        Ok(Box::new(Collect(c.clone())))
    }
}

struct Generator(GeneratorConfig);

/// A socket event carrying `seq` as its connection id.
pub fn socket_event(seq: u64, process: &Arc<ProcessInfo>) -> Event {
    let a = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    Event::Socket(SocketData {
        conn_id: seq,
        kind: SocketEventKind::Data,
        ts_ns: seq,
        process: process.clone(),
        local: a,
        peer: a,
        role: Role::Server,
        direction: Direction::Ingress,
        data: Bytes::new(),
        len: 0,
    })
}

impl Source for Generator {
    fn run(self: Box<Self>, mut cx: SourceContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            let g = self.0;
            let process = Arc::new(ProcessInfo::default());
            let mut seq = g.start;
            let end = g.count.map(|c| g.start + c);
            loop {
                if cx.shutdown.is_set() {
                    return Ok(());
                }
                let n = match end {
                    Some(e) if seq >= e => return Ok(()),
                    Some(e) => (e - seq).min(g.batch as u64),
                    None => g.batch as u64,
                };
                let batch: Vec<Event> = (seq..seq + n).map(|i| socket_event(i, &process)).collect();
                seq += n;
                if g.lossy {
                    cx.out.try_send(batch);
                } else {
                    cx.out.send(batch).await;
                }
                if let Some(i) = g.interval {
                    tokio::select! {
                        _ = tokio::time::sleep(i) => {}
                        _ = cx.shutdown.wait() => return Ok(()),
                    }
                } else {
                    tokio::task::yield_now().await;
                }
            }
        })
    }
}

struct Passthrough;

impl FunctionTransform for Passthrough {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>) {
        out.push(event);
    }
    fn transform_batch(&mut self, batch: Vec<Event>, out: &mut Vec<Event>) {
        if out.is_empty() {
            *out = batch;
        } else {
            out.extend(batch);
        }
    }
}

#[derive(Default)]
struct Collected {
    ids: Vec<u64>,
    count: u64,
}

static COLLECTED: LazyLock<Mutex<HashMap<String, Collected>>> = LazyLock::new(Default::default);

/// conn_ids that reached the `collect` sink named `name`, in arrival order.
pub fn collected(name: &str) -> Vec<u64> {
    COLLECTED
        .lock()
        .unwrap()
        .get(name)
        .map(|c| c.ids.clone())
        .unwrap_or_default()
}

/// How many events reached the `collect` sink named `name`.
pub fn collected_count(name: &str) -> u64 {
    COLLECTED.lock().unwrap().get(name).map_or(0, |c| c.count)
}

pub fn reset_collected(name: &str) {
    COLLECTED.lock().unwrap().remove(name);
}

struct Collect(CollectConfig);

impl Sink for Collect {
    fn run(self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            while let Some(batch) = cx.input.recv().await {
                let n = batch.len() as u64;
                let mut all = COLLECTED.lock().unwrap();
                let c = all.entry(self.0.name.clone()).or_default();
                c.count += n;
                if !self.0.count_only {
                    c.ids.extend(batch.iter().map(|e| match e {
                        Event::Socket(s) => s.conn_id,
                        _ => u64::MAX,
                    }));
                }
                drop(all);
                cx.metrics.sent.add(n);
            }
            Ok(())
        })
    }
}
