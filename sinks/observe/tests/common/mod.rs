//! Shared by the observe integration tests: sample records, running a sink outside a
//! topology, and a minimal HTTP/1.0 GET for Prometheus' API.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use perisco_engine::component::*;
use perisco_engine::event::Event;
use perisco_engine::record::*;
use perisco_engine::topology::BatchReceiver;
use tokio::sync::mpsc;

pub struct Spec {
    pub client: (&'static str, &'static str, &'static str), // namespace, pod, workload
    pub server: (&'static str, &'static str, &'static str),
    pub service: &'static str,
    pub method: &'static str,
    pub url: &'static str,
    pub code: Option<u16>,
    pub latency_us: Option<u64>,
    pub client_ip: &'static str,
    pub server_ip: &'static str,
    pub server_port: u16,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            client: ("shop", "web-5f459f867b-2zbx8", "web"),
            server: ("shop", "books-675456b8d-prpht", "books"),
            service: "books",
            method: "GET",
            url: "/books.json?order=title",
            code: Some(200),
            latency_us: Some(3_000),
            client_ip: "10.244.1.186",
            server_ip: "10.244.2.42",
            server_port: 7002,
        }
    }
}

fn endpoint((ns, pod, workload): (&str, &str, &str)) -> Endpoint {
    Endpoint {
        namespace: Some(ns.into()),
        labels: vec![format!("app={workload}"), "tier=demo".into()],
        pod_name: Some(pod.into()),
        workload: Some(Workload {
            name: workload.into(),
            kind: "Deployment".into(),
        }),
    }
}

/// A complete record as enrich would produce it; `seq` varies time and client port.
pub fn record(seq: u64, s: &Spec) -> Record {
    Record {
        ts: 1_700_000_000_000_000_000 + seq * 1_000_000,
        pid: 4242,
        ip: IpInfo::new(s.client_ip.parse().unwrap(), s.server_ip.parse().unwrap()),
        l4: L4 {
            tcp: TcpPorts {
                client_port: 40_000 + seq as u16,
                server_port: s.server_port,
            },
        },
        l7: L7 {
            latency_ns: s.latency_us.map(|us| us * 1000),
            request: Some(L7Request {
                http: HttpRequest {
                    protocol: "HTTP/1.1".into(),
                    method: s.method.into(),
                    url: s.url.into(),
                    headers: vec![
                        Header::new("Accept", "application/json"),
                        Header::new("User-Agent", "curl/7.88.1"),
                    ],
                    ..Default::default()
                },
            }),
            response: s.code.map(|code| L7Response {
                http: HttpResponse {
                    protocol: "HTTP/1.1".into(),
                    code,
                    headers: vec![Header::new("Content-Type", "application/json")],
                    ..Default::default()
                },
            }),
            grpc: None,
        },
        client: Some(std::sync::Arc::new(endpoint(s.client))),
        server: Some(std::sync::Arc::new(endpoint(s.server))),
        client_service: Some(std::sync::Arc::new(ServiceRef {
            name: s.client.2.into(),
            namespace: s.client.0.into(),
        })),
        server_service: Some(std::sync::Arc::new(ServiceRef {
            name: s.service.into(),
            namespace: s.server.0.into(),
        })),
        comm: None,
        container_id: None,
        node: Some("node-a".into()),
        incomplete: if s.code.is_none() {
            vec!["response_missing".into()]
        } else {
            vec![]
        },
    }
}

pub fn events(records: &[Record]) -> Vec<Event> {
    records.iter().cloned().map(|r| Event::Record(Box::new(r))).collect()
}

/// A sink built from `config` and running on its own; feed it through the sender, drop
/// the sender to stop it.
pub fn start_sink<C: SinkConfig>(
    config: &C,
) -> (mpsc::Sender<Vec<Event>>, tokio::task::JoinHandle<Result<(), BoxError>>) {
    let s = start_sink_observed(config);
    (s.tx, s.handle)
}

/// A running sink with its metrics registry and health (component id "observe").
pub struct Observed {
    pub tx: mpsc::Sender<Vec<Event>>,
    pub handle: tokio::task::JoinHandle<Result<(), BoxError>>,
    pub registry: std::sync::Arc<perisco_engine::metrics::Registry>,
    pub health: std::sync::Arc<perisco_engine::health::HealthRegistry>,
}

impl Observed {
    pub fn status(&self) -> Option<perisco_engine::health::Status> {
        self.health.snapshot().get("observe").cloned()
    }
}

pub fn start_sink_observed<C: SinkConfig>(config: &C) -> Observed {
    let registry = perisco_engine::metrics::Registry::new();
    let health = perisco_engine::health::HealthRegistry::new();
    let cx = BuildContext {
        id: "observe".into(),
        kind: Kind::Sink,
        metrics: Default::default(),
        registry: registry.clone(),
        health: health.handle("observe".into()),
        config_dir: None,
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let sink = config.build(&cx).expect("build");
    let (tx, input) = BatchReceiver::for_test(16);
    let (_reopen_tx, reopen) = tokio::sync::broadcast::channel(1);
    let handle = tokio::spawn(sink.run(SinkContext {
        input,
        reopen,
        metrics: Default::default(),
    }));
    Observed {
        tx,
        handle,
        registry,
        health,
    }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// GET `path_and_query` from 127.0.0.1:`port`; returns (status, body).
pub fn http_get(port: u16, path_and_query: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
