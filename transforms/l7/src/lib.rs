//! perisco's `parse` and `match` transforms.
//!
//! `parse` turns socket bytes into L7 messages (HTTP/1.x here, HTTP/2 + gRPC through
//! perisco-h2), per connection and direction, with the protocol detected from the bytes.
//! `match` pairs requests with responses into the records of DESIGN.md.

pub mod http1;
