//! `mark` for video: one demux, one decode, the visible label and the watermark per frame,
//! one encode, every other stream copied, then the container label through aigc-meta.
//!
//! Three threads joined by bounded queues keep memory flat however long the input: the
//! reader demuxes and decodes, the painter labels and watermarks, the writer (the calling
//! thread) encodes and muxes. Packets of the copied streams travel the same queues, so they
//! reach the muxer in their demux order.

use crate::convert::{Conversion, Converter};
use crate::encode::{self, Choice, EncodeSettings};
use crate::motion::MotionTracker;
use crate::planes::{self, Layout};
use crate::rotation::{self, Orientation};
use crate::soundtrack::Soundtrack;
use crate::{auto_threads, ffmpeg_error, init, open_decoder, pick_video_stream};
use ab_glyph::FontArc;
use aigc_audio::pipeline::{SoundLayers, SoundReport};
use aigc_core::Label;
use aigc_dsp::Key;
use aigc_image::watermark::MovableTile;
use aigc_image::{LabelLayer, LabelStyle, Placement};
use aigc_meta::{Format, MetaError, WriteOptions};
use ffmpeg_next as ff;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Frames and packets in flight between two threads: enough to keep every stage busy, few
/// enough that a 4K stream holds well under 1 GB.
const QUEUE: usize = 8;

/// RMS of the watermark's luma change in every frame, 8-bit levels: the images' strength.
/// Measured (benches/video_eval.py): at 1.0 (47.9 dB) halving then CRF 23 lost the mark on
/// 2 of 3 clips while files grew almost as much, so video keeps the full strength.
pub const VIDEO_TARGET_RMS: f32 = 1.9;

/// Which frames carry the visible label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// The opening `seconds`.
    Start,
    /// The opening and the closing `seconds`: GB 45438 requires the opening, the end is an
    /// addition, so a label at the end never replaces the one at the start.
    End,
    /// Every frame.
    All,
}

/// The visible label and where in time it goes.
#[derive(Clone, Copy, Debug)]
pub struct VisibleLabel<'a> {
    pub style: &'a LabelStyle,
    pub font: &'a FontArc,
    /// How long it shows at the start or end (GB 45438: at least 2 s).
    pub seconds: f64,
    pub span: Span,
}

/// What `mark` adds to a video.
#[derive(Clone, Debug, Default)]
pub struct VideoLayers<'a> {
    pub visible: Option<VisibleLabel<'a>>,
    /// Key and 64-bit payload.
    pub watermark: Option<(&'a Key, u64)>,
    pub encode: EncodeSettings,
    /// What the soundtrack gets: the audio watermark and the rhythm label, mixed at its place
    /// (never inserted: the sound keeps its length and its timing against the pictures). A
    /// voice prompt is not added to a video for the same reason. Nothing here: the sound is
    /// copied.
    pub sound: SoundLayers<'a>,
}

/// Where and when the visible label went.
#[derive(Clone, Debug, PartialEq)]
pub struct VisibleReport {
    pub placement: Placement,
    pub frames: u64,
    /// The runs of labeled frames: start of the first and end of the last frame of each run,
    /// seconds from the first frame.
    pub spans: Vec<[f64; 2]>,
}

/// What `mark` did to a video file.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoReport {
    pub format: Format,
    pub muxer: &'static str,
    pub decoder: String,
    pub encoder: Choice,
    pub width: u32,
    pub height: u32,
    /// How the input is shown (degrees anticlockwise as ffprobe gives them, mirrored), when
    /// not as stored; the visible label is drawn upright as shown.
    pub rotation: Option<(u32, bool)>,
    /// Whether the output carries the input's display rotation (MP4/MOV do; other containers
    /// show the stored frame as it is).
    pub rotation_kept: bool,
    /// Whether the output is a fragmented MP4/MOV (it is when the input was).
    pub fragmented: bool,
    /// The output's pixel format.
    pub pixel_format: String,
    /// The decoder's pixel format, when the pictures were converted from it (packed,
    /// semi-planar or RGB pictures become planar YUV).
    pub converted_from: Option<String>,
    pub frames: u64,
    /// Length of the video stream, seconds.
    pub seconds: f64,
    pub visible: Option<VisibleReport>,
    /// The payload and the luma PSNR of the watermark over all frames, dB.
    pub watermark: Option<(u64, f64)>,
    /// What was done to the main audio stream, when it was marked (else it is copied).
    pub sound: Option<SoundReport>,
    /// The other streams, copied: "audio aac", "subtitle mov_text", ...
    pub copied: Vec<String>,
    /// Streams the output container could not take, left out.
    pub dropped: Vec<String>,
    pub chapters: usize,
    /// Packets of the video stream that could not be decoded and were skipped.
    pub damaged_packets: usize,
}

