//! Every committed fixture, reassembled, checked against tshark's own reassembly:
//! the same connections, byte-identical streams per direction, handshake roles.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use perisco_engine::event::{Direction, Event, Role, SocketData, SocketEventKind};
use perisco_pcap::{Limits, read_file};
use perisco_testutil::{Need, require};

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcapng" || e == "pcap"))
        .collect();
    v.sort();
    assert!(v.len() >= 8, "fixtures missing in {}", dir.display());
    v
}

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark").args(args).output().expect("tshark");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One TCP stream as tshark follows it: its two nodes and the bytes each one sent.
struct Followed {
    nodes: [SocketAddr; 2],
    sent: [Vec<u8>; 2],
}

fn tshark_streams(file: &Path) -> Vec<Followed> {
    let f = file.to_str().unwrap();
    let ids = tshark(&["-r", f, "-T", "fields", "-e", "tcp.stream"]);
    let mut ids: Vec<u32> = ids.lines().filter_map(|l| l.trim().parse().ok()).collect();
    ids.sort();
    ids.dedup();
    let mut args = vec!["-r".to_string(), f.to_string(), "-q".to_string()];
    for id in &ids {
        args.push("-z".into());
        args.push(format!("follow,tcp,raw,{id}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tshark(&args);
    let mut streams = Vec::new();
    let mut cur: Option<Followed> = None;
    for line in out.lines() {
        if let Some(a) = line.strip_prefix("Node 0: ") {
            let a = a.parse().unwrap();
            cur = Some(Followed {
                nodes: [a, a],
                sent: [Vec::new(), Vec::new()],
            });
        } else if let Some(a) = line.strip_prefix("Node 1: ") {
            cur.as_mut().unwrap().nodes[1] = a.parse().unwrap();
        } else if line.starts_with("=====") {
            streams.extend(cur.take());
        } else if let Some(c) = cur.as_mut() {
            let (node, hex) = match line.strip_prefix('\t') {
                Some(h) => (1, h),
                None => (0, line),
            };
            c.sent[node].extend(unhex(hex.trim()));
        }
    }
    assert_eq!(streams.len(), ids.len(), "tshark follow output for {f}");
    streams
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Our events of one connection, and the bytes each endpoint sent.
#[derive(Default)]
struct Ours {
    events: Vec<SocketData>,
    sent: HashMap<SocketAddr, Vec<u8>>,
}

fn ours(events: &[Event]) -> BTreeMap<u64, Ours> {
    let mut conns: BTreeMap<u64, Ours> = BTreeMap::new();
    for e in events {
        let Event::Socket(s) = e else {
            panic!("not a socket event")
        };
        let c = conns.entry(s.conn_id).or_default();
        if s.kind == SocketEventKind::Data {
            let sender = if s.direction == Direction::Ingress {
                s.peer
            } else {
                s.local
            };
            c.sent.entry(sender).or_default().extend_from_slice(&s.data);
        }
        c.events.push(s.clone());
    }
    conns
}

#[test]
fn reassembly_matches_tshark_on_every_fixture() {
    if !require("reassembly_matches_tshark_on_every_fixture", &[Need::Command("tshark")]) {
        return;
    }
    for file in fixtures() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let (events, stats) = read_file(&file, Limits::default()).unwrap();
        let conns = ours(&events);
        let streams = tshark_streams(&file);
        assert_eq!(conns.len(), streams.len(), "{name}: connections");
        assert_eq!(stats.skipped, [0; 4], "{name}: every frame is TCP");

        for st in &streams {
            let (id, conn) = conns
                .iter()
                .find(|(_, c)| {
                    let s = &c.events[0];
                    (s.local == st.nodes[0] && s.peer == st.nodes[1])
                        || (s.local == st.nodes[1] && s.peer == st.nodes[0])
                })
                .unwrap_or_else(|| panic!("{name}: no connection {:?}", st.nodes));
            for n in 0..2 {
                let got = conn.sent.get(&st.nodes[n]).cloned().unwrap_or_default();
                assert_eq!(
                    got.len(),
                    st.sent[n].len(),
                    "{name} conn {id}: bytes sent by {}",
                    st.nodes[n]
                );
                assert!(
                    got == st.sent[n],
                    "{name} conn {id}: stream from {} differs from tshark's",
                    st.nodes[n]
                );
            }
            let kinds: Vec<SocketEventKind> = conn.events.iter().map(|e| e.kind).collect();
            assert_eq!(
                kinds.iter().filter(|k| **k == SocketEventKind::Close).count(),
                1,
                "{name} conn {id}"
            );
            assert_eq!(kinds.last(), Some(&SocketEventKind::Close));
        }

        // No lost segments per tshark → no gaps from us.
        let lost = tshark(&[
            "-r",
            file.to_str().unwrap(),
            "-Y",
            "tcp.analysis.lost_segment",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ]);
        if lost.trim().is_empty() {
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, Event::Socket(s) if s.kind == SocketEventKind::Gap)),
                "{name}: gap"
            );
        }

        // The SYN's destination is the server: `local`, role Server, an Open first.
        let syns = tshark(&[
            "-r",
            file.to_str().unwrap(),
            "-Y",
            "tcp.flags.syn == 1 && tcp.flags.ack == 0",
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.srcport",
        ]);
        let mut with_syn = 0;
        for line in syns.lines() {
            let f: Vec<&str> = line.split(',').collect();
            let ip = if f[0].is_empty() { f[1] } else { f[0] };
            let server: SocketAddr = SocketAddr::new(ip.parse().unwrap(), f[2].parse().unwrap());
            let client_port: u16 = f[3].parse().unwrap();
            let conn = conns
                .values()
                .find(|c| c.events[0].local == server && c.events[0].peer.port() == client_port)
                .unwrap_or_else(|| panic!("{name}: no connection to {server} from port {client_port}"));
            assert_eq!(conn.events[0].kind, SocketEventKind::Open, "{name}");
            assert!(conn.events.iter().all(|e| e.role == Role::Server));
            with_syn += 1;
        }
        assert_eq!(
            with_syn,
            conns.len(),
            "{name}: every fixture connection starts with its handshake"
        );
        eprintln!(
            "{name}: {} connections, {} bytes match tshark",
            conns.len(),
            stats.bytes
        );
    }
}

#[test]
fn expected_files_agree_with_the_captures_ports() {
    // The client-written expectations name server ports that must be in the capture.
    for file in fixtures() {
        let expected = file.with_extension("expected.json");
        let text = std::fs::read_to_string(&expected).unwrap_or_else(|_| panic!("{} missing", expected.display()));
        let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let (events, _) = read_file(&file, Limits::default()).unwrap();
        let server_ports: std::collections::HashSet<u16> = events
            .iter()
            .filter_map(|e| {
                if let Event::Socket(s) = e {
                    Some(s.local.port())
                } else {
                    None
                }
            })
            .collect();
        for x in &list {
            let port = x["server_port"].as_u64().unwrap() as u16;
            assert!(
                server_ports.contains(&port),
                "{}: server port {port} not in the capture",
                expected.display()
            );
            for key in ["method", "url", "status", "protocol"] {
                assert!(!x[key].is_null(), "{}: {key} missing", expected.display());
            }
        }
        if file.file_name().unwrap() == "non-http.pcapng" {
            assert!(list.is_empty());
        } else {
            assert!(!list.is_empty());
        }
    }
}
