//! `mark` and `verify` on video: the visible label on the opening frames, the watermark in every
//! frame, the container label, and everything else kept. Inputs and attacks are made by the
//! ffmpeg CLI; outputs are checked with ffprobe, the ffmpeg CLI's own decoder and exiftool.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const W: usize = 480;
const H: usize = 270;
const FPS: usize = 25;
/// Long enough for the sound's watermark (about three periods of 3.4 s).
const SECONDS: usize = 10;

/// A 10 s pan and zoom over the committed photograph with sound (pink noise under a chord, and
/// a 10 ms click at 4 s to check the timing by), a subtitle track, two chapters and a title;
/// variable frame rate (every frame for 2 s, then every other one).
fn source(dir: &Path) -> PathBuf {
    let photo = samples().join("../grace_hopper.jpg");
    let srt = dir.join("subs.srt");
    std::fs::write(
        &srt,
        "1\n00:00:00,500 --> 00:00:02,000\nHello\n\n2\n00:00:03,000 --> 00:00:05,000\nWorld\n",
    )
    .unwrap();
    let meta = dir.join("meta.txt");
    std::fs::write(&meta, format!(";FFMETADATA1\ntitle=Test Clip\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=3000\ntitle=Opening\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=3000\nEND={}\ntitle=Rest\n", SECONDS * 1000)).unwrap();
    let out = dir.join("clip.mp4");
    let zoom = format!(
        "[0:v]scale=1200:-2,zoompan=z='min(zoom+0.002,1.3)':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d={}:s={W}x{H}:fps={FPS},select='lt(n\\,{})+not(mod(n\\,2))',format=yuv420p[v]",
        SECONDS * FPS,
        2 * FPS
    );
    ffmpeg(&[
        "-loop",
        "1",
        "-i",
        photo.to_str().unwrap(),
        "-f",
        "lavfi",
        "-i",
        &format!("anoisesrc=color=pink:amplitude=0.12:duration={SECONDS}:seed=3"),
        "-i",
        srt.to_str().unwrap(),
        "-i",
        meta.to_str().unwrap(),
        "-f",
        "lavfi",
        "-i",
        "aevalsrc=exprs='0.1*sin(2*PI*330*t)+0.08*sin(2*PI*495*t)+if(between(t\\,4\\,4.01)\\,0.9*sin(2*PI*3000*t)\\,0)':s=48000:d=10",
        "-filter_complex",
        &format!("{zoom};[1:a][4:a]amix=inputs=2:normalize=0,aformat=channel_layouts=stereo,aresample=48000[a]"),
        "-map",
        "[v]",
        "-map",
        "[a]",
        "-map",
        "2:s",
        "-map_metadata",
        "3",
        "-map_chapters",
        "3",
        "-fps_mode",
        "vfr",
        "-t",
        &SECONDS.to_string(),
        "-c:v",
        "libx264",
        "-crf",
        "20",
        "-preset",
        "veryfast",
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        "-c:s",
        "mov_text",
        out.to_str().unwrap(),
    ]);
    out
}

fn probe(path: &Path) -> Value {
    ffprobe_json(path, &["-show_streams", "-show_format", "-show_chapters"])
}

/// The video packets' presentation times, sorted, as ffprobe reads them.
fn video_times(path: &Path) -> Vec<String> {
    let o = ffprobe(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ],
    );
    let mut t: Vec<f64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    t.sort_by(f64::total_cmp);
    t.iter().map(|v| format!("{v:.3}")).collect()
}

/// A stream's packets hashed by ffmpeg (stream copy, so the bytes themselves).
fn stream_hash(path: &Path, map: &str) -> String {
    let o = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-map",
            map,
            "-c",
            "copy",
            "-f",
            "md5",
            "-",
        ],
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// When the 10 ms click (the loudest 5 ms stretch between 3 and 5 s) is heard, seconds from
/// the start of the presentation, as ffmpeg's decoder gives the sound.
fn click_time(path: &Path) -> f64 {
    let o = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            "48000",
            "-f",
            "f32le",
            "-",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let x: Vec<f32> = o
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let win = 240;
    let (best, _) = (3 * 48000..5 * 48000)
        .step_by(24)
        .map(|i| (i, x[i..i + win].iter().map(|v| v * v).sum::<f32>()))
        .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    best as f64 / 48000.0
}

