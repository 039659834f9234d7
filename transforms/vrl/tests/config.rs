//! VRL programs inside a pipeline TOML: compile errors with file:line:col, relative
//! program files, a remap whose new field reaches a sink, a broken reload.

use crate::common;

use common::*;
use perisco_engine::RunningTopology;
use perisco_engine::config::{Config, ConfigError, line_col};
use perisco_engine::metrics::Registry;

fn load(text: &str) -> Result<Config<VrlComponents>, Vec<ConfigError>> {
    Config::<VrlComponents>::from_str(text, "pipeline.toml").map_err(|e| e.0)
}

/// (line, column) of the `nth` occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let at = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{needle}` in the test TOML"))
        .0;
    line_col(text, at)
}

fn pipeline(transform: &str) -> String {
    format!(
        r#"[sources.in]
type = "records"
path = "records.jsonl"

{transform}

[sinks.out]
type = "jsonl"
inputs = ["t"]
path = "out.jsonl"
"#
    )
}

fn only_error(text: &str) -> ConfigError {
    let errs = load(text).expect_err("the config is invalid");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn valid_programs_load() {
    let text = pipeline(
        r#"[transforms.t]
type = "filter"
inputs = ["in"]
condition = '.l7.response.http.code >= 500'"#,
    );
    load(&text).expect("valid");
    let text = pipeline(
        r#"[transforms.t]
type = "remap"
inputs = ["in"]
source = '''
.cluster = "prod"
del(.l7.request.http.headers)
'''"#,
    );
    load(&text).expect("valid");
}

#[test]
fn filter_compile_error_points_into_the_condition() {
    // `contains` wants a string; the URL's type is unknown: VRL asks for `string!(...)`.
    let text = pipeline(
        r#"[transforms.t]
type = "filter"
inputs = ["in"]
condition = 'contains(.l7.request.http.url, "/admin")'"#,
    );
    let e = only_error(&text);
    assert_eq!(e.file, "pipeline.toml");
    assert_eq!((e.line, e.column), position_of(&text, ".l7.request.http.url", 0), "{e}");
    assert!(e.message.contains("`condition`"), "{e}");
    assert!(
        e.message.contains("error[E110]: invalid argument type"),
        "VRL's own diagnostic: {e}"
    );
    assert!(!e.message.contains('\u{1b}'), "no colours: {e:?}");
}

#[test]
fn filter_syntax_error_on_a_later_line_of_a_multiline_condition() {
    let text = pipeline(
        r#"[transforms.t]
type = "filter"
inputs = ["in"]
condition = """
.server.namespace == "payments" &&
  .l7.response.http.code >= >= 500
""""#,
    );
    let e = only_error(&text);
    assert_eq!((e.line, e.column), position_of(&text, ">= 500", 0), "{e}");
    assert!(e.message.contains("syntax error"), "{e}");
}

#[test]
fn filter_condition_must_be_boolean() {
    let text = pipeline(
        r#"[transforms.t]
type = "filter"
inputs = ["in"]
condition = ".l7.response.http.code""#,
    );
    let e = only_error(&text);
    assert_eq!(
        (e.line, e.column),
        position_of(&text, ".l7.response.http.code", 0),
        "{e}"
    );
    assert!(e.message.contains("must return a boolean"), "{e}");
}

#[test]
fn remap_compile_error_line_and_column_inside_the_source() {
    let text = pipeline(
        r#"[transforms.t]
type = "remap"
inputs = ["in"]
drop_on_error = true
source = '''
.cluster = "prod"
.status_class = .l7.response.http.code / 100
del(.l7.request.http.headers)
'''"#,
    );
    let e = only_error(&text);
    // Dividing an unknown type is fallible: VRL points at the expression.
    assert_eq!(
        (e.line, e.column),
        position_of(&text, ".l7.response.http.code / 100", 0),
        "{e}"
    );
    assert!(e.message.contains("`source`") && e.message.contains("unhandled"), "{e}");
}

#[test]
fn remap_undefined_function_and_unknown_keys() {
    let text = pipeline(
        r#"[transforms.t]
type = "remap"
inputs = ["in"]
source = '.x = no_such_function(.pid)'"#,
    );
    let e = only_error(&text);
    assert_eq!((e.line, e.column), position_of(&text, "no_such_function", 0), "{e}");
    assert!(e.message.contains("call to undefined function"), "{e}");

    let text = pipeline(
        r#"[transforms.t]
type = "remap"
inputs = ["in"]
source = '.x = 1'
drop_on_eror = true"#,
    );
    let e = only_error(&text);
    assert!(e.message.contains("drop_on_eror"), "{e}");
}

#[test]
fn remap_needs_exactly_one_of_source_or_file() {
    for body in ["", "source = '.x = 1'\nfile = \"x.vrl\""] {
        let text = pipeline(&format!("[transforms.t]\ntype = \"remap\"\ninputs = [\"in\"]\n{body}"));
        let e = only_error(&text);
        assert!(e.message.contains("exactly one of `source`"), "{e}");
        assert_eq!(e.line, position_of(&text, "[transforms.t]", 0).0, "{e}");
    }
}

#[test]
fn remap_absolute_file_is_compiled_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("broken.vrl");
    std::fs::write(&prog, ".a = 1\n.b = upcase(.pid)\n").unwrap();
    // VRL's primary label of an unhandled fallible assignment is the call: line 2, column 6.
    let text = pipeline(&format!(
        "[transforms.t]\ntype = \"remap\"\ninputs = [\"in\"]\nfile = \"{}\"",
        prog.display()
    ));
    let e = only_error(&text);
    assert!(
        e.message.contains(&format!("{}:2:6:", prog.display())),
        "position inside the VRL file: {e}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Write `text` as pipeline.toml (with records.jsonl) in `dir` and load it from there.
fn load_in(dir: &std::path::Path, text: &str) -> Config<VrlComponents> {
    std::fs::write(dir.join("records.jsonl"), RECORDS_JSONL).unwrap();
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn remap_field_reaches_the_file_sink_and_filter_drops_in_a_running_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("enrich.vrl"),
        ".cluster = \"prod\"\n.route = .l7.request.http.url\n",
    )
    .unwrap();
    let text = r#"
[sources.in]
type = "records"
path = "records.jsonl"

[transforms.errors]
type = "filter"
inputs = ["in"]
condition = '.l7.response.http.code >= 500 || !exists(.l7.response)'

[transforms.t]
type = "remap"
inputs = ["errors"]
file = "enrich.vrl"

[sinks.out]
type = "file"
inputs = ["t"]
path = "out.jsonl"
"#;
    let cfg = load_in(dir.path(), text);
    let registry = Registry::new();
    let rt = runtime();
    rt.block_on(async {
        let topo = RunningTopology::start(cfg, registry.clone()).await.expect("starts");
        topo.wait_sources_finished().await;
        assert!(topo.stop(STOP_DEADLINE).await.drained);
    });
    let lines = read_jsonl(&dir.path().join("out.jsonl"));
    let expected: Vec<_> = records()
        .into_iter()
        .filter(|r| r.l7.response.as_ref().is_none_or(|x| x.http.code >= 500))
        .collect();
    assert_eq!(lines.len(), expected.len());
    for (line, rec) in lines.iter().zip(&expected) {
        let mut want = serde_json::to_value(rec).unwrap();
        let url = rec.l7.request.as_ref().unwrap().http.url.to_string();
        want.as_object_mut().unwrap().insert("cluster".into(), "prod".into());
        want.as_object_mut().unwrap().insert("route".into(), url.into());
        assert_eq!(*line, want);
    }
    let discarded = registry.counter_value(
        "perisco_component_discarded_events_total",
        &[
            ("component_id", "errors"),
            ("component_kind", "transform"),
            ("component_type", "filter"),
        ],
    );
    assert_eq!(discarded, Some((records().len() - expected.len()) as u64));
}

#[test]
fn broken_program_file_fails_the_build_and_a_reload_keeps_the_running_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prog.vrl"), ".stage = \"one\"\n").unwrap();
    let text = pipeline("[transforms.t]\ntype = \"remap\"\ninputs = [\"in\"]\nfile = \"prog.vrl\"")
        .replace("path = \"records.jsonl\"", "path = \"records.jsonl\"\nhold = true");
    let cfg = load_in(dir.path(), &text);
    let rt = runtime();
    rt.block_on(async {
        let mut topo = RunningTopology::start(cfg, Registry::new()).await.expect("starts");
        // The relative file is compiled at build: validate passes, build reports the file position.
        std::fs::write(dir.path().join("prog.vrl"), ".stage = \"two\"\n.x = upcase(.pid)\n").unwrap();
        let new = load_in(dir.path(), &text.replace("prog.vrl", "./prog.vrl"));
        let err = topo.reload(new).await.expect_err("a broken program must not be applied").to_string();
        assert!(err.contains("prog.vrl:2:6:") && err.contains("upcase"), "{err}");
        let cfg_now = topo.config();
        assert!(matches!(&cfg_now.transforms["t"].inner, TestTransform::Remap(r) if r.file.as_deref() == Some(std::path::Path::new("prog.vrl"))));
        assert!(topo.stop(STOP_DEADLINE).await.drained);
    });
    let lines = read_jsonl(&dir.path().join("out.jsonl"));
    assert_eq!(lines.len(), records().len());
    assert!(
        lines.iter().all(|l| l["stage"] == "one"),
        "the old program kept running"
    );
}
