//! The most recent `max_flows` flows, plus a broadcast of new ones for `follow` readers.
//!
//! Each flow carries a sequence number so a reader that subscribes, then snapshots the
//! ring, can skip what the snapshot already gave it (no gap, no duplicate).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::proto::flow::Flow;

pub struct Entry {
    pub seq: u64,
    pub flow: Flow,
}

pub struct Ring {
    flows: Mutex<VecDeque<Arc<Entry>>>,
    capacity: usize,
    seen: AtomicU64,
    live: broadcast::Sender<Arc<Entry>>,
}

impl Ring {
    /// `follow_buffer`: flows a slow follower may fall behind before it loses some (and is
    /// told so with a LostEvent).
    pub fn new(capacity: usize, follow_buffer: usize) -> Self {
        let (live, _) = broadcast::channel(follow_buffer.max(1));
        Ring {
            flows: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
            seen: AtomicU64::new(0),
            live,
        }
    }

    /// Append flows in order, evicting the oldest beyond capacity.
    pub fn push(&self, flows: impl IntoIterator<Item = Flow>) {
        let mut ring = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        for flow in flows {
            let seq = self.seen.fetch_add(1, Ordering::Relaxed);
            let e = Arc::new(Entry { seq, flow });
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(e.clone());
            // No follower is not an error.
            let _ = self.live.send(e);
        }
    }

    /// Subscribe first, then snapshot: see the module comment.
    pub fn subscribe_and_snapshot(&self) -> (broadcast::Receiver<Arc<Entry>>, Vec<Arc<Entry>>) {
        let ring = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.live.subscribe();
        (rx, ring.iter().cloned().collect())
    }

    pub fn snapshot(&self) -> Vec<Arc<Entry>> {
        self.flows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.flows.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Flows pushed since start.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(uuid: &str) -> Flow {
        Flow {
            uuid: uuid.into(),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_most_recent() {
        let r = Ring::new(3, 8);
        r.push(["a", "b", "c", "d", "e"].map(flow));
        let uuids: Vec<_> = r.snapshot().iter().map(|e| e.flow.uuid.clone()).collect();
        assert_eq!(uuids, ["c", "d", "e"]);
        assert_eq!(r.seen(), 5);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn followers_get_what_comes_after_the_snapshot() {
        let r = Ring::new(8, 8);
        r.push([flow("a")]);
        let (mut rx, snap) = r.subscribe_and_snapshot();
        assert_eq!(snap.len(), 1);
        r.push([flow("b")]);
        let e = rx.try_recv().unwrap();
        assert_eq!(e.flow.uuid, "b");
        assert!(e.seq > snap[0].seq);
    }
}
