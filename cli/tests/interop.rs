//! Labels written by other tools are read, replaced (never duplicated) and the rest of their
//! metadata kept.

mod common;
use common::*;
use std::path::Path;

fn exiftool_write(path: &Path, args: &[&str]) {
    let cfg = exiftool_config();
    let mut all = vec![
        "-config",
        cfg.to_str().unwrap(),
        "-overwrite_original",
        "-q",
    ];
    all.extend_from_slice(args);
    all.push(path.to_str().unwrap());
    let o = tool("exiftool", &all);
    assert!(o.status.success(), "exiftool {args:?}: {}", stderr(&o));
}

#[test]
fn labels_written_by_exiftool_are_read_in_every_format() {
    let dir = workdir();
    let json = label_json("by-exiftool");
    for name in [
        "photo.jpg",
        "photo.png",
        "lossy.webp",
        "photo.tif",
        "anim.gif",
        "photo.heic",
        "photo.avif",
    ] {
        let f = dir.path().join(name);
        exiftool_write(&f, &[&format!("-XMP-TC260:AIGC={json}")]);
        let v = verify_json(&f);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(v["metadata"]["label"]["ProduceID"], "by-exiftool", "{name}");
    }
}

#[test]
fn marking_merges_into_existing_xmp_and_keeps_other_properties() {
    let dir = workdir();
    for name in [
        "photo.jpg",
        "photo.png",
        "lossy.webp",
        "photo.tif",
        "anim.gif",
        "photo.heic",
    ] {
        let f = dir.path().join(name);
        exiftool_write(
            &f,
            &[
                "-XMP-dc:Title=Keep this title",
                "-XMP-dc:Creator=Studio 7",
                &format!("-XMP-TC260:AIGC={}", label_json("old")),
            ],
        );
        let out = dir.path().join(format!("m-{name}"));
        mark(&f, &out, "new-id");
        let o = tool(
            "exiftool",
            &[
                "-config",
                exiftool_config().to_str().unwrap(),
                "-s3",
                "-XMP-dc:Title",
                "-XMP-dc:Creator",
                "-XMP-TC260:AIGC",
                out.to_str().unwrap(),
            ],
        );
        let s = stdout(&o);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines,
            ["Keep this title", "Studio 7", label_json("new-id").as_str()],
            "{name}"
        );
        let v = verify_json(&out);
        assert_eq!(
            v["metadata"]["carriers"].as_array().unwrap().len(),
            1,
            "{name}: {v}"
        );
    }
}

#[test]
fn exif_user_comment_labels_are_read_and_replaced_not_duplicated() {
    let dir = workdir();
    for name in ["photo.jpg", "photo.tif", "photo.png"] {
        let f = dir.path().join(name);
        let wrapped = format!("{{\"AIGC\":{}}}", label_json("in-exif"));
        exiftool_write(&f, &[&format!("-EXIF:UserComment={wrapped}")]);
        let v = verify_json(&f);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert!(
            v["metadata"]["carriers"][0]
                .as_str()
                .unwrap()
                .ends_with("UserComment"),
            "{name}: {v}"
        );
        assert_eq!(v["metadata"]["label"]["ProduceID"], "in-exif");

        let out = dir.path().join(format!("m-{name}"));
        mark(&f, &out, "replaced");
        let v = verify_json(&out);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(
            v["metadata"]["carriers"].as_array().unwrap().len(),
            1,
            "{name}: {v}"
        );
        assert_eq!(v["metadata"]["label"]["ProduceID"], "replaced");
        // Other EXIF survives: exiftool still reads the Exif IFD.
        let o = tool(
            "exiftool",
            &["-s3", "-EXIF:UserComment", out.to_str().unwrap()],
        );
        assert!(
            !stdout(&o).contains("in-exif"),
            "{name}: old comment still there"
        );
    }
}

#[test]
fn pillow_text_chunks_are_read_and_replaced() {
    let dir = workdir();
    let script = r#"
import sys
from PIL import Image, PngImagePlugin
src, dst, kind, text = sys.argv[1:5]
info = PngImagePlugin.PngInfo()
if kind == "tEXt":
    info.add_text("AIGC", text)
elif kind == "zTXt":
    info.add_text("AIGC", text, zip=True)
else:
    info.add_itxt("AIGC", text)
Image.open(src).save(dst, pnginfo=info)
"#;
    for (kind, form) in [("tEXt", "wrapped"), ("zTXt", "bare"), ("iTXt", "bare")] {
        let json = if form == "wrapped" {
            format!("{{\"AIGC\":{}}}", label_json("pil"))
        } else {
            label_json("pil")
        };
        let src = dir.path().join("photo.png");
        let f = dir.path().join(format!("pil-{kind}.png"));
        let o = tool(
            "python3",
            &[
                "-c",
                script,
                src.to_str().unwrap(),
                f.to_str().unwrap(),
                kind,
                &json,
            ],
        );
        assert!(o.status.success(), "Pillow: {}", stderr(&o));
        let v = verify_json(&f);
        assert_eq!(v["verdict"], "compliant", "{kind}: {v}");
        assert_eq!(v["metadata"]["carriers"][0], format!("png:{kind}:AIGC"));

        let out = dir.path().join(format!("m-{kind}.png"));
        mark(&f, &out, "ours");
        let v = verify_json(&out);
        assert_eq!(
            v["metadata"]["carriers"],
            serde_json::json!(["png:iTXt:XMP"]),
            "{kind}: {v}"
        );
        // Pillow still opens it and sees no AIGC text chunk.
        let check = "import sys\nfrom PIL import Image\nim = Image.open(sys.argv[1]); im.load()\nprint('AIGC' in im.text, 'XML:com.adobe.xmp' in im.text)";
        let o = tool("python3", &["-c", check, out.to_str().unwrap()]);
        assert_eq!(stdout(&o).trim(), "False True", "{kind}: {}", stderr(&o));
    }
}
