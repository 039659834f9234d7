//! `file` sink: JSON lines appended to a file, or stdout with `path = "-"`.
//!
//! Writes are buffered and flushed whenever the input channel runs dry, so a quiet
//! pipeline shows records at once and a busy one writes in large blocks. SIGUSR1 (and
//! every reload) reopens the file, for logrotate.

use std::path::PathBuf;

use perisco_engine::component::*;
use perisco_engine::event::DataType;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tracing::{error, info};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append to; "-" is stdout.
    pub path: String,
}

impl ComponentConfig for FileConfig {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn validate(&self) -> Vec<ValueError> {
        if self.path.is_empty() {
            vec![ValueError::at("path", "must not be empty (use \"-\" for stdout)")]
        } else {
            vec![]
        }
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
        Ok(Box::new(FileSink { target }))
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
}

impl Sink for FileSink {
    fn run(self: Box<Self>, mut cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(async move {
            let target = self.target;
            let mut out = target.open()?;
            let mut line = Vec::with_capacity(1024);
            loop {
                let batch = tokio::select! {
                    b = cx.input.recv() => b,
                    r = cx.reopen.recv() => {
                        if r.is_ok() {
                            if let Err(e) = out.flush().await {
                                error!(path = %target.name(), error = %e, "flush before reopen failed");
                                cx.metrics.errors.inc();
                            }
                            match target.open() {
                                Ok(w) => { out = w; info!(path = %target.name(), "reopened"); }
                                Err(e) => { error!(error = %e, "reopen failed; keeping the old file"); cx.metrics.errors.inc(); }
                            }
                        }
                        continue;
                    }
                };
                let Some(batch) = batch else { break };
                let mut written = 0u64;
                for event in &batch {
                    line.clear();
                    if let Err(e) = event.write_json(&mut line) {
                        cx.metrics.errors.inc();
                        cx.metrics.discarded.inc();
                        error!(error = %e, "cannot serialise event; dropped");
                        continue;
                    }
                    line.push(b'\n');
                    if let Err(e) = out.write_all(&line).await {
                        cx.metrics.errors.inc();
                        cx.metrics.discarded.inc();
                        error!(path = %target.name(), error = %e, "write failed; event dropped");
                        continue;
                    }
                    written += 1;
                }
                if cx.input.is_empty()
                    && let Err(e) = out.flush().await
                {
                    cx.metrics.errors.inc();
                    error!(path = %target.name(), error = %e, "flush failed");
                }
                cx.metrics.sent.add(written);
            }
            out.flush().await.map_err(|e| format!("flushing `{}`: {e}", target.name()))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unopenable_path_is_a_clear_error() {
        let cfg = FileConfig { path: "/nonexistent-dir/x/out.json".into() };
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
