//! Loading and validating the pipeline TOML.
//!
//! Every problem is collected, not just the first: TOML syntax, unknown keys and types
//! (from each component's own serde config), bad values, unknown or missing inputs,
//! cycles and type mismatches. Each error carries file:line:col of the original text
//! (before `${VAR}` interpolation).

mod diff;
mod graph;
pub mod interpolate;

pub use diff::{ConfigDiff, Diff};
pub use graph::{to_dot, topo_order};

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::component::{ComponentConfig, Components, Kind};

/// One problem in a config file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// All the problems found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// `[api]`: `GET /health` and `GET /metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub address: SocketAddr,
}

/// `[global]`: engine-wide options (all optional).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalOptions {
    /// How long SIGTERM/SIGINT may take to drain channels and flush sinks.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Capacity of each edge, in batches.
    pub channel_capacity: usize,
    /// Name of this node, added to records by transforms that know it (defaults to
    /// `$NODE_NAME` when set through `${NODE_NAME}` in the file).
    pub node_name: Option<String>,
}

impl Default for GlobalOptions {
    fn default() -> Self {
        GlobalOptions {
            shutdown_timeout: Duration::from_secs(30),
            channel_capacity: 16,
            node_name: None,
        }
    }
}

/// A transform or sink with its `inputs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<T> {
    pub inputs: Vec<Arc<str>>,
    pub inner: T,
}

/// A validated pipeline.
pub struct Config<C: Components> {
    pub api: Option<ApiConfig>,
    pub global: GlobalOptions,
    pub sources: IndexMap<Arc<str>, C::Source>,
    pub transforms: IndexMap<Arc<str>, Node<C::Transform>>,
    pub sinks: IndexMap<Arc<str>, Node<C::Sink>>,
    /// Where it was loaded from (relative paths in components resolve against its dir).
    pub path: Option<PathBuf>,
}

impl<C: Components> fmt::Debug for Config<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("api", &self.api)
            .field("global", &self.global)
            .field("sources", &self.sources)
            .field("transforms", &self.transforms)
            .field("sinks", &self.sinks)
            .finish()
    }
}

impl<C: Components> Config<C> {
    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: name.clone(),
                line: 0,
                column: 0,
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        let mut cfg = Self::from_str(&text, &name)?;
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parse and validate config text; `name` is used in error positions.
    pub fn from_str(text: &str, name: &str) -> Result<Self, ConfigErrors> {
        Self::from_str_with_env(text, name, |k| std::env::var(k).ok())
    }

    pub fn from_str_with_env(
        text: &str,
        name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        let (expanded, map, ierrs) = interpolate::interpolate(text, env);
        let mut errs = Errors {
            file: name,
            original: text,
            map,
            list: Vec::new(),
        };
        for e in ierrs {
            errs.push_original(e.offset, e.message);
        }
        let root = match DeTable::parse(&expanded) {
            Ok(t) => t,
            Err(e) => {
                errs.push_toml(&e, None);
                return Err(errs.finish());
            }
        };
        let root_span = root.span();
        let mut cfg = Config {
            api: None,
            global: GlobalOptions::default(),
            sources: IndexMap::new(),
            transforms: IndexMap::new(),
            sinks: IndexMap::new(),
            path: None,
        };
        let mut positions = graph::Positions::default();
        for (key, value) in root.into_inner() {
            let key_span = key.span();
            match key.get_ref().as_ref() {
                "api" => cfg.api = errs.deserialize(value, "[api]"),
                "global" => {
                    if let Some(g) = errs.deserialize(value, "[global]") {
                        cfg.global = g;
                    }
                }
                "sources" => {
                    for (id, table, _) in errs.components(value, "sources", false) {
                        positions.insert(&id, Vec::new());
                        match errs.component::<C::Source>(&table, &id) {
                            Some(c) => {
                                cfg.sources.insert(id.get_ref().clone(), c);
                            }
                            None => positions.failed(&id, Kind::Source),
                        }
                    }
                }
                "transforms" => {
                    for (id, table, inputs) in errs.components(value, "transforms", true) {
                        let ins = inputs.iter().map(|i| i.get_ref().clone()).collect();
                        positions.insert(&id, inputs);
                        match errs.component::<C::Transform>(&table, &id) {
                            Some(c) => {
                                cfg.transforms
                                    .insert(id.get_ref().clone(), Node { inputs: ins, inner: c });
                            }
                            None => positions.failed(&id, Kind::Transform),
                        }
                    }
                }
                "sinks" => {
                    for (id, table, inputs) in errs.components(value, "sinks", true) {
                        let ins = inputs.iter().map(|i| i.get_ref().clone()).collect();
                        positions.insert(&id, inputs);
                        match errs.component::<C::Sink>(&table, &id) {
                            Some(c) => {
                                cfg.sinks.insert(id.get_ref().clone(), Node { inputs: ins, inner: c });
                            }
                            None => positions.failed(&id, Kind::Sink),
                        }
                    }
                }
                other => errs.push(
                    key_span,
                    format!("unknown key `{other}`, expected one of `api`, `global`, `sources`, `transforms`, `sinks`"),
                ),
            }
        }
        if cfg.global.channel_capacity == 0 {
            errs.push(root_span.clone(), "`global.channel_capacity` must be at least 1".into());
        }
        for (span, msg) in graph::check(&cfg, &positions) {
            errs.push(span.unwrap_or(0..0), msg);
        }
        if errs.list.is_empty() {
            Ok(cfg)
        } else {
            Err(errs.finish())
        }
    }

