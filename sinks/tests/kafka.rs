//! `kafka` sink against tansu (a Kafka-protocol broker), read back with an rdkafka consumer.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use perisco_engine::component::*;
use perisco_sinks::kafka::KafkaConfig;
use perisco_testutil::{ChildGuard, Need, free_port, require};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// tansu listening on `port`, telling clients to connect to `advertised` (a proxy port in
/// the outage tests).
fn start_tansu(port: u16, advertised: u16) -> ChildGuard {
    spawn_server(
        Command::new("tansu").args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
            "--storage-engine",
            "memory://tansu/",
        ]),
        port,
    )
}

/// `client.id` of the test's admin client: the gate of [`RestartingBroker`] lets it in.
const ADMIN_ID: &str = "perisco-test-admin";

async fn create_topics(bootstrap: &str, names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", ADMIN_ID)
        .create()
        .unwrap();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
        .collect();
    let res = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await;
    for r in res.expect("create topics") {
        r.expect("topic created");
    }
}

/// (topic, key, value) of every message in `topics`, read from the beginning until
/// `want` messages arrived or nothing more came for 5 s.
fn consume(bootstrap: &str, topics: &[&str], want: usize) -> Vec<(String, Option<String>, Value)> {
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
    let mut idle = std::time::Instant::now();
    while out.len() < want || idle.elapsed() < Duration::from_secs(1) {
        if idle.elapsed() > Duration::from_secs(if out.len() < want { 20 } else { 5 }) {
            break;
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = std::time::Instant::now();
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                let v: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
                out.push((m.topic().to_string(), key, v));
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    out
}

fn sink(h: &Harness, toml_text: &str) -> Box<dyn Sink> {
    let cfg: KafkaConfig = toml::from_str(toml_text).unwrap();
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    cfg.build(&h.cx).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_delivers_every_record_as_the_file_sink_writes_it() {
    if !require(
        "kafka_delivers_every_record_as_the_file_sink_writes_it",
        &[Need::Command("tansu")],
    ) {
        return;
    }
    let port = free_port();
    let _tansu = start_tansu(port, port);
    let bootstrap = format!("127.0.0.1:{port}");
    let topics = ["perisco-shop", "perisco-default", "perisco-unknown"];
    // The start-up check names a missing topic (tansu does not auto-create).
    let missing: KafkaConfig = toml::from_str(&format!(
        "bootstrap_servers = \"{bootstrap}\"\ntopic = \"perisco-shop\""
    ))
    .unwrap();
    let err = missing.healthcheck().unwrap().await.unwrap_err();
    assert!(err.to_string().contains("perisco-shop"), "{err}");
    create_topics(&bootstrap, &topics).await;
    missing
        .healthcheck()
        .unwrap()
        .await
        .expect("healthy once the topic exists");
    const N: usize = 900;
    let events = records(N, 0);
    let h = Harness::new("kafka");
    let s = sink(
        &h,
        &format!(
            r#"
            bootstrap_servers = "{bootstrap}"
            topic = "perisco-{{{{ server.namespace }}}}"
            key_field = "server.podName"
            compression = "lz4"
            acks = "all"
            batch = {{ max_events = 200, timeout = "20ms" }}
            "#
        ),
    );
    let (tx, task) = h.start(s, 4);
    for b in events.chunks(100) {
        tx.send(b.to_vec()).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("sink did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(h.delivered(), N as u64);
    assert_eq!(h.dropped_total(), 0);
    let missing = h.registry.counter_value(
        "perisco_sink_template_missing_field_total",
        &[("component_id", "kafka")],
    );
    assert_eq!(
        missing,
        Some(N as u64 / 3),
        "records without server.namespace went to the fallback topic"
    );

    let msgs = consume(&bootstrap, &topics, N);
    assert_eq!(msgs.len(), N, "exactly N messages in the topics");
    let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
    for (topic, key, v) in &msgs {
        let ns = v["server"]["namespace"].as_str().unwrap_or("unknown");
        assert_eq!(topic, &format!("perisco-{ns}"));
        assert_eq!(key.as_deref(), v["server"]["podName"].as_str(), "key = server.podName");
        *per_topic.entry(topic.as_str()).or_default() += 1;
    }
    assert_eq!(per_topic.values().copied().collect::<Vec<_>>(), [N / 3; 3]);
    let got = by_seq(msgs.into_iter().map(|(_, _, v)| v).collect());
    assert_same_records(&got, &by_seq(file_sink_output(&events).await));
}

async fn outage(drop_newest: bool) {
    let broker_port = free_port();
    let mut proxy = TcpProxy::start(free_port(), ([127, 0, 0, 1], broker_port).into()).await;
    // Clients learn the proxy's address from the broker's metadata, so every connection
    // goes through it and stopping it is a broker outage.
    let _tansu = start_tansu(broker_port, proxy.port);
    let bootstrap = format!("127.0.0.1:{}", proxy.port);
    create_topics(&bootstrap, &["perisco-outage"]).await;
    const N: usize = 3000;
    let when_full = if drop_newest { "drop_newest" } else { "block" };
    let h = Harness::new("kafka");
    let s = sink(
        &h,
        &format!(
            r#"
            bootstrap_servers = "{bootstrap}"
            topic = "perisco-outage"
            batch = {{ max_events = 100, timeout = "20ms" }}
            buffer = {{ max_events = 300, when_full = "{when_full}" }}
            retry = {{ initial_backoff = "100ms", max_backoff = "500ms" }}
            librdkafka_options = {{ "message.timeout.ms" = "2000", "reconnect.backoff.max.ms" = "500" }}
            "#
        ),
    );
    let o = Outage {
        before: 500,
        buffer_max: 300,
        sink_batch: 100,
        feed_batch: 50,
        channel: 2,
        drop_newest,
    };
    run_through_outage(&h, s, &mut proxy, records(N, 0), o).await;
    let msgs = consume(&bootstrap, &["perisco-outage"], h.delivered() as usize);
    let seqs: BTreeSet<u64> = msgs.iter().map(|(_, _, v)| v["pid"].as_u64().unwrap()).collect();
    assert_eq!(seqs.len() as u64, h.delivered(), "distinct messages = delivered");
    if !drop_newest {
        assert_eq!(seqs, (0..N as u64).collect::<BTreeSet<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_with_block_delivers_everything_after_recovery() {
    if !require(
        "kafka_outage_with_block_delivers_everything_after_recovery",
        &[Need::Command("tansu")],
    ) {
        return;
    }
    outage(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_with_drop_newest_counts_every_drop() {
    if !require(
        "kafka_outage_with_drop_newest_counts_every_drop",
        &[Need::Command("tansu")],
    ) {
        return;
    }
    outage(true).await;
}

/// tansu really stopped (killed) and started again, behind a gate on its advertised
/// address. tansu keeps topics in memory, so the restarted broker is empty: before it is
/// killed, the test reads back what it holds; after the restart, the topic is created
/// again while the gate admits only the test's admin client (by the `client.id` of the
/// first Kafka request on each connection), so the sink never sees the broker without
/// its topic — as with a real broker, whose topics survive a restart.
struct RestartingBroker {
    broker_port: u16,
    port: u16,
    topic: &'static str,
    tansu: Option<ChildGuard>,
    admin_only: Arc<AtomicBool>,
    gate: Option<tokio::task::JoinHandle<()>>,
    /// Messages the topic holds when the broker is killed (to read them back first).
    expect_before: usize,
    /// Messages read from the broker's earlier lives.
    earlier: Vec<Value>,
}

impl RestartingBroker {
    async fn start(topic: &'static str, expect_before: usize) -> RestartingBroker {
        let mut b = RestartingBroker {
            broker_port: free_port(),
            port: free_port(),
            topic,
            tansu: None,
            admin_only: Arc::new(AtomicBool::new(false)),
            gate: None,
            expect_before,
            earlier: Vec::new(),
        };
        b.up().await;
        b
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn open_gate(&mut self) {
        // tokio's bind sets SO_REUSEADDR: connections of the previous gate in TIME_WAIT do
        // not block the port.
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let upstream = SocketAddr::from(([127, 0, 0, 1], self.broker_port));
        let admin_only = self.admin_only.clone();
        self.gate = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    continue;
                };
                let admin_only = admin_only.load(Ordering::SeqCst);
                conns.spawn(async move {
                    let mut first = Vec::new();
                    if admin_only {
                        match read_client_id(&mut down).await {
                            Some((head, id)) if id == ADMIN_ID.as_bytes() => first = head,
                            _ => return, // not the admin: closed, as if nothing listened
                        }
                    }
                    if let Ok(mut up) = TcpStream::connect(upstream).await
                        && up.write_all(&first).await.is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        }));
    }
}

/// The start of the first Kafka request on a connection (size, api key, version,
/// correlation id, client id) and its client id.
async fn read_client_id(s: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut head = vec![0u8; 14];
    s.read_exact(&mut head).await.ok()?;
    let n = i16::from_be_bytes([head[12], head[13]]);
    let mut id = vec![0u8; usize::try_from(n).ok()?];
    s.read_exact(&mut id).await.ok()?;
    head.extend_from_slice(&id);
    Some((head, id))
}

impl Network for RestartingBroker {
    async fn down(&mut self) {
        let bootstrap = self.bootstrap();
        let topic = self.topic;
        let want = self.expect_before;
        let got = tokio::task::block_in_place(|| consume(&bootstrap, &[topic], want));
        self.earlier.extend(got.into_iter().map(|(_, _, v)| v));
        if let Some(g) = self.gate.take() {
            g.abort();
            let _ = g.await;
        }
        self.tansu = None; // killed and reaped
    }

    async fn up(&mut self) {
        let (broker, advertised) = (self.broker_port, self.port);
        self.tansu = Some(tokio::task::block_in_place(|| start_tansu(broker, advertised)));
        self.admin_only.store(true, Ordering::SeqCst);
        self.open_gate().await;
        create_topics(&self.bootstrap(), &[self.topic]).await;
        self.admin_only.store(false, Ordering::SeqCst);
    }
}

async fn restart(drop_newest: bool) {
    const BEFORE: usize = 500;
    let mut broker = RestartingBroker::start("perisco-restart", BEFORE).await;
    let bootstrap = broker.bootstrap();
    const N: usize = 3000;
    let when_full = if drop_newest { "drop_newest" } else { "block" };
    let h = Harness::new("kafka");
    let s = sink(
        &h,
        &format!(
            r#"
            bootstrap_servers = "{bootstrap}"
            topic = "perisco-restart"
            batch = {{ max_events = 100, timeout = "20ms" }}
            buffer = {{ max_events = 300, when_full = "{when_full}" }}
            retry = {{ initial_backoff = "100ms", max_backoff = "500ms" }}
            librdkafka_options = {{ "message.timeout.ms" = "2000", "reconnect.backoff.max.ms" = "500" }}
            "#
        ),
    );
    let o = Outage {
        before: BEFORE,
        buffer_max: 300,
        sink_batch: 100,
        feed_batch: 50,
        channel: 2,
        drop_newest,
    };
    run_through_outage(&h, s, &mut broker, records(N, 0), o).await;
    let later = consume(&bootstrap, &["perisco-restart"], h.delivered() as usize - BEFORE);
    let seqs: BTreeSet<u64> = broker
        .earlier
        .iter()
        .chain(later.iter().map(|(_, _, v)| v))
        .map(|v| v["pid"].as_u64().unwrap())
        .collect();
    eprintln!(
        "before the restart {}, after {}, delivered {}, retried {}",
        broker.earlier.len(),
        later.len(),
        h.delivered(),
        h.retried()
    );
    assert_eq!(seqs.len() as u64, h.delivered(), "distinct messages = delivered");
    if !drop_newest {
        assert_eq!(seqs, (0..N as u64).collect::<BTreeSet<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_restart_with_block_delivers_everything() {
    if !require(
        "kafka_broker_restart_with_block_delivers_everything",
        &[Need::Command("tansu")],
    ) {
        return;
    }
    restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_restart_with_drop_newest_counts_every_drop() {
    if !require(
        "kafka_broker_restart_with_drop_newest_counts_every_drop",
        &[Need::Command("tansu")],
    ) {
        return;
    }
    restart(true).await;
}
