//! The visible (explicit) label for images: "AI生成" drawn on an edge or corner, its ink at least
//! 5% of the image's shortest side tall (GB 45438 explicit-label rule).
//!
//! The text is set in an embedded subset of Noto Sans CJK SC Bold (SIL OFL 1.1, see
//! `fonts/OFL.txt` and `fonts/make-subset.sh`). Its size is chosen from the glyphs' exact outline
//! bounds, not the font size, so the *ink* reaches the target height: "ink height" here is the
//! height of the rows where some glyph covers at least half a pixel, measured on the rendered
//! image (the tests measure exactly that).
//!
//! This crate renders onto RGBA pixels. Wiring it into `mark` (decode, orientation, re-encode
//! keeping format, quality and ICC/EXIF) is the job of the CLI pipeline.

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use image::{Rgba, RgbaImage};
use std::fmt;

/// The embedded font: Noto Sans CJK SC Bold, cut to printable ASCII and label characters.
pub const FONT: &[u8] = include_bytes!("../fonts/AIGCLabelSans-Bold.otf");

/// The least ink height the standard allows, as a share of the shortest side.
pub const MIN_HEIGHT_RATIO: f32 = 0.05;

/// Where the label goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    TopLeft,
    Top,
    TopRight,
    Left,
    Right,
    BottomLeft,
    Bottom,
    BottomRight,
}

impl Position {
    pub const ALL: [Position; 8] = [
        Position::TopLeft,
        Position::Top,
        Position::TopRight,
        Position::Left,
        Position::Right,
        Position::BottomLeft,
        Position::Bottom,
        Position::BottomRight,
    ];

    /// Horizontal and vertical placement: -1 start, 0 centre, 1 end.
    fn anchors(self) -> (i8, i8) {
        match self {
            Position::TopLeft => (-1, -1),
            Position::Top => (0, -1),
            Position::TopRight => (1, -1),
            Position::Left => (-1, 0),
            Position::Right => (1, 0),
            Position::BottomLeft => (-1, 1),
            Position::Bottom => (0, 1),
            Position::BottomRight => (1, 1),
        }
    }
}

/// How the label looks.
#[derive(Clone, Debug)]
pub struct LabelStyle {
    pub text: String,
    pub position: Position,
    /// Ink height as a share of the shortest side; never below [`MIN_HEIGHT_RATIO`]. The default
    /// 0.06 leaves a margin above the rule.
    pub height_ratio: f32,
    /// Gap between the plate and the image edge, as a share of the shortest side.
    pub margin_ratio: f32,
    /// A semi-opaque black plate behind the white text, more opaque over brighter content.
    pub plate: bool,
    /// Opacity of the text and plate.
    pub opacity: f32,
}

impl Default for LabelStyle {
    fn default() -> LabelStyle {
        LabelStyle {
            text: "AI生成".to_string(),
            position: Position::BottomRight,
            height_ratio: 0.06,
            margin_ratio: 0.02,
            plate: true,
            opacity: 1.0,
        }
    }
}

/// What was drawn where, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// The ink box of the text: x0, y0 inclusive, x1, y1 exclusive.
    pub ink: [u32; 4],
    /// The plate box (equal to `ink` without a plate).
    pub plate: [u32; 4],
    /// Ink height over the shortest side, as laid out.
    pub height_ratio: f32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelError {
    /// Characters the font has no glyph for.
    MissingGlyphs(Vec<char>),
    /// The text is empty or only spaces.
    EmptyText,
    /// At the required height the text is wider or taller than the image allows.
    DoesNotFit {
        needed_width: u32,
        available_width: u32,
    },
    /// The font could not be read.
    BadFont(String),
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelError::MissingGlyphs(c) => {
                let list: String = c.iter().collect();
                write!(f, "the font has no glyph for {list:?}; pass --font with a font that covers them")
            }
            LabelError::EmptyText => f.write_str("the label text is empty"),
            LabelError::DoesNotFit { needed_width, available_width } => write!(
                f,
                "the label needs {needed_width} px of width at the required height but only {available_width} px are available; use a shorter text"
            ),
            LabelError::BadFont(e) => write!(f, "cannot read the font: {e}"),
        }
    }
}

impl std::error::Error for LabelError {}

/// The embedded font.
pub fn embedded_font() -> FontRef<'static> {
    FontRef::try_from_slice(FONT).expect("the embedded font is valid")
}

