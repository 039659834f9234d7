//! Sinks: where records leave perisco.
//!
//! Every sink runs on [`util::driver`]: the input channel feeds a bounded buffer
//! (`buffer.max_events`, `when_full = "block" | "drop_newest"`), batches are cut by
//! `batch.max_events` / `max_bytes` / `timeout`, transient failures are retried with
//! exponential backoff and jitter, and everything is counted per sink.

pub mod elasticsearch;
pub mod file;
pub mod http;
pub mod kafka;
pub mod util;
