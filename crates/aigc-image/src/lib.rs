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

mod find_label;
pub mod pipeline;
pub mod watermark;
pub use find_label::{find_label, find_label_at, FoundLabel};

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use image::{DynamicImage, GenericImageView, Pixel, Rgba, RgbaImage};
use std::fmt;

/// The embedded font: Noto Sans CJK SC Bold, cut to printable ASCII and label characters.
pub const FONT: &[u8] = include_bytes!("../fonts/AIGCLabelSans-Bold.otf");

/// Plate padding around the ink, as a share of the ink height.
const PLATE_PAD: f32 = 0.25;

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

    /// The kebab-case name used on the command line and in reports (`bottom-right`).
    pub fn name(self) -> &'static str {
        match self {
            Position::TopLeft => "top-left",
            Position::Top => "top",
            Position::TopRight => "top-right",
            Position::Left => "left",
            Position::Right => "right",
            Position::BottomLeft => "bottom-left",
            Position::Bottom => "bottom",
            Position::BottomRight => "bottom-right",
        }
    }

    /// The position with this [`name`](Position::name).
    pub fn from_name(name: &str) -> Option<Position> {
        Position::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Horizontal and vertical placement: -1 start, 0 centre, 1 end.
    pub(crate) fn anchors(self) -> (i8, i8) {
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

/// Where the label's pieces go for an image of a given size, before anything is drawn.
struct Plan {
    lay: Layout,
    /// Pen origin of the first glyph.
    origin: (f32, f32),
    plate: [u32; 4],
    short: f32,
}

fn plan<F: Font>(w: u32, h: u32, font: &F, style: &LabelStyle) -> Result<Plan, LabelError> {
    if style.text.trim().is_empty() {
        return Err(LabelError::EmptyText);
    }
    let missing = missing_glyphs(font, &style.text);
    if !missing.is_empty() {
        return Err(LabelError::MissingGlyphs(missing));
    }
    let short = w.min(h) as f32;
    // One pixel more than the target: anti-aliased top and bottom rows may fall under half cover.
    let target = (style.height_ratio.max(MIN_HEIGHT_RATIO) * short).ceil() + 1.0;
    let lay = layout_for_ink_height(font, &style.text, target);
    let ink_w = (lay.ink[2] - lay.ink[0]).ceil();
    let ink_h = (lay.ink[3] - lay.ink[1]).ceil();
    let margin = (style.margin_ratio * short).round().max(1.0);
    let pad = if style.plate {
        (PLATE_PAD * ink_h).round().max(1.0)
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
    let origin = (bx + pad - lay.ink[0], by + pad - lay.ink[1]);
    Ok(Plan {
        lay,
        origin,
        plate,
        short,
    })
}

/// The layout whose exact ink box is `ink_h` pixels tall. Ink height is linear in the pixel
/// scale: measure at 100 px, scale to the target.
fn layout_for_ink_height<F: Font>(font: &F, text: &str, ink_h: f32) -> Layout {
    let probe = layout(font, text, 100.0);
    let probe_h = probe.ink[3] - probe.ink[1];
    layout(font, text, 100.0 * ink_h / probe_h)
}

/// The label as one layer over the plate box: per pixel, its opacity and how white it is
/// (text is white, the plate black, so one grey level describes the colour).
struct Stamp {
    rect: [u32; 4],
    /// (alpha, white share) per pixel of `rect`, row-major.
    px: Vec<(f32, f32)>,
    ink: [u32; 4],
}

/// Text coverage (0..1) over `rect`, and the ink box of the pixels at least half covered.
fn coverage<F: Font>(
    font: &F,
    lay: &Layout,
    origin: (f32, f32),
    rect: [u32; 4],
) -> (Vec<f32>, [u32; 4]) {
    let (rw, rh) = (rect[2] - rect[0], rect[3] - rect[1]);
    let mut cover = vec![0f32; (rw * rh) as usize];
    let mut ink = [u32::MAX, u32::MAX, 0, 0];
    let scaled = font.as_scaled(lay.scale);
    for (id, x) in &lay.glyphs {
        let glyph = id.with_scale_and_position(lay.scale, point(origin.0 + x, origin.1));
        let Some(outlined) = scaled.outline_glyph(glyph) else {
            continue;
        };
        let b = outlined.px_bounds();
        outlined.draw(|gx, gy, c| {
            let (px, py) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
            let inside = px >= rect[0] as i64
                && py >= rect[1] as i64
                && px < rect[2] as i64
                && py < rect[3] as i64;
            if !inside || c <= 0.0 {
                return;
            }
            let (px, py) = (px as u32, py as u32);
            let i = ((py - rect[1]) * rw + (px - rect[0])) as usize;
            // Glyphs may touch (kerning): coverage adds up, capped at full.
            cover[i] = (cover[i] + c).min(1.0);
            if cover[i] >= 0.5 {
                ink = [
                    ink[0].min(px),
                    ink[1].min(py),
                    ink[2].max(px + 1),
                    ink[3].max(py + 1),
                ];
            }
        });
    }
    (cover, ink)
}

fn stamp<F: Font>(font: &F, plan: &Plan, style: &LabelStyle, plate_alpha: f32) -> Stamp {
    let opacity = style.opacity.clamp(0.0, 1.0);
    let rect = plan.plate;
    let (cover, ink) = coverage(font, &plan.lay, plan.origin, rect);
    let pa = if style.plate {
        plate_alpha * opacity
    } else {
        0.0
    };
    // Text (white, alpha c) over the plate (black, alpha pa) as one layer: alpha c + pa(1 - c),
    // premultiplied white c.
    let px = cover
        .iter()
        .map(|&c| {
            let c = c * opacity;
            let a = c + pa * (1.0 - c);
            (a, if a > 0.0 { c / a } else { 0.0 })
        })
        .collect();
    Stamp { rect, px, ink }
}

/// "Over" compositing of the stamp onto any 8- or 16-bit pixel type, colour or grey, with or
/// without alpha; the pixel type is kept.
fn composite<P: Pixel>(img: &mut image::ImageBuffer<P, Vec<P::Subpixel>>, s: &Stamp) {
    use image::Primitive;
    use num_traits::{NumCast, ToPrimitive};
    let n = P::CHANNEL_COUNT as usize;
    let colors = if P::HAS_ALPHA { n - 1 } else { n };
    let max = P::Subpixel::DEFAULT_MAX_VALUE.to_f32().unwrap_or(255.0);
    let cast = |f: f32| -> P::Subpixel {
        NumCast::from(f.round().clamp(0.0, max)).unwrap_or(P::Subpixel::DEFAULT_MAX_VALUE)
    };
    let rw = (s.rect[2] - s.rect[0]) as usize;
    let width = img.width() as usize;
    let raw: &mut [P::Subpixel] = img;
    for (ry, stamp_row) in s.px.chunks_exact(rw).enumerate() {
        let start = ((s.rect[1] as usize + ry) * width + s.rect[0] as usize) * n;
        let row = &mut raw[start..start + rw * n];
        for (ch, &(a, v)) in row.chunks_exact_mut(n).zip(stamp_row) {
            if a <= 0.0 {
                continue;
            }
            let value = v * max;
            let da = if P::HAS_ALPHA {
                ch[n - 1].to_f32().unwrap_or(max) / max
            } else {
                1.0
            };
            if da >= 1.0 {
                // Opaque destination (the common case): a plain lerp, no division.
                for c in ch.iter_mut().take(colors) {
                    let d = c.to_f32().unwrap_or(0.0);
                    *c = cast(d + (value - d) * a);
                }
                continue;
            }
            let oa = a + da * (1.0 - a);
            if oa <= 0.0 {
                continue;
            }
            for c in ch.iter_mut().take(colors) {
                let d = c.to_f32().unwrap_or(0.0);
                *c = cast((value * a + d * da * (1.0 - a)) / oa);
            }
            ch[n - 1] = cast(oa * max);
        }
    }
}

/// Draws the label onto `img` and says where it went.
pub fn draw_label<F: Font>(
    img: &mut RgbaImage,
    font: &F,
    style: &LabelStyle,
) -> Result<Placement, LabelError> {
    let plan = plan(img.width(), img.height(), font, style)?;
    let st = stamp(font, &plan, style, plate_alpha(&*img, plan.plate));
    composite(img, &st);
    Ok(placement(&plan, &st, style))
}

/// Draws the label onto an image of any pixel type the `image` crate decodes (grey, grey+alpha,
/// RGB, RGBA; 8 or 16 bits), keeping its type.
pub fn draw_label_any<F: Font>(
    img: &mut DynamicImage,
    font: &F,
    style: &LabelStyle,
) -> Result<Placement, LabelError> {
    let plan = plan(img.width(), img.height(), font, style)?;
    let st = stamp(font, &plan, style, plate_alpha(&*img, plan.plate));
    match img {
        DynamicImage::ImageLuma8(b) => composite(b, &st),
        DynamicImage::ImageLumaA8(b) => composite(b, &st),
        DynamicImage::ImageRgb8(b) => composite(b, &st),
        DynamicImage::ImageRgba8(b) => composite(b, &st),
        DynamicImage::ImageLuma16(b) => composite(b, &st),
        DynamicImage::ImageLumaA16(b) => composite(b, &st),
        DynamicImage::ImageRgb16(b) => composite(b, &st),
        DynamicImage::ImageRgba16(b) => composite(b, &st),
        other => {
            let mut b = other.to_rgba16();
            composite(&mut b, &st);
            *other = DynamicImage::ImageRgba16(b);
        }
    }
    Ok(placement(&plan, &st, style))
}

/// The label as a layer to composite onto pixels this crate does not hold (video frames in
/// YUV): over `rect`, per pixel, its opacity and how white it is (the text is white, the plate
/// black, so one grey level describes the colour and chroma goes to neutral).
#[derive(Clone, Debug)]
pub struct LabelLayer {
    pub rect: [u32; 4],
    /// (alpha, white share) per pixel of `rect`, row-major.
    pub pixels: Vec<(f32, f32)>,
    pub placement: Placement,
}

/// Lays out and renders the label for a `w` x `h` picture whose content under the plate has
/// mean brightness `beneath` (0 black to 1 white), which sets the plate's opacity.
pub fn label_layer<F: Font>(
    w: u32,
    h: u32,
    font: &F,
    style: &LabelStyle,
    beneath: f32,
) -> Result<LabelLayer, LabelError> {
    let plan = plan(w, h, font, style)?;
    let st = stamp(font, &plan, style, plate_alpha_over(beneath));
    let placement = placement(&plan, &st, style);
    Ok(LabelLayer {
        rect: st.rect,
        pixels: st.px,
        placement,
    })
}

/// Where the plate of the label for a `w` x `h` picture goes, before anything is rendered (to
/// measure the brightness beneath it).
pub fn plate_box<F: Font>(
    w: u32,
    h: u32,
    font: &F,
    style: &LabelStyle,
) -> Result<[u32; 4], LabelError> {
    Ok(plan(w, h, font, style)?.plate)
}

fn placement(plan: &Plan, st: &Stamp, style: &LabelStyle) -> Placement {
    Placement {
        ink: st.ink,
        plate: if style.plate { plan.plate } else { st.ink },
        height_ratio: st.ink[3].saturating_sub(st.ink[1]) as f32 / plan.short,
    }
}

/// The plate's opacity for the region: white text on a black plate reads on anything, and the
/// brighter what lies beneath, the more plate it needs (0.45 over black up to 0.8 over white).
fn plate_alpha<I: GenericImageView<Pixel = Rgba<u8>>>(img: &I, r: [u32; 4]) -> f32 {
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
    plate_alpha_over(sum / n.max(1) as f32)
}

/// The plate's opacity over content of mean brightness `beneath` (0 black to 1 white).
fn plate_alpha_over(beneath: f32) -> f32 {
    0.45 + 0.35 * beneath.clamp(0.0, 1.0)
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
    fn compositing_keeps_colour_on_transparent_and_type_on_16_bit() {
        let one = |a, v| Stamp {
            rect: [0, 0, 1, 1],
            px: vec![(a, v)],
            ink: [0, 0, 1, 1],
        };
        let mut t = RgbaImage::from_pixel(1, 1, Rgba([0, 0, 0, 0]));
        composite(&mut t, &one(0.5, 1.0));
        assert_eq!(t.get_pixel(0, 0), &Rgba([255, 255, 255, 128]));
        let mut o = RgbaImage::from_pixel(1, 1, Rgba([100, 0, 200, 255]));
        composite(&mut o, &one(0.5, 0.0));
        assert_eq!(o.get_pixel(0, 0), &Rgba([50, 0, 100, 255]));
        let mut g = image::ImageBuffer::from_pixel(1, 1, image::Luma([1000u16]));
        composite(&mut g, &one(1.0, 1.0));
        assert_eq!(g.get_pixel(0, 0).0, [65535]);
    }
}
