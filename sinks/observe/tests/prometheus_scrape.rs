//! A real Prometheus (2.42, Debian) scrapes the prometheus_exporter sink; PromQL `rate`
//! and `histogram_quantile` over its HTTP API give the per-service values the records
//! imply.

use crate::common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use perisco_engine::record::Record;
use perisco_observe::PrometheusExporterConfig;
use perisco_observe::prometheus::red::DEFAULT_BUCKETS;
use perisco_testutil::{ChildGuard, Need, free_port, require, wait_for_port};
use serde_json::Value;

/// One instant-vector query: label value of `by` → value.
fn query(prom: u16, promql: &str, by: &str) -> HashMap<String, f64> {
    let (status, body) =
        http_get(prom, &format!("/api/v1/query?query={}", urlencode(promql))).expect("query prometheus");
    assert_eq!(status, 200, "{promql}: {body}");
    let v: Value = serde_json::from_str(&body).expect("prometheus JSON");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = r["metric"][by].as_str().unwrap_or("").to_owned();
            (key, r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        })
        .collect()
}

fn wait_until(prom: u16, promql: &str, want: f64) {
    for _ in 0..600 {
        if http_get(prom, &format!("/api/v1/query?query={}", urlencode(promql))).is_ok()
            && query(prom, promql, "").get("").is_some_and(|v| *v == want)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("prometheus never saw {promql} == {want}");
}

/// Prometheus' bucket interpolation (promql/quantile.go) on the latencies themselves:
/// the value `histogram_quantile(q, …)` must return for them with these buckets.
fn expected_quantile(q: f64, latencies_s: &[f64]) -> f64 {
    let mut cumulative = vec![0u64; DEFAULT_BUCKETS.len()];
    for l in latencies_s {
        for (i, b) in DEFAULT_BUCKETS.iter().enumerate() {
            if l <= b {
                cumulative[i] += 1;
            }
        }
    }
    let total = latencies_s.len() as f64;
    let rank = q * total;
    let i = cumulative
        .iter()
        .position(|c| *c as f64 >= rank)
        .expect("inside the finite buckets");
    let (start, below) = if i == 0 {
        (0.0, 0.0)
    } else {
        (DEFAULT_BUCKETS[i - 1], cumulative[i - 1] as f64)
    };
    let in_bucket = cumulative[i] as f64 - below;
    start + (DEFAULT_BUCKETS[i] - start) * ((rank - below) / in_bucket)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1e-9)
}

#[test]
fn prometheus_scrapes_red_metrics_and_promql_agrees() {
    if !require(
        "prometheus_scrapes_red_metrics_and_promql_agrees",
        &[Need::Command("prometheus")],
    ) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let cfg = PrometheusExporterConfig {
        address: format!("127.0.0.1:{port}"),
        max_series: 100,
        buckets: None,
    };
    let (tx, sink) = rt.block_on(async { start_sink(&cfg) });
    assert!(wait_for_port(addr(port), Duration::from_secs(10)));

    let reports = Spec {
        client: ("ops", "cron-1", "cron"),
        server: ("ops", "reports-1", "reports"),
        service: "reports",
        server_ip: "10.245.0.9",
        ..Spec::default()
    };
    let books = Spec::default();
    let at = |seq: u64, spec: &Spec, code: u16, latency_us: u64| -> Record {
        record(
            seq,
            &Spec {
                code: Some(code),
                latency_us: Some(latency_us),
                ..*spec
            },
        )
    };
    // The same mix twice, scraped in between: books 20 × 3 ms and 10 × 30 ms (2xx) and
    // 10 × 300 ms (503); reports 15 × 1.5 s (2xx). Every series (bucket series too) then
    // starts at the value it grows by, so `rate`'s extrapolation scales all of them alike
    // and ratios and quantiles are exact.
    let mix = |base: u64| {
        let mut recs = Vec::new();
        let mut seq = base;
        let mut push = |spec: &Spec, code: u16, us: u64, n: usize, recs: &mut Vec<Record>| {
            for _ in 0..n {
                recs.push(at(seq, spec, code, us));
                seq += 1;
            }
        };
        push(&books, 200, 3_000, 20, &mut recs);
        push(&books, 200, 30_000, 10, &mut recs);
        push(&books, 503, 300_000, 10, &mut recs);
        push(&reports, 200, 1_500_000, 15, &mut recs);
        recs
    };
    let books_lat: Vec<f64> = [vec![0.003; 20], vec![0.03; 10], vec![0.3; 10]].concat();
    let reports_lat = vec![1.5; 15];
    let first = mix(0);
    rt.block_on(tx.send(events(&first))).unwrap();

    let prom_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: perisco\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let _prom = ChildGuard::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    assert!(
        wait_for_port(addr(prom_port), Duration::from_secs(30)),
        "prometheus did not start"
    );
    for _ in 0..300 {
        if http_get(prom_port, "/-/ready").is_ok_and(|(status, _)| status == 200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until(prom_port, "sum(perisco_http_requests_total)", first.len() as f64);
    let second = mix(1000);
    rt.block_on(tx.send(events(&second))).unwrap();
    wait_until(
        prom_port,
        "sum(perisco_http_requests_total)",
        (first.len() + second.len()) as f64,
    );

    let rate = query(
        prom_port,
        "sum by (server_service) (rate(perisco_http_requests_total[5m]))",
        "server_service",
    );
    assert!(rate["books"] > 0.0 && rate["reports"] > 0.0, "{rate:?}");
    // Both services were scraped at the same instants: the ratio of rates is the ratio of counts.
    assert!(close(rate["books"] / rate["reports"], 40.0 / 15.0), "{rate:?}");

    let errors = query(
        prom_port,
        r#"sum by (server_service) (rate(perisco_http_requests_total{status_class="5xx"}[5m])) / sum by (server_service) (rate(perisco_http_requests_total[5m]))"#,
        "server_service",
    );
    assert!(close(errors["books"], 10.0 / 40.0), "{errors:?}");
    assert!(!errors.contains_key("reports"), "no 5xx series for reports: {errors:?}");

    for q in [0.5, 0.9, 0.99] {
        let got = query(
            prom_port,
            &format!(
                "histogram_quantile({q}, sum by (le, server_service) (rate(perisco_http_request_duration_seconds_bucket[5m])))"
            ),
            "server_service",
        );
        let (b, r) = (expected_quantile(q, &books_lat), expected_quantile(q, &reports_lat));
        assert!(close(got["books"], b), "p{q} books: got {} want {b}", got["books"]);
        assert!(
            close(got["reports"], r),
            "p{q} reports: got {} want {r}",
            got["reports"]
        );
    }
    // The url is never a label.
    let (_, body) = http_get(prom_port, "/api/v1/labels").unwrap();
    assert!(!body.contains("url"), "{body}");

    drop(tx);
    rt.block_on(sink).unwrap().unwrap();
}
