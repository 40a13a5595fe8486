//! Helpers for the CLI tests: running the binary, the independent tools (exiftool, Pillow,
//! heif-convert), and small container walkers written here, apart from the code under test, to
//! check which bytes a write changed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PRODUCER: &str = "001191110102MACQD9K64010000";
pub const PLATFORM: &str = "001191440300708461136T1XGW3";

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/samples")
}

pub fn exiftool_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/exiftool-tc260.config")
}

/// A temporary folder holding copies of the sample files.
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(samples()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

pub fn aigc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aigc-label"))
        .args(args)
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `mark` with the metadata layer alone: the byte-level tests compare everything else.
pub fn mark(input: &Path, output: &Path, produce_id: &str) -> Output {
    let o = aigc(&[
        "mark",
        "--no-visible",
        "--no-watermark",
        "--no-rhythm",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--producer",
        PRODUCER,
        "--produce-id",
        produce_id,
    ]);
    assert!(
        o.status.success(),
        "mark {} failed: {}",
        input.display(),
        stderr(&o)
    );
    o
}

/// `mark --json INPUT -o OUTPUT` with extra flags; must succeed; the report line, parsed.
pub fn mark_report(input: &Path, output: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "mark",
        "--json",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--producer",
        PRODUCER,
    ];
    args.extend_from_slice(extra);
    let o = aigc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

/// The `code` of every metadata finding in a `verify --json` report.
pub fn finding_codes(v: &serde_json::Value) -> Vec<String> {
    v["metadata"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

/// `verify --json` on one file, parsed.
pub fn verify_json(path: &Path) -> serde_json::Value {
    let o = aigc(&["verify", "--json", path.to_str().unwrap()]);
    let line = stdout(&o);
    serde_json::from_str(
        line.lines()
            .next()
            .unwrap_or_else(|| panic!("no output: {}", stderr(&o))),
    )
    .unwrap()
}

/// Runs the ffmpeg CLI quietly, overwriting its output; any failure fails the test with its message.
pub fn ffmpeg(args: &[&str]) {
    let o = tool("ffmpeg", &[&["-v", "error", "-y"][..], args].concat());
    assert!(o.status.success(), "ffmpeg {args:?}: {}", stderr(&o));
}

/// `ffprobe -v error ARGS PATH`: the independent reading of a media file.
pub fn ffprobe(path: &Path, args: &[&str]) -> Output {
    let path = path.to_str().unwrap();
    tool("ffprobe", &[&["-v", "error"][..], args, &[path]].concat())
}

/// [`ffprobe`] with JSON output, parsed.
pub fn ffprobe_json(path: &Path, args: &[&str]) -> serde_json::Value {
    let o = ffprobe(path, &[args, &["-of", "json"][..]].concat());
    assert!(
        o.status.success(),
        "ffprobe {}: {}",
        path.display(),
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Runs an external tool that `.ci/run` installs; a missing tool fails the test loudly.
pub fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is needed for this test ({e}); run .ci/run, which installs it")
        })
}

/// The label as exiftool reads it (XMP-TC260:AIGC, given our namespace config).
pub fn exiftool_label(path: &Path) -> String {
    let o = tool(
        "exiftool",
        &[
            "-config",
            exiftool_config().to_str().unwrap(),
            "-s3",
            "-XMP-TC260:AIGC",
            path.to_str().unwrap(),
        ],
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn label_json(produce_id: &str) -> String {
    format!(
        r#"{{"Label":"1","ContentProducer":"{PRODUCER}","ProduceID":"{produce_id}","ReservedCode1":"","ContentPropagator":"","PropagateID":"","ReservedCode2":""}}"#
    )
}

/// Decoded pixels of every frame, through the `image` crate (or heif-convert for HEIF/AVIF).
pub fn pixels(path: &Path) -> Vec<Vec<u8>> {
    let ext = path.extension().unwrap().to_str().unwrap();
    if ext == "heic" || ext == "avif" {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("decoded.png");
        let o = tool(
            "heif-convert",
            &[path.to_str().unwrap(), png.to_str().unwrap()],
        );
        assert!(
            o.status.success(),
            "heif-convert cannot decode {}: {}",
            path.display(),
            stderr(&o)
        );
        return vec![image::open(&png).unwrap().into_bytes()];
    }
    if ext == "gif" {
        use image::AnimationDecoder;
        let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let dec = image::codecs::gif::GifDecoder::new(f).unwrap();
        return dec
            .into_frames()
            .map(|f| f.unwrap().into_buffer().into_raw())
            .collect();
    }
    vec![image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_bytes()]
}

/// JPEG bytes with APP1 XMP segments removed (header segments walked up to SOS).
pub fn jpeg_without_xmp(b: &[u8]) -> Vec<u8> {
    let mut out = b[..2].to_vec();
    let mut p = 2;
    while b[p + 1] != 0xDA {
        let len = u16::from_be_bytes([b[p + 2], b[p + 3]]) as usize;
        let seg = &b[p..p + 2 + len];
        if !(seg[1] == 0xE1 && seg[4..].starts_with(b"http://ns.adobe.com/xap/1.0/\0")) {
            out.extend_from_slice(seg);
        }
        p += 2 + len;
    }
    out.extend_from_slice(&b[p..]);
    out
}

/// PNG chunks as (type, whole chunk bytes), without the XMP iTXt chunk.
pub fn png_chunks_without_xmp(b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = 8;
    while p < b.len() {
        let len = u32::from_be_bytes(b[p..p + 4].try_into().unwrap()) as usize;
        let chunk = &b[p..p + 12 + len];
        if !(&chunk[4..8] == b"iTXt" && chunk[8..].starts_with(b"XML:com.adobe.xmp\0")) {
            out.push(chunk.to_vec());
        }
        p += 12 + len;
    }
    out
}

/// RIFF chunks of a WebP as (fourcc, data), without VP8X and XMP.
pub fn webp_chunks_without_xmp(b: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut p = 12;
    while p + 8 <= b.len() {
        let len = u32::from_le_bytes(b[p + 4..p + 8].try_into().unwrap()) as usize;
        let cc = b[p..p + 4].to_vec();
        if cc != b"VP8X" && cc != b"XMP " {
            out.push((cc, b[p + 8..p + 8 + len].to_vec()));
        }
        p += 8 + len + (len & 1);
    }
    out
}

/// GIF bytes with the XMP application extension cut out.
pub fn gif_without_xmp(b: &[u8]) -> Vec<u8> {
    let start = b
        .windows(14)
        .position(|w| w == b"\x21\xFF\x0BXMP DataXMP")
        .expect("an XMP extension");
    let trailer_end = b[start..]
        .windows(3)
        .position(|w| w == [0x01, 0x00, 0x00])
        .unwrap()
        + start
        + 3;
    [&b[..start], &b[trailer_end..]].concat()
}

/// Top-level ISOBMFF boxes as (type, whole box bytes).
pub fn bmff_boxes(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut p = 0;
    while p + 8 <= b.len() {
        let size = u32::from_be_bytes(b[p..p + 4].try_into().unwrap()) as usize;
        out.push((
            String::from_utf8_lossy(&b[p + 4..p + 8]).into_owned(),
            b[p..p + size].to_vec(),
        ));
        p += size;
    }
    out
}
