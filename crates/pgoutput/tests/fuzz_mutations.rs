//! The `decode` fuzz target's checks on stable Rust, bounded: a seeded mutational loop over the
//! checked-in corpus (`fuzz/corpus/decode/`) in the style of libFuzzer's mutators (bit flips,
//! interesting bytes and lengths, truncation, extension, splicing two seeds). It runs a fixed
//! number of iterations (`PGOUTPUT_FUZZ_ITERATIONS`, default 500 000: a few seconds) from a
//! fixed seed (`PGOUTPUT_FUZZ_SEED`), so a failure replays; the panic message names the input.
//! Coverage-guided fuzzing stays `cargo +nightly fuzz run decode`.

use std::path::Path;

use bytes::Bytes;
use pgoutput::encode::encode;
use pgoutput::{decode_with, DecodeContext, Message, RelationCache};

/// The fuzz target's body: never panics; what decodes re-encodes to the same bytes; decoded
/// rows resolve (or fail cleanly) through the relation cache.
fn check(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let mut cache = RelationCache::new();
    for in_stream in [false, true] {
        if let Ok(m) = decode_with(&bytes, DecodeContext { in_stream }) {
            assert_eq!(encode(&m), bytes, "re-encoding {data:02x?}");
            cache.observe(&m);
            if let Message::Insert(i) = &m {
                let _ = cache.resolve_insert(i);
            }
        }
    }
}

/// xorshift64*: enough randomness for mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that sit on length and sign boundaries (libFuzzer's "interesting" integers).
const INTERESTING: &[u8] = &[0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x10, 0x40];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len >= 4 => {
                // A big-endian i32 (the protocol's lengths and counts) set to a boundary.
                let i = rng.below(len - 3);
                let v: i32 = [0, 1, -1, i32::MAX, i32::MIN, 0x7fff, 0x1_0000][rng.below(7)];
                data[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            3 if len > 0 => data.truncate(rng.below(len)),
            4 => {
                let n = 1 + rng.below(8);
                data.extend((0..n).map(|_| rng.next() as u8));
            }
            5 if !other.is_empty() => {
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ if len > 1 => {
                let i = rng.below(len);
                data.remove(i);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

#[test]
fn mutated_corpus_never_panics_and_round_trips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 50,
        "seed corpus missing from {}",
        dir.display()
    );
    let iterations = setting("PGOUTPUT_FUZZ_ITERATIONS", 500_000);
    let seed = setting("PGOUTPUT_FUZZ_SEED", 0x5eed_f00d);
    let mut rng = Rng(seed | 1);
    let mut decoded = 0u64;
    for n in 0..iterations {
        let a = &seeds[rng.below(seeds.len())];
        let b = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, a, b);
        let result = std::panic::catch_unwind(|| check(&input));
        if let Err(panic) = result {
            panic!(
                "iteration {n} (PGOUTPUT_FUZZ_SEED={seed}): input {input:02x?} panicked: {:?}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
            );
        }
        if decode_with(&Bytes::from(input), DecodeContext { in_stream: false }).is_ok() {
            decoded += 1;
        }
    }
    // Mutations that keep a message valid exercise the round trip, not only the error paths.
    assert!(
        decoded > iterations / 100,
        "only {decoded} of {iterations} mutated inputs decoded"
    );
}
