//! A table of broken configs and the errors (with positions) they must give.

use perisco_engine::config::Config;
use perisco_engine::testing::TestComponents;

type Cfg = Config<TestComponents>;

fn env(name: &str) -> Option<String> {
    match name {
        "SINK_NAME" => Some("from-env".into()),
        "COUNT" => Some("7".into()),
        _ => None,
    }
}

/// Errors of `text` as "line:col: message".
fn errors(text: &str) -> Vec<String> {
    match Cfg::from_str_with_env(text, "pipeline.toml", env) {
        Ok(_) => vec![],
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                .collect()
        }
    }
}

const GOOD: &str = r#"
[sources.gen]
type = "generator"
count = ${COUNT}

[transforms.t]
type = "passthrough"
inputs = ["gen"]

[sinks.out]
type = "collect"
inputs = ["t", "gen"]
name = "${SINK_NAME}"
"#;

#[test]
fn a_good_config_loads_with_interpolation() {
    let cfg = Cfg::from_str_with_env(GOOD, "pipeline.toml", env).unwrap();
    assert_eq!(cfg.sources.len(), 1);
    let perisco_engine::testing::TestSink::Collect(c) = &cfg.sinks["out"].inner;
    assert_eq!(c.name, "from-env");
    let perisco_engine::testing::TestSource::Generator(g) = &cfg.sources["gen"];
    assert_eq!(g.count, Some(7));
}

/// (name, config, expected "line:col: message fragment" for each error, in order)
const BROKEN: &[(&str, &str, &[&str])] = &[
    (
        "toml syntax",
        "[sources.gen]\ntype = \"generator\"\ncount = = 3\n",
        &["3:9: "],
    ),
    (
        "unknown top-level key",
        "[sourcez.gen]\ntype = \"generator\"\n",
        &["1:1: no sources", "1:1: no sinks", "1:2: unknown key `sourcez`"],
    ),
    (
        "unknown component type",
        "[sources.gen]\ntype = \"generatorr\"\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n",
        &["2:8: component `gen`: unknown component type `generatorr`, expected `generator`"],
    ),
    (
        "missing type",
        "[sources.gen]\ncount = 1\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n",
        &["1:10: component `gen`: missing field `type`"],
    ),
    (
        "unknown key inside a component",
        "[sources.gen]\ntype = \"generator\"\ncountt = 1\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n",
        &["3:1: component `gen`: unknown field `countt`"],
    ),
    (
        "bad value type",
        "[sources.gen]\ntype = \"generator\"\ncount = \"many\"\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n",
        &["3:9: component `gen`: invalid type: string \"many\""],
    ),
    (
        "bad value caught by validate()",
        "[sources.gen]\ntype = \"generator\"\nbatch = 0\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n",
        &["3:9: component `gen`: `batch`: must be at least 1"],
    ),
    (
        "bad duration",
        "[sources.gen]\ntype = \"generator\"\ninterval = \"5 parsecs\"\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n",
        &["3:12: component `gen`: "],
    ),
    (
        "unknown input",
        "[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\", \"nope\"]\nname = \"x\"\n",
        &["5:18: `out` takes input from unknown component `nope` (known: gen)"],
    ),
    (
        "missing inputs",
        "[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"collect\"\nname = \"x\"\n",
        &["3:1: `sinks.out` is missing `inputs`"],
    ),
    (
        "empty inputs",
        "[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"collect\"\ninputs = []\nname = \"x\"\n",
        &["5:10: `sinks.out.inputs` is empty"],
    ),
    (
        "a sink used as an input",
        "[sources.gen]\ntype = \"generator\"\n[sinks.a]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n[sinks.b]\ntype = \"collect\"\ninputs = [\"a\"]\nname = \"y\"\n",
        &["9:11: `b` takes input from `a`, which is a sink"],
    ),
    (
        "a cycle",
        "[sources.gen]\ntype = \"generator\"\n[transforms.x]\ntype = \"passthrough\"\ninputs = [\"gen\", \"y\"]\n[transforms.y]\ntype = \"passthrough\"\ninputs = [\"x\"]\n[sinks.out]\ntype = \"collect\"\ninputs = [\"y\"]\nname = \"x\"\n",
        &["3:13: cycle between transforms: "],
    ),
    (
        "inputs on a source",
        "[sources.gen]\ntype = \"generator\"\ninputs = [\"x\"]\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n",
        &["3:10: sources have no `inputs`"],
    ),
    (
        "duplicate id across kinds",
        "[sources.gen]\ntype = \"generator\"\n[sinks.gen]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n",
        &["3:8: component id `gen` is used more than once"],
    ),
    (
        "unset environment variable",
        "[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"${NOT_SET_ANYWHERE}\"\n",
        &["6:9: environment variable `NOT_SET_ANYWHERE` is not set"],
    ),
    (
        "bad api address",
        "[api]\naddress = \"nowhere\"\n[sources.gen]\ntype = \"generator\"\n[sinks.out]\ntype = \"collect\"\ninputs = [\"gen\"]\nname = \"x\"\n",
        &["2:11: [api]: "],
    ),
    (
        "several errors at once",
        "[sources.gen]\ntype = \"generator\"\nbogus = 1\n[transforms.t]\ntype = \"passthrough\"\ninputs = [\"ghost\"]\n[sinks.out]\ntype = \"collect\"\ninputs = [\"t\"]\n",
        &[
            "3:1: component `gen`: unknown field `bogus`",
            "6:11: `t` takes input from unknown component `ghost`",
            "7:1: component `out`: missing field `name`",
        ],
    ),
];

#[test]
fn broken_configs_give_positioned_errors() {
    let mut failures = Vec::new();
    for (name, text, expected) in BROKEN {
        let got = errors(text);
        let ok = got.len() == expected.len() && got.iter().zip(expected.iter()).all(|(g, e)| g.starts_with(e));
        if !ok {
            failures.push(format!("{name}:\n  expected {expected:?}\n  got      {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn errors_render_as_file_line_col() {
    let e = Cfg::from_str_with_env("[sources.gen]\ntype = 3\n", "conf/p.toml", env).unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("conf/p.toml:"), "{s}");
}

#[test]
fn dot_lists_every_edge() {
    let cfg = Cfg::from_str_with_env(GOOD, "p.toml", env).unwrap();
    let dot = perisco_engine::config::to_dot(&cfg);
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains("\"gen\" -> \"t\";"));
    assert!(dot.contains("\"t\" -> \"out\";"));
    assert!(dot.contains("\"gen\" -> \"out\";"));
}
