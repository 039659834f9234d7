//! `kafka` sink against librdkafka's in-process mock cluster: fast checks that need no
//! broker install (the tansu tests in kafka.rs are the real-server ones).

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use perisco_engine::component::*;
use perisco_sinks::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

fn sink(h: &Harness, toml_text: &str) -> Box<dyn Sink> {
    let cfg: KafkaConfig = toml::from_str(toml_text).unwrap();
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    cfg.build(&h.cx).unwrap()
}

fn consume(bootstrap: &str, topics: &[&str], want: usize) -> Vec<(String, Value)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "perisco-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        tpl.add_partition_offset(t, 0, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    while out.len() < want && start.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((
                m.topic().to_string(),
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap(),
            ));
        }
    }
    // Anything beyond `want` would be a duplicate: give it a moment to show up.
    let extra = std::time::Instant::now();
    while extra.elapsed() < Duration::from_millis(500) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((
                m.topic().to_string(),
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap(),
            ));
        }
    }
    out
}

fn cluster(topics: &[&str]) -> MockCluster<'static, DefaultProducerContext> {
    let c = MockCluster::new(1).unwrap();
    for t in topics {
        c.create_topic(t, 1, 1).unwrap();
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mock_delivers_every_record_to_templated_topics() {
    let topics = ["perisco-shop", "perisco-default", "perisco-unknown"];
    let mock = cluster(&topics);
    let bootstrap = mock.bootstrap_servers();
    const N: usize = 600;
    let events = records(N, 0);
    let h = Harness::new("kafka");
    let s = sink(
        &h,
        &format!("bootstrap_servers = \"{bootstrap}\"\ntopic = \"perisco-{{{{ server.namespace }}}}\""),
    );
    let (tx, task) = h.start(s, 4);
    for b in events.chunks(100) {
        tx.send(b.to_vec()).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(h.delivered(), N as u64);
    let msgs = consume(&bootstrap, &topics, N);
    assert_eq!(msgs.len(), N);
    for (topic, v) in &msgs {
        assert_eq!(
            topic,
            &format!("perisco-{}", v["server"]["namespace"].as_str().unwrap_or("unknown"))
        );
    }
    let got = by_seq(msgs.into_iter().map(|(_, v)| v).collect());
    assert_same_records(&got, &by_seq(file_sink_output(&events).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mock_oversized_messages_are_counted_not_retried() {
    let mock = cluster(&["small"]);
    let h = Harness::new("kafka");
    let s = sink(
        &h,
        &format!(
            "bootstrap_servers = \"{}\"\ntopic = \"small\"\nlibrdkafka_options = {{ \"message.max.bytes\" = \"1000\" }}",
            mock.bootstrap_servers()
        ),
    );
    let (tx, task) = h.start(s, 4);
    // Every record carries a 2000-byte body: over `message.max.bytes`.
    let mut events = records(50, 0);
    for e in &mut events {
        if let perisco_engine::event::Event::Record(r) = e
            && let Some(req) = r.l7.request.as_mut()
        {
            req.http.body = Some("x".repeat(2000).into());
        }
    }
    tx.send(events).await.unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(h.dropped("rejected"), 50);
    assert_eq!(h.retried(), 0);
    assert_eq!(h.delivered(), 0);
}

/// The mock broker going down and up.
struct MockBroker<'a>(&'a MockCluster<'static, DefaultProducerContext>);

impl Network for MockBroker<'_> {
    async fn down(&mut self) {
        self.0.broker_down(1).unwrap();
    }
    async fn up(&mut self) {
        self.0.broker_up(1).unwrap();
    }
}

async fn outage(drop_newest: bool) {
    let mock = cluster(&["outage"]);
    let bootstrap = mock.bootstrap_servers();
    const N: usize = 2000;
    let when_full = if drop_newest { "drop_newest" } else { "block" };
    let h = Harness::new("kafka");
    let s = sink(
        &h,
        &format!(
            r#"
            bootstrap_servers = "{bootstrap}"
            topic = "outage"
            batch = {{ max_events = 100, timeout = "20ms" }}
            buffer = {{ max_events = 300, when_full = "{when_full}" }}
            retry = {{ initial_backoff = "100ms", max_backoff = "500ms" }}
            librdkafka_options = {{ "message.timeout.ms" = "1500", "reconnect.backoff.max.ms" = "200" }}
            "#
        ),
    );
    let o = Outage {
        before: 300,
        buffer_max: 300,
        sink_batch: 100,
        feed_batch: 50,
        channel: 2,
        drop_newest,
    };
    run_through_outage(&h, s, &mut MockBroker(&mock), records(N, 0), o).await;
    let msgs = consume(&bootstrap, &["outage"], h.delivered() as usize);
    let seqs: BTreeSet<u64> = msgs.iter().map(|(_, v)| v["pid"].as_u64().unwrap()).collect();
    assert_eq!(seqs.len() as u64, h.delivered(), "distinct messages = delivered");
    if !drop_newest {
        assert_eq!(seqs, (0..N as u64).collect::<BTreeSet<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mock_broker_down_with_block_delivers_everything_after_recovery() {
    outage(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mock_broker_down_with_drop_newest_counts_every_drop() {
    outage(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_healthcheck_fails_clearly_when_no_broker_answers() {
    let port = perisco_testutil::free_port(); // nothing listens
    let cfg: KafkaConfig = toml::from_str(&format!(
        "bootstrap_servers = \"127.0.0.1:{port}\"\ntopic = \"perisco\""
    ))
    .unwrap();
    let err = cfg
        .healthcheck()
        .expect("kafka sink has a healthcheck")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot fetch metadata"), "{err}");
}
