//! The crate's integration tests, one module per file, linked into one test binary
//! (a binary per file linked the crate and its dependencies again for each).

mod common;
mod dashboard;
mod hubble_client;
mod hubble_grpcurl;
mod hubble_peers_kmock;
mod k8s_manifests;
mod pipeline_pcap;
mod prometheus_scrape;
