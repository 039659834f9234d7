//! Records/s into each sink's data path, and GetFlows latency over a full ring.
//! `cargo bench -p perisco-observe --bench observe`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use perisco_observe::HubbleConfig;
use perisco_observe::hubble::convert::{UuidGen, flow_from_record};
use perisco_observe::hubble::ring::Ring;
use perisco_observe::prometheus::red::{DEFAULT_BUCKETS, Red};
use perisco_observe::proto::flow::FlowFilter;
use perisco_observe::proto::observer::GetFlowsRequest;
use perisco_observe::proto::observer::observer_client::ObserverClient;

const BATCH: usize = 1000;

fn batch() -> Vec<perisco_engine::record::Record> {
    let codes = [200, 200, 200, 201, 404, 503];
    let services = ["books", "web", "reports", "cart", "auth"];
    (0..BATCH as u64)
        .map(|i| {
            let spec = common::Spec {
                code: Some(codes[i as usize % codes.len()]),
                service: services[i as usize % services.len()],
                latency_us: Some(100 + i * 37 % 50_000),
                ..common::Spec::default()
            };
            common::record(i, &spec)
        })
        .collect()
}

fn ingest(c: &mut Criterion) {
    let records = batch();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("hubble_convert_and_ring", |b| {
        let ring = Ring::new(4095, 4096);
        let uuids = UuidGen::new();
        let mut seq = 0u64;
        b.iter(|| {
            ring.push(records.iter().map(|r| {
                seq += 1;
                flow_from_record(r, "node", uuids.uuid(seq))
            }))
        })
    });
    g.bench_function("prometheus_observe", |b| {
        let mut red = Red::new(&DEFAULT_BUCKETS, 10_000);
        b.iter(|| records.iter().for_each(|r| red.observe(r)))
    });
    g.bench_function("prometheus_render_5_services", |b| {
        let mut red = Red::new(&DEFAULT_BUCKETS, 10_000);
        records.iter().for_each(|r| red.observe(r));
        b.iter_batched(String::new, |mut out| red.render(&mut out), BatchSize::SmallInput)
    });
    g.finish();
}

fn get_flows(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = perisco_testutil::free_port();
    let cfg = HubbleConfig {
        address: format!("127.0.0.1:{port}"),
        max_flows: 4095,
        follow_buffer: 4096,
        node_name: Some("bench".into()),
        advertise_address: None,
        ..HubbleConfig::default()
    };
    let (tx, _sink) = rt.block_on(async { common::start_sink(&cfg) });
    let records = batch();
    for _ in 0..5 {
        rt.block_on(tx.send(common::events(&records))).unwrap();
    }
    assert!(perisco_testutil::wait_for_port(
        common::addr(port),
        Duration::from_secs(10)
    ));
    let mut client = rt
        .block_on(ObserverClient::connect(format!("http://127.0.0.1:{port}")))
        .unwrap();
    // Full ring before measuring.
    loop {
        let s = rt
            .block_on(client.server_status(perisco_observe::proto::observer::ServerStatusRequest {}))
            .unwrap();
        if s.into_inner().num_flows == 4095 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let run = |req: GetFlowsRequest| {
        let mut client = client.clone();
        rt.block_on(async move {
            let mut s = client.get_flows(req).await.unwrap().into_inner();
            let mut n = 0;
            while s.message().await.unwrap().is_some() {
                n += 1;
            }
            n
        })
    };
    let mut g = c.benchmark_group("get_flows_full_ring_4095");
    g.sample_size(20);
    g.bench_function("all_4095", |b| {
        b.iter(|| assert_eq!(run(GetFlowsRequest::default()), 4095))
    });
    g.bench_function("last_20", |b| {
        b.iter(|| {
            assert_eq!(
                run(GetFlowsRequest {
                    number: 20,
                    ..Default::default()
                }),
                20
            )
        })
    });
    let filtered = GetFlowsRequest {
        number: 20,
        whitelist: vec![FlowFilter {
            http_status_code: vec!["5+".into()],
            http_path: vec!["^/books".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    g.bench_function("last_20_filtered_5xx_path_regex", |b| {
        b.iter(|| assert_eq!(run(filtered.clone()), 20))
    });
    g.finish();
    drop(tx);
}

criterion_group!(benches, ingest, get_flows);
criterion_main!(benches);
