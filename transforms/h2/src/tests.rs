//! Connection-level tests, table style: each case is a script of chunks per side; every case
//! also runs with each chunk split at every byte boundary, and byte by byte, and must give
//! the same messages.

use std::net::SocketAddr;
use std::sync::Arc;

use perisco_engine::event::{ConnInfo, L7Body, L7Message, ProcessInfo};

use crate::frame::{self, ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, PADDED, PREFACE, PRIORITY_FLAG};
use crate::hpack::encoder::Encoder;
use crate::{Http2Conn, Http2Options, Http2Stats, NotHttp2, Side, reason};

#[derive(Clone, Debug)]
enum Step {
    Feed(Side, Vec<u8>, bool),
    Gap(Side),
    Skip(Side, u64),
    Close,
}
use Side::{Client as C, Server as S};

fn conn_info() -> Arc<ConnInfo> {
    Arc::new(ConnInfo {
        conn_id: 7,
        client: "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
        server: "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
        process: Arc::new(ProcessInfo::default()),
    })
}

/// Cuts one step's bytes into the pieces fed: (step index, bytes) -> pieces.
type Cut<'a> = &'a dyn Fn(usize, &[u8]) -> Vec<Vec<u8>>;

#[derive(Clone, Copy)]
enum Start {
    New,
    Upgraded,
}

/// Feed `steps`, each Feed chunk cut into the pieces `cut` returns.
fn play(
    start: Start,
    opts: Http2Options,
    steps: &[Step],
    cut: Cut<'_>,
) -> (Result<Vec<L7Message>, NotHttp2>, Http2Stats) {
    let mut c = match start {
        Start::New => Http2Conn::new(conn_info(), opts),
        Start::Upgraded => Http2Conn::upgraded(conn_info(), opts),
    };
    let mut out = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let ts = 1000 * (n as u64 + 1);
        match step {
            Step::Feed(side, bytes, truncated) => {
                let pieces = cut(n, bytes);
                let last = pieces.len().saturating_sub(1);
                for (k, p) in pieces.iter().enumerate() {
                    if let Err(e) = c.feed(*side, p, ts, *truncated && k == last, &mut out) {
                        return (Err(e), c.stats().clone());
                    }
                }
            }
            Step::Gap(side) => c.gap(*side, &mut out),
            Step::Skip(side, n) => c.skip(*side, *n, &mut out),
            Step::Close => c.close(ts, &mut out),
        }
        assert!(c.state_bytes() > 0);
    }
    (Ok(out), c.stats().clone())
}

/// Run whole, then every single split, then byte by byte; all must agree.
fn check(start: Start, opts: Http2Options, steps: &[Step]) -> (Result<Vec<L7Message>, NotHttp2>, Http2Stats) {
    let whole = play(start, opts, steps, &|_, b| vec![b.to_vec()]);
    for (j, step) in steps.iter().enumerate() {
        let Step::Feed(_, bytes, _) = step else {
            continue;
        };
        for k in 1..bytes.len() {
            let split = play(start, opts, steps, &|n, b| {
                if n == j {
                    vec![b[..k].to_vec(), b[k..].to_vec()]
                } else {
                    vec![b.to_vec()]
                }
            });
            assert_eq!(split.0, whole.0, "step {j} split at {k}");
        }
    }
    let bytewise = play(start, opts, steps, &|_, b| b.iter().map(|&x| vec![x]).collect());
    assert_eq!(bytewise.0, whole.0, "byte by byte");
    whole
}

/// Builds the frames of one side with its own HPACK encoder.
struct Wire {
    enc: Encoder,
}

impl Wire {
    fn new() -> Wire {
        Wire { enc: Encoder::new() }
    }
    fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        self.enc.encode(headers.iter().copied(), &mut b);
        b
    }
    fn headers(&mut self, stream: u32, flags: u8, headers: &[(&str, &str)]) -> Vec<u8> {
        let b = self.block(headers);
        let mut out = Vec::new();
        frame::write(&mut out, HEADERS, flags | END_HEADERS, stream, &b);
        out
    }
    /// A PUSH_PROMISE on `stream` promising `promised` for a GET of `path`.
    fn push_promise(&mut self, stream: u32, promised: u32, path: &str) -> Vec<u8> {
        let b = self.block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "a"),
        ]);
        let mut out = Vec::new();
        frame::write(
            &mut out,
            frame::PUSH_PROMISE,
            END_HEADERS,
            stream,
            &[&promised.to_be_bytes()[..], &b].concat(),
        );
        out
    }
}

fn rst(stream: u32, code: u32) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write(&mut out, frame::RST_STREAM, 0, stream, &code.to_be_bytes());
    out
}

fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write(&mut out, DATA, flags, stream, payload);
    out
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = Vec::new();
    frame::write(&mut out, frame::SETTINGS, 0, 0, &p);
    out
}

fn client_start() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(settings(&[(0x3, 100), (0x4, 65535)]));
    frame::write(&mut v, frame::WINDOW_UPDATE, 0, 0, &1_000_000u32.to_be_bytes());
    v
}

