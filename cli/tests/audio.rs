//! `mark` and `verify` on audio: the rhythm label, the watermark and the metadata label, checked
//! with ffprobe, exiftool and the ffmpeg CLI (which also makes the inputs and the attacks).

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// 14 s of pink noise under a chord, 44.1 kHz stereo, tagged: a stand-in for music that the
/// ffmpeg CLI makes, encoded with `codec_args` into `name`.
fn source(dir: &Path, name: &str, codec_args: &[&str]) -> PathBuf {
    source_lasting(dir, name, 14, codec_args)
}

/// [`source`], `seconds` long.
fn source_lasting(dir: &Path, name: &str, seconds: u32, codec_args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let noise = format!("anoisesrc=color=pink:amplitude=0.15:duration={seconds}:seed=7");
    let low = format!("sine=frequency=330:duration={seconds}");
    let high = format!("sine=frequency=495:duration={seconds}");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        &noise,
        "-f",
        "lavfi",
        "-i",
        &low,
        "-f",
        "lavfi",
        "-i",
        &high,
        "-filter_complex",
        "[0][1][2]amix=inputs=3:normalize=0,aformat=channel_layouts=stereo,aresample=44100",
        "-metadata",
        "title=Night Song",
        "-metadata",
        "artist=Test Band",
    ];
    args.extend_from_slice(codec_args);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
    out
}

fn probe(path: &Path) -> Value {
    ffprobe_json(path, &["-show_streams", "-show_format"])
}

/// A tag from the container or the audio stream, whatever its case.
fn tag(p: &Value, key: &str) -> Option<String> {
    let from = |t: &Value| {
        t.as_object().and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str().unwrap_or_default().to_string())
        })
    };
    from(&p["format"]["tags"]).or_else(|| from(&p["streams"][0]["tags"]))
}

const CASES: [(&str, &[&str]); 6] = [
    ("in.wav", &["-c:a", "pcm_s16le"]),
    ("in.flac", &["-c:a", "flac"]),
    ("in.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"]),
    ("in.m4a", &["-c:a", "aac", "-b:a", "128k"]),
    ("in.ogg", &["-c:a", "libvorbis", "-b:a", "96k"]),
    ("in.opus", &["-c:a", "libopus", "-b:a", "64k"]),
];

#[test]
fn every_audio_format_gets_rhythm_watermark_and_label_and_keeps_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    for (name, codec) in CASES {
        let input = source(dir.path(), name, codec);
        let before = probe(&input);
        let out = dir.path().join(format!("out-{name}"));
        mark_report(&input, &out, &["--produce-id", "audio-test-1"]);
        let after = probe(&out);
        for field in ["codec_name", "sample_rate", "channels"] {
            assert_eq!(
                after["streams"][0][field], before["streams"][0][field],
                "{name}: {field} changed"
            );
        }
        // The bitrate class is kept (lossy codecs within 25%).
        if let (Some(a), Some(b)) = (
            after["format"]["bit_rate"]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok()),
            before["format"]["bit_rate"]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok()),
        ) {
            if !name.ends_with(".wav") && !name.ends_with(".flac") {
                assert!((a / b - 1.0).abs() < 0.25, "{name}: bitrate {b} -> {a}");
            }
        }
        // The other tags survive; the label reads back with ffprobe and exiftool.
        assert_eq!(
            tag(&after, "title").as_deref(),
            Some("Night Song"),
            "{name}"
        );
        // FFmpeg does not read WAV's own AIGC chunk; exiftool below does.
        let aigc_tag = tag(&after, "AIGC").unwrap_or_default();
        assert!(
            name.ends_with(".wav") || aigc_tag.contains("\"ProduceID\":\"audio-test-1\""),
            "{name}: {aigc_tag}"
        );
        let ex = tool(
            "exiftool",
            &["-a", "-u", "-b", "-G1", "-s", out.to_str().unwrap()],
        );
        let ex = String::from_utf8_lossy(&ex.stdout);
        assert!(ex.contains("audio-test-1"), "{name}: exiftool sees {ex}");
        // Longer by the inserted rhythm label (3 + 11 + 3 dots of 120 ms) and no more than
        // a codec frame's padding.
        let d = |p: &Value| {
            [&p["format"]["duration"], &p["streams"][0]["duration"]]
                .iter()
                .find_map(|v| v.as_str().and_then(|s| s.parse::<f64>().ok()))
                .unwrap_or_else(|| panic!("{name}: no duration in {p}"))
        };
        let grown = d(&after) - d(&before);
        assert!((grown - 2.04).abs() < 0.08, "{name}: grew by {grown} s");
        let v = verify_json(&out);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(v["watermark"]["detected"], true, "{name}: {v}");
        let expected = format!("{:016x}", aigc_dsp::payload_for_id("audio-test-1"));
        assert_eq!(v["watermark"]["payload"], expected.as_str(), "{name}");
        let rhythm = &v["rhythm"]["occurrences"][0];
        assert!(
            (rhythm["start_seconds"].as_f64().unwrap() - 0.36).abs() < 0.05,
            "{name}: {v}"
        );
        // The unmarked input shows neither.
        let v = verify_json(&input);
        assert_eq!(v["watermark"]["detected"], false, "{name}");
        assert_eq!(v["rhythm"]["detected"], false, "{name}");
    }
}

