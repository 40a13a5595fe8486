//! The audible rhythm label of GB 45438: Morse "AI" (`.- ..`, "short-long short-short") as a
//! tone, and finding it again.
//!
//! Timing follows Morse ratios: a dash is three dots, the gap inside a letter one dot, the gap
//! between letters three. Each tone rises and falls over 5 ms (raised cosine) so it never
//! clicks. The detector follows, for every frequency in 300 Hz-3 kHz, the share of the
//! frame's energy that sits at that frequency, cuts it into on/off runs and looks for four
//! runs in the ratios 1:3:1:1 separated by gaps of 1:3:1, quiet before and after.

use crate::mix::Samples;
use crate::Pcm;
use realfft::RealFftPlanner;
use std::borrow::Cow;

/// Where and how the tone goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RhythmStyle {
    pub frequency_hz: f32,
    pub dot_ms: f32,
    /// Peak level of the tone, dB relative to full scale.
    pub level_dbfs: f32,
    pub placement: Placement,
    /// Insert the tone (with a pause) instead of mixing it over what is there.
    pub insert: bool,
}

/// Where the tone goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Placement {
    Start,
    End,
    /// At this many seconds from the start.
    At(f64),
}

impl Default for RhythmStyle {
    fn default() -> Self {
        RhythmStyle {
            frequency_hz: 800.0,
            dot_ms: 120.0,
            level_dbfs: -12.0,
            placement: Placement::Start,
            insert: true,
        }
    }
}

/// On/off durations in dots: tone, gap, tone, ... for `.- ..`.
const PATTERN: [(bool, u32); 7] = [
    (true, 1),
    (false, 1),
    (true, 3),
    (false, 3),
    (true, 1),
    (false, 1),
    (true, 1),
];
const PATTERN_DOTS: u32 = 11;
/// Silence around an inserted tone, in dots.
const PAD_DOTS: u32 = 3;

/// Samples per Morse dot.
fn dot_len(style: &RhythmStyle, sample_rate: u32) -> usize {
    (style.dot_ms as f64 / 1000.0 * sample_rate as f64).round() as usize
}

impl Placement {
    /// The sample where this placement falls, `end` standing for the end.
    pub fn sample(self, sample_rate: u32, end: usize) -> usize {
        match self {
            Placement::Start => 0,
            Placement::End => end,
            Placement::At(s) => (s * sample_rate as f64) as usize,
        }
    }
}

/// Where a tone mixed over sound of `stated_len` samples (as its file states, when it does)
/// starts: at its placement, the end meaning that it ends with the sound.
pub fn mixed_start(style: &RhythmStyle, sample_rate: u32, stated_len: Option<usize>) -> usize {
    let tone = dot_len(style, sample_rate) * PATTERN_DOTS as usize;
    style
        .placement
        .sample(sample_rate, stated_len.unwrap_or(0).saturating_sub(tone))
}

/// The tone alone, at `sample_rate`, without padding.
pub fn tone(style: &RhythmStyle, sample_rate: u32) -> Vec<f32> {
    let dot = dot_len(style, sample_rate);
    let amp = 10f32.powf(style.level_dbfs / 20.0);
    let ramp = ((0.005 * sample_rate as f64) as usize).clamp(1, dot / 3 + 1);
    let w = 2.0 * std::f64::consts::PI * style.frequency_hz as f64 / sample_rate as f64;
    let mut out = Vec::with_capacity(dot * PATTERN_DOTS as usize);
    for (on, dots) in PATTERN {
        let n = dot * dots as usize;
        for i in 0..n {
            if !on {
                out.push(0.0);
                continue;
            }
            let edge = i.min(n - 1 - i);
            let g = if edge < ramp {
                0.5 - 0.5 * (std::f32::consts::PI * edge as f32 / ramp as f32).cos()
            } else {
                1.0
            };
            let t = out.len();
            out.push(amp * g * (w * t as f64).sin() as f32);
        }
    }
    out
}

