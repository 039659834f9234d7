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

#[derive(Default)]
pub struct HealthRegistry {
    components: Mutex<BTreeMap<Arc<str>, Status>>,
}

impl HealthRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn handle(self: &Arc<Self>, id: Arc<str>) -> HealthHandle {
        HealthHandle {
            registry: self.clone(),
            id,
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Arc<str>, Status>> {
        self.components.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> BTreeMap<Arc<str>, Status> {
        self.lock().clone()
    }

    /// Healthy while no component has failed; degraded components are reported but
    /// still healthy (the pipeline runs).
    pub fn healthy(&self) -> bool {
        self.lock().values().all(|s| !matches!(s, Status::Failed(_)))
    }
}

#[derive(Clone)]
pub struct HealthHandle {
    registry: Arc<HealthRegistry>,
    id: Arc<str>,
}

impl HealthHandle {
    pub fn set(&self, status: Status) {
        self.registry.lock().insert(self.id.clone(), status);
    }
    pub fn degraded(&self, reason: impl Into<String>) {
        self.set(Status::Degraded(reason.into()));
    }
    pub fn running(&self) {
        self.set(Status::Running);
    }
}
