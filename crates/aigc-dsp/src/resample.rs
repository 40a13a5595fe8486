//! Changing a sound's sample rate for the detectors, which only look below 7.2 kHz: a streaming
//! decimator that brings any rate down to about 22 kHz before analysis (half the samples, FFTs
//! and memory at 44.1 kHz), and a band-limited reader at fractional positions for the
//! playback-speed search.
//!
//! Both are Kaiser-windowed sinc filters. A linear interpolation is not enough: at 0.33 of the
//! rate (7.2 kHz at 22 kHz) it loses up to 6 dB between samples, and the loss comes and goes
//! as the reading position drifts, which is noise to a detector that reads magnitudes.

/// The lowest rate the decimator brings a sound down to: the filter stays flat to 0.77 of the
/// Nyquist frequency (7.3 kHz at 19 kHz), above everything the detectors read (7.2 kHz for the
/// watermark, 5 kHz for the rhythm label's loudness).
pub const MIN_ANALYSIS_RATE: u32 = 19000;

/// The decimation factor that brings `sample_rate` closest to [`MIN_ANALYSIS_RATE`] without
/// going under it: 2 at 44.1 and 48 kHz, 5 at 96 kHz, 1 (unchanged) at 32 kHz and under.
pub fn decimation_for(sample_rate: u32) -> usize {
    (sample_rate / MIN_ANALYSIS_RATE).max(1) as usize
}

/// Taps per unit of the decimation factor. With a Kaiser window of beta 5.65 (about 60 dB
/// stop band) this puts the transition band between 0.77 and 1.23 times the output's Nyquist
/// frequency: at 44.1 kHz in (factor 2), flat to 8.5 kHz, and everything that would fold back
/// under 8.5 kHz attenuated by 60 dB.
const TAPS_PER_FACTOR: usize = 16;
const DECIMATOR_BETA: f64 = 5.65;

/// Low-pass filtering and keeping one sample in `factor`, a chunk at a time, so a long file
/// never has to be held at its full rate. Output sample `j` is centred on input sample
/// `j * factor` (no delay), and `n` input samples give `ceil(n / factor)` output samples.
pub struct Decimator {
    factor: usize,
    taps: Vec<f32>,
    /// Input not yet consumed, starting `taps.len() / 2` samples before the next output's
    /// centre (zeros before the sound's start).
    pending: Vec<f32>,
    /// Input samples seen, and output samples given.
    seen: usize,
    given: usize,
}

impl Decimator {
    /// A decimator by `factor` (see [`decimation_for`]); 1 passes the sound through.
    pub fn new(factor: usize) -> Decimator {
        let factor = factor.max(1);
        let taps = if factor == 1 {
            vec![1.0]
        } else {
            windowed_sinc(
                TAPS_PER_FACTOR * factor,
                1.0 / factor as f64,
                DECIMATOR_BETA,
            )
        };
        let pending = vec![0.0; taps.len() / 2];
        Decimator {
            factor,
            taps,
            pending,
            seen: 0,
            given: 0,
        }
    }

    /// Filters `input` and appends the output samples it completes to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.seen += input.len();
        if self.factor == 1 {
            out.extend_from_slice(input);
            self.given += input.len();
            return;
        }
        self.pending.extend_from_slice(input);
        self.drain(out);
    }

    /// Appends the last output samples, reading zeros past the end of the sound.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let due = self.seen.div_ceil(self.factor);
        if self.factor == 1 || self.given >= due {
            return;
        }
        self.pending
            .resize(self.pending.len() + self.taps.len(), 0.0);
        self.drain(out);
        out.truncate(out.len() - self.given.saturating_sub(due));
        self.given = due;
    }

    fn drain(&mut self, out: &mut Vec<f32>) {
        let n = self.taps.len();
        let mut at = 0;
        while at + n <= self.pending.len() {
            out.push(dot(&self.taps, &self.pending[at..at + n]));
            at += self.factor;
            self.given += 1;
        }
        self.pending.drain(..at);
    }
}

/// Reads `x` at positions `i * f` for as long as they fall inside it, through a band-limited
/// interpolator (32 taps, Kaiser window, 512 phases). `f > 1` undoes a slow-down, as a
/// resampler from rate `r` to `r / f` that keeps the rate's label would. Content up to 0.42 of
/// the rate passes within 0.1 dB; the detectors put nothing above 0.39.
pub fn read_stretched(x: &[f32], f: f64) -> Vec<f32> {
    const TAPS: usize = 16;
    const PHASES: usize = 512;
    thread_local! {
        static TABLE: Vec<f32> = {
            // One long windowed sinc sampled PHASES times per input sample; phase p's taps are
            // every PHASES-th value from p.
            let long = windowed_sinc(TAPS * PHASES, 1.0 / PHASES as f64, 4.55);
            let mut t = vec![0f32; TAPS * PHASES];
            for p in 0..PHASES {
                for k in 0..TAPS {
                    // Tap k of phase p weighs x[i - TAPS/2 + 1 + k] for a position i + p/PHASES.
                    let j = (k * PHASES + PHASES - p) % (TAPS * PHASES);
                    t[p * TAPS + k] = long[j] * PHASES as f32;
                }
            }
            t
        };
    }
    let n = ((x.len() as f64 - 1.0) / f).floor().max(0.0) as usize;
    // Zeros either side, so every reading has its 16 samples without a test.
    let mut padded = vec![0f32; x.len() + 2 * TAPS];
    padded[TAPS..TAPS + x.len()].copy_from_slice(x);
    // Positions in 32.32 fixed point: whole samples and the nearest of the 512 phases come
    // from shifts, where float-to-index conversions cost more than the filter itself.
    const PHASE_SHIFT: u32 = 32 - PHASES.trailing_zeros();
    let step = (f * (1u64 << 32) as f64).round() as u64;
    let mut pos = 1u64 << (PHASE_SHIFT - 1);
    let mut out = Vec::with_capacity(n);
    TABLE.with(|table| {
        for _ in 0..n {
            let q = (pos >> PHASE_SHIFT) as usize;
            let (base, p) = (q / PHASES, q % PHASES);
            // Tap k reads x[base - TAPS/2 + 1 + k], which is padded[base + TAPS/2 + 1 + k].
            let first = base + TAPS / 2 + 1;
            out.push(dot16(
                table[p * TAPS..(p + 1) * TAPS].try_into().expect("16 taps"),
                padded[first..first + TAPS].try_into().expect("16 samples"),
            ));
            pos += step;
        }
    });
    out
}

