//! Audio and video containers: the label is seen by ffprobe (or exiftool where ffprobe cannot),
//! labels written by ffmpeg and mutagen are read and replaced, and nothing else changes: the
//! packet checksums are identical and the output decodes without a message.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn av_samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/samples-av")
}

const SAMPLES: [&str; 15] = [
    "tone.mp3",
    "tone-v23.mp3",
    "tone.wav",
    "tone.flac",
    "tone.ogg",
    "tone.opus",
    "tone.m4a",
    "clip.mp4",
    "clip-moov-last.mp4",
    "clip-frag.mp4",
    "photo.mov",
    "clip.mkv",
    "clip.webm",
    "clip.avi",
    "tone.wav",
];

fn av_workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(av_samples()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

/// The AIGC tag as an independent tool reads it.
fn independent_label(path: &Path) -> String {
    let p = path.to_str().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let out = if name.ends_with(".wav") {
        tool("exiftool", &["-u", "-b", "-RIFF:Unknown_AIGC", p])
    } else {
        // Ogg carries the label as a stream comment, the other containers as a format tag.
        let entry = if name.ends_with(".ogg") || name.ends_with(".opus") {
            "stream_tags=AIGC"
        } else {
            "format_tags=AIGC"
        };
        ffprobe(path, &["-show_entries", entry, "-of", "default=nw=1:nk=1"])
    };
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn streamhash(path: &Path) -> String {
    let o = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-map",
            "0",
            "-c",
            "copy",
            "-f",
            "streamhash",
            "-",
        ],
    );
    assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
    stdout(&o)
}

fn decode_messages(path: &Path) -> String {
    let o = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    stderr(&o)
}

/// `ffmpeg -i input -c copy EXTRA... output`, which must succeed.
fn ffmpeg_copy(input: &Path, output: &Path, extra: &[&str]) {
    let mut args = vec![
        "-v",
        "error",
        "-y",
        "-i",
        input.to_str().unwrap(),
        "-map",
        "0",
        "-c",
        "copy",
    ];
    args.extend_from_slice(extra);
    args.push(output.to_str().unwrap());
    let o = tool("ffmpeg", &args);
    assert!(
        o.status.success(),
        "ffmpeg {extra:?} on {}: {}",
        input.display(),
        stderr(&o)
    );
}

/// ogginfo finds nothing to warn about.
fn assert_ogginfo_clean(path: &Path) {
    let check = tool("ogginfo", &[path.to_str().unwrap()]);
    let report = (stdout(&check) + &stderr(&check)).to_lowercase();
    assert!(
        !report.contains("warning") && !report.contains("error"),
        "{}: {report}",
        path.display()
    );
}

#[test]
fn independent_tools_read_the_exact_label_and_media_is_untouched() {
    let dir = av_workdir();
    for name in SAMPLES {
        let input = dir.path().join(name);
        let out = dir.path().join(format!("m-{name}"));
        mark(&input, &out, "av-1");
        assert_eq!(independent_label(&out), label_json("av-1"), "{name}");
        let v = verify_json(&out);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(
            v["metadata"]["carriers"].as_array().unwrap().len(),
            1,
            "{name}: {v}"
        );
        assert_eq!(
            streamhash(&input),
            streamhash(&out),
            "{name}: packets changed"
        );
        assert_eq!(
            decode_messages(&out),
            "",
            "{name}: decoding the output complains"
        );
    }
}

#[test]
fn other_tags_survive() {
    let dir = av_workdir();
    for name in [
        "tone.mp3",
        "tone-v23.mp3",
        "tone.flac",
        "tone.m4a",
        "clip.mp4",
        "clip.mkv",
        "clip.avi",
    ] {
        let input = dir.path().join(name);
        let out = dir.path().join(format!("m-{name}"));
        mark(&input, &out, "keep");
        let o = ffprobe(
            &out,
            &[
                "-show_entries",
                "format_tags=title",
                "-of",
                "default=nw=1:nk=1",
            ],
        );
        assert!(
            stdout(&o).trim().starts_with("Test "),
            "{name}: title lost: {}",
            stdout(&o)
        );
    }
}

#[test]
fn marking_twice_leaves_one_label_and_a_stable_size() {
    let dir = av_workdir();
    for name in SAMPLES {
        let once = dir.path().join(format!("1-{name}"));
        let twice = dir.path().join(format!("2-{name}"));
        mark(&dir.path().join(name), &once, "id-one");
        mark(&once, &twice, "id-two");
        let v = verify_json(&twice);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(v["metadata"]["label"]["ProduceID"], "id-two", "{name}");
        assert_eq!(
            std::fs::metadata(&once).unwrap().len(),
            std::fs::metadata(&twice).unwrap().len(),
            "{name}"
        );
        assert_eq!(
            streamhash(&dir.path().join(name)),
            streamhash(&twice),
            "{name}"
        );
    }
}

