//! JPEG: the label lives in the APP1 XMP segment; EXIF UserComment is read as an alternative.
//!
//! Only the marker segments before the first SOS are parsed: metadata segments live there, and the
//! entropy-coded data after it is copied as one range without being looked at.

use crate::bytes::{be_u16, copy_range, copy_rest, read_array, read_at, Sink, Source};
use crate::error::{MetaError, Result};
use crate::handler::{checked_len, merged_xmp, Format, FormatHandler, Scan, WriteOptions};
use std::io::SeekFrom;

const XMP_SIG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const EXIF_SIG: &[u8] = b"Exif\0\0";
/// The largest XMP packet one APP1 segment holds (65535 - 2 length bytes - signature).
const MAX_XMP: usize = 65535 - 2 - XMP_SIG.len();

pub struct Jpeg;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Xmp,
    Exif,
    Other,
}

struct Segment {
    marker: u8,
    /// Offset of the first 0xFF (fill bytes included), so ranges tile the header exactly.
    at: u64,
    payload_at: u64,
    payload_len: u64,
    kind: Kind,
}

impl Segment {
    fn end(&self) -> u64 {
        self.payload_at + self.payload_len
    }
}

struct Layout {
    segments: Vec<Segment>,
    /// Where the header ends: the SOS marker (or EOI, or the end of the file).
    body_at: u64,
}

fn walk(src: &mut dyn Source, len: u64) -> std::result::Result<Layout, (Layout, MetaError)> {
    let mut layout = Layout {
        segments: Vec::new(),
        body_at: len,
    };
    let mut pos = 2u64;
    loop {
        if pos >= len {
            let e = MetaError::malformed(format!(
                "JPEG ends at offset {len} before any image data (no SOS marker; truncated)"
            ));
            return Err((layout, e));
        }
        let at = pos;
        let step = (|| -> Result<Option<Segment>> {
            src.seek(SeekFrom::Start(pos))?;
            let [ff] = read_array::<1>(src)?;
            if ff != 0xFF {
                return Err(MetaError::malformed(format!(
                    "JPEG has byte 0x{ff:02X} where a marker should start at offset {pos}"
                )));
            }
            let mut marker = 0xFF;
            while marker == 0xFF {
                [marker] = read_array::<1>(src)?;
                pos += 1;
            }
            pos += 1;
            match marker {
                0xDA | 0xD9 => Ok(None),
                0xD8 => Err(MetaError::malformed(format!(
                    "JPEG has a second SOI marker at offset {at}"
                ))),
                0x01 | 0xD0..=0xD7 => Ok(Some(Segment {
                    marker,
                    at,
                    payload_at: pos,
                    payload_len: 0,
                    kind: Kind::Other,
                })),
                0x00 => Err(MetaError::malformed(format!(
                    "JPEG has an invalid marker 0xFF00 at offset {at}"
                ))),
                _ => {
                    let l = be_u16(&read_array::<2>(src)?) as u64;
                    if l < 2 {
                        return Err(MetaError::malformed(format!(
                            "JPEG segment 0xFF{marker:02X} at offset {at} has an impossible length {l} (corrupt)"
                        )));
                    }
                    let payload_at = pos + 2;
                    let payload_len = l - 2;
                    if payload_at + payload_len > len {
                        return Err(MetaError::malformed(format!(
                            "JPEG segment 0xFF{marker:02X} at offset {at} declares {l} bytes but the file ends at {len} (truncated)"
                        )));
                    }
                    let mut kind = Kind::Other;
                    if marker == 0xE1 {
                        let n = (XMP_SIG.len() as u64).min(payload_len);
                        let head = read_at(src, payload_at, n, len, "APP1 signature")?;
                        if head == XMP_SIG {
                            kind = Kind::Xmp;
                        } else if head.starts_with(EXIF_SIG) {
                            kind = Kind::Exif;
                        }
                    }
                    Ok(Some(Segment {
                        marker,
                        at,
                        payload_at,
                        payload_len,
                        kind,
                    }))
                }
            }
        })();
        match step {
            Ok(Some(seg)) => {
                pos = seg.end();
                layout.segments.push(seg);
            }
            Ok(None) => {
                layout.body_at = at;
                return Ok(layout);
            }
            Err(e) => return Err((layout, e)),
        }
    }
}

