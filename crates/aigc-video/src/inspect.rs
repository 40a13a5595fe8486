//! `verify` for video: decode the opening seconds to see how long the visible label shows, and
//! a spread of frames (those, then keyframes found by seeking) stacked for the watermark.
//! Never writes; never decodes the whole file.

use crate::convert::Converter;
use crate::planes;
use crate::{init, open_decoder, pick_video_stream};
use ab_glyph::FontArc;
use aigc_dsp::Key;
use aigc_image::watermark::{self, FrameStack, LumaPlane, WatermarkFound};
use aigc_image::{find_label, find_label_at, FoundLabel};
use aigc_meta::Format;
use ffmpeg_next as ff;
use std::path::Path;

/// How much of the opening is decoded to follow the visible label, seconds.
pub const LABEL_SCAN_SECONDS: f64 = 4.0;
/// Spacing of the frames checked for the visible label, seconds.
const LABEL_STEP: f64 = 0.5;
/// Keyframes sought across the rest of the file when the opening alone does not show the
/// watermark.
const SPREAD_FRAMES: usize = 12;

/// The visible label as found in the opening frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VisibleFound {
    /// The match in the first frame checked.
    pub label: FoundLabel,
    /// The label shows in every frame checked from the first one up to this time, seconds
    /// from the first frame (the first frame checked without it, or the end of the scan).
    pub until_seconds: f64,
    /// True when the label still showed at the end of the scan (it may last longer).
    pub beyond_scan: bool,
}

/// What `verify` found in a video's pictures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VideoInspection {
    pub width: u32,
    pub height: u32,
    /// Length of the video stream, seconds, as the container says.
    pub seconds: Option<f64>,
    pub visible: Option<VisibleFound>,
    pub watermark: Option<WatermarkFound>,
    /// Frames decoded and stacked for the watermark.
    pub watermark_frames: usize,
}

/// Looks at the video stream of `path` for the visible label (`text` drawn in `font`) and,
/// when `key` is given, the watermark. `Ok(None)`: not a video this pipeline reads.
pub fn inspect_file(
    path: &Path,
    format: Format,
    font: &FontArc,
    text: &str,
    key: Option<&Key>,
) -> Result<Option<VideoInspection>, String> {
    if !crate::is_video_format(format) {
        return Ok(None);
    }
    let Some(mut s) = Sampler::open(path)? else {
        return Ok(None);
    };
    let mut out = VideoInspection {
        width: s.decoder.width(),
        height: s.decoder.height(),
        seconds: s.seconds,
        ..VideoInspection::default()
    };
    let mut stack = Stacks::new(out.width, out.height);
    out.visible = s.opening(Some((font, text)), key.map(|_| &mut stack))?;
    let Some(key) = key else {
        return Ok(Some(out));
    };
    let mut found = stack.detect(key);
    // Not in the opening: keyframes spread over the rest, each decoded alone.
    if found.is_none() && s.spread(&mut stack)? {
        found = stack.detect(key);
    }
    out.watermark = found;
    out.watermark_frames = stack.frames();
    Ok(Some(out))
}

/// The frames `verify` stacks for the watermark, in its two steps: the opening alone, then
/// with keyframes spread over the rest (`None` when the file is too short for a second step).
/// For measuring false positives under many keys without decoding again.
pub fn watermark_stacks(path: &Path) -> Result<(Stacks, Option<Stacks>), String> {
    let mut s = Sampler::open(path)?.ok_or("no video stream")?;
    let mut stack = Stacks::new(s.decoder.width(), s.decoder.height());
    s.opening(None, Some(&mut stack))?;
    let first = stack.clone();
    let more = s.spread(&mut stack)?;
    Ok((first, more.then_some(stack)))
}

/// The same frames stacked at each tile scale a video of this size may carry: the scale
/// `mark` uses for this size first, then (for frames under the threshold) the doubled one,
/// since a crop or a resize may have moved a large video below it.
#[derive(Clone)]
pub struct Stacks(Vec<FrameStack>);

