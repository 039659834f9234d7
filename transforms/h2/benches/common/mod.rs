//! Synthetic but realistic HTTP/2 conversations shared by the criterion bench and the
//! CPU-time example (`examples/h2_cpu.rs`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use perisco_engine::event::{ConnInfo, ProcessInfo};
use perisco_h2::frame::{self, DATA, END_HEADERS, END_STREAM, HEADERS};
use perisco_h2::hpack::encoder::Encoder;
use perisco_h2::{PREFACE, Side};

pub const EXCHANGES: u32 = 1000;

pub fn info() -> Arc<ConnInfo> {
    Arc::new(ConnInfo {
        conn_id: 1,
        client: "10.0.0.1:40000".parse::<SocketAddr>().unwrap(),
        server: "10.0.0.2:8080".parse::<SocketAddr>().unwrap(),
        process: Arc::new(ProcessInfo::default()),
    })
}

fn headers_frame(enc: &mut Encoder, stream: u32, flags: u8, list: &[(&str, &str)], out: &mut Vec<u8>) {
    let mut block = Vec::new();
    enc.encode(list.iter().copied(), &mut block);
    frame::write(out, HEADERS, flags | END_HEADERS, stream, &block);
}

/// One connection of `EXCHANGES` exchanges as (side, chunk) writes in arrival order.
pub fn conversation(grpc: bool) -> Vec<(Side, Vec<u8>)> {
    let mut ce = Encoder::new();
    let mut se = Encoder::new();
    let mut chunks = Vec::new();
    let mut start = PREFACE.to_vec();
    frame::write(&mut start, frame::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    chunks.push((Side::Client, start));
    let mut s = Vec::new();
    frame::write(&mut s, frame::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 128]);
    chunks.push((Side::Server, s));
    for n in 0..EXCHANGES {
        let id = 2 * n + 1;
        let path_rest = format!("/api/v1/orders/{}?expand=items", 10_000 + n);
        let trace = format!("00-4bf92f3577b34da6a3ce929d0e0e{n:04x}-00f067aa0ba902b7-01");
        let mut c = Vec::new();
        let mut sv = Vec::new();
        if grpc {
            headers_frame(
                &mut ce,
                id,
                0,
                &[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/shop.v1.OrderService/GetOrder"),
                    (":authority", "orders.shop.svc.cluster.local:50051"),
                    ("content-type", "application/grpc"),
                    ("user-agent", "grpc-go/1.64.0"),
                    ("te", "trailers"),
                    ("grpc-timeout", "4999m"),
                    ("traceparent", &trace),
                ],
                &mut c,
            );
            let mut msg = vec![0, 0, 0, 0, 24];
            msg.extend_from_slice(&[0x0a; 24]);
            frame::write(&mut c, DATA, END_STREAM, id, &msg);
            headers_frame(
                &mut se,
                id,
                0,
                &[
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("grpc-accept-encoding", "gzip"),
                ],
                &mut sv,
            );
            let mut resp = vec![0, 0, 0, 0, 180];
            resp.extend_from_slice(&[0x12; 180]);
            frame::write(&mut sv, DATA, 0, id, &resp);
            headers_frame(
                &mut se,
                id,
                END_STREAM,
                &[("grpc-status", "0"), ("grpc-message", "")],
                &mut sv,
            );
        } else {
            headers_frame(
                &mut ce,
                id,
                END_STREAM,
                &[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", &path_rest),
                    (":authority", "orders.shop.svc.cluster.local"),
                    (
                        "user-agent",
                        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                    ),
                    ("accept", "application/json"),
                    ("accept-encoding", "gzip, deflate, br"),
                    ("accept-language", "en-US,en;q=0.9"),
                    ("traceparent", &trace),
                    (
                        "authorization",
                        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
                    ),
                ],
                &mut c,
            );
            headers_frame(
                &mut se,
                id,
                0,
                &[
                    (":status", "200"),
                    ("content-type", "application/json"),
                    ("content-length", "512"),
                    ("date", "Thu, 26 Nov 2026 13:23:26 GMT"),
                    ("server", "envoy"),
                    ("x-envoy-upstream-service-time", "3"),
                    ("cache-control", "no-store"),
                ],
                &mut sv,
            );
            frame::write(&mut sv, DATA, END_STREAM, id, &[b'{'; 512]);
        }
        chunks.push((Side::Client, c));
        chunks.push((Side::Server, sv));
    }
    chunks
}

/// A browser-like request header list (Huffman literals on first use, dynamic hits after).
pub const REQUEST_HEADERS: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/api/v1/orders/10042?expand=items"),
    (":authority", "orders.shop.svc.cluster.local"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    ),
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-language", "en-US,en;q=0.9"),
    ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("x-request-id", "5f1c2c1e-8f3a-4c7e-9a51-1d2b3c4d5e6f"),
];

/// (first block: literals with incremental indexing, repeat block: all indexed).
pub fn request_blocks() -> (Vec<u8>, Vec<u8>) {
    let mut enc = Encoder::new();
    let mut first = Vec::new();
    enc.encode(REQUEST_HEADERS.iter().copied(), &mut first);
    let mut repeat = Vec::new();
    enc.encode(REQUEST_HEADERS.iter().copied(), &mut repeat);
    (first, repeat)
}
