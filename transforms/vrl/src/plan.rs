//! What a remap program can touch, worked out once at compile time.
//!
//! A program that changes a few fields is run on the fields it reads and changes only,
//! and its effect is kept as a [`Patch`](perisco_engine::event::Patch) beside the typed
//! record. That is only right if every field the program may change is known before it
//! runs: the paths it assigns (VRL's `target_assignments`) and the paths it deletes
//! (`del(...)` calls, found in the parsed program: VRL lists their argument among the
//! reads). Anything that cannot be bounded statically (the root `.` read or written,
//! `get`, a mutating function this code does not know) sends the program down the
//! whole-event path instead.

use vrl::compiler::Program;
use vrl::parser::ast::{self, Expr};
use vrl::path::{OwnedSegment, OwnedTargetPath, OwnedValuePath, PathPrefix};

use crate::convert::Selection;

/// How `remap` runs a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Convert the whole event and emit the program's result as a document.
    WholeEvent {
        /// Why the program cannot be bounded (for logs and tests).
        reason: String,
    },
    /// Convert `selection`, run, and record the final value of each touched path.
    Patch(PatchPlan),
}

/// The fields a bounded program reads and may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPlan {
    /// What is converted to VRL: the reads, plus every touched path whole.
    pub selection: Selection,
    /// Outermost paths (field names only) that the program may assign or delete, whose
    /// final value is read back after the run.
    pub touched: Vec<Vec<String>>,
    /// Touched paths that are only ever deleted, unconditionally and without their value
    /// being used (`del(.l7.request.http.headers)` as a statement): only their parent
    /// objects are converted (empty, to see whether they exist), not the value.
    pub deleted: Vec<Vec<String>>,
}

impl PatchPlan {
    /// Every touched path, whose final state goes into the patch.
    pub fn changed_paths(&self) -> impl Iterator<Item = &Vec<String>> {
        self.touched.iter().chain(&self.deleted)
    }
}

/// Functions that are not pure but leave the event alone (they log or fail).
const IMPURE_BUT_HARMLESS: &[&str] = &["assert", "assert_eq", "log"];

impl Plan {
    /// The plan for `program`, compiled from `source`.
    pub fn of(source: &str, program: &Program) -> Plan {
        match PatchPlan::build(source, program) {
            Ok(p) => Plan::Patch(p),
            Err(reason) => Plan::WholeEvent { reason },
        }
    }
}

impl PatchPlan {
    fn build(source: &str, program: &Program) -> Result<PatchPlan, String> {
        let info = program.info();
        let ast = vrl::parser::parse(source).map_err(|_| "the program does not parse on its own".to_owned())?;
        let found = Walker::walk(ast)?;

        let impure: Vec<&str> = crate::program::FUNCTIONS
            .iter()
            .filter(|f| !f.pure())
            .map(|f| f.identifier())
            .filter(|name| *name != "del" && !IMPURE_BUT_HARMLESS.contains(name))
            .collect();
        if let Some(name) = found.calls.iter().find(|c| impure.contains(&c.as_str())) {
            return Err(format!("it calls `{name}`, which may change the event"));
        }

        let reads: Vec<&OwnedValuePath> = event_paths(&info.target_queries).collect();
        if reads.iter().any(|p| p.segments.is_empty()) {
            return Err("it reads the whole event (`.`, `get`)".into());
        }

        let mut touched = Vec::new();
        for path in event_paths(&info.target_assignments) {
            touched.push(fields_before_index(path).ok_or("it assigns the whole event (`. = ...`)")?);
        }
        for del in &found.dels {
            let mut path = fields_before_index(&del.path).ok_or("it deletes the whole event (`del(.)`)")?;
            // `compact` removes emptied parents up to the top-level field: that field may change.
            if del.compact {
                path.truncate(1);
            }
            touched.push(path);
        }
        let touched = outermost(touched);

        let (deleted, touched): (Vec<_>, Vec<_>) = touched
            .into_iter()
            .partition(|p| only_deleted(p, &found, &info.target_queries, &info.target_assignments));

        let mut selection = Selection::none();
        for read in reads.iter().filter(|r| !deleted.iter().any(|d| starts_with(r, d))) {
            selection.add_path(read);
        }
        for path in &touched {
            selection.add_fields(path);
        }
        for path in &deleted {
            selection.add_parents(path);
        }
        Ok(PatchPlan {
            selection,
            touched,
            deleted,
        })
    }
}

