//! The HPACK Huffman code (RFC 7541 Appendix B).
//!
//! The code is canonical: codes of one length are consecutive and ordered by symbol,
//! so the code lengths alone define it. Decoding walks a 4-bit state machine (256
//! states = the internal nodes of the code tree, 16 transitions each) that is built
//! at compile time: two table lookups per input byte, no allocation besides the output.

/// Code length in bits of bytes 0..=255 and of EOS (index 256).
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
    30, // EOS
];

const EOS: usize = 256;

/// Canonical codes (right-aligned) from the lengths.
const fn canonical_codes() -> [u32; 257] {
    let mut codes = [0u32; 257];
    let mut code: u32 = 0;
    let mut len = 1;
    while len <= 30 {
        let mut sym = 0;
        while sym < 257 {
            if LENGTHS[sym] as u32 == len {
                codes[sym] = code;
                code += 1;
            }
            sym += 1;
        }
        code <<= 1;
        len += 1;
    }
    codes
}

pub(crate) const CODES: [u32; 257] = canonical_codes();

const LEAF: u16 = 0x8000;

/// The code tree: `tree[node][bit]` is an internal node index or `LEAF | symbol`.
const fn build_tree() -> [[u16; 2]; 256] {
    let mut tree = [[0u16; 2]; 256];
    let mut next: u16 = 1;
    let mut sym = 0;
    while sym < 257 {
        let len = LENGTHS[sym] as u32;
        let code = CODES[sym];
        let mut node = 0usize;
        let mut i = len;
        while i > 1 {
            i -= 1;
            let bit = ((code >> i) & 1) as usize;
            if tree[node][bit] == 0 {
                tree[node][bit] = next;
                next += 1;
            }
            node = tree[node][bit] as usize;
        }
        tree[node][(code & 1) as usize] = LEAF | sym as u16;
        sym += 1;
    }
    tree
}

const EMIT: u32 = 1 << 8;
const FAIL: u32 = 1 << 9;
/// The state reached may end the string: only 1-bits (EOS prefix) of at most 7 bits since the last symbol.
const ACCEPT: u32 = 1 << 10;

/// Transition table: entry = symbol (bits 0..8) | EMIT | FAIL | ACCEPT | next state << 16.
const fn build_fsm() -> [[u32; 16]; 256] {
    let tree = build_tree();
    // Nodes on the all-ones path from the root, at depth 1..=7, are valid padding ends.
    let mut accepting = [false; 256];
    accepting[0] = true;
    let mut node = 0usize;
    let mut depth = 0;
    while depth < 7 {
        node = tree[node][1] as usize;
        depth += 1;
        accepting[node] = true;
    }
    let mut fsm = [[0u32; 16]; 256];
    let mut state = 0;
    while state < 256 {
        let mut nibble = 0;
        while nibble < 16 {
            let mut node = state;
            let mut entry = 0u32;
            let mut bit = 4;
            while bit > 0 {
                bit -= 1;
                let child = tree[node][(nibble >> bit) & 1];
                if child & LEAF != 0 {
                    let sym = (child & !LEAF) as usize;
                    if sym == EOS {
                        entry |= FAIL;
                    } else {
                        entry |= EMIT | sym as u32;
                    }
                    node = 0;
                } else {
                    node = child as usize;
                }
            }
            if accepting[node] {
                entry |= ACCEPT;
            }
            fsm[state][nibble] = entry | ((node as u32) << 16);
            nibble += 1;
        }
        state += 1;
    }
    fsm
}

static FSM: [[u32; 16]; 256] = build_fsm();

/// The string is not valid Huffman: EOS inside, or padding that is not a short run of 1-bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidHuffman;

/// Decode `src`, appending to `dst`.
pub fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), InvalidHuffman> {
    dst.reserve(src.len() + src.len() / 2 + 1);
    let mut state = 0usize;
    let mut last = ACCEPT;
    for &byte in src {
        // Masks keep the indexes provably in range (no bounds checks in the loop).
        let hi = FSM[state & 0xff][usize::from(byte >> 4)];
        let lo = FSM[(hi >> 16) as usize & 0xff][usize::from(byte & 0x0f)];
        if (hi | lo) & FAIL != 0 {
            return Err(InvalidHuffman);
        }
        if hi & EMIT != 0 {
            dst.push(hi as u8);
        }
        if lo & EMIT != 0 {
            dst.push(lo as u8);
        }
        state = (lo >> 16) as usize;
        last = lo;
    }
    if last & ACCEPT != 0 {
        Ok(())
    } else {
        Err(InvalidHuffman)
    }
}

/// Length in bytes of `src` once Huffman-encoded.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| LENGTHS[b as usize] as usize).sum();
    bits.div_ceil(8)
}

/// Encode `src`, appending to `dst` (padding with the EOS prefix).
pub fn encode(src: &[u8], dst: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut nbits = 0u32;
    for &b in src {
        let len = LENGTHS[b as usize] as u32;
        acc = (acc << len) | u64::from(CODES[b as usize]);
        nbits += len;
        while nbits >= 8 {
            nbits -= 8;
            dst.push((acc >> nbits) as u8);
        }
    }
    if nbits > 0 {
        let pad = 8 - nbits;
        dst.push(((acc << pad) as u8) | ((1u8 << pad) - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc_samples() {
        // (symbol, code, length) rows of RFC 7541 Appendix B.
        for (sym, code, len) in [
            (b'0' as usize, 0x0, 5),
            (b' ' as usize, 0x14, 6),
            (b'a' as usize, 0x3, 5),
            (b':' as usize, 0x5c, 7),
            (b'&' as usize, 0xf8, 8),
            (b'\\' as usize, 0x7fff0, 19),
            (0, 0x1ff8, 13),
            (10, 0x3ffffffc, 30),
            (255, 0x3ffffee, 26),
            (EOS, 0x3fffffff, 30),
        ] {
            assert_eq!((CODES[sym], LENGTHS[sym]), (code, len), "symbol {sym}");
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut enc = Vec::new();
        encode(&all, &mut enc);
        assert_eq!(enc.len(), encoded_len(&all));
        let mut dec = Vec::new();
        decode(&enc, &mut dec).unwrap();
        assert_eq!(dec, all);
        for b in 0..=255u8 {
            let s = [b, b'x', b];
            let mut enc = Vec::new();
            encode(&s, &mut enc);
            let mut dec = Vec::new();
            decode(&enc, &mut dec).unwrap();
            assert_eq!(dec, s);
        }
    }

    #[test]
    fn rfc_sample_string() {
        // C.4.1: "www.example.com"
        let enc = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let mut dec = Vec::new();
        decode(&enc, &mut dec).unwrap();
        assert_eq!(dec, b"www.example.com");
    }

    #[test]
    fn rejects_bad_padding_and_eos() {
        let mut out = Vec::new();
        // A full byte of padding (8 one-bits) is too long.
        assert_eq!(decode(&[0xff], &mut out), Err(InvalidHuffman));
        // EOS itself (30 ones) encoded.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], &mut out), Err(InvalidHuffman));
        // Padding with a zero bit: '0' is 00000, then 000 padding.
        assert_eq!(decode(&[0x00], &mut out), Err(InvalidHuffman));
        out.clear();
        // '0' (00000) + 111 padding.
        assert_eq!(decode(&[0x07], &mut out), Ok(()));
        assert_eq!(out, b"0");
    }
}
