//! Records/s per sink against local servers (not a criterion benchmark: each run starts a
//! real server and pushes a fixed number of records through the sink's whole path).
//!
//! `cargo bench -p perisco-sinks --bench sinks` (needs python3, osmem-server and tansu on
//! PATH; a sink whose server is missing is skipped). `SINK_BENCH_RECORDS` sets N
//! (`SINK_BENCH_ES_RECORDS` for elasticsearch, default 20000),
//! `SINK_BENCH_ONLY=file,http,es,kafka` picks sinks.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use perisco_engine::component::*;
use perisco_engine::event::Event;
use perisco_testutil::{free_port, which};

/// User + system CPU seconds of a process so far, from /proc/<pid>/stat (clock ticks of
/// 10 ms: fine for runs of seconds).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let ticks = f.iter().sum::<u64>() as f64;
    ticks / 100.0
}

/// Push `n` records through `sink`; prints records/s, the sink process's CPU µs per record
/// (everything in this process: JSON encoding, batching, compression, the client library)
/// and, when given, the server's CPU µs per record.
async fn measure(name: &str, h: &Harness, sink: Box<dyn Sink>, n: usize, server: Option<u32>) {
    // Batches are prepared before the clock starts: only the sink's path is measured.
    let batches: Vec<Vec<Event>> = records(n, 0).chunks(500).map(<[Event]>::to_vec).collect();
    let server = server.map(|p| p.to_string());
    let cpu0 = cpu_seconds("self");
    let srv0 = server.as_deref().map_or(0.0, cpu_seconds);
    let start = Instant::now();
    let (tx, task) = h.start(sink, 16);
    for b in batches {
        tx.send(b).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(900), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self") - cpu0;
    let srv = server.as_deref().map(|p| cpu_seconds(p) - srv0);
    assert_eq!(h.delivered(), n as u64, "{name}: not everything delivered");
    let per = |s: f64| s * 1e6 / n as f64;
    println!(
        "{name:<36} {n:>7} records {secs:>7.2} s {:>8.0} records/s | sink CPU {:>5.1} µs/record | server CPU {}",
        n as f64 / secs,
        per(cpu),
        srv.map_or("-".to_string(), |s| format!("{:.1} µs/record", per(s))),
    );
}

fn build<C: SinkConfig>(h: &Harness, text: &str) -> Box<dyn Sink> {
    let cfg: C = toml::from_str(text).unwrap();
    cfg.build(&h.cx).unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("SINK_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let es_n: usize = std::env::var("SINK_BENCH_ES_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    // SINK_BENCH_ONLY=file,http,es,kafka picks sinks (default: all).
    let only = std::env::var("SINK_BENCH_ONLY").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.split(',').any(|o| o.trim() == s);
    println!("sink benchmark: {n} records each, 1 in-flight batch per sink, loopback servers");

    let dir = tempfile::tempdir().unwrap();
    if want("file") {
        let h = Harness::new("file");
        let path = dir.path().join("out.json").display().to_string();
        measure(
            "file",
            &h,
            build::<perisco_sinks::file::FileConfig>(&h, &format!("path = {path:?}")),
            n,
            None,
        )
        .await;
    }

    if want("http") && which("python3").is_some() {
        let port = free_port();
        let srv = spawn_server(
            Command::new("python3")
                .arg(tests_dir().join("sink_server.py"))
                .arg(port.to_string()),
            port,
        );
        for (label, extra) in [
            ("http ndjson (sink_server.py)", ""),
            ("http ndjson gzip (sink_server.py)", "compression = \"gzip\""),
        ] {
            post_json(&format!("http://127.0.0.1:{port}/_reset"), "").await;
            let h = Harness::new("http");
            let cfg = format!("uri = \"http://127.0.0.1:{port}/\"\nbatch = {{ max_events = 1000 }}\n{extra}");
            measure(
                label,
                &h,
                build::<perisco_sinks::http::HttpConfig>(&h, &cfg),
                n,
                Some(srv.id()),
            )
            .await;
        }
    }

    if want("es") && which("osmem-server").is_some() {
        let port = free_port();
        let srv = spawn_server(
            Command::new("osmem-server").args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch", "-no-ja"]),
            port,
        );
        let h = Harness::new("es");
        // osmem-server indexes a few hundred documents/s and slows as the index grows, so
        // this sink gets its own N (SINK_BENCH_ES_RECORDS) and a flush window that fits.
        let cfg = format!(
            "endpoints = [\"http://127.0.0.1:{port}\"]\nbatch = {{ max_events = 1000 }}\nretry = {{ flush_timeout = \"1h\" }}"
        );
        measure(
            "elasticsearch _bulk (osmem-server)",
            &h,
            build::<perisco_sinks::elasticsearch::ElasticsearchConfig>(&h, &cfg),
            es_n,
            Some(srv.id()),
        )
        .await;
    }

    if want("kafka") && which("tansu").is_some() {
        let port = free_port();
        let srv = spawn_server(
            Command::new("tansu").args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--storage-engine",
                "memory://tansu/",
            ]),
            port,
        );
        let bootstrap = format!("127.0.0.1:{port}");
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let t = rdkafka::admin::NewTopic::new("bench", 1, rdkafka::admin::TopicReplication::Fixed(1));
        admin
            .create_topics(&[t], &rdkafka::admin::AdminOptions::new())
            .await
            .unwrap();
        for (label, comp) in [
            ("kafka acks=all (tansu)", "none"),
            ("kafka acks=all lz4 (tansu)", "lz4"),
        ] {
            let h = Harness::new("kafka");
            let cfg = format!("bootstrap_servers = \"{bootstrap}\"\ntopic = \"bench\"\ncompression = \"{comp}\"");
            measure(
                label,
                &h,
                build::<perisco_sinks::kafka::KafkaConfig>(&h, &cfg),
                n,
                Some(srv.id()),
            )
            .await;
        }
    }
}