fn event_paths(paths: &[OwnedTargetPath]) -> impl Iterator<Item = &OwnedValuePath> {
    paths.iter().filter(|p| p.prefix == PathPrefix::Event).map(|p| &p.path)
}

/// The field names of `path` up to its first array index (a write into an array
/// changes the array); `None` when that leaves nothing (the root).
fn fields_before_index(path: &OwnedValuePath) -> Option<Vec<String>> {
    let fields: Vec<String> = path
        .segments
        .iter()
        .map_while(|s| match s {
            OwnedSegment::Field(f) => Some(f.as_str().to_owned()),
            OwnedSegment::Index(_) => None,
        })
        .collect();
    (!fields.is_empty()).then_some(fields)
}

/// Drop the paths that lie inside another one (and duplicates), keeping first-seen order.
fn outermost(paths: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for p in paths {
        if out.iter().any(|o| p.starts_with(o)) {
            continue;
        }
        out.retain(|o| !o.starts_with(&p));
        out.push(p);
    }
    out
}

/// Whether query `path` is at or below the field path `prefix`.
fn starts_with(path: &OwnedValuePath, prefix: &[String]) -> bool {
    path.segments.len() >= prefix.len()
        && path
            .segments
            .iter()
            .zip(prefix)
            .all(|(s, p)| matches!(s, OwnedSegment::Field(f) if f.as_str() == p))
}

/// True when touched path `p` is changed only by root-level `del(p)` statements, nothing
/// reads it or below it, and the program has no `return` that could skip those
/// statements: its final state is "deleted" whatever the record holds, so it need not be
/// converted. VRL's own query list must agree with the parse (every query at or below
/// `p` is one of those `del` arguments), or the path is treated like any other.
fn only_deleted(p: &[String], found: &Found, queries: &[OwnedTargetPath], assignments: &[OwnedTargetPath]) -> bool {
    if found.has_return {
        return false;
    }
    let is_p = |path: &OwnedValuePath| path.segments.len() == p.len() && starts_with(path, p);
    let dels_below = found
        .dels
        .iter()
        .filter(|d| starts_with(&d.path, p) || p.starts_with(&d.path_fields()))
        .collect::<Vec<_>>();
    let all_plain_statements =
        !dels_below.is_empty() && dels_below.iter().all(|d| d.statement && !d.compact && is_p(&d.path));
    let assigned = event_paths(assignments).any(|a| starts_with(a, p) || p.starts_with(&path_fields(a)));
    let reads_below = event_paths(queries).filter(|q| starts_with(q, p)).count();
    let parsed_reads_below = found.event_queries.iter().filter(|q| starts_with(q, p)).count();
    all_plain_statements && !assigned && reads_below == dels_below.len() && parsed_reads_below == dels_below.len()
}

fn path_fields(path: &OwnedValuePath) -> Vec<String> {
    fields_before_index(path).unwrap_or_default()
}

/// A `del(...)` of an event path found in the program.
#[derive(Debug)]
struct Del {
    path: OwnedValuePath,
    compact: bool,
    /// A statement at the top level of the program (always runs unless the program
    /// aborts or fails, and its value is not used).
    statement: bool,
}

impl Del {
    fn path_fields(&self) -> Vec<String> {
        path_fields(&self.path)
    }
}

/// What the walk over the parsed program found.
#[derive(Debug, Default)]
struct Found {
    /// Every function called, by name.
    calls: Vec<String>,
    dels: Vec<Del>,
    /// Every query of an event path (`.a.b`), `del` arguments included.
    event_queries: Vec<OwnedValuePath>,
    has_return: bool,
}

/// Walks every expression of a parsed program (consuming it: the AST offers owned access).
struct Walker {
    found: Found,
}

