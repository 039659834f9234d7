//! `filter` and `remap` transforms: VRL (Vector Remap Language) over exchange records.
//!
//! A record becomes a VRL value only inside these transforms, once per event: `filter`
//! converts just the fields its condition reads and passes the original event on
//! untouched; `remap` converts the whole record and emits the program's result as an
//! [`Event::Document`](perisco_engine::Event::Document), so added fields reach every sink.

pub mod convert;
mod filter;
mod program;
mod remap;

pub use filter::{Filter, FilterConfig};
pub use program::{CompileError, Expect, compile};
pub use remap::{Outcome, Remap, RemapConfig};