/// The tone as inserted: with a pause of three dots before and after. Returns the block and
/// where in it the tone starts.
pub fn inserted_tone(style: &RhythmStyle, sample_rate: u32) -> (Vec<f32>, usize) {
    let dot = dot_len(style, sample_rate);
    let pad = dot * PAD_DOTS as usize;
    let mut block = vec![0f32; pad];
    block.extend_from_slice(&tone(style, sample_rate));
    block.extend(std::iter::repeat_n(0.0, pad));
    (block, pad)
}

/// Adds the rhythm label to `pcm` (every channel). Returns where the tone starts, in seconds.
pub fn apply(pcm: &mut Pcm, style: &RhythmStyle) -> f64 {
    let sr = pcm.sample_rate;
    let t = tone(style, sr);
    let len = pcm.len();
    let at = style.placement.sample(sr, len).min(len);
    if style.insert {
        let (block, lead) = inserted_tone(style, sr);
        for c in &mut pcm.channels {
            c.splice(at..at, block.iter().copied());
        }
        (at + lead) as f64 / sr as f64
    } else {
        // Mixed over what is there (the sound ducked beneath it); at the end, over the last
        // stretch of the audio.
        let start = at.min(len.saturating_sub(t.len()));
        let duck = Duck::new(style, sr, t.len());
        let (from, to) = duck.reach(start, len);
        for c in &mut pcm.channels {
            for (i, v) in c.iter_mut().enumerate().take(to).skip(from) {
                *v *= duck.gain(i as isize - start as isize);
            }
            for (v, s) in c[start..].iter_mut().zip(&t) {
                *v += s;
            }
        }
        start as f64 / sr as f64
    }
}

/// How the sound is lowered under a mixed tone, so the label is heard over loud music and its
/// pauses stay pauses: 20 dB down from two dots before the tone to two dots after, easing in
/// and out over 50 ms (raised cosine) so nothing clicks.
#[derive(Clone, Copy, Debug)]
pub struct Duck {
    /// Samples held down before the tone starts and after it ends.
    pad: usize,
    ramp: usize,
    tone_len: usize,
}

/// The ducked sound's gain under the tone.
const DUCK_GAIN: f32 = 0.1;

impl Duck {
    pub fn new(style: &RhythmStyle, sample_rate: u32, tone_len: usize) -> Duck {
        let dot = dot_len(style, sample_rate);
        Duck {
            pad: 2 * dot,
            ramp: ((0.05 * sample_rate as f64) as usize).max(1),
            tone_len,
        }
    }

    /// The samples the duck touches for a tone starting at `start`, within `len`.
    pub fn reach(&self, start: usize, len: usize) -> (usize, usize) {
        let before = self.pad + self.ramp;
        (
            start.saturating_sub(before),
            (start + self.tone_len + before).min(len),
        )
    }

    /// The sound's gain at `offset` samples from the tone's start (negative: before it).
    pub fn gain(&self, offset: isize) -> f32 {
        let (pad, ramp) = (self.pad as isize, self.ramp as isize);
        let end = self.tone_len as isize;
        // Distance outside the held-down span, in samples.
        let out = if offset < -pad {
            -pad - offset
        } else if offset >= end + pad {
            offset - (end + pad) + 1
        } else {
            0
        };
        if out >= ramp {
            return 1.0;
        }
        let shape = 0.5 - 0.5 * (std::f32::consts::PI * out as f32 / ramp as f32).cos();
        DUCK_GAIN + (1.0 - DUCK_GAIN) * shape
    }
}

/// Where a voice prompt goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoiceAt {
    Start,
    End,
}

/// Inserts a recorded voice prompt (e.g. "本内容由人工智能生成") at the start or the end, with a
/// 0.3 s pause between it and the audio. The prompt is resampled to the audio's rate
/// (windowed sinc) and spread over its channels (mono to all; otherwise channel by channel, the
/// mix when the audio is mono). Returns where it starts, in seconds.
pub fn insert_voice(pcm: &mut Pcm, voice: &Pcm, at: VoiceAt) -> f64 {
    let sr = pcm.sample_rate;
    let len = pcm.len();
    let (block, lead) = voice_block(voice, sr, pcm.channels.len(), at);
    for (c, b) in pcm.channels.iter_mut().zip(block) {
        match at {
            VoiceAt::Start => {
                c.splice(0..0, b);
            }
            VoiceAt::End => c.extend(b),
        }
    }
    match at {
        VoiceAt::Start => 0.0,
        VoiceAt::End => (len + lead) as f64 / sr as f64,
    }
}

