//! Marking sound as it streams past, in bounded memory: for the soundtrack of a video, which
//! must keep its timing (so the rhythm label is mixed, never inserted) and may run for hours.
//!
//! [`StreamMarker`] takes planar chunks of any length and hands back marked chunks in order,
//! about 7 s behind. The watermark is the one of [`crate::watermark`], frame for frame. Its
//! strength is the whole file's when a pass before marking found it (an audio file,
//! [`watermark::StrengthScan`]); else (a video's soundtrack, read once) it is set per block of
//! one period (3.4 s) from all the sound so far, so it settles on the whole-file strength within
//! a few blocks (36 dB under the sound), never more than 1 dB over the target in a block of its
//! own, and it ramps between blocks so it never steps. The rhythm label is
//! mixed over the sound (ducked beneath it, [`rhythm::Duck`]) at a sample position fixed up
//! front, and the [`Limiter`] keeps every sample under full scale.

use crate::rhythm::{self, Duck, RhythmStyle};
use crate::watermark::{
    self, Embedded, Modulator, Pauses, Payload, WholeFileStrength, MAX_STRENGTH, PERIOD,
};
use aigc_dsp::Key;

/// A look-ahead limiter: the gain falls over 5 ms before a sample that would pass full scale
/// and recovers over 50 ms after, so nothing wraps or clips. Streams with a 40 ms delay.
pub struct Limiter {
    ceiling: f32,
    /// Samples of the backwards (attack) smoothing.
    attack: usize,
    /// Per-sample recovery towards unity.
    release: f32,
    /// How many samples are held back for the attack to see coming peaks.
    lookahead: usize,
    gain: f32,
    held: Vec<Vec<f32>>,
    /// The last held sample (index in `held`) that passes full scale, if any.
    last_over: Option<usize>,
    worst: f32,
    /// Per held sample, the gain; kept between calls so it is allocated once.
    gains: Vec<f32>,
}

impl Limiter {
    pub fn new(sample_rate: u32, channels: usize) -> Limiter {
        let sr = sample_rate as usize;
        let attack = (sr / 200).max(1);
        Limiter {
            ceiling: 0.999,
            attack,
            release: 1.0 / (sr / 20).max(1) as f32,
            // The attack's smoothing decays by e^-8 over this reach: nothing further ahead counts.
            lookahead: 8 * attack,
            gain: 1.0,
            held: vec![Vec::new(); channels],
            last_over: None,
            worst: 1.0,
            gains: Vec::new(),
        }
    }

    /// Takes `chunk` (planar) and hands every sample that no longer depends on what follows
    /// to `out`.
    pub fn push(&mut self, chunk: &[&[f32]], out: &mut dyn FnMut(&[&[f32]])) {
        let before = self.held[0].len();
        // Each sample is looked at once here for whether it passes full scale.
        let loud: Vec<bool> = chunk
            .iter()
            .map(|c| c.iter().fold(0f32, |m, v| m.max(v.abs())) > self.ceiling)
            .collect();
        let len = chunk.first().map_or(0, |c| c.len());
        if self.gain == 1.0
            && self.last_over.is_none()
            && !loud.contains(&true)
            && len >= self.lookahead
        {
            // Nothing near full scale held or in the chunk (the usual case): all but the last
            // look-ahead passes on as it is, without being copied in.
            let keep = len - self.lookahead;
            if before > 0 {
                self.hand_out(before, out);
            }
            if keep > 0 {
                let part: Vec<&[f32]> = chunk.iter().map(|c| &c[..keep]).collect();
                out(&part);
            }
            for (h, c) in self.held.iter_mut().zip(chunk) {
                h.extend_from_slice(&c[keep..]);
            }
            return;
        }
        for ((h, c), loud) in self.held.iter_mut().zip(chunk).zip(loud) {
            if loud {
                let last = c
                    .iter()
                    .rposition(|v| v.abs() > self.ceiling)
                    .expect("loud");
                self.last_over = Some(
                    self.last_over
                        .map_or(before + last, |l| l.max(before + last)),
                );
            }
            h.extend_from_slice(c);
        }
        let len = self.held[0].len();
        // Released in batches, so the backwards pass runs over each held sample a few times at most.
        if len >= 4 * self.lookahead {
            self.release_until(len - self.lookahead, out);
        }
    }