fn server_start() -> Vec<u8> {
    let mut v = settings(&[(0x3, 128)]);
    frame::write(&mut v, frame::SETTINGS, ACK, 0, &[]);
    v
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn grpc_msg(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn req(m: &L7Message) -> &perisco_engine::event::HttpRequest {
    match &m.body {
        L7Body::Request(r) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn resp(m: &L7Message) -> &perisco_engine::event::HttpResponse {
    match &m.body {
        L7Body::Response(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn hdr<'a>(h: &'a [perisco_engine::event::Header], k: &str) -> Option<&'a str> {
    h.iter().find(|x| x.key == k).map(|x| x.value.as_str())
}

/// `h2! { name, [opts = ..,] [start = ..,] |c, s| steps, |msgs, stats| { asserts } }`
macro_rules! h2 {
    ($name:ident, $(opts = $opts:expr,)? $(start = $start:expr,)? |$c:ident, $s:ident| $steps:expr, |$msgs:ident, $stats:ident| $body:block) => {
        #[test]
        fn $name() {
            #[allow(unused_mut, unused_assignments)]
            let mut opts = Http2Options::default();
            $( opts = $opts; )?
            #[allow(unused_mut, unused_assignments)]
            let mut start = Start::New;
            $( start = $start; )?
            let mut $c = Wire::new();
            let mut $s = Wire::new();
            let steps: Vec<Step> = $steps;
            let _ = (&mut $c, &mut $s);
            let (res, $stats) = check(start, opts, &steps);
            #[allow(unused_variables)]
            let $msgs = res;
            $body
        }
    };
}

const GET: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/index.html"),
    (":authority", "example.com"),
    ("user-agent", "nghttp2/1.52"),
    ("accept", "*/*"),
];

h2!(
    simple_get,
    |c, s| vec![
        Step::Feed(C, cat(&[client_start(), c.headers(1, END_STREAM, GET)]), false),
        Step::Feed(
            S,
            cat(&[
                server_start(),
                s.headers(
                    1,
                    0,
                    &[(":status", "200"), ("content-type", "text/html"), ("server", "nghttpd")]
                ),
                data(1, END_STREAM, b"hello")
            ]),
            false
        ),
    ],
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 2);
        let r = req(&msgs[0]);
        assert_eq!(
            (r.protocol.as_ref(), r.method.as_str(), r.url.as_str()),
            ("HTTP/2", "GET", "/index.html")
        );
        assert_eq!(
            r.headers.iter().map(|h| h.key.as_str()).collect::<Vec<_>>(),
            [":authority", "user-agent", "accept"]
        );
        assert_eq!(hdr(&r.headers, ":authority"), Some("example.com"));
        assert_eq!(r.body_bytes, Some(0));
        assert_eq!(msgs[0].stream_id, Some(1));
        assert_eq!(msgs[0].ts_ns, 1000);
        let p = resp(&msgs[1]);
        assert_eq!((p.code, p.body_bytes, p.body.as_deref()), (200, Some(5), None));
        assert_eq!(hdr(&p.headers, "server"), Some("nghttpd"));
        assert_eq!(msgs[1].ts_ns, 2000);
        assert!(msgs.iter().all(|m| m.incomplete.is_empty() && m.grpc.is_none()));
        assert_eq!(
            (stats.requests, stats.responses, stats.hpack_errors, stats.frame_errors),
            (1, 1, 0, 0)
        );
    }
);

h2!(
    multiplexed_with_continuation_padding_priority,
    opts = Http2Options {
        max_body_bytes: 4,
        ..Default::default()
    },
    |c, s| {
        let mut cl = client_start();
        cl.extend(c.headers(1, END_STREAM, GET));
        // Stream 3: HEADERS with PRIORITY + padding, block split over two CONTINUATIONs.
        let b = c.block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/style.css"),
            (":authority", "example.com"),
            ("user-agent", "nghttp2/1.52"),
            ("x-long", &"v".repeat(40)),
        ]);
        let (b1, rest) = b.split_at(5);
        let (b2, b3) = rest.split_at(rest.len() / 2);
        let mut p = vec![3u8]; // pad length
        p.extend_from_slice(&[0, 0, 0, 1, 15]); // priority: depends on 1, weight 16
        p.extend_from_slice(b1);
        p.extend_from_slice(&[0, 0, 0]);
        frame::write(&mut cl, HEADERS, END_STREAM | PADDED | PRIORITY_FLAG, 3, &p);
        frame::write(&mut cl, CONTINUATION, 0, 3, b2);
        frame::write(&mut cl, CONTINUATION, END_HEADERS, 3, b3);
        cl.extend(c.headers(
            5,
            END_STREAM,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/missing"),
                (":authority", "example.com"),
            ],
        ));
        let mut sv = server_start();
        sv.extend(s.headers(3, 0, &[(":status", "200"), ("content-type", "text/css")]));
        sv.extend(s.headers(1, 0, &[(":status", "200"), ("content-type", "text/html")]));
        let mut padded = vec![2u8];
        padded.extend_from_slice(b"body");
        padded.extend_from_slice(&[0, 0]);
        frame::write(&mut sv, DATA, PADDED, 1, &padded);
        sv.extend(data(3, END_STREAM, b"css!"));
        sv.extend(s.headers(5, END_STREAM, &[(":status", "404")]));
        sv.extend(data(1, END_STREAM, b"-more"));
        vec![Step::Feed(C, cl, false), Step::Feed(S, sv, false)]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        let got: Vec<(Option<u32>, String)> = msgs
            .iter()
            .map(|m| {
                (
                    m.stream_id,
                    match &m.body {
                        L7Body::Request(r) => format!("{} {}", r.method, r.url),
                        L7Body::Response(r) => {
                            format!("{} {:?} {:?}", r.code, r.body_bytes, r.body)
                        }
                        L7Body::NoResponse => "no response".into(),
                        L7Body::Closed => "closed".into(),
                    },
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(1), "GET /index.html".to_string()),
                (Some(3), "GET /style.css".to_string()),
                (Some(5), "GET /missing".to_string()),
                (Some(3), "200 Some(4) Some(\"css!\")".to_string()),
                (Some(5), "404 Some(0) None".to_string()),
                (Some(1), "200 Some(9) Some(\"body\")".to_string()),
            ]
        );
        assert_eq!(hdr(&req(&msgs[1]).headers, "x-long").map(str::len), Some(40));
        assert_eq!(stats.frame_errors, 0);
    }
);