#[test]
fn surround_mono_and_other_rates_keep_their_layout_and_carry_every_label() {
    // Any sample rate, mono to 5.1: each keeps its codec, rate and channel layout, and the
    // watermark, the rhythm label and the metadata label read back.
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        (
            "surround.m4a",
            &["-ac", "6", "-ar", "48000", "-c:a", "aac", "-b:a", "256k"],
        ),
        (
            "surround.flac",
            &["-ac", "6", "-ar", "96000", "-c:a", "flac"],
        ),
        (
            "mono.mp3",
            &[
                "-ac",
                "1",
                "-ar",
                "22050",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "48k",
            ],
        ),
    ];
    for (name, codec) in cases {
        let input = source(dir.path(), name, codec);
        let before = probe(&input);
        let channels = if name.starts_with("mono") { 1 } else { 6 };
        assert_eq!(
            before["streams"][0]["channels"], channels,
            "{name}: {before}"
        );
        let out = dir.path().join(format!("out-{name}"));
        mark_report(&input, &out, &["--payload", "5a5a5a5a00c0ffee"]);
        let after = probe(&out);
        for field in ["codec_name", "sample_rate", "channels", "channel_layout"] {
            assert_eq!(
                after["streams"][0][field], before["streams"][0][field],
                "{name}: {field} changed"
            );
        }
        let v = verify_json(&out);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(v["watermark"]["payload"], "5a5a5a5a00c0ffee", "{name}: {v}");
        assert_eq!(v["rhythm"]["detected"], true, "{name}: {v}");
    }
}

/// `source` as WAV, marked by `mark` with `payload` into `dir/marked.wav`.
fn marked_wav(dir: &Path, payload: &str) -> PathBuf {
    let input = source(dir, "in.wav", &["-c:a", "pcm_s16le"]);
    let out = dir.join("marked.wav");
    mark_report(&input, &out, &["--payload", payload]);
    out
}

#[test]
fn watermark_and_rhythm_survive_transcoding_and_metadata_stripping() {
    let dir = tempfile::tempdir().unwrap();
    let out = marked_wav(dir.path(), "00c0ffee00c0ffee");
    let m = out.to_str().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    ffmpeg(&[
        "-i",
        m,
        "-map_metadata",
        "-1",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "64k",
        &p("a.mp3"),
    ]);
    ffmpeg(&["-i", m, "-ar", "16000", &p("r16.wav")]);
    ffmpeg(&[
        "-i",
        &p("r16.wav"),
        "-map_metadata",
        "-1",
        "-ar",
        "44100",
        &p("b.wav"),
    ]);
    ffmpeg(&[
        "-i",
        m,
        "-map_metadata",
        "-1",
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
        &p("c.opus"),
    ]);
    for f in ["a.mp3", "b.wav", "c.opus"] {
        let v = verify_json(Path::new(&p(f)));
        assert_eq!(v["verdict"], "not_found", "{f}: {v}");
        assert_eq!(v["watermark"]["payload"], "00c0ffee00c0ffee", "{f}: {v}");
        assert!(
            v["watermark"]["false_positive_probability"]
                .as_f64()
                .unwrap()
                < 1e-9
        );
        assert_eq!(
            v["metadata"]["findings"][0]["code"], "watermark_only",
            "{f}"
        );
        assert_eq!(v["rhythm"]["detected"], true, "{f}: {v}");
    }
}

