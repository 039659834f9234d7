//! Settings every network sink shares: `batch`, `buffer`, `retry`, and the TOML
//! defaults for each. Each sink embeds them as optional tables.

use std::time::Duration;

use perisco_engine::component::ValueError;
use serde::Deserialize;

/// How events are grouped into one request (one `_bulk`, one POST, one produce round).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one batch.
    pub max_events: Option<usize>,
    /// Most encoded bytes in one batch (the JSON lines, before compression).
    pub max_bytes: Option<usize>,
    /// How long a partial batch waits for more events; "0s" sends what is there at once.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// Batch settings with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchSettings {
    pub max_events: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl BatchConfig {
    pub fn settings(&self, defaults: BatchSettings) -> BatchSettings {
        BatchSettings {
            max_events: self.max_events.unwrap_or(defaults.max_events),
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
            timeout: self.timeout.unwrap_or(defaults.timeout),
        }
    }

    pub fn validate(&self, errors: &mut Vec<ValueError>) {
        if self.max_events == Some(0) {
            errors.push(ValueError::at("batch.max_events", "must be at least 1"));
        }
        if self.max_bytes == Some(0) {
            errors.push(ValueError::at("batch.max_bytes", "must be at least 1"));
        }
    }
}

/// What the sink's own queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading the input: backpressure reaches the sources (a live capture then drops
    /// and counts at its own end).
    #[default]
    Block,
    /// Drop the incoming event and count it (`perisco_sink_dropped_events_total{reason="buffer_full"}`).
    DropNewest,
}

/// The bounded queue between the sink's input channel and delivery.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    #[serde(default = "default_buffer_events")]
    pub max_events: usize,
    #[serde(default)]
    pub when_full: WhenFull,
}

fn default_buffer_events() -> usize {
    10_000
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_events: default_buffer_events(),
            when_full: WhenFull::Block,
        }
    }
}

impl BufferConfig {
    pub fn validate(&self, errors: &mut Vec<ValueError>) {
        if self.max_events == 0 {
            errors.push(ValueError::at("buffer.max_events", "must be at least 1"));
        }
    }
}

/// Retries of transient failures (connection errors, timeouts, 429, 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First wait before a retry; doubles each attempt (with full jitter).
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Attempts per batch before its events are dropped and counted; absent = retry until
    /// delivered (no loss while running; `buffer.when_full` decides what happens upstream).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Once the input has ended (shutdown, reload), how long buffered events may still be
    /// retried before the rest is dropped and counted. Keep it below the global
    /// `shutdown_timeout` (30 s by default).
    #[serde(default = "default_flush_timeout", with = "humantime_serde")]
    pub flush_timeout: Duration,
}

fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}
fn default_flush_timeout() -> Duration {
    Duration::from_secs(20)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_attempts: None,
            flush_timeout: default_flush_timeout(),
        }
    }
}

impl RetryConfig {
    pub fn validate(&self, errors: &mut Vec<ValueError>) {
        if self.initial_backoff.is_zero() {
            errors.push(ValueError::at("retry.initial_backoff", "must be more than 0"));
        }
        if self.max_backoff < self.initial_backoff {
            errors.push(ValueError::at(
                "retry.max_backoff",
                "must be at least retry.initial_backoff",
            ));
        }
        if self.max_attempts == Some(0) {
            errors.push(ValueError::at("retry.max_attempts", "must be at least 1"));
        }
    }
}

/// The three shared tables, as each sink embeds them (`#[serde(flatten)]` is avoided
/// because it breaks `deny_unknown_fields`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliverySettings {
    pub batch: BatchSettings,
    pub buffer: BufferConfig,
    pub retry: RetryConfig,
}
