//! Bad input: one line naming the file and the problem, exit status 1, no panic, no partial
//! output, the input untouched, the rest of the batch processed, and no huge allocation.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Damaged variants of the samples, each paired with words the error must contain.
fn damaged(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let read = |n: &str| std::fs::read(samples().join(n)).unwrap();
    let mut out = Vec::new();
    let mut put = |name: &str, bytes: Vec<u8>, why: &'static str| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        out.push((p, why));
    };
    let png = read("photo.png");
    put("truncated.png", png[..png.len() / 2].to_vec(), "truncated");
    let mut bad_crc = png.clone();
    let idat = bad_crc.windows(4).position(|w| w == b"IDAT").unwrap();
    bad_crc[idat + 10] ^= 0xFF;
    put("badcrc.png", bad_crc, "CRC");
    let mut huge = png.clone();
    // Make the first chunk after IHDR declare ~2 GB.
    huge[33..37].copy_from_slice(&0x7FFF_FFF0u32.to_be_bytes());
    put("huge-chunk.png", huge, "declares");

    let jpg = read("photo.jpg");
    put(
        "truncated.jpg",
        jpg[..jpg.len().min(120)].to_vec(),
        "truncated",
    );
    let mut badlen = jpg.clone();
    badlen[4..6].copy_from_slice(&[0x00, 0x01]);
    put("badlen.jpg", badlen, "length");

    let tif = read("photo.tif");
    let mut loop_tif = tif.clone();
    loop_tif[4..8].copy_from_slice(&(tif.len() as u32 + 1000).to_le_bytes());
    put("ifd-past-end.tif", loop_tif, "past the end");
    let mut many = tif.clone();
    let ifd0 = u32::from_le_bytes(tif[4..8].try_into().unwrap()) as usize;
    many[ifd0..ifd0 + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
    put("absurd-count.tif", many, "entries");

    let webp = read("lossy.webp");
    let mut riff = webp.clone();
    riff[4..8].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    put("riff-4gb.webp", riff, "truncated");

    let gif = read("anim.gif");
    put("truncated.gif", gif[..gif.len() - 40].to_vec(), "truncated");

    let heic = read("photo.heic");
    let mut meta_size = heic.clone();
    let m = heic.windows(4).position(|w| w == b"meta").unwrap() - 4;
    meta_size[m..m + 4].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    put("bad-meta.heic", meta_size, "past");

    put("empty.png", Vec::new(), "empty");
    put(
        "text.jpg",
        b"this is not an image at all".to_vec(),
        "named .jpg",
    );
    out
}

#[test]
fn every_damaged_file_fails_alone_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = damaged(dir.path());
    let good = dir.path().join("good.png");
    std::fs::copy(samples().join("photo.png"), &good).unwrap();
    let out_dir = dir.path().join("out");
    let mut args: Vec<String> = [
        "mark",
        "--producer",
        PRODUCER,
        "--out-dir",
        out_dir.to_str().unwrap(),
        "-j",
        "2",
    ]
    .map(String::from)
    .to_vec();
    args.extend(bad.iter().map(|(p, _)| p.to_str().unwrap().to_string()));
    args.push(good.to_str().unwrap().to_string());
    let before: Vec<Vec<u8>> = bad.iter().map(|(p, _)| std::fs::read(p).unwrap()).collect();

    let o = aigc(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    for (path, why) in &bad {
        let line = err
            .lines()
            .find(|l| l.starts_with("error: ") && l.contains(path.to_str().unwrap()))
            .unwrap_or_else(|| panic!("no error line for {}:\n{err}", path.display()));
        assert!(
            line.contains(why),
            "{}: expected {why:?} in {line:?}",
            path.display()
        );
        assert!(
            !out_dir.join(path.file_name().unwrap()).exists(),
            "partial output for {}",
            path.display()
        );
    }
    // The inputs are untouched and the good file in the same batch was marked.
    for ((p, _), b) in bad.iter().zip(&before) {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{} changed", p.display());
    }
    assert_eq!(
        verify_json(&out_dir.join("good.png"))["verdict"],
        "compliant"
    );
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn verify_never_panics_on_damage_and_reports_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = damaged(dir.path());
    let mut args = vec!["verify", "--json"];
    args.extend(bad.iter().map(|(p, _)| p.to_str().unwrap()));
    let o = aigc(&args);
    assert!(!stderr(&o).contains("panicked"));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        bad.len(),
        "one JSON line per file:\n{}",
        stdout(&o)
    );
    for v in &lines {
        // Damaged files get an error or a verdict that is not a false "compliant".
        assert!(
            v.get("error").is_some() || v["verdict"] != "compliant",
            "{v}"
        );
    }
}

