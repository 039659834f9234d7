//! Records/s per sink against local servers (not a criterion benchmark: each run starts a
//! real server and pushes a fixed number of records through the sink's whole path).
//!
//! `cargo bench -p perisco-sinks --bench sinks` (needs python3, osmem-server and tansu on
//! PATH; a sink whose server is missing is skipped). `SINK_BENCH_RECORDS` sets N.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use perisco_engine::component::*;
use perisco_testutil::{free_port, which};

async fn measure(name: &str, h: &Harness, sink: Box<dyn Sink>, n: usize) {
    let events = records(n, 0);
    let start = Instant::now();
    let (tx, task) = h.start(sink, 16);
    for b in events.chunks(500) {
        tx.send(b.to_vec()).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(600), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(h.delivered(), n as u64, "{name}: not everything delivered");
    println!(
        "{name:<40} {n:>8} records  {secs:>7.2} s  {:>9.0} records/s",
        n as f64 / secs
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
    println!("sink benchmark: {n} records each, 1 in-flight batch per sink, loopback servers");

    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new("file");
    let path = dir.path().join("out.json").display().to_string();
    measure(
        "file",
        &h,
        build::<perisco_sinks::file::FileConfig>(&h, &format!("path = {path:?}")),
        n,
    )
    .await;

    if which("python3").is_some() {
        let port = free_port();
        let _s = spawn_server(
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
            measure(label, &h, build::<perisco_sinks::http::HttpConfig>(&h, &cfg), n).await;
        }
    }

    if which("osmem-server").is_some() {
        let port = free_port();
        let _s = spawn_server(
            Command::new("osmem-server").args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch", "-no-ja"]),
            port,
        );
        let h = Harness::new("es");
        let cfg = format!("endpoints = [\"http://127.0.0.1:{port}\"]\nbatch = {{ max_events = 1000 }}");
        measure(
            "elasticsearch _bulk (osmem-server)",
            &h,
            build::<perisco_sinks::elasticsearch::ElasticsearchConfig>(&h, &cfg),
            n,
        )
        .await;
    }

    if which("tansu").is_some() {
        let port = free_port();
        let _s = spawn_server(
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
            measure(label, &h, build::<perisco_sinks::kafka::KafkaConfig>(&h, &cfg), n).await;
        }
    }
}
