//! `aigc-label`: the command line over `aigc-core` and `aigc-meta`. No media logic lives here:
//! argument handling, folder walking, parallelism, progress and report formatting only.

mod args;
mod batch;
mod config;

use ab_glyph::FontArc;
use aigc_audio::pipeline::{SoundLayers, SoundReport};
use aigc_core::{assess, new_content_id, validate, Label, LabelValue, Mode, Verdict};
use aigc_core::{Finding, FindingCode};
use aigc_image::pipeline::{inspect_file, mark_file, PixelLayers, PixelReport};
use aigc_image::{missing_glyphs, LabelStyle};
use aigc_meta::{scan_file, write_file, ErrorKind, MetaError, WriteOptions};
use args::{Cli, Command, Inputs, MarkArgs, PropagateArgs, VerifyArgs, VisibleArgs};
use batch::{Destination, Job, Outcome};
use clap::Parser;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Command::Mark(a) => mark(*a, &cfg),
        Command::Verify(a) => verify(a, &cfg),
        Command::Propagate(a) => propagate(a, &cfg),
    };
    match result {
        Ok(summary) if summary.failed == 0 && summary.not_ok == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => usage_error(&e),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn threads(inputs: &Inputs, cfg: &config::Config) -> usize {
    inputs.jobs.or(cfg.jobs).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

fn mode(inputs: &Inputs, cfg: &config::Config) -> Mode {
    if inputs.lenient || cfg.lenient == Some(true) {
        Mode::Lenient
    } else {
        Mode::Strict
    }
}

fn label_from_config(cfg: &config::Config) -> Result<Option<LabelValue>, String> {
    cfg.label
        .as_deref()
        .map(|l| {
            LabelValue::from_code(l)
                .ok_or_else(|| format!("config: label must be \"1\", \"2\" or \"3\", not {l:?}"))
        })
        .transpose()
}

/// A failure outcome, or a skip when a file of no known format was met while walking a folder.
/// A recognised file that cannot be labeled is always a failure, never silently skipped.
fn failure(job: &Job, e: MetaError) -> Outcome {
    if job.walked && e.kind == ErrorKind::UnknownFormat {
        Outcome::Skipped(e.message)
    } else {
        Outcome::Failed(e.message)
    }
}

/// Refuses a label that would be non-compliant before any file is touched.
fn check_label(label: &Label, mode: Mode) -> Result<(), String> {
    let errors: Vec<String> = validate(label, mode)
        .into_iter()
        .filter(|f| f.is_error())
        .map(|f| f.message)
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the label would not be compliant: {}",
            errors.join("; ")
        ))
    }
}

fn write_options(no_iptc: bool, cfg: &config::Config) -> WriteOptions {
    WriteOptions {
        iptc: !no_iptc && cfg.iptc != Some(false),
    }
}

/// Writes one labelled output (creating its folder) with `write` and describes what happened.
/// What `mark` did to the sound, in words: rhythm, voice prompt, watermark, limiter.
fn sound_parts(r: &SoundReport) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(at) = r.rhythm_at {
        parts.push(format!("rhythm label at {at:.2} s"));
    }
    if let Some(at) = r.voice_at {
        parts.push(format!("voice prompt at {at:.2} s"));
    }
    if let Some((payload, e)) = &r.watermark {
        parts.push(format!(
            "watermark {payload:016x} at {:.1} dB SNR{}",
            e.snr_db,
            if e.target_snr_db < aigc_audio::watermark::TARGET_SNR_DB {
                format!(" (aimed at {:.1} dB: speech)", e.target_snr_db)
            } else {
                String::new()
            }
        ));
    }
    if r.damaged_packets > 0 {
        parts.push(format!(
            "{} damaged packet(s) of the input skipped",
            r.damaged_packets
        ));
    }
    if r.limiter_db > 0.0 {
        parts.push(format!("peaks limited by {:.1} dB", r.limiter_db));
    }
    parts
}

/// The rhythm, watermark and limiter of `mark`'s sound report, as JSON.
fn sound_json(r: &SoundReport) -> serde_json::Value {
    json!({
        "rhythm": r.rhythm_at.map(|at| json!({"start_seconds": at})),
        "watermark": r.watermark.map(|(p, e)| json!({"payload": p.hex(), "payload_bits": p.bits, "snr_db": e.snr_db, "target_snr_db": e.target_snr_db, "strength": e.strength})),
        "limiter_db": r.limiter_db,
    })
}