/// The containers this pipeline re-encodes.
pub fn is_video_format(format: Format) -> bool {
    matches!(format, Format::Mp4 | Format::Matroska | Format::Avi)
}

/// Marks the video file `input` into `output`. `Ok(None)`: not a video of a container this
/// pipeline handles, or nothing to add to the pictures; the caller labels it another way.
pub fn mark_file(
    input: &Path,
    output: &Path,
    label: &Label,
    opts: &WriteOptions,
    layers: &VideoLayers,
) -> Result<Option<VideoReport>, MetaError> {
    if layers.visible.is_none() && layers.watermark.is_none() {
        return Ok(None);
    }
    let (_, handler) = aigc_meta::open_input(input)?;
    let format = handler.format();
    if !is_video_format(format) {
        return Ok(None);
    }
    init();
    let fail = MetaError::malformed;
    let ictx = ff::format::input(input).map_err(|e| fail(format!("FFmpeg cannot open it: {e}")))?;
    if pick_video_stream(&ictx).is_none() {
        return Ok(None);
    }
    let tmp = aigc_meta::temp_beside(output)?.into_temp_path();
    let muxer = encode::muxer_for(output, ictx.format().name());
    let mut report = transcode(input, ictx, &tmp, muxer, layers).map_err(fail)?;
    report.format = format;
    aigc_meta::write_file_like(&tmp, input, output, label, opts)?;
    Ok(Some(report))
}

/// How many times larger than the image tile the watermark's tile is drawn on a frame of this
/// size: 2 from about 1080p up (periods of 13-42 px, which codecs keep cheaply and which survive
/// halving), else 1. The detector derives the same factor from the size it sees, so a 1080p
/// video halved by an attacker reads at factor 1 and scale 1.
pub fn grid_factor(width: u32, height: u32) -> usize {
    if width.min(height) >= 900 {
        2
    } else {
        1
    }
}

/// Whether an MP4/MOV file is fragmented: `moof` boxes among its top-level boxes. Only box
/// headers are read; a file that cannot be walked counts as not fragmented.
fn is_fragmented_mp4(path: &Path) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    aigc_meta::bmff::boxes(&mut file, 0, len, "MP4")
        .map(|top| top.iter().any(|b| b.is(b"moof")))
        .unwrap_or(false)
}

/// What travels from the reader to the painter to the writer.
enum Item {
    Frame(ff::frame::Video),
    /// A packet of a copied stream, with its input stream index.
    Packet(ff::Packet, usize),
    /// A packet of the re-encoded soundtrack, with its output stream index and time base.
    Sound(ff::Packet, usize, ff::Rational),
}

/// What the reader learned.
#[derive(Default)]
struct ReadStats {
    damaged: usize,
    sound: Option<SoundReport>,
}

/// What the painter did.
#[derive(Default)]
struct PaintStats {
    frames: u64,
    labeled: u64,
    placement: Option<Placement>,
    spans: Vec<[f64; 2]>,
    sum_sq: f64,
    pixels: f64,
    last_end: f64,
}