impl Walker {
    fn walk(program: ast::Program) -> Result<Found, String> {
        let mut w = Walker {
            found: Found::default(),
        };
        for root in program.0 {
            match root.into_inner() {
                ast::RootExpr::Expr(e) => {
                    let e = e.into_inner();
                    if let Expr::FunctionCall(call) = e {
                        w.call(call.into_inner(), true);
                    } else {
                        w.expr(e);
                    }
                }
                ast::RootExpr::Error(_) => return Err("the program has a parse error".into()),
            }
        }
        Ok(w.found)
    }

    fn exprs(&mut self, exprs: impl IntoIterator<Item = ast::Node<Expr>>) {
        for e in exprs {
            self.expr(e.into_inner());
        }
    }

    fn expr(&mut self, e: Expr) {
        match e {
            Expr::Literal(_) | Expr::Variable(_) | Expr::Break(_) => {}
            Expr::Container(c) => self.container(c.into_inner()),
            Expr::IfStatement(i) => {
                let ast::IfStatement {
                    predicate,
                    if_node,
                    else_node,
                } = i.into_inner();
                match predicate.into_inner() {
                    ast::Predicate::One(e) => self.expr(e.into_inner()),
                    ast::Predicate::Many(es) => self.exprs(es),
                }
                self.exprs(if_node.into_inner());
                if let Some(b) = else_node {
                    self.exprs(b.into_inner());
                }
            }
            Expr::Op(op) => {
                let ast::Op(left, _, right) = op.into_inner();
                self.expr(left.into_inner());
                self.expr(right.into_inner());
            }
            Expr::Assignment(a) => match a.into_inner() {
                ast::Assignment::Single { target, expr, .. } => {
                    self.assignment_target(target.into_inner());
                    self.expr(expr.into_inner());
                }
                ast::Assignment::Infallible { ok, err, expr, .. } => {
                    self.assignment_target(ok.into_inner());
                    self.assignment_target(err.into_inner());
                    self.expr(expr.into_inner());
                }
            },
            Expr::Query(q) => self.query(q.into_inner()),
            Expr::FunctionCall(call) => self.call(call.into_inner(), false),
            Expr::Unary(u) => match u.into_inner() {
                ast::Unary::Not(not) => self.expr(not.into_inner().take().1.into_inner()),
            },
            Expr::Abort(a) => {
                if let Some(m) = a.into_inner().message {
                    self.expr(m.into_inner());
                }
            }
            Expr::Return(r) => {
                self.found.has_return = true;
                self.expr(r.into_inner().expr.into_inner());
            }
        }
    }

    fn container(&mut self, c: ast::Container) {
        match c {
            ast::Container::Group(g) => self.expr(g.into_inner().into_inner().into_inner()),
            ast::Container::Block(b) => self.exprs(b.into_inner()),
            ast::Container::Array(a) => self.exprs(a.into_inner()),
            ast::Container::Object(o) => self.exprs(o.into_inner().into_iter().map(|(_, v)| v)),
        }
    }

    fn assignment_target(&mut self, t: ast::AssignmentTarget) {
        match t {
            ast::AssignmentTarget::Query(q) => self.query(q),
            ast::AssignmentTarget::Noop | ast::AssignmentTarget::Internal(..) | ast::AssignmentTarget::External(_) => {}
        }
    }

    fn query(&mut self, q: ast::Query) {
        let ast::Query { target, path } = q;
        match target.into_inner() {
            ast::QueryTarget::External(PathPrefix::Event) => self.found.event_queries.push(path.into_inner()),
            ast::QueryTarget::External(PathPrefix::Metadata) | ast::QueryTarget::Internal(_) => {}
            ast::QueryTarget::FunctionCall(call) => self.call(call, false),
            ast::QueryTarget::Container(c) => self.container(c),
        }
    }

    fn call(&mut self, call: ast::FunctionCall, statement: bool) {
        let ast::FunctionCall {
            ident,
            arguments,
            closure,
            ..
        } = call;
        let name = ident.into_inner().into_inner();
        if name == "del" {
            self.del(&arguments, statement);
        }
        self.found.calls.push(name);
        for arg in arguments {
            self.expr(arg.into_inner().expr.into_inner());
        }
        if let Some(c) = closure {
            self.exprs(c.into_inner().block.into_inner());
        }
    }

