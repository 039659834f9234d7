//! State for 100 k open connections: each has a request waiting for its response (in
//! `match`) and a response head half received (in `parse`). Prints parser state bytes and
//! the process's resident memory growth. Run: cargo bench -p perisco-l7 --bench memory

use std::sync::Arc;

use bytes::Bytes;
use perisco_engine::event::{Direction, ProcessInfo};
use perisco_l7::{MatchConfig, Matcher, ParseConfig, Parser};

mod common;

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
    for proto in ["http1", "http2"] {
        let before = rss_kib();
        let mut parser = Parser::new(&ParseConfig {
            max_connections: 200_000,
            ..ParseConfig::default()
        });
        let mut matcher = Matcher::new(&MatchConfig {
            max_connections: 200_000,
            ..MatchConfig::default()
        });
        let (mut msgs, mut recs) = (Vec::new(), Vec::new());
        let events = if proto == "http1" {
            (0..N)
                .flat_map(|c| {
                    [
                        common::event(c, Direction::Ingress, 1, req.clone(), &process),
                        common::event(c, Direction::Egress, 2, half.clone(), &process),
                    ]
                })
                .collect::<Vec<_>>()
        } else {
            // Preface + SETTINGS both ways, then one request whose response never comes.
            let all = common::http2(N, 1);
            all.into_iter()
                .filter(|e| e.direction == Direction::Ingress || e.data.len() < 20)
                .collect()
        };
        let events_kib = events.iter().map(|e| e.data.len() + 100).sum::<usize>() / 1024;
        for ev in &events {
            parser.push(ev, &mut msgs);
            for m in msgs.drain(..) {
                matcher.push(Box::new(m), &mut recs);
            }
        }
        drop(events);
        let after = rss_kib();
        println!(
            "{proto}: {} connections, parse state {:.1} MiB (state_bytes), {} requests waiting in match, \
             RSS growth {:.1} MiB (events buffer of ~{:.1} MiB freed before measuring)",
            parser.connections(),
            parser.state_bytes() as f64 / 1048576.0,
            matcher.waiting(),
            after.saturating_sub(before) as f64 / 1024.0,
            events_kib as f64 / 1024.0,
        );
        assert_eq!(parser.connections() as u64, N);
        assert_eq!(matcher.waiting() as u64, N);
        assert!(recs.is_empty());
    }
}