#[test]
fn propagate_after_mark_keeps_both_sides() {
    let dir = av_workdir();
    for name in [
        "tone.mp3",
        "tone.ogg",
        "clip.mp4",
        "clip.webm",
        "clip.avi",
        "tone.wav",
        "tone.flac",
    ] {
        let marked = dir.path().join(format!("m-{name}"));
        let shared = dir.path().join(format!("p-{name}"));
        mark(&dir.path().join(name), &marked, "gen-9");
        let o = aigc(&[
            "propagate",
            marked.to_str().unwrap(),
            "-o",
            shared.to_str().unwrap(),
            "--propagator",
            PLATFORM,
            "--propagate-id",
            "post-1",
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let v = verify_json(&shared);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(v["metadata"]["label"]["ProduceID"], "gen-9");
        assert_eq!(v["metadata"]["label"]["PropagateID"], "post-1");
        assert_eq!(
            v["metadata"]["carriers"].as_array().unwrap().len(),
            1,
            "{name}"
        );
    }
}

#[test]
fn labels_written_by_ffmpeg_are_read_and_replaced() {
    let dir = av_workdir();
    let json = label_json("by-ffmpeg");
    for (name, extra) in [
        ("clip.mp4", vec!["-movflags", "use_metadata_tags"]),
        ("photo.mov", vec!["-movflags", "use_metadata_tags"]),
        ("clip.mkv", vec![]),
        ("tone.mp3", vec![]),
        ("tone.flac", vec![]),
        ("tone.ogg", vec![]),
        // Not AVI: ffmpeg's AVI muxer writes only the INFO tags it knows and drops AIGC.
    ] {
        let out = dir.path().join(format!("ff-{name}"));
        let meta = format!("AIGC={json}");
        let mut args = vec!["-metadata", meta.as_str()];
        if name.ends_with(".ogg") {
            args.extend(["-metadata:s:a:0", meta.as_str()]);
        }
        args.extend(extra.iter().copied());
        ffmpeg_copy(&dir.path().join(name), &out, &args);
        let v = verify_json(&out);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(v["metadata"]["label"]["ProduceID"], "by-ffmpeg", "{name}");
        let again = dir.path().join(format!("ff-m-{name}"));
        mark(&out, &again, "ours");
        let v = verify_json(&again);
        assert_eq!(
            (
                v["verdict"].as_str(),
                v["metadata"]["carriers"].as_array().unwrap().len()
            ),
            (Some("compliant"), 1),
            "{name}: {v}"
        );
        assert_eq!(v["metadata"]["label"]["ProduceID"], "ours");
    }
}

#[test]
fn labels_written_by_mutagen_are_read_and_replaced() {
    let dir = av_workdir();
    let json = label_json("by-mutagen");
    let script = r#"
import sys, mutagen
from mutagen.id3 import ID3, TXXX
from mutagen.mp4 import MP4, MP4FreeForm
path, kind, text = sys.argv[1:4]
if kind == "id3":
    t = ID3(path); t.add(TXXX(encoding=1, desc="AIGC", text=[text])); t.save(v2_version=3)
elif kind == "mp4":
    m = MP4(path); m["----:com.apple.iTunes:AIGC"] = [MP4FreeForm(text.encode())]; m.save()
else:
    f = mutagen.File(path); f["AIGC"] = [text]; f.save()
"#;
    for (name, kind, carrier) in [
        ("tone.mp3", "id3", "mp3:ID3v2:TXXX:AIGC"),
        ("tone.flac", "vc", "flac:VORBIS_COMMENT:AIGC"),
        ("tone.ogg", "vc", "ogg:comment:AIGC"),
        ("tone.opus", "vc", "ogg:comment:AIGC"),
        ("tone.m4a", "mp4", "mp4:udta/meta"),
    ] {
        let f = dir.path().join(name);
        let o = tool("python3", &["-c", script, f.to_str().unwrap(), kind, &json]);
        assert!(o.status.success(), "mutagen on {name}: {}", stderr(&o));
        let v = verify_json(&f);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(
            v["metadata"]["carriers"],
            serde_json::json!([carrier]),
            "{name}"
        );
        let out = dir.path().join(format!("m-{name}"));
        mark(&f, &out, "ours");
        let v = verify_json(&out);
        assert_eq!(
            v["metadata"]["carriers"].as_array().unwrap().len(),
            1,
            "{name}: {v}"
        );
        assert_eq!(v["metadata"]["label"]["ProduceID"], "ours", "{name}");
        assert_eq!(streamhash(&f), streamhash(&out), "{name}");
    }
}

#[test]
fn ogg_pages_are_renumbered_when_the_header_grows() {
    // A 70 kB ReservedCode1 pushes the comment header onto more pages than before, so every
    // later page must be renumbered with a fresh CRC.
    let dir = av_workdir();
    let big = "S".repeat(70_000);
    for name in ["tone.ogg", "tone.opus"] {
        let out = dir.path().join(format!("big-{name}"));
        // The metadata path alone: the stream must stay bit-identical.
        let o = aigc(&[
            "mark",
            "--no-watermark",
            "--no-rhythm",
            dir.path().join(name).to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--producer",
            PRODUCER,
            "--reserved-code1",
            &big,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_ogginfo_clean(&out);
        assert_eq!(
            streamhash(&dir.path().join(name)),
            streamhash(&out),
            "{name}"
        );
        assert_eq!(decode_messages(&out), "");
        assert_eq!(
            verify_json(&out)["metadata"]["label"]["ReservedCode1"]
                .as_str()
                .unwrap()
                .len(),
            70_000
        );
    }
}

#[test]
fn fragmented_mp4_with_absolute_base_offsets_is_shifted() {
    // Without default_base_moof, ffmpeg writes absolute base-data-offsets into every tfhd.
    let dir = av_workdir();
    let frag = dir.path().join("abs.mp4");
    ffmpeg_copy(
        &dir.path().join("clip.mp4"),
        &frag,
        &["-movflags", "frag_keyframe+empty_moov"],
    );
    let out = dir.path().join("abs-m.mp4");
    mark(&frag, &out, "frag");
    assert_eq!(streamhash(&frag), streamhash(&out));
    assert_eq!(decode_messages(&out), "");
    assert_eq!(independent_label(&out), label_json("frag"));
}

#[test]
fn matroska_seekhead_crc_stays_valid() {
    let dir = av_workdir();
    let out = dir.path().join("m.mkv");
    mark(&dir.path().join("clip.mkv"), &out, "crc");
    // SeekHead CRC-32 checked with Python's zlib, apart from our code.
    let script = r#"
import sys, zlib
d = open(sys.argv[1], 'rb').read()
def vint(p, keep=False):
    f = d[p]; n = 1; m = 0x80
    while not f & m: n += 1; m >>= 1
    v = f if keep else f & (m - 1)
    for i in range(1, n): v = (v << 8) | d[p + i]
    return v, n
p = d.find(bytes([0x11, 0x4D, 0x9B, 0x74]))
size, n = vint(p + 4)
body = d[p + 4 + n:p + 4 + n + size]
assert body[0] == 0xBF and body[1] == 0x84, "no CRC-32 element first"
print(int.from_bytes(body[2:6], 'little') == zlib.crc32(body[6:]))
"#;
    let o = tool("python3", &["-c", script, out.to_str().unwrap()]);
    assert_eq!(stdout(&o).trim(), "True", "{}", stderr(&o));
    let info = tool("mkvinfo", &[out.to_str().unwrap()]);
    assert!(
        info.status.success() && !stdout(&info).to_lowercase().contains("error"),
        "{}",
        stdout(&info)
    );
}

#[test]
fn damaged_av_files_fail_alone_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    for name in SAMPLES {
        let b = std::fs::read(av_samples().join(name)).unwrap();
        for (tag, bytes) in [
            ("cut", b[..b.len() / 3].to_vec()),
            ("head", b[..40.min(b.len())].to_vec()),
        ] {
            let p = dir.path().join(format!("{tag}-{name}"));
            std::fs::write(&p, bytes).unwrap();
            bad.push(p);
        }
        // A size field blown up near the start.
        let mut big = b.clone();
        for i in [4usize, 8, 16, 28, 40, 44] {
            if i + 4 <= big.len() {
                big[i..i + 4].copy_from_slice(&[0x7F, 0xFF, 0xFF, 0xF0]);
            }
        }
        let p = dir.path().join(format!("size-{name}"));
        std::fs::write(&p, big).unwrap();
        bad.push(p);
    }
    let out = dir.path().join("out");
    let mut args: Vec<&str> = vec![
        "mark",
        "--producer",
        PRODUCER,
        "--out-dir",
        out.to_str().unwrap(),
    ];
    args.extend(bad.iter().map(|p| p.to_str().unwrap()));
    let o = aigc(&args);
    let err = stderr(&o);
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    let mut verify = vec!["verify", "--json"];
    verify.extend(bad.iter().map(|p| p.to_str().unwrap()));
    let o = aigc(&verify);
    assert!(
        !stderr(&o).contains("panicked") && !stderr(&o).contains("internal error"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o).lines().count(), bad.len());
}

#[test]
fn media_that_has_to_move_moves_by_whole_pages() {
    // Page-aligned moves keep the kernel copy fast and leave room for the next relabel.
    let dir = av_workdir();
    for name in ["clip.mp4", "tone.mp3"] {
        let input = dir.path().join(name);
        let out = dir.path().join(format!("m-{name}"));
        mark(&input, &out, "page");
        let grown =
            std::fs::metadata(&out).unwrap().len() - std::fs::metadata(&input).unwrap().len();
        assert_eq!(grown % 4096, 0, "{name} grew by {grown}");
        assert_eq!(streamhash(&input), streamhash(&out));
    }
}

#[test]
fn ogg_audio_sharing_the_last_header_page_is_kept() {
    // Some real encoders start the audio on the page where the Vorbis setup header ends. Python
    // rebuilds tone.ogg that way (its own Ogg paging and CRC), then we label it.
    let dir = av_workdir();
    let shared = dir.path().join("shared.ogg");
    let script = r#"
import sys, struct
def crc(data):
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    c = 0
    for b in data:
        c = ((c << 8) & 0xFFFFFFFF) ^ table[((c >> 24) ^ b) & 0xFF]
    return c
d = open(sys.argv[1], 'rb').read()
pages, p = [], 0
while p < len(d):
    n = d[p + 26]
    lace = list(d[p + 27:p + 27 + n])
    body = d[p + 27 + n:p + 27 + n + sum(lace)]
    pages.append(dict(flags=d[p + 5], gran=d[p + 6:p + 14], serial=d[p + 14:p + 18], lace=lace, body=body))
    p += 27 + n + sum(lace)
# pages[0]: id header; pages[1]: comment + setup (ffmpeg); pages[2]: first audio page.
a, b = pages[1], pages[2]
assert b['flags'] & 1 == 0 and len(a['lace']) + len(b['lace']) <= 255
merged = dict(flags=a['flags'], gran=b['gran'], serial=a['serial'], lace=a['lace'] + b['lace'], body=a['body'] + b['body'])
pages = pages[:1] + [merged] + pages[3:]
out = b''
for seq, pg in enumerate(pages):
    h = b'OggS\0' + bytes([pg['flags']]) + pg['gran'] + pg['serial'] + struct.pack('<I', seq) + b'\0\0\0\0' + bytes([len(pg['lace'])]) + bytes(pg['lace'])
    raw = h + pg['body']
    raw = raw[:22] + struct.pack('<I', crc(raw)) + raw[26:]
    out += raw
open(sys.argv[2], 'wb').write(out)
"#;
    let o = tool(
        "python3",
        &[
            "-c",
            script,
            dir.path().join("tone.ogg").to_str().unwrap(),
            shared.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        decode_messages(&shared),
        "",
        "the constructed file is not valid Ogg"
    );
    let out = dir.path().join("m-shared.ogg");
    mark(&shared, &out, "shared");
    assert_eq!(independent_label(&out), label_json("shared"));
    assert_eq!(streamhash(&shared), streamhash(&out));
    assert_eq!(decode_messages(&out), "");
    assert_ogginfo_clean(&out);
}

#[test]
fn rf64_wav_and_mp3_id3v1_tails_are_kept() {
    let dir = av_workdir();
    // RF64 (what WAV files over 4 GB use), forced on a small file by ffmpeg.
    let rf64 = dir.path().join("rf64.wav");
    ffmpeg_copy(&dir.path().join("tone.wav"), &rf64, &["-rf64", "always"]);
    assert_eq!(&std::fs::read(&rf64).unwrap()[..4], b"RF64");
    let out = dir.path().join("m-rf64.wav");
    mark(&rf64, &out, "rf64");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..4], b"RF64");
    let riff_size = u64::from_le_bytes(bytes[20..28].try_into().unwrap());
    assert_eq!(
        riff_size + 8,
        bytes.len() as u64,
        "ds64 riffSize not updated"
    );
    assert_eq!(independent_label(&out), label_json("rf64"));
    assert_eq!(streamhash(&rf64), streamhash(&out));
    // MP3 with an ID3v1 tag at the end: still there, unchanged.
    let v1 = dir.path().join("v1.mp3");
    ffmpeg_copy(
        &dir.path().join("tone.mp3"),
        &v1,
        &["-write_id3v1", "1", "-metadata", "title=Tail title"],
    );
    let out = dir.path().join("m-v1.mp3");
    mark(&v1, &out, "v1");
    let (a, b) = (std::fs::read(&v1).unwrap(), std::fs::read(&out).unwrap());
    assert_eq!(&b[b.len() - 128..b.len() - 125], b"TAG");
    assert_eq!(a[a.len() - 128..], b[b.len() - 128..], "ID3v1 tag changed");
    assert_eq!(independent_label(&out), label_json("v1"));
}
