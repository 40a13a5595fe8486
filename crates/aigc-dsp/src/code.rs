//! Protection of a 64-bit payload: a keyed 40-bit check is appended, the 104 bits are encoded
//! with the rate-1/2, constraint-length-7 convolutional code (generators 171, 133 octal, the
//! NASA/CCSDS code) with a zero tail, and decoded by soft-decision Viterbi.
//!
//! Detection is claimed only when the decoded check matches. For content that carries no mark
//! (or a mark under another key), the decoded bits are unrelated to the keyed check, so each
//! decoding attempt passes with probability 2^-40; a detector that tries `n` alignments reports
//! `n * 2^-40` as its false-positive probability (about 9e-13 per attempt).

use sha2::{Digest, Sha256};

pub const PAYLOAD_BITS: usize = 64;
pub const CHECK_BITS: usize = 40;
const K: usize = 7;
const TAIL: usize = K - 1;
const G: [u32; 2] = [0o171, 0o133];
/// Message bits through the encoder, tail included.
pub const MESSAGE_BITS: usize = PAYLOAD_BITS + CHECK_BITS + TAIL;
/// Coded bits a carrier must hold.
pub const CODED_BITS: usize = 2 * MESSAGE_BITS;

/// The false-positive probability of one decoding attempt.
pub const FP_PER_ATTEMPT: f64 = 1.0 / (1u64 << CHECK_BITS) as f64;

/// The keyed check of a payload: the first 40 bits of SHA-256(key, tag, payload big-endian in
/// `bits / 8` bytes).
fn check(key: &[u8; 32], payload: u128, bits: usize) -> u64 {
    let mut h = Sha256::new();
    h.update(key);
    h.update(b"aigc-label check");
    h.update(&payload.to_be_bytes()[16 - bits / 8..]);
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> (64 - CHECK_BITS)
}

fn bits_of(v: u128, n: usize) -> impl Iterator<Item = bool> {
    (0..n).rev().map(move |i| (v >> i) & 1 == 1)
}

/// Coded bits a carrier must hold for a payload of `payload_bits` (64 or 128).
pub const fn coded_bits(payload_bits: usize) -> usize {
    2 * (payload_bits + CHECK_BITS + TAIL)
}

/// The coded bits for `payload` under `key`.
pub fn encode(key: &[u8; 32], payload: u64) -> Vec<bool> {
    encode_wide(key, payload as u128, PAYLOAD_BITS)
}

/// The coded bits for the low `payload_bits` (64 or 128) of `payload` under `key`.
pub fn encode_wide(key: &[u8; 32], payload: u128, payload_bits: usize) -> Vec<bool> {
    assert!(
        payload_bits == 64 || payload_bits == 128,
        "64 or 128 payload bits"
    );
    let msg: Vec<bool> = bits_of(payload, payload_bits)
        .chain(bits_of(
            check(key, payload, payload_bits) as u128,
            CHECK_BITS,
        ))
        .chain(std::iter::repeat_n(false, TAIL))
        .collect();
    let mut state = 0u32;
    let mut out = Vec::with_capacity(coded_bits(payload_bits));
    for b in msg {
        state = ((state << 1) | b as u32) & ((1 << K) - 1);
        for g in G {
            out.push((state & g).count_ones() & 1 == 1);
        }
    }
    out
}

/// The outcome of decoding soft values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decoded {
    pub payload: u64,
    /// The keyed check matched: the mark is present under this key.
    pub check_ok: bool,
    /// Share of coded bits whose hard decision agrees with the re-encoded decision.
    pub agreement: f32,
}

/// [`Decoded`] for a payload of 64 or 128 bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodedWide {
    pub payload: u128,
    pub payload_bits: usize,
    pub check_ok: bool,
    pub agreement: f32,
}

/// Soft-decision Viterbi decoding of [`CODED_BITS`] values (positive: 1, negative: 0, magnitude:
/// confidence).
pub fn decode(key: &[u8; 32], soft: &[f32]) -> Decoded {
    assert_eq!(soft.len(), CODED_BITS);
    let d = decode_wide(key, soft, PAYLOAD_BITS);
    Decoded {
        payload: d.payload as u64,
        check_ok: d.check_ok,
        agreement: d.agreement,
    }
}

