//! Finds a visible label drawn by this crate, without the original: the text's known shape is
//! matched (normalised cross-correlation) against each edge and corner over a range of sizes
//! and margins, on a copy of the image scaled so its shortest side is [`WORK_SIDE`] pixels.
//! Scaling first makes the search independent of the image's resolution and tolerant of
//! resizing and recompression.

#![allow(clippy::needless_range_loop)]

use crate::{coverage, layout_for_ink_height, Position, PLATE_PAD};
use ab_glyph::Font;
use image::DynamicImage;

/// The shortest side of the working copy.
pub const WORK_SIDE: u32 = 320;
/// Correlation above which a match counts. Measured: unlabeled photographs stay below 0.45, our
/// labels after JPEG q75 or halving score above 0.78 (30 photographs, `examples/find_label_scores.rs`).
pub const THRESHOLD: f32 = 0.65;

/// A label found in an image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FoundLabel {
    pub position: Position,
    /// Ink height of the text over the image's shortest side.
    pub text_height_ratio: f32,
    /// The normalised cross-correlation of the best match (1 is a perfect match).
    pub score: f32,
}

/// Ink heights tried, as shares of the shortest side: 3% to 30% in steps of 4%.
fn ratios() -> impl Iterator<Item = f32> {
    (0..)
        .map(|i| 0.03 * 1.04f32.powi(i))
        .take_while(|&r| r <= 0.30)
}

struct Template {
    ratio: f32,
    w: usize,
    h: usize,
    /// Coverage minus its mean.
    centred: Vec<f32>,
    norm: f32,
}

fn template<F: Font>(font: &F, text: &str, ratio: f32, side: f32) -> Option<Template> {
    let ink_h = ratio * side;
    if ink_h < 4.0 {
        return None;
    }
    let lay = layout_for_ink_height(font, text, ink_h);
    let ink_w = (lay.ink[2] - lay.ink[0]).ceil();
    let ink_hc = (lay.ink[3] - lay.ink[1]).ceil();
    let pad = (PLATE_PAD * ink_hc).round().max(1.0);
    let (w, h) = ((ink_w + 2.0 * pad) as u32, (ink_hc + 2.0 * pad) as u32);
    let origin = (pad - lay.ink[0], pad - lay.ink[1]);
    let (cover, _) = coverage(font, &lay, origin, [0, 0, w, h]);
    let mean = cover.iter().sum::<f32>() / cover.len() as f32;
    let centred: Vec<f32> = cover.iter().map(|c| c - mean).collect();
    let norm = centred.iter().map(|c| c * c).sum::<f32>().sqrt();
    Some(Template {
        ratio,
        w: w as usize,
        h: h as usize,
        centred,
        norm,
    })
}

/// Luma scaled down by area averaging so the shortest side is at most `side`.
fn work_luma(img: &DynamicImage, side: u32) -> (Vec<f32>, usize, usize) {
    let l = img.to_luma8();
    let (w, h) = l.dimensions();
    let f = (w.min(h) as f32 / side as f32).max(1.0);
    let (ow, oh) = (
        ((w as f32 / f).round() as usize).max(1),
        ((h as f32 / f).round() as usize).max(1),
    );
    let mut sum = vec![0f32; ow * oh];
    let mut cnt = vec![0f32; ow * oh];
    let xs: Vec<usize> = (0..w as usize)
        .map(|x| ((x as f32 / f) as usize).min(ow - 1))
        .collect();
    for (y, row) in l.as_raw().chunks_exact(w as usize).enumerate() {
        let oy = ((y as f32 / f) as usize).min(oh - 1);
        let (s, c) = (
            &mut sum[oy * ow..(oy + 1) * ow],
            &mut cnt[oy * ow..(oy + 1) * ow],
        );
        for (x, &v) in row.iter().enumerate() {
            s[xs[x]] += v as f32;
            c[xs[x]] += 1.0;
        }
    }
    for (s, c) in sum.iter_mut().zip(&cnt) {
        *s /= c.max(1.0);
    }
    (sum, ow, oh)
}

/// Summed-area tables of values and squares, for patch means and variances in O(1).
struct Integral {
    w: usize,
    s: Vec<f64>,
    s2: Vec<f64>,
}