h2!(
    post_body_split_over_frames,
    opts = Http2Options {
        max_body_bytes: 1000,
        ..Default::default()
    },
    |c, s| vec![
        Step::Feed(
            C,
            cat(&[
                client_start(),
                c.headers(
                    1,
                    0,
                    &[
                        (":method", "POST"),
                        (":scheme", "http"),
                        (":path", "/upload"),
                        (":authority", "x"),
                        ("content-type", "text/plain")
                    ]
                ),
                data(1, 0, b"abc")
            ]),
            false
        ),
        Step::Feed(C, data(1, END_STREAM, b"def"), false),
        Step::Feed(
            S,
            cat(&[server_start(), s.headers(1, END_STREAM, &[(":status", "201")])]),
            false
        ),
    ],
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            (req(&msgs[0]).body_bytes, req(&msgs[0]).body.as_deref()),
            (Some(6), Some("abcdef"))
        );
        assert_eq!(msgs[0].ts_ns, 1000, "request time is its HEADERS frame's");
        assert_eq!(resp(&msgs[1]).code, 201);
        assert_eq!(stats.requests, 1);
    }
);

const GRPC_REQ: &[(&str, &str)] = &[
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/echo.Echo/Say"),
    (":authority", "127.0.0.1:50051"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("grpc-timeout", "5S"),
];

h2!(
    grpc_unary_with_trailers,
    |c, s| {
        let mut body = grpc_msg(0, b"hello");
        body.extend(grpc_msg(1, &[9; 20]));
        let (b1, b2) = body.split_at(7);
        vec![
            Step::Feed(
                C,
                cat(&[
                    client_start(),
                    c.headers(1, 0, GRPC_REQ),
                    data(1, 0, b1),
                    data(1, END_STREAM, b2),
                ]),
                false,
            ),
            Step::Feed(
                S,
                cat(&[
                    server_start(),
                    s.headers(1, 0, &[(":status", "200"), ("content-type", "application/grpc")]),
                    data(1, 0, &grpc_msg(0, b"world!")),
                    s.headers(1, END_STREAM, &[("grpc-status", "0"), ("grpc-message", "")]),
                ]),
                false,
            ),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 2);
        let g = msgs[0].grpc.as_ref().unwrap();
        assert_eq!((g.service.as_str(), g.method.as_str()), ("echo.Echo", "Say"));
        assert_eq!(
            (g.request_messages, g.request_bytes, g.status),
            (Some(2), Some(25), None)
        );
        let g = msgs[1].grpc.as_ref().unwrap();
        assert_eq!((g.service.as_str(), g.method.as_str()), ("echo.Echo", "Say"));
        assert_eq!(
            (g.response_messages, g.response_bytes, g.status, g.message.as_deref()),
            (Some(1), Some(6), Some(0), Some(""))
        );
        let p = resp(&msgs[1]);
        assert_eq!(hdr(&p.headers, "grpc-status"), Some("0"), "trailers follow the headers");
        assert_eq!(p.body_bytes, Some(11));
        assert_eq!(stats.responses, 1);
    }
);

h2!(
    grpc_trailers_only_error,
    |c, s| vec![
        Step::Feed(
            C,
            cat(&[
                client_start(),
                c.headers(1, 0, GRPC_REQ),
                data(1, END_STREAM, &grpc_msg(0, b"k"))
            ]),
            false
        ),
        Step::Feed(
            S,
            cat(&[
                server_start(),
                s.headers(
                    1,
                    END_STREAM,
                    &[
                        (":status", "200"),
                        ("content-type", "application/grpc"),
                        ("grpc-status", "5"),
                        ("grpc-message", "no%20such%20key%3A%20%E2%9C%93")
                    ]
                )
            ]),
            false
        ),
    ],
    |msgs, _stats| {
        let msgs = msgs.unwrap();
        let g = msgs[1].grpc.as_ref().unwrap();
        assert_eq!((g.status, g.message.as_deref()), (Some(5), Some("no such key: ✓")));
        assert_eq!(g.response_messages, Some(0));
        assert!(msgs[1].incomplete.is_empty());
    }
);

h2!(
    rst_stream_marks_and_placeholder,
    |c, s| {
        vec![
            Step::Feed(
                C,
                cat(&[
                    client_start(),
                    c.headers(1, END_STREAM, GET),
                    c.headers(3, END_STREAM, GRPC_REQ),
                ]),
                false,
            ),
            Step::Feed(
                S,
                cat(&[
                    server_start(),
                    s.headers(1, 0, &[(":status", "200")]),
                    data(1, 0, b"par"),
                ]),
                false,
            ),
            Step::Feed(C, rst(3, 8), false), // CANCEL
            Step::Feed(S, rst(1, 2), false), // INTERNAL_ERROR
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 4);
        // Stream 3 cancelled by the client before any response: no response, at the RST time.
        assert_eq!(
            (msgs[2].stream_id, &msgs[2].body, msgs[2].ts_ns),
            (Some(3), &L7Body::NoResponse, 3000)
        );
        assert_eq!(msgs[2].incomplete, vec![reason::RESPONSE_RESET]);
        assert!(msgs[2].grpc.is_none(), "nothing of a response to count");
        assert_eq!(
            (msgs[3].stream_id, resp(&msgs[3]).code, resp(&msgs[3]).body_bytes),
            (Some(1), 200, Some(3))
        );
        assert_eq!(msgs[3].incomplete, vec![reason::RESPONSE_RESET]);
        assert_eq!(stats.resets, 2);
    }
);

h2!(
    server_no_error_reset_after_its_headers_ends_the_response,
    |c, s| {
        // node's http2 server answers a body-less response with HEADERS (no END_STREAM)
        // and then RST_STREAM(NO_ERROR); the client sees a complete 404. A client's
        // NO_ERROR reset in the middle of a response still cuts it.
        vec![
            Step::Feed(
                C,
                cat(&[
                    client_start(),
                    c.headers(1, END_STREAM, GET),
                    c.headers(3, END_STREAM, GET),
                ]),
                false,
            ),
            Step::Feed(
                S,
                cat(&[
                    server_start(),
                    s.headers(1, 0, &[(":status", "404")]),
                    rst(1, frame::NO_ERROR),
                    s.headers(3, 0, &[(":status", "200")]),
                    data(3, 0, b"par"),
                ]),
                false,
            ),
            Step::Feed(C, rst(3, frame::NO_ERROR), false),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 4);
        assert_eq!((msgs[2].stream_id, resp(&msgs[2]).code), (Some(1), 404));
        assert!(msgs[2].incomplete.is_empty(), "{:?}", msgs[2].incomplete);
        assert_eq!((msgs[3].stream_id, resp(&msgs[3]).code), (Some(3), 200));
        assert_eq!(msgs[3].incomplete, vec![reason::RESPONSE_RESET]);
        assert_eq!(stats.resets, 2);
    }
);

h2!(
    informational_skipped,
    |c, s| vec![
        Step::Feed(
            C,
            cat(&[
                client_start(),
                c.headers(
                    1,
                    0,
                    &[
                        (":method", "POST"),
                        (":scheme", "http"),
                        (":path", "/"),
                        (":authority", "x"),
                        ("expect", "100-continue")
                    ]
                )
            ]),
            false
        ),
        Step::Feed(S, cat(&[server_start(), s.headers(1, 0, &[(":status", "100")])]), false),
        Step::Feed(C, data(1, END_STREAM, b"x"), false),
        Step::Feed(S, s.headers(1, END_STREAM, &[(":status", "204")]), false),
    ],
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((resp(&msgs[1]).code, msgs[1].ts_ns), (204, 4000));
        assert_eq!(stats.informational, 1);
    }
);

