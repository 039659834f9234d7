//! `remap` on typed records emits the record plus a patch. For every program below, over
//! the records made from the real captures and the sample records, the JSON a sink writes
//! for the patched output equals what the whole-event path (convert everything, emit a
//! document) produces: same events, same errors, same drops.

use crate::common;

use std::sync::LazyLock;

use common::*;
use perisco_engine::FunctionTransform;
use perisco_engine::event::{Event, Record};
use perisco_engine::metrics::ComponentMetrics;
use perisco_vrl::{Filter, FilterConfig, Plan};
use serde_json::{Value as J, json};

/// Records from every capture in fixtures/ (real pcap → parse → match), then the samples.
static RECORDS: LazyLock<Vec<Record>> = LazyLock::new(|| {
    let mut r = fixture_records();
    assert!(r.len() >= 20, "the captures give records: {}", r.len());
    r.extend(records());
    r
});

fn inputs() -> Vec<Event> {
    RECORDS.iter().map(|r| Event::Record(Box::new(r.clone()))).collect()
}

/// How the remap is expected to run a program.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    /// Record + patch.
    Patch,
    /// Record + patch; this path is deleted without converting its value.
    PatchDeleting(&'static [&'static str]),
    /// Whole event, document out.
    Whole,
}

const PROGRAMS: &[(&str, Path)] = &[
    // Add a top-level field.
    (r#".cluster = "prod""#, Path::Patch),
    // A nested field under an object that most records lack, and one none has.
    (r#".server.cluster = "x""#, Path::Patch),
    (".absent.deeper.x = 1\n.absent.other = [1, 2]", Path::Patch),
    // Into a scalar: it becomes an object.
    (".pid.x = 1", Path::Patch),
    (".l7.request.http.url.path = .l7.request.http.url", Path::Patch),
    // Deletes.
    (
        "del(.l7.request.http.headers)",
        Path::PatchDeleting(&["l7", "request", "http", "headers"]),
    ),
    (
        "del(.l7.request.http.method)",
        Path::PatchDeleting(&["l7", "request", "http", "method"]),
    ),
    // Under objects that some records lack: no empty object may appear.
    (
        "del(.server.namespace)\ndel(.client.labels)",
        Path::PatchDeleting(&["server", "namespace"]),
    ),
    (
        "del(.nothing.here.at.all)",
        Path::PatchDeleting(&["nothing", "here", "at", "all"]),
    ),
    // A field below an array: nothing to delete, the array stays as it was.
    (
        "del(.l7.response.http.headers.key)",
        Path::PatchDeleting(&["l7", "response", "http", "headers", "key"]),
    ),
    (
        "del(.l4.TCP.serverPort)",
        Path::PatchDeleting(&["l4", "TCP", "serverPort"]),
    ),
    ("del(.l7.request.http.headers[0])", Path::Patch),
    (
        "del(.l7.request.http.url, compact: true)\ndel(.server.namespace, compact: true)",
        Path::Patch,
    ),
    (
        r#"if .l7.response.http.code == 200 { del(.l7.request.http.headers) }"#,
        Path::Patch,
    ),
    ("del(.l7.request)\n.l7.request.x = 1", Path::Patch),
    (".a.b = 1\ndel(.a.b)", Path::Patch),
    (".dst = del(.serverService.name)\n.src = .client.podName", Path::Patch),
    // Array index assignment: the other elements stay.
    (r#".l7.request.http.headers[0].value = "x""#, Path::Patch),
    (
        r#".l7.response.http.headers[1] = {"key": "k", "value": "v"}"#,
        Path::Patch,
    ),
    (".fresh[2] = 1", Path::Patch),
    // Read, then write the same field.
    (
        ".l7.request.http.method = downcase(string!(.l7.request.http.method))",
        Path::Patch,
    ),
    // Replace an object with a scalar, and merge into an object.
    (r#".l7.request = "gone""#, Path::Patch),
    (
        ".l7 = object(.l7) ?? {}\n.l7 |= {\"extra\": 1, \"latencyNs\": \"0\"}",
        Path::Patch,
    ),
    // Assignments inside closures, and both targets of an infallible assignment.
    (
        r#"for_each(array(.l7.request.http.headers) ?? []) -> |_i, h| { .last_header = h.key }"#,
        Path::Patch,
    ),
    (".n, .why = to_int(.comm)", Path::Patch),
    // Quoted field names and metadata (not the event).
    (
        r#"."weird.key" = 1
        %m = .pid
        .from_meta = %m"#,
        Path::Patch,
    ),
    // The 5-line program of the benchmark.
    (
        r#".cluster = "prod"
           .route = if exists(.l7.grpc) { string!(.l7.grpc.service) + "/" + string!(.l7.grpc.method) } else { "http" }
           .latency_ms = to_float(to_int(.l7.latencyNs) ?? 0) / 1000000.0
           del(.l7.request.http.headers)
           .l7.request.http.method = downcase(string!(.l7.request.http.method))"#,
        Path::PatchDeleting(&["l7", "request", "http", "headers"]),
    ),
    // Reading and writing the root: the whole event.
    (r#". = {"only": .l7.request.http.url}"#, Path::Whole),
    (r#". = merge(., {"a": 1})"#, Path::Whole),
    (".size = length(encode_json(.))", Path::Whole),
    (r#".p = get!(., ["pid"])"#, Path::Whole),
    (r#". |= {"b": 2}"#, Path::Whole),
];

fn run(t: &mut dyn FunctionTransform, events: Vec<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    t.transform_batch(events, &mut out);
    out
}

/// Runs `source` both ways on `events` and checks that the outputs and counters agree.
/// Returns the patched outputs.
fn equivalent(source: &str, drop_on_error: bool, drop_on_abort: bool, events: &[Event]) -> Vec<Event> {
    let (mut patched, pm) = remap(source, drop_on_error, drop_on_abort);
    let (whole, wm) = remap(source, drop_on_error, drop_on_abort);
    let mut whole = whole.whole_event();
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let a = run(&mut patched, vec![e.clone()]);
        let b = run(&mut whole, vec![e.clone()]);
        assert_eq!(a.len(), b.len(), "`{source}` on input {i}: events out");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(json_of(x), json_of(y), "`{source}` on input {i}:\n{}", json_of(e));
        }
        out.extend(a);
    }
    assert_eq!(pm.errors.get(), wm.errors.get(), "`{source}`: errors");
    assert_eq!(pm.discarded.get(), wm.discarded.get(), "`{source}`: discarded");
    out
}

fn check_plan(source: &str, path: Path) {
    let (r, _) = remap(source, false, true);
    match (r.plan(), path) {
        (Plan::Patch(p), Path::Patch) => assert!(p.deleted.is_empty(), "`{source}`: {p:?}"),
        (Plan::Patch(p), Path::PatchDeleting(d)) => assert!(
            p.deleted
                .iter()
                .any(|x| x.iter().map(String::as_str).eq(d.iter().copied())),
            "`{source}`: {p:?}"
        ),
        (Plan::WholeEvent { .. }, Path::Whole) => {}
        (plan, _) => panic!("`{source}`: expected {path:?}, planned {plan:?}"),
    }
}

#[test]
fn patched_output_equals_the_whole_event_path() {
    for (source, path) in PROGRAMS {
        check_plan(source, *path);
        let out = equivalent(source, false, true, &inputs());
        for e in &out {
            let ok = match path {
                Path::Whole => matches!(e, Event::Document(_)),
                // Unchanged records (a failed run passed on) stay typed.
                _ => matches!(e, Event::Patched(_) | Event::Record(_)),
            };
            assert!(ok, "`{source}`: {e:?}");
        }
        if *path != Path::Whole {
            assert!(
                out.iter().any(|e| matches!(e, Event::Patched(_))),
                "`{source}` patches records"
            );
        }
    }
}

#[test]
fn a_program_that_changes_nothing_passes_plain_records() {
    let (mut r, _) = remap(r#"if .l7.request.http.method == "DELETE" { abort }"#, false, true);
    let out = run(&mut r, inputs());
    assert!(!out.is_empty());
    for e in &out {
        let Event::Record(rec) = e else {
            panic!("no change, no patch: {e:?}")
        };
        assert!(RECORDS.contains(rec));
    }
}

/// A first remap's output (patched records) through each program: the second remap sees
/// the first one's changes, and the result equals running both the whole-event way.
#[test]
fn two_remaps_in_a_row() {
    let first = r#".cluster = "prod"
                   .l7.request.http.method = "x-" + string!(.l7.request.http.method)
                   del(.l7.response.http.headers)
                   .server.zone = "z1""#;
    let (mut p1, _) = remap(first, false, true);
    let patched = run(&mut p1, inputs());
    assert!(patched.iter().all(|e| matches!(e, Event::Patched(_))));
    let (w1, _) = remap(first, false, true);
    let documents = run(&mut w1.whole_event(), inputs());

    let seconds: &[&str] = &[
        r#".route = string!(.cluster) + ":" + string!(.l7.request.http.method)"#,
        r#".seen_headers = exists(.l7.response.http.headers)"#,
        "del(.cluster)\n.server.zone2 = .server.zone",
        "del(.server.zone)",
        ".l7.response.http.headers = [1]",
        r#". = {"cluster": .cluster, "method": .l7.request.http.method}"#,
    ];
    for second in seconds {
        // Patched in: both paths of the second remap agree.
        let out = equivalent(second, false, true, &patched);
        // And agree with the whole-event path all the way (documents in).
        let (w2, _) = remap(second, false, true);
        let want = run(&mut w2.whole_event(), documents.clone());
        assert_eq!(out.len(), want.len());
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert_eq!(json_of(a), json_of(b), "`{second}` after the first remap, record {i}");
        }
    }
    // The second remap sees the first one's fields.
    let (mut r, _) = remap(".route = .cluster", false, true);
    let out = run(&mut r, patched);
    assert!(out.iter().all(|e| json_of(e)["route"] == json!("prod")));
}

#[test]
fn remap_then_filter_on_a_changed_field() {
    let program = r#".class = if exists(.l7.response) { to_string(to_int(floor(to_int!(.l7.response.http.code) / 100))) + "xx" } else { "none" }
                     .l7.response.http.code = 0"#;
    let want: Vec<J> = RECORDS
        .iter()
        .filter(|r| r.l7.response.as_ref().is_some_and(|x| x.http.code / 100 == 2))
        .map(|r| json!(r.l7.request.as_ref().map(|q| q.http.url.clone())))
        .collect();
    assert!(!want.is_empty() && want.len() < RECORDS.len());
    let mut outs = Vec::new();
    for whole in [false, true] {
        let (r, _) = remap(program, false, true);
        let mut r = if whole { r.whole_event() } else { r };
        let mut f = Filter::new(
            &FilterConfig {
                condition: r#".class == "2xx" && .l7.response.http.code == 0"#.into(),
            },
            "f".into(),
            ComponentMetrics::default(),
        )
        .unwrap();
        let kept = run(&mut f, run(&mut r, inputs()));
        let urls: Vec<J> = kept
            .iter()
            .map(|e| json_of(e)["l7"]["request"]["http"]["url"].clone())
            .collect();
        assert_eq!(urls, want, "whole event: {whole}");
        outs.push(kept.iter().map(json_of).collect::<Vec<_>>());
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn abort_and_error_pass_the_original_on_unchanged() {
    let abort = "if .l7.response.http.code == 200 { abort }\n.kept = true";
    let fail = ".comm_id = to_int!(.comm)\ndel(.l7.request.http.headers)";
    let n = RECORDS.len();
    let ok = RECORDS
        .iter()
        .filter(|r| r.l7.response.as_ref().is_some_and(|x| x.http.code == 200))
        .count();
    assert!(ok > 0 && ok < n);
    for (source, drop_on_error, drop_on_abort) in [
        (abort, false, false),
        (abort, false, true),
        (fail, false, true),
        (fail, true, true),
    ] {
        equivalent(source, drop_on_error, drop_on_abort, &inputs());
        let (mut r, m) = remap(source, drop_on_error, drop_on_abort);
        let out = run(&mut r, inputs());
        let originals: Vec<&Event> = out.iter().filter(|e| matches!(e, Event::Record(_))).collect();
        for e in &originals {
            let Event::Record(rec) = e else { unreachable!() };
            assert!(RECORDS.contains(rec), "an original, unchanged");
        }
        let stopped = if source == abort { ok as u64 } else { m.errors.get() };
        assert!(stopped > 0, "`{source}` stops some records");
        let kept = if source == abort {
            !drop_on_abort
        } else {
            !drop_on_error
        };
        assert_eq!(originals.len() as u64, if kept { stopped } else { 0 }, "`{source}`");
        assert_eq!(
            out.len() as u64,
            n as u64 - if kept { 0 } else { stopped },
            "`{source}`"
        );
        assert!(out.iter().all(|e| matches!(e, Event::Record(_) | Event::Patched(_))));
    }
}
