//! The runtime source: a blocking thread reads and reassembles, and hands batches to the
//! pipeline with backpressure (a file has no reason to drop anything).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use perisco_engine::component::{BoxError, BoxFuture, BuildContext, Source, SourceContext, SourceOutput};
use perisco_engine::metrics::{Counter, Gauge, Registry};
use perisco_engine::topology::ShutdownSignal;
use tokio::runtime::Handle;
use tracing::{info, warn};

use crate::PcapConfig;
use crate::decode::Skip;
use crate::reader::{End, Next, PacketReader, ReadError};
use crate::reassembly::{Limits, Reassembler, Stats};

/// Events per batch handed to the pipeline.
const BATCH_EVENTS: usize = 1024;
/// Packets between two looks at the shutdown signal.
const SHUTDOWN_CHECK_EVERY: u64 = 256;
/// Added between two passes of a loop so a replayed packet never shares a timestamp with the last one.
const LOOP_PAUSE_NS: u64 = 1_000_000;

/// Why a capture file cannot be replayed; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("pcap source: cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("pcap source: cannot read {path}: {source}")]
    Read { path: PathBuf, source: ReadError },
}

pub struct PcapSource {
    path: PathBuf,
    /// The first pass's reader, opened at build time so a bad file fails the start.
    reader: Option<PacketReader>,
    limits: Limits,
    looping: bool,
    metrics: PcapMetrics,
}

impl PcapSource {
    pub fn open(path: PathBuf, config: &PcapConfig, cx: &BuildContext) -> Result<Self, PcapError> {
        let reader = open_reader(&path)?;
        Ok(PcapSource {
            path,
            reader: Some(reader),
            limits: config.limits(),
            looping: config.r#loop,
            metrics: PcapMetrics::register(&cx.registry, &cx.id),
        })
    }

    fn replay(mut self, rt: Handle, out: SourceOutput, shutdown: ShutdownSignal) -> Result<(), BoxError> {
        let mut reasm = Reassembler::new(self.limits);
        let mut shift = 0u64;
        let mut passes = 0u64;
        loop {
            let reader = match self.reader.take() {
                Some(r) => r,
                None => open_reader(&self.path)?,
            };
            let Some(span) = self.pass(reader, &mut reasm, shift, &rt, &out, &shutdown)? else {
                return Ok(()); // shutdown
            };
            if shutdown.is_set() {
                return Ok(());
            }
            reasm.finish();
            let batch = reasm.take_events();
            if !send(&rt, &out, &shutdown, batch) {
                return Ok(());
            }
            self.metrics.update(&reasm);
            passes += 1;
            self.metrics.passes.inc();
            if !self.looping {
                info!(path = %self.path.display(), packets = reasm.stats().packets, "pcap source: end of file");
                return Ok(());
            }
            let Some((first, last)) = span else {
                warn!(path = %self.path.display(), "pcap source: no packets in the file, nothing to loop over");
                return Ok(());
            };
            shift = shift.saturating_add(last - first + LOOP_PAUSE_NS);
            if passes == 1 {
                info!(path = %self.path.display(), "pcap source: looping");
            }
        }
    }

    /// One pass over the file. `Ok(None)` on shutdown; otherwise the (first, last) raw
    /// packet times of the pass, if it had packets.
    #[allow(clippy::type_complexity)]
    fn pass(
        &self,
        mut reader: PacketReader,
        reasm: &mut Reassembler,
        shift: u64,
        rt: &Handle,
        out: &SourceOutput,
        shutdown: &ShutdownSignal,
    ) -> Result<Option<Option<(u64, u64)>>, PcapError> {
        let mut span: Option<(u64, u64)> = None;
        let mut seen = 0u64;
        loop {
            seen += 1;
            if seen.is_multiple_of(SHUTDOWN_CHECK_EVERY) && shutdown.is_set() {
                return Ok(None);
            }
            let next = reader.next_packet(|p| {
                span = Some(span.map_or((p.ts_ns, p.ts_ns), |(a, b)| (a.min(p.ts_ns), b.max(p.ts_ns))));
                reasm.packet(&p, shift);
            });
            match next.map_err(|source| PcapError::Read {
                path: self.path.clone(),
                source,
            })? {
                Next::Packet => {
                    if reasm.pending_events() >= BATCH_EVENTS {
                        if !send(rt, out, shutdown, reasm.take_events()) {
                            return Ok(None);
                        }
                        self.metrics.update(reasm);
                    }
                }
                Next::End(End::Eof) => return Ok(Some(span)),
                Next::End(End::Truncated) => {
                    self.metrics.truncated_files.inc();
                    warn!(path = %self.path.display(), "pcap source: the file ends inside a packet (capture cut short); replayed what precedes");
                    return Ok(Some(span));
                }
            }
        }
    }
}

impl Source for PcapSource {
    fn run(self: Box<Self>, cx: SourceContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            let SourceContext { out, shutdown, .. } = cx;
            let rt = Handle::current();
            tokio::task::spawn_blocking(move || self.replay(rt, out, shutdown)).await?
        })
    }
}

fn open_reader(path: &PathBuf) -> Result<PacketReader, PcapError> {
    let file = File::open(path).map_err(|source| PcapError::Open {
        path: path.clone(),
        source,
    })?;
    PacketReader::new(BufReader::with_capacity(64 * 1024, file)).map_err(|source| PcapError::Read {
        path: path.clone(),
        source,
    })
}

