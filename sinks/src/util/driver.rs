//! The loop every sink runs: input channel → encode → bounded buffer → batch → deliver
//! with retries. Sinks only say how to route an event ([`Router`]) and how to deliver a
//! batch ([`Deliver`]); buffering, batching, retries, counting and the final flush live
//! here, once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use perisco_engine::component::{BoxError, SinkContext};
use perisco_engine::event::Event;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::config::{DeliverySettings, WhenFull};
use super::metrics::{DropReason, SinkCounters};
use super::pool::BufferPool;
use super::retry::Backoff;

/// One encoded event waiting for delivery.
#[derive(Debug, Clone)]
pub struct Item {
    /// The event's JSON line (`Event::write_json`), without the newline.
    pub line: Bytes,
    /// Where it goes inside the destination (Kafka topic, Elasticsearch index).
    pub route: Option<Arc<str>>,
    /// Kafka message key.
    pub key: Option<Bytes>,
}

/// Routing decided per event before buffering.
pub trait Router: Send + 'static {
    /// `Err` drops the event (counted as `encode`).
    fn route(&mut self, _event: &Event, _item: &mut Item) -> Result<(), String> {
        Ok(())
    }
}

/// No routing: the http and file sinks.
pub struct NoRoute;
impl Router for NoRoute {}

/// What one delivery attempt achieved.
#[derive(Debug)]
pub enum Outcome {
    Delivered,
    /// Nothing (known to be) delivered; the whole batch may be sent again.
    Transient(String),
    /// The whole batch was refused for good.
    Permanent(String),
    /// Item by item: `retry` failed transiently, `rejected` were refused for good, the rest
    /// was delivered.
    Partial {
        retry: Vec<Item>,
        rejected: usize,
        reason: String,
    },
}

pub trait Deliver: Send + 'static {
    /// One attempt at delivering `batch`.
    fn deliver(&mut self, batch: &[Item]) -> impl Future<Output = Outcome> + Send;

    /// SIGUSR1: reopen files (only the file sink cares).
    fn reopen(&mut self) {}
}

/// Run a sink until its input ends and everything buffered is delivered or dropped.
pub async fn run<R: Router, D: Deliver>(
    cx: SinkContext,
    settings: DeliverySettings,
    counters: SinkCounters,
    router: R,
    deliver: D,
) -> Result<(), BoxError> {
    let SinkContext { input, reopen, .. } = cx;
    let (tx, rx) = mpsc::channel::<Item>(settings.buffer.max_events);
    // Set to the flush deadline once the input has ended.
    let (deadline_tx, deadline_rx) = watch::channel::<Option<Instant>>(None);
    let reader = read_input(input, tx, settings, counters.clone(), router, deadline_tx);
    let mut writer = Writer {
        settings,
        counters,
        deliver,
        deadline: deadline_rx,
        giving_up: false,
    };
    let writer = writer.run(rx, reopen);
    tokio::join!(reader, writer);
    Ok(())
}

