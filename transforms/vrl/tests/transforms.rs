//! Tables of filter conditions and remap programs over the sample records.

use crate::common;

use common::*;
use perisco_engine::FunctionTransform;
use perisco_engine::event::Event;
use perisco_engine::metrics::ComponentMetrics;
use perisco_vrl::convert::{self, Selection};
use perisco_vrl::{Filter, FilterConfig, Remap};
use serde_json::{Value as J, json};

#[test]
fn sample_records_are_shaped_exactly_like_the_record() {
    for line in RECORDS_JSONL.lines() {
        let r: perisco_engine::event::Record = serde_json::from_str(line).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            line,
            "the sample must serialise back unchanged"
        );
    }
}

#[test]
fn a_record_converts_to_the_json_the_sinks_write() {
    for r in records() {
        let v = convert::to_vrl(&r, &Selection::All).unwrap();
        assert_eq!(convert::vrl_to_json(v), serde_json::to_value(&r).unwrap());
    }
}

#[test]
fn documents_convert_both_ways_without_loss() {
    for e in record_events() {
        let J::Object(m) = json_of(&e) else {
            panic!("records are objects")
        };
        let by_ref = convert::map_ref_to_vrl(&m, &Selection::All);
        let moved = convert::json_to_vrl(J::Object(m.clone()));
        assert_eq!(vrl::value::Value::Object(by_ref.clone()), moved);
        assert_eq!(convert::object_to_json(by_ref), m);
    }
}

fn filter(condition: &str) -> (Filter, ComponentMetrics) {
    let m = ComponentMetrics::default();
    let f = Filter::new(
        &FilterConfig {
            condition: condition.into(),
        },
        "test".into(),
        m.clone(),
    )
    .unwrap_or_else(|e| panic!("{condition}: {e}"));
    (f, m)
}

/// Indexes (in records.jsonl) of the events `filter` passed on, and its error count.
fn run_filter(f: &mut Filter, metrics: &ComponentMetrics, events: Vec<Event>) -> (Vec<usize>, u64) {
    let originals: Vec<J> = events.iter().map(json_of).collect();
    let variants: Vec<bool> = events.iter().map(|e| matches!(e, Event::Record(_))).collect();
    let mut out = Vec::new();
    f.transform_batch(events, &mut out);
    let kept = out
        .iter()
        .map(|e| {
            let i = originals
                .iter()
                .position(|o| *o == json_of(e))
                .expect("a kept event is an original, unchanged");
            assert_eq!(
                matches!(e, Event::Record(_)),
                variants[i],
                "a kept event keeps its variant"
            );
            i
        })
        .collect();
    (kept, metrics.errors.get())
}

