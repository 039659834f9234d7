//! Machinery shared by every sink: settings, buffer + batching + retry driver, counters,
//! templates, and the HTTP client setup.

pub mod config;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod retry;
pub mod template;
