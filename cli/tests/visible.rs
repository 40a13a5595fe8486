//! The visible label through the CLI, checked with ImageMagick and exiftool: it lands in the
//! displayed corner, only the plate's pixels change, pixel types, quality class and metadata are
//! kept, every animation frame is labeled, and `verify` finds it after recompression and
//! halving but never in unlabeled images.

mod common;
use common::*;
use std::path::Path;

fn mark_json(input: &Path, output: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--no-watermark"];
    args.extend_from_slice(extra);
    mark_report(input, output, &args)
}

fn magick(args: &[&str]) -> String {
    let o = tool("convert", args);
    assert!(o.status.success(), "convert {args:?}: {}", stderr(&o));
    stdout(&o)
}

fn identify(path: &Path, format: &str) -> String {
    let o = tool("identify", &["-format", format, path.to_str().unwrap()]);
    stdout(&o).trim().to_string()
}

#[test]
fn only_the_plate_changes_and_verify_reports_it() {
    let dir = workdir();
    let input = dir.path().join("photo.png");
    let out = dir.path().join("out.png");
    let j = mark_json(&input, &out, &["--position", "top-left"]);
    let plate: Vec<u32> = serde_json::from_value(j["visible"]["plate_box"].clone()).unwrap();
    let (a, b) = (
        image::open(&input).unwrap().to_rgba8(),
        image::open(&out).unwrap().to_rgba8(),
    );
    assert_eq!(a.dimensions(), b.dimensions());
    let mut changed_inside = 0;
    for (x, y, p) in a.enumerate_pixels() {
        let inside = x >= plate[0] && x < plate[2] && y >= plate[1] && y < plate[3];
        if inside {
            changed_inside += (p != b.get_pixel(x, y)) as u32;
        } else {
            assert_eq!(
                p,
                b.get_pixel(x, y),
                "pixel ({x},{y}) outside the plate changed"
            );
        }
    }
    assert!(changed_inside > (plate[2] - plate[0]) * (plate[3] - plate[1]) / 2);
    assert!(
        plate[0] < a.width() / 4 && plate[1] < a.height() / 4,
        "{plate:?} is not top-left"
    );
    let v = verify_json(&out);
    assert_eq!(v["verdict"], "compliant");
    assert_eq!(v["visible"]["detected"], true, "{v}");
    assert_eq!(v["visible"]["position"], "top-left");
    let r = v["visible"]["text_height_ratio"].as_f64().unwrap();
    assert!((0.05..0.08).contains(&r), "{r}");
    // The metadata label still reads with exiftool.
    assert_eq!(
        exiftool_label(&out),
        label_json(j["label"]["ProduceID"].as_str().unwrap())
    );
}

