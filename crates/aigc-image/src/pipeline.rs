//! Marking an image file end to end: decode once, draw the visible label (and the watermark)
//! in the displayed orientation, encode once in the input's format and quality class, carry
//! the input's metadata (EXIF, ICC, XMP, text chunks) over, then write the metadata label
//! through `aigc-meta` (temporary file, read back, rename).

use crate::{draw_label_any, LabelStyle, Placement};
use aigc_core::Label;
use aigc_meta::formats::jpeg;
use aigc_meta::{
    carry_metadata, detect, write_encoded, write_file, Format, MetaError, WriteOptions,
};
use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::tiff::TiffEncoder;
use image::codecs::webp::{WebPDecoder, WebPEncoder};
use image::metadata::Orientation;
use image::{
    AnimationDecoder, DynamicImage, Frame, ImageDecoder, ImageEncoder, ImageFormat, ImageReader,
};
use std::io::Cursor;
use std::path::Path;

/// JPEG quality used when the input's tables say nothing.
const DEFAULT_JPEG_QUALITY: u8 = 90;

/// What to do to the pixels. `None` layers are skipped.
pub struct PixelLayers<'a> {
    pub visible: Option<(&'a LabelStyle, &'a ab_glyph::FontArc)>,
    /// Watermark key and payload.
    pub watermark: Option<(&'a aigc_dsp::Key, u64)>,
}

impl PixelLayers<'_> {
    fn any(&self) -> bool {
        self.visible.is_some() || self.watermark.is_some()
    }
}

/// What marking did besides the metadata label.
#[derive(Clone, Debug, Default)]
pub struct PixelReport {
    pub format: Option<Format>,
    /// Where the visible label went, in stored-pixel coordinates of the first frame.
    pub visible: Option<Placement>,
    /// Frames labeled (animated GIF: all of them).
    pub frames: usize,
    /// The watermark's payload and the PSNR of its luma change alone, in dB.
    pub watermark: Option<(u64, f32)>,
    /// The JPEG quality the output was encoded at.
    pub jpeg_quality: Option<u8>,
    /// Why the pixel layers were not applied to this file, when they were not.
    pub pixels_skipped: Option<String>,
}

/// Marks `input` into `output`: the pixel layers for images whose pixels this crate can
/// decode and encode, then the metadata label. Other media get the metadata label alone and
/// say why in [`PixelReport::pixels_skipped`].
pub fn mark_file(
    input: &Path,
    output: &Path,
    label: &Label,
    opts: &WriteOptions,
    layers: &PixelLayers,
) -> Result<PixelReport, MetaError> {
    let (_, handler) = aigc_meta::open_input(input)?;
    let format = handler.format();
    let mut report = PixelReport {
        format: Some(format),
        ..PixelReport::default()
    };
    let Some(image_format) = pixel_format(format) else {
        if format == Format::Heif {
            report.pixels_skipped = Some(
                "HEIF/AVIF pixels cannot be decoded by this build; metadata label only".into(),
            );
        }
        write_file(input, output, label, opts)?;
        return Ok(report);
    };
    if !layers.any() {
        write_file(input, output, label, opts)?;
        return Ok(report);
    }
    let original = std::fs::read(input)?;
    // A damaged container is refused as it would be without the pixel layers (decoders are
    // lenient and would happily re-encode it); the trial write is a copy in memory.
    if let Some(e) = container_error(handler, &original) {
        return Err(e);
    }
    let encoded = if format == Format::Gif {
        mark_gif(&original, layers, &mut report)?
    } else {
        mark_still(&original, format, image_format, layers, &mut report)?
    };
    let encoded = carry_metadata(format, &original, encoded)?;
    if detect(&encoded).map(|h| h.format()) != Some(format) {
        return Err(MetaError::verification(
            "the re-encoded image is not recognised; nothing was written",
        ));
    }
    write_encoded(&encoded, format, input, output, label, opts)?;
    Ok(report)
}

/// The container's own complaint (a bad CRC, a truncated segment), found by a trial metadata
/// write into memory.
fn container_error(handler: &dyn aigc_meta::FormatHandler, original: &[u8]) -> Option<MetaError> {
    let mut sink = Cursor::new(Vec::with_capacity(original.len() + 4096));
    let label = Label::default().to_json();
    handler
        .write(
            &mut Cursor::new(original),
            &mut sink,
            &label,
            &WriteOptions::default(),
        )
        .err()
}