/// A low-pass FIR of `len` taps with its cutoff at `cutoff` times the Nyquist frequency and
/// unit gain at DC. Tap `len / 2` is its centre; with `len` even the first tap, which the
/// window brings to almost nothing, has no partner at the other end.
fn windowed_sinc(len: usize, cutoff: f64, beta: f64) -> Vec<f32> {
    let centre = (len / 2) as f64;
    let half = centre.max(1.0);
    let i0_beta = bessel_i0(beta);
    let raw: Vec<f64> = (0..len)
        .map(|i| {
            let t = i as f64 - centre;
            let sinc = if t == 0.0 {
                1.0
            } else {
                let a = std::f64::consts::PI * cutoff * t;
                a.sin() / a
            };
            let r = (t / half).clamp(-1.0, 1.0);
            let w = bessel_i0(beta * (1.0 - r * r).sqrt()) / i0_beta;
            cutoff * sinc * w
        })
        .collect();
    raw.iter().map(|&v| v as f32).collect()
}

/// The modified Bessel function of the first kind, order 0 (the Kaiser window's shape).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..50 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-16 {
            break;
        }
    }
    sum
}

/// [`dot`] for 16 values: four vector multiplications and additions. Kept out of line:
/// inlined into the interpolator's loop, the compiler turned it into sixteen scalar ones,
/// which made that loop a fifth of a detection's time.
#[inline(never)]
fn dot16(a: &[f32; 16], b: &[f32; 16]) -> f32 {
    let mut acc = [0f32; 4];
    for g in 0..4 {
        for l in 0..4 {
            acc[l] += a[4 * g + l] * b[4 * g + l];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}

/// A dot product in four lanes (one SSE register), which the compiler vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: f64, n: usize, phase: f64) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / rate + phase).sin() as f32)
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn decimating_keeps_the_band_and_removes_what_would_fold_back() {
        let n = 44100;
        for (freq, kept) in [
            (600.0, true),
            (7200.0, true),
            (14000.0, false),
            (20000.0, false),
        ] {
            let x = tone(freq, 44100.0, n, 0.3);
            let mut d = Decimator::new(decimation_for(44100));
            let mut y = Vec::new();
            // Uneven chunks: the output must not depend on how the input arrives.
            for part in x.chunks(1000 + 37) {
                d.push(part, &mut y);
            }
            d.finish(&mut y);
            assert_eq!(y.len(), n.div_ceil(2));
            let mid = &y[200..y.len() - 200];
            if kept {
                let want = tone(freq, 22050.0, y.len(), 0.3);
                let err: Vec<f32> = mid.iter().zip(&want[200..]).map(|(a, b)| a - b).collect();
                assert!(rms(&err) < 0.01, "{freq} Hz: error rms {}", rms(&err));
            } else {
                assert!(rms(mid) < 0.002, "{freq} Hz: {} left", rms(mid));
            }
        }
    }

    #[test]
    fn a_factor_of_one_passes_the_sound_through() {
        let x = tone(440.0, 8000.0, 1000, 0.0);
        let mut d = Decimator::new(decimation_for(8000));
        let mut y = Vec::new();
        d.push(&x, &mut y);
        d.finish(&mut y);
        assert_eq!(y, x);
        assert_eq!(decimation_for(44100), 2);
        assert_eq!(decimation_for(48000), 2);
        assert_eq!(decimation_for(32000), 1);
        assert_eq!(decimation_for(96000), 5);
    }

    #[test]
    fn stretched_reading_matches_the_slower_tone() {
        // A 4 kHz tone at 11.025 kHz read 1% faster is a 4.04 kHz tone.
        let rate = 11025.0;
        let x = tone(4000.0, rate, 20000, 0.0);
        for f in [1.01, 0.995, 1.0] {
            let y = read_stretched(&x, f);
            let want = tone(4000.0 * f, rate, y.len(), 0.0);
            let err: Vec<f32> = y[100..y.len() - 100]
                .iter()
                .zip(&want[100..])
                .map(|(a, b)| a - b)
                .collect();
            assert!(rms(&err) < 0.01, "factor {f}: error rms {}", rms(&err));
        }
    }
}
