//! Passive, sans-IO HTTP/2 (h2c) + HPACK + gRPC parser producing L7 messages.

mod conn;
mod core;
pub mod frame;
pub mod grpc;
pub mod hpack;
mod message;

pub use conn::{Http2Conn, Http2Options, Http2Stats, NotHttp2, Side};
pub use frame::{PREFACE, looks_like_frames};
pub use message::reason;

#[cfg(test)]
mod tests;
