//! Marking each image format: the label reads back with exiftool as the exact JSON, pixels are
//! identical, and every byte outside the label carrier is unchanged.

mod common;
use common::*;
use std::path::Path;

const SAMPLES: [&str; 10] = [
    "photo.jpg",
    "photo.png",
    "alpha.png",
    "lossy.webp",
    "lossless-alpha.webp",
    "photo.tif",
    "gray16.tif",
    "anim.gif",
    "photo.heic",
    "photo.avif",
];

fn marked(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>, std::path::PathBuf) {
    let input = dir.join(name);
    let output = dir.join(format!("marked-{name}"));
    mark(&input, &output, "id-0001");
    (
        std::fs::read(&input).unwrap(),
        std::fs::read(&output).unwrap(),
        output,
    )
}

#[test]
fn exiftool_reads_the_exact_label_in_every_format() {
    let dir = workdir();
    for name in SAMPLES {
        let (_, _, out) = marked(dir.path(), name);
        assert_eq!(exiftool_label(&out), label_json("id-0001"), "{name}");
        let v = verify_json(&out);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(
            v["metadata"]["carriers"].as_array().unwrap().len(),
            1,
            "{name}"
        );
        assert_eq!(
            v["iptc_digital_source_type"],
            "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
        );
    }
}

#[test]
fn pixels_are_identical_in_every_format() {
    let dir = workdir();
    for name in SAMPLES {
        let (_, _, out) = marked(dir.path(), name);
        let before = pixels(&dir.path().join(name));
        let after = pixels(&out);
        assert_eq!(before.len(), after.len(), "{name}: frame count");
        assert!(before == after, "{name}: decoded pixels differ");
    }
}

#[test]
fn jpeg_changes_only_the_xmp_segment() {
    let dir = workdir();
    let (before, after, _) = marked(dir.path(), "photo.jpg");
    assert_eq!(jpeg_without_xmp(&before), jpeg_without_xmp(&after));
}

#[test]
fn png_changes_only_the_xmp_chunk_which_precedes_idat() {
    let dir = workdir();
    for name in ["photo.png", "alpha.png"] {
        let (before, after, _) = marked(dir.path(), name);
        assert_eq!(
            png_chunks_without_xmp(&before),
            png_chunks_without_xmp(&after),
            "{name}"
        );
        let xmp = after
            .windows(21)
            .position(|w| w == b"iTXtXML:com.adobe.xmp")
            .unwrap();
        let idat = after.windows(4).position(|w| w == b"IDAT").unwrap();
        assert!(xmp < idat, "{name}: XMP after IDAT");
    }
}