fn transcode(
    input: &Path,
    ictx: ff::format::context::Input,
    out: &Path,
    muxer: &'static str,
    layers: &VideoLayers,
) -> Result<VideoReport, String> {
    let vidx = pick_video_stream(&ictx).expect("checked by the caller");
    let ist = ictx.stream(vidx).expect("exists");
    let in_tb = ist.time_base();
    let rate = match ist.avg_frame_rate() {
        r if r.numerator() > 0 && r.denominator() > 0 => r,
        _ => ist.rate(),
    };
    let fps = if rate.denominator() > 0 {
        rate.numerator() as f64 / rate.denominator() as f64
    } else {
        0.0
    };
    let (decoder, lay, conversion) = open_decoder(&ist)?;
    let decoder_name = decoder
        .codec()
        .map(|c| c.name().to_string())
        .unwrap_or_default();
    let (width, height) = (decoder.width(), decoder.height());
    // The pictures are worked on and encoded in the decoder's own format, or in the planar one
    // they are converted to.
    let pixel = conversion.map_or(decoder.format(), |c| c.target());
    let converted_from = conversion.map(|_| format!("{:?}", decoder.format()).to_lowercase());
    let (space, range) = match conversion {
        Some(c) => c.colour(decoder.color_space(), decoder.color_range()),
        None => (decoder.color_space(), decoder.color_range()),
    };
    let duration = aigc_audio::transcode::stream_seconds(&ictx, vidx);
    // A turned input keeps its turn where the container can carry it (MP4/MOV), and the label
    // is then drawn upright as shown; elsewhere the output shows as stored, and so does the label.
    let turned = Orientation::of(&ist);
    let orientation = turned.filter(|_| matches!(muxer, "mp4" | "mov" | "3gp"));
    // The quality to match: the stream's own bitrate, else the file's.
    let bits = match decoder.bit_rate() {
        0 => ictx.bit_rate().max(0) as f64,
        b => b as f64,
    };
    let encoder_name = encode::encoder_for(ist.parameters().id(), muxer);
    // The input's own quantiser where its decoder tells (H.264), else its bits per pixel.
    let crf264 = match encode::source_qp(input, vidx, 48) {
        Some(qp) => (qp.clamp(16.0, 30.0) * 10.0).round() / 10.0,
        None => encode::matched_crf(bits, width, height, fps),
    };
    let choice = encode::settings(encoder_name, crf264, &layers.encode);
    let codec = ff::encoder::find_by_name(encoder_name)
        .ok_or_else(|| format!("this FFmpeg has no {encoder_name} encoder"))?;
    if let Ok(v) = codec.video() {
        if let Some(mut formats) = v.formats() {
            if !formats.any(|f| f == pixel) {
                return Err(format!(
                    "{encoder_name} cannot encode its pixel format {pixel:?}"
                ));
            }
        }
    }

    let mut octx =
        ff::format::output_as(out, muxer).map_err(|e| format!("cannot create the output: {e}"))?;
    let global_header = octx
        .format()
        .flags()
        .contains(ff::format::Flags::GLOBAL_HEADER);
    // Same codec: start from the input's parameters, which carry colour primaries, transfer,
    // matrix, range, chroma siting and aspect ratio.
    let same_codec = codec.id() == ist.parameters().id();
    // The context starts from the encoder's own defaults (x264 refuses libavcodec's generic ones).
    let mut ctx = ff::codec::context::Context::new_with_codec(codec);
    if same_codec {
        ctx.set_parameters(ist.parameters()).map_err(ffmpeg_error)?;
    }
    let mut enc = ctx.encoder().video().map_err(ffmpeg_error)?;
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(pixel);
    enc.set_time_base(in_tb);
    if fps > 0.0 {
        enc.set_frame_rate(Some(rate));
    }
    enc.set_bit_rate(0);
    enc.set_aspect_ratio(decoder.aspect_ratio());
    enc.set_colorspace(space);
    enc.set_color_range(range);
    enc.set_threading(auto_threads());
    if global_header {
        enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    }
    let mut options = ff::Dictionary::new();
    for (k, v) in &choice.options {
        options.set(k, v);
    }
    let mut encoder = enc
        .open_as_with(codec, options)
        .map_err(|e| format!("cannot open the {encoder_name} encoder: {e}"))?;

    let soundtrack = Soundtrack::open(&ictx, &layers.sound, global_header)
        .map_err(|e| format!("cannot mark its sound: {e}"))?;

    // Output streams: the encoded video where the input's was, the marked soundtrack where
    // its audio was, the rest copied.
    let mut map: Vec<Option<usize>> = vec![None; ictx.nb_streams() as usize];
    let (mut copied, mut dropped) = (Vec::new(), Vec::new());
    for ist in ictx.streams() {
        let medium = ist.parameters().medium();
        let describe = || {
            format!(
                "{} {}",
                format!("{medium:?}").to_lowercase(),
                ff::codec::decoder::find(ist.parameters().id())
                    .map(|c| c.name().to_string())
                    .unwrap_or_else(|| format!("{:?}", ist.parameters().id()).to_lowercase())
            )
        };
        let copyable = matches!(
            medium,
            ff::media::Type::Audio
                | ff::media::Type::Video
                | ff::media::Type::Subtitle
                | ff::media::Type::Attachment
        );
        if ist.index() != vidx && (!copyable || ist.parameters().id() == ff::codec::Id::None) {
            dropped.push(describe());
            continue;
        }
        let mut ost = if ist.index() == vidx {
            let mut ost = octx.add_stream(codec).map_err(ffmpeg_error)?;
            ost.set_parameters(&encoder);
            if fps > 0.0 {
                ost.set_avg_frame_rate(rate);
            }
            ost.set_time_base(ist.time_base());
            ost
        } else if let Some(st) = soundtrack.as_ref().filter(|st| st.index == ist.index()) {
            let enc = st.encoder();
            let mut ost = octx.add_stream(enc.codec()).map_err(ffmpeg_error)?;
            ost.set_parameters(enc.context());
            ost.set_time_base(enc.time_base());
            ost
        } else {
            let mut ost = octx
                .add_stream(ff::encoder::find(ff::codec::Id::None))
                .map_err(ffmpeg_error)?;
            ost.set_parameters(ist.parameters());
            ost.set_time_base(ist.time_base());
            copied.push(describe());
            ost
        };
        ost.set_metadata(without_label(ist.metadata()));
        map[ist.index()] = Some(ost.index());
    }
    octx.set_metadata(without_label(ictx.metadata()));
    let mut chapters = 0;
    for ch in ictx.chapters() {
        let title = ch.metadata().get("title").unwrap_or("").to_string();
        octx.add_chapter(ch.id(), ch.time_base(), ch.start(), ch.end(), &title)
            .map_err(ffmpeg_error)?;
        chapters += 1;
    }
    // A fragmented input (live recorders, CMAF and DASH packagers) stays fragmented: a fragment
    // per keyframe, the input's keyframes kept, offsets relative to each fragment (so the label
    // growing `moov` moves nothing).
    let mut header_options = ff::Dictionary::new();
    let fragmented = matches!(muxer, "mp4" | "mov") && is_fragmented_mp4(input);
    if fragmented {
        header_options.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
        // Without edit lists the muxer would shift every stream to start at zero, so the
        // sound's encoder delay would move the pictures a frame's fraction later; shift only
        // what would be negative.
        header_options.set("avoid_negative_ts", "make_non_negative");
    }
    octx.write_header_with(header_options)
        .map_err(|e| format!("cannot write the {muxer} header: {e}"))?;
    let in_tbs: Vec<ff::Rational> = ictx.streams().map(|s| s.time_base()).collect();
    let out_tbs: Vec<ff::Rational> = octx.streams().map(|s| s.time_base()).collect();
    let enc_out = map[vidx].expect("the video stream is mapped");

    let (to_painter, painter_in) = sync_channel::<Item>(QUEUE);
    let (to_writer, writer_in) = sync_channel::<Item>(QUEUE);
    let frame_tb = in_tb.numerator() as f64 / in_tb.denominator().max(1) as f64;
    let frame_len = if fps > 0.0 { 1.0 / fps } else { 0.0 };
    let tile = layers
        .watermark
        .map(|(key, payload)| MovableTile::new(key, payload, grid_factor(width, height)));
    let (read, paint, written) = std::thread::scope(|s| {
        let map = &map;
        // Sound packets come timed in the encoder's time base (one tick a sample); the writer
        // rescales them to the output stream's, which the muxer may have changed (Matroska
        // counts milliseconds).
        let sound = soundtrack.map(|st| {
            let o = map[st.index].expect("the soundtrack is mapped");
            let tb = st.encoder().time_base();
            (st, o, tb)
        });
        let reader = s.spawn(move || {
            read(
                ictx,
                Pictures {
                    decoder,
                    conversion,
                    keep_keyframes: fragmented,
                },
                vidx,
                map,
                sound,
                to_painter,
            )
        });
        let painter = s.spawn(|| {
            paint(
                painter_in,
                to_writer,
                Painter {
                    lay,
                    tb: frame_tb,
                    frame_len,
                    duration,
                    visible: layers.visible,
                    tile,
                    strength: VIDEO_TARGET_RMS,
                    orientation,
                },
            )
        });
        let written = write(
            writer_in,
            &mut encoder,
            &mut octx,
            Routes {
                map,
                in_tbs: &in_tbs,
                out_tbs: &out_tbs,
                enc_out,
                enc_tb: in_tb,
            },
        );
        (
            reader.join().expect("the reader does not panic"),
            painter.join().expect("the painter does not panic"),
            written,
        )
    });
    // The first error in pipeline order is the cause; later stages only saw a closed queue.
    let read = read?;
    let paint = paint?;
    written?;
    drop(octx);
    // The display rotation, into the track header where FFmpeg's muxer would have put it.
    let rotation_kept = match orientation {
        Some(o) => {
            let set = rotation::write_track_matrix(out, enc_out, &o.matrix)
                .map_err(|e| format!("cannot set the display rotation: {e}"))?;
            if !set {
                return Err("cannot set the display rotation: the encoded file's video track was not where expected".into());
            }
            true
        }
        None => false,
    };
    if paint.frames == 0 {
        return Err("its video stream has no decodable frame".into());
    }
    // Frame times are counted from the first frame.
    let seconds = paint.last_end;
    Ok(VideoReport {
        format: Format::Mp4,
        muxer,
        decoder: decoder_name,
        encoder: choice,
        width,
        height,
        rotation: turned.map(|o| o.describe()),
        rotation_kept,
        fragmented,
        pixel_format: format!("{pixel:?}").to_lowercase(),
        converted_from,
        frames: paint.frames,
        seconds,
        sound: read.sound,
        visible: paint.placement.map(|placement| VisibleReport {
            placement,
            frames: paint.labeled,
            spans: paint.spans,
        }),
        watermark: layers.watermark.map(|(_, payload)| {
            let mse = paint.sum_sq / paint.pixels.max(1.0);
            (payload, 10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10())
        }),
        copied,
        dropped,
        chapters,
        damaged_packets: read.damaged,
    })
}

