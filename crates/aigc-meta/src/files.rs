//! The registry of handlers and the file-level read and write operations.

use crate::error::{MetaError, Result};
use crate::formats;
use crate::handler::{Format, FormatHandler, Scan, WriteOptions};
use crate::in_place;
use aigc_core::{assess, Label, Mode};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Human-readable list of what is supported, for error messages.
pub const SUPPORTED: &str =
    "JPEG, PNG, WebP, TIFF, GIF, HEIF/AVIF, MP3, WAV, FLAC, Ogg Vorbis/Opus, MP4/MOV/M4A, MKV/WebM, AVI";

/// Checked in order; MP3's frame-sync test is the loosest, so it comes last.
static HANDLERS: [&dyn FormatHandler; 13] = [
    &formats::jpeg::Jpeg,
    &formats::png::Png,
    &formats::webp::Webp,
    &formats::tiff::Tiff,
    &formats::gif::Gif,
    &formats::heif::Heif,
    &formats::mp4::Mp4,
    &formats::mkv::Matroska,
    &formats::wav::Wav,
    &formats::avi::Avi,
    &formats::flac::Flac,
    &formats::ogg::Ogg,
    &formats::mp3::Mp3,
];

/// Every registered handler.
pub fn handlers() -> &'static [&'static dyn FormatHandler] {
    &HANDLERS
}

/// The handler whose signature matches the first bytes of a file.
pub fn detect(head: &[u8]) -> Option<&'static dyn FormatHandler> {
    HANDLERS.iter().copied().find(|h| h.matches(head))
}

/// Opens an input and picks its handler, with one-line errors for the usual mistakes: a folder,
/// an empty file, an unknown format (naming what the extension suggested).
pub fn open_input(path: &Path) -> Result<(File, &'static dyn FormatHandler)> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(MetaError::unsupported(
            "is a directory (add -r to process the files in it)",
        ));
    }
    if meta.len() == 0 {
        return Err(MetaError::malformed("is empty (0 bytes)"));
    }
    let mut file = File::open(path)?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < head.len() {
        let r = file.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    match detect(&head[..n]) {
        Some(h) => Ok((file, h)),
        None => {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let format = match ext.as_str() {
                "jpg" | "jpeg" => "JPEG",
                "png" => "PNG",
                "webp" => "WebP",
                "tif" | "tiff" => "TIFF",
                "gif" => "GIF",
                "heic" | "heif" | "avif" => "HEIF/AVIF",
                "mp3" => "MP3",
                "wav" => "WAV",
                "flac" => "FLAC",
                "ogg" | "oga" | "opus" => "Ogg",
                "mp4" | "m4a" | "m4v" | "mov" => "MP4",
                "mkv" | "mka" | "webm" => "Matroska",
                "avi" => "AVI",
                _ => "",
            };
            let claimed = if format.is_empty() {
                String::new()
            } else {
                format!(" (named .{ext} but its content is not {format})")
            };
            Err(MetaError::unknown_format(format!(
                "unsupported or unrecognised format{claimed}; supported: {SUPPORTED}"
            )))
        }
    }
}

/// The result of scanning one file.
#[derive(Clone, Debug)]
pub struct FileScan {
    pub format: Format,
    pub scan: Scan,
}

/// Finds every label copy and unreadable carrier in a file. Never writes.
pub fn scan_file(path: &Path) -> Result<FileScan> {
    let (file, handler) = open_input(path)?;
    let mut src = BufReader::with_capacity(64 << 10, file);
    let scan = handler.scan(&mut src)?;
    Ok(FileScan {
        format: handler.format(),
        scan,
    })
}

/// Writes `src` to `dst` holding exactly one label, `label`. `dst` may equal `src` (in place).
///
/// The output goes to a temporary file in `dst`'s folder, is read back and checked to hold
/// exactly `label` in exactly one carrier, gets `src`'s permissions, and is then renamed over
/// `dst`. On any error nothing is left behind and `dst` is untouched. In place, on a file system
/// that clones files (XFS, btrfs), the temporary file is a clone with only the label's bytes
/// written, so relabeling a large file costs about as much as relabeling a small one.
pub fn write_file(src: &Path, dst: &Path, label: &Label, opts: &WriteOptions) -> Result<Format> {
    write_file_like(src, src, dst, label, opts)
}

/// Like [`write_file`] for a re-encoded file too large to hold in memory (video): `src` is the
/// re-encoding, streamed through the handler; the output gets `like`'s permissions (the input
/// the user gave, not the temporary file).
pub fn write_file_like(
    src: &Path,
    like: &Path,
    dst: &Path,
    label: &Label,
    opts: &WriteOptions,
) -> Result<Format> {
    let (file, handler) = open_input(src)?;
    let perms = std::fs::metadata(like)?.permissions();
    let dir = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if same_file(src, dst) {
        if let Some(tmp) = relabel_by_clone(src, &file, handler, label, opts, dir)? {
            return finish(handler, tmp, dst, label, perms);
        }
    }
    let tmp = temp_in(dir)?;
    {
        let mut reader = BufReader::with_capacity(256 << 10, file);
        let mut writer = BufWriter::with_capacity(256 << 10, tmp.as_file());
        handler.write(&mut reader, &mut writer, &label.to_json(), opts)?;
        writer.flush()?;
    }
    finish(handler, tmp.into_temp_path(), dst, label, perms)
}

