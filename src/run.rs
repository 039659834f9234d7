//! The long-running mode: start the pipeline, reload on SIGHUP or file change, reopen
//! files on SIGUSR1, drain and exit on SIGTERM/SIGINT or when every source has finished.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use perisco_engine::metrics::Registry;
use perisco_engine::{RunningTopology, config::Config};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::components::Perisco;

/// Worker threads when `--threads` is not given: a node agent should not start one
/// worker per core of a 64-core node for a pipeline of a handful of tasks.
/// `available_parallelism` honours the process's CPU affinity and cgroup CPU quota.
const DEFAULT_MAX_THREADS: usize = 2;

pub fn worker_threads(flag: Option<u16>) -> usize {
    flag.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get().min(DEFAULT_MAX_THREADS)),
        usize::from,
    )
}

pub fn run(path: Option<PathBuf>, watch: bool, threads: usize) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .thread_name("perisco")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run_async(path, watch, threads))
}

async fn run_async(path: Option<PathBuf>, watch: bool, threads: usize) -> ExitCode {
    let config = match crate::load(path.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                error!("{e}");
            }
            return ExitCode::from(78);
        }
    };
    info!(version = env!("CARGO_PKG_VERSION"), threads, config = %path.as_deref().map_or("<default pipeline>".into(), |p| p.display().to_string()), "starting perisco");
    let mut topology = match RunningTopology::<Perisco>::start(config, Registry::new()).await {
        Ok(t) => t,
        Err(e) => {
            error!(error = %e, "cannot start the pipeline");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(mut hup), Ok(mut usr1), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let (changed_tx, mut changed) = mpsc::channel::<()>(1);
    if watch {
        match &path {
            Some(p) => {
                tokio::spawn(watch_file(p.clone(), changed_tx));
            }
            None => warn!("--watch-config without --config: nothing to watch"),
        }
    }
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading configuration");
                reload(&mut topology, path.as_deref()).await;
            }
            Some(()) = changed.recv() => {
                info!("configuration file changed: reloading");
                reload(&mut topology, path.as_deref()).await;
            }
            _ = usr1.recv() => {
                info!("SIGUSR1: reopening files");
                topology.reopen();
            }
            _ = term.recv() => { info!("SIGTERM: draining and stopping"); break; }
            _ = int.recv() => { info!("SIGINT: draining and stopping"); break; }
            _ = poll.tick() => {
                if topology.sources_finished() {
                    info!("every source has finished: draining and stopping");
                    break;
                }
            }
        }
    }
    // The deadline of the config running now (a reload may have changed it).
    let deadline = topology.config().global.shutdown_timeout;
    let report = topology.stop(deadline).await;
    if report.drained {
        info!("stopped: every channel drained and every sink flushed");
        ExitCode::SUCCESS
    } else {
        error!(?deadline, "stopped at the deadline with events still in flight");
        ExitCode::from(2)
    }
}

async fn reload(topology: &mut RunningTopology<Perisco>, path: Option<&Path>) {
    let Some(path) = path else {
        info!("running the built-in default pipeline: nothing to reload");
        return;
    };
    match Config::<Perisco>::load(path) {
        Err(errors) => {
            for e in &errors.0 {
                error!("{e}");
            }
            error!(
                errors = errors.0.len(),
                "reload rejected: the running pipeline is unchanged"
            );
            topology.reload_failed();
        }
        Ok(cfg) => match topology.reload(cfg).await {
            Ok(()) => info!("reload complete"),
            Err(e) => error!(error = %e, "reload failed: the running pipeline is unchanged"),
        },
    }
    // Reload also reopens files (logrotate after a config change is common).
    topology.reopen();
}

/// Poll the file's content: ConfigMap updates swap a symlink, which inotify on the file
/// itself misses; comparing content once a second is cheap and always right.
async fn watch_file(path: PathBuf, changed: mpsc::Sender<()>) {
    let mut last = tokio::fs::read(&path).await.ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = tokio::fs::read(&path).await.ok();
        if now.is_some() && now != last {
            last = now;
            if changed.send(()).await.is_err() {
                return;
            }
        }
    }
}
