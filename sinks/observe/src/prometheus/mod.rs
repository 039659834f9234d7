//! `prometheus_exporter` sink: RED metrics of the records on `GET /metrics`.
//!
//! ```toml
//! [sinks.metrics]
//! type = "prometheus_exporter"
//! inputs = ["k8s"]
//! address = "0.0.0.0:9599"
//! max_series = 10000
//! ```

pub mod red;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use perisco_engine::component::*;
use perisco_engine::event::DataType;
use perisco_engine::metrics::Counter;
use serde::Deserialize;
use tokio::sync::watch;
use tracing::info;

use crate::document::record_of;
use crate::{ObserveError, bind_with_retry};
use red::Red;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusExporterConfig {
    #[serde(default = "default_address")]
    pub address: String,
    /// Label sets kept before new ones are folded into the "overflow" series.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Histogram bucket upper bounds in seconds (ascending); default 0.5 ms … 10 s.
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
}

fn default_address() -> String {
    "127.0.0.1:9599".into()
}

fn default_max_series() -> usize {
    10_000
}

impl ComponentConfig for PrometheusExporterConfig {
    fn type_name(&self) -> &'static str {
        "prometheus_exporter"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errs = Vec::new();
        if let Err(e) = self.address.parse::<SocketAddr>() {
            errs.push(ValueError::at("address", format!("not an ip:port address: {e}")));
        }
        if self.max_series == 0 || self.max_series > 1_000_000 {
            errs.push(ValueError::at("max_series", "must be between 1 and 1000000"));
        }
        if let Some(b) = &self.buckets {
            let ascending = b.windows(2).all(|w| w[0] < w[1]);
            if b.is_empty() || !ascending || b.iter().any(|x| !x.is_finite() || *x <= 0.0) {
                errs.push(ValueError::at(
                    "buckets",
                    "must be positive, finite and strictly ascending",
                ));
            }
        }
        errs
    }
}

impl SinkConfig for PrometheusExporterConfig {
    fn accepts(&self, input: DataType) -> bool {
        input == DataType::Record
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        let address: SocketAddr = self
            .address
            .parse()
            .map_err(|e| ObserveError::Address(self.address.clone(), e))?;
        let bounds = self.buckets.as_deref().unwrap_or(&red::DEFAULT_BUCKETS);
        Ok(Box::new(Exporter {
            address,
            red: Arc::new(Mutex::new(Red::new(bounds, self.max_series))),
            skipped: cx.registry.counter(
                "perisco_prometheus_exporter_skipped_events_total",
                "Events the prometheus_exporter sink could not read as a record.",
                &[("component_id", &*cx.id)],
            ),
        }))
    }
}

struct Exporter {
    address: SocketAddr,
    red: Arc<Mutex<Red>>,
    skipped: Counter,
}

async fn metrics(State(red): State<Arc<Mutex<Red>>>) -> impl IntoResponse {
    let mut body = String::with_capacity(64 * 1024);
    red.lock().unwrap_or_else(|p| p.into_inner()).render(&mut body);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}

impl Sink for Exporter {
    fn run(self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            let listener = bind_with_retry(self.address).await?;
            let local = listener.local_addr().unwrap_or(self.address);
            let app = Router::new()
                .route("/metrics", get(metrics))
                .with_state(self.red.clone());
            let (stop_tx, mut stop_rx) = watch::channel(false);
            let server = tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.wait_for(|s| *s).await;
                    })
                    .await
            });
            info!(address = %local, "prometheus exporter listening");
            while let Some(batch) = cx.input.recv().await {
                let mut n = 0;
                let mut red = self.red.lock().unwrap_or_else(|p| p.into_inner());
                for event in &batch {
                    match record_of(event) {
                        Some(r) => {
                            red.observe(&r);
                            n += 1;
                        }
                        None => {
                            self.skipped.inc();
                            cx.metrics.discarded.inc();
                        }
                    }
                }
                drop(red);
                cx.metrics.sent.add(n);
            }
            let _ = stop_tx.send(true);
            match server.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ObserveError::Serve(local, e.to_string()).into()),
                Err(e) => Err(ObserveError::Serve(local, e.to_string()).into()),
            }
        })
    }
}
