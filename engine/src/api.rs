//! `[api]`: `GET /health` and `GET /metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::component::BoxError;
use crate::health::HealthRegistry;
use crate::metrics::Registry;

#[derive(Clone)]
struct ApiState {
    registry: Arc<Registry>,
    health: Arc<HealthRegistry>,
}

pub struct ApiServer {
    pub address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ApiServer {
    pub async fn start(
        address: SocketAddr,
        registry: Arc<Registry>,
        health: Arc<HealthRegistry>,
    ) -> Result<Self, BoxError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| format!("api: cannot listen on {address}: {e}"))?;
        let address = listener.local_addr()?;
        let app = Router::new()
            .route("/health", get(health_handler))
            .route("/metrics", get(metrics_handler))
            .with_state(ApiState { registry, health });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "api server failed");
            }
        });
        tracing::info!(%address, "api listening (GET /health, GET /metrics)");
        Ok(ApiServer { address, stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn health_handler(State(s): State<ApiState>) -> impl IntoResponse {
    let components = s.health.snapshot();
    let degraded = components
        .values()
        .any(|c| matches!(c, crate::health::Status::Degraded(_)));
    let ok = s.health.healthy();
    let status = if !ok {
        "failed"
    } else if degraded {
        "degraded"
    } else {
        "ok"
    };
    let body = serde_json::json!({ "status": status, "components": components });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string())
}

async fn metrics_handler(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.registry.render(),
    )
}