fn write_one(
    job: &Job,
    out: &Path,
    label: &Label,
    verb: &str,
    (id_name, id): (&str, &str),
    write: impl FnOnce() -> Result<Marked, MetaError>,
) -> Outcome {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Outcome::Failed(format!("cannot create {}: {e}", dir.display()));
        }
    }
    match write() {
        Ok(Marked::Sound(r)) => {
            let format = r.format.map(|f| f.name()).unwrap_or("?");
            let mut text = format!(
                "{verb} {} -> {} ({format}/{}, {id_name} {id}",
                job.input.display(),
                out.display(),
                r.codec,
            );
            for part in sound_parts(&r) {
                text.push_str(&format!(", {part}"));
            }
            let sound = sound_json(&r);
            text.push(')');
            Outcome::Done {
                text,
                json: json!({"path": job.input.display().to_string(), "output": out.display().to_string(), "format": format, "codec": r.codec, "sample_rate": r.sample_rate, "channels": r.channels, "label": label, "rhythm": sound["rhythm"], "voice_prompt": r.voice_at.map(|at| json!({"start_seconds": at})), "watermark": sound["watermark"], "limiter_db": r.limiter_db, "damaged_packets": r.damaged_packets, "seconds": r.seconds, "watermark_readable": r.seconds >= aigc_audio::watermark::MIN_SECONDS}),
                ok: true,
            }
        }
        Ok(Marked::Video(r)) => {
            let e = &r.encoder;
            let mut text = format!(
                "{verb} {} -> {} ({}/{} crf {} preset {}, {}x{}, {} frames, {:.2} s, {id_name} {id}",
                job.input.display(),
                out.display(),
                r.format.name(),
                e.encoder,
                e.crf,
                e.preset,
                r.width,
                r.height,
                r.frames,
                r.seconds,
            );
            if let Some(v) = &r.visible {
                let spans: Vec<String> = v
                    .spans
                    .iter()
                    .map(|[a, b]| format!("{a:.2}-{b:.2} s"))
                    .collect();
                text.push_str(&format!(
                    ", visible label {:.1}% high on {} frames ({})",
                    v.placement.height_ratio * 100.0,
                    v.frames,
                    spans.join(", ")
                ));
            }
            if let Some((payload, psnr)) = &r.watermark {
                text.push_str(&format!(", watermark {payload:016x} at {psnr:.1} dB"));
            }
            if r.fragmented {
                text.push_str(", fragmented as the input was");
            }
            if let Some(from) = &r.converted_from {
                text.push_str(&format!(
                    ", pictures converted from {from} to {}",
                    r.pixel_format
                ));
            }
            if let Some((degrees, mirrored)) = r.rotation {
                text.push_str(&format!(
                    ", shown turned {degrees}°{}{}",
                    if mirrored { " and mirrored" } else { "" },
                    if r.rotation_kept {
                        ""
                    } else {
                        " (this container cannot carry the turn: the output shows as stored)"
                    }
                ));
            }
            if let Some(snd) = &r.sound {
                let parts = sound_parts(snd);
                text.push_str(&format!(
                    ", sound {} {} Hz{}{}",
                    snd.codec,
                    snd.sample_rate,
                    if parts.is_empty() { "" } else { ": " },
                    parts.join(", ")
                ));
            }
            if !r.copied.is_empty() {
                text.push_str(&format!(", copied: {}", r.copied.join(", ")));
            }
            if !r.dropped.is_empty() {
                text.push_str(&format!(
                    ", left out (the container cannot take them): {}",
                    r.dropped.join(", ")
                ));
            }
            if r.damaged_packets > 0 {
                text.push_str(&format!(
                    ", {} damaged packet(s) of the input skipped",
                    r.damaged_packets
                ));
            }
            text.push(')');
            let visible = r.visible.as_ref().map(|v| json!({"ink_box": v.placement.ink, "plate_box": v.placement.plate, "text_height_ratio": v.placement.height_ratio, "frames": v.frames, "spans_seconds": v.spans}));
            Outcome::Done {
                text,
                json: json!({"path": job.input.display().to_string(), "output": out.display().to_string(), "format": r.format.name(), "muxer": r.muxer, "decoder": r.decoder, "encoder": e.encoder, "crf": e.crf, "preset": e.preset, "width": r.width, "height": r.height, "rotation": r.rotation.map(|(degrees, mirrored)| json!({"degrees": degrees, "mirrored": mirrored, "kept": r.rotation_kept})), "fragmented": r.fragmented, "pixel_format": r.pixel_format, "converted_from": r.converted_from, "frames": r.frames, "seconds": r.seconds, "label": label, "visible": visible, "watermark": r.watermark.map(|(p, psnr)| json!({"payload": format!("{p:016x}"), "psnr_db": psnr})), "sound": r.sound.as_ref().map(|snd| { let mut j = sound_json(snd); j["codec"] = json!(snd.codec); j["sample_rate"] = json!(snd.sample_rate); j["channels"] = json!(snd.channels); j["seconds"] = json!(snd.seconds); j }), "copied_streams": r.copied, "dropped_streams": r.dropped, "chapters": r.chapters, "damaged_packets": r.damaged_packets}),
                ok: true,
            }
        }
        Ok(Marked::Pixels(r)) => {
            let format = r.format.map(|f| f.name()).unwrap_or("?");
            let mut text = format!(
                "{verb} {} -> {} ({format}, {id_name} {id}",
                job.input.display(),
                out.display(),
            );
            if let Some(p) = &r.visible {
                text.push_str(&format!(
                    ", visible label {:.1}% high",
                    p.height_ratio * 100.0
                ));
            }
            if let Some((payload, psnr)) = &r.watermark {
                text.push_str(&format!(", watermark {payload:016x} at {psnr:.1} dB"));
            }
            if let Some(why) = &r.pixels_skipped {
                text.push_str(&format!("; {why}"));
            }
            text.push(')');
            let visible = r.visible.map(|p| json!({"ink_box": p.ink, "plate_box": p.plate, "text_height_ratio": p.height_ratio, "frames": r.frames}));
            Outcome::Done {
                text,
                json: json!({"path": job.input.display().to_string(), "output": out.display().to_string(), "format": format, "label": label, "visible": visible, "jpeg_quality": r.jpeg_quality, "watermark": r.watermark.map(|(p, psnr)| json!({"payload": format!("{p:016x}"), "psnr_db": psnr})), "pixels_skipped": r.pixels_skipped}),
                ok: true,
            }
        }
        Err(e) => failure(job, e),
    }
}

