//! Checks on the component graph: ids, inputs, cycles and data types; and DOT output.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use super::Config;
use crate::component::{ComponentConfig, Components, Kind, SinkConfig, SourceConfig, TransformConfig};
use crate::event::DataType;

/// Where each component id and each of its inputs is written.
/// Components that failed to deserialise are remembered so the graph checks do not
/// pile follow-up errors ("unknown input", "no sources") on top of the real one.
#[derive(Default)]
pub(super) struct Positions {
    ids: HashMap<Arc<str>, Range<usize>>,
    inputs: HashMap<Arc<str>, Vec<Spanned<Arc<str>>>>,
    failed: HashMap<Arc<str>, Kind>,
}

impl Positions {
    pub(super) fn insert(&mut self, id: &Spanned<Arc<str>>, inputs: Vec<Spanned<Arc<str>>>) {
        self.ids.insert(id.get_ref().clone(), id.span());
        self.inputs.insert(id.get_ref().clone(), inputs);
    }

    pub(super) fn failed(&mut self, id: &Spanned<Arc<str>>, kind: Kind) {
        self.failed.insert(id.get_ref().clone(), kind);
    }

    fn any_failed(&self, kind: Kind) -> bool {
        self.failed.values().any(|k| *k == kind)
    }

    fn id(&self, id: &str) -> Option<Range<usize>> {
        self.ids.get(id).cloned()
    }

    fn input(&self, id: &str, input: &str) -> Option<Range<usize>> {
        self.inputs
            .get(id)?
            .iter()
            .find(|s| s.get_ref().as_ref() == input)
            .map(|s| s.span())
    }
}

type Problem = (Option<Range<usize>>, String);

pub(super) fn check<C: Components>(cfg: &Config<C>, pos: &Positions) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    if cfg.sources.is_empty() && !pos.any_failed(Kind::Source) {
        out.push((None, "no sources: a pipeline needs at least one `[sources.ID]`".into()));
    }
    if cfg.sinks.is_empty() && !pos.any_failed(Kind::Sink) {
        out.push((None, "no sinks: a pipeline needs at least one `[sinks.ID]`".into()));
    }
    for id in cfg.sources.keys() {
        if cfg.transforms.contains_key(id) || cfg.sinks.contains_key(id) {
            out.push((pos.id(id), format!("component id `{id}` is used more than once")));
        }
    }
    for id in cfg.transforms.keys() {
        if cfg.sinks.contains_key(id) {
            out.push((pos.id(id), format!("component id `{id}` is used more than once")));
        }
    }
    if !out.is_empty() {
        return out;
    }

    let edges = cfg
        .transforms
        .iter()
        .map(|(id, n)| (id, &n.inputs))
        .chain(cfg.sinks.iter().map(|(id, n)| (id, &n.inputs)));
    let mut input_ok = true;
    for (id, inputs) in edges {
        for input in inputs {
            let at = pos.input(id, input);
            if cfg.sinks.contains_key(input) {
                out.push((
                    at,
                    format!("`{id}` takes input from `{input}`, which is a sink; sinks have no output"),
                ));
                input_ok = false;
            } else if pos.failed.contains_key(input) {
                // Its own error was reported.
                input_ok = false;
            } else if !cfg.sources.contains_key(input) && !cfg.transforms.contains_key(input) {
                let mut known: Vec<&str> = cfg
                    .sources
                    .keys()
                    .chain(cfg.transforms.keys())
                    .map(|k| k.as_ref())
                    .collect();
                known.sort_unstable();
                out.push((
                    at,
                    format!(
                        "`{id}` takes input from unknown component `{input}` (known: {})",
                        known.join(", ")
                    ),
                ));
                input_ok = false;
            }
        }
        let mut seen = std::collections::HashSet::new();
        for input in inputs {
            if !seen.insert(input) {
                out.push((pos.input(id, input), format!("`{id}` lists input `{input}` twice")));
            }
        }
    }
    if !input_ok {
        return out;
    }
    if let Some(cycle) = find_cycle(cfg) {
        let first = cycle[0].clone();
        out.push((
            pos.id(&first),
            format!("cycle between transforms: {}", cycle.join(" -> ")),
        ));
        return out;
    }

    // Types flow from sources through transforms in topological order.
    let mut types: HashMap<&str, DataType> = cfg.sources.iter().map(|(id, s)| (id.as_ref(), s.output())).collect();
    for id in topo_order(cfg) {
        let node = &cfg.transforms[&*id];
        let mut ok = true;
        for input in &node.inputs {
            if let Some(&t) = types.get(input.as_ref())
                && !node.inner.accepts(t)
            {
                ok = false;
                out.push((
                    pos.input(&id, input),
                    format!("`{id}` ({}) does not accept {t} from `{input}`", node.inner.type_name()),
                ));
            }
        }
        if ok {
            types.insert(
                cfg.transforms
                    .get_key_value(&*id)
                    .map(|(k, _)| k.as_ref())
                    .unwrap_or(""),
                node.inner.output(),
            );
        }
    }
    for (id, node) in &cfg.sinks {
        for input in &node.inputs {
            if let Some(&t) = types.get(input.as_ref())
                && !node.inner.accepts(t)
            {
                out.push((
                    pos.input(id, input),
                    format!("`{id}` ({}) does not accept {t} from `{input}`", node.inner.type_name()),
                ));
            }
        }
    }
    out
}

