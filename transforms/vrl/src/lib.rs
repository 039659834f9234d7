//! `filter` and `remap` transforms: VRL (Vector Remap Language) over exchange records.
//!
//! A record becomes a VRL value only inside these transforms, once per event: `filter`
//! converts just the fields its condition reads and passes the original event on
//! untouched; `remap` converts the fields its program reads and changes, and emits the
//! typed record plus a patch of those changes
//! ([`Event::Patched`](perisco_engine::Event::Patched)), so added fields reach every sink
//! without the record ever becoming JSON here. Programs whose changes cannot be bounded
//! (`. = ...`) convert the whole record and emit an
//! [`Event::Document`](perisco_engine::Event::Document).

pub mod convert;
mod filter;
pub mod patching;
pub mod plan;
mod program;
mod remap;

pub use filter::{Filter, FilterConfig};
pub use plan::{PatchPlan, Plan};
pub use program::{CompileError, Expect, compile};
pub use remap::{Outcome, Remap, RemapConfig};