h2!(
    mid_connection_unknown_index_then_literals,
    |c, s| {
        // Earlier traffic (not captured) filled both tables.
        c.headers(1, END_STREAM, GET);
        s.headers(
            1,
            END_STREAM,
            &[(":status", "200"), ("server", "nghttpd"), ("x-seen", "1")],
        );
        vec![
            Step::Feed(
                C,
                c.headers(
                    3,
                    END_STREAM,
                    &[
                        (":method", "GET"),
                        (":scheme", "http"),
                        (":path", "/index.html"),
                        (":authority", "example.com"),
                        ("user-agent", "nghttp2/1.52"),
                        ("x-new", "n"),
                    ],
                ),
                false,
            ),
            Step::Feed(
                S,
                s.headers(
                    3,
                    END_STREAM,
                    &[(":status", "200"), ("server", "nghttpd"), ("x-fresh", "f")],
                ),
                false,
            ),
            Step::Feed(
                C,
                c.headers(5, END_STREAM, &[(":method", "GET"), (":path", "/b"), ("x-new", "n")]),
                false,
            ),
            Step::Feed(
                S,
                s.headers(5, END_STREAM, &[(":status", "200"), ("x-fresh", "f")]),
                false,
            ),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 4);
        let r = req(&msgs[0]);
        assert_eq!((r.method.as_str(), r.url.as_str()), ("GET", "/index.html"));
        assert_eq!(
            hdr(&r.headers, ":authority"),
            None,
            "the authority came from the lost table"
        );
        assert_eq!(hdr(&r.headers, "x-new"), Some("n"));
        assert_eq!(msgs[0].incomplete, vec![reason::HPACK_UNKNOWN_INDEX]);
        assert_eq!(hdr(&resp(&msgs[1]).headers, "x-fresh"), Some("f"));
        assert_eq!(msgs[1].incomplete, vec![reason::HPACK_UNKNOWN_INDEX]);
        // Later blocks use the entries added after the capture started: complete.
        assert_eq!(hdr(&req(&msgs[2]).headers, "x-new"), Some("n"));
        assert!(msgs[2].incomplete.is_empty());
        assert_eq!(hdr(&resp(&msgs[3]).headers, "x-fresh"), Some("f"));
        assert!(msgs[3].incomplete.is_empty());
        assert_eq!(stats.hpack_errors, 0, "unknown indexes mid-connection are not errors");
        assert!(stats.hpack_unknown_indexes >= 3);
    }
);

h2!(
    upgraded_stream_one_response_only,
    start = Start::Upgraded,
    |c, s| vec![
        Step::Feed(C, cat(&[client_start(), c.headers(3, END_STREAM, GET)]), false),
        Step::Feed(
            S,
            cat(&[
                server_start(),
                s.headers(1, 0, &[(":status", "200")]),
                data(1, END_STREAM, b"up"),
                s.headers(3, END_STREAM, &[(":status", "304")])
            ]),
            false
        ),
    ],
    |msgs, _stats| {
        let msgs = msgs.unwrap();
        let got: Vec<(Option<u32>, bool)> = msgs
            .iter()
            .map(|m| (m.stream_id, matches!(m.body, L7Body::Request(_))))
            .collect();
        assert_eq!(got, vec![(Some(3), true), (Some(1), false), (Some(3), false)]);
        assert_eq!(resp(&msgs[1]).body_bytes, Some(2));
    }
);

