//! Observability outputs of perisco: the `hubble` sink serves Cilium's Hubble observer API
//! (so the hubble CLI, hubble-relay and Hubble UI can show perisco's records) and the
//! `prometheus_exporter` sink serves RED metrics (rate, errors, duration) for Grafana.

pub mod document;
pub mod hubble;
pub mod prometheus;
pub mod proto;

pub use hubble::HubbleConfig;
pub use prometheus::PrometheusExporterConfig;

/// Errors at the crate edge (building and serving).
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("invalid address `{0}`: {1}")]
    Address(String, std::net::AddrParseError),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("server on {0} failed: {1}")]
    Serve(std::net::SocketAddr, String),
}

/// Bind `addr`, retrying briefly while the port is still held: on reload the replaced
/// sink is still draining when its successor starts on the same address.
pub(crate) async fn bind_with_retry(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, ObserveError> {
    let mut last = None;
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(ObserveError::Bind(addr, e)),
        }
    }
    Err(ObserveError::Bind(
        addr,
        last.unwrap_or_else(|| std::io::Error::other("address in use")),
    ))
}