async fn read_input<R: Router>(
    mut input: perisco_engine::topology::BatchReceiver,
    tx: mpsc::Sender<Item>,
    settings: DeliverySettings,
    counters: SinkCounters,
    mut router: R,
    deadline: watch::Sender<Option<Instant>>,
) {
    // A batch is serialised into one buffer and each item is a slice of it: one allocation
    // per batch instead of one per event (the buffer lives until its last item is delivered).
    let mut bytes_per_event = 1024;
    let mut spans = Vec::new();
    let buffers = BufferPool::default();
    while let Some(batch) = input.recv().await {
        let mut json = buffers.take(batch.len() * bytes_per_event);
        // A slice keeps its whole batch's buffer alive: when this batch may be partly dropped
        // (buffer nearly full), the items that get in are copied out instead, so memory stays
        // bounded by what the buffer holds.
        let share = matches!(settings.buffer.when_full, WhenFull::Block) || tx.capacity() >= batch.len();
        spans.clear();
        for event in &batch {
            let start = json.len();
            match event.write_json(&mut json) {
                Ok(()) => spans.push(Some(start..json.len())),
                Err(e) => {
                    json.truncate(start);
                    spans.push(None);
                    counters.dropped(DropReason::Encode, 1);
                    counters.standard.errors.inc();
                    error!(error = %e, "cannot serialise event; dropped");
                }
            }
        }
        if !batch.is_empty() {
            bytes_per_event = (json.len() / batch.len() + 64).min(64 * 1024);
        }
        let json = buffers.share(json);
        for (event, span) in batch.iter().zip(spans.drain(..)) {
            let Some(span) = span else { continue };
            let mut item = Item {
                line: if share {
                    json.slice(span)
                } else {
                    Bytes::copy_from_slice(&json[span])
                },
                route: None,
                key: None,
            };
            if let Err(e) = router.route(event, &mut item) {
                counters.dropped(DropReason::Encode, 1);
                counters.standard.errors.inc();
                error!(error = %e, "cannot route event; dropped");
                continue;
            }
            match settings.buffer.when_full {
                WhenFull::Block => {
                    if tx.send(item).await.is_err() {
                        return; // the writer is gone (cannot happen while joined)
                    }
                    counters.buffered.add(1);
                }
                WhenFull::DropNewest => match tx.try_send(item) {
                    Ok(()) => counters.buffered.add(1),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        counters.dropped(DropReason::BufferFull, 1);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                },
            }
        }
    }
    let _ = deadline.send(Some(Instant::now() + settings.retry.flush_timeout));
    // Dropping `tx` lets the writer see the end once the buffer is empty.
}

struct Writer<D> {
    settings: DeliverySettings,
    counters: SinkCounters,
    deliver: D,
    deadline: watch::Receiver<Option<Instant>>,
    /// Past the flush deadline with failures: everything left is dropped, no more attempts.
    giving_up: bool,
}