h2!(
    truncated_header_block_then_resync,
    |c, s| {
        let first = c.headers(
            1,
            END_STREAM,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/a"),
                (":authority", "example.com"),
                ("x-big", &"z".repeat(100)),
            ],
        );
        // The capture kept the frame header and the first fields, then lost the rest of the write.
        let cut = first[..9 + 20].to_vec();
        vec![
            Step::Feed(C, cat(&[client_start(), cut]), true),
            Step::Feed(
                C,
                c.headers(
                    3,
                    END_STREAM,
                    &[
                        (":method", "GET"),
                        (":scheme", "http"),
                        (":path", "/b"),
                        (":authority", "example.com"),
                    ],
                ),
                false,
            ),
            Step::Feed(
                S,
                cat(&[
                    server_start(),
                    s.headers(1, END_STREAM, &[(":status", "200")]),
                    s.headers(3, END_STREAM, &[(":status", "200")]),
                ]),
                false,
            ),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 4);
        let r = req(&msgs[0]);
        assert_eq!((r.method.as_str(), r.url.as_str()), ("GET", "/a"));
        assert_eq!(msgs[0].incomplete, vec![reason::REQUEST_TRUNCATED]);
        // The next request references ":authority: example.com" from the table we had to forget.
        let r = req(&msgs[1]);
        assert_eq!(r.url, "/b");
        assert_eq!(msgs[1].incomplete, vec![reason::HPACK_UNKNOWN_INDEX]);
        assert_eq!((stats.gaps, stats.truncated_blocks), (1, 1));
    }
);

h2!(
    gap_inside_data_resyncs_on_next_frame,
    |c, s| {
        let big = data(1, 0, &[b'x'; 300]);
        vec![
            Step::Feed(
                C,
                cat(&[
                    client_start(),
                    c.headers(1, END_STREAM, GET),
                    c.headers(3, END_STREAM, GET),
                ]),
                false,
            ),
            Step::Feed(
                S,
                cat(&[
                    server_start(),
                    s.headers(1, 0, &[(":status", "200")]),
                    big[..100].to_vec(),
                ]),
                false,
            ),
            Step::Gap(S),
            // Garbage then frames: the tail of the lost write, then a new write.
            Step::Feed(
                S,
                cat(&[
                    vec![b'x'; 37],
                    data(1, END_STREAM, b"end"),
                    s.headers(3, END_STREAM, &[(":status", "200")]),
                ]),
                false,
            ),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 4);
        let p = resp(&msgs[2]);
        assert_eq!((msgs[2].stream_id, p.body_bytes), (Some(1), Some(303)));
        assert_eq!(msgs[2].incomplete, vec![reason::RESPONSE_GAP]);
        assert_eq!((msgs[3].stream_id, resp(&msgs[3]).code), (Some(3), 200));
        assert!(msgs[3].incomplete.is_empty(), "{:?}", msgs[3].incomplete);
        assert_eq!((stats.resyncs, stats.resync_skipped_bytes), (1, 37));
    }
);

h2!(
    skip_inside_data_keeps_grpc_counts,
    |c, s| {
        let mut body = grpc_msg(0, &[1; 500]);
        body.extend(grpc_msg(0, b"tail"));
        let d = data(1, END_STREAM, &body);
        vec![
            Step::Feed(
                C,
                cat(&[client_start(), c.headers(1, 0, GRPC_REQ), d[..9 + 100].to_vec()]),
                false,
            ),
            Step::Skip(C, 400),
            Step::Feed(C, d[9 + 500..].to_vec(), false),
            Step::Feed(
                S,
                cat(&[
                    server_start(),
                    s.headers(
                        1,
                        END_STREAM,
                        &[
                            (":status", "200"),
                            ("content-type", "application/grpc"),
                            ("grpc-status", "0"),
                        ],
                    ),
                ]),
                false,
            ),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 2);
        let g = msgs[0].grpc.as_ref().unwrap();
        assert_eq!((g.request_messages, g.request_bytes), (Some(2), Some(504)));
        assert!(msgs[0].incomplete.is_empty());
        assert_eq!(stats.gaps, 0);
    }
);

h2!(
    not_http2_client,
    |c, s| vec![Step::Feed(C, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false)],
    |msgs, _stats| {
        assert_eq!(msgs, Err(NotHttp2));
    }
);

h2!(
    not_http2_partial_preface,
    |c, s| vec![Step::Feed(C, b"PRI * HTTP/1.1\r\n".to_vec(), false)],
    |msgs, _stats| {
        assert_eq!(msgs, Err(NotHttp2));
    }
);

h2!(
    not_http2_server,
    |c, s| vec![Step::Feed(S, b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), false)],
    |msgs, _stats| {
        assert_eq!(msgs, Err(NotHttp2));
    }
);

h2!(
    eviction_when_too_many_streams,
    opts = Http2Options {
        max_streams: 2,
        ..Default::default()
    },
    |c, s| vec![Step::Feed(
        C,
        cat(&[
            client_start(),
            c.headers(1, END_STREAM, GET),
            c.headers(3, 0, GET),
            c.headers(5, END_STREAM, GET),
            c.headers(7, END_STREAM, GET)
        ]),
        false
    ),],
    |msgs, stats| {
        let msgs = msgs.unwrap();
        let ids: Vec<Option<u32>> = msgs.iter().map(|m| m.stream_id).collect();
        // 1 ended (emitted); 3 open is evicted by 7 (1 was already the oldest... and gone from the
        // table only when its response comes, so it goes first).
        assert_eq!(ids, vec![Some(1), Some(5), Some(3), Some(7)]);
        assert_eq!(msgs[2].incomplete, vec![reason::STREAM_EVICTED]);
        assert_eq!(stats.streams_evicted, 2);
    }
);