impl Integral {
    fn new(v: &[f32], w: usize, h: usize) -> Integral {
        let (mut s, mut s2) = (vec![0f64; (w + 1) * (h + 1)], vec![0f64; (w + 1) * (h + 1)]);
        for y in 0..h {
            let (mut row, mut row2) = (0f64, 0f64);
            for x in 0..w {
                let p = v[y * w + x] as f64;
                row += p;
                row2 += p * p;
                s[(y + 1) * (w + 1) + x + 1] = s[y * (w + 1) + x + 1] + row;
                s2[(y + 1) * (w + 1) + x + 1] = s2[y * (w + 1) + x + 1] + row2;
            }
        }
        Integral { w, s, s2 }
    }
    fn sums(&self, x: usize, y: usize, w: usize, h: usize) -> (f64, f64) {
        let at = |t: &Vec<f64>, x: usize, y: usize| t[y * (self.w + 1) + x];
        let box_sum = |t| at(t, x + w, y + h) - at(t, x, y + h) - at(t, x + w, y) + at(t, x, y);
        (box_sum(&self.s), box_sum(&self.s2))
    }
}

fn ncc(luma: &[f32], lw: usize, ii: &Integral, t: &Template, x: usize, y: usize) -> f32 {
    let mut dot = 0f32;
    for ty in 0..t.h {
        let row = &luma[(y + ty) * lw + x..(y + ty) * lw + x + t.w];
        let trow = &t.centred[ty * t.w..(ty + 1) * t.w];
        dot += row.iter().zip(trow).map(|(a, b)| a * b).sum::<f32>();
    }
    let n = (t.w * t.h) as f64;
    let (s, s2) = ii.sums(x, y, t.w, t.h);
    let var = (s2 - s * s / n).max(0.0);
    // Flat patches (variance under one grey level per pixel) cannot hold text.
    if var < n {
        return 0.0;
    }
    dot / (t.norm * var.sqrt() as f32)
}

/// Looks for a label with `text` drawn by this crate on any edge or corner of `img` (given in
/// its displayed orientation). Returns the best match above the detection threshold.
///
/// Coarse to fine: every eighth-octave size and every second margin first, then the
/// neighbourhood of the best coarse match per position at full resolution.
pub fn find_label<F: Font>(img: &DynamicImage, font: &F, text: &str) -> Option<FoundLabel> {
    find_label_at(img, font, text, &Position::ALL)
}

/// [`find_label`] at the given positions only: following a label already found through the
/// frames of a video costs an eighth of a full search.
pub fn find_label_at<F: Font>(
    img: &DynamicImage,
    font: &F,
    text: &str,
    positions: &[Position],
) -> Option<FoundLabel> {
    let (luma, w, h) = work_luma(img, WORK_SIDE);
    let side = w.min(h) as f32;
    let ii = Integral::new(&luma, w, h);
    let max_margin = (0.10 * side).ceil() as i64;
    let templates: Vec<Template> = ratios()
        .filter_map(|r| template(font, text, r, side))
        .filter(|t| t.w + 2 <= w && t.h + 2 <= h)
        .collect();
    // The score of template `ti` at position `pos`, `m` pixels from the edge(s).
    let score = |ti: usize, pos: Position, m: i64| -> f32 {
        let t = &templates[ti];
        let (ax, ay) = pos.anchors();
        let at = |anchor: i8, size: usize, extent: usize| -> Option<usize> {
            let m = usize::try_from(m).ok()?;
            match anchor {
                -1 => Some(m),
                0 => Some((extent - size) / 2),
                _ => extent.checked_sub(m + size),
            }
        };
        match (at(ax, t.w, w), at(ay, t.h, h)) {
            (Some(x), Some(y)) if x + t.w <= w && y + t.h <= h => ncc(&luma, w, &ii, t, x, y),
            _ => f32::MIN,
        }
    };
    let mut best: Option<FoundLabel> = None;
    for &pos in positions {
        let mut coarse = (f32::MIN, 0usize, 0i64);
        for ti in (0..templates.len()).step_by(2) {
            for m in (0..=max_margin).step_by(2) {
                let s = score(ti, pos, m);
                if s > coarse.0 {
                    coarse = (s, ti, m);
                }
            }
        }
        let (_, cti, cm) = coarse;
        for ti in cti.saturating_sub(2)..(cti + 3).min(templates.len()) {
            for m in (cm - 2).max(0)..=cm + 2 {
                let s = score(ti, pos, m);
                if best.is_none_or(|b| s > b.score) {
                    best = Some(FoundLabel {
                        position: pos,
                        text_height_ratio: templates[ti].ratio,
                        score: s,
                    });
                }
            }
        }
    }
    best.filter(|b| b.score >= THRESHOLD)
}