/// Every frame's luma as ffmpeg's decoder gives it.
fn luma_frames(path: &Path) -> Vec<Vec<u8>> {
    let o = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    o.stdout.chunks_exact(W * H).map(|c| c.to_vec()).collect()
}

fn sha256_payload(id: &str) -> String {
    let o = tool(
        "python3",
        &[
            "-c",
            &format!("import hashlib; print(hashlib.sha256(b'{id}').hexdigest()[:16])"),
        ],
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn video_gets_every_label_and_keeps_everything_else() {
    let dir = workdir();
    let src = source(dir.path());
    let out = dir.path().join("out.mp4");
    let r = mark_report(&src, &out, &["--produce-id", "video-1"]);
    assert_eq!(r["encoder"], "libx264", "{r}");
    // A plain MP4 stays plain (see a_fragmented_mp4_stays_fragmented for the other kind).
    assert_eq!(r["fragmented"], false, "{r}");
    assert_eq!(top_level_count(&out, "moof"), 0);
    let (pi, po) = (probe(&src), probe(&out));
    // Codec, size, pixel format, frame count and every timestamp kept (variable rate too).
    let (vi, vo) = (&pi["streams"][0], &po["streams"][0]);
    for k in ["codec_name", "width", "height", "pix_fmt"] {
        assert_eq!(vi[k], vo[k], "{k}");
    }
    let (ti, to) = (video_times(&src), video_times(&out));
    assert_eq!(
        ti.len(),
        2 * FPS + (SECONDS - 2) * FPS / 2,
        "the source is variable-rate: {} frames",
        ti.len()
    );
    assert_eq!(ti, to, "frame timestamps differ");
    assert_eq!(r["frames"], ti.len());
    // The sound re-encoded as it was (codec, rate, channels, bitrate class), as long as it was
    // and in step with the pictures: the click is heard at the same moment.
    let (ai, ao) = (&pi["streams"][1], &po["streams"][1]);
    for k in ["codec_name", "sample_rate", "channels", "start_time"] {
        assert_eq!(ai[k], ao[k], "audio {k}");
    }
    let num = |v: &Value| v.as_str().unwrap().parse::<f64>().unwrap();
    let rate = num(&ao["bit_rate"]) / num(&ai["bit_rate"]);
    assert!((0.75..1.25).contains(&rate), "audio bitrate ratio {rate}");
    assert!((num(&ai["duration"]) - num(&ao["duration"])).abs() < 0.03);
    let (ci, co) = (click_time(&src), click_time(&out));
    assert!((ci - 4.0).abs() < 0.01, "the source's click at {ci}");
    assert!(
        (ci - co).abs() < 0.003,
        "the click moved from {ci} to {co} s"
    );
    assert_eq!(r["sound"]["codec"], "aac", "{r}");
    assert_eq!(r["sound"]["rhythm"]["start_seconds"], 0.0, "{r}");
    let snr = r["sound"]["watermark"]["snr_db"].as_f64().unwrap();
    assert!((34.5..37.5).contains(&snr), "sound watermark at {snr} dB");
    // Subtitles copied packet for packet; chapters and the title kept.
    assert_eq!(stream_hash(&src, "0:s"), stream_hash(&out, "0:s"));
    assert_eq!(po["chapters"].as_array().unwrap().len(), 2);
    assert_eq!(po["chapters"][1]["tags"]["title"], "Rest");
    assert_eq!(po["format"]["tags"]["title"], "Test Clip");
    // The container label, read by ffprobe and by exiftool.
    let tag = po["format"]["tags"]["AIGC"]
        .as_str()
        .expect("ffprobe shows the AIGC tag");
    assert!(tag.contains("\"ProduceID\":\"video-1\""), "{tag}");
    let o = tool("exiftool", &["-b", "-Keys:AIGC", out.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("\"ProduceID\":\"video-1\""),
        "{}",
        stdout(&o)
    );

    // The label: on every frame of the opening 3 s and on none after; the plate darkens what
    // it covers, the rest of each frame changes only by the watermark and the encoding.
    let plate: Vec<usize> = r["visible"]["plate_box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert!(r["visible"]["text_height_ratio"].as_f64().unwrap() >= 0.05);
    let (fi, fo) = (luma_frames(&src), luma_frames(&out));
    assert_eq!(fi.len(), fo.len());
    let times: Vec<f64> = ti.iter().map(|t| t.parse::<f64>().unwrap()).collect();
    let t0 = times[0];
    for (n, (a, b)) in fi.iter().zip(&fo).enumerate() {
        let (mut inside, mut n_in, mut err, mut n_out) = (0f64, 0f64, 0f64, 0f64);
        for y in 0..H {
            for x in 0..W {
                let d = a[y * W + x] as f64 - b[y * W + x] as f64;
                if (plate[0]..plate[2]).contains(&x) && (plate[1]..plate[3]).contains(&y) {
                    inside += d.abs();
                    n_in += 1.0;
                } else {
                    err += d * d;
                    n_out += 1.0;
                }
            }
        }
        let t = times[n] - t0;
        let changed = inside / n_in;
        if t < 3.0 - 1e-6 {
            assert!(
                changed > 25.0,
                "frame {n} at {t:.2} s: label missing ({changed:.1})"
            );
        } else {
            assert!(
                changed < 8.0,
                "frame {n} at {t:.2} s: label where none belongs ({changed:.1})"
            );
        }
        let psnr = 10.0 * (255.0f64 * 255.0 / (err / n_out).max(1e-9)).log10();
        assert!(
            psnr > 34.0,
            "frame {n}: outside the label PSNR {psnr:.1} dB"
        );
    }

    // verify reads all three back.
    let v = verify_json(&out);
    assert_eq!(v["verdict"], "compliant", "{v}");
    assert_eq!(
        v["watermark"]["payload"],
        sha256_payload("video-1").as_str(),
        "{v}"
    );
    assert!(
        v["watermark"]["false_positive_probability"]
            .as_f64()
            .unwrap()
            < 1e-9
    );
    assert_eq!(v["visible"]["position"], "bottom-right", "{v}");
    // The soundtrack: its own watermark with the same payload, and the rhythm at the start.
    assert_eq!(
        v["sound"]["watermark"]["payload"],
        sha256_payload("video-1").as_str(),
        "{v}"
    );
    let rhythm = &v["sound"]["rhythm"]["occurrences"];
    assert_eq!(rhythm.as_array().unwrap().len(), 1, "{v}");
    assert!(rhythm[0]["start_seconds"].as_f64().unwrap() < 0.1, "{v}");
    let until = v["visible"]["until_seconds"].as_f64().unwrap();
    assert!((2.9..=3.6).contains(&until), "label shows until {until} s");

    // The unmarked source shows neither.
    let u = verify_json(&src);
    assert_eq!(u["verdict"], "not_found");
    assert_eq!(u["watermark"]["detected"], false, "{u}");
    assert_eq!(u["visible"]["detected"], false, "{u}");
    assert_eq!(u["sound"]["watermark"]["detected"], false, "{u}");
    assert_eq!(u["sound"]["rhythm"]["detected"], false, "{u}");

    // Re-encoded at CRF 28 with the metadata stripped, the watermark still links the file back.
    let att = dir.path().join("attacked.mp4");
    ffmpeg(&[
        "-i",
        out.to_str().unwrap(),
        "-c:v",
        "libx264",
        "-crf",
        "28",
        "-c:a",
        "copy",
        "-map_metadata",
        "-1",
        att.to_str().unwrap(),
    ]);
    let a = verify_json(&att);
    assert_eq!(a["verdict"], "not_found", "{a}");
    assert_eq!(
        a["watermark"]["payload"],
        sha256_payload("video-1").as_str(),
        "{a}"
    );
    assert!(
        finding_codes(&a).contains(&"watermark_only".to_string()),
        "{a}"
    );
}

#[test]
fn label_span_options_and_bad_input() {
    let dir = workdir();
    let src = source(dir.path());
    let out = dir.path().join("end.mkv");
    let mkv = dir.path().join("clip.mkv");
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-map",
        "0:v",
        "-map",
        "0:a",
        "-map",
        "0:s",
        "-c",
        "copy",
        "-c:s",
        "srt",
        mkv.to_str().unwrap(),
    ]);
    // At the end, in Matroska, for 2.5 s, with the watermark and the rhythm off: the sound
    // is then copied packet for packet.
    let r = mark_report(
        &mkv,
        &out,
        &[
            "--visible-at",
            "end",
            "--visible-seconds",
            "2.5",
            "--no-watermark",
            "--no-rhythm",
        ],
    );
    assert_eq!(r["watermark"], Value::Null);
    assert_eq!(r["sound"], Value::Null);
    assert_eq!(stream_hash(&mkv, "0:a"), stream_hash(&out, "0:a"));
    // The opening keeps its label (GB 45438 requires it); the end gets one too.
    let spans: Vec<Vec<f64>> =
        serde_json::from_value(r["visible"]["spans_seconds"].clone()).unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let near = |a: f64, b: f64| (a - b).abs() < 0.1;
    assert!(
        near(spans[0][0], 0.0) && near(spans[0][1], 2.5),
        "{spans:?}"
    );
    assert!(
        near(spans[1][0], SECONDS as f64 - 2.5) && near(spans[1][1], SECONDS as f64),
        "{spans:?}"
    );
    assert!(probe(&out)["format"]["tags"]["AIGC"].is_string());
    // A video without sound goes through the same way.
    let silent = dir.path().join("silent.mp4");
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-map",
        "0:v",
        "-c",
        "copy",
        silent.to_str().unwrap(),
    ]);
    let r = mark_report(&silent, &dir.path().join("silent-out.mp4"), &[]);
    assert_eq!(r["copied_streams"].as_array().unwrap().len(), 0, "{r}");
    assert!(r["watermark"]["payload"].is_string(), "{r}");
    // Under 2 s is refused before any file is touched.
    let o = aigc(&[
        "mark",
        src.to_str().unwrap(),
        "-o",
        "x.mp4",
        "--producer",
        PRODUCER,
        "--visible-seconds",
        "1.5",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--visible-seconds"), "{}", stderr(&o));
    // A truncated video fails alone with one line; the good one in the batch is written.
    let bad = dir.path().join("bad.mp4");
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let outdir = dir.path().join("outs");
    let o = aigc(&[
        "mark",
        bad.to_str().unwrap(),
        src.to_str().unwrap(),
        "--out-dir",
        outdir.to_str().unwrap(),
        "--producer",
        PRODUCER,
    ]);
    let line = the_one_error(&o);
    assert!(line.contains("bad.mp4"), "{line}");
    assert!(outdir.join("clip.mp4").exists());
    assert!(!outdir.join("bad.mp4").exists());
    assert_eq!(std::fs::read(&bad).unwrap(), bytes[..bytes.len() / 3]);
}

/// How many top-level boxes of type `kind` an MP4 holds.
fn top_level_count(path: &Path, kind: &str) -> usize {
    bmff_boxes(&std::fs::read(path).unwrap())
        .iter()
        .filter(|(t, _)| t == kind)
        .count()
}

/// The run failed (exit 1) with exactly one `error:` line, which is returned.
fn the_one_error(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

/// `ffmpeg -i SRC ARGS... OUT`: a test input derived from the source clip.
fn ffmpeg_from(src: &Path, args: &[&str], out: &Path) {
    let (src, out) = (src.to_str().unwrap(), out.to_str().unwrap());
    ffmpeg(&[&["-i", src][..], args, &[out]].concat());
}

/// ffprobe's CSV lines for `entries` of the first video stream (`extra` options first).
fn video_csv(path: &Path, extra: &[&str], entries: &str) -> String {
    let mut args = vec!["-select_streams", "v:0"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-show_entries", entries, "-of", "csv=p=0"]);
    stdout(&ffprobe(path, &args)).trim().to_string()
}

/// Presentation times of the first video stream's keyframes, as ffprobe reads the packets.
fn keyframe_times(path: &Path) -> Vec<String> {
    let csv = video_csv(path, &[], "packet=pts_time,flags");
    let mut times: Vec<String> = csv
        .lines()
        .filter(|l| l.split(',').nth(1).is_some_and(|f| f.starts_with('K')))
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    times.sort();
    times
}

/// Frames of the first video stream, as ffprobe counts them by decoding.
fn decoded_frames(path: &Path) -> String {
    video_csv(path, &["-count_frames"], "stream=nb_read_frames")
}

/// The first video stream's pixel format, as ffprobe reads it.
fn pix_fmt(path: &Path) -> String {
    video_csv(path, &[], "stream=pix_fmt")
}

/// A fragmented MP4 (as live recorders and CMAF packagers write it) is marked into a
/// fragmented MP4 that decodes to the last frame and carries the label where ffprobe reads it.
#[test]
fn a_fragmented_mp4_stays_fragmented() {
    let dir = workdir();
    let src = source(dir.path());
    let frag = dir.path().join("frag.mp4");
    // A keyframe every second, a fragment at each.
    let movflags = "frag_keyframe+empty_moov+default_base_moof";
    let args = ["-map", "0:v", "-map", "0:a", "-c:v", "libx264", "-g", "25"];
    ffmpeg_from(
        &src,
        &[&args[..], &["-c:a", "copy", "-movflags", movflags]].concat(),
        &frag,
    );
    let fragments = top_level_count(&frag, "moof");
    assert!(fragments >= 8, "the source has {fragments} fragments");
    let out = dir.path().join("frag-out.mp4");
    // A fixed ProduceID: the same payload, so the same output, every run.
    let r = mark_report(&frag, &out, &["--no-rhythm", "--produce-id", "video-1"]);
    assert_eq!(r["fragmented"], true, "{r}");
    // Fragmented the same way: the same keyframes, as many fragments, every frame's time.
    assert_eq!(keyframe_times(&out), keyframe_times(&frag));
    assert_eq!(video_times(&out), video_times(&frag));
    assert_eq!(top_level_count(&out, "moof"), fragments);
    assert_eq!(decoded_frames(&frag), decoded_frames(&out));
    let o = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            out.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "{}",
        stderr(&o)
    );
    assert!(probe(&out)["format"]["tags"]["AIGC"].is_string());
    let v = verify_json(&out);
    assert_eq!(v["verdict"], "compliant", "{v}");
    assert_eq!(v["watermark"]["payload"], r["watermark"]["payload"], "{v}");
}

/// Pictures in a format the pipeline does not work on directly are converted once to planar
/// YUV: RGB from QuickTime Animation to 4:4:4, raw NV12 to 4:2:0. Every frame is encoded and
/// carries both labels. Pictures with alpha are refused with one line naming the file.
#[test]
fn packed_and_rgb_pictures_are_converted_and_alpha_is_refused() {
    let dir = workdir();
    let src = source(dir.path());
    for (name, codec, pix, want) in [
        ("anim.mov", "qtrle", "rgb24", "yuv444p"),
        ("raw.mkv", "rawvideo", "nv12", "yuv420p"),
    ] {
        let input = dir.path().join(name);
        let args = ["-t", "4", "-map", "0:v", "-c:v", codec, "-pix_fmt", pix];
        ffmpeg_from(&src, &args, &input);
        assert_eq!(pix_fmt(&input), pix);
        let out = dir.path().join(format!("out-{name}"));
        let r = mark_report(&input, &out, &["--produce-id", "video-1"]);
        assert_eq!(r["converted_from"], pix, "{r}");
        assert_eq!(r["pixel_format"], want, "{r}");
        assert_eq!(pix_fmt(&out), want);
        assert_eq!(decoded_frames(&input), decoded_frames(&out));
        let v = verify_json(&out);
        assert_eq!(v["verdict"], "compliant", "{v}");
        assert_eq!(v["watermark"]["payload"], r["watermark"]["payload"], "{v}");
        assert_eq!(v["visible"]["detected"], true, "{v}");
    }
    let rgba = dir.path().join("alpha.mov");
    let args = ["-t", "2", "-map", "0:v", "-c:v", "png", "-pix_fmt", "rgba"];
    ffmpeg_from(&src, &args, &rgba);
    let o = aigc(&[
        "mark",
        rgba.to_str().unwrap(),
        "-o",
        dir.path().join("alpha-out.mov").to_str().unwrap(),
        "--producer",
        PRODUCER,
    ]);
    let line = the_one_error(&o);
    assert!(
        line.contains("alpha.mov") && line.contains("alpha channel"),
        "{line}"
    );
    assert!(!dir.path().join("alpha-out.mov").exists());
}

/// Matroska counts milliseconds: the marked soundtrack's packets, timed in samples, are
/// rescaled to it, so the sound lasts as long as the pictures and stays in step.
#[test]
fn matroska_keeps_the_marked_sound_in_time() {
    let dir = workdir();
    let src = source(dir.path());
    let mkv = dir.path().join("clip.mkv");
    ffmpeg_from(&src, &["-map", "0:v", "-map", "0:a", "-c", "copy"], &mkv);
    let out = dir.path().join("out.mkv");
    // The payload of video_gets_every_label_and_keeps_everything_else, which the sound of this
    // 10 s clip is known to carry: a random one is found on 10 s of sound only about half the
    // time (three periods of the mark).
    let r = mark_report(&mkv, &out, &["--produce-id", "video-1"]);
    assert_eq!(
        r["sound"]["watermark"]["payload"],
        sha256_payload("video-1").as_str(),
        "{r}"
    );
    let length = |p: &Path| {
        probe(p)["format"]["duration"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let (li, lo) = (length(&mkv), length(&out));
    assert!((li - lo).abs() < 0.1, "{li} s became {lo} s");
    let (ci, co) = (click_time(&mkv), click_time(&out));
    assert!(
        (ci - co).abs() < 0.03,
        "the click moved from {ci} to {co} s"
    );
    let v = verify_json(&out);
    assert_eq!(
        v["sound"]["watermark"]["payload"], r["sound"]["watermark"]["payload"],
        "{v}"
    );
}

/// The first video stream's size and side data, as ffprobe reads them.
fn video_stream(path: &Path) -> Value {
    let v = ffprobe_json(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height:stream_side_data=rotation",
        ],
    );
    v["streams"][0].clone()
}

fn rotation_of(path: &Path) -> Value {
    video_stream(path)["side_data_list"][0]["rotation"].clone()
}

/// Frame `n`'s luma as ffmpeg shows it (turned by the display matrix), with its size.
fn shown_frame(path: &Path, n: usize) -> (Vec<u8>, usize, usize) {
    let s = video_stream(path);
    let (w, h) = (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap());
    let turned = s["side_data_list"][0]["rotation"].as_i64().unwrap_or(0) % 180 != 0;
    let (w, h) = if turned { (h, w) } else { (w, h) };
    let o = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-vf",
            &format!("select=eq(n\\,{n})"),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), (w * h) as usize);
    (o.stdout, w as usize, h as usize)
}

#[test]
fn a_turned_video_keeps_its_turn_and_shows_the_label_upright() {
    let dir = workdir();
    let src = source(dir.path());
    // Stored 480x270, shown turned a quarter (270x480), as phones write portrait video.
    let short = dir.path().join("short.mp4");
    ffmpeg(&[
        "-i",
        src.to_str().unwrap(),
        "-t",
        "3",
        "-map",
        "0:v",
        "-map",
        "0:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-c:a",
        "copy",
        short.to_str().unwrap(),
    ]);
    // (This ffmpeg sets the display matrix from the tag on a stream copy only.)
    let rot = dir.path().join("portrait.mp4");
    ffmpeg(&[
        "-i",
        short.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        rot.to_str().unwrap(),
    ]);
    assert_eq!(rotation_of(&rot), 90, "the input is turned");
    let out = dir.path().join("portrait-out.mp4");
    let r = mark_report(&rot, &out, &[]);
    assert_eq!(r["rotation"]["degrees"], 90, "{r}");
    assert_eq!(r["rotation"]["kept"], true, "{r}");
    assert_eq!(rotation_of(&out), 90, "the output is turned the same way");
    // As shown, the label sits in the bottom-right corner of the upright picture: the plate
    // (in shown coordinates) is dark, and the rest of the frame is the input's.
    let plate: Vec<usize> = r["visible"]["plate_box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (a, w, h) = shown_frame(&rot, 10);
    let (b, w2, h2) = shown_frame(&out, 10);
    assert_eq!((w, h, w2, h2), (H, W, H, W));
    assert!(
        plate[2] <= w && plate[3] <= h && plate[2] > w / 2 && plate[3] > h / 2,
        "{plate:?}"
    );
    let (mut inside, mut n_in, mut outside, mut n_out) = (0f64, 0f64, 0f64, 0f64);
    for y in 0..h {
        for x in 0..w {
            let d = (a[y * w + x] as f64 - b[y * w + x] as f64).abs();
            if (plate[0]..plate[2]).contains(&x) && (plate[1]..plate[3]).contains(&y) {
                inside += d;
                n_in += 1.0;
            } else {
                outside += d;
                n_out += 1.0;
            }
        }
    }
    assert!(
        inside / n_in > 25.0,
        "no label where it is shown ({})",
        inside / n_in
    );
    assert!(
        outside / n_out < 4.0,
        "changed outside the label ({})",
        outside / n_out
    );
    // verify reads the label upright, in the corner where it is shown.
    let v = verify_json(&out);
    assert_eq!(v["verdict"], "compliant", "{v}");
    assert_eq!(v["visible"]["position"], "bottom-right", "{v}");
    assert!(
        v["visible"]["until_seconds"].as_f64().unwrap() >= 2.9,
        "{v}"
    );
}
