//! RED series (rate, errors, duration) from records, and their text exposition.
//!
//! Labels are the identity of the exchange, never its URL: client and server workload and
//! namespace, server service, method, status class, protocol, gRPC status. Unknown values
//! are the empty string (Prometheus treats an empty label as absent). At most
//! `max_series` label sets are kept; records beyond that are folded into one series whose
//! labels all read "overflow", and counted in `perisco_http_series_overflow_total`.

use std::collections::HashMap;
use std::fmt::Write as _;

use perisco_engine::record::Record;

pub const LABEL_NAMES: [&str; 9] = [
    "client_workload",
    "client_namespace",
    "server_workload",
    "server_namespace",
    "server_service",
    "method",
    "status_class",
    "protocol",
    "grpc_status",
];

pub const REQUESTS_TOTAL: &str = "perisco_http_requests_total";
pub const DURATION: &str = "perisco_http_request_duration_seconds";
pub const OVERFLOW_TOTAL: &str = "perisco_http_series_overflow_total";
pub const SERIES: &str = "perisco_http_series";

/// Latency buckets in seconds: 0.5 ms (loopback, cache hits) to 10 s (slow batch calls).
pub const DEFAULT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type Labels = [Box<str>; 9];

struct Series {
    requests: u64,
    /// Cumulative counts are computed at render time; these are per bucket (+Inf last).
    buckets: Box<[u64]>,
    sum: f64,
    observed: u64,
}

pub struct Red {
    bounds: Box<[f64]>,
    max_series: usize,
    series: HashMap<Labels, Series>,
    overflow: Option<Series>,
    overflowed: u64,
}

const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The label values of a record (see the module comment for the rules).
pub fn labels_of(r: &Record) -> Labels {
    let workload = |e: Option<&perisco_engine::record::Endpoint>| {
        e.and_then(|e| e.workload.as_ref())
            .map_or("", |w| w.name.as_str())
            .into()
    };
    let namespace =
        |e: Option<&perisco_engine::record::Endpoint>| e.and_then(|e| e.namespace.as_deref()).unwrap_or("").into();
    let request = r.l7.request.as_ref().map(|q| &q.http);
    let response = r.l7.response.as_ref().map(|s| &s.http);
    // Methods are free text on the wire: only standard ones become label values.
    let method = request.map_or("", |q| {
        STANDARD_METHODS
            .iter()
            .find(|m| m.eq_ignore_ascii_case(&q.method))
            .copied()
            .unwrap_or("other")
    });
    let status_class = match response.map(|s| s.code) {
        Some(c @ 100..=599) => ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(c / 100 - 1)],
        Some(_) => "other",
        None => "",
    };
    let protocol = request
        .map(|q| &q.protocol)
        .or(response.map(|s| &s.protocol))
        .map_or("", |p| match &**p {
            "HTTP/1.0" | "HTTP/1.1" | "HTTP/2" => p,
            _ => "other",
        });
    let grpc_status: Box<str> = match &r.l7.grpc {
        Some(g) => g.status.map_or_else(|| "unknown".into(), |s| s.to_string().into()),
        None => "".into(),
    };
    [
        workload(r.client.as_deref()),
        namespace(r.client.as_deref()),
        workload(r.server.as_deref()),
        namespace(r.server.as_deref()),
        r.server_service.as_ref().map_or("", |s| s.name.as_str()).into(),
        method.into(),
        status_class.into(),
        protocol.into(),
        grpc_status,
    ]
}

impl Red {
    pub fn new(bounds: &[f64], max_series: usize) -> Self {
        Red {
            bounds: bounds.into(),
            max_series,
            series: HashMap::new(),
            overflow: None,
            overflowed: 0,
        }
    }

    fn new_series(&self) -> Series {
        Series {
            requests: 0,
            buckets: vec![0; self.bounds.len() + 1].into(),
            sum: 0.0,
            observed: 0,
        }
    }

    pub fn observe(&mut self, r: &Record) {
        let labels = labels_of(r);
        let latency = r.l7.latency_ns.map(|ns| ns as f64 / 1e9);
        let idx = latency.map(|s| self.bounds.iter().position(|b| s <= *b).unwrap_or(self.bounds.len()));
        let fresh = self.new_series();
        let series = if let Some(s) = self.series.get_mut(&labels) {
            s
        } else if self.series.len() < self.max_series {
            self.series.entry(labels).or_insert(fresh)
        } else {
            self.overflowed += 1;
            self.overflow.get_or_insert(fresh)
        };
        series.requests += 1;
        if let (Some(s), Some(i)) = (latency, idx) {
            series.buckets[i] += 1;
            series.sum += s;
            series.observed += 1;
        }
    }

