//! `file` sink: JSON lines appended to a file, or stdout with `path = "-"`.
//!
//! Runs on the shared driver (buffer, counters, flush on shutdown): each batch is what
//! the buffer holds (up to 1000 events), written at once, so a quiet pipeline shows
//! records immediately and a busy one writes in large blocks. Write errors are retried
//! (the file is reopened). SIGUSR1 (and every reload) reopens the file, for logrotate.
//!
//! A batch is copied once into a buffer the sink keeps, and that buffer is written with
//! one blocking `write_all` on tokio's blocking pool; `tokio::fs` would copy it again and
//! hand every 256 KiB chunk to the pool separately.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use perisco_engine::component::*;
use perisco_engine::event::DataType;
use serde::Deserialize;
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

/// An open destination. Writes block: they run on the blocking pool.
enum Out {
    Stdout(std::io::Stdout),
    File(std::fs::File),
}

impl Out {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Out::Stdout(s) => {
                let mut s = s.lock();
                s.write_all(buf)?;
                s.flush()
            }
            Out::File(f) => f.write_all(buf),
        }
    }
}

impl Target {
    fn open(&self) -> Result<Out, BoxError> {
        Ok(match self {
            Target::Stdout => Out::Stdout(std::io::stdout()),
            Target::File(p) => Out::File(open_append(p)?),
        })
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
                buf: Vec::new(),
                reopen_wanted: false,
            };
            driver::run(cx, self.settings, self.counters, NoRoute, writer).await
        })
    }
}

struct FileWriter {
    target: Target,
    /// `None` after a failed write or reopen (or while a write is on the blocking pool);
    /// the next batch opens the file again.
    out: Option<Out>,
    /// The batch's lines, kept between batches for its capacity.
    buf: Vec<u8>,
    reopen_wanted: bool,
}

impl FileWriter {
    async fn write_batch(&mut self, batch: &[Item]) -> std::io::Result<()> {
        // Every batch is written whole, so nothing is pending in a file left behind.
        let reopen = std::mem::take(&mut self.reopen_wanted);
        let mut out = match self.out.take() {
            Some(out) if !reopen => out,
            _ => {
                let out = self.target.open().map_err(std::io::Error::other)?;
                if reopen {
                    info!(path = %self.target.name(), "reopened");
                }
                out
            }
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for item in batch {
            buf.extend_from_slice(&item.line);
            buf.push(b'\n');
        }
        let (out, buf, written) = tokio::task::spawn_blocking(move || {
            let r = out.write_all(&buf);
            (out, buf, r)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.buf = buf;
        written?;
        self.out = Some(out);
        Ok(())
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
