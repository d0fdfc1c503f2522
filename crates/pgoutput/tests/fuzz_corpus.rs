//! Replays the checked-in fuzz seed corpus (`fuzz/corpus/decode/`) through the same checks as
//! the `decode` fuzz target, so the seeds run on stable in the normal test suite.

use std::path::Path;

use bytes::Bytes;
use pgoutput::encode::encode;
use pgoutput::{decode_with, DecodeContext, Message, RelationCache};

#[test]
fn corpus_replays_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut files = 0;
    let mut decoded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = Bytes::from(std::fs::read(&path).unwrap());
        let mut cache = RelationCache::new();
        for in_stream in [false, true] {
            let context = DecodeContext { in_stream };
            if let Ok(m) = decode_with(&bytes, context) {
                decoded += 1;
                assert_eq!(encode(&m), bytes, "{}", path.display());
                cache.observe(&m);
                if let Message::Insert(i) = &m {
                    let _ = cache.resolve_insert(i);
                }
            }
        }
        files += 1;
    }
    assert!(files >= 50, "seed corpus missing from {}", dir.display());
    assert!(decoded >= files / 3, "most unmutated seeds decode");
}
