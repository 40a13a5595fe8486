//! The handler trait every container format implements, and what a scan reports.

use crate::bytes::{Sink, Source};
use crate::error::Result;
use crate::xmp;
use aigc_core::{CarrierProblem, LabelCopy};

/// The container formats this crate reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Tiff,
    Gif,
    Heif,
    Mp3,
    Wav,
    Flac,
    Ogg,
    Mp4,
    Matroska,
    Avi,
}

impl Format {
    /// The short lowercase name used in reports (`"jpeg"`, `"png"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
            Format::Gif => "gif",
            Format::Heif => "heif",
            Format::Mp3 => "mp3",
            Format::Wav => "wav",
            Format::Flac => "flac",
            Format::Ogg => "ogg",
            Format::Mp4 => "mp4",
            Format::Matroska => "matroska",
            Format::Avi => "avi",
        }
    }
}

/// Options that change what a write puts in the file besides the label.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    /// Also write IPTC `Iptc4xmpExt:DigitalSourceType` = `trainedAlgorithmicMedia` in the XMP.
    pub iptc: bool,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions { iptc: true }
    }
}

/// What a handler found in a file: every label copy in every carrier, every carrier it could not
/// read, and the other AI-marking regimes it noticed.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    pub copies: Vec<LabelCopy>,
    pub problems: Vec<CarrierProblem>,
    /// IPTC `DigitalSourceType` from the XMP, if any.
    pub digital_source_type: Option<String>,
    /// A C2PA manifest store is present (JPEG APP11 JUMBF, PNG `caBX`, BMFF `uuid`).
    pub c2pa: bool,
}

impl Scan {
    /// Records the labels (or the parse problem) of one XMP packet.
    pub fn add_xmp(&mut self, carrier: &str, packet: &[u8]) {
        let text = String::from_utf8_lossy(packet);
        match xmp::read(&text) {
            Ok(info) => {
                for json in info.labels {
                    self.copies.push(LabelCopy {
                        carrier: carrier.to_string(),
                        json,
                    });
                }
                if self.digital_source_type.is_none() {
                    self.digital_source_type = info.digital_source_type;
                }
            }
            Err(e) => self.problem(carrier, e),
        }
    }

    /// Records a label copy stored as plain JSON text.
    pub fn add_json(&mut self, carrier: &str, json: String) {
        self.copies.push(LabelCopy {
            carrier: carrier.to_string(),
            json,
        });
    }

    /// Records the label copies in the UserComments of an EXIF block held in memory.
    pub fn add_exif(&mut self, carrier_prefix: &str, block: &[u8]) {
        match crate::tiff_ifd::block_user_comments(block) {
            Ok(comments) => {
                for c in comments.into_iter().filter(|c| c.is_label()) {
                    self.add_json(&format!("{carrier_prefix}:{}:UserComment", c.ifd), c.text);
                }
            }
            Err(e) => self.problem(&format!("{carrier_prefix}:Exif"), e.message),
        }
    }

    pub fn problem(&mut self, carrier: &str, message: impl Into<String>) {
        self.problems.push(CarrierProblem {
            carrier: carrier.to_string(),
            message: message.into(),
        });
    }
}

/// One container format: recognise it, find every label carrier in it, and write a file that holds
/// exactly one label.
///
/// Handlers are stateless. `scan` never fails on damage it can describe (that becomes a
/// [`Scan::problems`] entry, so a verifier says "inconclusive" rather than "not found"); it
/// fails only on I/O errors. `write` refuses damaged input with a one-line error, and otherwise
/// copies every byte outside the label carrier unchanged.
pub trait FormatHandler: Send + Sync {
    fn format(&self) -> Format;

    /// True when the first bytes (up to 64) are this format's signature.
    fn matches(&self, head: &[u8]) -> bool;

    /// Finds every label copy and unreadable carrier.
    fn scan(&self, src: &mut dyn Source) -> Result<Scan>;

    /// Writes `src` to `dst` with exactly one label, `label_json` (the bare seven-field object),
    /// in this format's primary carrier; every other label copy is removed.
    fn write(
        &self,
        src: &mut dyn Source,
        dst: &mut dyn Sink,
        label_json: &str,
        opts: &WriteOptions,
    ) -> Result<()>;
}

impl Scan {
    /// Folds the outcome of reading a structure into the scan: damage becomes a carrier problem
    /// (so the verdict is "inconclusive", never a silent "not found"); I/O errors stay errors.
    pub fn record(&mut self, carrier: &str, outcome: Result<()>) -> Result<()> {
        match outcome {
            Err(e) if e.kind == crate::ErrorKind::Io => Err(e),
            Err(e) => {
                self.problem(carrier, e.message);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

/// The source's length, after checking that it starts with `handler`'s signature (the same test
/// the registry uses), so a handler never works on bytes of another format.
pub fn checked_len(handler: &dyn FormatHandler, src: &mut dyn Source) -> Result<u64> {
    let len = crate::bytes::source_len(src)?;
    let head = crate::bytes::read_at(src, 0, 64.min(len), len, "file signature")?;
    if !handler.matches(&head) {
        return Err(crate::MetaError::malformed(format!(
            "not a {} file (bad signature)",
            handler.format().name().to_uppercase()
        )));
    }
    Ok(len)
}

/// The XMP packet a handler writes: the file's existing primary packet (raw bytes, if any) with
/// the label merged in, every other property kept. A packet that is not UTF-8 or not well-formed
/// is refused rather than overwritten.
pub fn merged_xmp(
    existing: Option<Vec<u8>>,
    label_json: &str,
    opts: &WriteOptions,
) -> Result<String> {
    let text = existing
        .map(|raw| {
            String::from_utf8(raw)
                .map(|s| s.trim_end_matches('\0').to_string())
                .map_err(|_| {
                    crate::MetaError::malformed(
                        "the existing XMP packet is not UTF-8; refusing to rewrite it",
                    )
                })
        })
        .transpose()?;
    xmp::merge(text.as_deref(), label_json, opts.iptc).map_err(|e| {
        crate::MetaError::malformed(format!("{e}; refusing to rewrite the existing XMP"))
    })
}