    /// Directory of the config file, if loaded from one.
    pub fn dir(&self) -> Option<PathBuf> {
        self.path.as_ref().and_then(|p| p.parent().map(Path::to_path_buf))
    }

    /// Ids of every component, with kind and type, in declaration order.
    pub fn components(&self) -> Vec<(Arc<str>, Kind, &'static str)> {
        let mut v = Vec::new();
        v.extend(
            self.sources
                .iter()
                .map(|(id, c)| (id.clone(), Kind::Source, c.type_name())),
        );
        v.extend(
            self.transforms
                .iter()
                .map(|(id, c)| (id.clone(), Kind::Transform, c.inner.type_name())),
        );
        v.extend(
            self.sinks
                .iter()
                .map(|(id, c)| (id.clone(), Kind::Sink, c.inner.type_name())),
        );
        v
    }
}

/// Collects errors and maps expanded-text spans to original positions.
struct Errors<'a> {
    file: &'a str,
    original: &'a str,
    map: interpolate::OffsetMap,
    list: Vec<(usize, String)>,
}

type ComponentEntry<'i> = (Spanned<Arc<str>>, Spanned<DeValue<'i>>, Vec<Spanned<Arc<str>>>);

impl<'a> Errors<'a> {
    fn push(&mut self, span: Range<usize>, message: String) {
        let off = self.map.to_original(span.start);
        self.list.push((off, message));
    }

    fn push_original(&mut self, offset: usize, message: String) {
        self.list.push((offset, message));
    }

    fn push_toml(&mut self, e: &toml::de::Error, context: Option<&str>) {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim_end().to_string();
        let msg = match context {
            Some(c) => format!("{c}: {msg}"),
            None => msg,
        };
        self.push(span, msg);
    }

