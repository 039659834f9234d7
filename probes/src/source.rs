//! The running `ebpf_socket` source: loads the probe, reads the ring buffer, sends
//! batches without ever blocking, applies filter reloads in place, detaches on shutdown.

use perisco_engine::FastMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use perisco_engine::component::{BoxError, BoxFuture, BuildContext, Source, SourceContext};
use perisco_engine::event::{Direction, Event, SocketData, SocketEventKind};
use perisco_engine::metrics::{Counter, Gauge, Registry};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::config::EbpfSocketConfig;
use crate::events::Assembler;
use crate::loader::{KernelStats, Probe};

pub struct EbpfSocket {
    cfg: EbpfSocketConfig,
    id: Arc<str>,
    m: Metrics,
}

/// `perisco_ebpf_*` series, labelled with `component_id`.
#[derive(Clone)]
struct Metrics {
    emitted: Counter,
    ring_dropped: Counter,
    read_errors: Counter,
    filtered: Counter,
    local_duplicates: Counter,
    late_transfers: Counter,
    h2_walked: Counter,
    h2_walks_lost: Counter,
    gaps: Counter,
    rejected: Counter,
    batches_dropped: Counter,
    connections: Gauge,
    attached: Gauge,
    reconfigurations: Counter,
}

impl Metrics {
    fn new(r: &Registry, id: &str) -> Self {
        let l = &[("component_id", id)];
        Metrics {
            emitted: r.counter(
                "perisco_ebpf_kernel_events_total",
                "Records the kernel programs queued.",
                l,
            ),
            ring_dropped: r.counter(
                "perisco_ebpf_ring_dropped_total",
                "Records the kernel could not queue because the ring buffer was full.",
                l,
            ),
            read_errors: r.counter(
                "perisco_ebpf_read_errors_total",
                "Failed kernel/user memory reads in the programs.",
                l,
            ),
            filtered: r.counter(
                "perisco_ebpf_filtered_total",
                "Transfers and opens skipped in the kernel by cidrs/ports/roles.",
                l,
            ),
            local_duplicates: r.counter(
                "perisco_ebpf_local_duplicates_total",
                "Client connections not reported because their server end is traced on this host.",
                l,
            ),
            late_transfers: r.counter(
                "perisco_ebpf_late_transfers_total",
                "Transfers on sockets whose connection had already closed (e.g. a read after a lingering close): not captured.",
                l,
            ),
            h2_walked: r.counter(
                "perisco_ebpf_h2_walked_connections_total",
                "HTTP/2 connections (prior knowledge or h2c Upgrade) walked frame by frame so that every header block is captured.",
                l,
            ),
            h2_walks_lost: r.counter(
                "perisco_ebpf_h2_walks_lost_total",
                "Directions of HTTP/2 connections whose frame walk was given up (a transfer too long to walk, or a record the ring refused): captured as a prefix from then on.",
                l,
            ),
            gaps: r.counter(
                "perisco_ebpf_gaps_total",
                "Gap events emitted (bytes lost or not capturable).",
                l,
            ),
            rejected: r.counter(
                "perisco_ebpf_rejected_records_total",
                "Malformed ring-buffer records.",
                l,
            ),
            batches_dropped: r.counter(
                "perisco_ebpf_batches_dropped_total",
                "Batches dropped because downstream was full (events counted as discarded).",
                l,
            ),
            connections: r.gauge("perisco_ebpf_connections", "Connections the source is tracking.", l),
            attached: r.gauge("perisco_ebpf_attached", "1 while the kernel programs are attached.", l),
            reconfigurations: r.counter(
                "perisco_ebpf_reconfigurations_total",
                "Config reloads applied to the kernel maps without detaching.",
                l,
            ),
        }
    }

    /// Kernel counters are absolute: add what changed since the last poll.
    fn kernel(&self, now: KernelStats, last: &mut KernelStats) {
        let d = |c: &Counter, n: u64, l: u64| c.add(n.saturating_sub(l));
        d(&self.emitted, now.emitted, last.emitted);
        d(&self.ring_dropped, now.ring_dropped, last.ring_dropped);
        d(&self.read_errors, now.read_errors, last.read_errors);
        d(&self.filtered, now.filtered, last.filtered);
        d(&self.local_duplicates, now.local_duplicates, last.local_duplicates);
        d(&self.late_transfers, now.late_transfers, last.late_transfers);
        d(&self.h2_walked, now.h2_walked, last.h2_walked);
        d(&self.h2_walks_lost, now.h2_walks_lost, last.h2_walks_lost);
        *last = now;
    }
}

impl EbpfSocket {
    pub fn new(cfg: EbpfSocketConfig, cx: &BuildContext) -> Self {
        EbpfSocket {
            m: Metrics::new(&cx.registry, &cx.id),
            cfg,
            id: cx.id.clone(),
        }
    }
}

/// Sends batches; a batch that finds downstream full is dropped and remembered as gaps on
/// its connections, emitted ahead of the next batch so parsers know bytes are missing.
struct Sender {
    batch_size: usize,
    batch: Vec<Event>,
    lost: FastMap<(u64, Direction), u64>,
    m: Metrics,
}

impl Sender {
    fn push(&mut self, cx: &SourceContext, e: Event) {
        self.batch.push(e);
        if self.batch.len() >= self.batch_size {
            self.flush(cx);
        }
    }