    /// Hands out what is still held.
    pub fn finish(&mut self, out: &mut dyn FnMut(&[&[f32]])) {
        let len = self.held[0].len();
        self.release_until(len, out);
    }

    /// The largest gain reduction so far, dB (0: none needed).
    pub fn reduction_db(&self) -> f32 {
        -20.0 * self.worst.log10()
    }

    fn release_until(&mut self, n: usize, out: &mut dyn FnMut(&[&[f32]])) {
        if n == 0 {
            return;
        }
        if self.gain == 1.0 && self.last_over.is_none() {
            // Nothing near full scale (the usual case): pass the samples through as they are.
            self.hand_out(n, out);
            return;
        }
        // The gain each sample needs: the ceiling over its loudest channel's level, computed
        // channel by channel so the loops vectorise.
        let mut gains = std::mem::take(&mut self.gains);
        gains.clear();
        gains.extend(self.held[0].iter().map(|v| v.abs()));
        for c in &self.held[1..] {
            for (g, v) in gains.iter_mut().zip(c) {
                *g = g.max(v.abs());
            }
        }
        let ceiling = self.ceiling;
        for g in gains.iter_mut() {
            *g = if *g > ceiling { ceiling / *g } else { 1.0 };
        }
        // Backwards: every sample's gain reaches `attack` samples ahead (a smoothed running
        // minimum), so the gain is already down when the peak arrives.
        let step = 1.0 / self.attack as f32;
        let mut next = 1.0f32;
        for g in gains.iter_mut().rev() {
            // Far from any peak nothing changes (most samples, even in loud music): skip.
            if next == 1.0 && *g == 1.0 {
                continue;
            }
            next += (1.0 - next) * step;
            // In f32 the approach to unity stalls a few millionths short: snap, so sound far
            // from any peak passes untouched.
            if next > 1.0 - 1e-5 {
                next = 1.0;
            }
            if *g < next {
                next = *g;
            }
            *g = next;
        }
        // Forwards: recover towards unity over the release time, never above what is needed.
        let (mut gain, mut worst) = (self.gain, self.worst);
        for g in gains[..n].iter_mut() {
            if gain == 1.0 && *g == 1.0 {
                continue;
            }
            gain += (1.0 - gain) * self.release;
            if gain > 1.0 - 1e-5 {
                gain = 1.0;
            }
            if *g < gain {
                gain = *g;
            }
            *g = gain;
            worst = worst.min(gain);
        }
        (self.gain, self.worst) = (gain, worst);
        for c in self.held.iter_mut() {
            for (x, g) in c[..n].iter_mut().zip(&gains) {
                *x = (*x * g).clamp(-ceiling, ceiling);
            }
        }
        self.gains = gains;
        self.hand_out(n, out);
    }

    /// Passes the first `n` held samples to `out` and lets them go.
    fn hand_out(&mut self, n: usize, out: &mut dyn FnMut(&[&[f32]])) {
        let part: Vec<&[f32]> = self.held.iter().map(|c| &c[..n]).collect();
        out(&part);
        for c in self.held.iter_mut() {
            c.drain(..n);
        }
        self.last_over = self.last_over.and_then(|l| l.checked_sub(n));
    }
}

/// Samples queued at the back and taken from the front. Taken samples are dropped by moving
/// the rest down only once they outnumber what remains, so each sample moves once at most
/// (`Vec::drain` from the front moved everything still held, a block and more, every time).
#[derive(Clone, Debug, Default)]
struct Fifo {
    buf: Vec<f32>,
    start: usize,
}

impl Fifo {
    fn extend_from_slice(&mut self, x: &[f32]) {
        self.buf.extend_from_slice(x);
    }

    fn resize(&mut self, len: usize, value: f32) {
        self.buf.resize(self.start + len, value);
    }

    /// Drops the first `n` samples (all of them when fewer are queued).
    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start >= self.buf.len() - self.start {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

impl std::ops::Deref for Fifo {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.start..]
    }
}

impl std::ops::DerefMut for Fifo {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..]
    }
}