/// What a `mark` write did to the content.
enum Marked {
    Pixels(PixelReport),
    Sound(SoundReport),
    Video(Box<aigc_video::VideoReport>),
}

/// The font for visible labels: `--font`, or the embedded one. Refuses text it cannot draw.
fn load_font(v: &VisibleArgs) -> Result<FontArc, String> {
    let font = match &v.font {
        Some(p) => {
            let data = std::fs::read(p)
                .map_err(|e| format!("{}: cannot read the font: {e}", p.display()))?;
            FontArc::try_from_vec(data)
                .map_err(|e| format!("{}: not a TrueType/OpenType font: {e}", p.display()))?
        }
        None => FontArc::try_from_slice(aigc_image::FONT).expect("the embedded font is valid"),
    };
    let missing = missing_glyphs(&font, &v.text);
    if !missing.is_empty() {
        let list: String = missing.iter().collect();
        let whose = if v.font.is_some() {
            "that font"
        } else {
            "the embedded font"
        };
        return Err(format!(
            "{whose} has no glyph for {list:?} in --text; pass --font with a font that covers them"
        ));
    }
    if v.text.trim().is_empty() {
        return Err("--text is empty".into());
    }
    Ok(font)
}

/// The watermark key: `--key FILE` (32 raw bytes or 64 hex digits), or the public key.
fn load_key(k: &args::KeyArgs) -> Result<aigc_dsp::Key, String> {
    let Some(path) = &k.key else {
        return Ok(aigc_dsp::public_key());
    };
    let data =
        std::fs::read(path).map_err(|e| format!("{}: cannot read the key: {e}", path.display()))?;
    if data.len() == 32 {
        return Ok(data.try_into().expect("32 bytes"));
    }
    let text = String::from_utf8_lossy(&data);
    let hex = text.trim();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digits");
        }
        return Ok(key);
    }
    Err(format!(
        "{}: a key is 32 bytes, raw or as 64 hex digits (this file has {} bytes); make one with: head -c 32 /dev/urandom > key.bin",
        path.display(),
        data.len()
    ))
}

/// The rhythm label's style from the command line, checked; `None` with `--no-rhythm`.
fn rhythm_style(r: &args::RhythmArgs) -> Result<Option<aigc_audio::rhythm::RhythmStyle>, String> {
    if r.no_rhythm {
        return Ok(None);
    }
    if !(300.0..=3000.0).contains(&r.rhythm_freq) {
        return Err(format!(
            "--rhythm-freq {} is outside 300-3000 Hz",
            r.rhythm_freq
        ));
    }
    if !(50.0..=300.0).contains(&r.rhythm_dot_ms) {
        return Err(format!(
            "--rhythm-dot-ms {} is outside 50-300 ms",
            r.rhythm_dot_ms
        ));
    }
    if !(-40.0..=-1.0).contains(&r.rhythm_level) {
        return Err(format!(
            "--rhythm-level {} is outside -40 to -1 dBFS",
            r.rhythm_level
        ));
    }
    Ok(Some(aigc_audio::rhythm::RhythmStyle {
        frequency_hz: r.rhythm_freq,
        dot_ms: r.rhythm_dot_ms,
        level_dbfs: r.rhythm_level,
        placement: r.rhythm_at,
        insert: !r.rhythm_mix,
    }))
}