impl Stacks {
    pub fn new(width: u32, height: u32) -> Stacks {
        let first = crate::mark::grid_factor(width, height);
        let mut v = vec![FrameStack::new(first)];
        // A frame under the threshold may be a cropped or shrunk large one, marked with the
        // doubled tile; decimated by 2 it must still hold a few tiles. (A large frame marked
        // with the single tile, an enlarged small video, reads in the first stack at a scale
        // the search covers.)
        if first == 1 && width.min(height) >= 4 * aigc_image::watermark::TILE as u32 {
            v.push(FrameStack::new(2));
        }
        Stacks(v)
    }

    fn add(&mut self, plane: &LumaPlane) {
        self.0.iter_mut().for_each(|s| s.add(plane));
    }

    /// Frames added.
    pub fn frames(&self) -> usize {
        self.0.first().map_or(0, |s| s.frames())
    }

    /// The stacks made ready for detection.
    pub fn prepare(&self) -> Vec<watermark::Prepared> {
        self.0.iter().filter_map(|s| s.prepare()).collect()
    }

    /// Detection on each stack in turn. The probability reported covers every detection
    /// `verify` may run on one file.
    fn detect(&self, key: &Key) -> Option<WatermarkFound> {
        self.prepare().iter().find_map(|p| {
            watermark::detect_prepared(p, key).found.map(|mut f| {
                f.false_positive_probability *= DETECTION_STEPS as f64;
                f
            })
        })
    }
}

/// Detections `verify` may run on one file: two tile scales, on the opening and then on the
/// opening with the spread.
pub const DETECTION_STEPS: usize = 4;

/// An open video stream with its decoder.
struct Sampler {
    ictx: ff::format::context::Input,
    decoder: ff::decoder::Video,
    converter: Option<Converter>,
    vidx: usize,
    /// Seconds per timestamp unit.
    tb: f64,
    lay: planes::Layout,
    seconds: Option<f64>,
    /// Timestamps of the frames already stacked.
    stacked: Vec<Option<i64>>,
    /// How the frames are shown, when not as stored: the label is looked for upright as shown.
    orientation: Option<crate::rotation::Orientation>,
}

impl Sampler {
    fn open(path: &Path) -> Result<Option<Sampler>, String> {
        init();
        let ictx = ff::format::input(path).map_err(|e| format!("FFmpeg cannot open it: {e}"))?;
        let Some(vidx) = pick_video_stream(&ictx) else {
            return Ok(None);
        };
        let ist = ictx.stream(vidx).expect("exists");
        let tb = ist.time_base();
        let tb = tb.numerator() as f64 / tb.denominator().max(1) as f64;
        let (mut decoder, lay, conversion) = open_decoder(&ist)?;
        let converter = conversion.map(Converter::new);
        // Frames nothing refers to (most B-frames) are not needed to sample the opening:
        // skipping them halves the decoding.
        decoder.skip_frame(ff::Discard::NonReference);
        let seconds = aigc_audio::transcode::stream_seconds(&ictx, vidx);
        let orientation = crate::rotation::Orientation::of(&ist);
        Ok(Some(Sampler {
            ictx,
            decoder,
            converter,
            vidx,
            tb,
            lay,
            seconds,
            stacked: Vec::new(),
            orientation,
        }))
    }