h2!(
    push_promise_keeps_table_in_step,
    |c, s| {
        let mut sv = server_start();
        sv.extend(s.push_promise(1, 2, "/pushed.css"));
        sv.extend(s.headers(1, END_STREAM, &[(":status", "200")]));
        sv.extend(s.headers(2, 0, &[(":status", "200"), ("content-type", "text/css")]));
        sv.extend(data(2, END_STREAM, b"a{}"));
        // Uses the entry the PUSH_PROMISE added to the server's table.
        sv.extend(s.headers(3, END_STREAM, &[(":status", "200"), (":path", "/pushed.css")]));
        vec![
            Step::Feed(
                C,
                cat(&[
                    client_start(),
                    c.headers(1, END_STREAM, GET),
                    c.headers(3, END_STREAM, GET),
                ]),
                false,
            ),
            Step::Feed(S, sv, false),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 6);
        assert!(msgs.iter().all(|m| m.incomplete.is_empty()));
        assert_eq!(
            (stats.push_promises, stats.pushed_responses, stats.hpack_errors),
            (1, 0, 0)
        );
        // The pushed exchange: the promise is its request, stream 2's answer its response.
        let pushed: Vec<&L7Message> = msgs.iter().filter(|m| m.stream_id == Some(2)).collect();
        match [&pushed[0].body, &pushed[1].body] {
            [L7Body::Request(q), L7Body::Response(r)] => {
                assert_eq!((q.method.as_str(), q.url.as_str()), ("GET", "/pushed.css"));
                assert_eq!(r.code, 200);
                assert!(
                    r.headers
                        .iter()
                        .any(|h| h.key == "content-type" && h.value == "text/css")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(pushed[0].ts_ns <= pushed[1].ts_ns);
    }
);

h2!(
    a_refused_push_is_marked_reset,
    |c, s| {
        let mut sv = server_start();
        sv.extend(s.push_promise(1, 2, "/p.css"));
        sv.extend(s.headers(1, END_STREAM, &[(":status", "200")]));
        vec![
            Step::Feed(C, cat(&[client_start(), c.headers(1, END_STREAM, GET)]), false),
            Step::Feed(S, sv, false),
            Step::Feed(C, rst(2, 8), false),
        ]
    },
    |msgs, _stats| {
        let msgs = msgs.unwrap();
        let pushed: Vec<&L7Message> = msgs.iter().filter(|m| m.stream_id == Some(2)).collect();
        assert_eq!(pushed.len(), 2, "{msgs:?}");
        assert!(matches!(&pushed[0].body, L7Body::Request(q) if q.url == "/p.css"));
        assert_eq!(pushed[1].incomplete, vec![reason::RESPONSE_RESET]);
    }
);

h2!(
    a_push_whose_promise_was_not_seen_is_a_response_alone,
    |c, s| {
        // A pushed stream's response with no PUSH_PROMISE before it (lost in a gap, say).
        let sv = cat(&[
            server_start(),
            s.headers(2, 0, &[(":status", "200")]),
            data(2, END_STREAM, b"a{}"),
        ]);
        vec![Step::Feed(C, client_start(), false), Step::Feed(S, sv, false)]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 1, "the response alone: `match` says its request is missing");
        assert!(matches!(&msgs[0].body, L7Body::Response(r) if r.code == 200));
        assert_eq!((stats.push_promises, stats.pushed_responses), (0, 1));
    }
);

h2!(
    close_emits_unfinished,
    |c, s| vec![
        Step::Feed(
            C,
            cat(&[
                client_start(),
                c.headers(1, 0, GRPC_REQ),
                data(1, 0, &grpc_msg(0, b"a")),
                c.headers(3, END_STREAM, GET)
            ]),
            false
        ),
        Step::Feed(
            S,
            cat(&[
                server_start(),
                s.headers(1, 0, &[(":status", "200"), ("content-type", "application/grpc")]),
                data(1, 0, &grpc_msg(0, b"bb"))
            ]),
            false
        ),
        Step::Close,
    ],
    |msgs, _stats| {
        let msgs = msgs.unwrap();
        let got: Vec<(Option<u32>, Vec<String>)> = msgs
            .iter()
            .map(|m| (m.stream_id, m.incomplete.iter().map(|r| r.to_string()).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(3), vec![]),
                (Some(1), vec![reason::REQUEST_UNFINISHED.to_string()]),
                (Some(1), vec![reason::RESPONSE_UNFINISHED.to_string()]),
            ]
        );
        assert_eq!(msgs[2].grpc.as_ref().unwrap().response_messages, Some(1));
    }
);

h2!(
    table_size_setting_and_update,
    |c, s| {
        // The server allows the client a 64 KiB table; the client grows into it.
        let mut b = Vec::new();
        crate::hpack::encoder::integer(65536, 5, 0x20, &mut b);
        let mut enc = Encoder::new();
        enc.size_update(65536, &mut Vec::new());
        let mut rest = Vec::new();
        enc.encode(GET.iter().copied(), &mut rest);
        b.extend(rest);
        let mut cl = client_start();
        frame::write(&mut cl, HEADERS, END_STREAM | END_HEADERS, 1, &b);
        vec![
            Step::Feed(S, cat(&[settings(&[(0x1, 65536)])]), false),
            Step::Feed(C, cl, false),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(req(&msgs[0]).url, "/index.html");
        assert_eq!(stats.hpack_errors, 0);
    }
);

h2!(
    header_list_limit,
    opts = Http2Options {
        max_header_list_bytes: 200,
        ..Default::default()
    },
    |c, s| vec![Step::Feed(
        C,
        cat(&[
            client_start(),
            c.headers(
                1,
                END_STREAM,
                &[
                    (":method", "GET"),
                    (":path", "/"),
                    ("a", "1"),
                    ("big", &"b".repeat(300)),
                    ("c", "3")
                ]
            )
        ]),
        false
    ),],
    |msgs, _stats| {
        let msgs = msgs.unwrap();
        let r = req(&msgs[0]);
        assert_eq!(r.headers.iter().map(|h| h.key.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(msgs[0].incomplete, vec![reason::HEADERS_TOO_LARGE]);
    }
);

h2!(
    garbage_after_confirmation_resyncs,
    |c, s| vec![
        Step::Feed(C, cat(&[client_start(), c.headers(1, END_STREAM, GET)]), false),
        Step::Feed(
            S,
            cat(&[
                server_start(),
                vec![0xff; 9],
                s.headers(1, END_STREAM, &[(":status", "200")])
            ]),
            false
        ),
    ],
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(resp(&msgs[1]).code, 200);
        assert_eq!(stats.frame_errors, 1);
    }
);

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic xorshift stream of inputs, including mutated real frames.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut c = Wire::new();
    let mut s = Wire::new();
    let base_c = cat(&[
        client_start(),
        c.headers(1, 0, GRPC_REQ),
        data(1, END_STREAM, &grpc_msg(0, b"hi")),
    ]);
    let base_s = cat(&[
        server_start(),
        s.headers(1, 0, &[(":status", "200")]),
        data(1, 0, b"x"),
        s.headers(1, END_STREAM, &[("grpc-status", "0")]),
    ]);
    for _ in 0..3000 {
        let mut bc = base_c.clone();
        let mut bs = base_s.clone();
        for _ in 0..(next() % 4) {
            let i = (next() as usize) % bc.len();
            bc[i] = next() as u8;
            let i = (next() as usize) % bs.len();
            bs[i] = next() as u8;
        }
        let mut conn = Http2Conn::new(
            conn_info(),
            Http2Options {
                max_body_bytes: 16,
                max_streams: 4,
                max_header_list_bytes: 256,
            },
        );
        let mut out = Vec::new();
        let cut = (next() as usize) % bc.len();
        let _ = conn.feed(C, &bc[..cut], 1, next() % 5 == 0, &mut out);
        let _ = conn.feed(S, &bs, 2, false, &mut out);
        let _ = conn.feed(C, &bc[cut..], 3, false, &mut out);
        if next() % 3 == 0 {
            conn.gap(S, &mut out);
        }
        let _ = conn.feed(S, &bs, 4, false, &mut out);
        conn.close(5, &mut out);
    }
}

h2!(
    gap_then_tiny_chunk_keeps_first_offset,
    |c, s| {
        let next = s.headers(3, END_STREAM, &[(":status", "200")]);
        vec![
            Step::Feed(
                C,
                cat(&[
                    client_start(),
                    c.headers(1, END_STREAM, GET),
                    c.headers(3, END_STREAM, GET),
                ]),
                false,
            ),
            Step::Feed(S, cat(&[server_start(), s.headers(1, 0, &[(":status", "200")])]), false),
            Step::Gap(S),
            // The first write after the gap arrives in pieces smaller than a frame header.
            Step::Feed(S, next[..4].to_vec(), false),
            Step::Feed(S, next[4..].to_vec(), false),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        let got: Vec<(Option<u32>, u16)> = msgs
            .iter()
            .filter_map(|m| match &m.body {
                L7Body::Response(r) => Some((m.stream_id, r.code)),
                _ => None,
            })
            .collect();
        // Stream 3's response is found right after the gap; stream 1's stays open (its END_STREAM was lost).
        assert_eq!(got, vec![(Some(3), 200)]);
        assert_eq!((stats.resyncs, stats.resync_skipped_bytes), (1, 0));
    }
);

h2!(
    gap_cuts_pending_continuation,
    |c, s| {
        let b = c.block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/cont"),
            (":authority", "example.com"),
            ("x-a", "1"),
            ("x-b", "2"),
        ]);
        let mut cl = client_start();
        frame::write(&mut cl, HEADERS, END_STREAM, 1, &b[..b.len() - 4]);
        vec![
            Step::Feed(C, cl, false),
            Step::Gap(C),
            Step::Feed(
                S,
                cat(&[server_start(), s.headers(1, END_STREAM, &[(":status", "200")])]),
                false,
            ),
        ]
    },
    |msgs, _stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 2);
        let r = req(&msgs[0]);
        assert_eq!(r.url, "/cont");
        assert_eq!(msgs[0].incomplete, vec![reason::REQUEST_TRUNCATED]);
        assert!(msgs[1].incomplete.is_empty());
    }
);

