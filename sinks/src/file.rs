//! `file` sink: JSON lines appended to a file, or stdout with `path = "-"`.
//!
//! Runs on the shared driver (buffer, counters, flush on shutdown): each batch is what
//! the buffer holds (up to 1000 events), written and flushed at once, so a quiet pipeline
//! shows records immediately and a busy one writes in large blocks. Write errors are
//! retried (the file is reopened). SIGUSR1 (and every reload) reopens the file, for
//! logrotate.

use std::path::PathBuf;
use std::time::Duration;

use perisco_engine::component::*;
use perisco_engine::event::DataType;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tracing::{error, info};

use crate::util::config::{BatchSettings, BufferConfig, DeliverySettings, RetryConfig};
use crate::util::driver::{self, Deliver, Item, NoRoute, Outcome};
use crate::util::metrics::SinkCounters;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append to; "-" is stdout.
    pub path: String,
    /// The sink's own bounded queue (see docs/sinks.md).
    #[serde(default)]
    pub buffer: BufferConfig,
}

impl ComponentConfig for FileConfig {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errors = Vec::new();
        if self.path.is_empty() {
            errors.push(ValueError::at("path", "must not be empty (use \"-\" for stdout)"));
        }
        self.buffer.validate(&mut errors);
        errors
    }
}

impl SinkConfig for FileConfig {
    fn accepts(&self, _input: DataType) -> bool {
        // Records are the contract; socket data and messages get a debug JSON form.
        true
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        let target = if self.path == "-" {
            Target::Stdout
        } else {
            let path = cx.resolve_path(std::path::Path::new(&self.path));
            // Open once now so a bad path fails the build (and a reload) with a clear error.
            open_append(&path)?;
            Target::File(path)
        };
        let settings = DeliverySettings {
            // Write what is there at once: a quiet pipeline shows records immediately.
            batch: BatchSettings {
                max_events: 1000,
                max_bytes: 1 << 20,
                timeout: Duration::ZERO,
            },
            buffer: self.buffer,
            retry: RetryConfig::default(),
        };
        Ok(Box::new(FileSink {
            target,
            settings,
            counters: SinkCounters::register(cx),
        }))
    }
}

#[derive(Clone)]
enum Target {
    Stdout,
    File(PathBuf),
}

fn open_append(path: &std::path::Path) -> Result<std::fs::File, BoxError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open `{}` for appending: {e}", path.display()).into())
}

type Writer = BufWriter<Box<dyn AsyncWrite + Unpin + Send>>;

impl Target {
    fn open(&self) -> Result<Writer, BoxError> {
        let w: Box<dyn AsyncWrite + Unpin + Send> = match self {
            Target::Stdout => Box::new(tokio::io::stdout()),
            Target::File(p) => Box::new(tokio::fs::File::from_std(open_append(p)?)),
        };
        Ok(BufWriter::with_capacity(256 * 1024, w))
    }

    fn name(&self) -> String {
        match self {
            Target::Stdout => "stdout".into(),
            Target::File(p) => p.display().to_string(),
        }
    }
}

struct FileSink {
    target: Target,
    settings: DeliverySettings,
    counters: SinkCounters,
}

impl Sink for FileSink {
    fn run(self: Box<Self>, cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            let out = self.target.open()?;
            let writer = FileWriter {
                target: self.target,
                out: Some(out),
                reopen_wanted: false,
            };
            driver::run(cx, self.settings, self.counters, NoRoute, writer).await
        })
    }
}

struct FileWriter {
    target: Target,
    /// `None` after a failed reopen; the next batch tries again.
    out: Option<Writer>,
    reopen_wanted: bool,
}

impl FileWriter {
    async fn write_batch(&mut self, batch: &[Item]) -> std::io::Result<()> {
        if self.reopen_wanted || self.out.is_none() {
            if let Some(mut old) = self.out.take() {
                old.flush().await?;
            }
            self.reopen_wanted = false;
            let w = self.target.open().map_err(std::io::Error::other)?;
            info!(path = %self.target.name(), "reopened");
            self.out = Some(w);
        }
        let Some(out) = self.out.as_mut() else { return Ok(()) };
        for item in batch {
            out.write_all(&item.line).await?;
            out.write_all(b"\n").await?;
        }
        out.flush().await
    }
}

impl Deliver for FileWriter {
    async fn deliver(&mut self, batch: &[Item]) -> Outcome {
        match self.write_batch(batch).await {
            Ok(()) => Outcome::Delivered,
            Err(e) => {
                // Reopen on the retry: the file may have been removed or the disk freed.
                self.out = None;
                error!(path = %self.target.name(), error = %e, "write failed");
                Outcome::Transient(format!("writing `{}`: {e}", self.target.name()))
            }
        }
    }

    fn reopen(&mut self) {
        self.reopen_wanted = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unopenable_path_is_a_clear_error() {
        let cfg = FileConfig {
            path: "/nonexistent-dir/x/out.json".into(),
            buffer: BufferConfig::default(),
        };
        let reg = perisco_engine::metrics::Registry::new();
        let cx = BuildContext {
            id: "out".into(),
            kind: Kind::Sink,
            metrics: Default::default(),
            registry: reg,
            health: perisco_engine::health::HealthRegistry::new().handle("out".into()),
            config_dir: None,
        };
        let err = cfg.build(&cx).err().expect("must fail").to_string();
        assert!(err.contains("/nonexistent-dir/x/out.json"), "{err}");
    }
}
