//! RFC 7541 Appendix C vectors and the passive-decoder behaviours.

use super::encoder::{Encoder, Indexing};
use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn decode(d: &mut Decoder, block: &[u8]) -> (Vec<(String, String)>, BlockStatus) {
    let mut out = Vec::new();
    let st = d.decode(block, |f| {
        out.push((
            String::from_utf8_lossy(f.name).into_owned(),
            String::from_utf8_lossy(f.value).into_owned(),
        ))
    });
    (out, st)
}

fn table(d: &Decoder) -> Vec<(String, String)> {
    d.table()
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(e.name().unwrap()).into_owned(),
                String::from_utf8_lossy(e.value()).into_owned(),
            )
        })
        .collect()
}

/// One Appendix C sequence: blocks decoded in order on one decoder, each with the header
/// list, the table entries (newest first) and the table size after it.
macro_rules! rfc_sequence {
    ($name:ident, table_size = $cap:expr, [$( ($block:expr, [$(($n:expr, $v:expr)),* $(,)?], [$(($tn:expr, $tv:expr)),* $(,)?], $size:expr) ),+ $(,)?]) => {
        #[test]
        fn $name() {
            let mut d = Decoder::new();
            d.table.set_capacity($cap);
            $(
                let (got, st) = decode(&mut d, &hex($block));
                assert_eq!(st, BlockStatus::default(), "status of {}", $block);
                let want: Vec<(String, String)> = vec![$(($n.to_string(), $v.to_string())),*];
                assert_eq!(got, want, "headers of {}", $block);
                let want_table: Vec<(String, String)> = vec![$(($tn.to_string(), $tv.to_string())),*];
                assert_eq!(table(&d), want_table, "table after {}", $block);
                assert_eq!(d.table().size(), $size, "table size after {}", $block);
            )+
        }
    };
}

rfc_sequence!(
    c2_1_literal_with_indexing,
    table_size = 4096,
    [(
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        [("custom-key", "custom-header")],
        [("custom-key", "custom-header")],
        55
    )]
);

rfc_sequence!(
    c2_2_literal_without_indexing,
    table_size = 4096,
    [("040c 2f73 616d 706c 652f 7061 7468", [(":path", "/sample/path")], [], 0)]
);

rfc_sequence!(
    c2_3_literal_never_indexed,
    table_size = 4096,
    [(
        "1008 7061 7373 776f 7264 0673 6563 7265 74",
        [("password", "secret")],
        [],
        0
    )]
);

rfc_sequence!(c2_4_indexed, table_size = 4096, [("82", [(":method", "GET")], [], 0)]);

rfc_sequence!(
    c3_requests_without_huffman,
    table_size = 4096,
    [
        (
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ],
            [(":authority", "www.example.com")],
            57
        ),
        (
            "8286 84be 5808 6e6f 2d63 6163 6865",
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ],
            [("cache-control", "no-cache"), (":authority", "www.example.com")],
            110
        ),
        (
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            [
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ],
            [
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com")
            ],
            164
        ),
    ]
);

rfc_sequence!(
    c4_requests_with_huffman,
    table_size = 4096,
    [
        (
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ],
            [(":authority", "www.example.com")],
            57
        ),
        (
            "8286 84be 5886 a8eb 1064 9cbf",
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ],
            [("cache-control", "no-cache"), (":authority", "www.example.com")],
            110
        ),
        (
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            [
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ],
            [
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com")
            ],
            164
        ),
    ]
);

const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOC: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

rfc_sequence!(
    c5_responses_without_huffman,
    table_size = 256,
    [
        (
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            [
                (":status", "302"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOC)
            ],
            [
                ("location", LOC),
                ("date", DATE1),
                ("cache-control", "private"),
                (":status", "302")
            ],
            222
        ),
        (
            "4803 3330 37c1 c0bf",
            [
                (":status", "307"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOC)
            ],
            [
                (":status", "307"),
                ("location", LOC),
                ("date", DATE1),
                ("cache-control", "private")
            ],
            222
        ),
        (
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
            [
                (":status", "200"),
                ("cache-control", "private"),
                ("date", DATE2),
                ("location", LOC),
                ("content-encoding", "gzip"),
                ("set-cookie", COOKIE)
            ],
            [("set-cookie", COOKIE), ("content-encoding", "gzip"), ("date", DATE2)],
            215
        ),
    ]
);