impl FormatHandler for Jpeg {
    fn format(&self) -> Format {
        Format::Jpeg
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.len() >= 3 && head[..3] == [0xFF, 0xD8, 0xFF]
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = checked_len(self, src)?;
        let mut scan = Scan::default();
        let layout = match walk(src, len) {
            Ok(l) => l,
            Err((l, e)) => {
                scan.problem("jpeg", e.message);
                l
            }
        };
        for seg in &layout.segments {
            match seg.kind {
                Kind::Xmp => {
                    let skip = XMP_SIG.len() as u64;
                    let packet = read_at(
                        src,
                        seg.payload_at + skip,
                        seg.payload_len - skip,
                        len,
                        "APP1 XMP",
                    )?;
                    scan.add_xmp("jpeg:APP1:XMP", &packet);
                }
                Kind::Exif => {
                    let block = read_at(src, seg.payload_at, seg.payload_len, len, "APP1 Exif")?;
                    scan.add_exif("jpeg", &block);
                }
                Kind::Other => {
                    // APP11 JUMBF boxes ("JP") carry C2PA manifests.
                    if seg.marker == 0xEB && seg.payload_len >= 2 {
                        let sig = read_at(src, seg.payload_at, 2, len, "APP11")?;
                        scan.c2pa |= sig == b"JP";
                    }
                }
            }
        }
        Ok(scan)
    }

    fn write(
        &self,
        src: &mut dyn Source,
        dst: &mut dyn Sink,
        label_json: &str,
        opts: &WriteOptions,
    ) -> Result<()> {
        let len = checked_len(self, src)?;
        let layout = walk(src, len).map_err(|(_, e)| e)?;
        let existing = match layout.segments.iter().find(|s| s.kind == Kind::Xmp) {
            Some(seg) => {
                let skip = XMP_SIG.len() as u64;
                let raw = read_at(
                    src,
                    seg.payload_at + skip,
                    seg.payload_len - skip,
                    len,
                    "APP1 XMP",
                )?;
                Some(raw)
            }
            None => None,
        };
        let packet = merged_xmp(existing, label_json, opts)?;
        if packet.len() > MAX_XMP {
            return Err(MetaError::too_large(format!(
                "the XMP packet would be {} bytes; one APP1 segment holds {MAX_XMP} (extended XMP is not written)",
                packet.len()
            )));
        }
        // The label goes where the old XMP was, else after the JFIF/Exif segments that must lead.
        let insert_before = layout
            .segments
            .iter()
            .position(|s| s.kind == Kind::Xmp)
            .or_else(|| {
                layout
                    .segments
                    .iter()
                    .position(|s| !(s.marker == 0xE0 || s.kind == Kind::Exif))
            })
            .unwrap_or(layout.segments.len());

        copy_range(src, dst, 0, 2)?;
        for (i, seg) in layout.segments.iter().enumerate() {
            if i == insert_before {
                write_xmp_segment(dst, &packet)?;
            }
            match seg.kind {
                Kind::Xmp => {}
                Kind::Exif => {
                    let mut block =
                        read_at(src, seg.payload_at, seg.payload_len, len, "APP1 Exif")?;
                    let changed =
                        crate::tiff_ifd::blank_label_comments(&mut block).is_ok_and(|(_, c)| c);
                    if changed {
                        copy_range(src, dst, seg.at, seg.payload_at - seg.at)?;
                        dst.write_all(&block)?;
                    } else {
                        copy_range(src, dst, seg.at, seg.end() - seg.at)?;
                    }
                }
                Kind::Other => copy_range(src, dst, seg.at, seg.end() - seg.at)?,
            }
        }
        if insert_before == layout.segments.len() {
            write_xmp_segment(dst, &packet)?;
        }
        copy_rest(src, dst, layout.body_at)
    }
}

fn write_xmp_segment(dst: &mut dyn Sink, packet: &str) -> Result<()> {
    let seg_len = (2 + XMP_SIG.len() + packet.len()) as u16;
    dst.write_all(&[0xFF, 0xE1])?;
    dst.write_all(&seg_len.to_be_bytes())?;
    dst.write_all(XMP_SIG)?;
    dst.write_all(packet.as_bytes())?;
    Ok(())
}
