//! Memory and speed of the enrich cache for a synthetic cluster (default 10 000 pods).
//!
//!   cargo bench -p perisco-enrich --bench snapshot_memory [-- PODS]
//!
//! Heap figures come from a counting global allocator (bytes live, exact); RSS from
//! /proc/self/status (what the kernel charges, allocator slack included); times are this
//! thread's CPU time (/proc/thread-self/schedstat), not wall-clock. The pod objects
//! fed in are dropped as they are applied, as the watcher does, so what remains is what
//! the cache keeps.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use perisco_engine::event::{IpInfo, L4, L7, Record, TcpPorts};
use perisco_enrich::state::{ClusterState, StateOptions};
use serde_json::json;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time this thread has run, in ns (/proc/thread-self/schedstat): on a shared machine
/// wall-clock time mostly measures the other tenants.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256)
}

/// A pod shaped like a Deployment's: five labels (one excluded), an owner, two containers.
fn pod(i: usize) -> Pod {
    let app = format!("service-{:04}", i / 5);
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{app}-7d9c8b6f5d-{:05}", i),
            "namespace": format!("team-{:02}", i % 40),
            "uid": format!("6f1c2b8e-0000-4000-8000-{:012}", i),
            "labels": {"app": app, "app.kubernetes.io/part-of": "shop", "version": "v1.2.3",
                       "team": format!("team-{:02}", i % 40), "pod-template-hash": "7d9c8b6f5d"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-7d9c8b6f5d"),
                                 "uid": "x", "controller": true}]
        },
        "spec": {"nodeName": format!("node-{}", i % 100), "containers": []},
        "status": {"phase": "Running", "podIP": ip(i), "podIPs": [{"ip": ip(i)}], "hostIP": "192.168.0.1",
                   "containerStatuses": [
                       {"name": "app", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                        "containerID": format!("containerd://{:064x}", i)},
                       {"name": "sidecar", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                        "containerID": format!("containerd://{:064x}", i + 1_000_000)}]}
    }))
    .unwrap()
}

fn main() {
    let pods: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let services = pods / 5;
    let opts = StateOptions {
        node_name: Some("node-0".into()),
        grace: Duration::from_secs(60),
        exclude_labels: vec!["pod-template-hash".into()],
    };
    let (heap0, rss0) = (live(), rss_kib());
    let mut st = ClusterState::new(opts);
    let now = Instant::now();
    let c = cpu_ns();
    for i in 0..pods {
        st.apply_pod(&pod(i), now);
    }
    for s in 0..services {
        let ns = format!("team-{:02}", (s * 5) % 40);
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": format!("service-{s:04}"), "namespace": ns, "uid": format!("svc-{s}")},
            "spec": {"clusterIP": format!("10.96.{}.{}", s / 256, s % 256)}
        }))
        .unwrap();
        st.apply_service(&svc);
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": format!("service-{s:04}-abcde"), "namespace": ns, "uid": format!("es-{s}"),
                         "labels": {"kubernetes.io/service-name": format!("service-{s:04}")}},
            "addressType": "IPv4",
            "endpoints": (0..5).map(|k| json!({"addresses": [ip(s * 5 + k)]})).collect::<Vec<_>>()
        }))
        .unwrap();
        st.apply_slice(&slice);
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": format!("service-{s:04}-7d9c8b6f5d"), "namespace": ns, "uid": format!("rs-{s}"),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("service-{s:04}"),
                                              "uid": "d", "controller": true}]}
        }))
        .unwrap();
        st.apply_replicaset(&rs);
    }
    let apply_time = Duration::from_nanos(cpu_ns() - c);
    let (heap1, rss1) = (live(), rss_kib());

    let c = cpu_ns();
    let snap = st.snapshot(now);
    let first_build = Duration::from_nanos(cpu_ns() - c);
    let (heap2, rss2) = (live(), rss_kib());

    // Rebuild cost (what every published change costs), median of 21.
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let c = cpu_ns();
            black_box(st.snapshot(now));
            Duration::from_nanos(cpu_ns() - c)
        })
        .collect();
    times.sort();
    let rebuild = times[times.len() / 2];

    // Lookup cost per record (both sides found, both services found).
    let records: Vec<Record> = (0..1000)
        .map(|i| Record {
            ts: 1,
            pid: 1,
            ip: IpInfo::new(ip(i * 7 % pods).parse().unwrap(), ip(i * 13 % pods).parse().unwrap()),
            l4: L4 {
                tcp: TcpPorts {
                    client_port: 1,
                    server_port: 2,
                },
            },
            l7: L7::default(),
            client: None,
            server: None,
            client_service: None,
            server_service: None,
            comm: None,
            container_id: None,
            node: None,
            incomplete: vec![],
        })
        .collect();
    let rounds = 200;
    let c = cpu_ns();
    let mut hits = 0u64;
    for _ in 0..rounds {
        for r in &records {
            let mut r = r.clone();
            let f = snap.enrich(&mut r);
            hits += u64::from(f.client) + u64::from(f.server);
            black_box(&r);
        }
    }
    let per_record = Duration::from_nanos(cpu_ns() - c) / (rounds * records.len() as u32);
    // The clone of an empty record is part of the loop; measure it alone to subtract.
    let c = cpu_ns();
    for _ in 0..rounds {
        for r in &records {
            black_box(r.clone());
        }
    }
    let clone_cost = Duration::from_nanos(cpu_ns() - c) / (rounds * records.len() as u32);
    assert_eq!(hits, 2 * rounds as u64 * records.len() as u64, "every side resolves");

    let mib = |b: isize| b as f64 / (1024.0 * 1024.0);
    println!(
        "enrich cache, synthetic cluster: {pods} pods, {services} services, {services} endpointslices, {services} replicasets"
    );
    println!(
        "  cluster state (kept fields): heap {:.2} MiB ({} B/pod), RSS +{:.2} MiB",
        mib(heap1 - heap0),
        (heap1 - heap0) / pods as isize,
        (rss1 - rss0) as f64 / 1024.0
    );
    println!(
        "  one snapshot on top:         heap {:.2} MiB ({} B/pod), RSS +{:.2} MiB",
        mib(heap2 - heap1),
        (heap2 - heap1) / pods as isize,
        (rss2 - rss1) as f64 / 1024.0
    );
    println!(
        "  total:                       heap {:.2} MiB, RSS +{:.2} MiB",
        mib(heap2 - heap0),
        (rss2 - rss0) as f64 / 1024.0
    );
    println!("  applying the objects: {apply_time:.2?} CPU (JSON decoding of the synthetic objects included)");
    println!("  snapshot build: first {first_build:.2?}, rebuild median {rebuild:.2?} (CPU time)");
    println!(
        "  lookup: {:?} CPU per record (both pods + both services; record clone of {clone_cost:?} excluded)",
        per_record.saturating_sub(clone_cost)
    );
    black_box(snap);
}