fn mark(a: MarkArgs, cfg: &config::Config) -> Result<batch::Summary, String> {
    let producer = a
        .producer
        .clone()
        .or_else(|| cfg.producer.clone())
        .or_else(|| std::env::var("AIGC_PRODUCER").ok())
        .ok_or("no producer code: pass --producer CODE, set producer in the config file, or set $AIGC_PRODUCER")?;
    if a.no_metadata {
        return Err(
            "--no-metadata is refused: GB 45438 requires the implicit (metadata) label in every file".into(),
        );
    }
    if !(0.05..=0.5).contains(&a.visible_size) {
        return Err(format!(
            "--visible-size {} is outside 0.05-0.5 (GB 45438: at least 5% of the shortest side)",
            a.visible_size
        ));
    }
    if !(0.3..=1.0).contains(&a.visible_opacity) {
        return Err(format!(
            "--visible-opacity {} is outside 0.3-1",
            a.visible_opacity
        ));
    }
    let font = if a.no_visible {
        None
    } else {
        Some(load_font(&a.visible)?)
    };
    let key = load_key(&a.key)?;
    let fixed_payload = a
        .payload
        .as_deref()
        .map(|p| {
            let digits = p.trim_start_matches("0x");
            let value = u128::from_str_radix(digits, 16).ok();
            match (value, digits.len()) {
                (Some(v), 1..=16) => Ok(aigc_audio::watermark::Payload::bits64(v as u64)),
                (Some(v), 17..=32) => Ok(aigc_audio::watermark::Payload::bits128(v)),
                _ => Err(format!(
                    "--payload {p:?} is not up to 16 (or 32) hex digits"
                )),
            }
        })
        .transpose()?;
    let style = LabelStyle {
        text: a.visible.text.clone(),
        position: a.position,
        height_ratio: a.visible_size,
        plate: !a.no_plate,
        opacity: a.visible_opacity,
        ..LabelStyle::default()
    };
    if !(a.video.visible_seconds >= 2.0 && a.video.visible_seconds.is_finite()) {
        return Err(format!(
            "--visible-seconds {} is under 2 (GB 45438: the label shows for at least the opening 2 s)",
            a.video.visible_seconds
        ));
    }
    if a.video.crf.is_some_and(|c| !(0.0..=63.0).contains(&c)) {
        return Err("--crf is outside 0-63".into());
    }
    let encode = aigc_video::EncodeSettings {
        crf: a.video.crf,
        preset: a.video.preset.clone(),
    };
    let rhythm = rhythm_style(&a.rhythm)?;
    let voice = a
        .rhythm
        .voice_prompt
        .as_deref()
        .map(|p| {
            aigc_audio::pipeline::load_voice(p)
                .map_err(|e| format!("{}: cannot use it as a voice prompt: {e}", p.display()))
        })
        .transpose()?;
    let value = a
        .label
        .map(|l| l.value())
        .or(label_from_config(cfg)?)
        .unwrap_or(LabelValue::Is);
    let mode = mode(&a.inputs, cfg);
    let dest = Destination::from_args(&a.outputs)?;
    let (jobs, failed) = batch::expand(&a.inputs, &dest)?;
    if a.produce_id.is_some() && jobs.len() + failed.len() > 1 {
        return Err("--produce-id names one file's ID; leave it out for several files so each gets a fresh one".into());
    }
    let mut template = Label::produced(
        value,
        &producer,
        a.produce_id.as_deref().unwrap_or(&new_content_id()),
    );
    template.reserved_code1 = a.reserved_code1.clone().unwrap_or_default();
    check_label(&template, mode)?;
    let opts = write_options(a.outputs.no_iptc, cfg);
    let threads = threads(&a.inputs, cfg);
    Ok(batch::run(
        "mark",
        jobs,
        failed,
        &a.inputs,
        threads,
        |job| {
            let out = job.output.as_ref().expect("mark jobs have outputs");
            let mut label = template.clone();
            if a.produce_id.is_none() {
                label.produce_id = new_content_id();
            }
            let payload = fixed_payload.unwrap_or_else(|| match a.payload_bits {
                128 => aigc_audio::watermark::Payload::bits128(aigc_dsp::payload_for_id_wide(
                    &label.produce_id,
                )),
                _ => aigc_audio::watermark::Payload::bits64(aigc_dsp::payload_for_id(
                    &label.produce_id,
                )),
            });
            // Images carry 64 bits: the first 64 of a 128-bit payload.
            let image_payload = (payload.value >> (payload.bits - 64)) as u64;
            let layers = PixelLayers {
                visible: font.as_ref().map(|f| (&style, f)),
                watermark: (!a.no_watermark).then_some((&key, image_payload)),
            };
            let sound = SoundLayers {
                rhythm: rhythm.as_ref(),
                watermark: (!a.no_watermark).then_some((&key, payload)),
                voice: voice.as_ref().map(|v| (v, a.rhythm.voice_at)),
            };
            let video = aigc_video::VideoLayers {
                visible: font.as_ref().map(|font| aigc_video::VisibleLabel {
                    style: &style,
                    font,
                    seconds: a.video.visible_seconds,
                    span: a.video.visible_at,
                }),
                watermark: (!a.no_watermark).then_some((&key, image_payload)),
                encode: encode.clone(),
                sound: SoundLayers {
                    rhythm: rhythm.as_ref(),
                    watermark: sound.watermark,
                    voice: None,
                },
            };
            write_one(
                job,
                out,
                &label,
                "marked",
                ("ProduceID", &label.produce_id),
                || {
                    if let Some(r) =
                        aigc_audio::pipeline::mark_file(&job.input, out, &label, &opts, &sound)?
                    {
                        return Ok(Marked::Sound(r));
                    }
                    if let Some(r) = aigc_video::mark_file(&job.input, out, &label, &opts, &video)?
                    {
                        return Ok(Marked::Video(Box::new(r)));
                    }
                    mark_file(&job.input, out, &label, &opts, &layers).map(Marked::Pixels)
                },
            )
        },
    ))
}

