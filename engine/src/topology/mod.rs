//! Running pipelines: components as tasks joined by bounded channels of batches.

pub mod fanout;
mod running;

pub use running::{RunningTopology, StopReport};

use tokio::sync::{mpsc, watch};

use crate::event::Event;
use crate::metrics::ComponentMetrics;

/// The input of a transform or sink. `recv` returns `None` once every upstream is gone
/// (shutdown, or the component was replaced on reload) and the channel is empty: time to
/// flush and return.
pub struct BatchReceiver {
    rx: mpsc::Receiver<Vec<Event>>,
    metrics: ComponentMetrics,
}

impl BatchReceiver {
    pub(crate) fn new(rx: mpsc::Receiver<Vec<Event>>, metrics: ComponentMetrics) -> Self {
        BatchReceiver { rx, metrics }
    }

    /// Next batch; counted as received.
    pub async fn recv(&mut self) -> Option<Vec<Event>> {
        let b = self.rx.recv().await?;
        self.metrics.received.add(b.len() as u64);
        Some(b)
    }

    /// Batches waiting in the channel.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// A receiver fed by the returned sender, for tests of sinks outside a topology.
    pub fn for_test(capacity: usize) -> (mpsc::Sender<Vec<Event>>, Self) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, BatchReceiver::new(rx, ComponentMetrics::default()))
    }
}

/// Tells a source to stop. Cloneable; `is_set` is cheap enough for hot loops.
#[derive(Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, ShutdownSignal(rx))
    }

    /// A signal that never fires, paired with its trigger, for tests.
    pub fn for_test() -> (watch::Sender<bool>, Self) {
        Self::new()
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when shutdown is requested (or the topology is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}
