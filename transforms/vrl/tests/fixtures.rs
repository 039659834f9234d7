//! Records made from the committed real-traffic captures (fixtures/*.pcapng) by the real
//! pcap source and parse/match transforms, through filter and remap, into the file sink.
//! Expectations come from what the clients recorded doing (fixtures/*.expected.json).

use crate::common;

use common::*;
use perisco_engine::RunningTopology;
use perisco_engine::config::Config;
use perisco_engine::metrics::Registry;
use serde_json::{Value, json};

fn fixture(name: &str) -> std::path::PathBuf {
    perisco_testutil::workspace_root().join("fixtures").join(name)
}

fn expected(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(&format!("{name}.expected.json"))).expect("expected.json");
    serde_json::from_str(&text).expect("a JSON list")
}

/// Run pcap → parse → match → `vrl` (TOML transform tables, last one named `last`) → file;
/// returns the JSON lines the file sink wrote.
fn run(capture: &str, vrl: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[sources.cap]
type = "pcap"
path = "{}"

[transforms.l7]
type = "parse"
inputs = ["cap"]

[transforms.pairs]
type = "match"
inputs = ["l7"]

{vrl}

[sinks.out]
type = "file"
inputs = ["last"]
path = "out.jsonl"
"#,
        fixture(&format!("{capture}.pcapng")).display()
    );
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = Config::<VrlComponents>::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let topo = RunningTopology::start(cfg, Registry::new()).await.expect("starts");
        topo.wait_sources_finished().await;
        assert!(topo.stop(STOP_DEADLINE).await.drained);
    });
    read_jsonl(&dir.path().join("out.jsonl"))
}

#[test]
fn grpc_failures_are_kept_and_tagged() {
    let out = run(
        "grpc",
        r#"
[transforms.failed]
type = "filter"
inputs = ["pairs"]
condition = '.l7.grpc.status != 0 && exists(.l7.grpc.status)'

[transforms.last]
type = "remap"
inputs = ["failed"]
source = '''
.alert = "grpc " + (to_string(.l7.grpc.status) ?? "?")
.call = string!(.l7.grpc.service) + "/" + string!(.l7.grpc.method)
del(.l7.request.http.headers)
'''
"#,
    );
    let want: Vec<Value> = expected("grpc")
        .into_iter()
        .filter(|e| e["grpc_status"].as_u64().is_some_and(|s| s != 0))
        .collect();
    assert!(!want.is_empty(), "the fixture has failed calls");
    assert_eq!(out.len(), want.len(), "{out:#?}");
    for (o, e) in out.iter().zip(&want) {
        assert_eq!(o["l7"]["request"]["http"]["url"], e["url"]);
        assert_eq!(o["l7"]["grpc"]["status"], e["grpc_status"]);
        assert_eq!(o["alert"], json!(format!("grpc {}", e["grpc_status"])));
        let url = e["url"].as_str().unwrap();
        assert_eq!(
            o["call"],
            json!(url.trim_start_matches('/')),
            "service/method from the path"
        );
        assert!(
            o["l7"]["request"]["http"].get("headers").is_none(),
            "deleted by the remap"
        );
        assert!(o["l7"]["response"]["http"].get("headers").is_some(), "untouched");
    }
}

#[test]
fn http1_errors_only_with_a_condition_on_the_status() {
    let out = run(
        "http1-curl",
        r#"
[transforms.last]
type = "filter"
inputs = ["pairs"]
condition = '.l7.response.http.code >= 400 || starts_with(string!(.l7.request.http.method), "HEAD")'
"#,
    );
    let want: Vec<Value> = expected("http1-curl")
        .into_iter()
        .filter(|e| e["status"].as_u64().unwrap() >= 400 || e["method"] == "HEAD")
        .collect();
    assert!(!want.is_empty());
    let got: Vec<(Value, Value, Value)> = out
        .iter()
        .map(|o| {
            (
                o["l7"]["request"]["http"]["method"].clone(),
                o["l7"]["request"]["http"]["url"].clone(),
                o["l7"]["response"]["http"]["code"].clone(),
            )
        })
        .collect();
    let want: Vec<(Value, Value, Value)> = want
        .iter()
        .map(|e| (e["method"].clone(), e["url"].clone(), e["status"].clone()))
        .collect();
    assert_eq!(got, want);
    // A filter passes typed records on unchanged: exactly the record fields, nothing added.
    for o in &out {
        assert!(o.get("ts").is_some() && o.get("l4").is_some(), "{o}");
    }
}
