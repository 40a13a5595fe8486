//! Video for aigc-label: `mark` re-encodes a video once through FFmpeg (ffmpeg-next on the
//! system's libav* libraries) with the visible GB 45438 label on its opening frames and the
//! image watermark on every frame's luma, copies every other stream, and writes the container
//! label through aigc-meta; `verify` samples frames to find the label and the watermark.
//!
//! The pictures stay in the decoder's own planar YUV: the label is composited in YUV and the
//! watermark added to luma, so no colour conversion costs time or precision. Packed, semi-planar
//! and RGB pictures are converted once to planar YUV (`convert`).

pub mod convert;
pub mod encode;
pub mod inspect;
pub mod mark;
pub mod motion;
pub mod planes;
pub mod rotation;
mod soundtrack;

pub use encode::EncodeSettings;
pub use inspect::{inspect_file, VideoInspection};
pub use mark::{is_video_format, mark_file, Span, VideoLayers, VideoReport, VisibleLabel};

use ffmpeg_next as ff;

fn init() {
    aigc_audio::transcode::init();
}

/// Let FFmpeg pick the thread count (decoders: frame threads; x264 and friends: their own).
fn auto_threads() -> ff::codec::threading::Config {
    ff::codec::threading::Config {
        kind: ff::codec::threading::Type::Frame,
        count: 0,
        ..Default::default()
    }
}

/// Opens the decoder of a video stream, multi-threaded, and the planar layout its frames are
/// worked on in, with the conversion that brings them there when the decoder's own format is
/// not one the pipeline handles; refuses pixel formats that cannot be converted, naming them.
fn open_decoder(
    ist: &ff::format::stream::Stream,
) -> Result<
    (
        ff::decoder::Video,
        planes::Layout,
        Option<convert::Conversion>,
    ),
    String,
> {
    let mut ctx =
        ff::codec::context::Context::from_parameters(ist.parameters()).map_err(ffmpeg_error)?;
    ctx.set_threading(auto_threads());
    let decoder = ctx
        .decoder()
        .video()
        .map_err(|e| format!("no decoder for its video: {e}"))?;
    let (space, range) = (decoder.color_space(), decoder.color_range());
    Ok(match planes::layout(decoder.format()) {
        Some(lay) => (decoder, lay.with_range(range), None),
        None => {
            let conversion = convert::Conversion::for_format(decoder.format())?;
            let (_, range) = conversion.colour(space, range);
            let lay = planes::layout(conversion.target()).expect("a working format has a layout");
            (decoder, lay.with_range(range), Some(conversion))
        }
    })
}

fn ffmpeg_error(e: ff::Error) -> String {
    e.to_string()
}

/// The video stream to label: FFmpeg's best, never cover art.
fn pick_video_stream(ictx: &ff::format::context::Input) -> Option<usize> {
    let is_picture = |s: &ff::format::stream::Stream| {
        s.parameters().medium() == ff::media::Type::Video
            && !s
                .disposition()
                .contains(ff::format::stream::Disposition::ATTACHED_PIC)
    };
    ictx.streams()
        .best(ff::media::Type::Video)
        .filter(|s| is_picture(s))
        .or_else(|| ictx.streams().find(|s| is_picture(s)))
        .map(|s| s.index())
}
