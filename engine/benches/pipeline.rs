//! Events/s through source → 3 pass-through transforms → sink, on one core
//! (a current-thread runtime), with batches of 1024.
//!
//! cargo bench -p perisco-engine --bench pipeline

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perisco_engine::RunningTopology;
use perisco_engine::config::Config;
use perisco_engine::metrics::Registry;
use perisco_engine::testing::{TestComponents, collected_count, reset_collected};

const N: u64 = 1_000_000;

fn config(batch: usize) -> Config<TestComponents> {
    let text = format!(
        r#"
[sources.gen]
type = "generator"
count = {N}
batch = {batch}

[transforms.t1]
type = "passthrough"
inputs = ["gen"]

[transforms.t2]
type = "passthrough"
inputs = ["t1"]

[transforms.t3]
type = "passthrough"
inputs = ["t2"]

[sinks.out]
type = "collect"
inputs = ["t3"]
name = "bench"
count_only = true
"#
    );
    Config::from_str(&text, "bench.toml").expect("valid bench config")
}

fn run_once(rt: &tokio::runtime::Runtime, batch: usize) -> Duration {
    reset_collected("bench");
    let start = Instant::now();
    rt.block_on(async {
        let topo = RunningTopology::start(config(batch), Registry::new())
            .await
            .expect("start");
        topo.wait_sources_finished().await;
        assert!(topo.stop(Duration::from_secs(60)).await.drained);
    });
    let elapsed = start.elapsed();
    assert_eq!(collected_count("bench"), N);
    elapsed
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("pipeline_3_passthrough");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    for batch in [1024usize, 128] {
        g.bench_function(format!("batch_{batch}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run_once(&rt, batch)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
