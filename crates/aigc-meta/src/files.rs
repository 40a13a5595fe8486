//! The registry of handlers and the file-level read and write operations.

use crate::error::{MetaError, Result};
use crate::formats;
use crate::handler::{Format, FormatHandler, Scan, WriteOptions};
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
            Err(MetaError::unsupported(format!(
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
/// `dst`. On any error nothing is left behind and `dst` is untouched.
pub fn write_file(src: &Path, dst: &Path, label: &Label, opts: &WriteOptions) -> Result<Format> {
    let (file, handler) = open_input(src)?;
    let perms = file.metadata()?.permissions();
    let dir = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".aigc-label-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            MetaError::from(std::io::Error::new(
                e.kind(),
                format!("cannot create a temporary file in {}: {e}", dir.display()),
            ))
        })?;
    {
        let mut reader = BufReader::with_capacity(256 << 10, file);
        let mut writer = BufWriter::with_capacity(256 << 10, tmp.as_file());
        handler.write(&mut reader, &mut writer, &label.to_json(), opts)?;
        writer.flush()?;
    }
    let mut check = BufReader::with_capacity(64 << 10, File::open(tmp.path())?);
    let scan = handler.scan(&mut check)?;
    let verdict = assess(&scan.copies, &scan.problems, Mode::Lenient);
    if scan.copies.len() != 1 || verdict.label.as_ref() != Some(label) {
        return Err(MetaError::verification(format!(
            "the written file did not read back with exactly the new label ({} copies found); nothing was written",
            scan.copies.len()
        )));
    }
    std::fs::set_permissions(tmp.path(), perms)?;
    tmp.persist(dst).map_err(|e| {
        MetaError::from(std::io::Error::new(
            e.error.kind(),
            format!("cannot rename the output into place: {}", e.error),
        ))
    })?;
    Ok(handler.format())
}
