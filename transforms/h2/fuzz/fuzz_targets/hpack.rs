//! Arbitrary header blocks into one decoder (the table carries over between blocks), and
//! Huffman round trips. Input: [flags] then blocks [len, len bytes...].
#![no_main]

use libfuzzer_sys::fuzz_target;
use perisco_h2::hpack::{Decoder, TABLE_SIZE_CAP, huffman};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut d)) = data.split_first() else {
        return;
    };
    let mut dec = if flags & 1 != 0 {
        Decoder::partial()
    } else {
        Decoder::new()
    };
    if flags & 2 != 0 {
        dec.advertise_limit(u32::from(flags) << 10);
    }
    while let Some((&len, rest)) = d.split_first() {
        let n = usize::from(len).min(rest.len());
        let (block, rest) = rest.split_at(n);
        d = rest;
        let mut fields = 0usize;
        let _ = dec.decode(block, |f| {
            fields += 1;
            assert!(f.name.len() + f.value.len() <= block.len() * 8 / 5 + TABLE_SIZE_CAP);
        });
        assert!(dec.table().size() <= dec.table().capacity().max(0));
        assert!(dec.table().capacity() <= TABLE_SIZE_CAP);
        if flags & 4 != 0 {
            dec.forget();
        }
    }
    // Any bytes survive a Huffman round trip.
    let mut enc = Vec::new();
    huffman::encode(data, &mut enc);
    let mut back = Vec::new();
    assert!(huffman::decode(&enc, &mut back).is_ok());
    assert_eq!(back, data);
});
