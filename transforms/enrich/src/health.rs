//! `/health` for the enrich transform: degraded while the API is unreachable or before the
//! first complete list, running once every watch has listed and nothing is failing.
//! Warnings are rate limited: one when a watch starts failing, then one a minute.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use perisco_engine::health::HealthHandle;
use perisco_engine::metrics::Counter;
use tracing::{info, warn};

use crate::state::Resource;

/// What can fail: building the client, or one resource's watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    Client,
    Watch(Resource),
}

#[derive(Debug)]
struct Failure {
    reason: String,
    errors: u64,
    last_warned: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    failing: BTreeMap<Slot, Failure>,
    synced: bool,
}

pub struct HealthTracker {
    handle: HealthHandle,
    inner: Mutex<Inner>,
    /// Set when the transform is dropped: a watcher finishing its last step must not
    /// overwrite the status of the component that replaced it on reload.
    stopped: AtomicBool,
    errors: Counter,
}

const WARN_EVERY: Duration = Duration::from_secs(60);

impl HealthTracker {
    pub fn new(handle: HealthHandle, errors: Counter) -> Self {
        let t = HealthTracker {
            handle,
            inner: Mutex::default(),
            stopped: AtomicBool::new(false),
            errors,
        };
        t.handle.degraded("waiting for the first list from the Kubernetes API");
        t
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn error(&self, slot: Slot, reason: &str) {
        self.errors.inc();
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.failing.get_mut(&slot) {
            None => {
                warn!(
                    error = reason,
                    "Kubernetes API unavailable: records pass through with what the cache holds; retrying with backoff"
                );
                inner.failing.insert(
                    slot,
                    Failure {
                        reason: reason.to_string(),
                        errors: 1,
                        last_warned: now,
                    },
                );
            }
            Some(f) => {
                f.errors += 1;
                f.reason = reason.to_string();
                if now.duration_since(f.last_warned) >= WARN_EVERY {
                    warn!(
                        error = reason,
                        errors = f.errors,
                        "Kubernetes API still unavailable; retrying with backoff"
                    );
                    f.last_warned = now;
                }
            }
        }
        self.update(&inner);
    }

    pub fn ok(&self, slot: Slot) {
        let mut inner = self.lock();
        if let Some(f) = inner.failing.remove(&slot) {
            info!(
                errors = f.errors,
                ?slot,
                "Kubernetes API reachable again; cache relisted"
            );
        }
        self.update(&inner);
    }

    /// The published snapshot holds a complete list of every resource.
    pub fn synced(&self) {
        let mut inner = self.lock();
        if !inner.synced {
            inner.synced = true;
            self.update(&inner);
        }
    }

    fn update(&self, inner: &Inner) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        if let Some(f) = inner.failing.values().next() {
            self.handle.degraded(format!("Kubernetes API: {}", f.reason));
        } else if inner.synced {
            self.handle.running();
        } else {
            self.handle
                .degraded("waiting for the first list from the Kubernetes API");
        }
    }
}
