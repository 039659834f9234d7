//! `remap`: reshape records with a VRL program.

use std::path::{Path, PathBuf};

use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event, Patch, PatchedRecord, Record};
use perisco_engine::metrics::ComponentMetrics;
use serde::Deserialize;
use vrl::compiler::runtime::Terminate;
use vrl::value::Value;

use crate::convert::{self, Selection};
use crate::patching;
use crate::plan::Plan;
use crate::program::{self, CompileError, ErrorLog, Expect, Runner};

/// `type = "remap"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemapConfig {
    /// The VRL program, inline.
    #[serde(default)]
    pub source: Option<String>,
    /// Or a file holding it, relative to the config file's directory.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// On a runtime error: drop the event (true) or pass the original on unchanged (false).
    #[serde(default)]
    pub drop_on_error: bool,
    /// On `abort`: drop the event (true) or pass the original on unchanged (false).
    #[serde(default = "default_true")]
    pub drop_on_abort: bool,
}

fn default_true() -> bool {
    true
}

impl RemapConfig {
    /// The program text and where it came from, reading `file` relative to `dir`.
    fn load(&self, dir: impl Fn(&Path) -> PathBuf) -> Result<(String, Option<PathBuf>), String> {
        match (&self.source, &self.file) {
            (Some(s), None) => Ok((s.clone(), None)),
            (None, Some(f)) => {
                let path = dir(f);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read VRL program {}: {e}", path.display()))?;
                Ok((text, Some(path)))
            }
            _ => Err("set exactly one of `source` (the program) or `file` (a path to it)".into()),
        }
    }
}

/// A compile error of a program read from a file: position inside that file.
fn file_error(path: &Path, text: &str, e: CompileError) -> String {
    let (line, col) = program::line_col(text, e.offset.unwrap_or(0));
    format!("{}:{line}:{col}: {}", path.display(), e.message)
}

impl ComponentConfig for RemapConfig {
    fn type_name(&self) -> &'static str {
        "remap"
    }

    fn validate(&self) -> Vec<ValueError> {
        if let (None, Some(f)) = (&self.source, &self.file)
            && f.is_relative()
        {
            // Relative to the config's directory, which only build() knows: compiled there
            // (so a broken file still fails start-up and leaves a reload untouched).
            return Vec::new();
        }
        let (text, path) = match self.load(Path::to_path_buf) {
            Ok(t) => t,
            Err(e) => {
                let key = if self.file.is_some() && self.source.is_none() {
                    Some("file".into())
                } else {
                    None
                };
                return vec![ValueError {
                    key,
                    offset: None,
                    message: e,
                }];
            }
        };
        match (program::compile(&text, Expect::Any), path) {
            (Ok(_), _) => Vec::new(),
            (Err(e), None) => vec![e.into_value_error("source")],
            (Err(e), Some(p)) => vec![ValueError::at("file", file_error(&p, &text, e))],
        }
    }
}

impl TransformConfig for RemapConfig {
    fn accepts(&self, input: DataType) -> bool {
        input == DataType::Record
    }

    fn output(&self) -> DataType {
        DataType::Record
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        let (text, path) = self.load(|p| cx.resolve_path(p))?;
        let remap = Remap::new(self, &text, cx.id.clone(), cx.metrics.clone()).map_err(|e| match &path {
            Some(p) => file_error(p, &text, e),
            None => e.message,
        })?;
        if let Plan::WholeEvent { reason } = &remap.plan {
            tracing::info!(component = %cx.id, "remap converts whole records: {reason}");
        }
        Ok(Box::new(remap))
    }
}

/// The runtime remap. A program whose changes are bounded ([`Plan::Patch`]) runs on the
/// fields it reads and changes, and a typed record comes out as the record plus a patch
/// ([`Event::Patched`]); otherwise the whole event is converted and comes out as an
/// [`Event::Document`].
pub struct Remap {
    runner: Runner,
    plan: Plan,
    drop_on_error: bool,
    drop_on_abort: bool,
    /// True when a failing or aborting run must pass the original event on, so a
    /// document input has to be copied, not moved, into VRL.
    keep_original: bool,
    metrics: ComponentMetrics,
    errors: ErrorLog,
}

/// What one run produced.
#[derive(Debug)]
pub enum Outcome {
    /// The program's version of the event.
    Event(Event),
    /// Several events (the program set `.` to an array of objects).
    Events(Vec<Event>),
    /// The original event, unchanged (error or abort, with drop_on_* = false).
    Original(Event),
    /// Dropped on abort.
    Aborted,
    /// Dropped on error.
    Failed(String),
    /// Passed on unchanged after an error.
    FailedKept(String, Event),
}

/// A typed input of the patch path.
enum Typed {
    Record(Box<Record>),
    Patched(Box<PatchedRecord>),
}

impl Typed {
    fn into_event(self) -> Event {
        match self {
            Typed::Record(r) => Event::Record(r),
            Typed::Patched(p) => Event::Patched(p),
        }
    }
}

impl Remap {
    /// Compile `source` (the program text) for `config`.
    pub fn new(
        config: &RemapConfig,
        source: &str,
        id: std::sync::Arc<str>,
        metrics: ComponentMetrics,
    ) -> Result<Self, CompileError> {
        let program = program::compile(source, Expect::Any)?;
        let plan = Plan::of(source, &program);
        let info = program.info();
        let keep_original = (info.fallible && !config.drop_on_error) || (info.abortable && !config.drop_on_abort);
        Ok(Remap {
            runner: Runner::new(program),
            plan,
            drop_on_error: config.drop_on_error,
            drop_on_abort: config.drop_on_abort,
            keep_original,
            metrics,
            errors: ErrorLog::new(id),
        })
    }