h2!(
    truncated_data_with_end_stream_still_ends,
    |c, s| {
        let d = data(1, END_STREAM, &[b'q'; 200]);
        vec![
            Step::Feed(
                C,
                cat(&[
                    client_start(),
                    c.headers(
                        1,
                        0,
                        &[
                            (":method", "POST"),
                            (":scheme", "http"),
                            (":path", "/up"),
                            (":authority", "x"),
                        ],
                    ),
                    d[..50].to_vec(),
                ]),
                true,
            ),
            Step::Feed(
                S,
                cat(&[server_start(), s.headers(1, END_STREAM, &[(":status", "413")])]),
                false,
            ),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(req(&msgs[0]).body_bytes, Some(200), "counted from the frame header");
        assert_eq!(msgs[0].incomplete, vec![reason::REQUEST_GAP]);
        assert_eq!(resp(&msgs[1]).code, 413);
        assert_eq!(stats.gaps, 1);
    }
);

h2!(
    skip_past_the_frame_is_a_gap,
    |c, s| {
        let d = data(1, 0, &[b'q'; 100]);
        vec![
            Step::Feed(
                C,
                cat(&[
                    client_start(),
                    c.headers(
                        1,
                        0,
                        &[
                            (":method", "POST"),
                            (":scheme", "http"),
                            (":path", "/up"),
                            (":authority", "x"),
                        ],
                    ),
                    d[..30].to_vec(),
                ]),
                false,
            ),
            Step::Skip(C, 500),
            Step::Feed(C, data(1, END_STREAM, b"z"), false),
            Step::Feed(
                S,
                cat(&[server_start(), s.headers(1, END_STREAM, &[(":status", "200")])]),
                false,
            ),
        ]
    },
    |msgs, stats| {
        let msgs = msgs.unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(req(&msgs[0]).body_bytes, Some(101));
        assert_eq!(msgs[0].incomplete, vec![reason::REQUEST_GAP]);
        assert_eq!(stats.gaps, 1);
    }
);

#[test]
fn state_is_bounded_under_many_streams_and_big_headers() {
    let mut c = Wire::new();
    let opts = Http2Options {
        max_streams: 16,
        ..Default::default()
    };
    let mut conn = Http2Conn::new(conn_info(), opts);
    let mut out = Vec::new();
    conn.feed(C, &client_start(), 1, false, &mut out).unwrap();
    let big = "v".repeat(1000);
    for n in 0..500u32 {
        let hs = c.headers(2 * n + 1, 0, &[(":method", "POST"), (":path", "/x"), ("x-big", &big)]);
        conn.feed(C, &hs, 2, false, &mut out).unwrap();
    }
    assert_eq!(conn.stats().streams_evicted, 500 - 16);
    assert!(conn.state_bytes() < 16 * 4096 + 64 * 1024, "{}", conn.state_bytes());
    conn.close(3, &mut out);
    assert_eq!(out.len(), 500);
}

/// Idle connections are the sizing case (100 k open): after an exchange, with frames split
/// across writes so the frame buffers were used, what is left is the struct, the two HPACK
/// tables' entries and no stream table or frame buffer.
#[test]
fn idle_connection_keeps_little_state() {
    let mut w = Wire::new();
    let mut server = Wire::new();
    let mut conn = Http2Conn::new(conn_info(), Http2Options::default());
    let mut out = Vec::new();
    let fresh = conn.state_bytes();
    conn.feed(C, &client_start(), 1, false, &mut out).unwrap();
    conn.feed(S, &server_start(), 1, false, &mut out).unwrap();
    for n in 0..50u32 {
        let id = 2 * n + 1;
        let hs = w.headers(
            id,
            frame::END_STREAM,
            &[(":method", "GET"), (":path", "/items"), ("user-agent", "t/1")],
        );
        let (a, b) = hs.split_at(hs.len() / 2);
        conn.feed(C, a, 2, false, &mut out).unwrap();
        conn.feed(C, b, 2, false, &mut out).unwrap();
        let rs = cat(&[
            server.headers(id, 0, &[(":status", "200"), ("content-type", "text/plain")]),
            data(id, frame::END_STREAM, b"ok"),
        ]);
        let (a, b) = rs.split_at(5);
        conn.feed(S, a, 3, false, &mut out).unwrap();
        conn.feed(S, b, 3, false, &mut out).unwrap();
    }
    assert_eq!(out.len(), 100);
    // Each table holds its literals once (the encoder indexes them): under 100 bytes each
    // with their index. A stream table kept allocated would add over 100 more.
    let idle = conn.state_bytes();
    assert!(idle < fresh + 256, "idle {idle} bytes, fresh {fresh}");
}

// DATA payload bytes the capture skipped (the kernel's HTTP/2 walk skips DATA beyond the
// capture): inside one gRPC message the counts stay exact; over a message boundary they
// are left out rather than reported as lower bounds.
h2!(
    grpc_counts_survive_skips_inside_a_message_only,
    |c, s| {
        // Stream 1's response: two 100-byte messages; the skip stays inside the first.
        // Stream 3's response: four 10-byte messages; the skip covers three prefixes.
        let two = cat(&[grpc_msg(0, &[b'a'; 100]), grpc_msg(0, &[b'b'; 100])]);
        let four: Vec<u8> = (0..4).flat_map(|_| grpc_msg(0, &[b'c'; 10])).collect();
        let head = |s: &mut Wire, id| s.headers(id, 0, &[(":status", "200"), ("content-type", "application/grpc")]);
        let trailers = |s: &mut Wire, id| s.headers(id, END_STREAM, &[("grpc-status", "0")]);
        // Encoded in the order they are fed (HPACK state).
        let (h1, t1) = (head(&mut s, 1), trailers(&mut s, 1));
        let (h3, t3) = (head(&mut s, 3), trailers(&mut s, 3));
        let frame1 = data(1, 0, &two);
        let frame3 = data(3, 0, &four);
        vec![
            Step::Feed(
                C,
                cat(&[
                    client_start(),
                    c.headers(1, END_STREAM, GRPC_REQ),
                    c.headers(3, END_STREAM, GRPC_REQ),
                ]),
                false,
            ),
            // frame header + the first message's prefix and 10 bytes, 80 skipped, the rest.
            Step::Feed(S, cat(&[server_start(), h1, frame1[..9 + 15].to_vec()]), false),
            Step::Skip(S, 80),
            Step::Feed(S, cat(&[frame1[9 + 95..].to_vec(), t1]), false),
            // frame header + the first message's prefix, then 40 bytes skipped.
            Step::Feed(S, cat(&[h3, frame3[..9 + 5].to_vec()]), false),
            Step::Skip(S, 40),
            Step::Feed(S, cat(&[frame3[9 + 45..].to_vec(), t3]), false),
        ]
    },
    |msgs, _stats| {
        let msgs = msgs.unwrap();
        let resp = |id| {
            msgs.iter()
                .find(|m| m.stream_id == Some(id) && matches!(m.body, L7Body::Response(_)))
                .and_then(|m| m.grpc.as_deref())
                .cloned()
                .unwrap()
        };
        let (r1, r3) = (resp(1), resp(3));
        assert_eq!(
            (r1.response_messages, r1.response_bytes, r1.status),
            (Some(2), Some(200), Some(0))
        );
        assert_eq!(
            (r3.response_messages, r3.response_bytes, r3.status),
            (None, None, Some(0))
        );
    }
);
