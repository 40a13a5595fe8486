//! Choosing the encoder and its settings for a video stream: the encoder of the input's codec
//! that this FFmpeg has, at a quality matched to the input's bits per pixel.

use ff::codec::Id;
use ffmpeg_next as ff;

/// Overrides for the encoder's settings.
#[derive(Clone, Debug, Default)]
pub struct EncodeSettings {
    /// Constant rate factor (x264/x265 scale 0-51; VP9/AV1 0-63). `None`: matched to the input.
    pub crf: Option<f32>,
    /// Encoder speed preset (x264/x265: ultrafast ... veryslow). `None`: the encoder's default
    /// (`medium`; VP9 and AV1 get a speed setting of similar cost).
    pub preset: Option<String>,
}

/// The encoder for the output and the settings it runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub encoder: &'static str,
    pub crf: f32,
    pub preset: String,
    /// Encoder options as FFmpeg names them.
    pub options: Vec<(String, String)>,
}

/// The encoder for a stream of codec `id` going into muxer `muxer`: the same codec where
/// Debian's FFmpeg has an encoder for it, else H.264 (VP9 for WebM, which takes nothing else).
pub fn encoder_for(id: Id, muxer: &str) -> &'static str {
    let available = |name: &str| ff::encoder::find_by_name(name).is_some();
    let pick = match id {
        Id::H264 => "libx264",
        Id::HEVC => "libx265",
        Id::VP9 => "libvpx-vp9",
        Id::VP8 => "libvpx",
        Id::AV1 if available("libsvtav1") => "libsvtav1",
        Id::AV1 => "libaom-av1",
        _ if muxer == "webm" => "libvpx-vp9",
        _ => "libx264",
    };
    if available(pick) {
        pick
    } else if muxer == "webm" {
        "libvpx-vp9"
    } else {
        "libx264"
    }
}

/// The x264-scale CRF that keeps about the input's bits per pixel: 23 (x264's default) at
/// 0.1 bit per pixel, 6 lower per doubling (x264's rate roughly doubles every 6 CRF steps),
/// kept within 16-30 so a badly reported bitrate cannot ask for absurd quality or none.
pub fn matched_crf(bits_per_second: f64, width: u32, height: u32, fps: f64) -> f32 {
    let pixels_per_second = width as f64 * height as f64 * fps.max(1.0);
    if bits_per_second <= 0.0 || pixels_per_second <= 0.0 {
        return 23.0;
    }
    let bpp = bits_per_second / pixels_per_second;
    ((23.0 - 6.0 * (bpp / 0.1).log2()).clamp(16.0, 30.0) * 10.0).round() as f32 / 10.0
}

/// The settings for `encoder`, from an x264-scale CRF `crf264` and the user's overrides.
pub fn settings(encoder: &'static str, crf264: f32, user: &EncodeSettings) -> Choice {
    let opt = |k: &str, v: String| (k.to_string(), v);
    let (crf, preset, mut options) = match encoder {
        "libx264" | "libx265" => {
            // x265's CRF 28 looks about like x264's 23.
            let crf = user.crf.unwrap_or(if encoder == "libx265" {
                crf264 + 5.0
            } else {
                crf264
            });
            let preset = user.preset.clone().unwrap_or_else(|| "medium".into());
            let mut o = vec![opt("crf", format!("{crf}")), opt("preset", preset.clone())];
            if encoder == "libx265" {
                o.push(opt("x265-params", "log-level=none".into()));
            }
            (crf, preset, o)
        }
        "libvpx-vp9" | "libvpx" => {
            let crf = user.crf.unwrap_or((1.5 * crf264 - 3.5).round());
            let preset = user.preset.clone().unwrap_or_else(|| "4".into());
            let o = vec![
                opt("crf", format!("{}", crf.round())),
                opt("b", "0".into()),
                opt("deadline", "good".into()),
                opt("cpu-used", preset.clone()),
                opt("row-mt", "1".into()),
            ];
            (crf, preset, o)
        }
        "libsvtav1" => {
            let crf = user.crf.unwrap_or((1.5 * crf264 - 3.5).round());
            let preset = user.preset.clone().unwrap_or_else(|| "8".into());
            let o = vec![
                opt("crf", format!("{}", crf.round())),
                opt("preset", preset.clone()),
            ];
            (crf, preset, o)
        }
        _ => {
            let crf = user.crf.unwrap_or((1.5 * crf264 - 3.5).round());
            let preset = user.preset.clone().unwrap_or_else(|| "6".into());
            let o = vec![
                opt("crf", format!("{}", crf.round())),
                opt("cpu-used", preset.clone()),
                opt("row-mt", "1".into()),
            ];
            (crf, preset, o)
        }
    };
    options.retain(|(_, v)| !v.is_empty());
    Choice {
        encoder,
        crf,
        preset,
        options,
    }
}

