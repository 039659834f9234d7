//! Passive, sans-IO HTTP/2 (h2c) + HPACK + gRPC parser producing L7 messages.
//!
//! One [`Http2Conn`] per TCP connection watches both directions: feed each side's bytes in
//! arrival order with [`Http2Conn::feed`] (any chunking: split or coalesced frames, byte by
//! byte), report lost bytes with [`Http2Conn::gap`] (count unknown) or [`Http2Conn::skip`]
//! (count known, e.g. `len - captured` of a write cut by the capture length), and call
//! [`Http2Conn::close`] at the end. Nothing here does I/O, allocates per byte, or panics on
//! any input (fuzzed: `transforms/h2/fuzz`).
//!
//! Starting points: a connection watched from its start sends the client preface (consumed,
//! also when split). A capture that starts later begins with frames ([`looks_like_frames`]
//! tells); HPACK then decodes what the static table and later literals allow. After an
//! HTTP/1.1 `Upgrade: h2c` + `101`, use [`Http2Conn::upgraded`].
//!
//! # Messages
//! Every [`L7Message`](perisco_engine::event::L7Message) has `stream_id: Some(id)`, protocol
//! `"HTTP/2"`, and `ts_ns` = time of the chunk holding the first byte of its HEADERS frame
//! (for a response: the final, non-1xx one).
//! - A request is emitted when it ends (END_STREAM on HEADERS or DATA); a response likewise,
//!   after its trailers. A response that ends first emits the open request before it.
//! - `method`, `url` (`:path`) and `code` (`:status`) come from pseudo-headers. `headers` holds
//!   the regular fields in wire order; **`:authority` is kept as a header named `":authority"`**
//!   (where it was in the block, i.e. before the regular fields); `:scheme` and `:protocol`
//!   are dropped. Trailers are appended after the headers (so `grpc-status` shows there too).
//!   Names are lowercase as on the wire; values are lossy UTF-8.
//! - `body_bytes` is always set: the sum of DATA payload lengths minus padding, counted from
//!   frame headers (exact even when payload bytes are lost). `body` holds the first
//!   `max_body_bytes` of the payload (lossy UTF-8) when that option is non-zero.
//! - 1xx informational responses are skipped.
//! - Server push: a PUSH_PROMISE's header block is emitted as the request of the promised
//!   (even) stream, `ts_ns` the promise's; the response on that stream follows as usual. A
//!   response on an even stream whose promise was not seen is emitted alone.
//! - gRPC (`content-type: application/grpc*`): `grpc` carries service and method from
//!   `/pkg.Svc/Method` on both messages; the request carries `request_messages` /
//!   `request_bytes`, the response `response_messages` / `response_bytes` (5-byte length
//!   prefix, compressed flag 0 or 1, lengths as sent) and `status` / `message` from the
//!   trailers or a trailers-only response (`grpc-message` percent-decoded).
//! - A stream reset before its response head gives `L7Body::NoResponse` (marked
//!   `response_reset`, at the time of the reset), so `match` emits the request at once.
//! - Not emitted here: `L7Body::Closed` (the caller knows when the connection ends).
//!
//! # `incomplete` reasons (see [`reason`])
//! | reason | when |
//! |---|---|
//! | `hpack_unknown_index` | a field referenced a table entry never seen (capture started mid-connection, or after lost bytes): the field is dropped, not guessed |
//! | `hpack_error` | the header block could not be decoded to its end (bad Huffman, integer overflow, index 0); fields before the error are kept |
//! | `request_truncated` / `response_truncated` | the header block was cut (lost or truncated capture, or larger than the buffer cap); the fields before the cut are kept |
//! | `headers_too_large` | the decoded header list passed `max_header_list_bytes`; later fields dropped |
//! | `request_reset` / `response_reset` | RST_STREAM (either side) before the message ended. A stream reset before any response headers gets a response with code 0, no headers, `response_reset`, at the time of the RST_STREAM |
//! | `request_gap` / `response_gap` | bytes of that side were lost while the message was open: body counts and gRPC counts are lower bounds, the body capture stops |
//! | `request_unfinished` / `response_unfinished` | the connection closed before the message's END_STREAM |
//! | `stream_evicted` | more than `max_streams` streams were open; the oldest was emitted as it was |
//!
//! A request whose response never comes is not marked here: `match` reports it after its timeout.
//!
//! # Bounds
//! Per connection: at most `max_streams` streams, one buffered frame per side (header-carrying
//! frames up to `max_header_list_bytes + 16 KiB`; DATA is streamed, never buffered), an HPACK
//! table of at most [`hpack::TABLE_SIZE_CAP`] per direction whatever SETTINGS say (entries
//! beyond it decode as unknown), and a resynchronisation window of 64 KiB after lost bytes.
//! [`Http2Conn::state_bytes`] reports the total; [`Http2Conn::stats`] counts what went wrong.
//!
//! Idle connections are cheap (100 k open connections are the sizing case): the frame buffer
//! of a side is released once its frame is complete, the stream table is freed when no
//! stream is open, messages are boxed so a stream waiting for its response costs a few words,
//! HPACK tables keep their entries in one buffer sized by what they hold (not by the
//! negotiated limit), and Huffman scratch buffers are per thread, not per connection.

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