/// How much of a video's soundtrack `verify` reads.
const SOUNDTRACK_SECONDS: f64 = 60.0;

fn verify(a: VerifyArgs, cfg: &config::Config) -> Result<batch::Summary, String> {
    let mode = mode(&a.inputs, cfg);
    let (jobs, failed) = batch::expand(&a.inputs, &Destination::None)?;
    let threads = threads(&a.inputs, cfg);
    let require = a.require;
    let font = load_font(&a.visible)?;
    let text_to_find = a.visible.text.clone();
    let key = if a.no_watermark {
        None
    } else {
        Some(load_key(&a.key)?)
    };
    Ok(batch::run(
        "verify",
        jobs,
        failed,
        &a.inputs,
        threads,
        |job| {
            let fs = match scan_file(&job.input) {
                Ok(fs) => fs,
                Err(e) => return failure(job, e),
            };
            let mut verdict = assess(&fs.scan.copies, &fs.scan.problems, mode);
            match aigc_audio::pipeline::inspect_file(&job.input, fs.format, key.as_ref()) {
                Ok(None) => {}
                Ok(Some(sound)) => {
                    return verify_sound(job, &fs, verdict, &sound, key.is_some(), require)
                }
                Err(e) => {
                    let sound = aigc_audio::pipeline::SoundInspection::default();
                    let mut o = verify_sound(job, &fs, verdict, &sound, key.is_some(), require);
                    if let Outcome::Done { text, json, .. } = &mut o {
                        text.push_str(&format!("\n    sound not checked: {e}"));
                        json["sound_error"] = json!(e);
                    }
                    return o;
                }
            }
            // A video's pictures and its soundtrack are read side by side. The soundtrack's
            // opening minute is enough: the rhythm label sits at the start and the watermark
            // repeats every 3.4 s.
            let (pictures, sound) = if aigc_video::is_video_format(fs.format) {
                std::thread::scope(|s| {
                    let sound = s.spawn(|| {
                        aigc_audio::pipeline::inspect_soundtrack(
                            &job.input,
                            key.as_ref(),
                            SOUNDTRACK_SECONDS,
                        )
                    });
                    let pictures = aigc_video::inspect_file(
                        &job.input,
                        fs.format,
                        &font,
                        &text_to_find,
                        key.as_ref(),
                    );
                    (
                        pictures,
                        sound.join().expect("the sound check does not panic"),
                    )
                })
            } else {
                (Ok(None), Ok(None))
            };
            match pictures {
                Ok(None) => {}
                pictures => {
                    return verify_video(
                        job,
                        &fs,
                        verdict,
                        (
                            pictures.as_ref().map(|p| p.as_ref().expect("Some")),
                            sound.as_ref().map(Option::as_ref),
                        ),
                        &text_to_find,
                        key.is_some(),
                        require,
                    );
                }
            }
            // A file whose metadata reads but whose pixels do not still gets its metadata verdict.
            let (pixels, pixel_error) =
                match inspect_file(&job.input, fs.format, &font, &text_to_find, key.as_ref()) {
                    Ok(p) => (p, None),
                    Err(e) => (Default::default(), Some(e.message)),
                };
            if let Some(v) = pixels
                .visible
                .filter(|v| v.text_height_ratio < aigc_image::MIN_HEIGHT_RATIO)
            {
                verdict.findings.push(Finding::error(
                    FindingCode::VisibleTooSmall,
                    None,
                    format!("the visible label at {} is {:.1}% of the shortest side tall; GB 45438 requires at least 5%", v.position.name(), v.text_height_ratio * 100.0),
                ));
                if matches!(verdict.verdict, Verdict::Compliant | Verdict::NotFound) {
                    verdict.verdict = Verdict::NonCompliant;
                }
            }
            let mut text = report_head(
                job,
                &fs,
                &mut verdict,
                pixels.watermark.as_ref().map(|wm| {
                    (
                        format!("{:016x}", wm.payload),
                        wm.false_positive_probability,
                    )
                }),
            );
            if let Some(v) = &pixels.visible {
                text.push_str(&format!(
                    "\n    visible: {} at {}, {:.1}% of the shortest side",
                    text_to_find,
                    v.position.name(),
                    v.text_height_ratio * 100.0
                ));
            }
            for f in &verdict.findings {
                text.push_str(&format!("\n    {f}"));
            }
            if let Some(e) = &pixel_error {
                text.push_str(&format!("\n    pixels not checked: {e}"));
            }
            let visible = pixels.decoded.then(|| match &pixels.visible {
                Some(v) => json!({"detected": true, "text_height_ratio": v.text_height_ratio, "position": v.position.name(), "score": v.score}),
                None => json!({"detected": false, "text_height_ratio": null, "position": null}),
            });
            let json = json!({
                "path": job.input.display().to_string(),
                "format": fs.format.name(),
                "verdict": verdict.verdict,
                "metadata": {"label": verdict.label, "carriers": verdict.carriers, "findings": verdict.findings},
                "iptc_digital_source_type": fs.scan.digital_source_type,
                "c2pa": fs.scan.c2pa,
                "watermark": match (&key, pixels.decoded, &pixels.watermark) {
                    (None, _, _) | (_, false, _) => serde_json::Value::Null,
                    (_, true, Some(wm)) => json!({"detected": true, "payload": format!("{:016x}", wm.payload), "false_positive_probability": wm.false_positive_probability, "scale": wm.scale, "rotation_deg": wm.rotation_deg}),
                    (_, true, None) => json!({"detected": false, "payload": null, "false_positive_probability": null}),
                },
                "visible": visible,
                "pixels_error": pixel_error,
            });
            Outcome::Done {
                text,
                json,
                ok: !require || verdict.verdict == Verdict::Compliant,
            }
        },
    ))
}