/// The voice prompt as inserted at `at` into sound of `channels` at `sample_rate`: resampled,
/// spread over the channels, with a 0.3 s pause after it (at the start) or before it (at the
/// end). Returns the block (planar) and where in it the voice starts.
pub fn voice_block(
    voice: &Pcm,
    sample_rate: u32,
    channels: usize,
    at: VoiceAt,
) -> (Vec<Vec<f32>>, usize) {
    let mono = voice.mono();
    let pause = (0.3 * sample_rate as f64) as usize;
    let block = (0..channels)
        .map(|c| {
            let src = if voice.channels.len() == 1 || channels == 1 {
                &mono
            } else {
                &voice.channels[c.min(voice.channels.len() - 1)]
            };
            let v = resample_sinc(src, voice.sample_rate, sample_rate);
            let mut b = Vec::with_capacity(v.len() + pause);
            if at == VoiceAt::End {
                b.extend(std::iter::repeat_n(0.0, pause));
            }
            b.extend_from_slice(&v);
            if at == VoiceAt::Start {
                b.extend(std::iter::repeat_n(0.0, pause));
            }
            b
        })
        .collect();
    (block, if at == VoiceAt::End { pause } else { 0 })
}

/// Band-limited resampling from `from` Hz to `to` Hz: a Hann-windowed sinc, 16 zero crossings
/// a side, its cut-off at the lower of the two Nyquist frequencies.
pub fn resample_sinc(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || x.is_empty() {
        return x.to_vec();
    }
    const HALF: f64 = 16.0;
    let ratio = to as f64 / from as f64;
    let cutoff = ratio.min(1.0);
    let n = (x.len() as f64 * ratio).round() as usize;
    let reach = (HALF / cutoff).ceil() as i64;
    (0..n)
        .map(|i| {
            let centre = i as f64 / ratio;
            let k0 = centre.floor() as i64;
            let mut acc = 0.0;
            for k in k0 - reach + 1..=k0 + reach {
                if k < 0 || k as usize >= x.len() {
                    continue;
                }
                let d = (centre - k as f64) * cutoff;
                if d.abs() >= HALF {
                    continue;
                }
                let sinc = if d == 0.0 {
                    1.0
                } else {
                    (std::f64::consts::PI * d).sin() / (std::f64::consts::PI * d)
                };
                let w = 0.5 + 0.5 * (std::f64::consts::PI * d / HALF).cos();
                acc += x[k as usize] as f64 * sinc * w * cutoff;
            }
            acc as f32
        })
        .collect()
}

/// A rhythm label found in the audio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RhythmFound {
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub frequency_hz: f32,
    pub dot_ms: f32,
}

/// Frames per second of the detector's energy track.
const TRACK_RATE: f64 = 200.0;

/// Frames of the energy track read from the sound at a time (20 s).
const TRACK_BLOCK: usize = 4000;

/// Looks for `.- ..` as a tone anywhere in `mono`. Returns every occurrence.
pub fn detect(mono: &[f32], sample_rate: u32) -> Vec<RhythmFound> {
    detect_in(mono, sample_rate)
}

