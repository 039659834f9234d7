//! Per-sink counters, on top of the engine's standard component counters.

use perisco_engine::component::BuildContext;
use perisco_engine::metrics::{ComponentMetrics, Counter, Gauge};

/// Why events were dropped; the `reason` label of `perisco_sink_dropped_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `buffer.when_full = "drop_newest"` and the buffer was full.
    BufferFull,
    /// The server refused them for good (4xx other than 408/429, a bulk item error...).
    Rejected,
    /// The event could not be serialised or routed.
    Encode,
    /// `retry.max_attempts` used up.
    RetriesExhausted,
    /// Still undelivered when `retry.flush_timeout` ran out after the input ended.
    Shutdown,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::Rejected => "rejected",
            DropReason::Encode => "encode",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Shutdown => "shutdown",
        }
    }

    const ALL: [DropReason; 5] = [
        DropReason::BufferFull,
        DropReason::Rejected,
        DropReason::Encode,
        DropReason::RetriesExhausted,
        DropReason::Shutdown,
    ];
}

/// `perisco_sink_{delivered,retried,dropped}_events_total{component_id}` and the buffer
/// gauge; every drop also counts in the engine's `discarded`.
#[derive(Clone, Debug, Default)]
pub struct SinkCounters {
    pub delivered: Counter,
    pub retried: Counter,
    dropped: [Counter; 5],
    pub buffered: Gauge,
    pub standard: ComponentMetrics,
}

impl SinkCounters {
    pub fn register(cx: &BuildContext) -> Self {
        let id: &str = &cx.id;
        let l = [("component_id", id)];
        let dropped = DropReason::ALL.map(|r| {
            cx.registry.counter(
                "perisco_sink_dropped_events_total",
                "Events a sink gave up on, by reason (buffer_full, rejected, encode, retries_exhausted, shutdown).",
                &[("component_id", id), ("reason", r.as_str())],
            )
        });
        SinkCounters {
            delivered: cx.registry.counter(
                "perisco_sink_delivered_events_total",
                "Events acknowledged by the destination (delivery report, bulk item status, 2xx).",
                &l,
            ),
            retried: cx.registry.counter(
                "perisco_sink_retried_events_total",
                "Events sent again after a transient failure (each retry of each event counts).",
                &l,
            ),
            dropped,
            buffered: cx.registry.gauge(
                "perisco_sink_buffer_events",
                "Events waiting in the sink's own buffer.",
                &l,
            ),
            standard: cx.metrics.clone(),
        }
    }

    pub fn delivered(&self, n: u64) {
        if n > 0 {
            self.delivered.add(n);
            self.standard.sent.add(n);
        }
    }

    pub fn dropped(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.dropped[reason as usize].add(n);
            self.standard.discarded.add(n);
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(Counter::get).sum()
    }

    pub fn dropped_by(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].get()
    }
}
