//! Start, reload and stop a pipeline.
//!
//! Each component is a task. A transform or sink owns the receiving end of one bounded
//! channel; every producer that lists it in `inputs` holds a sender in its [`Fanout`].
//! A component ends when all its senders are gone and its channel is empty, so draining
//! is the natural order of things: stop the sources, and everything downstream flushes
//! and finishes behind them.
//!
//! Reload (after the new config validated): build everything new or changed first — a
//! failure leaves the running pipeline untouched; then stop removed/changed sources,
//! let removed/changed transforms and sinks drain (they keep their queued events and
//! finish them), start the new ones and rewire every producer's fanout in one swap each.
//! Unchanged components never stop and keep their state.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info, info_span, warn};

use super::fanout::{Batch, Fanout, Route};
use super::{BatchReceiver, ShutdownSignal};
use crate::api::ApiServer;
use crate::component::{
    BoxError, BuildContext, ComponentConfig, Components, FunctionTransform, Kind, Sink, SinkConfig, SinkContext,
    Source, SourceConfig, SourceContext, SourceOutput, TransformConfig,
};
use crate::config::{Config, ConfigDiff};
use crate::health::{HealthHandle, HealthRegistry, Status};
use crate::metrics::{ComponentMetrics, Counter, Registry};
use crate::record::now_ns;

struct RunningSource {
    shutdown: watch::Sender<bool>,
    updates: watch::Sender<Arc<dyn Any + Send + Sync>>,
    output: Fanout,
    task: JoinHandle<()>,
}

struct RunningNode {
    /// Kept so producers can be (re)wired to it; dropped when the node is removed.
    input: mpsc::Sender<Batch>,
    /// `None` for sinks.
    output: Option<Fanout>,
    task: JoinHandle<()>,
}

/// What a stop achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// Every channel drained and every sink flushed before the deadline.
    pub drained: bool,
}

pub struct RunningTopology<C: Components> {
    config: Arc<ArcSwap<Config<C>>>,
    registry: Arc<Registry>,
    health: Arc<HealthRegistry>,
    reopen: broadcast::Sender<()>,
    sources: HashMap<Arc<str>, RunningSource>,
    transforms: HashMap<Arc<str>, RunningNode>,
    sinks: HashMap<Arc<str>, RunningNode>,
    /// Replaced or removed components finishing their queued events.
    draining: Vec<JoinHandle<()>>,
    api: Option<ApiServer>,
    reloads_ok: Counter,
    reloads_failed: Counter,
    /// Bumped whenever a source task returns.
    source_finished: watch::Sender<u64>,
}

/// A component built but not yet started.
enum Built {
    Source(Box<dyn Source>, HealthHandle),
    Transform(Box<dyn FunctionTransform>, HealthHandle),
    Sink(Box<dyn Sink>, HealthHandle),
}

impl<C: Components> RunningTopology<C> {
    /// Build every component and start the pipeline. Errors name the component.
    pub async fn start(config: Config<C>, registry: Arc<Registry>) -> Result<Self, BoxError> {
        let health = HealthRegistry::new();
        let (reopen, _) = broadcast::channel(4);
        let mut topo = RunningTopology {
            reloads_ok: registry.counter(
                "perisco_config_reloads_total",
                "Configuration reloads, by result.",
                &[("result", "ok")],
            ),
            reloads_failed: registry.counter(
                "perisco_config_reloads_total",
                "Configuration reloads, by result.",
                &[("result", "failed")],
            ),
            config: Arc::new(ArcSwap::from_pointee(Config {
                api: None,
                global: config.global.clone(),
                sources: Default::default(),
                transforms: Default::default(),
                sinks: Default::default(),
                path: config.path.clone(),
            })),
            registry,
            health,
            reopen,
            sources: HashMap::new(),
            transforms: HashMap::new(),
            sinks: HashMap::new(),
            draining: Vec::new(),
            api: None,
            source_finished: watch::channel(0).0,
        };
        if let Some(api) = &config.api {
            topo.api = Some(ApiServer::start(api.address, topo.registry.clone(), topo.health.clone()).await?);
        }
        let diff = ConfigDiff::new(&topo.config.load(), &config);
        let built = topo.build(&config, &diff)?;
        topo.apply(config, diff, built);
        Ok(topo)
    }

