//! Decoded pictures in a pixel format the pipeline does not work on directly (packed or
//! semi-planar YUV such as NV12 or YUYV, RGB from QuickTime Animation, PNG or raw video,
//! big-endian samples) are converted once, by libswscale, to the planar YUV of the same
//! chroma subsampling (RGB: 4:4:4) at 8 or 10 bits, and go on from there as any other.

use crate::planes;
use ff::format::Pixel;
use ff::frame::Video as Frame;
use ff::util::color::{Range, Space};
use ffmpeg_next as ff;

/// The planar format the pipeline works in for `pixel`, and whether `pixel` is RGB; `Err`
/// names why it cannot be. Pictures with an alpha channel are refused: the encoders here
/// cannot carry it, and dropping it would change what the video shows.
pub fn working_format(pixel: Pixel) -> Result<(Pixel, bool), String> {
    let d = pixel
        .descriptor()
        .ok_or_else(|| format!("its pixel format {pixel:?} is unknown to this FFmpeg"))?;
    let name = d.name();
    if matches!(d.nb_components(), 2 | 4) {
        return Err(format!(
            "its pixels ({name}) have an alpha channel, which the encoders here cannot carry; \
             flatten it first (e.g. ffmpeg -i IN -pix_fmt yuv444p OUT)"
        ));
    }
    let wide = more_than_8_bits(name);
    // A palette's entries are RGB (GIF and some animation codecs decode to pal8).
    let rgb = ["rgb", "bgr", "gbr"].iter().any(|n| name.contains(n)) || name.starts_with("pal");
    let target = if d.nb_components() == 1 && !rgb {
        if wide {
            Pixel::GRAY10LE
        } else {
            Pixel::GRAY8
        }
    } else {
        let shift = if rgb {
            (0, 0)
        } else {
            (d.log2_chroma_w(), d.log2_chroma_h())
        };
        match (shift, wide) {
            ((0, 0), false) => Pixel::YUV444P,
            ((0, 0), true) => Pixel::YUV444P10LE,
            ((1, 0), false) => Pixel::YUV422P,
            ((1, 0), true) => Pixel::YUV422P10LE,
            (_, false) => Pixel::YUV420P,
            (_, true) => Pixel::YUV420P10LE,
        }
    };
    debug_assert!(planes::layout(target).is_some());
    Ok((target, rgb))
}

/// What a decoder's frames are converted to: plain data, so it can go to another thread (the
/// libswscale context itself cannot, so [`Converter`] is made where it is used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conversion {
    to: Pixel,
    rgb: bool,
}

impl Conversion {
    /// The conversion for a decoder's `pixel` format (see [`working_format`]).
    pub fn for_format(pixel: Pixel) -> Result<Conversion, String> {
        let (to, rgb) = working_format(pixel)?;
        Ok(Conversion { to, rgb })
    }

    /// The format frames come out in.
    pub fn target(self) -> Pixel {
        self.to
    }

    /// The colour matrix and range of converted pictures, given the decoder's: libswscale
    /// turns RGB into limited-range BT.601 YUV; YUV keeps what it had.
    pub fn colour(self, space: Space, range: Range) -> (Space, Range) {
        if self.rgb {
            (Space::BT470BG, Range::MPEG)
        } else {
            (space, range)
        }
    }
}

/// Whether FFmpeg's pixel format `name` has more than 8 bits a sample. The descriptor's
/// depths are not reachable without `unsafe`, so this reads FFmpeg's naming: a trailing depth
/// (`yuv420p10le`, `gray16be`, `gbrp12`; not NV12/NV16/NV21/NV24/NV42, whose digits are a
/// layout), a 48- or 64-bit pixel (`rgb48`), float samples, or the 10/12/16-bit packed and
/// semi-planar families (`p010`, `p210`, `y210`, `xv30`, `x2rgb10`).
fn more_than_8_bits(name: &str) -> bool {
    let bare = name.trim_end_matches("le").trim_end_matches("be");
    let digits = bare.len() - bare.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let depth: u32 = bare[bare.len() - digits..].parse().unwrap_or(0);
    let nv_layout = name.starts_with("nv") && depth != 20;
    (!nv_layout && (9..=16).contains(&depth))
        || ["48", "64", "f16", "f32", "x2rgb10", "x2bgr10", "xv3", "y21"]
            .iter()
            .any(|n| name.contains(n))
        || ["p01", "p21", "p41"].iter().any(|n| name.starts_with(n))
}

/// Converts each decoded frame to the working format.
pub struct Converter {
    conversion: Conversion,
    scaler: Option<ff::software::scaling::Context>,
}

impl Converter {
    pub fn new(conversion: Conversion) -> Converter {
        Converter {
            conversion,
            scaler: None,
        }
    }

    /// `frame` in the working format, with its time, picture type and colour tags.
    pub fn convert(&mut self, frame: &Frame) -> Result<Frame, String> {
        let (w, h, from) = (frame.width(), frame.height(), frame.format());
        let stale = self.scaler.as_ref().is_none_or(|s| {
            let i = s.input();
            (i.format, i.width, i.height) != (from, w, h)
        });
        if stale {
            self.scaler = Some(
                ff::software::scaling::Context::get(
                    from,
                    w,
                    h,
                    self.conversion.to,
                    w,
                    h,
                    ff::software::scaling::Flags::BICUBIC
                        | ff::software::scaling::Flags::ACCURATE_RND,
                )
                .map_err(|e| format!("cannot convert its {from:?} pictures: {e}"))?,
            );
        }
        let mut out = Frame::empty();
        self.scaler
            .as_mut()
            .expect("made above")
            .run(frame, &mut out)
            .map_err(|e| format!("cannot convert its {from:?} pictures: {e}"))?;
        out.set_pts(frame.timestamp().or(frame.pts()));
        out.set_kind(if frame.is_key() {
            ff::picture::Type::I
        } else {
            frame.kind()
        });
        let (space, range) = self
            .conversion
            .colour(frame.color_space(), frame.color_range());
        out.set_color_space(space);
        out.set_color_range(range);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_formats_follow_subsampling_and_depth() {
        let cases = [
            (Pixel::NV12, Pixel::YUV420P, false),
            (Pixel::NV21, Pixel::YUV420P, false),
            (Pixel::NV16, Pixel::YUV422P, false),
            (Pixel::YUYV422, Pixel::YUV422P, false),
            (Pixel::UYVY422, Pixel::YUV422P, false),
            (Pixel::P010LE, Pixel::YUV420P10LE, false),
            (Pixel::YUV420P10BE, Pixel::YUV420P10LE, false),
            (Pixel::YUV411P, Pixel::YUV420P, false),
            (Pixel::RGB24, Pixel::YUV444P, true),
            (Pixel::BGR24, Pixel::YUV444P, true),
            (Pixel::RGB48LE, Pixel::YUV444P10LE, true),
            (Pixel::GBRP, Pixel::YUV444P, true),
            (Pixel::GBRP12LE, Pixel::YUV444P10LE, true),
            (Pixel::GRAY16LE, Pixel::GRAY10LE, false),
            (Pixel::MonoBlack, Pixel::GRAY8, false),
            (Pixel::PAL8, Pixel::YUV444P, true),
        ];
        for (from, to, rgb) in cases {
            assert_eq!(working_format(from), Ok((to, rgb)), "{from:?}");
        }
        for alpha in [Pixel::RGBA, Pixel::ARGB, Pixel::YUVA420P, Pixel::YA8] {
            let err = working_format(alpha).unwrap_err();
            assert!(err.contains("alpha"), "{alpha:?}: {err}");
        }
    }
}
