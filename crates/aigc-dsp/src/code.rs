//! Protection of a 64-bit payload: a keyed 40-bit check is appended, the 104 bits are encoded
//! with the rate-1/2, constraint-length-7 convolutional code (generators 171, 133 octal, the
//! NASA/CCSDS code) with a zero tail, and decoded by soft-decision Viterbi.
//!
//! Detection is claimed only when the decoded check matches. For content that carries no mark
//! (or a mark under another key), the decoded bits are unrelated to the keyed check, so each
//! decoding attempt passes with probability 2^-40; a detector that tries `n` alignments reports
//! `n * 2^-40` as its false-positive probability (about 9e-13 per attempt).
//!
//! [`decode_list`] keeps the `L` best paths instead of one and returns the first whose check
//! matches: on noisy readings (soft values about one noise deviation from zero) that reads
//! about twice as many payloads as the best path alone, for `L` attempts' worth of
//! false-positive probability.

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
    decode_list(key, soft, payload_bits, 1)
}

/// List Viterbi decoding: the `list` most likely messages are found (parallel list Viterbi,
/// `list` survivors per state), and the first, best first, whose keyed check matches is
/// returned; when none does, the most likely one with `check_ok` false. A check that fails on
/// the best path but holds on a close second is how a noisy reading is still read: the code
/// alone cannot tell them apart, the 40-bit check can. Each entry of the list is one more
/// chance for unmarked content to pass, so a detector counts `list` attempts per call
/// ([`FP_PER_ATTEMPT`] each). It costs about `list` times plain Viterbi, so a detector tries
/// [`decode_wide`] first where a clean mark is the usual case.
pub fn decode_list(key: &[u8; 32], soft: &[f32], payload_bits: usize, list: usize) -> DecodedWide {
    let message_bits = payload_bits + CHECK_BITS + TAIL;
    assert_eq!(soft.len(), 2 * message_bits);
    assert!((1..=256).contains(&list), "a list of 1 to 256 paths");
    if soft.iter().any(|v| !v.is_finite()) {
        // A value that says nothing (silence read as 0/0) must not poison every path's metric.
        let finite: Vec<f32> = soft
            .iter()
            .map(|&v| if v.is_finite() { v } else { 0.0 })
            .collect();
        return decode_list(key, &finite, payload_bits, list);
    }
    const STATES: usize = 1 << (K - 1);
    let l = list;
    // Per state, `l` path metrics, best first (minus infinity: no path).
    let mut metric = vec![f32::NEG_INFINITY; STATES * l];
    metric[0] = 0.0;
    // Survivors: for each step, state and rank, the predecessor state and its rank.
    let mut back = vec![(0u8, 0u8); message_bits * STATES * l];
    let mut next = vec![f32::NEG_INFINITY; STATES * l];
    // The two output bits of every 7-bit register value, as branch-metric signs.
    let out_bits: Vec<[f32; 2]> = (0..1u32 << K)
        .map(|reg| {
            G.map(|g| {
                if (reg & g).count_ones() & 1 == 1 {
                    1.0
                } else {
                    -1.0
                }
            })
        })
        .collect();
    for (t, pair) in soft.chunks_exact(2).enumerate() {
        let tail = t >= payload_bits + CHECK_BITS;
        let back_t = &mut back[t * STATES * l..(t + 1) * STATES * l];
        for ns in 0..STATES {
            let b = ns & 1;
            let out = &mut next[ns * l..(ns + 1) * l];
            if tail && b == 1 {
                out.fill(f32::NEG_INFINITY);
                continue;
            }
            // The two states that lead to `ns`: its bits shifted right, either top bit.
            let (s0, s1) = (ns >> 1, (ns >> 1) | (STATES / 2));
            let bm = |s: usize| {
                let o = out_bits[(s << 1) | b];
                o[0] * pair[0] + o[1] * pair[1]
            };
            let (b0, b1) = (bm(s0), bm(s1));
            let (m0, m1) = (&metric[s0 * l..(s0 + 1) * l], &metric[s1 * l..(s1 + 1) * l]);
            // Merge the two sorted lists, keeping the best `l`; a list that runs out reads
            // as minus infinity.
            let (mut i, mut j) = (0, 0);
            let back_ns = &mut back_t[ns * l..(ns + 1) * l];
            for (o, bk) in out.iter_mut().zip(back_ns.iter_mut()) {
                let a = if i < l { m0[i] + b0 } else { f32::NEG_INFINITY };
                let c = if j < l { m1[j] + b1 } else { f32::NEG_INFINITY };
                if a >= c {
                    *o = a;
                    *bk = (s0 as u8, i as u8);
                    i += 1;
                } else {
                    *o = c;
                    *bk = (s1 as u8, j as u8);
                    j += 1;
                }
            }
        }
        std::mem::swap(&mut metric, &mut next);
    }
    let count = metric[..l]
        .iter()
        .take_while(|m| **m > f32::NEG_INFINITY)
        .count();
    let take = |bits: &[bool]| bits.iter().fold(0u128, |v, &b| (v << 1) | b as u128);
    let mut first = None;
    // Trace back from state 0 (the tail flushes the encoder), best path first.
    for rank in 0..count {
        let (mut s, mut r) = (0usize, rank);
        let mut msg = vec![false; message_bits];
        for t in (0..message_bits).rev() {
            msg[t] = s & 1 == 1;
            let (ps, pr) = back[(t * STATES + s) * l + r];
            (s, r) = (ps as usize, pr as usize);
        }
        let payload = take(&msg[..payload_bits]);
        let chk = take(&msg[payload_bits..payload_bits + CHECK_BITS]) as u64;
        let check_ok = chk == check(key, payload, payload_bits);
        if check_ok || first.is_none() {
            let re = encode_wide(key, payload, payload_bits);
            let agree = re
                .iter()
                .zip(soft)
                .filter(|(b, s)| **b == (**s > 0.0))
                .count();
            let d = DecodedWide {
                payload,
                payload_bits,
                check_ok,
                agreement: agree as f32 / soft.len() as f32,
            };
            if check_ok {
                return d;
            }
            first = Some(d);
        }
    }
    first.expect("state 0 is always reached")
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

    /// Soft values of `coded` at amplitude `snr` over unit noise (a sum of 12 uniforms).
    fn noisy(coded: &[bool], snr: f32, rng: &mut KeyedRng) -> Vec<f32> {
        coded
            .iter()
            .map(|&b| {
                let n = (0..12).map(|_| rng.next_f32()).sum::<f32>() - 6.0;
                if b {
                    snr + n
                } else {
                    n - snr
                }
            })
            .collect()
    }

    #[test]
    fn a_list_reads_what_the_best_path_alone_misses() {
        let key = [6u8; 32];
        let mut rng = KeyedRng::new(&key, "list");
        let (mut plain, mut listed, mut wrong) = (0, 0, 0);
        for i in 0..200u64 {
            let payload = 0x0123_4567_0000_0000 | i;
            let soft = noisy(&encode(&key, payload), 1.0, &mut rng);
            let one = decode_list(&key, &soft, 64, 1);
            let many = decode_list(&key, &soft, 64, 32);
            assert_eq!(one, decode_wide(&key, &soft, 64));
            plain += (one.check_ok && one.payload == payload as u128) as u32;
            listed += (many.check_ok && many.payload == payload as u128) as u32;
            wrong += (many.check_ok && many.payload != payload as u128) as u32;
            if one.check_ok {
                // The list starts with the best path.
                assert_eq!(one, many);
            }
        }
        // At this noise plain Viterbi reads under a third of the payloads and 32 paths about
        // two thirds (61 and 135 of 200 when written).
        assert!(plain < 100 && listed > plain + 40, "{plain} {listed}");
        assert_eq!(wrong, 0);
    }

    #[test]
    fn a_list_of_noise_passes_no_check() {
        let key = [7u8; 32];
        let mut rng = KeyedRng::new(&key, "list noise");
        for _ in 0..300 {
            let soft = noisy(&vec![false; CODED_BITS], 0.0, &mut rng);
            assert!(!decode_list(&key, &soft, 64, 64).check_ok);
            let wide = noisy(&vec![false; coded_bits(128)], 0.0, &mut rng);
            assert!(!decode_list(&key, &wide, 128, 64).check_ok);
        }
        // Values that say nothing (silence read as 0/0) are no values, not a panic.
        let mut soft = noisy(&encode(&key, 99), 3.0, &mut rng);
        soft[5] = f32::NAN;
        soft[6] = f32::INFINITY;
        let d = decode_list(&key, &soft, 64, 8);
        assert!(d.check_ok && d.payload == 99);
        assert!(!decode_list(&key, &[f32::NAN; CODED_BITS], 64, 8).check_ok);
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