    /// Record `del(target, compact)` when its target is an event path.
    fn del(&mut self, arguments: &[ast::Node<ast::FunctionArgument>], statement: bool) {
        let named = |name: &str| {
            arguments.iter().find(|a| {
                a.ident
                    .as_ref()
                    .is_some_and(|i| AsRef::<str>::as_ref(i.inner()) == name)
            })
        };
        let positional = |n: usize| arguments.iter().filter(|a| a.ident.is_none()).nth(n);
        let target = named("target").or_else(|| positional(0));
        let compact = named("compact").or_else(|| positional(1));
        let Some(Expr::Query(q)) = target.map(|a| a.expr.inner()) else {
            return;
        };
        if !matches!(q.target.inner(), ast::QueryTarget::External(PathPrefix::Event)) {
            return;
        }
        let compact = match compact.map(|a| a.expr.inner()) {
            None => false,
            Some(Expr::Literal(l)) => !matches!(l.inner(), ast::Literal::Boolean(false)),
            Some(_) => true,
        };
        self.found.dels.push(Del {
            path: q.path.inner().clone(),
            compact,
            statement,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::{Expect, compile};

    fn plan(source: &str) -> Plan {
        let program = compile(source, Expect::Any).unwrap_or_else(|e| panic!("{source}: {e}"));
        Plan::of(source, &program)
    }

    fn patch_plan(source: &str) -> PatchPlan {
        match plan(source) {
            Plan::Patch(p) => p,
            other => panic!("`{source}`: {other:?}"),
        }
    }

    fn paths(p: &[Vec<String>]) -> Vec<String> {
        p.iter().map(|p| p.join(".")).collect()
    }

    #[test]
    fn vrl_lists_a_del_argument_as_a_read_not_a_write() {
        // What the plan relies on: the AST walk is the only place deletes are found.
        let program = compile("del(.a.b)", Expect::Any).unwrap();
        let info = program.info();
        assert!(info.target_assignments.is_empty());
        assert_eq!(info.target_queries.len(), 1);
        assert_eq!(info.target_queries[0].to_string(), ".a.b");
    }

    #[test]
    fn touched_paths_stop_at_indexes_and_keep_the_outermost() {
        let p = patch_plan(".a.b[0].c = 1\n.a.b[1] = 2\n.x.y = 1\n.x = 2\ndel(.m.n, compact: true)");
        assert_eq!(paths(&p.touched), ["a.b", "x", "m"]);
        assert!(p.deleted.is_empty());
    }

    #[test]
    fn only_plain_unconditional_deletes_skip_conversion() {
        assert_eq!(paths(&patch_plan("del(.a.b)\n.c = 1").deleted), ["a.b"]);
        for source in [
            "if .c == 1 { del(.a.b) }",
            ".x = del(.a.b)",
            "del(.a.b)\n.y = .a.b.z",
            "del(.a.b)\n.a.b.z = 1",
            "del(.a.b[0])",
            "if .c == 1 { return true }\ndel(.a.b)",
        ] {
            let p = patch_plan(source);
            assert!(p.deleted.is_empty(), "`{source}`: {p:?}");
            assert!(p.touched.iter().any(|t| t.join(".") == "a.b"), "`{source}`: {p:?}");
        }
    }

    #[test]
    fn the_root_means_the_whole_event() {
        for source in [
            ". = {}",
            "del(.)",
            ".x = length(.)",
            r#".x = get!(., ["a"])"#,
            ". |= {\"a\": 1}",
        ] {
            assert!(matches!(plan(source), Plan::WholeEvent { .. }), "`{source}`");
        }
    }

    #[test]
    fn selection_holds_reads_touched_paths_and_parents_of_deleted_ones() {
        let p = patch_plan(".r = .l7.grpc.service\n.l7.request.http.method = \"x\"\ndel(.l7.request.http.headers)");
        let mut want = Selection::none();
        want.add_fields(&["r".into()]);
        want.add_fields(&["l7".into(), "grpc".into(), "service".into()]);
        want.add_fields(&["l7".into(), "request".into(), "http".into(), "method".into()]);
        want.add_parents(&["l7".into(), "request".into(), "http".into(), "headers".into()]);
        assert_eq!(p.selection, want);
    }
}
