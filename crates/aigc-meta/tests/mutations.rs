//! Corrupted variants of every sample (flipped bytes, truncations, huge size fields) go through
//! every handler's scan and write: errors are fine, panics are not.

use aigc_meta::{detect, WriteOptions};
use std::io::Cursor;
use std::path::Path;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(orig: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let mut b = orig.to_vec();
    // Damage concentrates on the first 8 KiB, where the structure lives.
    let hot = b.len().min(8192);
    match rng.below(4) {
        0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let i = rng.below(hot);
                b[i] ^= 1 << rng.below(8);
            }
            (b, format!("{n} bit flips"))
        }
        1 => {
            let at = rng.below(b.len());
            b.truncate(at);
            (b, format!("truncated at {at}"))
        }
        2 => {
            let i = rng.below(hot.saturating_sub(4));
            let v = [0xFF, 0xFF, 0xFF, 0xF0, 0x7F, 0x00][rng.below(6)];
            b[i..i + 4].fill(v);
            (b, format!("4 bytes at {i} set to {v:#x}"))
        }
        _ => {
            let i = rng.below(hot);
            let j = rng.below(hot);
            b.swap(i, j);
            (b, format!("bytes {i} and {j} swapped"))
        }
    }
}

#[test]
fn no_corruption_makes_a_handler_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let label = r#"{"Label":"1","ContentProducer":"001191110102MACQD9K64010000","ProduceID":"x","ReservedCode1":"","ContentPropagator":"","PropagateID":"","ReservedCode2":""}"#;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut tried = 0;
    for dir in ["samples", "samples-av"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let orig = std::fs::read(&path).unwrap();
            let handler =
                detect(&orig).unwrap_or_else(|| panic!("{} not detected", path.display()));
            for _ in 0..150 {
                let (bytes, what) = mutate(&orig, &mut rng);
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _ = handler.scan(&mut Cursor::new(&bytes[..]));
                    let mut out = Cursor::new(Vec::new());
                    let _ = handler.write(
                        &mut Cursor::new(&bytes[..]),
                        &mut out,
                        label,
                        &WriteOptions::default(),
                    );
                }));
                assert!(outcome.is_ok(), "{} with {what}: panicked", path.display());
                tried += 1;
            }
        }
    }
    assert!(tried >= 3000, "{tried}");
}
