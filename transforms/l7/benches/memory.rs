//! State for 100 k open connections: each has a request waiting for its response (in
//! `match`) and a response head half received (in `parse`). Prints parser state bytes and
//! the process's resident memory growth. Run: cargo bench -p perisco-l7 --bench memory

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use perisco_engine::event::{Direction, ProcessInfo, SocketData};
use perisco_l7::{MatchConfig, Matcher, ParseConfig, Parser};

mod common;

/// The system allocator, counting live bytes and allocations: the heap the state uses,
/// next to the RSS that also includes the allocator's own overhead.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    const N: u64 = 100_000;
    let process = Arc::new(ProcessInfo {
        pid: 1,
        comm: Some("srv".into()),
        container_id: None,
    });
    let req = Bytes::from_static(common::H1_REQ);
    let half = Bytes::from_static(&common::H1_RESP[..60]);
    // `cargo bench --bench memory -- http2` measures one protocol (in a fresh process, the
    // figure is not helped by memory the other one freed).
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    // `-idle`: the same connections after one complete exchange, nothing waiting.
    for proto in ["http1", "http2", "http1-idle", "http2-idle"] {
        if !only.is_empty() && !only.iter().any(|o| o == proto) {
            continue;
        }
        let before = rss_kib();
        let (bytes0, allocs0) = (LIVE_BYTES.load(Ordering::Relaxed), LIVE_ALLOCS.load(Ordering::Relaxed));
        let mut parser = Parser::new(&ParseConfig {
            max_connections: 200_000,
            ..ParseConfig::default()
        });
        let mut matcher = Matcher::new(&MatchConfig {
            max_connections: 200_000,
            ..MatchConfig::default()
        });
        let (mut msgs, mut recs, mut records) = (Vec::new(), Vec::new(), 0u64);
        // Events are made per connection as they are fed (from one template per protocol),
        // so no event buffer is in the heap under the state being measured.
        let idle = proto.ends_with("-idle");
        let template: Vec<SocketData> = match proto {
            "http1" => vec![
                common::event(0, Direction::Ingress, 1, req.clone(), &process),
                common::event(0, Direction::Egress, 2, half.clone(), &process),
            ],
            "http1-idle" => common::http1(1, 1),
            // Preface + SETTINGS both ways, then one request whose response never comes.
            "http2" => common::http2(1, 1)
                .into_iter()
                .filter(|e| e.direction == Direction::Ingress || e.data.len() < 20)
                .collect(),
            _ => common::http2(1, 1),
        };
        for c in 0..N {
            for t in &template {
                let ev = common::event(c, t.direction, t.ts_ns, t.data.clone(), &process);
                parser.push(&ev, &mut msgs);
                for m in msgs.drain(..) {
                    matcher.push(Box::new(m), &mut recs);
                }
                // Records leave (to a sink): only the state stays.
                records += recs.len() as u64;
                recs.clear();
            }
        }
        let after = rss_kib();
        let heap = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(bytes0);
        let allocs = LIVE_ALLOCS.load(Ordering::Relaxed).saturating_sub(allocs0);
        println!(
            "{proto}: {} connections, parse state {:.1} MiB (state_bytes), {} requests waiting in match, \
             heap in use {:.1} MiB in {:.1} allocations per connection, RSS growth {:.1} MiB",
            parser.connections(),
            parser.state_bytes() as f64 / 1048576.0,
            matcher.waiting(),
            heap as f64 / 1048576.0,
            allocs as f64 / N as f64,
            after.saturating_sub(before) as f64 / 1024.0,
        );
        assert_eq!(parser.connections() as u64, N);
        if idle {
            assert_eq!(matcher.waiting(), 0);
            assert_eq!(records, N);
        } else {
            assert_eq!(matcher.waiting() as u64, N);
            assert_eq!(records, 0);
        }
    }
}
