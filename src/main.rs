//! `perisco`: run a pipeline, validate a config, or print its graph.

mod components;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use perisco_engine::config::{Config, to_dot};

use crate::components::Perisco;

#[global_allocator]
static ALLOCATOR: perisco_alloc::Mimalloc = perisco_alloc::Mimalloc;

/// The built-in pipeline used without `--config`: live capture → parse → match → stdout.
pub const DEFAULT_PIPELINE: &str = include_str!("default_pipeline.toml");

#[derive(Parser)]
#[command(
    name = "perisco",
    version,
    about = "eBPF L7 monitor for Kubernetes: HTTP/1.x, HTTP/2 and gRPC exchanges through a TOML pipeline"
)]
struct Cli {
    /// Pipeline config (TOML). Without it, the built-in default pipeline runs.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Reload when the config file changes (ConfigMaps change files without signals).
    #[arg(long)]
    watch_config: bool,
    /// Worker threads of the data path [default: the CPUs this process may use, at most
    /// 2]. More only help pipelines with many busy components; each stage is one task.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config; print every error with file:line:col and exit non-zero if any.
    Validate,
    /// Print the pipeline as a Graphviz DOT graph.
    Graph,
    /// Print the built-in default pipeline.
    DefaultConfig,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// perisco's allocator settings, each unless its `MIMALLOC_*` variable says otherwise:
/// - freed memory stays mapped for 10 s (mimalloc's default is 1 s): with the pipeline's
///   memory rising and falling with every batch, a 1 s delay returned pages to the kernel
///   only to fault them back in, ~5 % of perisco's CPU at 20 k exchanges/s; idle memory
///   still goes back, 10 s later;
/// - no transparent huge pages: an agent's heap is small and sparse, and with them
///   khugepaged grew an idle perisco's resident memory by ~20 MiB a minute, filling every
///   2 MiB region the heap had ever touched.
fn allocator_settings() {
    let unset = |name: &str| std::env::var_os(name).is_none();
    if unset("MIMALLOC_PURGE_DELAY") {
        perisco_alloc::set_purge_delay_ms(10_000);
    }
    if unset("MIMALLOC_ALLOW_THP") {
        perisco_alloc::disable_huge_pages();
    }
}

fn main() -> ExitCode {
    allocator_settings();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Some(Command::Validate) => validate(cli.config.as_deref()),
        Some(Command::Graph) => match load(cli.config.as_deref()) {
            Ok(cfg) => {
                print!("{}", to_dot(&cfg));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(78)
            }
        },
        Some(Command::DefaultConfig) => {
            print!("{DEFAULT_PIPELINE}");
            ExitCode::SUCCESS
        }
        None => run::run(cli.config, cli.watch_config, run::worker_threads(cli.threads)),
    }
}

/// Load a config file, or the built-in default.
pub fn load(path: Option<&std::path::Path>) -> Result<Config<Perisco>, perisco_engine::ConfigErrors> {
    match path {
        Some(p) => Config::load(p),
        None => Config::from_str(DEFAULT_PIPELINE, "<default pipeline>"),
    }
}

fn validate(path: Option<&std::path::Path>) -> ExitCode {
    let name = path.map_or_else(|| "<default pipeline>".to_string(), |p| p.display().to_string());
    match load(path) {
        Ok(cfg) => {
            println!(
                "{name}: ok ({} sources, {} transforms, {} sinks)",
                cfg.sources.len(),
                cfg.transforms.len(),
                cfg.sinks.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{name}: {} error(s)", errors.0.len());
            ExitCode::from(78)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
