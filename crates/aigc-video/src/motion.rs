//! Global motion between consecutive frames, so the watermark can move with the picture.
//!
//! A mark fixed in the frame under a panning picture is new to the encoder in every frame:
//! motion compensation carries the previous frame's mark along with the picture, and the
//! difference is coded again (on a 1080p pan, 4x the bytes and 0.6x the speed of a plain
//! transcode). Moved by the picture's own motion, the mark is predicted with it.
//!
//! The motion is found by phase correlation of the central region of the luma (decimated on
//! large frames), to a fraction of a pixel. It only has to be good enough for the encoder: the
//! detector reads each frame at its own offset and never needs it.

use aigc_dsp::{Complex32, RealFft2};
use aigc_image::watermark::LumaPlane;

/// Follows the picture's translation from frame to frame.
pub struct MotionTracker {
    /// The frame size it was set up for: a frame of another size starts it afresh.
    size: (usize, usize),
    /// `None` for frames too small to be worth it.
    analysis: Option<Analysis>,
}

/// The phase correlation's plan and buffers for one frame size.
struct Analysis {
    /// Frame pixels per analysed pixel.
    decimate: usize,
    /// Side of the analysed (square, power-of-two) region, in analysed pixels.
    n: usize,
    fft: RealFft2,
    /// The analysis window (Hann in both directions).
    window: Vec<f32>,
    region: Vec<f32>,
    spec: Vec<Complex32>,
    /// The previous frame's spectrum, once there is one.
    previous: Option<Vec<Complex32>>,
    cross: Vec<Complex32>,
    corr: Vec<f32>,
}

/// A correlation peak under this share of the perfect one's height is not trusted (a scene
/// cut, a flat or noisy picture): the frame counts as still.
const MIN_PEAK: f32 = 0.08;

impl Default for MotionTracker {
    fn default() -> MotionTracker {
        MotionTracker::new()
    }
}

impl MotionTracker {
    /// A tracker; it sets itself up for the size of the first frame given.
    pub fn new() -> MotionTracker {
        MotionTracker {
            size: (0, 0),
            analysis: None,
        }
    }

    /// How far the picture moved since the previous frame given, in frame pixels: content at
    /// (x, y) then stands at (x + dx, y + dy) now. (0, 0) for the first frame (of a size), for
    /// frames too small to track and for frames whose motion is not clear.
    pub fn step(&mut self, plane: &LumaPlane) -> (f32, f32) {
        let size = (plane.width, plane.height);
        if size != self.size {
            (self.size, self.analysis) = (size, Analysis::new(size.0, size.1));
        }
        self.analysis.as_mut().map_or((0.0, 0.0), |a| a.step(plane))
    }
}

