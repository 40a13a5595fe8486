//! The signal-processing core shared by the aigc-label watermarks. It never touches files or
//! containers: it turns keys into patterns, payloads into protected codewords and back, and
//! runs the FFTs.
//!
//! * [`KeyedRng`]: the keyed pseudo-random generator every pattern is drawn from.
//! * [`RealFft2`]: 2-D real FFTs with plans and scratch made once and reused (rustfft + realfft).
//! * [`code`]: the payload's protection (a keyed 40-bit check and a rate-1/2, K=7 convolutional
//!   code) with soft-decision Viterbi decoding and the false-positive probability of a detection.
//! * [`resample`]: the streaming decimator and band-limited stretched reading the audio
//!   detectors run on.

pub mod code;
mod fft2;
pub mod resample;
mod rng;

pub use fft2::RealFft2;
pub use rng::KeyedRng;
pub use rustfft::num_complex::Complex32;

/// A 32-byte watermark key.
pub type Key = [u8; 32];

/// The documented public key used when none is given, so any platform can detect marks made
/// without a private key: SHA-256 of the ASCII text `aigc-label public watermark key v1`.
pub fn public_key() -> Key {
    use sha2::{Digest, Sha256};
    Sha256::digest(b"aigc-label public watermark key v1").into()
}

/// The default payload for a label: the first 64 bits of SHA-256 of its ProduceID, so a file
/// whose metadata was stripped still links back to the provider's log.
/// The first 128 bits of SHA-256 of the ProduceID: the default 128-bit (audio) payload.
pub fn payload_for_id_wide(produce_id: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(produce_id.as_bytes());
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

/// The first 64 bits of SHA-256 of the ProduceID: the default payload.
pub fn payload_for_id(produce_id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(produce_id.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}
