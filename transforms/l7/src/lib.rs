//! perisco's `parse` and `match` transforms.
//!
//! `parse` turns socket bytes into L7 messages, per connection and direction, with the
//! protocol detected from the bytes: HTTP/1.x here ([`http1`]), HTTP/2 and gRPC through
//! perisco-h2. `match` pairs requests with responses into the records of DESIGN.md.

mod conn;
pub mod http1;
pub mod matcher;
pub mod parse;
pub mod redact;

pub use matcher::{MatchConfig, MatchStats, Matcher, UnmatchedResponses};
pub use parse::{ParseConfig, ParseStats, Parser};