/// [`detect`] on sound read a span at a time (a [`crate::mix::Mix`] may live on disk).
pub fn detect_in<S: Samples + ?Sized>(sound: &S, sample_rate: u32) -> Vec<RhythmFound> {
    let hop = (sample_rate as f64 / TRACK_RATE).round() as usize;
    let n = (hop * 8).next_power_of_two();
    if sound.len() < n {
        return Vec::new();
    }
    let bin_hz = sample_rate as f32 / n as f32;
    let lo = (300.0 / bin_hz) as usize;
    let hi = ((3000.0 / bin_hz) as usize).min(n / 2 - 2);
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let window: Vec<f32> = (0..n)
        .map(|i| (std::f32::consts::PI * i as f32 / n as f32).sin().powi(2))
        .collect();
    let mut buf = fft.make_input_vec();
    let mut spec = fft.make_output_vec();
    let frames = (sound.len() - n) / hop + 1;
    // above[k]: one bit per frame, set where bins k-1..=k+1 hold more than half the energy
    // of 100 Hz .. 5 kHz. Bits, not the shares, so an hour of sound costs 11 MB, not 360.
    let total_lo = (100.0 / bin_hz) as usize;
    let total_hi = ((5000.0 / bin_hz) as usize).min(n / 2);
    let words = frames.div_ceil(64);
    let mut above = vec![vec![0u64; words]; hi - lo];
    let mut level = vec![0f32; frames];
    let mut e = vec![0f32; n / 2 + 1];
    let mut block = Cow::Borrowed(&[][..]);
    for t in 0..frames {
        if t % TRACK_BLOCK == 0 {
            let last = (t + TRACK_BLOCK).min(frames) - 1;
            block = sound.read(t * hop, last * hop + n - t * hop);
        }
        let at = (t % TRACK_BLOCK) * hop;
        for i in 0..n {
            buf[i] = block[at + i] * window[i];
        }
        fft.process(&mut buf, &mut spec)
            .expect("sizes from the plan");
        for (d, s) in e.iter_mut().zip(&spec) {
            *d = s.norm_sqr();
        }
        let total: f32 = e[total_lo..total_hi].iter().sum::<f32>() + 1e-9 * n as f32;
        level[t] = total;
        for k in lo..hi {
            if (e[k - 1] + e[k] + e[k + 1]) / total > 0.5 {
                above[k - lo][t / 64] |= 1 << (t % 64);
            }
        }
    }
    // A frame counts as "on" only when it is loud enough to be heard (40 dB under the loudest
    // frame at most): in the silence between tones a codec's faint noise can sit anywhere.
    let loudest = level.iter().copied().fold(0.0, f32::max);
    let audible: Vec<bool> = level.iter().map(|&l| l > loudest * 1e-4).collect();
    let mut found: Vec<RhythmFound> = Vec::new();
    for (kk, bits) in above.iter().enumerate() {
        if bits.iter().all(|&w| w == 0) {
            continue;
        }
        let on: Vec<f32> = (0..frames)
            .map(|t| {
                if audible[t] && bits[t / 64] >> (t % 64) & 1 == 1 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        // A one-frame dropout or blip is codec noise, not rhythm: median of three.
        let on: Vec<f32> = (0..on.len())
            .map(|t| {
                let a = on[t.saturating_sub(1)];
                let c = on[(t + 1).min(on.len() - 1)];
                if a + on[t] + c >= 2.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let runs = runs(&on, 0.5);
        for w in 0..runs.len().saturating_sub(3) {
            let r = &runs[w..w + 4];
            if let Some(dot) = morse_ai(r) {
                // Quiet at this frequency for two dots before and after.
                let margin = (2.0 * dot) as usize;
                let clear_before = w == 0 || runs[w - 1].1 + margin <= r[0].0;
                let clear_after = w + 4 >= runs.len() || runs[w + 4].0 >= r[3].1 + margin;
                if !(clear_before && clear_after) {
                    continue;
                }
                let start = (r[0].0 * hop + n / 2) as f64 / sample_rate as f64;
                let end = (r[3].1 * hop + n / 2) as f64 / sample_rate as f64;
                // One tone lights neighbouring bins: keep the first of overlapping finds.
                if found
                    .iter()
                    .any(|f| f.start_seconds < end && start < f.end_seconds)
                {
                    continue;
                }
                found.push(RhythmFound {
                    start_seconds: start,
                    end_seconds: end,
                    frequency_hz: (lo + kk) as f32 * bin_hz,
                    dot_ms: (dot * 1000.0 / TRACK_RATE) as f32,
                });
            }
        }
    }
    found.sort_by(|a, b| a.start_seconds.total_cmp(&b.start_seconds));
    found
}

/// Runs of `v > thr` as (first, one past last) frame.
fn runs(v: &[f32], thr: f32) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &x) in v.iter().enumerate() {
        match (x > thr, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, v.len()));
    }
    out
}

/// Four runs that read `.- ..`: returns the dot length in frames.
fn morse_ai(r: &[(usize, usize)]) -> Option<f64> {
    let len = |i: usize| (r[i].1 - r[i].0) as f64;
    let gap = |i: usize| (r[i + 1].0 - r[i].1) as f64;
    // The whole pattern spans 11 dots; that fixes the dot without trusting one run.
    let dot = (r[3].1 - r[0].0) as f64 / PATTERN_DOTS as f64;
    // 40 ms to 400 ms dots.
    if !(8.0..=80.0).contains(&dot) {
        return None;
    }
    let ok = |got: f64, dots: f64| (got - dots * dot).abs() <= 0.35 * dot + 2.0;
    (ok(len(0), 1.0)
        && ok(gap(0), 1.0)
        && ok(len(1), 3.0)
        && ok(gap(1), 3.0)
        && ok(len(2), 1.0)
        && ok(gap(2), 1.0)
        && ok(len(3), 1.0))
    .then_some(dot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_input_is_read_a_block_at_a_time_and_from_disk_alike() {
        // 45 s of faint noise with the tone across the 20 s boundary of the track's blocks.
        let sr = 11025;
        let mut rng = aigc_dsp::KeyedRng::new(&[2u8; 32], "rhythm blocks");
        let mut x: Vec<f32> = (0..sr as usize * 45)
            .map(|_| 1e-3 * (rng.next_f32() - 0.5))
            .collect();
        let at = 19.0;
        let t = tone(&RhythmStyle::default(), sr);
        let start = (at * sr as f64) as usize;
        for (v, s) in x[start..].iter_mut().zip(&t) {
            *v += s;
        }
        let held = detect(&x, sr);
        assert_eq!(held.len(), 1, "{held:?}");
        assert!((held[0].start_seconds - at).abs() < 0.03, "{held:?}");
        let mut w = crate::mix::MixWriter::holding(sr, 50_000);
        w.push(&x).unwrap();
        let spilled = w.finish().unwrap();
        assert!(spilled.is_spilled());
        assert_eq!(detect_in(&spilled, sr), held);
    }

    #[test]
    fn inserted_tone_is_found_where_it_was_put() {
        let sr = 44100;
        let mut pcm = Pcm {
            sample_rate: sr,
            channels: vec![vec![0.0; sr as usize * 3]; 2],
            damaged_packets: 0,
        };
        let style = RhythmStyle::default();
        let at = apply(&mut pcm, &style);
        let found = detect(&pcm.mono(), sr);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            (found[0].start_seconds - at).abs() < 0.03,
            "{found:?} vs {at}"
        );
        assert!((found[0].frequency_hz - 800.0).abs() < 30.0);
        assert!((found[0].dot_ms - 120.0).abs() < 10.0);
    }

    #[test]
    fn voice_prompt_is_resampled_and_placed() {
        let voice = Pcm {
            sample_rate: 16000,
            channels: vec![(0..16000).map(|i| (i as f32 * 0.2).sin() * 0.5).collect()],
            damaged_packets: 0,
        };
        let mut pcm = Pcm {
            sample_rate: 48000,
            channels: vec![vec![0.25; 48000]; 2],
            damaged_packets: 0,
        };
        let at = insert_voice(&mut pcm, &voice, VoiceAt::End);
        assert_eq!(pcm.len(), 48000 + 14400 + 48000);
        assert!((at - 1.3).abs() < 1e-9);
        // Same tone (0.2 rad per 16 kHz sample = 509 Hz), same level, on both channels.
        let tail = &pcm.channels[1][62400 + 4800..62400 + 43200];
        let peak = tail.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((peak - 0.5).abs() < 0.01, "{peak}");
        assert_eq!(pcm.channels[0][..48000], vec![0.25; 48000][..]);
    }

    #[test]
    fn other_rhythms_are_not_found() {
        let sr = 44100;
        for dots in [[1u32, 1, 1, 1], [3, 3, 1, 1], [1, 3, 3, 1]] {
            let mut x = vec![0f32; sr as usize];
            let dot = (0.12 * sr as f64) as usize;
            for d in dots {
                x.extend((0..d as usize * dot).map(|i| 0.3 * (i as f32 * 0.114).sin()));
                x.extend(std::iter::repeat_n(0.0, dot));
            }
            x.extend(vec![0.0; sr as usize]);
            assert!(detect(&x, sr).is_empty(), "{dots:?}");
        }
    }
}
