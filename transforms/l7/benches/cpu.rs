//! parse + match exchanges per second of CPU time on one thread (the build machine is
//! shared, so wall-clock figures undercount). Run: cargo bench -p perisco-l7 --bench cpu

use std::time::Instant;

use perisco_l7::{MatchConfig, Matcher, ParseConfig, Parser};

mod common;

// The allocator the perisco binary ships with.
#[global_allocator]
static ALLOCATOR: perisco_alloc::Mimalloc = perisco_alloc::Mimalloc;

/// ns this thread has run on a CPU (/proc/thread-self/schedstat, first field).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Passes per workload; `PERISCO_BENCH_PASSES` overrides (e.g. 1 under valgrind, to count
/// instructions per exchange).
fn passes() -> usize {
    std::env::var("PERISCO_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(11)
}

fn run(events: &[perisco_engine::event::SocketData], parser: &mut Parser, matcher: &mut Matcher) -> usize {
    let mut msgs = Vec::with_capacity(64);
    let mut recs = Vec::with_capacity(64);
    let mut n = 0;
    for ev in events {
        parser.push(ev, &mut msgs);
        for m in msgs.drain(..) {
            matcher.push(Box::new(m), &mut recs);
        }
        n += recs.len();
        recs.clear();
    }
    n
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench --bench cpu -- http1` runs one workload only.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    for name in ["http1", "http2"] {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let events = if name == "http1" {
            common::http1(100, 1000)
        } else {
            common::http2(100, 1000)
        };
        let mut parser = Parser::new(&ParseConfig::default());
        let mut matcher = Matcher::new(&MatchConfig::default());
        run(&events[..events.len() / 10], &mut parser, &mut matcher); // warm-up
        // Eleven passes, each on fresh state; the machine is a shared VM, so the best pass
        // (least CPU time) is the figure, with the median beside it.
        let n_passes = passes();
        let mut passes = Vec::new();
        for _ in 0..n_passes {
            let mut parser = Parser::new(&ParseConfig::default());
            let mut matcher = Matcher::new(&MatchConfig::default());
            let (c0, w0) = (cpu_ns(), Instant::now());
            let n = run(&events, &mut parser, &mut matcher);
            let (cpu, wall) = ((cpu_ns() - c0) as f64 / 1e9, w0.elapsed().as_secs_f64());
            passes.push((n as f64 / cpu, n as f64 / wall, n));
        }
        passes.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (best, median) = (passes[0], passes[n_passes / 2]);
        println!(
            "{name}: {} exchanges per pass, best {:.0} k exchanges/s per CPU-second (median {:.0} k), \
             wall {:.0} k/s in the best pass",
            best.2,
            best.0 / 1e3,
            median.0 / 1e3,
            best.1 / 1e3,
        );
    }
}