    /// Decodes the opening LABEL_SCAN_SECONDS: every LABEL_STEP the label is looked for (while
    /// it keeps showing), every second a frame goes on `stack`.
    fn opening(
        &mut self,
        label: Option<(&FontArc, &str)>,
        mut stack: Option<&mut Stacks>,
    ) -> Result<Option<VisibleFound>, String> {
        let (tb, lay, orientation) = (self.tb, self.lay, self.orientation);
        let mut visible: Option<VisibleFound> = None;
        let mut t0 = None;
        let (mut next_label, mut next_stack) = (0.0, 0.0);
        let mut label_run = label.is_some();
        let stacked = &mut self.stacked;
        let mut look = |frame: &mut ff::frame::Video| -> bool {
            let t_abs = frame.timestamp().or(frame.pts()).unwrap_or(0) as f64 * tb;
            let t = t_abs - *t0.get_or_insert(t_abs);
            if let (true, Some((font, text))) = (label_run && t >= next_label, label) {
                next_label = (t / LABEL_STEP).floor() * LABEL_STEP + LABEL_STEP;
                let luma = planes::luma_image(frame, lay);
                let luma = match orientation {
                    Some(o) => o.image_to_display(&luma),
                    None => luma,
                };
                let img = image::DynamicImage::ImageLuma8(luma);
                // Once found, the label is followed where it is.
                let found = match &visible {
                    None => find_label(&img, font, text),
                    Some(v) => find_label_at(&img, font, text, &[v.label.position]),
                };
                match (found, &mut visible) {
                    (Some(found), None) if t < LABEL_STEP => {
                        visible = Some(VisibleFound {
                            label: found,
                            until_seconds: t,
                            beyond_scan: true,
                        })
                    }
                    (Some(_), Some(v)) => v.until_seconds = t,
                    (None, Some(v)) => {
                        v.until_seconds = t;
                        v.beyond_scan = false;
                        label_run = false;
                    }
                    _ => label_run = false,
                }
            }
            if let Some(stack) = stack.as_deref_mut().filter(|_| t >= next_stack) {
                next_stack = t.floor() + 1.0;
                stacked.push(frame.timestamp().or(frame.pts()));
                stack.add(&planes::luma_plane(frame, lay));
            }
            t < LABEL_SCAN_SECONDS
        };
        decode_while(
            &mut self.ictx,
            &mut self.decoder,
            self.converter.as_mut(),
            self.vidx,
            &mut look,
        )?;
        if let Some(v) = &mut visible {
            if v.beyond_scan {
                v.until_seconds = v.until_seconds.max(LABEL_SCAN_SECONDS.min(next_label));
            }
        }
        Ok(visible)
    }

    /// Adds SPREAD_FRAMES keyframes spread over the rest of the file to `stack`, each found by
    /// seeking and decoded alone. False when the file is too short to have a rest.
    fn spread(&mut self, stack: &mut Stacks) -> Result<bool, String> {
        let Some(total) = self.seconds.filter(|&s| s > LABEL_SCAN_SECONDS + 1.0) else {
            return Ok(false);
        };
        let lay = self.lay;
        for i in 0..SPREAD_FRAMES {
            let at = LABEL_SCAN_SECONDS
                + (total - LABEL_SCAN_SECONDS) * (i as f64 + 0.5) / SPREAD_FRAMES as f64;
            let ts = (at * f64::from(ff::ffi::AV_TIME_BASE)) as i64;
            if self.ictx.seek(ts, ..ts).is_err() {
                break;
            }
            self.decoder.flush();
            let stacked = &mut self.stacked;
            let mut one = |frame: &mut ff::frame::Video| -> bool {
                let t = frame.timestamp().or(frame.pts());
                if !stacked.contains(&t) {
                    stacked.push(t);
                    stack.add(&planes::luma_plane(frame, lay));
                }
                false
            };
            decode_while(
                &mut self.ictx,
                &mut self.decoder,
                self.converter.as_mut(),
                self.vidx,
                &mut one,
            )?;
        }
        Ok(true)
    }
}

/// Decodes frames of stream `vidx` and hands each to `look` (converted, when `converter` is
/// given) until it returns false or the stream ends.
fn decode_while(
    ictx: &mut ff::format::context::Input,
    decoder: &mut ff::decoder::Video,
    mut converter: Option<&mut Converter>,
    vidx: usize,
    look: &mut dyn FnMut(&mut ff::frame::Video) -> bool,
) -> Result<(), String> {
    let mut frame = ff::frame::Video::empty();
    // Hands the frame on; Ok(false) once `look` has seen enough.
    let mut hand_on = |frame: &mut ff::frame::Video| -> Result<bool, String> {
        match converter.as_deref_mut() {
            Some(c) => Ok(look(&mut c.convert(frame)?)),
            None => Ok(look(frame)),
        }
    };
    for (stream, packet) in ictx.packets() {
        if stream.index() != vidx {
            continue;
        }
        match decoder.send_packet(&packet) {
            Ok(()) | Err(ff::Error::InvalidData) => {}
            Err(e) => return Err(format!("the video decoder failed: {e}")),
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            if !hand_on(&mut frame)? {
                return Ok(());
            }
        }
    }
    let _ = decoder.send_eof();
    while decoder.receive_frame(&mut frame).is_ok() {
        if !hand_on(&mut frame)? {
            break;
        }
    }
    Ok(())
}