/// Characters of `text` that `font` cannot draw (spaces are fine).
pub fn missing_glyphs<F: Font>(font: &F, text: &str) -> Vec<char> {
    let mut out: Vec<char> = text
        .chars()
        .filter(|c| !c.is_whitespace() && font.glyph_id(*c).0 == 0)
        .collect();
    out.dedup();
    out
}

/// Laid-out glyphs at a scale, with the exact ink box relative to the pen origin.
struct Layout {
    scale: PxScale,
    /// (glyph id, pen x)
    glyphs: Vec<(ab_glyph::GlyphId, f32)>,
    /// Exact ink bounds in pixels, y down, relative to the baseline origin: x0, y0, x1, y1.
    ink: [f32; 4],
}

fn layout<F: Font>(font: &F, text: &str, px: f32) -> Layout {
    let scaled = font.as_scaled(PxScale::from(px));
    let (hs, vs) = (scaled.h_scale_factor(), scaled.v_scale_factor());
    let mut x = 0.0f32;
    let mut prev = None;
    let mut glyphs = Vec::new();
    let mut ink = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        if let Some(outline) = font.outline(id) {
            let b = outline.bounds;
            ink[0] = ink[0].min(x + b.min.x * hs);
            ink[2] = ink[2].max(x + b.max.x * hs);
            // Font units are y up, pixels y down; ab_glyph keeps the top in `min.y`, so take
            // both ends explicitly rather than trust the field names.
            let (lo, hi) = (b.min.y.min(b.max.y), b.min.y.max(b.max.y));
            ink[1] = ink[1].min(-hi * vs);
            ink[3] = ink[3].max(-lo * vs);
        }
        glyphs.push((id, x));
        x += scaled.h_advance(id);
        prev = Some(id);
    }
    Layout {
        scale: PxScale::from(px),
        glyphs,
        ink,
    }
}

/// Draws the label onto `img` and says where it went.
pub fn draw_label<F: Font>(
    img: &mut RgbaImage,
    font: &F,
    style: &LabelStyle,
) -> Result<Placement, LabelError> {
    if style.text.trim().is_empty() {
        return Err(LabelError::EmptyText);
    }
    let missing = missing_glyphs(font, &style.text);
    if !missing.is_empty() {
        return Err(LabelError::MissingGlyphs(missing));
    }
    let (w, h) = img.dimensions();
    let short = w.min(h) as f32;
    // One pixel more than the target: anti-aliased top and bottom rows may fall under half cover.
    let target = (style.height_ratio.max(MIN_HEIGHT_RATIO) * short).ceil() + 1.0;
    // Ink height is linear in the pixel scale: measure at 100 px, scale to the target.
    let probe = layout(font, &style.text, 100.0);
    let probe_h = probe.ink[3] - probe.ink[1];
    let lay = layout(font, &style.text, 100.0 * target / probe_h);
    let ink_w = (lay.ink[2] - lay.ink[0]).ceil();
    let ink_h = (lay.ink[3] - lay.ink[1]).ceil();
    let margin = (style.margin_ratio * short).round().max(1.0);
    let pad = if style.plate {
        (0.25 * ink_h).round().max(1.0)
    } else {
        0.0
    };
    let box_w = ink_w + 2.0 * pad;
    let box_h = ink_h + 2.0 * pad;
    let available_width = (w as f32 - 2.0 * margin).max(0.0);
    if box_w > available_width || box_h > h as f32 - 2.0 * margin {
        return Err(LabelError::DoesNotFit {
            needed_width: box_w as u32,
            available_width: available_width as u32,
        });
    }
    let (ax, ay) = style.position.anchors();
    let place = |anchor: i8, size: f32, extent: f32| match anchor {
        -1 => margin,
        0 => ((extent - size) / 2.0).floor(),
        _ => extent - margin - size,
    };
    let bx = place(ax, box_w, w as f32);
    let by = place(ay, box_h, h as f32);
    let plate = [
        bx as u32,
        by as u32,
        (bx + box_w) as u32,
        (by + box_h) as u32,
    ];
    // Pen origin so the ink box's top-left lands at (bx + pad, by + pad).
    let ox = bx + pad - lay.ink[0];
    let oy = by + pad - lay.ink[1];

    let text_rgb = [255, 255, 255];
    let opacity = style.opacity.clamp(0.0, 1.0);
    if style.plate {
        let alpha = plate_alpha(img, plate) * opacity;
        for y in plate[1]..plate[3] {
            for x in plate[0]..plate[2] {
                blend(img.get_pixel_mut(x, y), [0, 0, 0], alpha);
            }
        }
    }
    let scaled = font.as_scaled(lay.scale);
    let mut ink = [u32::MAX, u32::MAX, 0, 0];
    for (id, x) in &lay.glyphs {
        let glyph = id.with_scale_and_position(lay.scale, point(ox + x, oy));
        let Some(outlined) = scaled.outline_glyph(glyph) else {
            continue;
        };
        let b = outlined.px_bounds();
        outlined.draw(|gx, gy, cover| {
            let (px, py) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
            if px < 0 || py < 0 || px >= w as i64 || py >= h as i64 || cover <= 0.0 {
                return;
            }
            let (px, py) = (px as u32, py as u32);
            blend(
                img.get_pixel_mut(px, py),
                text_rgb,
                cover.min(1.0) * opacity,
            );
            if cover >= 0.5 {
                ink = [
                    ink[0].min(px),
                    ink[1].min(py),
                    ink[2].max(px + 1),
                    ink[3].max(py + 1),
                ];
            }
        });
    }
    let height_ratio = (ink[3].saturating_sub(ink[1])) as f32 / short;
    Ok(Placement {
        ink,
        plate: if style.plate { plate } else { ink },
        height_ratio,
    })
}

