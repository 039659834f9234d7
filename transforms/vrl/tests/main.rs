//! The crate's integration tests, one module per file, linked into one test binary
//! (a binary per file linked the crate and its dependencies again for each).

mod common;
mod config;
mod examples;
mod fixtures;
mod patch;
mod transforms;