/// The muxer for an output like `path` of a container the input's demuxer read.
pub fn muxer_for(path: &std::path::Path, demuxer: &str) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("mov") | Some("qt") => "mov",
        Some("mp4") | Some("m4v") => "mp4",
        Some("3gp") => "3gp",
        Some("mkv") => "matroska",
        Some("webm") => "webm",
        Some("avi") => "avi",
        _ if demuxer.starts_with("matroska") => "matroska",
        _ if demuxer == "avi" => "avi",
        _ => "mp4",
    }
}

/// The mean quantiser of the input's first frames, as its decoder reports it (H.264 exports
/// its per-block QP; other codecs return `None`). Area-weighted over the blocks. Re-encoding
/// with x264 at a CRF equal to it keeps at least the input's quality: x264's mean QP lands at
/// its CRF on busy content and up to 5 below on smooth, well-predicted content.
pub fn source_qp(path: &std::path::Path, stream: usize, frames: usize) -> Option<f32> {
    let mut ictx = ff::format::input(path).ok()?;
    let ist = ictx.stream(stream)?;
    if ist.parameters().id() != Id::H264 {
        return None;
    }
    let ctx = ff::codec::context::Context::from_parameters(ist.parameters()).ok()?;
    let mut opts = ff::Dictionary::new();
    opts.set("export_side_data", "venc_params");
    let codec = ff::decoder::find(ist.parameters().id())?;
    let mut decoder = ctx.decoder().open_as_with(codec, opts).ok()?.video().ok()?;
    let mut frame = ff::frame::Video::empty();
    let (mut sum, mut weight, mut seen) = (0f64, 0f64, 0usize);
    let mut take = |frame: &ff::frame::Video| {
        if let Some(sd) = frame.side_data(ff::util::frame::side_data::Type::VIDEO_ENC_PARAMS) {
            if let Some((q, w)) = mean_block_qp(sd.data()) {
                sum += q * w;
                weight += w;
            }
        }
    };
    for (s, packet) in ictx.packets() {
        if s.index() != stream {
            continue;
        }
        if decoder.send_packet(&packet).is_err() {
            continue;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            take(&frame);
            seen += 1;
        }
        if seen >= frames {
            break;
        }
    }
    (weight > 0.0).then(|| (sum / weight) as f32)
}

/// The area-weighted mean QP and the area of an `AVVideoEncParams` blob (FFmpeg 5.1 layout:
/// u32 nb_blocks, size_t blocks_offset, size_t block_size, enum type, i32 qp, ...; each block
/// i32 src_x, src_y, w, h, delta_qp).
fn mean_block_qp(d: &[u8]) -> Option<(f64, f64)> {
    let u32_at = |o: usize| {
        d.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        d.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    let nb = u32_at(0)? as usize;
    let offset = u64_at(8)? as usize;
    let size = u64_at(16)? as usize;
    let qp = u32_at(28)? as i32 as f64;
    if nb == 0 {
        return Some((qp, 1.0));
    }
    let (mut sum, mut area) = (0f64, 0f64);
    for i in 0..nb {
        let b = offset + i * size;
        let (w, h) = (u32_at(b + 8)? as f64, u32_at(b + 12)? as f64);
        let delta = u32_at(b + 16)? as i32 as f64;
        sum += (qp + delta) * w * h;
        area += w * h;
    }
    (area > 0.0).then(|| (sum / area, area))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crf_follows_bits_per_pixel() {
        // 1080p30 at 6.2 Mbit/s is 0.1 bit per pixel: x264's default.
        assert!((matched_crf(6.22e6, 1920, 1080, 30.0) - 23.0).abs() < 0.1);
        // Twice the rate, 6 steps better; absurd rates stay in range.
        assert!((matched_crf(12.44e6, 1920, 1080, 30.0) - 17.0).abs() < 0.1);
        assert_eq!(matched_crf(1e9, 1920, 1080, 30.0), 16.0);
        assert_eq!(matched_crf(1e3, 1920, 1080, 30.0), 30.0);
        assert_eq!(matched_crf(0.0, 1920, 1080, 30.0), 23.0);
    }

    #[test]
    fn user_settings_win() {
        let user = EncodeSettings {
            crf: Some(28.0),
            preset: Some("veryfast".into()),
        };
        let c = settings("libx264", 20.0, &user);
        assert_eq!((c.crf, c.preset.as_str()), (28.0, "veryfast"));
        assert!(c.options.contains(&("crf".into(), "28".into())));
    }
}