#[test]
fn a_file_declaring_gigabytes_does_not_allocate_them() {
    // The 2 GB PNG chunk: if the parser allocated it, the process would take > 1 GB; run under a
    // 512 MB address-space limit to prove it does not.
    let dir = tempfile::tempdir().unwrap();
    let bad = damaged(dir.path());
    let huge = &bad
        .iter()
        .find(|(p, _)| p.ends_with("huge-chunk.png"))
        .unwrap()
        .0;
    let bin = env!("CARGO_BIN_EXE_aigc-label");
    let script = format!(
        "ulimit -v 524288; exec {bin} verify --json {}",
        huge.display()
    );
    let o = tool("bash", &["-c", &script]);
    assert!(!stderr(&o).contains("memory allocation"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["verdict"], "inconclusive", "{v}");
}

#[test]
fn directories_missing_and_unreadable_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let o = aigc(&["verify", folder.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is a directory (add -r"),
        "{}",
        stderr(&o)
    );

    let o = aigc(&["verify", dir.path().join("nope.png").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope.png"), "{}", stderr(&o));

    // Root ignores permissions, so unreadability is simulated with a dangling symlink.
    let dangling = dir.path().join("dangling.png");
    std::os::unix::fs::symlink(dir.path().join("gone.png"), &dangling).unwrap();
    let o = aigc(&["verify", dangling.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("dangling.png"), "{}", stderr(&o));
}

#[test]
fn walking_a_folder_skips_unsupported_files_and_mirrors_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("in");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::copy(samples().join("photo.jpg"), tree.join("a/one.jpg")).unwrap();
    std::fs::copy(samples().join("photo.png"), tree.join("a/b/two.png")).unwrap();
    std::fs::write(tree.join("a/notes.txt"), "not media").unwrap();
    let out = dir.path().join("out");
    let o = aigc(&[
        "mark",
        "-r",
        tree.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--producer",
        PRODUCER,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipped: ") && stderr(&o).contains("notes.txt"),
        "{}",
        stderr(&o)
    );
    assert_eq!(verify_json(&out.join("a/one.jpg"))["verdict"], "compliant");
    assert_eq!(
        verify_json(&out.join("a/b/two.png"))["verdict"],
        "compliant"
    );
    assert!(!out.join("a/notes.txt").exists());
    // Each file got its own ProduceID.
    let a = verify_json(&out.join("a/one.jpg"))["metadata"]["label"]["ProduceID"].clone();
    let b = verify_json(&out.join("a/b/two.png"))["metadata"]["label"]["ProduceID"].clone();
    assert_ne!(a, b);
}

#[test]
fn in_place_is_atomic_and_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.jpg");
    std::fs::copy(samples().join("photo.jpg"), &f).unwrap();
    // Without an output choice, nothing is written and the user is told what to do.
    let o = aigc(&["mark", f.to_str().unwrap(), "--producer", PRODUCER]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--in-place"), "{}", stderr(&o));
    // --out-dir pointing at the input's own folder would overwrite it: refused.
    let o = aigc(&[
        "mark",
        f.to_str().unwrap(),
        "--out-dir",
        dir.path().to_str().unwrap(),
        "--producer",
        PRODUCER,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("overwrite the input"), "{}", stderr(&o));
    assert_eq!(verify_json(&f)["verdict"], "not_found");
    // --in-place replaces it, keeping its permissions.
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let o = aigc(&[
        "mark",
        f.to_str().unwrap(),
        "--in-place",
        "--producer",
        PRODUCER,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(verify_json(&f)["verdict"], "compliant");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn a_non_compliant_label_is_refused_before_any_file_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.png");
    let o = aigc(&[
        "mark",
        samples().join("photo.png").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--producer",
        "has space",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not be compliant"), "{}", stderr(&o));
    assert!(!out.exists());
    let o = aigc(&[
        "mark",
        samples().join("photo.png").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--producer"), "{}", stderr(&o));
}

#[test]
fn config_file_supplies_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("aigc.toml");
    std::fs::write(
        &cfg,
        format!("producer = \"{PRODUCER}\"\nlabel = \"1\"\niptc = false\n"),
    )
    .unwrap();
    let out = dir.path().join("o.gif");
    let o = aigc(&[
        "mark",
        "--config",
        cfg.to_str().unwrap(),
        samples().join("anim.gif").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = verify_json(&out);
    assert_eq!(v["metadata"]["label"]["ContentProducer"], PRODUCER);
    assert!(
        v["iptc_digital_source_type"].is_null(),
        "iptc = false in the config: {v}"
    );
    std::fs::write(&cfg, "producer = 5\n").unwrap();
    let o = aigc(&[
        "mark",
        "--config",
        cfg.to_str().unwrap(),
        samples().join("anim.gif").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("aigc.toml"), "{}", stderr(&o));
}

#[test]
fn a_wrong_extension_is_handled_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("really-a-png.jpg");
    std::fs::copy(samples().join("photo.png"), &f).unwrap();
    let out = dir.path().join("out.jpg");
    mark(&f, &out, "ext-1");
    let v = verify_json(&out);
    assert_eq!(
        (v["format"].as_str(), v["verdict"].as_str()),
        (Some("png"), Some("compliant")),
        "{v}"
    );
    assert_eq!(exiftool_label(&out), label_json("ext-1"));
}
