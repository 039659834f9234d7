//! The hubble sink through the generated tonic clients: peer.Notify (how hubble-relay
//! finds agents) and LostEvent when a follower falls behind.

use crate::common;

use std::time::Duration;

use common::*;
use perisco_observe::HubbleConfig;
use perisco_observe::proto::flow::LostEventSource;
use perisco_observe::proto::observer::GetFlowsRequest;
use perisco_observe::proto::observer::get_flows_response::ResponseTypes;
use perisco_observe::proto::observer::observer_client::ObserverClient;
use perisco_observe::proto::peer::peer_client::PeerClient;
use perisco_observe::proto::peer::{ChangeNotificationType, NotifyRequest};
use perisco_testutil::{free_port, wait_for_port};

fn config(port: u16, follow_buffer: usize) -> HubbleConfig {
    HubbleConfig {
        address: format!("127.0.0.1:{port}"),
        max_flows: 16,
        follow_buffer,
        node_name: Some("node-b".into()),
        advertise_address: Some(format!("node-b.example:{port}")),
        ..HubbleConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_notify_announces_this_agent_and_stays_open() {
    let port = free_port();
    let (tx, sink) = start_sink(&config(port, 64));
    assert!(wait_for_port(addr(port), Duration::from_secs(10)));
    let mut client = PeerClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
    let mut stream = client.notify(NotifyRequest {}).await.unwrap().into_inner();
    let n = stream.message().await.unwrap().unwrap();
    assert_eq!(n.name, "node-b");
    assert_eq!(n.address, format!("node-b.example:{port}"));
    assert_eq!(n.r#type, ChangeNotificationType::PeerAdded as i32);
    // Stopping the sink ends the stream cleanly.
    drop(tx);
    assert!(stream.message().await.unwrap().is_none());
    sink.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_keeps_max_flows_and_slow_followers_get_lost_events() {
    let port = free_port();
    let (tx, sink) = start_sink(&config(port, 4));
    assert!(wait_for_port(addr(port), Duration::from_secs(10)));
    let mut client = ObserverClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut stream = client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // Far more than the follower's buffer, the server task's queue and the HTTP/2
    // windows can hold while nobody reads.
    let total = 20_000u64;
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let recs: Vec<_> = chunk.iter().map(|i| record(*i, &Spec::default())).collect();
        tx.send(events(&recs)).await.unwrap();
    }
    // Wait until the ring has seen everything, then read.
    let mut status = client.clone();
    loop {
        let s = status
            .server_status(perisco_observe::proto::observer::ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.seen_flows == total {
            assert_eq!(s.num_flows, 16, "the ring keeps max_flows");
            assert_eq!(s.max_flows, 16);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tx);
    let (mut flows, mut lost) = (0u64, 0u64);
    while let Some(m) = stream.message().await.unwrap() {
        match m.response_types.unwrap() {
            ResponseTypes::Flow(_) => flows += 1,
            ResponseTypes::LostEvents(l) => {
                assert_eq!(l.source, LostEventSource::HubbleRingBuffer as i32);
                lost += l.num_events_lost;
            }
            ResponseTypes::NodeStatus(_) => {}
        }
    }
    assert!(lost > 0, "a follower that did not read lost flows and was told");
    assert_eq!(flows + lost, total, "every flow was either delivered or counted lost");
    sink.await.unwrap().unwrap();
}