    /// The config the pipeline runs now.
    pub fn config(&self) -> Arc<Config<C>> {
        self.config.load_full()
    }

    /// A handle on the live config that follows reloads.
    pub fn live_config(&self) -> Arc<ArcSwap<Config<C>>> {
        self.config.clone()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn health(&self) -> &Arc<HealthRegistry> {
        &self.health
    }

    /// SIGUSR1: sinks reopen their files.
    pub fn reopen(&self) {
        let _ = self.reopen.send(());
    }

    /// Apply a new, already validated config. On error nothing changed.
    pub async fn reload(&mut self, new: Config<C>) -> Result<(), BoxError> {
        let result = self.try_reload(new).await;
        match &result {
            Ok(()) => self.reloads_ok.inc(),
            Err(_) => self.reloads_failed.inc(),
        }
        result
    }

    /// Count a reload that failed before reaching the topology (invalid config).
    pub fn reload_failed(&self) {
        self.reloads_failed.inc();
    }

    async fn try_reload(&mut self, new: Config<C>) -> Result<(), BoxError> {
        let old = self.config.load_full();
        let diff = ConfigDiff::new(&old, &new);
        if diff.is_empty() && old.global == new.global {
            info!("configuration unchanged");
            return Ok(());
        }
        // Build first: if any component cannot be built, nothing has changed yet.
        let built = self.build(&new, &diff)?;
        if diff.api_changed {
            self.swap_api(old.api.as_ref(), new.api.as_ref()).await?;
        }
        info!(
            added = diff.sources.to_add.len() + diff.transforms.to_add.len() + diff.sinks.to_add.len(),
            changed = diff.sources.to_change.len() + diff.transforms.to_change.len() + diff.sinks.to_change.len(),
            removed = diff.sources.to_remove.len() + diff.transforms.to_remove.len() + diff.sinks.to_remove.len(),
            reconfigured = diff.sources.to_reconfigure.len(),
            "reloading pipeline"
        );
        self.apply(new, diff, built);
        Ok(())
    }

    /// Move `[api]` to its new address. The old server may hold the same address, so it
    /// stops first; if the new one cannot start, the old one is brought back.
    async fn swap_api(
        &mut self,
        old: Option<&crate::config::ApiConfig>,
        new: Option<&crate::config::ApiConfig>,
    ) -> Result<(), BoxError> {
        if let Some(a) = self.api.take() {
            a.stop().await;
        }
        let Some(new) = new else { return Ok(()) };
        match ApiServer::start(new.address, self.registry.clone(), self.health.clone()).await {
            Ok(s) => {
                self.api = Some(s);
                Ok(())
            }
            Err(e) => {
                if let Some(o) = old {
                    self.api = ApiServer::start(o.address, self.registry.clone(), self.health.clone())
                        .await
                        .ok();
                }
                Err(e)
            }
        }
    }

    /// Build what the diff adds or changes, all or nothing.
    fn build(&self, cfg: &Config<C>, diff: &ConfigDiff) -> Result<HashMap<Arc<str>, Built>, BoxError> {
        let mut built = HashMap::new();
        let dir = cfg.dir();
        let cx = |id: &Arc<str>, kind: Kind, type_name: &str| BuildContext {
            id: id.clone(),
            kind,
            metrics: ComponentMetrics::register(&self.registry, id, kind.as_str(), type_name),
            registry: self.registry.clone(),
            health: self.health.handle(id.clone()),
            config_dir: dir.clone(),
        };
        let with_id = |id: &Arc<str>, e: BoxError| -> BoxError { format!("component `{id}`: {e}").into() };
        for id in diff.sources.to_add.iter().chain(&diff.sources.to_change) {
            let c = &cfg.sources[id];
            let cx = cx(id, Kind::Source, c.type_name());
            let s = c.build(&cx).map_err(|e| with_id(id, e))?;
            built.insert(id.clone(), Built::Source(s, cx.health));
        }
        for id in diff.transforms.to_add.iter().chain(&diff.transforms.to_change) {
            let c = &cfg.transforms[id].inner;
            let cx = cx(id, Kind::Transform, c.type_name());
            let t = c.build(&cx).map_err(|e| with_id(id, e))?;
            built.insert(id.clone(), Built::Transform(t, cx.health));
        }
        for id in diff.sinks.to_add.iter().chain(&diff.sinks.to_change) {
            let c = &cfg.sinks[id].inner;
            let cx = cx(id, Kind::Sink, c.type_name());
            let s = c.build(&cx).map_err(|e| with_id(id, e))?;
            built.insert(id.clone(), Built::Sink(s, cx.health));
            if let Some(check) = c.healthcheck() {
                let id = id.clone();
                tokio::spawn(async move {
                    match check.await {
                        Ok(()) => info!(component = %id, "sink healthcheck passed"),
                        Err(e) => {
                            warn!(component = %id, error = %e, "sink healthcheck failed; the pipeline runs and the sink retries")
                        }
                    }
                });
            }
        }
        Ok(built)
    }

    fn apply(&mut self, new: Config<C>, diff: ConfigDiff, mut built: HashMap<Arc<str>, Built>) {
        // Sources reconfigured in place.
        for id in &diff.sources.to_reconfigure {
            if let Some(s) = self.sources.get(id) {
                let cfg: Arc<dyn Any + Send + Sync> = new.sources[id].update_payload();
                let _ = s.updates.send(cfg);
                info!(component = %id, "source reconfigured in place");
            }
        }
        // Stop removed and changed sources; their last batches still flow downstream.
        for id in diff.sources.to_remove.iter().chain(&diff.sources.to_change) {
            if let Some(s) = self.sources.remove(id) {
                let _ = s.shutdown.send(true);
                self.draining.push(s.task);
                if diff.sources.to_remove.contains(id) {
                    self.health.remove(id);
                }
            }
        }
        // Removed and changed transforms and sinks drain once rewired away from.
        for (map, d) in [(&mut self.transforms, &diff.transforms), (&mut self.sinks, &diff.sinks)] {
            for id in d.to_remove.iter().chain(&d.to_change) {
                if let Some(n) = map.remove(id) {
                    drop(n.input);
                    self.draining.push(n.task);
                }
            }
        }
        let capacity = new.global.channel_capacity;
        // Start consumers first so sources have somewhere to send.
        for id in diff.sinks.to_add.iter().chain(&diff.sinks.to_change) {
            if let Some(Built::Sink(s, health)) = built.remove(id) {
                let c = &new.sinks[id].inner;
                let node = self.spawn_sink(id.clone(), c.type_name(), s, health, capacity);
                self.sinks.insert(id.clone(), node);
            }
        }
        for id in diff.transforms.to_add.iter().chain(&diff.transforms.to_change) {
            if let Some(Built::Transform(t, health)) = built.remove(id) {
                let c = &new.transforms[id].inner;
                let node = self.spawn_transform(id.clone(), c.type_name(), t, health, capacity);
                self.transforms.insert(id.clone(), node);
            }
        }
        // Wire before sources start so their first batch has routes.
        let pending: Vec<_> = diff
            .sources
            .to_add
            .iter()
            .chain(&diff.sources.to_change)
            .filter_map(|id| match built.remove(id) {
                Some(Built::Source(s, h)) => Some((id.clone(), s, h, Fanout::new())),
                _ => None,
            })
            .collect();
        let extra: Vec<(&str, &Fanout)> = pending.iter().map(|(id, _, _, f)| (id.as_ref(), f)).collect();
        self.rewire(&new, &extra);
        for (id, s, health, output) in pending {
            let running = self.spawn_source(id.clone(), new.sources[&id].type_name(), s, health, output);
            self.sources.insert(id, running);
        }
        self.draining.retain(|t| !t.is_finished());
        self.config.store(Arc::new(new));
    }

    /// Point every producer at the current consumers of its output.
    /// `extra`: fanouts of sources about to start.
    fn rewire(&self, cfg: &Config<C>, extra: &[(&str, &Fanout)]) {
        let mut routes: HashMap<&str, Vec<Route>> = HashMap::new();
        let consumers = cfg
            .transforms
            .iter()
            .map(|(id, n)| (id, &n.inputs, self.transforms.get(id)))
            .chain(cfg.sinks.iter().map(|(id, n)| (id, &n.inputs, self.sinks.get(id))));
        for (id, inputs, node) in consumers {
            let Some(node) = node else { continue };
            for input in inputs {
                routes.entry(input.as_ref()).or_default().push(Route {
                    to: id.clone(),
                    tx: node.input.clone(),
                });
            }
        }
        // Consumers before producers: a new transform must have its routes before anything
        // can send to it, or its first outputs would go nowhere.
        for id in crate::config::topo_order(cfg).iter().rev() {
            if let Some(out) = self.transforms.get(id).and_then(|t| t.output.as_ref()) {
                out.set_routes(routes.remove(id.as_ref()).unwrap_or_default());
            }
        }
        for (id, s) in &self.sources {
            s.output.set_routes(routes.remove(id.as_ref()).unwrap_or_default());
        }
        for (id, f) in extra {
            f.set_routes(routes.remove(id).unwrap_or_default());
        }
    }

    fn spawn_source(
        &self,
        id: Arc<str>,
        type_name: &'static str,
        source: Box<dyn Source>,
        health: HealthHandle,
        output: Fanout,
    ) -> RunningSource {
        let metrics = ComponentMetrics::register(&self.registry, &id, "source", type_name);
        let (shutdown_tx, shutdown) = ShutdownSignal::new();
        let (updates_tx, updates) = watch::channel::<Arc<dyn Any + Send + Sync>>(Arc::new(()));
        let cx = SourceContext {
            out: SourceOutput {
                fanout: output.clone(),
                metrics: metrics.clone(),
            },
            shutdown,
            updates,
            metrics,
        };
        mark_running(&health);
        let fanout = output.clone();
        let finished = self.source_finished.clone();
        let span = info_span!("source", component = %id, r#type = type_name);
        let task = tokio::spawn(
            async move {
                let r = source.run(cx).await;
                fanout.close();
                finish(&health, r);
                finished.send_modify(|n| *n += 1);
            }
            .instrument(span),
        );
        RunningSource {
            shutdown: shutdown_tx,
            updates: updates_tx,
            output,
            task,
        }
    }

    fn spawn_transform(
        &self,
        id: Arc<str>,
        type_name: &'static str,
        mut t: Box<dyn FunctionTransform>,
        health: HealthHandle,
        capacity: usize,
    ) -> RunningNode {
        let metrics = ComponentMetrics::register(&self.registry, &id, "transform", type_name);
        let (tx, rx) = mpsc::channel::<Batch>(capacity);
        self.register_channel_gauge(&id, &tx);
        let mut input = BatchReceiver::new(rx, metrics.clone());
        let output = Fanout::new();
        let fanout = output.clone();
        mark_running(&health);
        let span = info_span!("transform", component = %id, r#type = type_name);
        let task = tokio::spawn(
            async move {
                let mut out: Vec<crate::event::Event> = Vec::new();
                let mut ticker = t.tick_interval().map(|d| {
                    let mut i = tokio::time::interval(d);
                    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    i
                });
                loop {
                    let batch = match &mut ticker {
                        Some(tk) => tokio::select! {
                            b = input.recv() => b,
                            _ = tk.tick() => {
                                t.tick(now_ns(), &mut out);
                                emit(&fanout, &metrics, &mut out).await;
                                continue;
                            }
                        },
                        None => input.recv().await,
                    };
                    let Some(batch) = batch else { break };
                    t.transform_batch(batch, &mut out);
                    emit(&fanout, &metrics, &mut out).await;
                }
                t.flush(&mut out);
                emit(&fanout, &metrics, &mut out).await;
                fanout.close();
                health.set(Status::Finished);
            }
            .instrument(span),
        );
        RunningNode {
            input: tx,
            output: Some(output),
            task,
        }
    }

    fn spawn_sink(
        &self,
        id: Arc<str>,
        type_name: &'static str,
        sink: Box<dyn Sink>,
        health: HealthHandle,
        capacity: usize,
    ) -> RunningNode {
        let metrics = ComponentMetrics::register(&self.registry, &id, "sink", type_name);
        let (tx, rx) = mpsc::channel::<Batch>(capacity);
        self.register_channel_gauge(&id, &tx);
        let cx = SinkContext {
            input: BatchReceiver::new(rx, metrics.clone()),
            reopen: self.reopen.subscribe(),
            metrics,
        };
        mark_running(&health);
        let span = info_span!("sink", component = %id, r#type = type_name);
        let task = tokio::spawn(
            async move {
                let r = sink.run(cx).await;
                finish(&health, r);
            }
            .instrument(span),
        );
        RunningNode {
            input: tx,
            output: None,
            task,
        }
    }

    fn register_channel_gauge(&self, id: &str, tx: &mpsc::Sender<Batch>) {
        let weak = tx.downgrade();
        let cap = tx.max_capacity();
        self.registry.gauge_fn(
            "perisco_channel_used_batches",
            "Batches waiting in the input channel of a component.",
            &[("component_id", id)],
            Box::new(move || weak.upgrade().map(|t| (cap - t.capacity()) as f64)),
        );
        self.registry.gauge_fn(
            "perisco_channel_capacity_batches",
            "Capacity of the input channel of a component, in batches.",
            &[("component_id", id)],
            Box::new(move || Some(cap as f64)),
        );
    }

    /// True once every source has returned (finite sources done) — the pipeline then drains.
    pub fn sources_finished(&self) -> bool {
        self.sources.values().all(|s| s.task.is_finished())
    }

    /// Wait until every source has returned.
    pub async fn wait_sources_finished(&self) {
        let mut rx = self.source_finished.subscribe();
        loop {
            if self.sources_finished() {
                return;
            }
            // A task is "finished" a moment after its last statement; re-check shortly.
            let _ = tokio::time::timeout(Duration::from_millis(20), rx.changed()).await;
        }
    }

    /// Stop the sources and let everything downstream drain and flush, up to `deadline`.
    pub async fn stop(mut self, deadline: Duration) -> StopReport {
        for s in self.sources.values() {
            let _ = s.shutdown.send(true);
        }
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        tasks.extend(self.sources.drain().map(|(_, s)| s.task));
        for (_, n) in self.transforms.drain().chain(self.sinks.drain()) {
            drop(n.input);
            tasks.push(n.task);
        }
        tasks.append(&mut self.draining);
        let all = async {
            for t in tasks.iter_mut() {
                let _ = t.await;
            }
        };
        let drained = tokio::time::timeout(deadline, all).await.is_ok();
        if !drained {
            error!(
                ?deadline,
                "shutdown deadline passed before every component drained; aborting the rest"
            );
            for t in &tasks {
                t.abort();
            }
        }
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        StopReport { drained }
    }
}

fn mark_running(health: &HealthHandle) {
    // A component may already have reported itself degraded while building.
    if !matches!(health.get(), Some(Status::Degraded(_))) {
        health.set(Status::Running);
    }
}

fn finish(health: &HealthHandle, r: Result<(), BoxError>) {
    match r {
        Ok(()) => health.set(Status::Finished),
        Err(e) => {
            error!(error = %e, "component failed");
            health.set(Status::Failed(e.to_string()));
        }
    }
}

async fn emit(fanout: &Fanout, metrics: &ComponentMetrics, out: &mut Vec<crate::event::Event>) {
    if out.is_empty() {
        return;
    }
    let batch = std::mem::take(out);
    metrics.sent.add(batch.len() as u64);
    fanout.send(batch).await;
}
