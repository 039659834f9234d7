//! Compiling VRL programs and running them on one event.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use perisco_engine::ValueError;
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{CompileConfig, Function, Program, TargetValue, TimeZone, TypeState};
use vrl::diagnostic::{DiagnosticList, Formatter};
use vrl::value::{ObjectMap, Secrets, Value};

/// The VRL functions available to programs (the `stdlib-base` set, see docs/vrl.md),
/// built once per process.
pub(crate) static FUNCTIONS: LazyLock<Vec<Box<dyn Function>>> = LazyLock::new(vrl::stdlib::all);

/// What a program must evaluate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A filter condition: the program's type must be exactly boolean.
    Boolean,
    /// A remap: anything (the result is the modified event, not the last value).
    Any,
}

/// A VRL compile error: VRL's own diagnostic text and the byte offset, inside the
/// program source, of the first error's primary label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub offset: Option<usize>,
    pub message: String,
}

impl CompileError {
    /// As a config problem of `key` (the engine turns key + offset into file:line:col).
    pub fn into_value_error(self, key: &str) -> ValueError {
        ValueError {
            key: Some(key.to_owned()),
            offset: self.offset,
            message: self.message,
        }
    }
}

/// VRL's code for "unhandled error": an expression that can fail is not handled.
const UNHANDLED_FALLIBLE: usize = 100;

/// Compile `source`; warnings are not errors.
///
/// Filter conditions get one leniency: VRL types `.l7.response.http.code >= 500` as
/// fallible (the code could be absent or a string) and rejects it as "unhandled error".
/// When every compile error is such an ordering comparison (`<`, `<=`, `>`, `>=`), each one
/// is compiled as `(comparison) ?? false`: incomparable values make that comparison false,
/// as `==` on an absent field already is, and the rest of the condition still counts
/// (`.l7.response.http.code >= 500 || !exists(.l7.response)`). Everything else stays strict.
pub fn compile(source: &str, expect: Expect) -> Result<Program, CompileError> {
    let program = match compile_plain(source) {
        Ok(p) => p,
        Err(diags) => match (expect, lenient_comparisons(source, &diags)) {
            // If the rewritten text fails too, the user's own diagnostics (with their offsets) say why.
            (Expect::Boolean, Some(rewritten)) => {
                compile_plain(&rewritten).map_err(|_| diagnostic_error(source, diags))?
            }
            _ => return Err(diagnostic_error(source, diags)),
        },
    };
    if expect == Expect::Boolean {
        let kind = program.final_type_info().result;
        if !kind.is_boolean() {
            return Err(CompileError {
                offset: Some(0),
                message: format!(
                    "a filter condition must return a boolean, but this one can return {}; \
                     compare or coerce it, e.g. `to_bool(...) ?? false`",
                    kind.kind()
                ),
            });
        }
    }
    Ok(program)
}

fn compile_plain(source: &str) -> Result<Program, DiagnosticList> {
    let state = TypeState::default();
    vrl::compiler::compile_with_state(source, &FUNCTIONS, &state, CompileConfig::default()).map(|r| r.program)
}

/// `source` with each unhandled ordering comparison wrapped in `(...) ?? false`, when those
/// are the only errors; `None` otherwise.
fn lenient_comparisons(source: &str, diags: &DiagnosticList) -> Option<String> {
    let errors = diags.errors();
    if errors.is_empty() {
        return None;
    }
    let mut spans = Vec::new();
    for d in errors {
        if d.code != UNHANDLED_FALLIBLE {
            return None;
        }
        let span = d.labels().iter().find(|l| l.primary)?.span;
        if !is_ordering_comparison(source.get(span.start()..span.end())?) {
            return None;
        }
        spans.push((span.start(), span.end()));
    }
    spans.sort_unstable();
    spans.dedup();
    let mut out = String::with_capacity(source.len() + 16 * spans.len());
    let mut pos = 0;
    for (start, end) in spans {
        if start < pos {
            return None;
        }
        out.push_str(&source[pos..start]);
        out.push_str("((");
        out.push_str(&source[start..end]);
        out.push_str(") ?? false)");
        pos = end;
    }
    out.push_str(&source[pos..]);
    Some(out)
}

fn is_ordering_comparison(text: &str) -> bool {
    use vrl::parser::ast::{Expr, Opcode, RootExpr};
    let Ok(program) = vrl::parser::parse(text) else {
        return false;
    };
    match program.0.as_slice() {
        [root] => matches!(
            root.inner(),
            RootExpr::Expr(e) if matches!(e.inner(), Expr::Op(op) if matches!(op.inner().1.inner(), Opcode::Lt | Opcode::Le | Opcode::Gt | Opcode::Ge))
        ),
        _ => false,
    }
}

fn diagnostic_error(source: &str, diags: DiagnosticList) -> CompileError {
    let first = diags.errors().into_iter().next().or_else(|| diags.iter().next());
    let offset = first.and_then(|d| {
        let labels = d.labels();
        labels
            .iter()
            .find(|l| l.primary)
            .or(labels.first())
            .map(|l| l.span.start())
    });
    // Uncoloured: the text goes to terminals, log files and reload errors alike.
    let text = Formatter::new(source, diags).to_string();
    CompileError {
        offset,
        message: text.trim().to_owned(),
    }
}

/// 1-based line and column of a byte offset in `text` (for programs read from a file).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A compiled program with its runtime, run on one event at a time.
pub struct Runner {
    program: Program,
    runtime: Runtime,
    timezone: TimeZone,
}

impl Runner {
    pub fn new(program: Program) -> Self {
        // UTC, not the node's local zone: the same program gives the same result on every node.
        let timezone = TimeZone::parse("UTC").unwrap_or_default();
        Runner {
            program,
            runtime: Runtime::default(),
            timezone,
        }
    }

    /// Run the program on `value` (the event); returns the program's result and the
    /// event as the program left it.
    pub fn run(&mut self, value: Value) -> (Result<Value, Terminate>, Value) {
        let mut target = TargetValue {
            value,
            metadata: Value::Object(ObjectMap::new()),
            secrets: Secrets::new(),
        };
        let result = self.runtime.resolve(&mut target, &self.program, &self.timezone);
        // Local variables must not leak from one event into the next.
        self.runtime.clear();
        (result, target.value)
    }
}

/// Logs runtime errors at most once per interval, with how many were not logged.
pub struct ErrorLog {
    component: std::sync::Arc<str>,
    next: Option<Instant>,
    suppressed: u64,
}

const LOG_INTERVAL: Duration = Duration::from_secs(10);

impl ErrorLog {
    pub fn new(component: std::sync::Arc<str>) -> Self {
        ErrorLog {
            component,
            next: None,
            suppressed: 0,
        }
    }

    pub fn report(&mut self, what: &str, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        if self.next.is_some_and(|n| now < n) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            component = %self.component,
            error = %error,
            suppressed_since_last = self.suppressed,
            "{what} (logged at most every {}s; all are counted in perisco_component_errors_total)",
            LOG_INTERVAL.as_secs()
        );
        self.suppressed = 0;
        self.next = Some(now + LOG_INTERVAL);
    }
}