/// A cycle among transforms, as a list of ids ending where it started.
fn find_cycle<C: Components>(cfg: &Config<C>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = cfg.transforms.keys().map(|k| (k.as_ref(), Mark::New)).collect();
    fn visit<'a, C: Components>(
        cfg: &'a Config<C>,
        id: &'a str,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(id) {
            Some(Mark::Done) | None => return None,
            Some(Mark::Active) => {
                let start = stack.iter().position(|s| *s == id).unwrap_or(0);
                let mut c: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                c.push(id.to_string());
                return Some(c);
            }
            Some(Mark::New) => {}
        }
        marks.insert(id, Mark::Active);
        stack.push(id);
        for input in &cfg.transforms[id].inputs {
            if let Some(c) = visit(cfg, input, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(id, Mark::Done);
        None
    }
    for id in cfg.transforms.keys() {
        let mut stack = Vec::new();
        if let Some(mut c) = visit(cfg, id, &mut marks, &mut stack) {
            // Inputs point upstream; show the data flow direction.
            c.reverse();
            return Some(c);
        }
    }
    None
}

/// Transforms ordered so every transform comes after its inputs (the graph is acyclic).
pub fn topo_order<C: Components>(cfg: &Config<C>) -> Vec<Arc<str>> {
    let mut done: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut order = Vec::new();
    fn visit<'a, C: Components>(
        cfg: &'a Config<C>,
        id: &'a Arc<str>,
        done: &mut std::collections::HashSet<&'a str>,
        order: &mut Vec<Arc<str>>,
    ) {
        if !done.insert(id) {
            return;
        }
        for input in &cfg.transforms[id].inputs {
            if let Some((k, _)) = cfg.transforms.get_key_value(input) {
                visit(cfg, k, done, order);
            }
        }
        order.push(id.clone());
    }
    for id in cfg.transforms.keys() {
        visit(cfg, id, &mut done, &mut order);
    }
    order
}

/// The pipeline in Graphviz DOT.
pub fn to_dot<C: Components>(cfg: &Config<C>) -> String {
    let mut s = String::from("digraph perisco {\n  rankdir=\"LR\";\n");
    let q = |id: &str| format!("\"{}\"", id.replace('\\', "\\\\").replace('"', "\\\""));
    for (id, c) in &cfg.sources {
        let _ = writeln!(
            s,
            "  {} [shape=\"trapezium\", label=\"{id}\\n({})\"];",
            q(id),
            c.type_name()
        );
    }
    for (id, c) in &cfg.transforms {
        let _ = writeln!(
            s,
            "  {} [shape=\"box\", label=\"{id}\\n({})\"];",
            q(id),
            c.inner.type_name()
        );
    }
    for (id, c) in &cfg.sinks {
        let _ = writeln!(
            s,
            "  {} [shape=\"invtrapezium\", label=\"{id}\\n({})\"];",
            q(id),
            c.inner.type_name()
        );
    }
    for (id, n) in cfg
        .transforms
        .iter()
        .map(|(i, n)| (i, &n.inputs))
        .chain(cfg.sinks.iter().map(|(i, n)| (i, &n.inputs)))
    {
        for input in n {
            let _ = writeln!(s, "  {} -> {};", q(input), q(id));
        }
    }
    s.push_str("}\n");
    s
}
