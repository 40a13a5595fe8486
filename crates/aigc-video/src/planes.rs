//! The picture layouts the pipeline works on directly, without a colour conversion: planar
//! YUV (4:2:0, 4:2:2, 4:4:4) and grey, 8 bits or 9-16 bits little-endian. The label is
//! composited in YUV (white text on a black plate is grey, so chroma goes to neutral) and the
//! watermark is added to luma, so no frame is ever converted to RGB and back.

use aigc_image::watermark::LumaPlane;
use aigc_image::LabelLayer;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::util::color::Range;
use ffmpeg_next::util::frame::Video as Frame;

/// A planar layout this crate reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub bits: u32,
    /// log2 of the chroma subsampling, horizontally and vertically.
    pub chroma_shift: (u32, u32),
    /// Grey only (no chroma planes).
    pub grey: bool,
    /// Full-range ("J") formats: black is 0, white the maximum.
    pub full_range: bool,
}

/// The layout of `pixel`, or `None` for formats the pipeline does not handle (packed RGB,
/// semi-planar NV12, big-endian...).
pub fn layout(pixel: Pixel) -> Option<Layout> {
    let (bits, shift, grey, full) = match pixel {
        Pixel::YUV420P => (8, (1, 1), false, false),
        Pixel::YUVJ420P => (8, (1, 1), false, true),
        Pixel::YUV422P => (8, (1, 0), false, false),
        Pixel::YUVJ422P => (8, (1, 0), false, true),
        Pixel::YUV444P => (8, (0, 0), false, false),
        Pixel::YUVJ444P => (8, (0, 0), false, true),
        Pixel::GRAY8 => (8, (0, 0), true, false),
        Pixel::YUV420P10LE => (10, (1, 1), false, false),
        Pixel::YUV422P10LE => (10, (1, 0), false, false),
        Pixel::YUV444P10LE => (10, (0, 0), false, false),
        Pixel::YUV420P12LE => (12, (1, 1), false, false),
        Pixel::YUV422P12LE => (12, (1, 0), false, false),
        Pixel::YUV444P12LE => (12, (0, 0), false, false),
        Pixel::GRAY10LE => (10, (0, 0), true, false),
        _ => return None,
    };
    Some(Layout {
        bits,
        chroma_shift: shift,
        grey,
        full_range: full,
    })
}

impl Layout {
    /// The layout with the frame's own range flag taken into account.
    pub fn with_range(mut self, range: Range) -> Layout {
        if range == Range::JPEG {
            self.full_range = true;
        }
        self
    }

    fn max(self) -> f32 {
        ((1u32 << self.bits) - 1) as f32
    }

    /// Luma code values for black and white.
    fn luma_span(self) -> (f32, f32) {
        if self.full_range {
            (0.0, self.max())
        } else {
            let unit = (1u32 << (self.bits - 8)) as f32;
            (16.0 * unit, 235.0 * unit)
        }
    }

    fn neutral_chroma(self) -> f32 {
        (1u32 << (self.bits - 1)) as f32
    }
}

/// The luma plane of `frame` as the watermark sees it.
pub fn luma_plane<'a>(frame: &'a mut Frame, lay: Layout) -> LumaPlane<'a> {
    let (width, height) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.stride(0);
    LumaPlane {
        data: frame.data_mut(0),
        stride,
        width,
        height,
        bits: lay.bits,
    }
}

/// Mean brightness (0 black to 1 white) of the luma inside `rect`, sampled.
pub fn mean_brightness(frame: &Frame, lay: Layout, rect: [u32; 4]) -> f32 {
    let (lo, hi) = lay.luma_span();
    let data = frame.data(0);
    let stride = frame.stride(0);
    let step = ((rect[2] - rect[0]).max(rect[3] - rect[1]) / 64).max(1) as usize;
    let (mut sum, mut n) = (0f32, 0u32);
    for y in (rect[1] as usize..rect[3] as usize).step_by(step) {
        for x in (rect[0] as usize..rect[2] as usize).step_by(step) {
            sum += sample(data, y * stride, x, lay.bits);
            n += 1;
        }
    }
    ((sum / n.max(1) as f32 - lo) / (hi - lo)).clamp(0.0, 1.0)
}