/// The first lines of `verify`'s report: verdict, format and path, the label, and the
/// watermark (payload hex, false-positive probability) when found. A watermark without a
/// metadata label adds the `watermark_only` finding, for images and audio alike.
fn report_head(
    job: &Job,
    fs: &aigc_meta::FileScan,
    verdict: &mut aigc_core::Assessment,
    watermark: Option<(String, f64)>,
) -> String {
    let mut text = format!(
        "{:<14} {:<5} {}",
        verdict.verdict.as_str(),
        fs.format.name(),
        job.input.display()
    );
    if let Some(l) = &verdict.label {
        text.push_str(&format!("\n    label: {}", l.to_json()));
    }
    if let Some((payload, fp)) = watermark {
        if verdict.verdict == Verdict::NotFound {
            verdict.findings.push(Finding::warning(
                FindingCode::WatermarkOnly,
                None,
                format!("no metadata label, but this tool's watermark (payload {payload}) is present: the metadata was probably stripped; label it 3 (suspected) when distributing"),
            ));
        }
        text.push_str(&format!(
            "\n    watermark: payload {payload} (false-positive probability {fp:.1e})"
        ));
    }
    text
}

/// The rhythm labels found, one line each, for `verify`'s text report.
fn rhythm_lines(sound: &aigc_audio::pipeline::SoundInspection, what: &str) -> String {
    sound
        .rhythm
        .iter()
        .map(|r| {
            format!(
                "\n    {what}rhythm label (.- ..): {:.2}-{:.2} s at {:.0} Hz",
                r.start_seconds, r.end_seconds, r.frequency_hz
            )
        })
        .collect()
}

