//! The fast head parser against httparse: same results whenever it takes a head, and it
//! takes the usual ones.

use super::*;

/// Heads as servers and clients send them, and the odd shapes httparse accepts or refuses.
const HEADS: &[&[u8]] = &[
    b"GET /api/v1/items?id=42&fields=name,price HTTP/1.1\r\nHost: shop.default.svc:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 13:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 27\r\nConnection: keep-alive\r\n\r\n{\"name\":\"pen\"}",
    b"GET / HTTP/1.0\r\n\r\n",
    b"HTTP/1.0 404\r\n\r\n",
    b"HTTP/1.1 204 \r\n\r\n",
    b"HTTP/1.1 200  Spaced   Out \t\r\nA: b\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    b"GET / HTTP/1.1\r\nA:\r\nB: \r\nC:\t\r\nD:  x  \r\nE:\tv\t\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Trace: a b  c\r\nX-Tab: a\tb\r\n\r\n",
    b"GET /caf\xc3\xa9 HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Bad: \xff\xfe\r\n\r\n",
    b"HTTP/1.1 200 \xe9t\xe9\r\n\r\n",
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET /  HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1 \r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / http/1.1\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nHost : a\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nFolded: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\n Leading: a\r\n\r\n",
    b"GET / HTTP/1.1\r\n:empty\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad(name): a\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad(name): a\r\nGood: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nCtl: a\x01b\r\n\r\n",
    b"GET / HTTP/1.1\r\nDel: a\x7fb\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNul: a\x00b\r\n\r\n",
    b"GET /a\tb HTTP/1.1\r\n\r\n",
    b"GET /a\x7fb HTTP/1.1\r\n\r\n",
    b"G(T / HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 200OK\r\n\r\n",
    b"HTTP/1.1 200\tOK\r\n\r\n",
    b"HTTP/1.1  200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\x7f\r\n\r\n",
    b"HTTP/1.1 200 OK\nA: b\r\n\r\n",
    b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
];

/// Every head of the table, with each header line repeated `n` times (around the limit of
/// fields a head may have).
fn many_fields(n: usize) -> Vec<u8> {
    let mut h = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..n {
        h.extend_from_slice(format!("X-Field-{i}: value number {i}\r\n").as_bytes());
    }
    h.extend_from_slice(b"\r\n");
    h
}

#[test]
fn agrees_with_httparse_on_every_prefix() {
    let mut all: Vec<Vec<u8>> = HEADS.iter().map(|h| h.to_vec()).collect();
    all.extend([MAX_HEADERS - 1, MAX_HEADERS, MAX_HEADERS + 1].map(many_fields));
    // Long lines: values across many 16-byte blocks, ends at every offset in a block.
    for n in 0..40 {
        let mut h = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
        h.extend(std::iter::repeat_n(b'v', n));
        h.extend_from_slice(b"\r\nX-Short: s\r\n\r\n");
        all.push(h);
    }
    for head in &all {
        for end in 0..=head.len() {
            check_against_httparse(&head[..end]);
        }
    }
}

#[test]
fn agrees_with_httparse_on_mutations() {
    let mut rnd = crate::http1::xorshift(0x2545_f491_4f6c_dd1d);
    // Bytes the parsers treat differently: delimiters, whitespace, controls, high bytes.
    let bytes = b" \t\r\n:/()\"@\x00\x01\x7f\x80\xc3\xa9\xffaZ0-_~";
    let mut taken = 0;
    for i in 0..200_000 {
        let mut head = HEADS[i % HEADS.len()].to_vec();
        for _ in 0..1 + rnd() % 3 {
            let at = (rnd() as usize) % (head.len() + 1);
            let b = bytes[(rnd() as usize) % bytes.len()];
            match rnd() % 3 {
                0 if at < head.len() => head[at] = b,
                1 if at < head.len() => {
                    head.remove(at);
                }
                _ => head.insert(at, b),
            }
        }
        check_against_httparse(&head);
        let took =
            request(&head, &mut Fields::new(None)).is_some() || response(&head, &mut Fields::new(None)).is_some();
        taken += usize::from(took);
    }
    // Many mutations keep a head the fast parser takes: the comparison had work to do.
    assert!(taken > 5_000, "only {taken} mutated heads taken");
}

#[test]
fn takes_the_usual_heads() {
    let mut f = Fields::new(None);
    let r = request(HEADS[0], &mut f).expect("a curl request");
    assert_eq!(
        (r.method, r.target, r.version, r.len),
        ("GET", "/api/v1/items?id=42&fields=name,price", 1, HEADS[0].len())
    );
    assert_eq!(f.list.len(), 3);
    let mut f = Fields::new(None);
    let r = response(HEADS[1], &mut f).expect("an nginx response");
    assert_eq!((r.code, r.version), (200, 1));
    assert_eq!(&HEADS[1][r.len..], b"{\"name\":\"pen\"}");
    assert_eq!(f.list.len(), 5);
    assert_eq!(f.list[1].value, "Thu, 26 Nov 2026 13:00:00 GMT");
    for head in [
        HEADS[2],
        HEADS[4],
        HEADS[7],
        HEADS[8],
        HEADS[9],
        &many_fields(MAX_HEADERS),
    ] {
        let mut f = Fields::new(None);
        assert!(
            request(head, &mut f).is_some() || response(head, &mut Fields::new(None)).is_some(),
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
    // And leaves the rest to httparse.
    for head in [
        HEADS[13],
        HEADS[18],
        HEADS[21],
        HEADS[23],
        &many_fields(MAX_HEADERS + 1),
    ] {
        assert!(request(head, &mut Fields::new(None)).is_none());
        assert!(response(head, &mut Fields::new(None)).is_none());
    }
}

#[test]
fn sse2_classes_match_the_portable_ones() {
    let mut rnd = crate::http1::xorshift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..10_000 {
        let block: [u8; 16] = std::array::from_fn(|_| rnd() as u8);
        assert_eq!(stops(&block), stops_portable(&block), "{block:?}");
    }
    let every: Vec<u8> = (0..=255).collect();
    for chunk in every.chunks(16) {
        let block: [u8; 16] = chunk.try_into().unwrap();
        assert_eq!(stops(&block), stops_portable(&block));
    }
}
