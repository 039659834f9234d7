//! Helpers shared by the enrich integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use perisco_engine::component::{BuildContext, FunctionTransform, Kind};
use perisco_engine::event::{Event, IpInfo, L4, L7, Record, TcpPorts};
use perisco_engine::health::{HealthRegistry, Status};
use perisco_engine::metrics::{ComponentMetrics, Registry};

pub struct Harness {
    pub cx: BuildContext,
    pub health: Arc<HealthRegistry>,
}

impl Harness {
    pub fn new() -> Self {
        let health = HealthRegistry::new();
        let registry = Registry::new();
        let cx = BuildContext {
            id: "k8s".into(),
            kind: Kind::Transform,
            metrics: ComponentMetrics::default(),
            registry,
            health: health.handle("k8s".into()),
            config_dir: None,
        };
        Harness { cx, health }
    }

    pub fn status(&self) -> Status {
        self.health.snapshot().get("k8s").cloned().unwrap_or(Status::Starting)
    }

    pub fn degraded(&self) -> bool {
        matches!(self.status(), Status::Degraded(_))
    }
}

pub fn record(client: &str, server: &str) -> Record {
    Record {
        ts: 1,
        pid: 42,
        ip: IpInfo::new(client.parse().unwrap(), server.parse().unwrap()),
        l4: L4 {
            tcp: TcpPorts {
                client_port: 40000,
                server_port: 8080,
            },
        },
        l7: L7::default(),
        client: None,
        server: None,
        client_service: None,
        server_service: None,
        comm: None,
        container_id: None,
        node: None,
        incomplete: vec![],
    }
}

/// Run one record through the transform and return what came out.
pub fn enrich(t: &mut dyn FunctionTransform, r: Record) -> Record {
    let mut out = Vec::new();
    t.transform_batch(vec![Event::Record(Box::new(r))], &mut out);
    assert_eq!(out.len(), 1, "a record always passes through");
    match out.pop().unwrap() {
        Event::Record(r) => *r,
        other => panic!("not a record: {other:?}"),
    }
}

/// Poll `f` until it returns true; panics with `what` after a generous deadline (this is
/// a wait for an event, not a speed assertion: machines under load are slow).
pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
