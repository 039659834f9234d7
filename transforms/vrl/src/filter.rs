//! `filter`: keep the records for which a VRL condition is true.

use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event};
use perisco_engine::metrics::ComponentMetrics;
use serde::Deserialize;
use vrl::compiler::runtime::Terminate;
use vrl::value::Value;

use crate::convert::{self, Selection};
use crate::patching;
use crate::program::{self, ErrorLog, Expect, Runner};

/// `type = "filter"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A VRL expression of type boolean, e.g. `.l7.response.http.code >= 500`.
    pub condition: String,
}

impl ComponentConfig for FilterConfig {
    fn type_name(&self) -> &'static str {
        "filter"
    }

    fn validate(&self) -> Vec<ValueError> {
        match program::compile(&self.condition, Expect::Boolean) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.into_value_error("condition")],
        }
    }
}

impl TransformConfig for FilterConfig {
    fn accepts(&self, input: DataType) -> bool {
        input == DataType::Record
    }

    fn output(&self) -> DataType {
        DataType::Record
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        Ok(Box::new(Filter::new(self, cx.id.clone(), cx.metrics.clone())?))
    }
}

/// The runtime filter. Records pass unchanged (the typed record is never converted back).
pub struct Filter {
    runner: Runner,
    /// Only the paths the condition reads are converted to VRL.
    selection: Selection,
    metrics: ComponentMetrics,
    errors: ErrorLog,
}

impl Filter {
    pub fn new(
        config: &FilterConfig,
        id: std::sync::Arc<str>,
        metrics: ComponentMetrics,
    ) -> Result<Self, program::CompileError> {
        let program = program::compile(&config.condition, Expect::Boolean)?;
        let selection = Selection::from_queries(&program.info().target_queries);
        Ok(Filter {
            runner: Runner::new(program),
            selection,
            metrics,
            errors: ErrorLog::new(id),
        })
    }

    /// Convert whole events, not just the paths the condition reads (for tests and
    /// benchmarks that measure what pruning saves).
    pub fn converting_everything(mut self) -> Self {
        self.selection = Selection::All;
        self
    }

    /// The condition on one event: `Ok(true)` keeps it, `Ok(false)` drops it, `Err` is a
    /// runtime error (the event is dropped too: a broken condition must not let
    /// everything through).
    pub fn evaluate(&mut self, event: &Event) -> Result<bool, String> {
        let value = match event {
            Event::Record(r) => convert::to_vrl(r, &self.selection).map_err(|e| e.to_string())?,
            Event::Patched(p) => patching::patched_to_vrl(p, &self.selection).map_err(|e| e.to_string())?,
            Event::Document(d) => Value::Object(convert::map_ref_to_vrl(d, &self.selection)),
            other => return Err(format!("filter expects records, got {}", other.data_type())),
        };
        match self.runner.run(value).0 {
            Ok(Value::Boolean(b)) => Ok(b),
            // `abort` in a condition means "not this one", as in Vector.
            Err(Terminate::Abort(_)) => Ok(false),
            Ok(other) => Err(format!("the condition returned {} instead of a boolean", other.kind())),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl FunctionTransform for Filter {
    fn transform(&mut self, event: Event, out: &mut Vec<Event>) {
        match self.evaluate(&event) {
            Ok(true) => out.push(event),
            Ok(false) => self.metrics.discarded.inc(),
            Err(e) => {
                self.metrics.errors.inc();
                self.metrics.discarded.inc();
                self.errors.report("filter condition failed; event dropped", &e);
            }
        }
    }
}
