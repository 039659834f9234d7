//! Component health for `GET /health`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Status {
    Starting,
    Running,
    /// Running, but with reduced function (e.g. Kubernetes API unreachable).
    Degraded(String),
    /// Finished normally (a finite source, or drained on reload).
    Finished,
    Failed(String),
}

/// Statuses by component id. Each build of a component gets its own instance number; a
/// replaced instance that drains after a reload cannot overwrite its successor's status.
#[derive(Default)]
pub struct HealthRegistry {
    components: Mutex<BTreeMap<Arc<str>, (u64, Status)>>,
    next_instance: std::sync::atomic::AtomicU64,
}

impl HealthRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A handle for a new instance of component `id`.
    pub fn handle(self: &Arc<Self>, id: Arc<str>) -> HealthHandle {
        let instance = self.next_instance.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HealthHandle {
            registry: self.clone(),
            id,
            instance,
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Arc<str>, (u64, Status)>> {
        self.components.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> BTreeMap<Arc<str>, Status> {
        self.lock().iter().map(|(k, (_, s))| (k.clone(), s.clone())).collect()
    }

    /// Healthy while no component has failed; degraded components are reported but
    /// still healthy (the pipeline runs).
    pub fn healthy(&self) -> bool {
        self.lock().values().all(|(_, s)| !matches!(s, Status::Failed(_)))
    }
}

#[derive(Clone)]
pub struct HealthHandle {
    registry: Arc<HealthRegistry>,
    id: Arc<str>,
    instance: u64,
}

impl HealthHandle {
    /// Set this instance's status, unless a newer instance of the component took over.
    pub fn set(&self, status: Status) {
        let mut all = self.registry.lock();
        match all.get(&self.id) {
            Some((newer, _)) if *newer > self.instance => {}
            _ => {
                all.insert(self.id.clone(), (self.instance, status));
            }
        }
    }

    /// This instance's current status (None if a newer instance took over).
    pub fn get(&self) -> Option<Status> {
        match self.registry.lock().get(&self.id) {
            Some((i, s)) if *i == self.instance => Some(s.clone()),
            _ => None,
        }
    }
    pub fn degraded(&self, reason: impl Into<String>) {
        self.set(Status::Degraded(reason.into()));
    }
    pub fn running(&self) {
        self.set(Status::Running);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_instance_cannot_overwrite_its_successor() {
        let reg = HealthRegistry::new();
        let old = reg.handle("x".into());
        old.running();
        let new = reg.handle("x".into());
        new.degraded("api down");
        old.set(Status::Finished);
        assert_eq!(reg.snapshot()["x"], Status::Degraded("api down".into()));
        assert!(old.get().is_none());
    }
}
