//! Table-style tests: each case is a conversation; every case is also replayed with each
//! write split at every byte boundary and must give the same messages.

use super::*;
use perisco_engine::event::Header;

use Flow::{ToClient as S, ToServer as C};

/// One step of a conversation.
#[derive(Clone, Copy)]
enum Ev<'a> {
    /// Bytes in a flow, at a timestamp.
    D(Flow, &'a [u8], u64),
    /// A write whose last `n` bytes were not captured.
    Cut(Flow, &'a [u8], u64, u64),
    Gap(Flow, u64),
    Close,
}

fn summary(m: &Http1Message) -> String {
    let mut s = match &m.head {
        Head::Request(r) => format!("{} {} {} @{}", r.method, r.url, r.protocol, m.ts_ns),
        Head::Response(r) => format!("{} {} @{}", r.code, r.protocol, m.ts_ns),
    };
    let (body_bytes, body, headers) = match &m.head {
        Head::Request(r) => (r.body_bytes, &r.body, &r.headers),
        Head::Response(r) => (r.body_bytes, &r.body, &r.headers),
    };
    if let Some(n) = body_bytes {
        s += &format!(" len={n}");
    }
    if let Some(b) = body {
        s += &format!(" body={b:?}");
    }
    s += &format!(" h={}", headers.len());
    if m.truncated {
        s += " truncated";
    }
    if m.upgrade_h2c {
        s += " h2c";
    }
    s
}

struct Run {
    msgs: Vec<String>,
    next: Vec<String>,
    counters: Http1Counters,
}

fn run_with(limits: Http1Limits, evs: &[Ev<'_>], split: Option<(usize, usize)>) -> Run {
    let mut conn = Http1Conn::new(limits);
    let mut out = Vec::new();
    let mut next = Vec::new();
    let mut done = [false, false];
    let idx = |f: Flow| usize::from(f == Flow::ToClient);
    for (i, ev) in evs.iter().enumerate() {
        let mut feed = |conn: &mut Http1Conn, f: Flow, data: &[u8], ts: u64, out: &mut Vec<Http1Message>| {
            if done[idx(f)] {
                return;
            }
            let parts: Vec<&[u8]> = match split {
                Some((j, k)) if j == i => vec![&data[..k], &data[k..]],
                _ => vec![data],
            };
            let mut offset = 0;
            for p in parts {
                match conn.feed(f, p, ts, out) {
                    Next::Continue => {}
                    Next::Http2 { held, at } => {
                        // Report the absolute offset where HTTP/2 starts in this write.
                        next.push(format!("h2 {:?} at {}", f, offset + at - held.len()));
                        done[idx(f)] = true;
                        return;
                    }
                    Next::Opaque => {
                        next.push(format!("opaque {f:?}"));
                        done[idx(f)] = true;
                        return;
                    }
                }
                offset += p.len();
            }
        };
        match *ev {
            Ev::D(f, d, ts) => feed(&mut conn, f, d, ts, &mut out),
            Ev::Cut(f, d, ts, n) => {
                feed(&mut conn, f, d, ts, &mut out);
                if !done[idx(f)] {
                    conn.missing(f, n, &mut out);
                }
            }
            Ev::Gap(f, n) => {
                if conn.gap(f, n, &mut out) {
                    next.push("framing lost".into());
                }
            }
            Ev::Close => conn.close(&mut out),
        }
    }
    Run {
        msgs: out.iter().map(summary).collect(),
        next,
        counters: conn.counters(),
    }
}

fn data_len(ev: &Ev<'_>) -> usize {
    match ev {
        Ev::D(_, d, _) | Ev::Cut(_, d, _, _) => d.len(),
        _ => 0,
    }
}

/// Run the conversation whole, check it, then split every write at every byte boundary
/// and require the same result.
fn check(limits: Http1Limits, evs: &[Ev<'_>], expect: &[&str], next: &[&str]) {
    let whole = run_with(limits, evs, None);
    assert_eq!(whole.msgs, expect, "messages");
    assert_eq!(whole.next, next, "protocol switches");
    for (i, ev) in evs.iter().enumerate() {
        for k in 1..data_len(ev) {
            let r = run_with(limits, evs, Some((i, k)));
            assert_eq!(r.msgs, whole.msgs, "split write {i} at {k}");
            assert_eq!(r.next, whole.next, "split write {i} at {k}");
        }
    }
}

macro_rules! case {
    ($name:ident, [$($ev:expr),* $(,)?], [$($m:expr),* $(,)?]) => {
        case!($name, Http1Limits::default(), [$($ev),*], [$($m),*], []);
    };
    ($name:ident, [$($ev:expr),* $(,)?], [$($m:expr),* $(,)?], [$($n:expr),* $(,)?]) => {
        case!($name, Http1Limits::default(), [$($ev),*], [$($m),*], [$($n),*]);
    };
    ($name:ident, $limits:expr, [$($ev:expr),* $(,)?], [$($m:expr),* $(,)?], [$($n:expr),* $(,)?]) => {
        #[test]
        fn $name() {
            check($limits, &[$($ev),*], &[$($m),*], &[$($n),*]);
        }
    };
}

use Ev::*;

case!(
    get_200_with_length,
    [
        D(
            C,
            b"GET /books.json?order=lower%28title%29 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
            10
        ),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhello", 20),
    ],
    [
        "GET /books.json?order=lower%28title%29 HTTP/1.1 @10 len=0 h=2",
        "200 HTTP/1.1 @20 len=5 h=2"
    ]
);

case!(
    keep_alive_two_exchanges,
    [
        D(C, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 1),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 2),
        D(C, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", 3),
        D(S, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 4),
    ],
    [
        "GET /a HTTP/1.1 @1 len=0 h=1",
        "200 HTTP/1.1 @2 len=3 h=1",
        "GET /b HTTP/1.1 @3 len=0 h=1",
        "404 HTTP/1.1 @4 len=0 h=1"
    ]
);

case!(
    pipelined_in_one_write,
    [
        D(C, b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyHEAD /3 HTTP/1.1\r\n\r\n", 1),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 2),
        D(C, b"GET /4 HTTP/1.1\r\n\r\n", 3),
        D(S, b"HTTP/1.1 204 No Content\r\n\r\n", 4),
    ],
    [
        "GET /1 HTTP/1.1 @1 len=0 h=0",
        "POST /2 HTTP/1.1 @1 len=4 h=1",
        "HEAD /3 HTTP/1.1 @1 len=0 h=0",
        "200 HTTP/1.1 @2 len=2 h=1",
        "201 HTTP/1.1 @2 len=0 h=1",
        "200 HTTP/1.1 @2 len=0 h=1",
        "GET /4 HTTP/1.1 @3 len=0 h=0",
        "204 HTTP/1.1 @4 len=0 h=0",
    ]
);

case!(
    chunked_with_extensions_and_trailers,
    [
        D(C, b"GET /c HTTP/1.1\r\n\r\n", 1),
        D(S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n", 2),
        D(C, b"GET /d HTTP/1.1\r\n\r\n", 3),
        D(S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 1\r\n\r\nx", 4),
        D(C, b"GET /e HTTP/1.1\r\n\r\n", 5),
    ],
    [
        "GET /c HTTP/1.1 @1 len=0 h=0",
        "200 HTTP/1.1 @2 h=1",
        "GET /d HTTP/1.1 @3 len=0 h=0",
        "200 HTTP/1.1 @4 h=1",
        "500 HTTP/1.1 @4 len=1 h=1",
        "GET /e HTTP/1.1 @5 len=0 h=0",
    ]
);

case!(
    chunked_request_body,
    [
        D(
            C,
            b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
            1
        ),
        D(
            S,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            2
        ),
    ],
    [
        "POST /up HTTP/1.1 @1 h=1",
        "GET /next HTTP/1.1 @1 len=0 h=0",
        "200 HTTP/1.1 @2 len=0 h=1",
        "200 HTTP/1.1 @2 len=0 h=1"
    ]
);

case!(
    head_response_has_no_body,
    [
        D(C, b"HEAD /big HTTP/1.1\r\n\r\n", 1),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 2),
        D(C, b"GET /small HTTP/1.1\r\n\r\n", 3),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 4),
    ],
    [
        "HEAD /big HTTP/1.1 @1 len=0 h=0",
        "200 HTTP/1.1 @2 len=0 h=1",
        "GET /small HTTP/1.1 @3 len=0 h=0",
        "200 HTTP/1.1 @4 len=2 h=1"
    ]
);

case!(
    continue_100_is_skipped,
    [
        D(
            C,
            b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            1
        ),
        D(S, b"HTTP/1.1 100 Continue\r\n\r\n", 2),
        D(C, b"abc", 3),
        D(
            S,
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            4
        ),
    ],
    ["PUT /f HTTP/1.1 @1 len=3 h=2", "201 HTTP/1.1 @4 len=0 h=1"]
);

case!(
    not_modified_and_no_content,
    [
        D(C, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 1),
        D(
            S,
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            2
        ),
    ],
    [
        "GET /a HTTP/1.1 @1 len=0 h=0",
        "GET /b HTTP/1.1 @1 len=0 h=0",
        "304 HTTP/1.1 @2 len=0 h=1",
        "204 HTTP/1.1 @2 len=0 h=0"
    ]
);

case!(
    body_ended_by_close,
    [
        D(C, b"GET / HTTP/1.0\r\n\r\n", 1),
        D(
            S,
            b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nsome body that HTTP/1.1 200 OK looks odd",
            2
        ),
        Close,
    ],
    ["GET / HTTP/1.0 @1 len=0 h=0", "200 HTTP/1.0 @2 h=1"]
);

case!(
    body_prefix_kept_when_asked,
    Http1Limits {
        max_body_bytes: 4,
        ..Http1Limits::default()
    },
    [
        D(C, b"POST /p HTTP/1.1\r\nContent-Length: 6\r\n\r\nabcdef", 1),
        D(
            S,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n",
            2
        ),
        D(C, b"GET /q HTTP/1.1\r\n\r\n", 3),
        D(S, b"HTTP/1.0 200 OK\r\n\r\nab", 4),
        Close,
    ],
    [
        "POST /p HTTP/1.1 @1 len=6 body=\"abcd\" h=1",
        "200 HTTP/1.1 @2 len=2 body=\"xy\" h=1",
        "GET /q HTTP/1.1 @3 len=0 h=0",
        "200 HTTP/1.0 @4 len=2 body=\"ab\" h=0",
    ],
    []
);

case!(
    upgrade_h2c_hands_over,
    [
        D(C, b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", 1),
        D(S, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00", 2),
        D(C, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00", 3),
    ],
    ["GET /up HTTP/1.1 @1 len=0 h=4 h2c"],
    ["h2 ToClient at 71", "h2 ToServer at 0"]
);

case!(
    upgrade_declined_stays_http1,
    [
        D(C, b"GET /up HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", 1),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2),
        D(C, b"GET /again HTTP/1.1\r\n\r\n", 3),
    ],
    [
        "GET /up HTTP/1.1 @1 len=0 h=1 h2c",
        "200 HTTP/1.1 @2 len=0 h=1",
        "GET /again HTTP/1.1 @3 len=0 h=0"
    ]
);

case!(
    websocket_upgrade_is_opaque,
    [
        D(
            C,
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            1
        ),
        D(
            S,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
            2
        ),
        D(S, b"\x81\x05HTTP/", 3),
    ],
    ["GET /ws HTTP/1.1 @1 len=0 h=2", "101 HTTP/1.1 @2 h=1"],
    ["opaque ToClient"]
);

case!(
    connect_tunnel_is_opaque,
    [
        D(
            C,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            1
        ),
        D(S, b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01", 2),
    ],
    ["CONNECT example.com:443 HTTP/1.1 @1 len=0 h=1", "200 HTTP/1.1 @2 h=0"],
    ["opaque ToClient"]
);

case!(
    cut_head_keeps_what_parsed,
    [
        Cut(C, b"GET /long HTTP/1.1\r\nHost: x\r\nUser-Agent: cu", 1, 500),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2),
        D(C, b"GET /next HTTP/1.1\r\n\r\n", 3),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4),
    ],
    [
        "GET /long HTTP/1.1 @1 h=1 truncated",
        "200 HTTP/1.1 @2 len=0 h=1",
        "GET /next HTTP/1.1 @3 len=0 h=0",
        "200 HTTP/1.1 @4 len=0 h=1",
    ]
);

case!(
    cut_request_line_keeps_method_and_url_prefix,
    [
        Cut(C, b"GET /a/very/long/ur", 1, 100),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2)
    ],
    [
        "GET /a/very/long/ur HTTP/1.1 @1 h=0 truncated",
        "200 HTTP/1.1 @2 len=0 h=1"
    ]
);

case!(
    cut_body_skipped_by_count,
    [
        Cut(C, b"POST /b HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789", 1, 90),
        D(C, b"GET /after HTTP/1.1\r\n\r\n", 2),
        Cut(S, b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\nxx", 3, 9998),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4),
    ],
    [
        "POST /b HTTP/1.1 @1 len=100 h=1",
        "GET /after HTTP/1.1 @2 len=0 h=0",
        "200 HTTP/1.1 @3 len=10000 h=1",
        "200 HTTP/1.1 @4 len=0 h=1",
    ]
);

case!(
    gap_resynchronises_on_next_head,
    [
        D(C, b"GET /1 HTTP/1.1\r\n\r\n", 1),
        D(S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 2),
        Gap(S, 0),
        D(S, b"lo world\r\n0\r\n\r\n", 3),
        D(C, b"GET /2 HTTP/1.1\r\n\r\n", 4),
        D(S, b"junk\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", 5),
    ],
    [
        "GET /1 HTTP/1.1 @1 len=0 h=0",
        "200 HTTP/1.1 @2 h=1",
        "GET /2 HTTP/1.1 @4 len=0 h=0",
        "202 HTTP/1.1 @5 len=0 h=1"
    ],
    ["framing lost"]
);

case!(
    gap_inside_known_body_keeps_framing,
    [
        D(C, b"POST /x HTTP/1.1\r\nContent-Length: 20\r\n\r\n0123", 1),
        Gap(C, 10),
        D(C, b"456789GET /y HTTP/1.1\r\n\r\n", 2),
    ],
    ["POST /x HTTP/1.1 @1 len=20 h=1", "GET /y HTTP/1.1 @2 len=0 h=0"]
);

case!(
    garbage_is_an_error_then_resync,
    [
        D(C, b"\x16\x03\x01\x02\x00garbage\r\nGET /ok HTTP/1.1\r\n\r\n", 1),
        D(S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2),
    ],
    ["GET /ok HTTP/1.1 @1 len=0 h=0", "200 HTTP/1.1 @2 len=0 h=1"]
);

case!(
    blank_lines_between_messages,
    [D(C, b"GET /a HTTP/1.1\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 1)],
    ["GET /a HTTP/1.1 @1 len=0 h=0", "GET /b HTTP/1.1 @1 len=0 h=0"]
);

case!(
    head_split_keeps_first_byte_time,
    [D(C, b"GET /slow HTTP/1.1\r\nHo", 7), D(C, b"st: x\r\n\r\n", 9)],
    ["GET /slow HTTP/1.1 @7 len=0 h=1"]
);

case!(
    close_cuts_a_head,
    [D(C, b"GET /x HTTP/1.1\r\nHost: a\r\nAcc", 1), Close],
    ["GET /x HTTP/1.1 @1 h=1 truncated"]
);

#[test]
fn oversized_head_is_an_error() {
    let limits = Http1Limits {
        max_head_bytes: 64,
        ..Http1Limits::default()
    };
    let long = format!(
        "GET / HTTP/1.1\r\nX: {}\r\n\r\nGET /ok HTTP/1.1\r\n\r\n",
        "a".repeat(100)
    );
    let r = run_with(limits, &[D(C, long.as_bytes(), 1)], None);
    assert_eq!(r.msgs, ["GET /ok HTTP/1.1 @1 len=0 h=0"]);
    assert!(r.counters.errors >= 1);
}

#[test]
fn bad_content_length_is_an_error() {
    let r = run_with(
        Http1Limits::default(),
        &[D(C, b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 1)],
        None,
    );
    assert!(r.msgs.is_empty());
    assert_eq!(r.counters.errors, 1);
}

#[test]
fn headers_are_kept_in_order() {
    let mut conn = Http1Conn::new(Http1Limits::default());
    let mut out = Vec::new();
    conn.feed(C, b"GET / HTTP/1.1\r\nB: 2\r\na: \xff1\r\n\r\n", 1, &mut out);
    let Head::Request(r) = &out[0].head else { panic!() };
    assert_eq!(r.headers, vec![Header::new("B", "2"), Header::new("a", "\u{fffd}1")]);
}

#[test]
fn utf8_values_are_sliced_from_the_head_whole_or_split() {
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nX-Name: caf\xc3\xa9\r\nEmpty:\r\nServer: s\r\nContent-Length: 0\r\n\r\n";
    for cut in [0, 5, 24, 26, head.len() - 1] {
        let mut conn = Http1Conn::new(Http1Limits::default());
        let mut out = Vec::new();
        conn.feed(C, b"GET / HTTP/1.1\r\n\r\n", 1, &mut out);
        out.clear();
        conn.feed(S, &head[..cut], 2, &mut out);
        conn.feed(S, &head[cut..], 3, &mut out);
        let Head::Response(r) = &out[0].head else { panic!() };
        assert_eq!(
            r.headers,
            vec![
                Header::new("X-Name", "café"),
                Header::new("Empty", ""),
                Header::new("Server", "s"),
                Header::new("Content-Length", "0")
            ],
            "cut at {cut}"
        );
    }
}

#[test]
fn detection_helpers() {
    assert_eq!(looks_like_request(b"GE"), Looks::NeedMore);
    assert_eq!(looks_like_request(b"GET "), Looks::Yes);
    assert_eq!(looks_like_request(b"get /"), Looks::No);
    assert_eq!(looks_like_request(b" GET"), Looks::No);
    assert_eq!(looks_like_request(b"*1\r\n$4"), Looks::No);
    assert_eq!(looks_like_response(b"HTT"), Looks::NeedMore);
    assert_eq!(looks_like_response(b"HTTP/1.1 200"), Looks::Yes);
    assert_eq!(looks_like_response(b"HTTP/2 200"), Looks::No);
}

/// Random bytes in both directions, random splits: never panics, bounded state.
#[test]
fn random_input_never_panics() {
    let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
    let pieces: [&[u8]; 8] = [
        b"GET / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"Content-Length: 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"5\r\nab",
        b"0\r\n\r\n",
        b"\x00\xff",
    ];
    for _ in 0..2000 {
        let mut conn = Http1Conn::new(Http1Limits {
            max_head_bytes: 256,
            max_body_bytes: 8,
            max_pipelined: 4,
        });
        let mut out = Vec::new();
        for _ in 0..20 {
            let mut data = Vec::new();
            for _ in 0..rnd() % 4 {
                data.extend_from_slice(pieces[(rnd() % 8) as usize]);
            }
            let flow = if rnd().is_multiple_of(2) { C } else { S };
            match rnd() % 10 {
                0 => {
                    conn.gap(flow, rnd() % 5, &mut out);
                }
                1 => conn.missing(flow, rnd() % 5, &mut out),
                _ => {
                    conn.feed(flow, &data, 1, &mut out);
                }
            }
            assert!(conn.state_bytes() < 4096);
        }
        conn.close(&mut out);
    }
}