/// The input's tags that a re-encoded file keeps (`aigc_audio::transcode::kept_tag`).
fn without_label(d: ff::DictionaryRef) -> ff::Dictionary<'static> {
    let mut out = ff::Dictionary::new();
    for (k, v) in d.iter().filter(|(k, _)| aigc_audio::transcode::kept_tag(k)) {
        out.set(k, v);
    }
    out
}

/// How the reader turns the video stream into frames.
struct Pictures {
    decoder: ff::decoder::Video,
    /// To the working format, when the decoder's is not one the pipeline handles.
    conversion: Option<Conversion>,
    /// Keep the input's keyframes as keyframes (a fragmented input's fragments start there).
    keep_keyframes: bool,
}

/// The reader: demuxes, decodes the video stream, passes the other mapped streams' packets on.
fn read(
    mut ictx: ff::format::context::Input,
    pictures: Pictures,
    vidx: usize,
    map: &[Option<usize>],
    mut sound: Option<(Soundtrack, usize, ff::Rational)>,
    out: SyncSender<Item>,
) -> Result<ReadStats, String> {
    let Pictures {
        mut decoder,
        conversion,
        keep_keyframes,
    } = pictures;
    let mut stats = ReadStats::default();
    // The soundtrack's packets go the same way; `Err(GONE)` when the painter has gone.
    const GONE: &str = "the pipeline stopped";
    let sound_out = out.clone();
    let send_sound = |o: usize, tb: ff::Rational| {
        let out = sound_out.clone();
        move |p: &mut ff::Packet| {
            out.send(Item::Sound(p.clone(), o, tb))
                .map_err(|_| GONE.to_string())
        }
    };
    let mut frame = ff::frame::Video::empty();
    let mut last_pts = None;
    let mut converter = conversion.map(Converter::new);
    // Sends every frame the decoder has ready (converted to the working format when it has
    // to be); Err(None) when the painter has gone.
    let mut drain = |decoder: &mut ff::decoder::Video,
                     last_pts: &mut Option<i64>|
     -> Result<(), Option<String>> {
        while decoder.receive_frame(&mut frame).is_ok() {
            if let Some(c) = converter.as_mut() {
                frame = c.convert(&frame).map_err(Some)?;
            }
            let pts = frame.timestamp().or(frame.pts());
            // Encoders need strictly rising timestamps; a broken stream may repeat one.
            let pts = match (pts, *last_pts) {
                (Some(p), Some(l)) if p <= l => Some(l + 1),
                (None, Some(l)) => Some(l + 1),
                (p, _) => p,
            };
            *last_pts = pts;
            frame.set_pts(pts);
            // The encoder places its own keyframes, except that a fragmented input keeps its
            // own (an I picture asks libx264 for a keyframe): its fragments start there. A
            // converted frame carries its keyframe as an I picture.
            let key =
                frame.is_key() || (converter.is_some() && frame.kind() == ff::picture::Type::I);
            frame.set_kind(if keep_keyframes && key {
                ff::picture::Type::I
            } else {
                ff::picture::Type::None
            });
            out.send(Item::Frame(std::mem::replace(
                &mut frame,
                ff::frame::Video::empty(),
            )))
            .map_err(|_| None)?;
        }
        Ok(())
    };
    for (stream, packet) in ictx.packets() {
        let i = stream.index();
        if i == vidx {
            match decoder.send_packet(&packet) {
                Ok(()) => {}
                Err(ff::Error::InvalidData) => stats.damaged += 1,
                Err(e) => return Err(format!("the video decoder failed: {e}")),
            }
            match drain(&mut decoder, &mut last_pts) {
                Ok(()) => {}
                Err(None) => return Ok(stats),
                Err(Some(e)) => return Err(e),
            }
        } else if let Some((st, o, tb)) = sound.as_mut().filter(|(st, ..)| st.index == i) {
            match st.feed(&packet, &mut send_sound(*o, *tb)) {
                Ok(()) => {}
                Err(e) if e == GONE => return Ok(stats),
                Err(e) => return Err(format!("cannot mark its sound: {e}")),
            }
        } else if map[i].is_some() && out.send(Item::Packet(packet, i)).is_err() {
            return Ok(stats);
        }
    }
    let _ = decoder.send_eof();
    if let Err(Some(e)) = drain(&mut decoder, &mut last_pts) {
        return Err(e);
    }
    if let Some((st, o, tb)) = sound {
        match st.finish(&mut send_sound(o, tb)) {
            Ok(r) => stats.sound = Some(r),
            Err(e) if e == GONE => {}
            Err(e) => return Err(format!("cannot mark its sound: {e}")),
        }
    }
    Ok(stats)
}