/// The `image` crate's name for a format whose pixels this crate decodes and encodes.
fn pixel_format(format: Format) -> Option<ImageFormat> {
    match format {
        Format::Jpeg => Some(ImageFormat::Jpeg),
        Format::Png => Some(ImageFormat::Png),
        Format::Webp => Some(ImageFormat::WebP),
        Format::Tiff => Some(ImageFormat::Tiff),
        Format::Gif => Some(ImageFormat::Gif),
        _ => None,
    }
}

/// Decoded pixels as stored, with what the decoder read beside them.
struct Decoded {
    img: DynamicImage,
    orientation: Orientation,
    icc: Option<Vec<u8>>,
    exif: Option<Vec<u8>>,
}

fn decode(data: &[u8], image_format: ImageFormat) -> Result<Decoded, MetaError> {
    let mut reader = ImageReader::new(Cursor::new(data));
    reader.set_format(image_format);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let exif = decoder.exif_metadata().ok().flatten();
    let img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    Ok(Decoded {
        img,
        orientation,
        icc,
        exif,
    })
}

fn decode_error(e: image::ImageError) -> MetaError {
    match e {
        image::ImageError::Limits(l) => MetaError::too_large(format!(
            "is too large to decode for the pixel layers ({l}); pass --no-visible --no-watermark to write the metadata label alone"
        )),
        image::ImageError::Unsupported(u) => MetaError::unsupported(format!(
            "cannot decode its pixels ({u}); pass --no-visible --no-watermark to write the metadata label alone"
        )),
        other => MetaError::malformed(format!("cannot decode its pixels: {other}")),
    }
}

fn encode_error(e: image::ImageError) -> MetaError {
    MetaError::unsupported(format!("cannot re-encode the image: {e}"))
}

fn label_error(e: crate::LabelError) -> MetaError {
    MetaError::unsupported(format!("cannot draw the visible label: {e}"))
}

/// The orientation that undoes `o`.
fn inverse(o: Orientation) -> Orientation {
    match o {
        Orientation::Rotate90 => Orientation::Rotate270,
        Orientation::Rotate270 => Orientation::Rotate90,
        other => other,
    }
}