/// `verify`'s findings in the sound as JSON: `watermark` (null when not checked) and `rhythm`.
fn sound_found_json(
    sound: &aigc_audio::pipeline::SoundInspection,
    watermark_checked: bool,
) -> serde_json::Value {
    json!({
        "watermark": match (watermark_checked && sound.decoded, &sound.watermark) {
            (false, _) => serde_json::Value::Null,
            (true, Some(wm)) => json!({"detected": true, "payload": format!("{:016x}", wm.payload), "false_positive_probability": wm.false_positive_probability, "speed": wm.speed, "offset_seconds": wm.offset_seconds}),
            (true, None) => json!({"detected": false, "payload": null, "false_positive_probability": null}),
        },
        "rhythm": sound.decoded.then(|| json!({
            "detected": !sound.rhythm.is_empty(),
            "occurrences": sound.rhythm.iter().map(|r| json!({"start_seconds": r.start_seconds, "end_seconds": r.end_seconds, "frequency_hz": r.frequency_hz, "dot_ms": r.dot_ms})).collect::<Vec<_>>(),
        })),
    })
}

/// `verify`'s report for an audio file: metadata, watermark and rhythm label.
fn verify_sound(
    job: &Job,
    fs: &aigc_meta::FileScan,
    mut verdict: aigc_core::Assessment,
    sound: &aigc_audio::pipeline::SoundInspection,
    watermark_checked: bool,
    require: bool,
) -> Outcome {
    let mut text = report_head(
        job,
        fs,
        &mut verdict,
        sound
            .watermark
            .as_ref()
            .map(|wm| (wm.payload.hex(), wm.false_positive_probability)),
    );
    text.push_str(&rhythm_lines(sound, ""));
    for f in &verdict.findings {
        text.push_str(&format!("\n    {f}"));
    }
    let found = sound_found_json(sound, watermark_checked);
    let json = json!({
        "path": job.input.display().to_string(),
        "format": fs.format.name(),
        "verdict": verdict.verdict,
        "metadata": {"label": verdict.label, "carriers": verdict.carriers, "findings": verdict.findings},
        "watermark": found["watermark"],
        "rhythm": found["rhythm"],
        "seconds": sound.decoded.then_some(sound.seconds),
    });
    Outcome::Done {
        text,
        json,
        ok: !require || verdict.verdict == Verdict::Compliant,
    }
}

/// `verify`'s report for a video: metadata, watermark, the visible label with how long it
/// shows, and the soundtrack's watermark and rhythm label. A video whose frames cannot be read keeps its metadata verdict.
fn verify_video(
    job: &Job,
    fs: &aigc_meta::FileScan,
    mut verdict: aigc_core::Assessment,
    (pictures, sound): (
        Result<&aigc_video::VideoInspection, &String>,
        Result<Option<&aigc_audio::pipeline::SoundInspection>, &String>,
    ),
    text_to_find: &str,
    watermark_checked: bool,
    require: bool,
) -> Outcome {
    let v = pictures.ok();
    let snd = sound.ok().flatten();
    if let Some(found) = v.and_then(|v| v.visible) {
        let l = found.label;
        if l.text_height_ratio < aigc_image::MIN_HEIGHT_RATIO {
            verdict.findings.push(Finding::error(
                FindingCode::VisibleTooSmall,
                None,
                format!("the visible label at {} is {:.1}% of the shortest side tall; GB 45438 requires at least 5%", l.position.name(), l.text_height_ratio * 100.0),
            ));
        }
        if found.until_seconds < 2.0 {
            verdict.findings.push(Finding::error(
                FindingCode::VisibleTooShort,
                None,
                format!("the visible label shows for about {:.1} s of the opening; GB 45438 requires at least 2 s", found.until_seconds),
            ));
        }
        if (l.text_height_ratio < aigc_image::MIN_HEIGHT_RATIO || found.until_seconds < 2.0)
            && matches!(verdict.verdict, Verdict::Compliant | Verdict::NotFound)
        {
            verdict.verdict = Verdict::NonCompliant;
        }
    }
    let mut text = report_head(
        job,
        fs,
        &mut verdict,
        // The pictures' watermark, else the sound's: either links a stripped file back.
        v.and_then(|v| v.watermark.as_ref())
            .map(|wm| {
                (
                    format!("{:016x}", wm.payload),
                    wm.false_positive_probability,
                )
            })
            .or_else(|| {
                snd.and_then(|s| s.watermark.as_ref())
                    .map(|wm| (wm.payload.hex(), wm.false_positive_probability))
            }),
    );
    if let Some(wm) = snd.and_then(|s| s.watermark.as_ref()) {
        text.push_str(&format!(
            "\n    sound watermark: payload {} (false-positive probability {:.1e})",
            wm.payload.hex(),
            wm.false_positive_probability
        ));
    }
    if let Some(s) = snd {
        text.push_str(&rhythm_lines(s, "sound "));
    }
    if let Some(found) = v.and_then(|v| v.visible) {
        text.push_str(&format!(
            "\n    visible: {} at {}, {:.1}% of the shortest side, in the opening {}{:.1} s",
            text_to_find,
            found.label.position.name(),
            found.label.text_height_ratio * 100.0,
            if found.beyond_scan { "≥ " } else { "" },
            found.until_seconds
        ));
    }
    for f in &verdict.findings {
        text.push_str(&format!("\n    {f}"));
    }
    if let Err(e) = pictures {
        text.push_str(&format!("\n    pictures not checked: {e}"));
    }
    if let Err(e) = sound {
        text.push_str(&format!("\n    sound not checked: {e}"));
    }
    let json = json!({
        "path": job.input.display().to_string(),
        "format": fs.format.name(),
        "verdict": verdict.verdict,
        "metadata": {"label": verdict.label, "carriers": verdict.carriers, "findings": verdict.findings},
        "watermark": match (watermark_checked, v) {
            (false, _) | (_, None) => serde_json::Value::Null,
            (true, Some(v)) => match &v.watermark {
                Some(wm) => json!({"detected": true, "payload": format!("{:016x}", wm.payload), "false_positive_probability": wm.false_positive_probability, "scale": wm.scale, "rotation_deg": wm.rotation_deg, "frames": v.watermark_frames}),
                None => json!({"detected": false, "payload": null, "false_positive_probability": null, "frames": v.watermark_frames}),
            },
        },
        "visible": v.map(|v| match v.visible {
            Some(f) => json!({"detected": true, "position": f.label.position.name(), "text_height_ratio": f.label.text_height_ratio, "score": f.label.score, "until_seconds": f.until_seconds, "beyond_scan": f.beyond_scan}),
            None => json!({"detected": false, "position": null, "text_height_ratio": null}),
        }),
        "sound": snd.map(|s| {
            let mut j = sound_found_json(s, watermark_checked);
            j["seconds_checked"] = json!(s.seconds);
            j
        }),
        "sound_error": sound.err(),
        "seconds": v.and_then(|v| v.seconds),
        "width": v.map(|v| v.width),
        "height": v.map(|v| v.height),
        "pixels_error": pictures.err(),
    });
    Outcome::Done {
        text,
        json,
        ok: !require || verdict.verdict == Verdict::Compliant,
    }
}

