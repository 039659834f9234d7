//! Record → JSON line: serde_json (what `Event::write_json` did) against the hand-written
//! writer (`perisco_engine::json`), on a realistic enriched HTTP/1 GET and on the same
//! record patched by a small remap.
//!
//! cargo bench -p perisco-engine --bench json

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use perisco_engine::event::{
    Change, Endpoint, Header, HttpRequest, HttpResponse, IpInfo, L4, L7, Patch, PatchedRecord, Record, ServiceRef,
    TcpPorts, Workload,
};
use perisco_engine::json::{write_patched, write_record};
use perisco_engine::record::{L7Request, L7Response};
use serde_json::json;

fn endpoint(pod: &str, app: &str, kind: &str) -> Endpoint {
    Endpoint {
        namespace: Some("shop".into()),
        labels: vec![
            format!("app={app}"),
            "pod-template-hash=5f459f867b".into(),
            "tier=backend".into(),
        ],
        pod_name: Some(pod.into()),
        workload: Some(Workload {
            name: app.into(),
            kind: kind.into(),
        }),
    }
}

/// An HTTP/1.1 GET with 8 request headers and 5 response headers between two enriched pods.
fn record() -> Record {
    let h = |k: &str, v: &str| Header::new(k, v);
    Record {
        ts: 1_764_184_609_619_285_359,
        pid: 87111,
        ip: IpInfo::new("10.244.1.186".parse().unwrap(), "10.244.2.42".parse().unwrap()),
        l4: L4 {
            tcp: TcpPorts {
                client_port: 38674,
                server_port: 8080,
            },
        },
        l7: L7 {
            latency_ns: Some(1_861_819),
            request: Some(L7Request {
                http: HttpRequest {
                    protocol: "HTTP/1.1".into(),
                    method: "GET".into(),
                    url: "/api/v1/books?order=lower%28title%29&limit=20".into(),
                    headers: vec![
                        h("Host", "books.shop.svc.cluster.local:8080"),
                        h("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
                        h("Accept", "application/json"),
                        h("Accept-Encoding", "gzip, deflate"),
                        h("Accept-Language", "en-US,en;q=0.9"),
                        h("Authorization", "[REDACTED]"),
                        h("X-Request-Id", "4f9c2d1e-8a7b-4c3d-9e2f-1a2b3c4d5e6f"),
                        h("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                    ],
                    ..Default::default()
                },
            }),
            response: Some(L7Response {
                http: HttpResponse {
                    protocol: "HTTP/1.1".into(),
                    code: 200,
                    headers: vec![
                        h("Content-Type", "application/json; charset=utf-8"),
                        h("Content-Length", "1834"),
                        h("Date", "Wed, 26 Nov 2025 19:16:49 GMT"),
                        h("Server", "WEBrick/1.7.0 (Ruby/3.1.2/2022-04-12)"),
                        h("Cache-Control", "no-cache"),
                    ],
                    body_bytes: Some(1834),
                    ..Default::default()
                },
            }),
            grpc: None,
        },
        client: Some(std::sync::Arc::new(endpoint(
            "webapp-5f459f867b-2zbx8",
            "webapp",
            "Deployment",
        ))),
        server: Some(std::sync::Arc::new(endpoint(
            "books-675456b8d-prpht",
            "books",
            "Deployment",
        ))),
        client_service: Some(std::sync::Arc::new(ServiceRef {
            name: "webapp".into(),
            namespace: "shop".into(),
        })),
        server_service: Some(std::sync::Arc::new(ServiceRef {
            name: "books".into(),
            namespace: "shop".into(),
        })),
        comm: Some("ruby".into()),
        container_id: Some("3f1c9a7be0d24c55a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8".into()),
        node: Some("node-1".into()),
        incomplete: vec![],
    }
}

/// What a typical remap leaves: one field added, the headers dropped, one value rewritten.
fn patched() -> PatchedRecord {
    let mut patch = Patch::default();
    patch.insert(&["cluster"], Change::Set(json!("prod-eu-1")));
    patch.insert(&["l7", "request", "http", "headers"], Change::Delete);
    patch.insert(&["l7", "response", "http", "headers"], Change::Delete);
    patch.insert(&["server", "namespace"], Change::Set(json!("shop-prod")));
    PatchedRecord {
        record: record(),
        patch,
    }
}

fn bench(c: &mut Criterion) {
    let r = record();
    let mut out = Vec::with_capacity(4096);
    serde_json::to_writer(&mut out, &r).unwrap();
    let mut g = c.benchmark_group("record_json");
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function(BenchmarkId::new("serde_json", out.len()), |b| {
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, black_box(&r)).unwrap();
            black_box(out.len())
        })
    });
    g.bench_function(BenchmarkId::new("writer", out.len()), |b| {
        b.iter(|| {
            out.clear();
            write_record(&mut out, black_box(&r));
            black_box(out.len())
        })
    });
    g.finish();

    let p = patched();
    out.clear();
    serde_json::to_writer(&mut out, &p.to_json_map().unwrap()).unwrap();
    let mut g = c.benchmark_group("patched_json");
    g.throughput(Throughput::Bytes(out.len() as u64));
    // What `Event::write_json` did for a patched record: to a map, apply, serialise.
    g.bench_function(BenchmarkId::new("serde_json_map", out.len()), |b| {
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, &black_box(&p).to_json_map().unwrap()).unwrap();
            black_box(out.len())
        })
    });
    g.bench_function(BenchmarkId::new("writer", out.len()), |b| {
        b.iter(|| {
            out.clear();
            write_patched(&mut out, black_box(&p)).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
