//! The VRL programs in config-examples/*.toml compile (as filter conditions or remaps).

use perisco_vrl::{Expect, compile};

#[test]
fn example_programs_compile() {
    let dir = perisco_testutil::workspace_root().join("config-examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config-examples") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(transforms) = doc.get("transforms").and_then(|t| t.as_table()) else {
            continue;
        };
        for (id, t) in transforms {
            let (source, expect) = match t.get("type").and_then(|v| v.as_str()) {
                Some("filter") => (t["condition"].as_str().unwrap(), Expect::Boolean),
                Some("remap") => match t.get("source") {
                    Some(s) => (s.as_str().unwrap(), Expect::Any),
                    None => continue,
                },
                _ => continue,
            };
            compile(source, expect).unwrap_or_else(|e| panic!("{} `{id}`:\n{e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 3, "the examples hold VRL programs");
}