/// Like [`write_file`] for a file whose pixels were re-encoded: `encoded` holds the new file's
/// bytes (its format must be `format`), `like` is the input whose permissions the output gets.
/// The label goes in, the result is read back and checked, then renamed over `dst`.
pub fn write_encoded(
    encoded: &[u8],
    format: Format,
    like: &Path,
    dst: &Path,
    label: &Label,
    opts: &WriteOptions,
) -> Result<Format> {
    let handler = detect(encoded)
        .filter(|h| h.format() == format)
        .ok_or_else(|| {
            MetaError::verification(format!(
                "the re-encoded image is not a valid {} file",
                format.name()
            ))
        })?;
    let perms = std::fs::metadata(like)?.permissions();
    let dir = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = temp_in(dir)?;
    {
        let mut reader = std::io::Cursor::new(encoded);
        let mut writer = BufWriter::with_capacity(256 << 10, tmp.as_file());
        handler.write(&mut reader, &mut writer, &label.to_json(), opts)?;
        writer.flush()?;
    }
    finish(handler, tmp.into_temp_path(), dst, label, perms)
}

/// The pixel-preserving metadata carry-over for formats that have one (JPEG, PNG): `encoded`
/// with `original`'s metadata segments or chunks. Other formats return `encoded` unchanged.
pub fn carry_metadata(format: Format, original: &[u8], encoded: Vec<u8>) -> Result<Vec<u8>> {
    match format {
        Format::Jpeg => formats::jpeg::carry_metadata(original, &encoded),
        Format::Png => formats::png::carry_metadata(original, &encoded),
        _ => Ok(encoded),
    }
}

/// A temporary file in the folder `output` will be written to (so the final rename stays on
/// one file system), for pipelines that encode before the label goes in. Removed when dropped.
pub fn temp_beside(output: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    temp_in(dir)
}

fn temp_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".aigc-label-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            MetaError::from(std::io::Error::new(
                e.kind(),
                format!("cannot create a temporary file in {}: {e}", dir.display()),
            ))
        })
}

/// Reads the written file back, requires exactly `label` in exactly one carrier, gives it the
/// input's permissions and renames it into place.
fn finish(
    handler: &dyn FormatHandler,
    tmp: tempfile::TempPath,
    dst: &Path,
    label: &Label,
    perms: std::fs::Permissions,
) -> Result<Format> {
    let mut check = BufReader::with_capacity(64 << 10, File::open(&tmp)?);
    let scan = handler.scan(&mut check)?;
    let verdict = assess(&scan.copies, &scan.problems, Mode::Lenient);
    if scan.copies.len() != 1 || verdict.label.as_ref() != Some(label) {
        return Err(MetaError::verification(format!(
            "the written file did not read back with exactly the new label ({} copies found); nothing was written",
            scan.copies.len()
        )));
    }
    std::fs::set_permissions(&tmp, perms)?;
    tmp.persist(dst).map_err(|e| {
        MetaError::from(std::io::Error::new(
            e.error.kind(),
            format!("cannot rename the output into place: {}", e.error),
        ))
    })?;
    Ok(handler.format())
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// A clone of `src` with only the label's bytes changed, or `None` when the change is large (the
/// media would move) or the file system cannot clone.
fn relabel_by_clone(
    src: &Path,
    file: &File,
    handler: &dyn FormatHandler,
    label: &Label,
    opts: &WriteOptions,
    dir: &Path,
) -> Result<Option<tempfile::TempPath>> {
    // Clone first: it is O(1), and where it is unsupported (ext4) nothing else is wasted.
    let path = dir.join(format!(".aigc-label-{}.tmp", aigc_core::new_content_id()));
    if let Err(e) = reflink_copy::reflink(src, &path) {
        // A half-made clone is ours to remove; a file that was already there is not.
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(&path);
        }
        return Ok(None);
    }
    let tmp = tempfile::TempPath::try_from_path(path)?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(64 << 10, file.try_clone()?);
    let json = label.to_json();
    let Some(changes) = in_place::diff(file, len, |dst| {
        handler.write(&mut reader, dst, &json, opts)
    })?
    else {
        return Ok(None); // dropping `tmp` removes the clone
    };
    let clone = std::fs::OpenOptions::new().write(true).open(&tmp)?;
    in_place::apply(&clone, &changes)?;
    Ok(Some(tmp))
}