/// The plate's opacity for the region: white text on a black plate reads on anything, and the
/// brighter what lies beneath, the more plate it needs (0.45 over black up to 0.8 over white).
fn plate_alpha(img: &RgbaImage, r: [u32; 4]) -> f32 {
    let (mut sum, mut n) = (0.0f32, 0u32);
    let step = ((r[2] - r[0]).max(r[3] - r[1]) / 64).max(1) as usize;
    for y in (r[1]..r[3]).step_by(step) {
        for x in (r[0]..r[2]).step_by(step) {
            let p = img.get_pixel(x, y).0;
            let a = p[3] as f32 / 255.0;
            // Transparent pixels count as the light background most viewers show.
            let l = (0.2126 * p[0] as f32 + 0.7152 * p[1] as f32 + 0.0722 * p[2] as f32) / 255.0;
            sum += l * a + (1.0 - a);
            n += 1;
        }
    }
    0.45 + 0.35 * sum / n.max(1) as f32
}

/// "Over" compositing of an opaque colour at `alpha` onto a pixel that may be transparent.
fn blend(p: &mut Rgba<u8>, rgb: [u8; 3], alpha: f32) {
    if p[3] == 255 {
        // Opaque destination (the common case): a plain lerp, no division.
        for i in 0..3 {
            p[i] = (p[i] as f32 + (rgb[i] as f32 - p[i] as f32) * alpha).round() as u8;
        }
        return;
    }
    let da = p[3] as f32 / 255.0;
    let oa = alpha + da * (1.0 - alpha);
    if oa <= 0.0 {
        return;
    }
    for i in 0..3 {
        let c = (rgb[i] as f32 * alpha + p[i] as f32 * da * (1.0 - alpha)) / oa;
        p[i] = c.round().clamp(0.0, 255.0) as u8;
    }
    p[3] = (oa * 255.0).round() as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_covers_the_default_texts() {
        let f = embedded_font();
        assert!(missing_glyphs(&f, "AI生成").is_empty());
        assert!(missing_glyphs(&f, "本内容由人工智能生成").is_empty());
        assert!(missing_glyphs(&f, "AI合成 (test) 2026").is_empty());
        assert_eq!(missing_glyphs(&f, "AI生成图片"), vec!['图', '片']);
    }

    #[test]
    fn blending_onto_transparent_keeps_the_colour() {
        let mut p = Rgba([0, 0, 0, 0]);
        blend(&mut p, [255, 255, 255], 0.5);
        assert_eq!(p, Rgba([255, 255, 255, 128]));
        let mut q = Rgba([0, 0, 0, 255]);
        blend(&mut q, [255, 255, 255], 1.0);
        assert_eq!(q, Rgba([255, 255, 255, 255]));
        let mut h = Rgba([100, 0, 200, 255]);
        blend(&mut h, [200, 100, 0], 0.5);
        assert_eq!(h, Rgba([150, 50, 100, 255]));
    }
}