rfc_sequence!(
    c6_responses_with_huffman,
    table_size = 256,
    [
        (
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            [
                (":status", "302"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOC)
            ],
            [
                ("location", LOC),
                ("date", DATE1),
                ("cache-control", "private"),
                (":status", "302")
            ],
            222
        ),
        (
            "4883 640e ffc1 c0bf",
            [
                (":status", "307"),
                ("cache-control", "private"),
                ("date", DATE1),
                ("location", LOC)
            ],
            [
                (":status", "307"),
                ("location", LOC),
                ("date", DATE1),
                ("cache-control", "private")
            ],
            222
        ),
        (
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            [
                (":status", "200"),
                ("cache-control", "private"),
                ("date", DATE2),
                ("location", LOC),
                ("content-encoding", "gzip"),
                ("set-cookie", COOKIE)
            ],
            [("set-cookie", COOKIE), ("content-encoding", "gzip"), ("date", DATE2)],
            215
        ),
    ]
);

#[test]
fn integers_c1() {
    // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix; C.1.3: 42 at an octet boundary.
    for (bytes, n, want) in [
        (vec![0x0a], 5, 10),
        (vec![0x1f, 0x9a, 0x0a], 5, 1337),
        (vec![0x2a], 8, 42),
    ] {
        let mut pos = 0;
        assert_eq!(integer(&bytes, &mut pos, n), Ok(want));
        assert_eq!(pos, bytes.len());
        let mut enc = Vec::new();
        encoder::integer(want, n, 0, &mut enc);
        assert_eq!(enc, bytes);
    }
}

#[test]
fn integer_overflow_and_truncation() {
    let mut pos = 0;
    assert_eq!(
        integer(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0x7f], &mut pos, 7),
        Err(HpackError::IntegerOverflow)
    );
    let mut pos = 0;
    assert_eq!(
        integer(&[0x7f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos, 7),
        Err(HpackError::IntegerOverflow)
    );
    let mut pos = 0;
    assert_eq!(integer(&[0x7f, 0x80], &mut pos, 7), Err(HpackError::Truncated));
    let mut pos = 0;
    // Largest value: 2^32 - 1.
    let mut enc = Vec::new();
    encoder::integer(u32::MAX, 7, 0, &mut enc);
    assert_eq!(integer(&enc, &mut pos, 7), Ok(u32::MAX));
}

#[test]
fn unknown_index_is_dropped_and_later_literals_still_index() {
    // The encoder had two entries we never saw.
    let mut enc = Encoder::new();
    let mut skipped = Vec::new();
    enc.encode([("x-old", "1"), ("x-older", "2")], &mut skipped);
    let mut block = Vec::new();
    enc.encode(
        [
            (":method", "GET"),
            ("x-old", "1"),
            ("x-new", "3"),
            ("x-new", "3"),
            ("x-older", "2"),
        ],
        &mut block,
    );
    let mut d = Decoder::partial();
    let (got, st) = decode(&mut d, &block);
    assert_eq!(
        got,
        vec![
            (":method".into(), "GET".into()),
            ("x-new".into(), "3".into()),
            ("x-new".into(), "3".into())
        ]
    );
    assert_eq!(st.unknown, 2);
    assert_eq!(st.invalid_index, 0);
    assert_eq!(st.error, None);
    // Next block references the new entry by index: known.
    let mut block = Vec::new();
    enc.encode([("x-new", "3")], &mut block);
    assert_eq!(block, vec![0x80 | 62]);
    let (got, st) = decode(&mut d, &block);
    assert_eq!(got, vec![("x-new".into(), "3".into())]);
    assert_eq!(st.unknown, 0);
}

