//! `verify` gives the spec's verdict and findings for each kind of label problem. The labels
//! under test are written by exiftool, not by this project.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn with_xmp_label(dir: &Path, name: &str, json: &str) -> PathBuf {
    let f = dir.join(format!("{name}.jpg"));
    std::fs::copy(samples().join("photo.jpg"), &f).unwrap();
    let arg = format!("-XMP-TC260:AIGC={json}");
    let o = tool(
        "exiftool",
        &[
            "-config",
            exiftool_config().to_str().unwrap(),
            "-overwrite_original",
            "-q",
            &arg,
            f.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    f
}

fn codes(v: &serde_json::Value) -> Vec<String> {
    v["metadata"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn each_label_problem_gets_its_verdict_and_finding() {
    let dir = tempfile::tempdir().unwrap();
    let good = label_json("ok-1");
    let cases: [(&str, String, &str, Option<&str>); 6] = [
        ("valid", good.clone(), "compliant", None),
        (
            "missing",
            good.replace(r#","ProduceID":"ok-1""#, ""),
            "non_compliant",
            Some("missing_field"),
        ),
        (
            "badenum",
            good.replace(r#""Label":"1""#, r#""Label":"4""#),
            "non_compliant",
            Some("bad_label_value"),
        ),
        (
            "charset",
            good.replace("ok-1", "ok 1"),
            "non_compliant",
            Some("charset"),
        ),
        (
            "unknown",
            good.replace(r#""Label":"1","#, r#""Label":"1","Model":"x","#),
            "non_compliant",
            Some("unknown_key"),
        ),
        (
            "empty",
            good.replace("ok-1", ""),
            "non_compliant",
            Some("empty_field"),
        ),
    ];
    for (name, json, verdict, code) in cases {
        let f = with_xmp_label(dir.path(), name, &json);
        let v = verify_json(&f);
        assert_eq!(v["verdict"], verdict, "{name}: {v}");
        if let Some(code) = code {
            assert!(codes(&v).contains(&code.to_string()), "{name}: {v}");
        }
    }
    // Lenient mode turns the charset error into a warning.
    let f = dir.path().join("charset.jpg");
    let o = aigc(&["verify", "--json", "--lenient", f.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["verdict"], "compliant", "{v}");
}

#[test]
fn two_copies_are_non_compliant_and_disagreeing_copies_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = exiftool_config();
    for (name, comment_id, code) in [
        ("same", "ok-1", "duplicate_copies"),
        ("differ", "other", "disagreeing_copies"),
    ] {
        let f = with_xmp_label(dir.path(), name, &label_json("ok-1"));
        let uc = format!("-EXIF:UserComment={{\"AIGC\":{}}}", label_json(comment_id));
        let o = tool(
            "exiftool",
            &[
                "-config",
                cfg.to_str().unwrap(),
                "-overwrite_original",
                "-q",
                &uc,
                f.to_str().unwrap(),
            ],
        );
        assert!(o.status.success());
        let v = verify_json(&f);
        assert_eq!(v["verdict"], "non_compliant", "{name}: {v}");
        assert!(codes(&v).contains(&code.to_string()), "{name}: {v}");
        // Marking repairs it: exactly one label afterwards.
        let out = dir.path().join(format!("fixed-{name}.jpg"));
        mark(&f, &out, "fixed");
        assert_eq!(verify_json(&out)["verdict"], "compliant");
    }
}

#[test]
fn a_truncated_carrier_is_inconclusive_never_not_found() {
    let dir = tempfile::tempdir().unwrap();
    // PNG cut inside the XMP iTXt chunk.
    let marked = dir.path().join("m.png");
    mark(&samples().join("photo.png"), &marked, "t-1");
    let bytes = std::fs::read(&marked).unwrap();
    let at = bytes
        .windows(21)
        .position(|w| w == b"iTXtXML:com.adobe.xmp")
        .unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &bytes[..at + 200]).unwrap();
    assert_eq!(verify_json(&cut)["verdict"], "inconclusive");
    // JPEG cut inside the XMP segment.
    let marked = dir.path().join("m.jpg");
    mark(&samples().join("photo.jpg"), &marked, "t-1");
    let bytes = std::fs::read(&marked).unwrap();
    let at = bytes
        .windows(28)
        .position(|w| w == b"http://ns.adobe.com/xap/1.0/")
        .unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..at + 300]).unwrap();
    let v = verify_json(&cut);
    assert_eq!(v["verdict"], "inconclusive", "{v}");
    // Unparseable JSON in an intact carrier is inconclusive too.
    let f = with_xmp_label(dir.path(), "garbled", r#"{"Label":"1","ContentProducer":"#);
    assert_eq!(verify_json(&f)["verdict"], "inconclusive");
}

#[test]
fn no_label_is_not_found_and_require_fails_it() {
    let f = samples().join("photo.jpg");
    assert_eq!(verify_json(&f)["verdict"], "not_found");
    assert_eq!(
        aigc(&["verify", f.to_str().unwrap()]).status.code(),
        Some(0)
    );
    assert_eq!(
        aigc(&["verify", "--require", f.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn provider_code_that_is_a_name_is_a_warning_only() {
    let dir = tempfile::tempdir().unwrap();
    let f = with_xmp_label(
        dir.path(),
        "name",
        &label_json("x1").replace(PRODUCER, "ExampleAI"),
    );
    let v = verify_json(&f);
    assert_eq!(v["verdict"], "compliant", "{v}");
    let warn = &v["metadata"]["findings"][0];
    assert_eq!(
        (warn["severity"].as_str(), warn["code"].as_str()),
        (Some("warning"), Some("provider_code"))
    );
}
