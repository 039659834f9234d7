//! A component's output: the batch goes to every downstream consumer.
//!
//! The list of consumers lives behind an `ArcSwap` so a reload can add, remove or replace a
//! consumer between two batches without stopping the producer: a batch is delivered to the
//! list as it was when the batch was sent, never half to an old list and half to a new one.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::event::Event;

pub type Batch = Vec<Event>;

#[derive(Clone)]
pub(crate) struct Route {
    /// Consumer id, for debugging.
    #[allow(dead_code)]
    pub to: Arc<str>,
    pub tx: mpsc::Sender<Batch>,
}

#[derive(Clone, Default)]
pub struct Fanout {
    routes: Arc<ArcSwap<Vec<Route>>>,
    /// Set once the producer has finished: its routes are released so consumers can
    /// drain, and a later rewiring cannot bring them back.
    closed: Arc<Mutex<bool>>,
}

impl Fanout {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn set_routes(&self, routes: Vec<Route>) {
        let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if !*closed {
            self.routes.store(Arc::new(routes));
        }
    }

    /// The producer is done: drop every route for good.
    pub(crate) fn close(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        *closed = true;
        self.routes.store(Arc::new(Vec::new()));
    }

    /// Deliver to every consumer, waiting for room (backpressure). A consumer that went
    /// away (removed on reload) is skipped.
    pub async fn send(&self, batch: Batch) {
        let routes = self.routes.load_full();
        let Some((last, rest)) = routes.split_last() else {
            return;
        };
        for r in rest {
            let _ = r.tx.send(batch.clone()).await;
        }
        let _ = last.tx.send(batch).await;
    }

    /// Deliver without waiting; returns the events lost to full consumers.
    pub fn try_send(&self, batch: Batch) -> u64 {
        let routes = self.routes.load_full();
        let Some((last, rest)) = routes.split_last() else {
            return 0;
        };
        let n = batch.len() as u64;
        let mut dropped = 0;
        for r in rest {
            if let Err(mpsc::error::TrySendError::Full(_)) = r.tx.try_send(batch.clone()) {
                dropped += n;
            }
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = last.tx.try_send(batch) {
            dropped += n;
        }
        dropped
    }

    pub fn has_capacity(&self) -> bool {
        self.routes.load().iter().all(|r| r.tx.capacity() > 0)
    }
}