    fn flush(&mut self, cx: &SourceContext) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
        if !cx.out.has_capacity() {
            self.m.batches_dropped.inc();
            cx.metrics.discarded.add(batch.len() as u64);
            for e in &batch {
                if let Event::Socket(s) = e
                    && matches!(s.kind, SocketEventKind::Data | SocketEventKind::Gap)
                {
                    *self.lost.entry((s.conn_id, s.direction)).or_default() += u64::from(s.len);
                }
            }
            return;
        }
        let batch = if self.lost.is_empty() {
            batch
        } else {
            self.with_gaps(batch)
        };
        cx.out.try_send(batch);
    }

    /// Prefix `batch` with one Gap per (connection, direction) lost earlier, taking the
    /// connection identity from the first event of that connection in the batch.
    fn with_gaps(&mut self, batch: Vec<Event>) -> Vec<Event> {
        let mut out = Vec::with_capacity(batch.len() + self.lost.len());
        for e in &batch {
            let Event::Socket(s) = e else { continue };
            for dir in [Direction::Ingress, Direction::Egress] {
                if let Some(n) = self.lost.remove(&(s.conn_id, dir)) {
                    self.m.gaps.inc();
                    out.push(Event::Socket(SocketData {
                        kind: SocketEventKind::Gap,
                        direction: dir,
                        data: bytes::Bytes::new(),
                        len: n.min(u64::from(u32::MAX)) as u32,
                        ..s.clone()
                    }));
                }
            }
        }
        // Connections not in this batch keep their entry (bounded: dropped on Close).
        out.extend(batch);
        out
    }
}

/// How often the reader looks at the ring without being woken: the kernel only wakes it
/// when a backlog builds up (loader's `WAKEUP_FRACTION`), so this bounds record latency.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// Read what the ring holds (bounded, so shutdown and ticks are served under load) and
/// send the events built from it.
fn drain(
    rb: &mut RingBuf<MapData>,
    asm: &mut Assembler,
    scratch: &mut Vec<Event>,
    tx: &mut Sender,
    cx: &SourceContext,
) {
    let now = Instant::now();
    for _ in 0..65536 {
        let Some(item) = rb.next() else { break };
        if asm.push(&item, now, scratch).is_err() {
            tx.m.rejected.inc();
        }
        drop(item);
        for e in scratch.drain(..) {
            tx.push(cx, e);
        }
    }
    tx.flush(cx);
}

impl Source for EbpfSocket {
    fn run(self: Box<Self>, mut cx: SourceContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            let EbpfSocket { mut cfg, id, m } = *self;
            let mut probe = Probe::load(&cfg)?;
            // Loading parsed the kernel's BTF twice (~80 MiB, all freed by now): give it
            // back at once, or an idle agent would keep it resident.
            perisco_alloc::release_free_memory();
            tracing::info!(
                component_id = %id,
                hook = probe.active.hook.as_str(),
                "ebpf_socket attached {} hooks: {}",
                probe.active.hook.as_str(),
                probe.active.why
            );
            // SAFETY: the ring buffer owns its map fd, which stays open until the AsyncFd
            // (which owns the RingBuf) is dropped.
            let ring = unsafe { AsyncFd::register_with_interest(probe.take_ring()?, Interest::READABLE) }
                .map_err(std::io::Error::from)?;
            m.attached.set(1);
            let mut asm = Assembler::new();
            let mut tx = Sender {
                batch_size: cfg.batch_size,
                batch: Vec::new(),
                lost: FastMap::default(),
                m: m.clone(),
            };
            let mut last_stats = KernelStats::default();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut updates_open = true;
            let mut ring = ring;
            let mut scratch = Vec::with_capacity(64);
            let mut drain_timer = tokio::time::interval(DRAIN_EVERY);
            drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cx.shutdown.wait() => break,
                    guard = ring.readable_mut() => {
                        let mut guard = guard?;
                        drain(guard.get_inner_mut(), &mut asm, &mut scratch, &mut tx, &cx);
                        guard.clear_ready();
                    }
                    _ = drain_timer.tick() => {
                        drain(ring.get_mut(), &mut asm, &mut scratch, &mut tx, &cx);
                    }
                    changed = cx.updates.changed(), if updates_open => {
                        if changed.is_err() {
                            updates_open = false;
                            continue;
                        }
                        let new = cx.updates.borrow_and_update().clone();
                        if let Some(new) = (*new).downcast_ref::<EbpfSocketConfig>() {
                            match probe.apply(new) {
                                Ok(()) => {
                                    tracing::info!(component_id = %id, "ebpf_socket filters updated in place");
                                    m.reconfigurations.inc();
                                    cfg = new.clone();
                                    tx.batch_size = cfg.batch_size;
                                }
                                Err(e) => tracing::error!(component_id = %id, "ebpf_socket filter update failed: {e}"),
                            }
                        }
                    }
                    _ = tick.tick() => {
                        let now = Instant::now();
                        m.kernel(probe.stats(), &mut last_stats);
                        m.gaps.add(std::mem::take(&mut asm.gaps));
                        asm.sync_clock();
                        asm.evict_processes(now);
                        m.connections.set(asm.connections() as i64);
                        // Drop remembered losses of connections that closed meanwhile.
                        if tx.lost.len() > 65536 {
                            tx.lost.clear();
                        }
                    }
                }
            }
            // Records queued without a wakeup since the last drain are still in the ring.
            drain(ring.get_mut(), &mut asm, &mut scratch, &mut tx, &cx);
            m.kernel(probe.stats(), &mut last_stats);
            drop(ring);
            drop(probe);
            m.attached.set(0);
            tracing::info!(component_id = %id, "ebpf_socket detached");
            Ok(())
        })
    }
}