#[test]
fn literal_with_unknown_name_keeps_table_positions() {
    let mut enc = Encoder::new();
    let mut skipped = Vec::new();
    enc.encode([("x-lost", "a")], &mut skipped);
    let mut block = Vec::new();
    // Name from the lost entry (index 62), new value, indexed: lands at 62, pushing x-lost to 63.
    enc.field(b"x-lost", b"b", Indexing::Incremental, &mut block);
    enc.field(b"x-known", b"c", Indexing::Incremental, &mut block);
    let mut d = Decoder::partial();
    let (got, st) = decode(&mut d, &block);
    assert_eq!(got, vec![("x-known".into(), "c".into())]);
    assert_eq!(st.unknown, 1);
    let mut block = Vec::new();
    enc.encode([("x-known", "c"), ("x-lost", "b")], &mut block);
    assert_eq!(block, vec![0x80 | 62, 0x80 | 63]);
    let (got, st) = decode(&mut d, &block);
    assert_eq!(got, vec![("x-known".into(), "c".into())]);
    assert_eq!(st.unknown, 1);
}

#[test]
fn index_past_a_complete_table_is_counted_invalid() {
    let mut d = Decoder::new();
    let (got, st) = decode(&mut d, &[0xbe, 0x82]);
    assert_eq!(got, vec![(":method".into(), "GET".into())]);
    assert_eq!((st.unknown, st.invalid_index), (1, 1));
}

#[test]
fn size_updates() {
    let mut d = Decoder::new();
    let mut enc = Encoder::new();
    let mut block = Vec::new();
    enc.encode([("a", "1"), ("b", "2")], &mut block);
    decode(&mut d, &block);
    assert_eq!(d.table().len(), 2);
    // Size 0 empties the table, then back to 4096 is allowed.
    let (_, st) = decode(&mut d, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]);
    assert_eq!(st, BlockStatus::default());
    assert_eq!(d.table().len(), 0);
    assert_eq!(d.table().capacity(), 4096);
    // Above the advertised limit: a soft error, capped anyway.
    let mut big = Vec::new();
    encoder::integer(1 << 30, 5, 0x20, &mut big);
    let (_, st) = decode(&mut d, &big);
    assert_eq!(st.soft_errors, 1);
    assert_eq!(d.table().capacity(), TABLE_SIZE_CAP);
    // After a field: a soft error.
    let (got, st) = decode(&mut d, &[0x82, 0x20]);
    assert_eq!(got.len(), 1);
    assert_eq!(st.soft_errors, 1);
    assert_eq!(d.table().capacity(), 0);
    d.advertise_limit(65536);
    let mut ok = Vec::new();
    encoder::integer(65536, 5, 0x20, &mut ok);
    let (_, st) = decode(&mut d, &ok);
    assert_eq!(st.soft_errors, 0);
}

#[test]
fn hard_errors_stop_after_delivering_earlier_fields() {
    let mut d = Decoder::new();
    let (got, st) = decode(&mut d, &[0x82, 0x80]);
    assert_eq!(got.len(), 1);
    assert_eq!(st.error, Some(HpackError::ZeroIndex));
    let (got, st) = decode(&mut d, &[0x82, 0x40, 0x85, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, b'v']);
    assert_eq!(got.len(), 1);
    assert_eq!(st.error, Some(HpackError::Huffman));
    // Truncated in the middle of a literal (C.3.1 cut short).
    let block = hex("8286 8441 0f77 7777 2e65");
    let (got, st) = decode(&mut d, &block);
    assert_eq!(got.len(), 3);
    assert_eq!(st.error, Some(HpackError::Truncated));
}

#[test]
fn encoder_round_trips_through_decoder() {
    let mut enc = Encoder::new();
    let mut d = Decoder::new();
    let lists: Vec<Vec<(&str, &str)>> = vec![
        vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/pkg.Svc/Get"),
            (":authority", "svc:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("authorization", "Bearer x"),
        ],
        vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/pkg.Svc/Get"),
            (":authority", "svc:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("authorization", "Bearer x"),
        ],
        vec![(":status", "200"), ("x-binary", "\u{1}\u{ff}é")],
    ];
    for (i, list) in lists.iter().enumerate() {
        enc.set_huffman(i % 2 == 0);
        let mut block = Vec::new();
        enc.encode(list.iter().copied(), &mut block);
        let (got, st) = decode(&mut d, &block);
        assert_eq!(st, BlockStatus::default());
        let want: Vec<(String, String)> = list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(got, want);
    }
}