/// Send with backpressure; false when shutdown came first.
fn send(rt: &Handle, out: &SourceOutput, shutdown: &ShutdownSignal, batch: Vec<perisco_engine::Event>) -> bool {
    if batch.is_empty() || shutdown.is_set() {
        return !shutdown.is_set();
    }
    let mut shutdown = shutdown.clone();
    rt.block_on(async {
        tokio::select! {
            biased;
            _ = out.send(batch) => true,
            _ = shutdown.wait() => false,
        }
    })
}

/// `perisco_pcap_*` series of one source, fed from the reassembler's counters.
struct PcapMetrics {
    packets: Counter,
    skipped: [Counter; 4],
    segments: Counter,
    connections: Counter,
    bytes: Counter,
    retransmitted_bytes: Counter,
    gaps: Counter,
    gap_bytes: Counter,
    buffer_overflows: Counter,
    evicted_max_connections: Counter,
    evicted_idle: Counter,
    late_segments: Counter,
    h2_walked: Counter,
    h2_walks_lost: Counter,
    passes: Counter,
    truncated_files: Counter,
    tracked: Gauge,
    last: std::sync::Mutex<Stats>,
}

impl PcapMetrics {
    fn register(r: &Registry, id: &str) -> Self {
        let l = &[("component_id", id)];
        let skipped = Skip::ALL.map(|s| {
            r.counter(
                "perisco_pcap_skipped_packets_total",
                "Frames without a usable TCP segment, by reason.",
                &[("component_id", id), ("reason", s.as_str())],
            )
        });
        let evicted = |reason| {
            r.counter(
                "perisco_pcap_evicted_connections_total",
                "Connections closed and forgotten to bound the state.",
                &[("component_id", id), ("reason", reason)],
            )
        };
        PcapMetrics {
            packets: r.counter("perisco_pcap_packets_total", "Frames read from the capture.", l),
            skipped,
            segments: r.counter("perisco_pcap_tcp_segments_total", "TCP segments reassembled.", l),
            connections: r.counter("perisco_pcap_connections_total", "TCP connections tracked.", l),
            bytes: r.counter(
                "perisco_pcap_payload_bytes_total",
                "Payload bytes delivered in order.",
                l,
            ),
            retransmitted_bytes: r.counter(
                "perisco_pcap_retransmitted_bytes_total",
                "Payload bytes seen again (retransmissions, overlaps) and trimmed.",
                l,
            ),
            gaps: r.counter(
                "perisco_pcap_gaps_total",
                "Holes in a TCP stream delivered as gap events.",
                l,
            ),
            gap_bytes: r.counter("perisco_pcap_gap_bytes_total", "Bytes missing in the gaps.", l),
            buffer_overflows: r.counter(
                "perisco_pcap_buffer_overflows_total",
                "Holes given up because the out-of-order buffer of a direction was full.",
                l,
            ),
            evicted_max_connections: evicted("max_connections"),
            evicted_idle: evicted("idle_timeout"),
            late_segments: r.counter(
                "perisco_pcap_late_segments_total",
                "Segments of connections that had already closed.",
                l,
            ),
            h2_walked: r.counter(
                "perisco_pcap_h2_walked_connections_total",
                "With max_capture_bytes: connections captured frame by frame as HTTP/2, as the eBPF probe would.",
                l,
            ),
            h2_walks_lost: r.counter(
                "perisco_pcap_h2_walks_lost_total",
                "With max_capture_bytes: HTTP/2 frame walks given up (a gap, or a transfer past the probe's limits).",
                l,
            ),
            passes: r.counter("perisco_pcap_passes_total", "Complete passes over the file.", l),
            truncated_files: r.counter(
                "perisco_pcap_truncated_files_total",
                "Passes that ended inside a packet (a capture cut short).",
                l,
            ),
            tracked: r.gauge(
                "perisco_pcap_tracked_connections",
                "Connections held by the reassembler.",
                l,
            ),
            last: std::sync::Mutex::new(Stats::default()),
        }
    }

    /// Add what changed since the last update.
    fn update(&self, reasm: &Reassembler) {
        let now = reasm.stats();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let d = |new: u64, old: u64| new.saturating_sub(old);
        self.packets.add(d(now.packets, last.packets));
        for (i, c) in self.skipped.iter().enumerate() {
            c.add(d(now.skipped[i], last.skipped[i]));
        }
        self.segments.add(d(now.segments, last.segments));
        self.connections.add(d(now.connections, last.connections));
        self.bytes.add(d(now.bytes, last.bytes));
        self.retransmitted_bytes
            .add(d(now.retransmitted_bytes, last.retransmitted_bytes));
        self.gaps.add(d(now.gaps, last.gaps));
        self.gap_bytes.add(d(now.gap_bytes, last.gap_bytes));
        self.buffer_overflows
            .add(d(now.buffer_overflows, last.buffer_overflows));
        self.evicted_max_connections
            .add(d(now.evicted_max_connections, last.evicted_max_connections));
        self.evicted_idle.add(d(now.evicted_idle, last.evicted_idle));
        self.late_segments.add(d(now.late_segments, last.late_segments));
        self.h2_walked
            .add(d(now.h2_walked_connections, last.h2_walked_connections));
        self.h2_walks_lost.add(d(now.h2_walks_lost, last.h2_walks_lost));
        self.tracked.set(i64::try_from(reasm.connections()).unwrap_or(i64::MAX));
        *last = now;
    }
}