impl Analysis {
    fn new(width: usize, height: usize) -> Option<Analysis> {
        let decimate = if width.min(height) >= 900 { 2 } else { 1 };
        let side = (width / decimate).min(height / decimate).min(512);
        if side < 64 {
            return None;
        }
        let n = 1usize << (usize::BITS - 1 - side.leading_zeros());
        let hann: Vec<f32> = (0..n)
            .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * (i as f32 + 0.5) / n as f32).cos())
            .collect();
        let window = (0..n * n).map(|i| hann[i / n] * hann[i % n]).collect();
        Some(Analysis {
            decimate,
            n,
            fft: RealFft2::new(n, n),
            window,
            region: vec![0.0; n * n],
            spec: vec![Complex32::default(); n * (n / 2 + 1)],
            previous: None,
            cross: vec![Complex32::default(); n * (n / 2 + 1)],
            corr: vec![0.0; n * n],
        })
    }

    fn step(&mut self, plane: &LumaPlane) -> (f32, f32) {
        let (n, f) = (self.n, self.decimate);
        let (x0, y0) = ((plane.width - n * f) / 2, (plane.height - n * f) / 2);
        let wide = plane.bits > 8;
        for (y, out) in self.region.chunks_exact_mut(n).enumerate() {
            out.fill(0.0);
            for dy in 0..f {
                let row = &plane.data[(y0 + y * f + dy) * plane.stride..];
                for (x, o) in out.iter_mut().enumerate() {
                    let xs = x0 + x * f;
                    *o += if wide {
                        (xs..xs + f)
                            .map(|i| u16::from_le_bytes([row[2 * i], row[2 * i + 1]]) as f32)
                            .sum::<f32>()
                    } else {
                        row[xs..xs + f].iter().map(|&v| v as f32).sum::<f32>()
                    };
                }
            }
        }
        let mean = self.region.iter().sum::<f32>() / (n * n) as f32;
        self.region
            .iter_mut()
            .zip(&self.window)
            .for_each(|(v, w)| *v = (*v - mean) * w);
        self.fft.forward(&self.region, &mut self.spec);
        let Some(previous) = self.previous.as_mut() else {
            self.previous = Some(self.spec.clone());
            return (0.0, 0.0);
        };
        // The cross-power spectrum, normalised to unit magnitude: its inverse peaks at the
        // shift, whatever the picture's spectrum.
        for ((x, c), p) in self.cross.iter_mut().zip(&self.spec).zip(previous.iter()) {
            let v = c * p.conj();
            let m = v.norm();
            *x = if m > 1e-20 {
                v / m
            } else {
                Complex32::default()
            };
        }
        std::mem::swap(previous, &mut self.spec);
        self.fft.inverse(&mut self.cross, &mut self.corr);
        let (best, &peak) = self
            .corr
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("non-empty");
        // A perfect shift puts every bin's unit phasor into the peak: n * n (unnormalised).
        if peak < MIN_PEAK * (n * n) as f32 {
            return (0.0, 0.0);
        }
        let c = |x: usize, y: usize| self.corr[(y % n) * n + x % n];
        let (bx, by) = (best % n, best / n);
        // Sub-pixel: the larger neighbour's share of the peak (phase correlation's peak falls
        // off as a sinc, for which this is the usual estimate).
        let frac = |m: f32, c0: f32, p: f32| {
            if p >= m && p > 0.0 {
                p / (p + c0)
            } else if m > 0.0 {
                -m / (m + c0)
            } else {
                0.0
            }
        };
        let dx = bx as f32 + frac(c(bx + n - 1, by), peak, c(bx + 1, by));
        let dy = by as f32 + frac(c(bx, by + n - 1), peak, c(bx, by + 1));
        let signed = |v: f32| if v > n as f32 / 2.0 { v - n as f32 } else { v };
        let (dx, dy) = (signed(dx), signed(dy));
        // A quarter of the region or more is no motion a codec follows either.
        if dx.abs() > n as f32 / 4.0 || dy.abs() > n as f32 / 4.0 {
            return (0.0, 0.0);
        }
        (dx * f as f32, dy * f as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth random texture, `w` x `h`, sampled at an offset of (`ox`, `oy`) pixels: a sum
    /// of plane waves, each split into per-column and per-row tables (sin(a + b) expanded).
    fn texture(w: usize, h: usize, ox: f32, oy: f32) -> Vec<u8> {
        let mut v = vec![128f32; w * h];
        for i in 0..40 {
            let a = i as f32 * 2.399;
            let f = 0.01 + 0.004 * (i % 13) as f32;
            let (fx, fy, p) = (f * a.cos(), f * a.sin(), i as f32 * 1.7);
            let tau = std::f32::consts::TAU;
            let col: Vec<(f32, f32)> = (0..w)
                .map(|x| (tau * fx * (x as f32 - ox)).sin_cos())
                .collect();
            for y in 0..h {
                let (sy, cy) = (tau * fy * (y as f32 - oy) + p).sin_cos();
                for (o, (sx, cx)) in v[y * w..(y + 1) * w].iter_mut().zip(&col) {
                    *o += 12.0 * (sx * cy + cx * sy);
                }
            }
        }
        v.iter().map(|x| x.clamp(0.0, 255.0) as u8).collect()
    }

    #[test]
    fn a_pan_is_measured_to_a_fraction_of_a_pixel() {
        for (w, h) in [(640usize, 360usize), (1920, 1080)] {
            let mut t = MotionTracker::new();
            for (i, (dx, dy)) in [(0.0, 0.0), (1.6, -0.4), (3.3, 0.8), (-2.25, 5.5)]
                .into_iter()
                .enumerate()
            {
                let mut prev = texture(w, h, 0.0, 0.0);
                let mut now = texture(w, h, dx, dy);
                let mut plane = |data: &mut Vec<u8>| {
                    t.step(&LumaPlane {
                        data,
                        stride: w,
                        width: w,
                        height: h,
                        bits: 8,
                    })
                };
                plane(&mut prev);
                let (mx, my) = plane(&mut now);
                let tol = if w > 1000 { 0.35 } else { 0.2 };
                assert!(
                    (mx - dx).abs() < tol && (my - dy).abs() < tol,
                    "{w}x{h} case {i}: measured ({mx:.2}, {my:.2}) for ({dx}, {dy})"
                );
            }
        }
    }
}