#[test]
fn types_quality_and_metadata_are_kept() {
    let dir = workdir();
    let d = dir.path();
    // 16-bit grey TIFF, grey+alpha PNG, RGBA PNG: same type out.
    magick(&[
        d.join("photo.png").to_str().unwrap(),
        "-colorspace",
        "Gray",
        "-alpha",
        "on",
        "-channel",
        "A",
        "-evaluate",
        "set",
        "80%",
        d.join("ga.png").to_str().unwrap(),
    ]);
    for name in ["gray16.tif", "alpha.png", "ga.png"] {
        let out = d.join(format!("out-{name}"));
        mark_json(&d.join(name), &out, &[]);
        let fmt = "%[channels] %z";
        assert_eq!(identify(&d.join(name), fmt), identify(&out, fmt), "{name}");
    }
    // JPEG: quality class from the tables, EXIF and ICC carried over.
    let jpg = d.join("q.jpg");
    let script = format!(
        "from PIL import Image, ImageCms\n\
         im = Image.open('{}').convert('RGB')\n\
         icc = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()\n\
         exif = Image.Exif(); exif[0x013B] = 'Test Artist'\n\
         im.save('{}', quality=72, icc_profile=icc, exif=exif.tobytes())\n",
        d.join("photo.png").display(),
        jpg.display()
    );
    let o = tool("python3", &["-c", &script]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.join("out-q.jpg");
    let j = mark_json(&jpg, &out, &[]);
    assert_eq!(j["jpeg_quality"], 72);
    assert_eq!(identify(&out, "%Q"), "72");
    let tags = stdout(&tool(
        "exiftool",
        &[
            "-s3",
            "-Artist",
            "-ProfileDescription",
            out.to_str().unwrap(),
        ],
    ));
    assert!(tags.contains("Test Artist"), "{tags}");
    assert!(
        !tags.lines().nth(1).unwrap_or("").is_empty(),
        "ICC profile lost: {tags}"
    );
}

#[test]
fn the_label_lands_upright_in_the_displayed_corner_of_a_rotated_jpeg() {
    let dir = workdir();
    let d = dir.path();
    for orientation in ["6", "8", "3", "5"] {
        let jpg = d.join(format!("rot{orientation}.jpg"));
        std::fs::copy(d.join("photo.jpg"), &jpg).unwrap();
        let o = tool(
            "exiftool",
            &[
                "-q",
                "-overwrite_original",
                &format!("-Orientation#={orientation}"),
                jpg.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let out = d.join(format!("out-rot{orientation}.jpg"));
        mark_json(&jpg, &out, &["--position", "bottom-left"]);
        assert_eq!(identify(&out, "%[EXIF:Orientation]"), orientation);
        // ImageMagick applies the orientation; the result has no EXIF for us to lean on.
        let shown = d.join(format!("shown{orientation}.png"));
        magick(&[
            out.to_str().unwrap(),
            "-auto-orient",
            "-strip",
            shown.to_str().unwrap(),
        ]);
        let v = verify_json(&shown);
        assert_eq!(
            v["visible"]["detected"], true,
            "orientation {orientation}: {v}"
        );
        assert_eq!(
            v["visible"]["position"], "bottom-left",
            "orientation {orientation}: {v}"
        );
    }
}

#[test]
fn every_frame_of_an_animated_gif_is_labeled() {
    let dir = workdir();
    let d = dir.path();
    let out = d.join("out.gif");
    let j = mark_json(&d.join("anim.gif"), &out, &[]);
    assert_eq!(j["visible"]["frames"], 2);
    let frames = d.join("frame-%d.png");
    magick(&[out.to_str().unwrap(), "-coalesce", frames.to_str().unwrap()]);
    for i in 0..2 {
        let v = verify_json(&d.join(format!("frame-{i}.png")));
        assert_eq!(v["visible"]["detected"], true, "frame {i}: {v}");
    }
    assert_eq!(identify(&out, "%n\n").lines().count(), 2);
}

#[test]
fn verify_finds_labels_after_jpeg75_and_halving_and_none_in_unlabeled_images() {
    let dir = workdir();
    let d = dir.path();
    for (i, name) in ["photo.png", "photo.jpg", "alpha.png", "lossy.webp"]
        .iter()
        .enumerate()
    {
        let v = verify_json(&d.join(name));
        assert_eq!(v["visible"]["detected"], false, "{name}: {v}");
        let pos = ["top-right", "bottom", "left", "bottom-right"][i];
        let out = d.join(format!("out-{name}"));
        mark_json(&d.join(name), &out, &["--position", pos]);
        for attack in [&["-quality", "75"][..], &["-resize", "50%"][..]] {
            let attacked = d.join(format!("attacked-{i}.jpg"));
            let mut args = vec![out.to_str().unwrap()];
            args.extend_from_slice(attack);
            args.push(attacked.to_str().unwrap());
            magick(&args);
            let v = verify_json(&attacked);
            assert_eq!(v["visible"]["detected"], true, "{name} {attack:?}: {v}");
            assert_eq!(v["visible"]["position"], pos, "{name} {attack:?}: {v}");
        }
    }
}

#[test]
fn a_label_under_five_percent_is_non_compliant() {
    let dir = workdir();
    let d = dir.path();
    let out = d.join("out.png");
    mark_json(&d.join("photo.png"), &out, &["--position", "bottom-right"]);
    // Doubling the canvas towards the top-left keeps the label in its corner at half the ratio.
    let big = d.join("big.png");
    let (w, h) = image::image_dimensions(&out).unwrap();
    magick(&[
        out.to_str().unwrap(),
        "-background",
        "gray50",
        "-gravity",
        "SouthEast",
        "-extent",
        &format!("{}x{}", w * 2, h * 2),
        big.to_str().unwrap(),
    ]);
    let v = verify_json(&big);
    assert_eq!(v["visible"]["detected"], true, "{v}");
    assert!(
        v["visible"]["text_height_ratio"].as_f64().unwrap() < 0.05,
        "{v}"
    );
    assert_eq!(v["verdict"], "non_compliant", "{v}");
    assert!(
        finding_codes(&v).iter().any(|c| c == "visible_too_small"),
        "{v}"
    );
}

#[test]
fn text_outside_the_font_and_bad_sizes_are_refused_before_any_file_is_touched() {
    let dir = workdir();
    let d = dir.path();
    let input = d.join("photo.png");
    let o = aigc(&[
        "mark",
        input.to_str().unwrap(),
        "--producer",
        PRODUCER,
        "--text",
        "AI生成图片",
        "-o",
        d.join("x.png").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--font"), "{}", stderr(&o));
    assert!(!d.join("x.png").exists());
    let o = aigc(&[
        "mark",
        input.to_str().unwrap(),
        "--producer",
        PRODUCER,
        "--visible-size",
        "0.04",
        "-o",
        d.join("x.png").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("5%"), "{}", stderr(&o));
    // A user font that covers the text is accepted.
    let font = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/aigc-image/fonts/AIGCLabelSans-Bold.otf");
    let o = aigc(&[
        "mark",
        input.to_str().unwrap(),
        "--producer",
        PRODUCER,
        "--font",
        font.to_str().unwrap(),
        "--text",
        "AI合成",
        "-o",
        d.join("x.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = aigc(&[
        "verify",
        "--json",
        "--text",
        "AI合成",
        d.join("x.png").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["visible"]["detected"], true, "{v}");
}