/// What a [`StreamMarker`] adds.
#[derive(Clone, Copy, Debug)]
pub struct StreamLayers<'a> {
    /// Key and payload of the watermark.
    pub watermark: Option<(&'a Key, Payload)>,
    /// The watermark's strength for the whole sound, when a pass over it before marking found
    /// it ([`watermark::StrengthScan`]); else it is set block by block from the sound so far.
    pub strength: Option<WholeFileStrength>,
    /// The rhythm label's tone (mixed; `insert` is ignored) and the sample where it starts.
    pub rhythm: Option<(&'a RhythmStyle, usize)>,
    /// Blocks of sound (planar, the marker's channel count) put in before input sample `at`
    /// (`usize::MAX`: after the end), in order: an inserted rhythm label or voice prompt. They
    /// get no watermark and move what follows; the limiter sees them.
    pub inserts: &'a [(usize, Vec<Vec<f32>>)],
}

/// What a [`StreamMarker`] did, once finished.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StreamReport {
    /// The watermark's mean strength and its signal-to-change ratio over the whole sound.
    pub watermark: Option<Embedded>,
    /// Where the rhythm label starts, seconds; `None` when the sound ended before it.
    pub rhythm_at: Option<f64>,
    pub limiter_db: f32,
    /// Samples per channel handed out.
    pub samples: usize,
}

/// The watermark's state: the unit change, computed frame by frame as the sound arrives.
struct Watermarking {
    sign: Vec<f32>,
    modulator: Modulator,
    /// The unit change from `StreamMarker::base` on (longer than `held` by up to a frame).
    change: Fifo,
    /// The next frame to compute; frame `t` covers samples `(t-1)·h .. (t+1)·h`.
    next_frame: usize,
    /// Strength per block of `block` samples (`None`: nothing to modulate there), from block
    /// `first_block` on.
    strengths: Vec<Option<f32>>,
    first_block: usize,
    host: f64,
    applied: f64,
    /// Energy of the sound and of the unit change over the blocks so far.
    host_sum: f64,
    unit_sum: f64,
    /// Speech's pauses over the blocks so far: they set the ratio aimed at.
    pauses: Pauses,
    /// The whole sound's strength, when known before marking.
    whole: Option<WholeFileStrength>,
}

/// Marks planar sound chunk by chunk; see the module's description.
pub struct StreamMarker {
    sample_rate: u32,
    channels: usize,
    h: usize,
    /// Samples per strength block: one period of the pattern.
    block: usize,
    /// Input not yet handed on, per channel, from absolute sample `base` on.
    held: Vec<Fifo>,
    base: usize,
    received: usize,
    wm: Option<Watermarking>,
    tone: Vec<f32>,
    tone_at: usize,
    duck: Option<Duck>,
    inserts: Vec<(usize, Vec<Vec<f32>>)>,
    limiter: Limiter,
    /// The watermark's strength per sample of the stretch being handed on.
    gains: Vec<f32>,
}

impl StreamMarker {
    pub fn new(sample_rate: u32, channels: usize, layers: &StreamLayers) -> StreamMarker {
        let h = watermark::hop_len(sample_rate);
        let channels = channels.max(1);
        let wm = layers.watermark.map(|(key, payload)| Watermarking {
            sign: watermark::pattern(key, payload),
            modulator: Modulator::new(h),
            change: Fifo::default(),
            next_frame: 0,
            strengths: Vec::new(),
            first_block: 0,
            host: 0.0,
            applied: 0.0,
            host_sum: 0.0,
            unit_sum: 0.0,
            pauses: Pauses::default(),
            whole: layers.strength,
        });
        let (tone, tone_at) = match layers.rhythm {
            Some((style, at)) => (rhythm::tone(style, sample_rate), at),
            None => (Vec::new(), 0),
        };
        let duck = layers
            .rhythm
            .map(|(style, _)| Duck::new(style, sample_rate, tone.len()));
        StreamMarker {
            sample_rate,
            channels,
            h,
            block: PERIOD * h,
            held: vec![Fifo::default(); channels],
            base: 0,
            received: 0,
            wm,
            tone,
            tone_at,
            duck,
            inserts: layers.inserts.iter().rev().cloned().collect(),
            limiter: Limiter::new(sample_rate, channels),
            gains: Vec::new(),
        }
    }

    /// Takes the next `chunk` (planar, one slice per channel, equal lengths) and hands what is
    /// ready to `out`.
    pub fn push(&mut self, chunk: &[&[f32]], out: &mut dyn FnMut(&[&[f32]])) {
        for (h, c) in self.held.iter_mut().zip(chunk) {
            h.extend_from_slice(c);
        }
        self.received += chunk.first().map_or(0, |c| c.len());
        self.advance(false, out);
    }