#[test]
fn webp_keeps_every_chunk_and_becomes_extended() {
    let dir = workdir();
    for (name, alpha) in [("lossy.webp", false), ("lossless-alpha.webp", true)] {
        let (before, after, _) = marked(dir.path(), name);
        assert_eq!(
            webp_chunks_without_xmp(&before),
            webp_chunks_without_xmp(&after),
            "{name}"
        );
        assert_eq!(&after[12..16], b"VP8X", "{name}");
        let flags = after[20];
        assert_eq!(flags & 0x04, 0x04, "{name}: XMP flag");
        assert_eq!(flags & 0x10 != 0, alpha, "{name}: alpha flag");
        let riff = u32::from_le_bytes(after[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff + 8, after.len(), "{name}: RIFF size");
        // The canvas size in VP8X matches the image.
        let w = u32::from_le_bytes([after[24], after[25], after[26], 0]) + 1;
        let h = u32::from_le_bytes([after[27], after[28], after[29], 0]) + 1;
        let img = image::open(dir.path().join(name)).unwrap();
        assert_eq!((w, h), (img.width(), img.height()), "{name}");
    }
}

#[test]
fn tiff_keeps_every_byte_but_the_ifd0_pointer() {
    let dir = workdir();
    for name in ["photo.tif", "gray16.tif"] {
        let (before, after, _) = marked(dir.path(), name);
        assert_eq!(before[..4], after[..4], "{name}");
        assert_eq!(
            before[8..],
            after[8..before.len()],
            "{name}: original bytes changed"
        );
    }
}

#[test]
fn gif_changes_only_the_xmp_extension() {
    let dir = workdir();
    let (before, after, _) = marked(dir.path(), "anim.gif");
    assert_eq!(before, gif_without_xmp(&after));
}

#[test]
fn heif_keeps_media_data_and_boxes_outside_meta() {
    let dir = workdir();
    for name in ["photo.heic", "photo.avif"] {
        let (before, after, _) = marked(dir.path(), name);
        let b = bmff_boxes(&before);
        let a = bmff_boxes(&after);
        let outside_meta = |v: &[(String, Vec<u8>)]| {
            v.iter()
                .filter(|(t, _)| t != "meta")
                .cloned()
                .collect::<Vec<_>>()
        };
        let (ob, oa) = (outside_meta(&b), outside_meta(&a));
        assert_eq!(oa.len(), ob.len() + 1, "{name}: one box added");
        assert_eq!(ob[..], oa[..ob.len()], "{name}: boxes outside meta changed");
        assert_eq!(oa.last().unwrap().0, "mdat", "{name}");
        let v = tool(
            "heif-info",
            &[dir.path().join(format!("marked-{name}")).to_str().unwrap()],
        );
        assert!(v.status.success(), "{name}: heif-info rejects the output");
    }
}

#[test]
fn marking_twice_leaves_one_label_and_a_stable_size() {
    let dir = workdir();
    for name in SAMPLES {
        let input = dir.path().join(name);
        let once = dir.path().join(format!("once-{name}"));
        let twice = dir.path().join(format!("twice-{name}"));
        mark(&input, &once, "id-one");
        mark(&once, &twice, "id-two");
        let v = verify_json(&twice);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        assert_eq!(v["metadata"]["label"]["ProduceID"], "id-two", "{name}");
        assert_eq!(exiftool_label(&twice), label_json("id-two"), "{name}");
        let (a, b) = (
            std::fs::metadata(&once).unwrap().len(),
            std::fs::metadata(&twice).unwrap().len(),
        );
        assert_eq!(a, b, "{name}: relabeling changed the size");
        assert!(pixels(&input) == pixels(&twice), "{name}: pixels");
    }
}

#[test]
fn propagate_after_mark_leaves_one_label_with_both_sides() {
    let dir = workdir();
    for name in SAMPLES {
        let input = dir.path().join(name);
        let marked = dir.path().join(format!("m-{name}"));
        let shared = dir.path().join(format!("p-{name}"));
        mark(&input, &marked, "gen-42");
        let o = aigc(&[
            "propagate",
            marked.to_str().unwrap(),
            "-o",
            shared.to_str().unwrap(),
            "--propagator",
            PLATFORM,
            "--propagate-id",
            "post-7",
            "--reserved-code2",
            "sig-abc",
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let v = verify_json(&shared);
        assert_eq!(v["verdict"], "compliant", "{name}: {v}");
        let l = &v["metadata"]["label"];
        assert_eq!(l["ContentProducer"], PRODUCER);
        assert_eq!(l["ProduceID"], "gen-42");
        assert_eq!(l["ContentPropagator"], PLATFORM);
        assert_eq!(l["PropagateID"], "post-7");
        assert_eq!(l["ReservedCode2"], "sig-abc");
        assert_eq!(v["metadata"]["carriers"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn propagate_without_a_label_needs_label_2_or_3() {
    let dir = workdir();
    let input = dir.path().join("photo.png");
    let out = dir.path().join("p.png");
    let args = [
        "propagate",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--propagator",
        PLATFORM,
    ];
    let o = aigc(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no label"), "{}", stderr(&o));
    assert!(!out.exists());
    let o = aigc(&[&args[..], &["--label", "3"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let v = verify_json(&out);
    assert_eq!(v["verdict"], "compliant", "{v}");
    assert_eq!(v["metadata"]["label"]["Label"], "3");
    assert_eq!(v["metadata"]["label"]["ContentProducer"], "");
}
