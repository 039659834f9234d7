//! Passive, sans-IO HTTP/2 (h2c) + HPACK + gRPC parser producing L7 messages.

pub mod hpack;
