//! parse + match throughput on one core: exchanges per second, HTTP/1.1 and HTTP/2.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perisco_l7::{MatchConfig, Matcher, ParseConfig, Parser};

mod common;

fn run(events: &[perisco_engine::event::SocketData]) -> usize {
    let mut parser = Parser::new(&ParseConfig::default());
    let mut matcher = Matcher::new(&MatchConfig::default());
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

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_match");
    // 100 connections × 100 keep-alive exchanges.
    let h1 = common::http1(100, 100);
    let exchanges = run(&h1);
    assert_eq!(exchanges, 10_000);
    g.throughput(Throughput::Elements(exchanges as u64));
    g.bench_function("http1_exchanges", |b| b.iter(|| run(&h1)));

    // 100 connections × 100 streams.
    let h2 = common::http2(100, 100);
    let exchanges = run(&h2);
    assert_eq!(exchanges, 10_000);
    g.throughput(Throughput::Elements(exchanges as u64));
    g.bench_function("http2_exchanges", |b| b.iter(|| run(&h2)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