/// What the painter needs to know.
struct Painter<'a> {
    lay: Layout,
    /// Seconds per timestamp unit.
    tb: f64,
    /// Nominal frame length, seconds (0 when unknown).
    frame_len: f64,
    /// Length of the video stream, seconds, when the container says.
    duration: Option<f64>,
    visible: Option<VisibleLabel<'a>>,
    /// The watermark, drawn on each frame where the picture has moved it to.
    tile: Option<MovableTile>,
    /// RMS of the watermark's luma change, 8-bit levels.
    strength: f32,
    /// How the frames are shown, when not as stored.
    orientation: Option<Orientation>,
}

/// The painter: the visible label on the frames in its span, the watermark on every frame.
fn paint(
    input: Receiver<Item>,
    out: SyncSender<Item>,
    mut p: Painter,
) -> Result<PaintStats, String> {
    let mut st = PaintStats::default();
    // The watermark moves with the picture: the tracker, where the tile stands now (frame
    // pixels, within the tile), and the tile drawn there.
    let mut motion = MotionTracker::new();
    let mut at = (0f32, 0f32);
    let mut drawn = Vec::new();
    let mut layer: Option<(LabelLayer, (u32, u32))> = None;
    let mut t0 = None;
    for item in input {
        let mut frame = match item {
            Item::Frame(f) => f,
            packet => {
                if out.send(packet).is_err() {
                    break;
                }
                continue;
            }
        };
        let t_abs = frame.pts().unwrap_or(0) as f64 * p.tb;
        let t = t_abs - *t0.get_or_insert(t_abs);
        st.last_end = st.last_end.max(t + p.frame_len);
        st.frames += 1;
        let labeled = p.visible.is_some_and(|v| match v.span {
            Span::All => true,
            Span::Start => t < v.seconds,
            Span::End => {
                t < v.seconds || p.duration.is_some_and(|d| t + p.frame_len > d - v.seconds)
            }
        });
        if labeled || p.tile.is_some() {
            // Decoded frames share their buffers with the decoder's reference pictures; the
            // copy is ours to change.
            frame = frame.clone();
        }
        if let Some(tile) = &p.tile {
            // Measured before the label goes on: the label stays put whatever the picture does.
            let (dx, dy) = motion.step(&planes::luma_plane(&mut frame, p.lay));
            let side = tile.side() as f32;
            at = ((at.0 + dx).rem_euclid(side), (at.1 + dy).rem_euclid(side));
        }
        if let (true, Some(v)) = (labeled, p.visible) {
            let (w, h) = (frame.width(), frame.height());
            if layer.as_ref().is_none_or(|(_, size)| *size != (w, h)) {
                // Laid out on the frame as shown, then turned into the stored frame.
                let (dw, dh) = p.orientation.map_or((w, h), |o| o.display_size(w, h));
                let place = |e| format!("cannot place the visible label: {e}");
                let plate = aigc_image::plate_box(dw, dh, v.font, v.style).map_err(place)?;
                let plate = p
                    .orientation
                    .map_or(plate, |o| o.rect_to_stored(plate, w, h));
                let beneath = planes::mean_brightness(&frame, p.lay, plate);
                let l = aigc_image::label_layer(dw, dh, v.font, v.style, beneath).map_err(place)?;
                let l = match p.orientation {
                    Some(o) => o.layer_to_stored(&l, w, h),
                    None => l,
                };
                layer = Some((l, (w, h)));
            }
            let (l, _) = layer.as_ref().expect("made above");
            planes::composite(&mut frame, p.lay, l);
            st.placement = Some(l.placement);
            st.labeled += 1;
            // A run goes on while frames follow within a frame and a half of its end.
            match st.spans.last_mut() {
                Some(run) if t - run[1] <= 0.5 * p.frame_len.max(1e-3) + 1e-6 => {
                    run[1] = t + p.frame_len
                }
                _ => st.spans.push([t, t + p.frame_len]),
            }
        }
        if let Some(tile) = p.tile.as_mut() {
            tile.draw_at(at.0, at.1, &mut drawn);
            let mut plane = planes::luma_plane(&mut frame, p.lay);
            st.sum_sq += aigc_image::watermark::embed_plane(&mut plane, &drawn, p.strength);
            st.pixels += (plane.width * plane.height) as f64;
        }
        if out.send(Item::Frame(frame)).is_err() {
            break;
        }
    }
    Ok(st)
}