    fn deserialize<T: DeserializeOwned>(&mut self, value: Spanned<DeValue<'_>>, context: &str) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.push_toml(&e, Some(context));
                None
            }
        }
    }

    /// The tables under `[sources]` etc., with `inputs` taken out (and checked).
    fn components<'i>(
        &mut self,
        section: Spanned<DeValue<'i>>,
        name: &str,
        has_inputs: bool,
    ) -> Vec<ComponentEntry<'i>> {
        let span = section.span();
        let DeValue::Table(table) = section.into_inner() else {
            self.push(span, format!("`{name}` must be a table of components"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, value) in table {
            let id_span = id.span();
            let id_str: Arc<str> = Arc::from(id.get_ref().as_ref());
            if id_str.is_empty()
                || !id_str
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                self.push(
                    id_span.clone(),
                    format!("invalid component id `{id_str}`: use letters, digits, `_` and `-`"),
                );
            }
            let vspan = value.span();
            let DeValue::Table(mut t) = value.into_inner() else {
                self.push(vspan, format!("`{name}.{id_str}` must be a table"));
                continue;
            };
            let mut inputs = Vec::new();
            match t.remove("inputs") {
                Some(v) if has_inputs => {
                    let s = v.span();
                    match v.into_inner() {
                        DeValue::Array(items) => {
                            for item in items.iter() {
                                match item.get_ref() {
                                    DeValue::String(s) => inputs.push(Spanned::new(item.span(), Arc::from(s.as_ref()))),
                                    _ => self.push(item.span(), "`inputs` must contain component ids (strings)".into()),
                                }
                            }
                            if items.is_empty() {
                                self.push(s, format!("`{name}.{id_str}.inputs` is empty"));
                            }
                        }
                        _ => self.push(s, "`inputs` must be an array of component ids".into()),
                    }
                }
                Some(v) => self.push(v.span(), "sources have no `inputs`".into()),
                None if has_inputs => {
                    self.push(vspan.clone(), format!("`{name}.{id_str}` is missing `inputs`"));
                }
                None => {}
            }
            out.push((
                Spanned::new(id_span, id_str),
                Spanned::new(vspan, DeValue::Table(t)),
                inputs,
            ));
        }
        out
    }

    /// Deserialise one component and run its own value checks.
    ///
    /// The closed enum of component types is deserialised *externally* tagged from
    /// `{ <type> = <table without type> }`: serde's internally tagged enums buffer the
    /// table and lose every position, while this keeps them.
    fn component<T: ComponentConfig>(&mut self, table: &Spanned<DeValue<'_>>, id: &Spanned<Arc<str>>) -> Option<T> {
        let ctx = format!("component `{}`", id.get_ref());
        let DeValue::Table(t) = table.get_ref() else {
            return None;
        };
        let mut inner = t.clone();
        let (type_name, type_span) = match inner.remove("type") {
            Some(v) => {
                let span = v.span();
                match v.into_inner() {
                    DeValue::String(s) => (s, span),
                    _ => {
                        self.push(span, format!("{ctx}: `type` must be a string"));
                        return None;
                    }
                }
            }
            None => {
                self.push(id.span(), format!("{ctx}: missing field `type`"));
                return None;
            }
        };
        let mut tagged = DeTable::new();
        tagged.insert(
            Spanned::new(type_span.clone(), type_name.clone()),
            Spanned::new(table.span(), DeValue::Table(inner)),
        );
        let c: T = match T::deserialize(ValueDeserializer::from(Spanned::new(
            table.span(),
            DeValue::Table(tagged),
        ))) {
            Ok(c) => c,
            Err(e) => {
                let mut msg = e.message().trim_end().to_string();
                let mut span = e.span().unwrap_or_else(|| table.span());
                // Only the outer enum's miss is about `type`; an option's enum value keeps its own position.
                let at_type = e.span().is_none_or(|s| s == type_span || s == table.span());
                if at_type && msg.starts_with(&format!("unknown variant `{type_name}`")) {
                    msg = msg.replacen("unknown variant", "unknown component type", 1);
                    span = type_span;
                }
                self.push(span, format!("{ctx}: {msg}"));
                return None;
            }
        };
        let problems = c.validate();
        let ok = problems.is_empty();
        for p in problems {
            let span = p
                .key
                .as_deref()
                .and_then(|k| value_span(table, k))
                .map(|s| match p.offset {
                    // Inside a string: skip the opening quote(s).
                    Some(o) => {
                        let q = quote_len(&self.map, self.original, s.start);
                        let at = s.start + q + o;
                        at..at
                    }
                    None => s,
                })
                .unwrap_or_else(|| id.span());
            let key = p.key.map(|k| format!("`{k}`: ")).unwrap_or_default();
            self.push(span, format!("{ctx}: {key}{}", p.message));
        }
        ok.then_some(c)
    }

    fn finish(mut self) -> ConfigErrors {
        self.list.sort_by_key(|(o, _)| *o);
        ConfigErrors(
            self.list
                .into_iter()
                .map(|(off, message)| {
                    let (line, column) = line_col(self.original, off);
                    ConfigError {
                        file: self.file.to_string(),
                        line,
                        column,
                        message,
                    }
                })
                .collect(),
        )
    }
}

/// Length of the quote that opens the string at `start`: 1, or 3 for multi-line strings
/// (plus the newline TOML trims right after `"""`/`'''`).
fn quote_len(map: &interpolate::OffsetMap, original: &str, start: usize) -> usize {
    let o = map.to_original(start);
    let rest = original.get(o..).unwrap_or("");
    if rest.starts_with("\"\"\"") || rest.starts_with("'''") {
        if rest[3..].starts_with("\r\n") {
            5
        } else if rest[3..].starts_with('\n') {
            4
        } else {
            3
        }
    } else {
        1
    }
}

/// Span of the value at dotted `path` inside a table.
fn value_span(table: &Spanned<DeValue<'_>>, path: &str) -> Option<Range<usize>> {
    let mut cur = table;
    for part in path.split('.') {
        let DeValue::Table(t) = cur.get_ref() else { return None };
        cur = t.get(part)?;
    }
    Some(cur.span())
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
    }
}