#[inline]
fn sample(data: &[u8], row: usize, x: usize, bits: u32) -> f32 {
    if bits > 8 {
        u16::from_le_bytes([data[row + 2 * x], data[row + 2 * x + 1]]) as f32
    } else {
        data[row + x] as f32
    }
}

#[inline]
fn put(data: &mut [u8], row: usize, x: usize, bits: u32, v: f32) {
    if bits > 8 {
        let b = (v.round() as u16).to_le_bytes();
        data[row + 2 * x] = b[0];
        data[row + 2 * x + 1] = b[1];
    } else {
        data[row + x] = v.round() as u8;
    }
}

/// Composites the label layer onto `frame` in place: luma towards the layer's grey, chroma
/// towards neutral, each chroma sample by the mean opacity of the luma samples it covers.
pub fn composite(frame: &mut Frame, lay: Layout, layer: &LabelLayer) {
    let (lo, hi) = lay.luma_span();
    let [x0, y0, x1, y1] = layer.rect.map(|v| v as usize);
    let rw = x1 - x0;
    let stride = frame.stride(0);
    {
        let data = frame.data_mut(0);
        for (ry, row) in layer.pixels.chunks_exact(rw).enumerate() {
            let base = (y0 + ry) * stride;
            for (i, &(a, white)) in row.iter().enumerate() {
                if a <= 0.0 {
                    continue;
                }
                let d = sample(data, base, x0 + i, lay.bits);
                let v = lo + white * (hi - lo);
                put(data, base, x0 + i, lay.bits, d + (v - d) * a);
            }
        }
    }
    if lay.grey {
        return;
    }
    let (sx, sy) = lay.chroma_shift;
    let neutral = lay.neutral_chroma();
    let (cx0, cy0) = (x0 >> sx, y0 >> sy);
    let (cx1, cy1) = ((x1 + (1 << sx) - 1) >> sx, (y1 + (1 << sy) - 1) >> sy);
    for plane in 1..3 {
        let stride = frame.stride(plane);
        let data = frame.data_mut(plane);
        for cy in cy0..cy1 {
            for cx in cx0..cx1 {
                // Mean opacity over the luma samples this chroma sample covers.
                let (mut a, mut n) = (0f32, 0f32);
                for y in (cy << sy)..((cy + 1) << sy) {
                    for x in (cx << sx)..((cx + 1) << sx) {
                        if (y0..y1).contains(&y) && (x0..x1).contains(&x) {
                            a += layer.pixels[(y - y0) * rw + (x - x0)].0;
                        }
                        n += 1.0;
                    }
                }
                let a = a / n;
                if a <= 0.0 {
                    continue;
                }
                let d = sample(data, cy * stride, cx, lay.bits);
                put(data, cy * stride, cx, lay.bits, d + (neutral - d) * a);
            }
        }
    }
}

/// The luma plane of `frame` as an 8-bit grey image (for finding the visible label).
pub fn luma_image(frame: &Frame, lay: Layout) -> image::GrayImage {
    let (w, h) = (frame.width(), frame.height());
    let data = frame.data(0);
    let stride = frame.stride(0);
    let shift = lay.bits - 8;
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h as usize {
        if shift == 0 {
            out.extend_from_slice(&data[y * stride..y * stride + w as usize]);
        } else {
            out.extend(
                (0..w as usize)
                    .map(|x| (sample(data, y * stride, x, lay.bits) as u32 >> shift) as u8),
            );
        }
    }
    image::GrayImage::from_raw(w, h, out).expect("w x h samples")
}