/// Where the writer sends what.
struct Routes<'a> {
    /// Output stream per input stream.
    map: &'a [Option<usize>],
    in_tbs: &'a [ff::Rational],
    out_tbs: &'a [ff::Rational],
    /// The encoded video's output stream and the encoder's time base.
    enc_out: usize,
    enc_tb: ff::Rational,
}

/// The writer: encodes frames, muxes encoded and copied packets, finishes the file.
fn write(
    input: Receiver<Item>,
    encoder: &mut ff::encoder::Video,
    octx: &mut ff::format::context::Output,
    r: Routes,
) -> Result<(), String> {
    let mut packet = ff::Packet::empty();
    let mut drain = |encoder: &mut ff::encoder::Video,
                     octx: &mut ff::format::context::Output|
     -> Result<(), String> {
        while encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(r.enc_out);
            packet.rescale_ts(r.enc_tb, r.out_tbs[r.enc_out]);
            packet
                .write_interleaved(octx)
                .map_err(|e| format!("cannot write a video packet: {e}"))?;
        }
        Ok(())
    };
    for item in input {
        match item {
            Item::Frame(frame) => {
                encoder
                    .send_frame(&frame)
                    .map_err(|e| format!("the encoder refused a frame: {e}"))?;
                drain(encoder, octx)?;
            }
            Item::Sound(mut p, o, tb) => {
                p.rescale_ts(tb, r.out_tbs[o]);
                p.set_position(-1);
                p.set_stream(o);
                p.write_interleaved(octx)
                    .map_err(|e| format!("cannot write a sound packet: {e}"))?;
            }
            Item::Packet(mut p, i) => {
                let o = r.map[i].expect("only mapped streams are sent");
                p.rescale_ts(r.in_tbs[i], r.out_tbs[o]);
                p.set_position(-1);
                p.set_stream(o);
                p.write_interleaved(octx)
                    .map_err(|e| format!("cannot copy a packet: {e}"))?;
            }
        }
    }
    encoder
        .send_eof()
        .map_err(|e| format!("cannot finish encoding: {e}"))?;
    drain(encoder, octx)?;
    match octx.write_trailer() {
        // FFmpeg 5.1's MP4 muxer hands back the size of the `mfra` it wrote after fragments
        // (a positive number, not an error); ffmpeg-next reports it as errno -size.
        Ok(()) | Err(ff::Error::Other { errno: ..=-1 }) => Ok(()),
        Err(e) => Err(format!("cannot finish the file: {e}")),
    }
}