impl<D: Deliver> Writer<D> {
    async fn run(&mut self, mut rx: mpsc::Receiver<Item>, mut reopen: tokio::sync::broadcast::Receiver<()>) {
        let batch_cfg = self.settings.batch;
        let mut carry: Option<Item> = None;
        let mut reopen_open = true;
        let mut last_len = 1;
        loop {
            let first = match carry.take() {
                Some(i) => i,
                None => {
                    let got = tokio::select! {
                        // A reopen (SIGUSR1 after logrotate renamed the file) goes before
                        // events that arrived at the same time: they belong in the new file.
                        biased;
                        r = reopen.recv(), if reopen_open => {
                            match r {
                                Ok(()) | Err(RecvError::Lagged(_)) => self.deliver.reopen(),
                                // No more signals will come: stop polling (it would spin).
                                Err(RecvError::Closed) => reopen_open = false,
                            }
                            continue;
                        }
                        i = rx.recv() => i,
                    };
                    match got {
                        Some(i) => {
                            self.counters.buffered.add(-1);
                            i
                        }
                        None => break,
                    }
                }
            };
            let mut bytes = first.line.len();
            // Room for as many as the last batch had: a batch grown one push at a time
            // reallocates about ten times on the way to a thousand items.
            let mut batch = Vec::with_capacity(last_len.clamp(1, batch_cfg.max_events));
            batch.push(first);
            let batch_deadline = Instant::now() + batch_cfg.timeout;
            let mut yielded = false;
            while batch.len() < batch_cfg.max_events && bytes < batch_cfg.max_bytes {
                let next = match rx.try_recv() {
                    Ok(i) => {
                        yielded = false;
                        Some(i)
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    // "Send what is there": first let the reader queue what it already
                    // holds, or a busy stream is written one event per batch.
                    Err(mpsc::error::TryRecvError::Empty) if batch_cfg.timeout.is_zero() => {
                        if yielded {
                            None
                        } else {
                            yielded = true;
                            tokio::task::yield_now().await;
                            continue;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {
                        tokio::select! {
                            i = rx.recv() => i,
                            _ = tokio::time::sleep_until(batch_deadline) => None,
                        }
                    }
                };
                let Some(item) = next else { break };
                self.counters.buffered.add(-1);
                if bytes + item.line.len() > batch_cfg.max_bytes {
                    carry = Some(item);
                    break;
                }
                bytes += item.line.len();
                batch.push(item);
            }
            last_len = batch.len();
            self.send(batch).await;
        }
        info!("sink flushed: input ended and the buffer is empty");
    }

    /// Deliver one batch, retrying transient failures until delivered, `max_attempts`, or
    /// the flush deadline.
    async fn send(&mut self, mut batch: Vec<Item>) {
        let retry = self.settings.retry;
        if self.giving_up {
            self.counters.dropped(DropReason::Shutdown, batch.len() as u64);
            return;
        }
        let mut backoff = Backoff::new(&retry);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let n = batch.len();
            let outcome = match self.remaining() {
                // Draining: do not let one slow attempt outlive the deadline.
                Some(left) => match tokio::time::timeout(left, self.deliver.deliver(&batch)).await {
                    Ok(o) => o,
                    Err(_) => Outcome::Transient("flush deadline reached during the attempt".into()),
                },
                None => self.deliver.deliver(&batch).await,
            };
            let reason = match outcome {
                Outcome::Delivered => {
                    self.counters.delivered(n as u64);
                    if attempt > 1 {
                        info!(events = n, attempt, "delivered after retrying");
                    }
                    return;
                }
                Outcome::Permanent(reason) => {
                    self.counters.standard.errors.inc();
                    self.counters.dropped(DropReason::Rejected, n as u64);
                    error!(events = n, %reason, "batch refused by the destination (not retried); events dropped");
                    return;
                }
                Outcome::Partial {
                    retry,
                    rejected,
                    reason,
                } => {
                    let delivered = n.saturating_sub(retry.len() + rejected);
                    self.counters.delivered(delivered as u64);
                    if rejected > 0 {
                        self.counters.standard.errors.inc();
                        self.counters.dropped(DropReason::Rejected, rejected as u64);
                        error!(events = rejected, %reason, "events refused by the destination (not retried); dropped");
                    }
                    if retry.is_empty() {
                        return;
                    }
                    batch = retry;
                    reason
                }
                Outcome::Transient(reason) => reason,
            };
            self.counters.standard.errors.inc();
            let left = batch.len() as u64;
            if retry.max_attempts.is_some_and(|m| attempt >= m) {
                self.counters.dropped(DropReason::RetriesExhausted, left);
                error!(events = left, attempt, %reason, "retries exhausted (retry.max_attempts); events dropped");
                return;
            }
            let wait = backoff.next_wait();
            let wait = match self.remaining() {
                Some(left_time) if left_time.is_zero() => {
                    self.giving_up = true;
                    self.counters.dropped(DropReason::Shutdown, left);
                    error!(
                        events = left,
                        %reason,
                        "flush timeout (retry.flush_timeout) reached after the input ended; dropping this batch and everything still buffered"
                    );
                    return;
                }
                Some(left_time) => wait.min(left_time),
                None => wait,
            };
            warn!(events = left, attempt, ?wait, %reason, "delivery failed; will retry");
            tokio::time::sleep(wait).await;
            self.counters.retried.add(left);
        }
    }

    /// Time left before the flush deadline, once the input has ended.
    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .borrow()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use perisco_engine::component::{BuildContext, Kind};
    use perisco_engine::metrics::{ComponentMetrics, Registry};
    use perisco_engine::topology::BatchReceiver;

    use super::*;
    use crate::util::config::{BatchSettings, BufferConfig, RetryConfig};

    /// Fails transiently `fail_first` times, then delivers; records batch sizes.
    struct Flaky {
        fail_first: usize,
        calls: Arc<AtomicUsize>,
        sizes: Arc<std::sync::Mutex<Vec<usize>>>,
    }

    impl Deliver for Flaky {
        async fn deliver(&mut self, batch: &[Item]) -> Outcome {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            self.sizes.lock().unwrap().push(batch.len());
            if n < self.fail_first {
                Outcome::Transient("down".into())
            } else {
                Outcome::Delivered
            }
        }
    }

    fn setup(retry: RetryConfig, batch: BatchSettings) -> (SinkCounters, DeliverySettings, Arc<Registry>) {
        let registry = Registry::new();
        let cx = BuildContext {
            id: "t".into(),
            kind: Kind::Sink,
            metrics: ComponentMetrics::register(&registry, "t", "sink", "test"),
            registry: registry.clone(),
            health: perisco_engine::health::HealthRegistry::new().handle("t".into()),
            config_dir: None,
        };
        let settings = DeliverySettings {
            batch,
            buffer: BufferConfig::default(),
            retry,
        };
        (SinkCounters::register(&cx), settings, registry)
    }

    fn events(n: u64) -> Vec<Event> {
        let p = Arc::new(perisco_engine::event::ProcessInfo::default());
        (0..n).map(|i| perisco_engine::testing::socket_event(i, &p)).collect()
    }

    async fn drive(counters: SinkCounters, settings: DeliverySettings, d: Flaky, n: u64) {
        let (tx, input) = BatchReceiver::for_test(4);
        let (_keep, reopen) = tokio::sync::broadcast::channel(1);
        let cx = SinkContext {
            input,
            reopen,
            metrics: counters.standard.clone(),
        };
        let task = tokio::spawn(run(cx, settings, counters, NoRoute, d));
        tx.send(events(n)).await.unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    fn flaky(fail_first: usize) -> (Flaky, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<usize>>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        (
            Flaky {
                fail_first,
                calls: calls.clone(),
                sizes: sizes.clone(),
            },
            calls,
            sizes,
        )
    }

    const BATCH: BatchSettings = BatchSettings {
        max_events: 10,
        max_bytes: 1 << 20,
        timeout: Duration::ZERO,
    };

    #[tokio::test]
    async fn batches_are_cut_by_max_events_and_retried_until_delivered() {
        let retry = RetryConfig {
            initial_backoff: Duration::from_millis(1),
            ..RetryConfig::default()
        };
        let (c, s, _) = setup(retry, BATCH);
        let (d, calls, sizes) = flaky(3);
        drive(c.clone(), s, d, 25).await;
        assert_eq!(c.delivered.get(), 25);
        assert_eq!(c.retried.get(), 30, "the first batch of 10 was sent again 3 times");
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        assert_eq!(*sizes.lock().unwrap(), [10, 10, 10, 10, 10, 5]);
        assert_eq!(c.dropped_total(), 0);
    }

    #[tokio::test]
    async fn max_bytes_cuts_batches() {
        let retry = RetryConfig::default();
        let one = {
            let mut v = Vec::new();
            events(1)[0].write_json(&mut v).unwrap();
            v.len()
        };
        let (c, s, _) = setup(
            retry,
            BatchSettings {
                max_events: 100,
                max_bytes: one * 3,
                timeout: Duration::ZERO,
            },
        );
        let (d, _, sizes) = flaky(0);
        drive(c.clone(), s, d, 7).await;
        assert_eq!(*sizes.lock().unwrap(), [3, 3, 1]);
        assert_eq!(c.delivered.get(), 7);
    }

    #[tokio::test]
    async fn max_attempts_drops_and_counts() {
        let retry = RetryConfig {
            initial_backoff: Duration::from_millis(1),
            max_attempts: Some(2),
            ..RetryConfig::default()
        };
        let (c, s, _) = setup(retry, BATCH);
        let (d, calls, _) = flaky(usize::MAX);
        drive(c.clone(), s, d, 20).await;
        assert_eq!(c.dropped_by(DropReason::RetriesExhausted), 20);
        assert_eq!(calls.load(Ordering::SeqCst), 4, "2 attempts per batch");
        assert_eq!(c.standard.discarded.get(), 20);
    }

    #[tokio::test]
    async fn flush_timeout_bounds_the_final_flush_and_counts_the_rest() {
        let retry = RetryConfig {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
            flush_timeout: Duration::from_millis(300),
            ..RetryConfig::default()
        };
        let (c, s, _) = setup(retry, BATCH);
        let (d, _, _) = flaky(usize::MAX);
        let start = std::time::Instant::now();
        drive(c.clone(), s, d, 35).await;
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(c.dropped_by(DropReason::Shutdown), 35);
        assert_eq!(c.delivered.get(), 0);
    }
}
