//! Sinks: where records leave perisco.

pub mod file;