    pub fn series_count(&self) -> usize {
        self.series.len() + usize::from(self.overflow.is_some())
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, out: &mut String) {
        let mut all: Vec<(String, &Series)> = self
            .series
            .iter()
            .map(|(l, s)| (label_text(l.iter().map(|v| &**v)), s))
            .collect();
        if let Some(s) = &self.overflow {
            all.push((label_text(std::iter::repeat_n("overflow", LABEL_NAMES.len())), s));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = writeln!(
            out,
            "# HELP {REQUESTS_TOTAL} HTTP and gRPC exchanges seen, by client, server, method and status class."
        );
        let _ = writeln!(out, "# TYPE {REQUESTS_TOTAL} counter");
        for (l, s) in &all {
            let _ = writeln!(out, "{REQUESTS_TOTAL}{{{l}}} {}", s.requests);
        }
        let _ = writeln!(
            out,
            "# HELP {DURATION} Time from the first request byte to the first response byte."
        );
        let _ = writeln!(out, "# TYPE {DURATION} histogram");
        for (l, s) in &all {
            let mut cumulative = 0;
            for (i, b) in self.bounds.iter().enumerate() {
                cumulative += s.buckets[i];
                let _ = writeln!(out, "{DURATION}_bucket{{{l},le=\"{b}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{DURATION}_bucket{{{l},le=\"+Inf\"}} {}", s.observed);
            let _ = writeln!(out, "{DURATION}_sum{{{l}}} {}", s.sum);
            let _ = writeln!(out, "{DURATION}_count{{{l}}} {}", s.observed);
        }
        let _ = writeln!(
            out,
            "# HELP {OVERFLOW_TOTAL} Records folded into the overflow series because max_series was reached."
        );
        let _ = writeln!(out, "# TYPE {OVERFLOW_TOTAL} counter");
        let _ = writeln!(out, "{OVERFLOW_TOTAL} {}", self.overflowed);
        let _ = writeln!(
            out,
            "# HELP {SERIES} Label sets currently exported (the overflow series included)."
        );
        let _ = writeln!(out, "# TYPE {SERIES} gauge");
        let _ = writeln!(out, "{SERIES} {}", self.series_count());
    }
}

fn label_text<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut s = String::with_capacity(160);
    for (i, (name, v)) in LABEL_NAMES.iter().zip(values).enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(name);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use perisco_engine::record::*;

    fn record(method: &str, code: Option<u16>, latency_ms: Option<u64>, service: &str) -> Record {
        Record {
            ts: 1,
            pid: 0,
            ip: IpInfo::new("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()),
            l4: L4 {
                tcp: TcpPorts {
                    client_port: 40000,
                    server_port: 80,
                },
            },
            l7: L7 {
                latency_ns: latency_ms.map(|m| m * 1_000_000),
                request: Some(L7Request {
                    http: HttpRequest {
                        protocol: "HTTP/1.1".into(),
                        method: method.into(),
                        url: "/x?secret".into(),
                        ..Default::default()
                    },
                }),
                response: code.map(|code| L7Response {
                    http: HttpResponse {
                        protocol: "HTTP/1.1".into(),
                        code,
                        ..Default::default()
                    },
                }),
                grpc: None,
            },
            client: None,
            server: Some(std::sync::Arc::new(Endpoint {
                namespace: Some("shop".into()),
                ..Default::default()
            })),
            client_service: None,
            server_service: Some(std::sync::Arc::new(ServiceRef {
                name: service.into(),
                namespace: "shop".into(),
            })),
            comm: None,
            container_id: None,
            node: None,
            incomplete: vec![],
        }
    }

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let mut red = Red::new(&DEFAULT_BUCKETS, 100);
        red.observe(&record("GET", Some(200), Some(3), "books"));
        red.observe(&record("GET", Some(200), Some(30), "books"));
        red.observe(&record("get", Some(503), None, "books"));
        let mut out = String::new();
        red.render(&mut out);
        let ok = r#"client_workload="",client_namespace="",server_workload="",server_namespace="shop",server_service="books",method="GET",status_class="2xx",protocol="HTTP/1.1",grpc_status="""#;
        assert!(
            out.contains(&format!("perisco_http_requests_total{{{ok}}} 2\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "perisco_http_request_duration_seconds_bucket{{{ok},le=\"0.005\"}} 1\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "perisco_http_request_duration_seconds_bucket{{{ok},le=\"0.05\"}} 2\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("perisco_http_request_duration_seconds_count{{{ok}}} 2\n")),
            "{out}"
        );
        assert!(out.contains(r#"status_class="5xx""#));
        assert!(!out.contains("secret"), "the url is never a label");
    }

    #[test]
    fn cardinality_is_bounded() {
        let mut red = Red::new(&DEFAULT_BUCKETS, 2);
        for i in 0..10 {
            red.observe(&record("GET", Some(200), Some(1), &format!("svc{i}")));
        }
        assert_eq!(red.series_count(), 3);
        let mut out = String::new();
        red.render(&mut out);
        assert!(out.contains("perisco_http_series_overflow_total 8\n"), "{out}");
        assert!(out.contains(r#"server_service="overflow""#));
    }

    #[test]
    fn odd_methods_and_label_escaping() {
        let mut red = Red::new(&DEFAULT_BUCKETS, 10);
        red.observe(&record("BREW", Some(418), Some(1), "tea\"pot\\"));
        let mut out = String::new();
        red.render(&mut out);
        assert!(out.contains(r#"method="other""#), "{out}");
        assert!(out.contains(r#"server_service="tea\"pot\\""#), "{out}");
    }
}
