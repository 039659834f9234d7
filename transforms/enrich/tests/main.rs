//! The crate's integration tests, one module per file, linked into one test binary
//! (a binary per file linked the crate and its dependencies again for each).

mod common;
mod e2e_loopback;
mod kmock;
mod manifests;
mod mock_client;
