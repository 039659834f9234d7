//! Machinery shared by every sink: settings, buffer + batching + retry driver, counters,
//! templates, serialisation buffers, and the HTTP client setup.

pub mod config;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod pool;
pub mod retry;
pub mod template;
