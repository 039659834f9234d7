//! What a component is: config traits (serde side) that build runtime traits.
//!
//! `FooConfig` (serde, `deny_unknown_fields`) builds `Foo`. The binary holds the closed
//! list of config types as one serde enum per kind and implements these traits for it
//! with one `match`; the engine never names a concrete component.

use std::any::Any;
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::event::{DataType, Event};
use crate::health::HealthHandle;
use crate::metrics::{ComponentMetrics, Registry};
use crate::topology::fanout::Fanout;
use crate::topology::{BatchReceiver, ShutdownSignal};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A problem with a value inside a component's table, found after deserialisation.
/// The engine turns `key` (dotted, relative to the component table, e.g. "batch.max_bytes")
/// into file:line:col; `offset` points inside a string value (e.g. a VRL diagnostic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub key: Option<String>,
    pub offset: Option<usize>,
    pub message: String,
}

impl ValueError {
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        ValueError {
            key: Some(key.into()),
            offset: None,
            message: message.into(),
        }
    }
}

/// What every config kind shares.
pub trait ComponentConfig: DeserializeOwned + PartialEq + Clone + Debug + Send + Sync + 'static {
    /// The TOML `type` of this config ("pcap", "parse", "file", ...).
    fn type_name(&self) -> &'static str;

    /// Checks beyond what serde can express. Every error is reported, not just the first.
    fn validate(&self) -> Vec<ValueError> {
        Vec::new()
    }
}

pub trait SourceConfig: ComponentConfig {
    fn output(&self) -> DataType;
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BoxError>;
    /// True when a running source built from `self` can take `new` without restarting
    /// (e.g. new kernel filter maps while the probe stays attached). The new config then
    /// arrives through [`SourceContext::updates`].
    fn can_reconfigure(&self, _new: &Self) -> bool {
        false
    }
    /// What [`SourceContext::updates`] carries when this config is applied in place. An
    /// enum of configs returns its variant's config, so the source can downcast to its
    /// own type.
    fn update_payload(&self) -> Arc<dyn Any + Send + Sync> {
        Arc::new(self.clone())
    }
}

pub trait TransformConfig: ComponentConfig {
    fn accepts(&self, input: DataType) -> bool;
    fn output(&self) -> DataType;
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError>;
}

pub trait SinkConfig: ComponentConfig {
    fn accepts(&self, input: DataType) -> bool;
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError>;
    /// Called once at start (not on the data path): a reachability check whose failure is
    /// logged clearly but does not stop the pipeline.
    fn healthcheck(&self) -> Option<BoxFuture<Result<(), BoxError>>> {
        None
    }
}

/// The closed list of component types, provided by the binary.
pub trait Components: Send + Sync + 'static {
    type Source: SourceConfig;
    type Transform: TransformConfig;
    type Sink: SinkConfig;
}

/// Component kind, for labels and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Source,
    Transform,
    Sink,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        }
    }
}

/// Everything a config needs to build its runtime part.
#[derive(Clone)]
pub struct BuildContext {
    pub id: Arc<str>,
    pub kind: Kind,
    /// Standard per-component counters (received / sent / discarded / errors).
    pub metrics: ComponentMetrics,
    /// For component-specific metrics (always label them with `component_id`).
    pub registry: Arc<Registry>,
    /// Report degraded / healthy (e.g. an API unreachable) for `GET /health`.
    pub health: HealthHandle,
    /// Directory of the config file, to resolve relative paths.
    pub config_dir: Option<PathBuf>,
}

impl BuildContext {
    /// Resolve a path from the config relative to the config file's directory.
    pub fn resolve_path(&self, p: &std::path::Path) -> PathBuf {
        match &self.config_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// A source produces batches until its input ends or shutdown is signalled.
/// Returning `Ok(())` without shutdown means the source is finite and done.
pub trait Source: Send + 'static {
    fn run(self: Box<Self>, cx: SourceContext) -> BoxFuture<Result<(), BoxError>>;
}

pub struct SourceContext {
    pub out: SourceOutput,
    pub shutdown: ShutdownSignal,
    /// New configs accepted in place (see [`SourceConfig::can_reconfigure`]); downcast to
    /// the source's own config type.
    pub updates: tokio::sync::watch::Receiver<Arc<dyn Any + Send + Sync>>,
    pub metrics: ComponentMetrics,
}

/// A source's output: send with backpressure (finite sources) or try and count the loss
/// (live capture must never block the kernel reader).
#[derive(Clone)]
pub struct SourceOutput {
    pub(crate) fanout: Fanout,
    pub(crate) metrics: ComponentMetrics,
}

impl SourceOutput {
    /// Send a batch, waiting while any consumer's channel is full.
    pub async fn send(&self, batch: Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        self.metrics.sent.add(batch.len() as u64);
        self.fanout.send(batch).await;
    }

    /// Send without waiting; consumers whose channel is full lose the batch, and the loss
    /// is counted as discarded. Returns the number of events dropped (summed per consumer).
    pub fn try_send(&self, batch: Vec<Event>) -> u64 {
        if batch.is_empty() {
            return 0;
        }
        let n = batch.len() as u64;
        let dropped = self.fanout.try_send(batch);
        self.metrics.sent.add(n);
        if dropped > 0 {
            self.metrics.discarded.add(dropped);
        }
        dropped
    }

    /// Events the downstream channels can still take before a `try_send` would drop.
    pub fn has_capacity(&self) -> bool {
        self.fanout.has_capacity()
    }
}

/// A synchronous transform: events in, events out. The engine runs it in its own task,
/// counts received/sent, calls `tick` every `tick_interval`, and `flush` when its input
/// ends (shutdown, removal on reload).
pub trait FunctionTransform: Send + 'static {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>);

    fn transform_batch(&mut self, batch: Vec<Event>, out: &mut Vec<Event>) {
        for event in batch {
            self.transform(event, out);
        }
    }

    /// How often `tick` runs (e.g. to expire unanswered requests); `None` never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work; `now_ns` is wall-clock ns since the epoch.
    fn tick(&mut self, _now_ns: u64, _out: &mut Vec<Event>) {}

    /// Emit whatever is still held; the transform is dropped afterwards.
    fn flush(&mut self, _out: &mut Vec<Event>) {}
}

/// A sink consumes batches until its input ends, then flushes and returns.
pub trait Sink: Send + 'static {
    fn run(self: Box<Self>, cx: SinkContext) -> BoxFuture<Result<(), BoxError>>;
}

pub struct SinkContext {
    pub input: BatchReceiver,
    /// Fires on SIGUSR1 (logrotate): files are reopened.
    pub reopen: tokio::sync::broadcast::Receiver<()>,
    pub metrics: ComponentMetrics,
}