/// Soft-decision Viterbi decoding of `coded_bits(payload_bits)` values.
pub fn decode_wide(key: &[u8; 32], soft: &[f32], payload_bits: usize) -> DecodedWide {
    let message_bits = payload_bits + CHECK_BITS + TAIL;
    assert_eq!(soft.len(), 2 * message_bits);
    const STATES: usize = 1 << (K - 1);
    let mut metric = [f32::NEG_INFINITY; STATES];
    metric[0] = 0.0;
    // Survivor bits: for each step and state, the predecessor state.
    let mut from = vec![[0u8; STATES]; message_bits];
    for (t, pair) in soft.chunks_exact(2).enumerate() {
        let mut next = [f32::NEG_INFINITY; STATES];
        let inputs: &[u32] = if t >= payload_bits + CHECK_BITS {
            &[0]
        } else {
            &[0, 1]
        };
        for (s, &m) in metric.iter().enumerate() {
            if m == f32::NEG_INFINITY {
                continue;
            }
            for &b in inputs {
                let reg = ((s as u32) << 1) | b;
                let mut bm = 0.0;
                for (i, g) in G.iter().enumerate() {
                    let out = (reg & g).count_ones() & 1;
                    bm += if out == 1 { pair[i] } else { -pair[i] };
                }
                let ns = (reg as usize) & (STATES - 1);
                if m + bm > next[ns] {
                    next[ns] = m + bm;
                    from[t][ns] = s as u8;
                }
            }
        }
        metric = next;
    }
    // Trace back from state 0 (the tail flushes the encoder).
    let mut s = 0usize;
    let mut msg = vec![false; message_bits];
    for t in (0..message_bits).rev() {
        msg[t] = s & 1 == 1;
        s = from[t][s] as usize;
    }
    let take = |bits: &[bool]| bits.iter().fold(0u128, |v, &b| (v << 1) | b as u128);
    let payload = take(&msg[..payload_bits]);
    let chk = take(&msg[payload_bits..payload_bits + CHECK_BITS]) as u64;
    let re = encode_wide(key, payload, payload_bits);
    let agree = re
        .iter()
        .zip(soft)
        .filter(|(b, s)| **b == (**s > 0.0))
        .count();
    DecodedWide {
        payload,
        payload_bits,
        check_ok: chk == check(key, payload, payload_bits),
        agreement: agree as f32 / soft.len() as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyedRng;

    #[test]
    fn decodes_through_noise_and_rejects_noise_and_other_keys() {
        const NOISE: f32 = 0.8;
        let key = [3u8; 32];
        let payload = 0x9f3a_1234_dead_beef;
        let coded = encode(&key, payload);
        assert_eq!(coded.len(), CODED_BITS);
        let mut rng = KeyedRng::new(&key, "noise");
        // Soft values at about 0 dB: 1 +- gaussian-ish noise of unit spread, ~16% hard errors.
        let soft: Vec<f32> = coded
            .iter()
            .map(|&b| {
                let n: f32 = ((0..12).map(|_| rng.next_f32()).sum::<f32>() - 6.0) * NOISE;
                if b {
                    1.0 + n
                } else {
                    -1.0 + n
                }
            })
            .collect();
        let d = decode(&key, &soft);
        assert_eq!(d.payload, payload);
        assert!(d.check_ok);
        assert!(
            !decode(&[4u8; 32], &soft).check_ok,
            "another key must not pass"
        );
        let mut fails = 0;
        for _ in 0..2000 {
            let noise: Vec<f32> = (0..CODED_BITS).map(|_| rng.next_f32() - 0.5).collect();
            fails += decode(&key, &noise).check_ok as u32;
        }
        assert_eq!(fails, 0);
    }

    #[test]
    fn wide_payload_round_trips_and_64_bit_codewords_are_unchanged() {
        let key = [9u8; 32];
        let wide = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128;
        let coded = encode_wide(&key, wide, 128);
        assert_eq!(coded.len(), coded_bits(128));
        let soft: Vec<f32> = coded.iter().map(|&b| if b { 0.7 } else { -0.7 }).collect();
        let d = decode_wide(&key, &soft, 128);
        assert!(d.check_ok);
        assert_eq!(d.payload, wide);
        // The 64-bit path is the same code as before the wide one existed.
        assert_eq!(encode(&key, 42), encode_wide(&key, 42, 64));
        assert_eq!(coded_bits(64), CODED_BITS);
    }
}