fn mark_still(
    original: &[u8],
    format: Format,
    image_format: ImageFormat,
    layers: &PixelLayers,
    report: &mut PixelReport,
) -> Result<Vec<u8>, MetaError> {
    if format == Format::Jpeg && jpeg::frame_components(original) == Some(4) {
        return Err(MetaError::unsupported(
            "is a CMYK JPEG, whose pixels this tool does not re-encode; pass --no-visible --no-watermark to write the metadata label alone",
        ));
    }
    if format == Format::Webp
        && WebPDecoder::new(Cursor::new(original))
            .map_err(decode_error)?
            .has_animation()
    {
        return Err(MetaError::unsupported(
            "is an animated WebP, which this tool cannot re-encode; pass --no-visible --no-watermark to write the metadata label alone",
        ));
    }
    let Decoded {
        mut img,
        orientation,
        icc,
        exif,
    } = decode(original, image_format)?;
    // Draw in the orientation a viewer shows, then store the pixels as they were stored, so the
    // carried-over EXIF orientation still applies and the label lands upright in the displayed
    // corner. JPEG and PNG get every metadata segment carried over byte for byte afterwards;
    // WebP and TIFF get ICC and EXIF through their encoders.
    img.apply_orientation(orientation);
    if let Some((style, font)) = layers.visible {
        report.visible = Some(draw_label_any(&mut img, font, style).map_err(label_error)?);
    }
    // The watermark goes on last, over the label, in the orientation people see and re-save.
    if let Some((key, payload)) = layers.watermark {
        let rms = crate::watermark::embed(&mut img, key, payload);
        report.watermark = Some((payload, 20.0 * (255.0 / rms.max(1e-3)).log10()));
    }
    img.apply_orientation(inverse(orientation));
    report.frames = 1;
    let mut out = Vec::with_capacity(original.len() + (original.len() >> 3));
    match format {
        Format::Jpeg => {
            let q = jpeg::estimate_quality(original).unwrap_or(DEFAULT_JPEG_QUALITY);
            report.jpeg_quality = Some(q);
            let img = match img {
                DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => img,
                DynamicImage::ImageLuma16(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLuma8(img.to_luma8()),
                other => DynamicImage::ImageRgb8(other.to_rgb8()),
            };
            JpegEncoder::new_with_quality(&mut out, q)
                .encode_image(&img)
                .map_err(encode_error)?;
        }
        Format::Png => img
            .write_with_encoder(PngEncoder::new(&mut out))
            .map_err(encode_error)?,
        Format::Webp => {
            let img = match img {
                DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageRgb8(_)
                | DynamicImage::ImageRgba8(_) => img,
                other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
                other => DynamicImage::ImageRgb8(other.to_rgb8()),
            };
            // The `image` crate encodes WebP losslessly only: the output keeps every pixel the
            // decoder produced, at a larger size than a lossy input.
            let mut enc = WebPEncoder::new_lossless(&mut out);
            if let Some(icc) = icc {
                let _ = enc.set_icc_profile(icc);
            }
            if let Some(exif) = exif {
                let _ = enc.set_exif_metadata(exif);
            }
            img.write_with_encoder(enc).map_err(encode_error)?
        }
        Format::Tiff => {
            let mut enc = TiffEncoder::new(Cursor::new(&mut out));
            if let Some(icc) = icc {
                let _ = enc.set_icc_profile(icc);
            }
            img.write_with_encoder(enc).map_err(encode_error)?
        }
        _ => unreachable!("only still formats reach here"),
    }
    Ok(out)
}

fn mark_gif(
    original: &[u8],
    layers: &PixelLayers,
    report: &mut PixelReport,
) -> Result<Vec<u8>, MetaError> {
    let decoder = GifDecoder::new(Cursor::new(original)).map_err(decode_error)?;
    let frames: Vec<Frame> = decoder
        .into_frames()
        .collect_frames()
        .map_err(decode_error)?;
    let many = frames.len() > 1;
    if layers.watermark.is_some() {
        report.pixels_skipped =
            Some("no watermark: GIF's 256-colour palettes cannot carry it".into());
    }
    let mut out = Vec::with_capacity(original.len() * 2);
    {
        let mut enc = GifEncoder::new_with_speed(&mut out, 10);
        if many {
            enc.set_repeat(Repeat::Infinite).map_err(encode_error)?;
        }
        for frame in frames {
            let (left, top, delay) = (frame.left(), frame.top(), frame.delay());
            let mut img = DynamicImage::ImageRgba8(frame.into_buffer());
            if let Some((style, font)) = layers.visible {
                let p = draw_label_any(&mut img, font, style).map_err(label_error)?;
                report.visible.get_or_insert(p);
            }
            report.frames += 1;
            let DynamicImage::ImageRgba8(buf) = img else {
                unreachable!("RGBA stays RGBA")
            };
            enc.encode_frame(Frame::from_parts(buf, left, top, delay))
                .map_err(encode_error)?;
        }
    }
    Ok(out)
}

/// What the pixels of an image file show.
#[derive(Clone, Debug, Default)]
pub struct PixelInspection {
    /// Whether the pixels were decoded at all (false for audio, video and HEIF).
    pub decoded: bool,
    /// The visible label found, in the displayed orientation.
    pub visible: Option<crate::FoundLabel>,
    /// The watermark found under the key asked for.
    pub watermark: Option<crate::watermark::WatermarkFound>,
}

/// Decodes an image file of `format` (as the metadata scan found it; the first frame of an
/// animation) in its displayed orientation and looks for this tool's visible label and watermark. Media whose pixels cannot be decoded here come back
/// with `decoded: false`.
pub fn inspect_file<F: ab_glyph::Font>(
    path: &Path,
    format: Format,
    font: &F,
    text: &str,
    key: Option<&aigc_dsp::Key>,
) -> Result<PixelInspection, MetaError> {
    let Some(image_format) = pixel_format(format) else {
        return Ok(PixelInspection::default());
    };
    let Decoded {
        mut img,
        orientation,
        ..
    } = decode(&std::fs::read(path)?, image_format)?;
    img.apply_orientation(orientation);
    Ok(PixelInspection {
        decoded: true,
        visible: crate::find_label(&img, font, text),
        watermark: key.and_then(|k| crate::watermark::detect(&img, k)),
    })
}