    /// Always convert the whole event and emit documents, as programs that cannot be
    /// bounded do (for tests and benchmarks that compare the two paths).
    pub fn whole_event(mut self) -> Self {
        self.plan = Plan::WholeEvent {
            reason: "asked for".into(),
        };
        self
    }

    /// How this remap runs its program.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Run the program on one event.
    pub fn process(&mut self, event: Event) -> Outcome {
        match (event, &self.plan) {
            (Event::Record(r), Plan::Patch(_)) => self.process_typed(Typed::Record(r)),
            (Event::Patched(p), Plan::Patch(_)) => self.process_typed(Typed::Patched(p)),
            (event, _) => self.process_whole(event),
        }
    }

    /// The patch path: convert the selection, run, read the touched paths back. The
    /// input is only borrowed, so on error or abort it goes on as it came.
    fn process_typed(&mut self, input: Typed) -> Outcome {
        let Plan::Patch(plan) = &self.plan else {
            return self.process_whole(input.into_event());
        };
        let converted = match &input {
            Typed::Record(r) => convert::to_vrl(&**r, &plan.selection),
            Typed::Patched(p) => patching::patched_to_vrl(p, &plan.selection),
        };
        let value = match converted {
            Ok(v) => v,
            Err(e) => return self.failed(e.to_string(), Some(input.into_event())),
        };
        match self.runner.run(value) {
            (Ok(_), Value::Object(root)) => {
                let event = match input {
                    Typed::Record(r) => {
                        let mut patch = Patch::default();
                        patching::record_changes(&root, plan.changed_paths(), &mut patch);
                        if patch.is_empty() {
                            Event::Record(r)
                        } else {
                            Event::Patched(Box::new(PatchedRecord { record: *r, patch }))
                        }
                    }
                    Typed::Patched(mut p) => {
                        patching::record_changes(&root, plan.changed_paths(), &mut p.patch);
                        Event::Patched(p)
                    }
                };
                Outcome::Event(event)
            }
            // Not reachable for a program that does not assign `.`; kept safe anyway.
            (Ok(_), other) => self.failed(
                format!("the event became {}, but an event must be an object", other.kind()),
                Some(input.into_event()),
            ),
            (Err(e), _) => self.terminated(e, Some(input.into_event())),
        }
    }

    /// The whole-event path: every field converted, the result emitted as a document.
    fn process_whole(&mut self, event: Event) -> Outcome {
        let (value, original) = match event {
            Event::Record(r) => match convert::to_vrl(&*r, &Selection::All) {
                Ok(v) => (v, Some(Event::Record(r))),
                Err(e) => return self.failed(e.to_string(), Some(Event::Record(r))),
            },
            Event::Patched(p) => match patching::patched_to_vrl(&p, &Selection::All) {
                Ok(v) => (v, Some(Event::Patched(p))),
                Err(e) => return self.failed(e.to_string(), Some(Event::Patched(p))),
            },
            Event::Document(d) if self.keep_original => (
                Value::Object(convert::map_ref_to_vrl(&d, &Selection::All)),
                Some(Event::Document(d)),
            ),
            Event::Document(d) => (convert::json_to_vrl(serde_json::Value::Object(*d)), None),
            other => return Outcome::Failed(format!("remap expects records, got {}", other.data_type())),
        };
        match self.runner.run(value) {
            (Ok(_), root) => self.emit(root, original),
            (Err(e), _) => self.terminated(e, original),
        }
    }

    /// An aborted or failed run.
    fn terminated(&self, e: Terminate, original: Option<Event>) -> Outcome {
        match e {
            Terminate::Abort(_) if self.drop_on_abort => Outcome::Aborted,
            Terminate::Abort(_) => match original {
                Some(o) => Outcome::Original(o),
                None => Outcome::Aborted,
            },
            e => self.failed(e.to_string(), original),
        }
    }

    fn failed(&self, error: String, original: Option<Event>) -> Outcome {
        match original {
            Some(o) if !self.drop_on_error => Outcome::FailedKept(error, o),
            _ => Outcome::Failed(error),
        }
    }

    /// The event as the program left it: an object, or an array of objects (one event each).
    fn emit(&self, root: Value, original: Option<Event>) -> Outcome {
        match root {
            Value::Object(m) => Outcome::Event(Event::Document(Box::new(convert::object_to_json(m)))),
            Value::Array(items) if items.iter().all(|v| matches!(v, Value::Object(_))) => Outcome::Events(
                items
                    .into_iter()
                    .filter_map(|v| match v {
                        Value::Object(m) => Some(Event::Document(Box::new(convert::object_to_json(m)))),
                        _ => None,
                    })
                    .collect(),
            ),
            other => {
                let e = format!(
                    "the program set `.` to {}, but an event must be an object",
                    other.kind()
                );
                self.failed(e, original)
            }
        }
    }
}

impl FunctionTransform for Remap {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>) {
        match self.process(event) {
            Outcome::Event(e) => out.push(e),
            Outcome::Events(events) => out.extend(events),
            Outcome::Original(e) => out.push(e),
            Outcome::Aborted => self.metrics.discarded.inc(),
            Outcome::Failed(e) => {
                self.metrics.errors.inc();
                self.metrics.discarded.inc();
                self.errors.report("remap failed; event dropped", &e);
            }
            Outcome::FailedKept(e, original) => {
                self.metrics.errors.inc();
                self.errors.report("remap failed; event passed on unchanged", &e);
                out.push(original);
            }
        }
    }
}