/// (condition, records kept, runtime errors).
const CONDITIONS: &[(&str, &[usize], u64)] = &[
    (".l7.response.http.code >= 500", &[1, 7], 0),
    (r#".server.namespace == "payments""#, &[1, 4, 5], 0),
    (r#"contains(string!(.l7.request.http.url), "/admin")"#, &[2, 3], 0),
    (r#".l7.request.http.protocol == "HTTP/2""#, &[3, 4, 5, 7], 0),
    ("exists(.l7.grpc) && .l7.grpc.status != 0", &[5], 0),
    ("!exists(.l7.response)", &[6], 0),
    (r#"includes(array(.incomplete) ?? [], "response_missing")"#, &[6], 0),
    (
        r#".serverService.name == "books" && .l4.TCP.serverPort == 7002"#,
        &[0, 6],
        0,
    ),
    ("(to_int(.l7.latencyNs) ?? 0) > 5000000", &[0, 1, 5], 0),
    (r#"ip_cidr_contains!("fd00::/8", string!(.ip.client))"#, &[7], 0),
    (r#"match(string!(.l7.request.http.url), r'^/v\d+/')"#, &[7], 0),
    (r#"starts_with(string!(.l7.request.http.method), "P")"#, &[1, 4, 5], 0),
    (
        r#"parse_timestamp!(.ts, "%+") > t'2023-04-11T03:43:33Z'"#,
        &[4, 5, 6, 7],
        0,
    ),
    // Headers are an array of {key, value}: any header, by name.
    (
        r#"found = false
           for_each(array!(.l7.request.http.headers)) -> |_i, h| { if h.key == "Authorization" { found = true } }
           found"#,
        &[1],
        0,
    ),
    // Compared with a number, a URL cannot be evaluated: false for all, not an error.
    (".l7.request.http.url > 5", &[], 0),
    // `abort` drops quietly, like false.
    ("if .pid == 0 { abort } else { true }", &[0, 1, 2, 3, 4, 5, 7], 0),
    // Runtime errors drop the event and are counted: records 3..=6 have no `comm`.
    (r#"string!(.comm) == "java""#, &[1], 4),
    // Record 6 has no client: array!(null) fails.
    (r#"includes(array!(.client.labels), "tier=frontend")"#, &[1, 4, 5, 7], 1),
];

#[test]
fn filter_conditions_over_records() {
    for (cond, kept, errors) in CONDITIONS {
        let (mut f, m) = filter(cond);
        let (got, errs) = run_filter(&mut f, &m, record_events());
        assert_eq!(got, *kept, "kept by `{cond}`");
        assert_eq!(errs, *errors, "runtime errors of `{cond}`");
        let n = records().len() as u64;
        assert_eq!(m.discarded.get(), n - kept.len() as u64, "discarded by `{cond}`");
    }
}

#[test]
fn filter_gives_the_same_answers_on_documents_and_without_pruning() {
    let documents = || -> Vec<Event> {
        record_events()
            .iter()
            .map(|e| match json_of(e) {
                J::Object(m) => Event::Document(Box::new(m)),
                _ => unreachable!(),
            })
            .collect()
    };
    for (cond, kept, errors) in CONDITIONS {
        let (mut f, m) = filter(cond);
        assert_eq!(
            run_filter(&mut f, &m, documents()),
            (kept.to_vec(), *errors),
            "documents, `{cond}`"
        );
        let (f, m) = filter(cond);
        let mut f = f.converting_everything();
        assert_eq!(
            run_filter(&mut f, &m, record_events()),
            (kept.to_vec(), *errors),
            "unpruned, `{cond}`"
        );
    }
}

#[test]
fn filter_converts_only_what_the_condition_reads() {
    let cases: &[(&str, J)] = &[
        (
            ".l7.response.http.code >= 500",
            json!({"l7": {"response": {"http": {"code": 200}}}}),
        ),
        (
            r#".server.namespace == "default" || exists(.l4)"#,
            json!({"server": {"namespace": "default"}, "l4": {"TCP": {"clientPort": 38674, "serverPort": 7002}}}),
        ),
    ];
    let r = &records()[0];
    for (cond, expected) in cases {
        let p = perisco_vrl::compile(cond, perisco_vrl::Expect::Boolean).unwrap();
        let sel = Selection::from_queries(&p.info().target_queries);
        assert_eq!(
            convert::vrl_to_json(convert::to_vrl(r, &sel).unwrap()),
            *expected,
            "`{cond}`"
        );
    }
    // Reading the whole event (`.` or `get`) selects everything.
    for cond in [r#"length(.) > 3"#, r#"get!(., ["pid"]) == 87111"#] {
        let p = perisco_vrl::compile(cond, perisco_vrl::Expect::Boolean).unwrap();
        assert_eq!(
            Selection::from_queries(&p.info().target_queries),
            Selection::All,
            "`{cond}`"
        );
    }
}

fn run_remap(r: &mut Remap, events: Vec<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    r.transform_batch(events, &mut out);
    out
}

fn obj(v: &mut J) -> &mut serde_json::Map<String, J> {
    v.as_object_mut().expect("object")
}

#[test]
fn remap_adds_changes_and_deletes_fields() {
    type Expect = fn(usize, &mut J);
    let cases: &[(&str, Expect)] = &[
        (r#".cluster = "prod""#, |_, r| {
            obj(r).insert("cluster".into(), json!("prod"));
        }),
        ("del(.l7.request.http.headers)", |_, r| {
            obj(&mut r["l7"]["request"]["http"]).remove("headers");
        }),
        (
            // A 5-line program of the kind the benchmark runs.
            r#".cluster = "prod"
               .route = if exists(.l7.grpc) { string!(.l7.grpc.service) + "/" + string!(.l7.grpc.method) } else { "http" }
               .status_class = if exists(.l7.response) { to_string(to_int(floor(to_int!(.l7.response.http.code) / 100))) + "xx" } else { "none" }
               del(.l7.request.http.headers)
               .l7.request.http.method = downcase(string!(.l7.request.http.method))"#,
            |_, r| {
                let route = match r["l7"].get("grpc") {
                    Some(g) => format!("{}/{}", g["service"].as_str().unwrap(), g["method"].as_str().unwrap()),
                    None => "http".into(),
                };
                let class = match r["l7"].get("response") {
                    Some(resp) => format!("{}xx", resp["http"]["code"].as_u64().unwrap() / 100),
                    None => "none".into(),
                };
                let m = obj(r);
                m.insert("cluster".into(), json!("prod"));
                m.insert("route".into(), json!(route));
                m.insert("status_class".into(), json!(class));
                let http = obj(&mut r["l7"]["request"]["http"]);
                http.remove("headers");
                let method = http["method"].as_str().unwrap().to_lowercase();
                http.insert("method".into(), json!(method));
            },
        ),
        // Renaming: flatten the k8s names a dashboard filters on.
        (".src = .client.podName\n.dst = del(.serverService.name)", |_, r| {
            let src = r
                .get("client")
                .and_then(|c| c.get("podName"))
                .cloned()
                .unwrap_or(J::Null);
            let dst = r["serverService"]
                .as_object_mut()
                .and_then(|s| s.remove("name"))
                .unwrap_or(J::Null);
            let m = obj(r);
            m.insert("src".into(), src);
            m.insert("dst".into(), dst);
        }),
        // Typed values VRL creates become JSON: a timestamp, a float, a nested object.
        (
            r#".seen = t'2023-04-11T03:43:29.619285359Z'
               .ts_ns = to_unix_timestamp!(parse_timestamp!(.ts, "%+"), unit: "nanoseconds")
               .latency_ms = to_float(to_int(.l7.latencyNs) ?? 0) / 1000000.0
               .tags = {"team": "sre", "n": [1, 2]}"#,
            |i, r| {
                let lat = r["l7"]
                    .get("latencyNs")
                    .map_or(0, |l| l.as_str().unwrap().parse::<u64>().unwrap());
                let m = obj(r);
                m.insert("seen".into(), json!("2023-04-11T03:43:29.619285359Z"));
                m.insert("ts_ns".into(), json!(records()[i].ts));
                m.insert("latency_ms".into(), json!(lat as f64 / 1_000_000.0));
                m.insert("tags".into(), json!({"team": "sre", "n": [1, 2]}));
            },
        ),
    ];
    for (source, expect) in cases {
        let (mut r, m) = remap(source, false, true);
        let out = run_remap(&mut r, record_events());
        assert_eq!(out.len(), records().len(), "`{source}`: one event out per event in");
        for (i, (e, rec)) in out.iter().zip(records()).enumerate() {
            assert!(matches!(e, Event::Patched(_)), "remap emits patched records");
            let mut want = serde_json::to_value(&rec).unwrap();
            expect(i, &mut want);
            assert_eq!(json_of(e), want, "`{source}` on record {i}");
        }
        assert_eq!(m.errors.get(), 0, "`{source}`");
    }
}

#[test]
fn remap_runtime_errors_pass_the_original_or_drop_it() {
    // "ruby", "java", "nginx" and "carts" are not integers; to_int(null) is 0 in VRL, so
    // exactly the records with a comm fail.
    let source = ".comm_id = to_int!(.comm)";
    let with_comm: Vec<usize> = records()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.comm.is_some())
        .map(|(i, _)| i)
        .collect();
    assert!(!with_comm.is_empty());

    let (mut r, m) = remap(source, false, true);
    let out = run_remap(&mut r, record_events());
    assert_eq!(out.len(), records().len());
    for (i, (e, rec)) in out.iter().zip(records()).enumerate() {
        if with_comm.contains(&i) {
            assert!(
                matches!(e, Event::Record(x) if **x == rec),
                "record {i} passes unchanged after an error"
            );
        } else {
            assert_eq!(json_of(e)["comm_id"], json!(0), "record {i}");
        }
    }
    assert_eq!(m.errors.get(), with_comm.len() as u64);
    assert_eq!(m.discarded.get(), 0);

    let (mut r, m) = remap(source, true, true);
    let out = run_remap(&mut r, record_events());
    assert_eq!(out.len(), records().len() - with_comm.len());
    assert_eq!(m.errors.get(), with_comm.len() as u64);
    assert_eq!(m.discarded.get(), with_comm.len() as u64);
}

#[test]
fn remap_abort_drops_by_default_and_can_pass_the_original() {
    let source = "if .l7.response.http.code == 200 { abort }\n.kept = true";
    let ok: Vec<usize> = records()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.l7.response.as_ref().is_some_and(|x| x.http.code == 200))
        .map(|(i, _)| i)
        .collect();
    assert!(!ok.is_empty());

    let (mut r, m) = remap(source, false, true);
    let out = run_remap(&mut r, record_events());
    assert_eq!(out.len(), records().len() - ok.len());
    assert!(out.iter().all(|e| json_of(e)["kept"] == json!(true)));
    assert_eq!((m.discarded.get(), m.errors.get()), (ok.len() as u64, 0));

    let (mut r, m) = remap(source, false, false);
    let out = run_remap(&mut r, record_events());
    assert_eq!(out.len(), records().len());
    for (i, e) in out.iter().enumerate() {
        assert_eq!(json_of(e).get("kept").is_none(), ok.contains(&i), "record {i}");
    }
    assert_eq!((m.discarded.get(), m.errors.get()), (0, 0));
}

#[test]
fn remap_of_a_document_keeps_extra_fields_and_can_split_events() {
    // A second remap sees the first one's fields.
    let (mut first, _) = remap(r#".cluster = "prod""#, false, true);
    let docs = run_remap(&mut first, record_events());
    let (mut second, m) = remap(
        r#". = [{"cluster": .cluster, "side": "request", "url": .l7.request.http.url},
               {"cluster": .cluster, "side": "response", "code": .l7.response.http.code}]"#,
        false,
        true,
    );
    let out = run_remap(&mut second, docs);
    assert_eq!(out.len(), 2 * records().len());
    for (pair, rec) in out.chunks(2).zip(records()) {
        assert_eq!(
            json_of(&pair[0]),
            json!({"cluster": "prod", "side": "request", "url": rec.l7.request.as_ref().unwrap().http.url})
        );
        let code = rec.l7.response.as_ref().map(|r| json!(r.http.code)).unwrap_or(J::Null);
        assert_eq!(
            json_of(&pair[1]),
            json!({"cluster": "prod", "side": "response", "code": code})
        );
    }
    assert_eq!(m.errors.get(), 0);
}

#[test]
fn remap_that_makes_the_event_a_non_object_is_an_error() {
    let (mut r, m) = remap(". = .l7.request.http.url", false, true);
    let out = run_remap(&mut r, record_events());
    assert_eq!(m.errors.get(), records().len() as u64);
    // drop_on_error = false: the typed originals go on unchanged.
    assert_eq!(out.len(), records().len());
    assert!(
        out.iter()
            .zip(records())
            .all(|(e, rec)| matches!(e, Event::Record(x) if **x == rec))
    );

    let (mut r, m) = remap(". = .l7.request.http.url", true, true);
    assert!(run_remap(&mut r, record_events()).is_empty());
    assert_eq!(m.discarded.get(), records().len() as u64);
}