fn propagate(a: PropagateArgs, cfg: &config::Config) -> Result<batch::Summary, String> {
    let propagator = a
        .propagator
        .clone()
        .or_else(|| cfg.propagator.clone())
        .ok_or("no propagator code: pass --propagator CODE or set propagator in the config file")?;
    if a.label == Some(args::LabelArg::One) {
        return Err(
            "--label 1 is the producer's to give; a platform writes 2 (declared) or 3 (suspected)"
                .into(),
        );
    }
    let mode = mode(&a.inputs, cfg);
    let dest = Destination::from_args(&a.outputs)?;
    let (jobs, failed) = batch::expand(&a.inputs, &dest)?;
    if a.propagate_id.is_some() && jobs.len() + failed.len() > 1 {
        return Err("--propagate-id names one file's ID; leave it out for several files so each gets a fresh one".into());
    }
    let opts = write_options(a.outputs.no_iptc, cfg);
    let threads = threads(&a.inputs, cfg);
    Ok(batch::run(
        "propagate",
        jobs,
        failed,
        &a.inputs,
        threads,
        |job| {
            let out = job.output.as_ref().expect("propagate jobs have outputs");
            let fs = match scan_file(&job.input) {
                Ok(fs) => fs,
                Err(e) => return failure(job, e),
            };
            let found = assess(&fs.scan.copies, &fs.scan.problems, Mode::Lenient);
            let mut label = match (found.verdict, found.label, a.label) {
            (Verdict::Inconclusive, _, _) => {
                let why = found.findings.first().map(|f| f.message.clone()).unwrap_or_default();
                return Outcome::Failed(format!("the existing label cannot be read ({why}); not overwriting it"));
            }
            (_, Some(existing), _) => existing,
            (_, None, Some(l)) => Label { label: l.value().as_str().to_string(), ..Label::default() },
            (_, None, None) => {
                return Outcome::Failed("has no label: pass --label 2 (the uploader declared AI) or --label 3 (suspected) to write one".into())
            }
        };
            label.content_propagator = propagator.clone();
            label.propagate_id = a.propagate_id.clone().unwrap_or_else(new_content_id);
            label.reserved_code2 = a.reserved_code2.clone().unwrap_or_default();
            if let Err(e) = check_label(&label, mode) {
                return Outcome::Failed(e);
            }
            write_one(
                job,
                out,
                &label,
                "propagated",
                ("PropagateID", &label.propagate_id),
                || {
                    let format = write_file(&job.input, out, &label, &opts)?;
                    Ok(Marked::Pixels(PixelReport {
                        format: Some(format),
                        ..PixelReport::default()
                    }))
                },
            )
        },
    ))
}