#[test]
fn no_clipping_and_options_checked() {
    let dir = tempfile::tempdir().unwrap();
    // A full-scale square-ish wave: the watermark and a mixed tone would pass full scale.
    let loud = dir.path().join("loud.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=color=white:amplitude=1:duration=6:seed=3",
        "-af",
        "volume=4,alimiter=limit=1:level=false",
        "-ac",
        "2",
        "-ar",
        "44100",
        "-c:a",
        "pcm_f32le",
        loud.to_str().unwrap(),
    ]);
    let out = dir.path().join("out.wav");
    mark_report(&loud, &out, &["--rhythm-mix", "--rhythm-level", "-3"]);
    let raw = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-i",
            out.to_str().unwrap(),
            "-f",
            "f32le",
            "-",
        ])
        .output()
        .unwrap()
        .stdout;
    let peak = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()).abs())
        .fold(0.0, f32::max);
    assert!(peak <= 1.0, "peak {peak}");
    for bad in [
        ["--rhythm-freq", "50"],
        ["--rhythm-dot-ms", "10"],
        ["--rhythm-at", "soon"],
    ] {
        let o = aigc(&[
            "mark",
            loud.to_str().unwrap(),
            "--producer",
            PRODUCER,
            bad[0],
            bad[1],
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
}

#[test]
fn voice_prompt_goes_before_or_after_and_keeps_the_marks() {
    let dir = tempfile::tempdir().unwrap();
    let input = source(
        dir.path(),
        "in.mp3",
        &["-c:a", "libmp3lame", "-b:a", "128k"],
    );
    // A 1.5 s "recording" at another rate and channel count: 16 kHz mono.
    let voice = dir.path().join("voice.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300:duration=1.5:sample_rate=16000",
        voice.to_str().unwrap(),
    ]);
    let before = probe(&input);
    let d = |p: &Value| {
        p["format"]["duration"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    for (at, no_rhythm, voice_start, grown) in
        [("start", true, 0.0, 1.8), ("end", false, -1.0, 1.8 + 2.04)]
    {
        let out = dir.path().join(format!("v-{at}.mp3"));
        let mut extra = vec!["--voice-prompt", voice.to_str().unwrap(), "--voice-at", at];
        if no_rhythm {
            extra.push("--no-rhythm");
        }
        let report = mark_report(&input, &out, &extra);
        let start = report["voice_prompt"]["start_seconds"].as_f64().unwrap();
        // A negative `voice_start` means "at the end".
        if voice_start >= 0.0 {
            assert!((start - voice_start).abs() < 1e-6, "{report}");
        } else {
            // At the end: after the rhythm label, the audio and the pause.
            assert!((start - (2.04 + 14.0 + 0.3)).abs() < 0.05, "{report}");
        }
        let after = probe(&out);
        assert_eq!(after["streams"][0]["channels"], 2);
        let g = d(&after) - d(&before);
        assert!((g - grown).abs() < 0.08, "{at}: grew by {g}");
        let v = verify_json(&out);
        assert_eq!(v["watermark"]["detected"], true, "{at}: {v}");
        assert_eq!(v["rhythm"]["detected"], !no_rhythm, "{at}: {v}");
    }
    let o = aigc(&[
        "mark",
        input.to_str().unwrap(),
        "--producer",
        PRODUCER,
        "--voice-prompt",
        "/nonexistent.wav",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent.wav"), "{}", stderr(&o));
}

/// The mark spans 600 Hz to 7.2 kHz, so either side of 4.2 kHz carries it alone: what is left
/// under 4 kHz (a telephone-band filter), and what is left over 4.5 kHz then coded as MP3. The
/// cuts are brick walls in ffmpeg's `afftfilt` (bins of 10.8 Hz), so nothing of the other side
/// leaks through.
#[test]
fn either_half_of_the_band_carries_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let out = marked_wav(dir.path(), "0badc0de0badc0de");
    let m = out.to_str().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let keep = |bins: &str| format!("afftfilt=real='re*{bins}':imag='im*{bins}':win_size=4096");
    ffmpeg(&[
        "-i",
        m,
        "-af",
        &keep("lt(b,372)"),
        "-c:a",
        "pcm_f32le",
        &p("low.wav"),
    ]);
    ffmpeg(&[
        "-i",
        m,
        "-af",
        &keep("gt(b,418)"),
        "-c:a",
        "pcm_f32le",
        &p("high.wav"),
    ]);
    ffmpeg(&[
        "-i",
        &p("high.wav"),
        "-c:a",
        "libmp3lame",
        "-b:a",
        "128k",
        &p("high.mp3"),
    ]);
    for f in ["low.wav", "high.mp3"] {
        let v = verify_json(Path::new(&p(f)));
        assert_eq!(v["watermark"]["payload"], "0badc0de0badc0de", "{f}: {v}");
    }
}

#[test]
fn a_128_bit_payload_is_the_produce_id_hash_and_survives_mp3() {
    let dir = tempfile::tempdir().unwrap();
    let input = source(dir.path(), "in.flac", &["-c:a", "flac"]);
    let out = dir.path().join("out.flac");
    mark_report(
        &input,
        &out,
        &["--produce-id", "wide-1", "--payload-bits", "128"],
    );
    let mp3 = dir.path().join("a.mp3");
    ffmpeg(&[
        "-i",
        out.to_str().unwrap(),
        "-map_metadata",
        "-1",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "128k",
        mp3.to_str().unwrap(),
    ]);
    // Python's hashlib, not ours, says what the payload must be.
    let o = tool(
        "python3",
        &[
            "-c",
            "import hashlib; print(hashlib.sha256(b'wide-1').hexdigest()[:32])",
        ],
    );
    let expected = String::from_utf8_lossy(&o.stdout).trim().to_string();
    for f in [&out, &mp3] {
        let v = verify_json(f);
        assert_eq!(
            v["watermark"]["payload"],
            expected.as_str(),
            "{}: {v}",
            f.display()
        );
    }
    let o = aigc(&[
        "mark",
        input.to_str().unwrap(),
        "--producer",
        PRODUCER,
        "--payload-bits",
        "96",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_broken_audio_file_fails_alone_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = source(dir.path(), "good.wav", &["-c:a", "pcm_s16le"]);
    let bytes = std::fs::read(&good).unwrap();
    // A RIFF/WAVE header whose data chunk is cut off.
    let broken = dir.path().join("broken.wav");
    std::fs::write(&broken, &bytes[..40]).unwrap();
    let out = dir.path().join("out");
    let o = aigc(&[
        "mark",
        good.to_str().unwrap(),
        broken.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--producer",
        PRODUCER,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("broken.wav")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(!err.contains("@ 0x"), "FFmpeg's own log leaked: {err}");
    assert!(out.join("good.wav").exists());
    assert!(!out.join("broken.wav").exists());
    assert_eq!(
        std::fs::read(&broken).unwrap(),
        &bytes[..40],
        "the input was touched"
    );
}

#[test]
fn a_file_longer_than_the_held_mix_is_read_back_from_disk() {
    // Six minutes, more than the five the detectors hold in memory (`aigc_audio::mix`), so
    // `verify` reads the rest from a temporary file; the rhythm label inserted at 200 s is
    // silenced there (the stretch read back as zeros), where the mix already lives on disk.
    let dir = tempfile::tempdir().unwrap();
    let input = source_lasting(
        dir.path(),
        "long.flac",
        360,
        &["-ar", "16000", "-ac", "1", "-c:a", "flac"],
    );
    let out = dir.path().join("marked.flac");
    mark_report(
        &input,
        &out,
        &["--payload", "0badcafe0badcafe", "--rhythm-at", "200"],
    );
    let v = verify_json(&out);
    assert_eq!(v["verdict"], "compliant", "{v}");
    assert_eq!(v["watermark"]["payload"], "0badcafe0badcafe", "{v}");
    assert_eq!(v["rhythm"]["detected"], true, "{v}");
    let start = v["rhythm"]["occurrences"][0]["start_seconds"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!((start - 200.0).abs() < 0.5, "{v}");
}

/// Samples of `path` as ffmpeg decodes them: interleaved f32.
fn decoded_samples(path: &Path) -> Vec<f32> {
    let raw = path.with_extension("f32");
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-f",
        "f32le",
        raw.to_str().unwrap(),
    ]);
    std::fs::read(&raw)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn a_file_is_marked_at_exactly_its_target_ratio() {
    // A file is read once for the whole file's strength before it is marked, so the change
    // sits at the music target (35.5 dB: the bar is 35) as ffmpeg decodes the two files,
    // not somewhere within the streamed strength's 0.8 dB.
    let dir = tempfile::tempdir().unwrap();
    let input = source(dir.path(), "in.wav", &["-c:a", "pcm_s16le"]);
    let out = dir.path().join("out.wav");
    let report = mark_report(&input, &out, &["--no-rhythm"]);
    assert_eq!(report["watermark"]["target_snr_db"], 35.5, "{report}");
    let (x, y) = (decoded_samples(&input), decoded_samples(&out));
    assert_eq!(x.len(), y.len());
    let signal: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    let change: f64 = x
        .iter()
        .zip(&y)
        .map(|(&a, &b)| ((b - a) as f64).powi(2))
        .sum();
    let snr = 10.0 * (signal / change).log10();
    assert!((snr - 35.5).abs() < 0.15, "measured {snr} dB: {report}");
}
