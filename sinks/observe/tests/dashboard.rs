//! config-examples/grafana/perisco-dashboard.json parses, uses datasource variables, and
//! every query names metrics and labels the exporter emits and record fields that exist.

use crate::common;

use std::collections::BTreeSet;

use perisco_observe::prometheus::red::{DEFAULT_BUCKETS, LABEL_NAMES, Red};
use regex::Regex;
use serde_json::Value;

fn dashboard() -> Value {
    let path = perisco_testutil::workspace_root().join("config-examples/grafana/perisco-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read the dashboard")).expect("dashboard is JSON")
}

/// Metric names in the exporter's own output (with _bucket/_sum/_count).
fn emitted_metrics() -> BTreeSet<String> {
    let mut red = Red::new(&DEFAULT_BUCKETS, 10);
    red.observe(&common::record(0, &common::Spec::default()));
    let mut text = String::new();
    red.render(&mut text);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

#[test]
fn dashboard_queries_name_what_the_exporter_emits() {
    let d = dashboard();
    let vars: Vec<(&str, &str)> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["type"].as_str().unwrap()))
        .collect();
    assert!(vars.contains(&("DS_PROMETHEUS", "datasource")), "{vars:?}");
    assert!(vars.contains(&("DS_ELASTICSEARCH", "datasource")), "{vars:?}");

    let emitted = emitted_metrics();
    let metric_re = Regex::new(r"\bperisco_[a-z0-9_]+").unwrap();
    let label_re = Regex::new(r#"(?:by|without) \(([^)]*)\)|([a-z_]+)\s*(?:=~|!~|!=|=)\s*""#).unwrap();
    let known_labels: BTreeSet<&str> = LABEL_NAMES.iter().copied().chain(["le"]).collect();
    let (mut prom_queries, mut es_queries) = (0, 0);
    for p in panels(&d) {
        let Some(targets) = p["targets"].as_array() else {
            continue;
        };
        for t in targets {
            let ds = t["datasource"]["uid"]
                .as_str()
                .or(p["datasource"]["uid"].as_str())
                .unwrap_or("");
            match ds {
                "${DS_PROMETHEUS}" => {
                    let expr = t["expr"].as_str().expect("prometheus target has expr");
                    prom_queries += 1;
                    let names: Vec<&str> = metric_re.find_iter(expr).map(|m| m.as_str()).collect();
                    assert!(!names.is_empty(), "query names a perisco metric: {expr}");
                    for n in names {
                        assert!(
                            emitted.contains(n),
                            "{n} (in {:?}) is not emitted; emitted: {emitted:?}",
                            p["title"]
                        );
                    }
                    for c in label_re.captures_iter(expr) {
                        let labels = c.get(1).or(c.get(2)).unwrap().as_str();
                        for l in labels.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                            assert!(known_labels.contains(l), "label {l} in {expr}");
                        }
                    }
                }
                "${DS_ELASTICSEARCH}" => {
                    es_queries += 1;
                    // Fields exist in the record JSON (DESIGN.md contract).
                    let record = serde_json::to_value(common::record(0, &common::Spec::default())).unwrap();
                    let mut fields = vec![t["timeField"].as_str().unwrap()];
                    for a in t["metrics"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .chain(t["bucketAggs"].as_array().unwrap())
                    {
                        if let Some(f) = a["field"].as_str() {
                            fields.push(f);
                        }
                    }
                    for f in fields {
                        let ptr = format!("/{}", f.replace('.', "/"));
                        assert!(
                            record.pointer(&ptr).is_some(),
                            "ES field {f} is not in the record shape"
                        );
                    }
                }
                other => panic!("panel {:?} uses datasource {other:?}, not a variable", p["title"]),
            }
        }
    }
    assert!(prom_queries >= 6, "requests/s, error ratio and p50/p90/p99 panels");
    assert_eq!(es_queries, 1, "top slow paths from Elasticsearch");
    let titles: Vec<&str> = panels(&d).iter().filter_map(|p| p["title"].as_str()).collect();
    for want in ["Requests/s", "Error ratio", "p50", "p90", "p99", "slow paths"] {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "a panel for {want}: {titles:?}"
        );
    }
}
