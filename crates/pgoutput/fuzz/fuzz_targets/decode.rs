//! `cargo +nightly fuzz run decode` (from crates/pgoutput): decoding any bytes, in and out of
//! a streaming block, never panics; whatever decodes re-encodes to the same bytes; decoded
//! rows resolve (or fail cleanly) through the relation cache.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pgoutput::encode::encode;
use pgoutput::{decode_with, DecodeContext, Message, RelationCache};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let mut cache = RelationCache::new();
    for in_stream in [false, true] {
        if let Ok(m) = decode_with(&bytes, DecodeContext { in_stream }) {
            assert_eq!(encode(&m), bytes);
            cache.observe(&m);
            if let Message::Insert(i) = &m {
                let _ = cache.resolve_insert(i);
            }
        }
    }
});