    /// Hands out the rest and reports.
    pub fn finish(mut self, out: &mut dyn FnMut(&[&[f32]])) -> StreamReport {
        self.advance(true, out);
        // What goes after the end (or past it).
        while let Some((_, block)) = self.inserts.pop() {
            let chans: Vec<&[f32]> = block.iter().map(Vec::as_slice).collect();
            self.limiter.push(&chans, out);
        }
        self.limiter.finish(out);
        let watermark = self.wm.as_ref().and_then(|w| {
            let known: Vec<f32> = w.strengths.iter().flatten().copied().collect();
            (w.applied > 0.0).then(|| Embedded {
                strength: known.iter().sum::<f32>() / known.len().max(1) as f32,
                snr_db: (10.0 * (w.host / w.applied).log10()) as f32,
                target_snr_db: w.whole.map_or_else(
                    || watermark::target_snr_db(w.pauses.share()),
                    |whole| whole.target_snr_db,
                ),
            })
        });
        let tone_end = self.tone_at + self.tone.len();
        StreamReport {
            watermark,
            rhythm_at: (!self.tone.is_empty() && tone_end <= self.received)
                .then(|| self.tone_at as f64 / self.sample_rate as f64),
            limiter_db: self.limiter.reduction_db(),
            samples: self.received,
        }
    }

    fn advance(&mut self, end: bool, out: &mut dyn FnMut(&[&[f32]])) {
        let ready = match self.wm.is_some() {
            true => self.watermark_frames(end),
            false => self.received,
        };
        // Hand on whole blocks whose strength and next block's strength are known (the ramp
        // between block centres needs both), or everything at the end.
        let upto = if end {
            self.received
        } else if self.wm.is_some() {
            let blocks_known = ready / self.block;
            blocks_known.saturating_sub(1) * self.block
        } else {
            self.received
        };
        if upto > self.base {
            self.emit(upto, out);
        }
    }

    /// Computes every frame the held sound allows (all of them at the end), the strengths of
    /// the blocks whose change is then final, and returns up to where the change is final.
    fn watermark_frames(&mut self, end: bool) -> usize {
        let (h, n, base, received, nch) =
            (self.h, 2 * self.h, self.base, self.received, self.channels);
        let held = &self.held;
        let w = self.wm.as_mut().expect("called with a watermark");
        let scale = 1.0 / nch as f32;
        let last_frame = received.div_ceil(h); // frames 0..=last_frame cover the sound
        loop {
            let t = w.next_frame;
            let frame_end = (t + 1) * h;
            if t > last_frame || (!end && frame_end > received) {
                break;
            }
            let start = t as isize * h as isize - h as isize;
            // The frame's span that holds sound: [lo, hi) in the frame, from held sample `j0`.
            let lo = (base as isize - start).clamp(0, n as isize) as usize;
            let hi = (received as isize - start).clamp(lo as isize, n as isize) as usize;
            let j0 = (start + lo as isize) as usize - base;
            let buf = w.modulator.input();
            buf.fill(0.0);
            // The mid signal, channel by channel over whole slices (this loop vectorises).
            for c in held {
                for (b, v) in buf[lo..hi].iter_mut().zip(&c[j0..j0 + hi - lo]) {
                    *b += v;
                }
            }
            for b in buf[lo..hi].iter_mut() {
                *b *= scale;
            }
            let frame = w.modulator.run(watermark::row(&w.sign, t));
            let need = (start + n as isize).max(0) as usize - base;
            if w.change.len() < need {
                w.change.resize(need, 0.0);
            }
            for (c, v) in w.change[j0..need].iter_mut().zip(&frame[lo..]) {
                *c += v;
            }
            w.next_frame += 1;
        }
        // Frame t+1 starts at t·h: below that, no frame still to come adds to the change.
        let fin = if end {
            received
        } else {
            (w.next_frame.saturating_sub(1) * h).min(received)
        };
        // Strengths of the blocks now complete.
        loop {
            let k = w.first_block + w.strengths.len();
            let (from, to) = (k * self.block, ((k + 1) * self.block).min(received));
            if from >= received || to > fin || (!end && to < (k + 1) * self.block) {
                break;
            }
            let host: f64 = held
                .iter()
                .map(|c| watermark::energy(&c[from - base..to - base]))
                .sum();
            let unit = watermark::energy(&w.change[from - base..to - base]) * nch as f64;
            // Whether there is sound to modulate: the change has energy of its own.
            let sounding = |host: f64, unit: f64| host > 0.0 && unit > host * 1e-12;
            let s = match w.whole {
                // Known for the whole sound: every block with sound to modulate gets it.
                Some(whole) => sounding(host, unit).then_some(whole.strength),
                None => {
                    // From everything so far: the strength settles on the one the whole file
                    // would get, so each cell keeps the same relative change (what detection
                    // wants) and the file as a whole sits at the target ratio. No block goes
                    // more than 1 dB over the target on its own, though: a quiet opening
                    // would otherwise carry a strength its sound cannot hide.
                    w.host_sum += host;
                    w.unit_sum += unit;
                    // The ratio aimed at follows the sound so far too: speech's pauses show
                    // within a block or two.
                    let views: Vec<&[f32]> =
                        held.iter().map(|c| &c[from - base..to - base]).collect();
                    w.pauses.add(&views, h);
                    let target = watermark::target_snr_db(w.pauses.share());
                    let all_so_far = sounding(w.host_sum, w.unit_sum)
                        .then(|| watermark::strength_for(w.host_sum, w.unit_sum, target));
                    let own = sounding(host, unit)
                        .then(|| watermark::strength_for(host, unit, target - 1.0));
                    all_so_far
                        .zip(own)
                        .map(|(all, own)| all.min(own).min(MAX_STRENGTH))
                }
            };
            w.strengths.push(s);
        }
        fin
    }

