//! Records per second through `filter` and a 5-line `remap`, against the same work
//! without them. "pipeline" = the transform plus what a file sink then does (one JSON
//! line per event); "stage" = the transform alone.
//!
//! cargo bench -p perisco-vrl --bench vrl

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use perisco_engine::FunctionTransform;
use perisco_engine::event::{Event, Record};
use perisco_engine::metrics::ComponentMetrics;
use perisco_vrl::convert::{self, Selection};
use perisco_vrl::{Filter, FilterConfig, Remap, RemapConfig};

// The perisco binary's allocator (src/main.rs): VRL values allocate per key and value.
#[global_allocator]
static ALLOCATOR: perisco_alloc::Mimalloc = perisco_alloc::Mimalloc;

const RECORDS: &str = include_str!("../tests/data/records.jsonl");
const BATCH: usize = 1000;

const CONDITION: &str = r#".l7.response.http.code >= 500 || .server.namespace == "payments""#;

const REMAP_5_LINES: &str = r#"
.cluster = "prod"
.route = if exists(.l7.grpc) { string!(.l7.grpc.service) + "/" + string!(.l7.grpc.method) } else { "http" }
.latency_ms = to_float(to_int(.l7.latencyNs) ?? 0) / 1000000.0
del(.l7.request.http.headers)
.l7.request.http.method = downcase(string!(.l7.request.http.method))
"#;

/// The smallest useful remap: one constant field (the floor of a remap stage).
const REMAP_1_LINE: &str = r#".cluster = "prod""#;

fn batch() -> Vec<Event> {
    let records: Vec<Record> = RECORDS.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    records
        .iter()
        .cycle()
        .take(BATCH)
        .map(|r| Event::Record(Box::new(r.clone())))
        .collect()
}

fn filter(prune: bool) -> Filter {
    let f = Filter::new(
        &FilterConfig {
            condition: CONDITION.into(),
        },
        "bench".into(),
        ComponentMetrics::default(),
    )
    .unwrap();
    if prune { f } else { f.converting_everything() }
}

/// The remap as built (record + patch out), or forced down the whole-event path
/// (document out, what every remap did before patches).
fn remap(whole_event: bool) -> Remap {
    remap_of(REMAP_5_LINES, whole_event)
}

fn remap_of(source: &str, whole_event: bool) -> Remap {
    let cfg = RemapConfig {
        source: Some(source.into()),
        file: None,
        drop_on_error: false,
        drop_on_abort: true,
    };
    let r = Remap::new(&cfg, source, "bench".into(), ComponentMetrics::default()).unwrap();
    if whole_event { r.whole_event() } else { r }
}

/// What the file sink does with each event: one JSON line into a buffer.
fn sink(events: &[Event], buf: &mut Vec<u8>) {
    buf.clear();
    for e in events {
        e.write_json(buf).unwrap();
        buf.push(b'\n');
    }
}

fn run(t: &mut dyn FunctionTransform, input: Vec<Event>) -> Vec<Event> {
    let mut out = Vec::with_capacity(input.len());
    t.transform_batch(input, &mut out);
    out
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut f = filter(true);
    g.bench_function("filter", |b| {
        b.iter_batched(batch, |i| run(&mut f, i), BatchSize::LargeInput)
    });
    let mut f = filter(false);
    g.bench_function("filter_unpruned", |b| {
        b.iter_batched(batch, |i| run(&mut f, i), BatchSize::LargeInput)
    });
    let mut r = remap(false);
    g.bench_function("remap_5_lines", |b| {
        b.iter_batched(batch, |i| run(&mut r, i), BatchSize::LargeInput)
    });
    let mut r = remap(true);
    g.bench_function("remap_5_lines_whole_event", |b| {
        b.iter_batched(batch, |i| run(&mut r, i), BatchSize::LargeInput)
    });
    let mut r = remap_of(REMAP_1_LINE, false);
    g.bench_function("remap_1_line", |b| {
        b.iter_batched(batch, |i| run(&mut r, i), BatchSize::LargeInput)
    });
    let records: Vec<Record> = RECORDS.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    g.bench_function("record_to_vrl_and_back", |b| {
        b.iter(|| {
            for r in records.iter().cycle().take(BATCH) {
                let v = convert::to_vrl(r, &Selection::All).unwrap();
                black_box(convert::vrl_to_json(v));
            }
        })
    });
    g.bench_function("record_to_vrl_via_serde_json", |b| {
        b.iter(|| {
            for r in records.iter().cycle().take(BATCH) {
                let v = vrl::value::Value::from(serde_json::to_value(r).unwrap());
                black_box(v);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut buf = Vec::with_capacity(1 << 20);
    g.bench_function("without_vrl", |b| {
        b.iter_batched(batch, |i| sink(&i, &mut buf), BatchSize::LargeInput)
    });
    let mut f = filter(true);
    g.bench_function("filter", |b| {
        b.iter_batched(batch, |i| sink(&run(&mut f, i), &mut buf), BatchSize::LargeInput)
    });
    let mut r = remap(false);
    g.bench_function("remap_5_lines", |b| {
        b.iter_batched(batch, |i| sink(&run(&mut r, i), &mut buf), BatchSize::LargeInput)
    });
    let mut r = remap(true);
    g.bench_function("remap_5_lines_whole_event", |b| {
        b.iter_batched(batch, |i| sink(&run(&mut r, i), &mut buf), BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group!(vrl_benches, benches);
criterion_main!(vrl_benches);
