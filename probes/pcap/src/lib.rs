//! pcap source: pcap/pcapng files, TCP reassembled into socket-data events.
//!
//! The file is read as a stream on a blocking thread ([`reader`]), each frame decoded to a
//! TCP segment ([`decode`]) and reassembled per connection and direction
//! ([`reassembly`]) into the same `SocketData` events the live eBPF source emits: the
//! server is `local` when the handshake was seen, so requests are ingress.

pub mod decode;
mod emit;
pub mod reader;
pub mod reassembly;
mod source;
mod walk;

use std::path::PathBuf;
use std::time::Duration;

use perisco_engine::component::{BoxError, BuildContext, ComponentConfig, Source, SourceConfig, ValueError};
use perisco_engine::event::{DataType, Event};
use serde::Deserialize;

pub use emit::MAX_COALESCE;
pub use reader::{End, Next, Packet, PacketReader, ReadError};
pub use reassembly::{Limits, Reassembler, Stats};
pub use source::{PcapError, PcapSource};

/// Read a whole capture into events, at once (tests and tools; the source streams instead).
/// A cut-short last packet ends the read like the end of the file.
pub fn read_events<R: std::io::Read + Send + 'static>(
    input: R,
    limits: Limits,
) -> Result<(Vec<Event>, Stats), ReadError> {
    let mut reader = PacketReader::new(input)?;
    let mut reasm = Reassembler::new(limits);
    let mut events = Vec::new();
    while let Next::Packet = reader.next_packet(|p| reasm.packet(&p, 0))? {
        if reasm.pending_events() >= 4096 {
            events.extend(reasm.take_events());
        }
    }
    reasm.finish();
    events.extend(reasm.take_events());
    Ok((events, reasm.stats()))
}

/// [`read_events`] of a file; the error names the file.
pub fn read_file(path: &std::path::Path, limits: Limits) -> Result<(Vec<Event>, Stats), PcapError> {
    let file = std::fs::File::open(path).map_err(|source| PcapError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_events(std::io::BufReader::new(file), limits).map_err(|source| PcapError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `type = "pcap"`: replay a capture file as socket-data events.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcapConfig {
    /// pcap or pcapng file; relative to the config file's directory.
    pub path: PathBuf,
    /// Replay forever, shifting timestamps so time keeps moving forward (soak tests, benchmarks).
    #[serde(default, rename = "loop")]
    pub r#loop: bool,
    /// Payload kept per data event, as a live probe would capture it; `len` keeps the true length.
    #[serde(default)]
    pub max_capture_bytes: Option<u32>,
    /// Connections tracked at once; the least recently active are evicted beyond it.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Out-of-order bytes buffered per direction before a hole becomes a gap.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// A connection without packets for this long (capture time) is closed and forgotten.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

fn default_max_connections() -> usize {
    Limits::default().max_connections
}

fn default_max_buffered_bytes() -> usize {
    Limits::default().max_buffered_bytes
}

fn default_idle_timeout() -> Duration {
    Duration::from_nanos(Limits::default().idle_timeout_ns)
}

impl PcapConfig {
    /// A config for `path` with every default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PcapConfig {
            path: path.into(),
            r#loop: false,
            max_capture_bytes: None,
            max_connections: default_max_connections(),
            max_buffered_bytes: default_max_buffered_bytes(),
            idle_timeout: default_idle_timeout(),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_buffered_bytes: self.max_buffered_bytes,
            idle_timeout_ns: u64::try_from(self.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
            max_capture_bytes: self.max_capture_bytes,
        }
    }
}

impl ComponentConfig for PcapConfig {
    fn type_name(&self) -> &'static str {
        "pcap"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errors = Vec::new();
        if self.path.as_os_str().is_empty() {
            errors.push(ValueError::at("path", "must name a pcap or pcapng file"));
        }
        if self.max_capture_bytes == Some(0) {
            errors.push(ValueError::at(
                "max_capture_bytes",
                "must be at least 1 (omit it to keep whole payloads)",
            ));
        }
        if self.max_connections == 0 {
            errors.push(ValueError::at("max_connections", "must be at least 1"));
        }
        if self.max_buffered_bytes == 0 {
            errors.push(ValueError::at("max_buffered_bytes", "must be at least 1"));
        }
        if self.idle_timeout.is_zero() {
            errors.push(ValueError::at("idle_timeout", "must be longer than 0s"));
        }
        errors
    }
}

impl SourceConfig for PcapConfig {
    fn output(&self) -> DataType {
        DataType::Socket
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BoxError> {
        let path = cx.resolve_path(&self.path);
        Ok(Box::new(PcapSource::open(path, self, cx)?))
    }
}