    /// The strength at absolute sample `i`: its block's own at the centre, ramping linearly
    /// towards the lower of it and the neighbour's at each boundary: continuous, and never
    /// above the block's own.
    fn strength_at(w: &Watermarking, block: usize, i: usize) -> f32 {
        let get = |k: usize| -> Option<f32> {
            k.checked_sub(w.first_block)
                .and_then(|j| w.strengths.get(j).copied().flatten())
        };
        let k = i / block;
        let Some(own) = get(k) else {
            return 0.0;
        };
        let half = block as f32 / 2.0;
        let into = (i - k * block) as f32;
        let (edge, frac) = if into < half {
            (k.checked_sub(1).and_then(get), 1.0 - into / half)
        } else {
            (get(k + 1), (into - half) / half)
        };
        let edge = edge.map_or(own, |e| e.min(own));
        own + (edge - own) * frac
    }

    /// Adds the watermark and the tone to the held sound below absolute sample `upto`, in
    /// place (no frame still to come reads it), and passes it to the limiter.
    fn emit(&mut self, upto: usize, out: &mut dyn FnMut(&[&[f32]])) {
        let (base, len) = (self.base, upto - self.base);
        if let Some(w) = &mut self.wm {
            // The strength is linear between a block's start, centre and end: per piece, a
            // start value and a step.
            let gains = &mut self.gains;
            gains.clear();
            let half = self.block / 2;
            let mut i = base;
            while i < upto {
                let piece_end = ((i / half + 1) * half).min(upto);
                let a = Self::strength_at(w, self.block, i);
                let b = Self::strength_at(w, self.block, piece_end - 1);
                let n = piece_end - i;
                let step = if n > 1 { (b - a) / (n - 1) as f32 } else { 0.0 };
                gains.extend((0..n).map(|k| a + step * k as f32));
                i = piece_end;
            }
            for s in self.held.iter_mut() {
                let s = &mut s[..len];
                w.host += watermark::energy(s);
                for ((x, g), d) in s.iter_mut().zip(gains.iter()).zip(w.change.iter()) {
                    *x += g * d;
                }
            }
            // The change's energy, in f32 lanes per block summed in f64 (as `energy` does).
            let applied: f64 = gains
                .chunks(1024)
                .zip(w.change.chunks(1024))
                .map(|(g, d)| {
                    let mut lanes = [0f32; 8];
                    for (i, (g, d)) in g.iter().zip(d).enumerate() {
                        lanes[i & 7] += (g * d) * (g * d);
                    }
                    lanes.iter().sum::<f32>() as f64
                })
                .sum();
            w.applied += applied * self.channels as f64;
            w.change.consume(len);
            // Keep the strengths the ramp of what is still held can reach (one block back).
            let keep_from = (upto / self.block).saturating_sub(1);
            while w.first_block < keep_from && !w.strengths.is_empty() {
                w.strengths.remove(0);
                w.first_block += 1;
            }
        }
        // The sound ducked under the tone, and the tone, where they overlap this stretch.
        if let Some(duck) = &self.duck {
            let t0 = self.tone_at;
            let (d0, d1) = duck.reach(t0, usize::MAX);
            let (from, to) = (d0.max(base), d1.min(upto));
            for s in self.held.iter_mut() {
                for i in from..to {
                    s[i - base] *= duck.gain(i as isize - t0 as isize);
                }
            }
            let (from, to) = (t0.max(base), (t0 + self.tone.len()).min(upto));
            for s in self.held.iter_mut() {
                for i in from..to {
                    s[i - base] += self.tone[i - t0];
                }
            }
        }
        // Into the limiter, with the inserts that fall in this stretch put in their places.
        let mut from = 0;
        while let Some((at, _)) = self.inserts.last() {
            if *at >= upto {
                break;
            }
            let to = at.saturating_sub(base).max(from);
            let part: Vec<&[f32]> = self.held.iter().map(|c| &c[from..to]).collect();
            self.limiter.push(&part, out);
            let (_, block) = self.inserts.pop().expect("looked at");
            let chans: Vec<&[f32]> = block.iter().map(Vec::as_slice).collect();
            self.limiter.push(&chans, out);
            from = to;
        }
        let part: Vec<&[f32]> = self.held.iter().map(|c| &c[from..len]).collect();
        self.limiter.push(&part, out);
        for h in self.held.iter_mut() {
            h.consume(len);
        }
        self.base = upto;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::{detect_mono, embed};

    fn music(sr: u32, secs: f32, seed: u64) -> Vec<f32> {
        let mut rng = aigc_dsp::KeyedRng::new(&[seed as u8; 32], "test noise");
        let n = (sr as f32 * secs) as usize;
        let mut lp = 0f32;
        (0..n)
            .map(|i| {
                let r = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                lp = 0.9 * lp + 0.1 * r;
                let t = i as f32 / sr as f32;
                // A slow swell, so the strength has something to follow.
                let swell = 0.3 + 0.25 * (t * 0.7).sin();
                swell * (lp + 0.2 * (t * 2.0 * std::f32::consts::PI * 330.0).sin())
            })
            .collect()
    }

    /// Streams `x` (stereo copies) through a marker in uneven chunks.
    fn stream(x: &[f32], sr: u32, layers: &StreamLayers) -> (Vec<Vec<f32>>, StreamReport) {
        let mut m = StreamMarker::new(sr, 2, layers);
        let mut out = vec![Vec::new(), Vec::new()];
        let mut take = |c: &[&[f32]]| {
            for (o, c) in out.iter_mut().zip(c) {
                o.extend_from_slice(c);
            }
        };
        let mut pos = 0;
        for (i, size) in [1024usize, 333, 4096, 17, 70000].iter().cycle().enumerate() {
            if pos >= x.len() || i > 100_000 {
                break;
            }
            let end = (pos + size).min(x.len());
            m.push(&[&x[pos..end], &x[pos..end]], &mut take);
            pos = end;
        }
        let r = m.finish(&mut take);
        (out, r)
    }

    #[test]
    fn streamed_mark_reads_back_at_the_target_ratio() {
        let sr = 44_100;
        let key = [7u8; 32];
        let payload = Payload::bits64(0x0123_4567_89ab_cdef);
        let x = music(sr, 20.0, 3);
        let layers = StreamLayers {
            watermark: Some((&key, payload)),
            strength: None,
            rhythm: None,
            inserts: &[],
        };
        let (out, r) = stream(&x, sr, &layers);
        assert_eq!(out[0].len(), x.len());
        assert_eq!(r.samples, x.len());
        let e = r.watermark.expect("marked");
        assert_eq!(
            e.target_snr_db,
            watermark::TARGET_SNR_DB,
            "sustained sound is music"
        );
        assert!((e.snr_db - watermark::TARGET_SNR_DB).abs() < 1.5, "{e:?}");
        let found = detect_mono(&out[0], sr, &key).found.expect("detected");
        assert_eq!(found.payload, payload);
        // The change matches the whole-file embedder's in kind: both channels alike, and the
        // same frames' modulation (their ratio is the strength, constant within a block).
        assert_eq!(out[0], out[1]);
        let mut whole = vec![x.clone()];
        let e2 = embed(&mut whole, sr, &key, payload).unwrap();
        let (d1, d2): (Vec<f32>, Vec<f32>) = (
            out[0].iter().zip(&x).map(|(a, b)| a - b).collect(),
            whole[0].iter().zip(&x).map(|(a, b)| a - b).collect(),
        );
        let dot: f64 = d1.iter().zip(&d2).map(|(a, b)| (a * b) as f64).sum();
        let norm = |d: &[f32]| d.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt();
        assert!(dot / (norm(&d1) * norm(&d2)) > 0.9, "{e2:?}");
        // Another key finds nothing.
        assert!(detect_mono(&out[0], sr, &[8u8; 32]).found.is_none());
    }

    /// Syllables: 140 ms of the test sound, then 160 ms of near silence, as speech pauses.
    fn speech(sr: u32, secs: f32, seed: u64) -> Vec<f32> {
        let mut x = music(sr, secs, seed);
        for (i, v) in x.iter_mut().enumerate() {
            if (i * 1000 / sr as usize) % 300 >= 140 {
                *v *= 0.01;
            }
        }
        x
    }

    #[test]
    fn speech_gets_the_stronger_speech_ratio_and_music_keeps_its_own() {
        let sr = 48_000;
        let key = [7u8; 32];
        let payload = Payload::bits64(0x0123_4567_89ab_cdef);
        let layers = StreamLayers {
            watermark: Some((&key, payload)),
            strength: None,
            rhythm: None,
            inserts: &[],
        };
        let x = speech(sr, 20.0, 5);
        let mut pauses = Pauses::default();
        pauses.add(&[&x], watermark::hop_len(sr));
        assert!(pauses.share() > 0.35, "{pauses:?}");
        let (out, r) = stream(&x, sr, &layers);
        let e = r.watermark.expect("marked");
        assert_eq!(e.target_snr_db, watermark::SPEECH_TARGET_SNR_DB, "{e:?}");
        assert!(
            (e.snr_db - watermark::SPEECH_TARGET_SNR_DB).abs() < 1.5,
            "{e:?}"
        );
        let found = detect_mono(&out[0], sr, &key).found.expect("detected");
        assert_eq!(found.payload, payload);
        // The whole-file embedder makes the same choice.
        let mut whole = vec![x.clone()];
        let e2 = embed(&mut whole, sr, &key, payload).unwrap();
        assert_eq!(e2.target_snr_db, watermark::SPEECH_TARGET_SNR_DB);
        let mut pauses = Pauses::default();
        pauses.add(&[&music(sr, 20.0, 5)], watermark::hop_len(sr));
        assert!(pauses.share() < 0.35, "{pauses:?}");
    }

    #[test]
    fn tone_is_mixed_in_place_and_peaks_are_limited() {
        let sr = 48_000;
        let style = RhythmStyle {
            insert: false,
            level_dbfs: -3.0,
            ..RhythmStyle::default()
        };
        // A stretch after the tone passes full scale.
        let x: Vec<f32> = music(sr, 6.0, 5)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v * if (4 * sr..5 * sr).contains(&(i as u32)) {
                    12.0
                } else {
                    2.5
                }
            })
            .collect();
        assert!(x.iter().any(|v| v.abs() > 1.0));
        let at = sr as usize;
        let layers = StreamLayers {
            watermark: None,
            strength: None,
            rhythm: Some((&style, at)),
            inserts: &[],
        };
        let (out, r) = stream(&x, sr, &layers);
        assert_eq!(out[0].len(), x.len(), "the length is kept");
        assert_eq!(r.rhythm_at, Some(1.0));
        assert!(r.limiter_db > 0.0);
        assert!(out[0].iter().all(|v| v.abs() <= 0.999));
        // Before the tone and its duck, nothing touched the sound.
        // (The duck starts two dots and 50 ms before the tone.)
        let quiet_before = (0..at - 4 * sr as usize / 10)
            .filter(|&i| x[i].abs() < 0.5)
            .all(|i| (out[0][i] - x[i]).abs() < 1e-6);
        assert!(quiet_before);
        // Under the tone the sound is ducked 20 dB: between the tones only it is left.
        let gap = at + (0.2 * sr as f64) as usize..at + (0.23 * sr as f64) as usize;
        let ratio = gap.clone().map(|i| out[0][i].abs()).sum::<f32>()
            / gap.map(|i| x[i].abs()).sum::<f32>();
        assert!((0.08..0.12).contains(&ratio), "ducked to {ratio}");
        let found = rhythm::detect(&out[0], sr);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!((found[0].start_seconds - 1.0).abs() < 0.05, "{found:?}");
    }
}
