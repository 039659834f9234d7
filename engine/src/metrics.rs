//! A small metrics registry rendered in the Prometheus text format.
//!
//! One place for every internal counter: components register series here and keep the
//! returned handle; `/metrics` renders the registry. Counters are lock-free atomics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge computed at scrape time; returns `None` once what it observes is gone,
/// and the series is then removed.
pub type GaugeFn = Box<dyn Fn() -> Option<f64> + Send + Sync>;

enum Series {
    Counter(Counter),
    Gauge(Gauge),
    GaugeFn(GaugeFn),
}

struct Family {
    help: &'static str,
    kind: &'static str,
    series: BTreeMap<String, Series>,
}

#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

/// Labels as (name, value) pairs.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counter `name{labels}`; the same handle is returned for the same series.
    pub fn counter(&self, name: &str, help: &'static str, labels: Labels<'_>) -> Counter {
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = family(&mut fams, name, help, "counter");
        match fam
            .series
            .entry(render_labels(labels))
            .or_insert_with(|| Series::Counter(Counter::default()))
        {
            Series::Counter(c) => c.clone(),
            _ => Counter::default(),
        }
    }

    pub fn gauge(&self, name: &str, help: &'static str, labels: Labels<'_>) -> Gauge {
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = family(&mut fams, name, help, "gauge");
        match fam
            .series
            .entry(render_labels(labels))
            .or_insert_with(|| Series::Gauge(Gauge::default()))
        {
            Series::Gauge(g) => g.clone(),
            _ => Gauge::default(),
        }
    }

    /// Register (or replace) a gauge computed at scrape time.
    pub fn gauge_fn(&self, name: &str, help: &'static str, labels: Labels<'_>, f: GaugeFn) {
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = family(&mut fams, name, help, "gauge");
        fam.series.insert(render_labels(labels), Series::GaugeFn(f));
    }

    /// Current value of a counter series, if registered (for tests and health).
    pub fn counter_value(&self, name: &str, labels: Labels<'_>) -> Option<u64> {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        match fams.get(name)?.series.get(&render_labels(labels))? {
            Series::Counter(c) => Some(c.get()),
            _ => None,
        }
    }

    /// The whole registry in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(4096);
        for (name, fam) in fams.iter_mut() {
            let mut body = String::new();
            fam.series.retain(|labels, s| {
                let v = match s {
                    Series::Counter(c) => c.get() as f64,
                    Series::Gauge(g) => g.get() as f64,
                    Series::GaugeFn(f) => match f() {
                        Some(v) => v,
                        None => return false,
                    },
                };
                let _ = writeln!(body, "{name}{labels} {v}");
                true
            });
            if body.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
            out.push_str(&body);
        }
        out
    }
}

fn family<'a>(
    fams: &'a mut BTreeMap<String, Family>,
    name: &str,
    help: &'static str,
    kind: &'static str,
) -> &'a mut Family {
    fams.entry(name.to_string()).or_insert_with(|| Family {
        help,
        kind,
        series: BTreeMap::new(),
    })
}

fn render_labels(labels: Labels<'_>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
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
    s.push('}');
    s
}

/// The standard counters every component has, labelled
/// `component_id`, `component_kind`, `component_type`.
#[derive(Clone, Debug, Default)]
pub struct ComponentMetrics {
    pub received: Counter,
    pub sent: Counter,
    pub discarded: Counter,
    pub errors: Counter,
}

impl ComponentMetrics {
    pub fn register(registry: &Registry, id: &str, kind: &str, type_name: &str) -> Self {
        let l: Labels<'_> = &[
            ("component_id", id),
            ("component_kind", kind),
            ("component_type", type_name),
        ];
        ComponentMetrics {
            received: registry.counter(
                "perisco_component_received_events_total",
                "Events received by the component.",
                l,
            ),
            sent: registry.counter(
                "perisco_component_sent_events_total",
                "Events sent downstream (sources, transforms) or delivered (sinks).",
                l,
            ),
            discarded: registry.counter(
                "perisco_component_discarded_events_total",
                "Events dropped on purpose (filtered, buffer full, evicted, permanent errors).",
                l,
            ),
            errors: registry.counter(
                "perisco_component_errors_total",
                "Errors met by the component (parse failures, delivery failures, ...).",
                l,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let r = Registry::new();
        let c = r.counter("x_total", "An x.", &[("a", "q\"uo\\te")]);
        c.add(3);
        r.gauge("y", "A y.", &[]).set(-2);
        r.gauge_fn("z", "A z.", &[("k", "v")], Box::new(|| Some(0.5)));
        r.gauge_fn("gone", "Gone.", &[], Box::new(|| None));
        let text = r.render();
        assert!(
            text.contains("# TYPE x_total counter\nx_total{a=\"q\\\"uo\\\\te\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("y -2\n"));
        assert!(text.contains("z{k=\"v\"} 0.5\n"));
        assert!(!text.contains("gone"));
        assert_eq!(r.counter_value("x_total", &[("a", "q\"uo\\te")]), Some(3));
    }
}
