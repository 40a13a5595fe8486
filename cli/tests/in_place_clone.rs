//! `--in-place` on a file system that clones files (XFS here, loop-mounted): relabeling clones the
//! file and writes only the label's bytes, still atomically (clone, patch, check, rename).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop-mounted XFS, unmounted on drop.
struct Xfs {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl Xfs {
    /// `None` where loop mounts are not allowed (the test then says so and checks nothing).
    fn new() -> Option<Xfs> {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("xfs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let run = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        let ok = run("truncate", &["-s", "600M", img.to_str().unwrap()])
            && run("mkfs.xfs", &["-q", "-f", img.to_str().unwrap()])
            && run(
                "mount",
                &["-o", "loop", img.to_str().unwrap(), mount.to_str().unwrap()],
            );
        ok.then_some(Xfs { _dir: dir, mount })
    }

    fn used_mb(&self) -> u64 {
        let o = tool("df", &["-m", "--output=used", self.mount.to_str().unwrap()]);
        stdout(&o).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

fn streamhash(p: &Path) -> String {
    stdout(&tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            p.to_str().unwrap(),
            "-map",
            "0",
            "-c",
            "copy",
            "-f",
            "streamhash",
            "-",
        ],
    ))
}

#[test]
fn relabeling_in_place_clones_instead_of_copying() {
    let Some(fs) = Xfs::new() else {
        eprintln!("cannot loop-mount XFS here (needs root, loop devices and xfsprogs); the clone path is not checked");
        return;
    };
    // A 200 MB MP4 with moov first, built by stream-copying the sample in a loop.
    let big = fs.mount.join("big.mp4");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/samples-av/clip.mp4");
    let o = tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-stream_loop",
            "-1",
            "-i",
            sample.to_str().unwrap(),
            "-c",
            "copy",
            "-fs",
            "200M",
            "-movflags",
            "+faststart",
            big.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let hash = streamhash(&big);
    let mark_in_place = |id: &str| {
        // The metadata path only: relabeling, not re-encoding, is what this test measures.
        let o = aigc(&[
            "mark",
            "--no-visible",
            "--no-watermark",
            big.to_str().unwrap(),
            "--in-place",
            "--producer",
            PRODUCER,
            "--produce-id",
            id,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    // The first label grows moov ahead of the media: a full rewrite (media moves by whole pages).
    mark_in_place("first");
    // Relabeling fits in place. A hard link keeps the old inode alive: had the file been rewritten,
    // the disk would hold two full copies; cloned, the new file shares the old one's blocks.
    let keep = fs.mount.join("keep.mp4");
    std::fs::hard_link(&big, &keep).unwrap();
    let before_bytes = std::fs::read(&keep).unwrap();
    let used = fs.used_mb();
    mark_in_place("again");
    let grown = fs.used_mb().saturating_sub(used);
    assert!(
        grown < 10,
        "relabeling used {grown} MB more: the file was copied, not cloned"
    );
    assert_eq!(
        std::fs::read(&keep).unwrap(),
        before_bytes,
        "the input inode was modified"
    );
    let v = verify_json(&big);
    assert_eq!(
        (
            v["verdict"].as_str(),
            v["metadata"]["label"]["ProduceID"].as_str()
        ),
        (Some("compliant"), Some("again")),
        "{v}"
    );
    assert_eq!(streamhash(&big), hash);
    std::fs::remove_file(&keep).unwrap();
    // Other formats take the same path.
    for name in ["tone.flac", "clip.mkv", "clip.avi", "photo.jpg"] {
        let src = if name.ends_with(".jpg") {
            samples().join(name)
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../testdata/samples-av")
                .join(name)
        };
        let f = fs.mount.join(name);
        std::fs::copy(&src, &f).unwrap();
        for id in ["id-one", "id-two"] {
            let o = aigc(&[
                "mark",
                f.to_str().unwrap(),
                "--in-place",
                "--producer",
                PRODUCER,
                "--produce-id",
                id,
            ]);
            assert!(o.status.success(), "{name}: {}", stderr(&o));
        }
        let v = verify_json(&f);
        assert_eq!(
            (
                v["verdict"].as_str(),
                v["metadata"]["label"]["ProduceID"].as_str()
            ),
            (Some("compliant"), Some("id-two")),
            "{name}: {v}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&fs.mount)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
