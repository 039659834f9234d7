//! The `file` sink on the shared driver: every event written, counted, flushed at the end.

use crate::common;

use std::time::Duration;

use common::*;
use perisco_engine::component::*;
use perisco_sinks::file::FileConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_writes_every_event_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let cfg: FileConfig = toml::from_str(&format!(
        "path = {:?}\nbuffer = {{ max_events = 100, when_full = \"block\" }}",
        path.display().to_string()
    ))
    .unwrap();
    assert!(cfg.validate().is_empty());
    let h = Harness::new("file");
    let (tx, task) = h.start(cfg.build(&h.cx).unwrap(), 2);
    const N: usize = 2500;
    let events = records(N, 0);
    let (_, feeder) = feed(tx, events.clone(), 64);
    feeder.await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), N);
    for (line, event) in lines.iter().zip(&events) {
        let mut want = Vec::new();
        event.write_json(&mut want).unwrap();
        assert_eq!(line.as_bytes(), &want[..]);
    }
    assert_eq!(h.delivered(), N as u64);
    assert_eq!(h.cx.metrics.sent.get(), N as u64);
    assert_eq!(h.dropped_total(), 0);
    assert_eq!(h.buffered(), 0);
}

#[test]
fn file_sink_rejects_a_zero_buffer() {
    let cfg: FileConfig = toml::from_str("path = \"-\"\nbuffer = { max_events = 0 }").unwrap();
    let keys: Vec<_> = cfg.validate().into_iter().filter_map(|e| e.key).collect();
    assert_eq!(keys, ["buffer.max_events"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_reopens_on_sigusr1_for_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let rotated = dir.path().join("out.json.1");
    let cfg: FileConfig = toml::from_str(&format!("path = {:?}", path.display().to_string())).unwrap();
    let h = Harness::new("file");
    let (tx, reopen, task) = h.start_with_reopen(cfg.build(&h.cx).unwrap(), 2);
    let events = records(20, 0);
    tx.send(events[..10].to_vec()).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || h.delivered() == 10).await);
    // logrotate: rename, then signal; the sink must write the rest to a new file.
    std::fs::rename(&path, &rotated).unwrap();
    reopen.send(()).unwrap();
    // No wait needed: the sink handles a pending reopen before events queued behind it.
    tx.send(events[10..].to_vec()).await.unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let count = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert_eq!(count(&rotated), 10);
    assert_eq!(count(&path), 10);
}
