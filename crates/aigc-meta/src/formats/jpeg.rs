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

/// Re-encoded pixels with the original's metadata: SOI, then every APPn and COM segment of
/// `original` in its order (EXIF, ICC, XMP, IPTC, JFIF...), then the tables, frame and scans of
/// `encoded`, whose own APPn/COM segments are dropped. EXIF orientation therefore still applies:
/// the caller keeps the pixels in their stored orientation.
pub fn carry_metadata(original: &[u8], encoded: &[u8]) -> Result<Vec<u8>> {
    let walk_all = |data: &[u8], what: &str| -> Result<Layout> {
        if !data.starts_with(&[0xFF, 0xD8]) {
            return Err(MetaError::malformed(format!(
                "{what} JPEG has no SOI marker"
            )));
        }
        walk(&mut std::io::Cursor::new(data), data.len() as u64).map_err(|(_, e)| e)
    };
    let orig = walk_all(original, "the original")?;
    let enc = walk_all(encoded, "the re-encoded")?;
    let is_meta = |m: u8| (0xE0..=0xEF).contains(&m) || m == 0xFE;
    let mut out = Vec::with_capacity(encoded.len() + original.len().min(1 << 20));
    out.extend_from_slice(&[0xFF, 0xD8]);
    for s in orig.segments.iter().filter(|s| is_meta(s.marker)) {
        out.extend_from_slice(&original[s.at as usize..s.end() as usize]);
    }
    for s in enc.segments.iter().filter(|s| !is_meta(s.marker)) {
        out.extend_from_slice(&encoded[s.at as usize..s.end() as usize]);
    }
    out.extend_from_slice(&encoded[enc.body_at as usize..]);
    Ok(out)
}

/// The IJG quality (1-100) whose scaled standard luminance table is closest to the file's
/// table 0, or `None` without one. Encoders other than libjpeg use other tables; the nearest IJG
/// quality still names their quality class.
pub fn estimate_quality(data: &[u8]) -> Option<u8> {
    // The IJG (Annex K) luminance table, in the zigzag order DQT stores.
    const STD_LUMA_ZIGZAG: [u16; 64] = [
        16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35,
        37, 29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80,
        109, 81, 87, 95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
    ];
    let layout = walk(&mut std::io::Cursor::new(data), data.len() as u64).ok()?;
    let mut table = None;
    for s in layout.segments.iter().filter(|s| s.marker == 0xDB) {
        let mut p = &data[s.payload_at as usize..s.end() as usize];
        while let Some((&pq_tq, rest)) = p.split_first() {
            let wide = pq_tq >> 4 == 1;
            let n = if wide { 128 } else { 64 };
            if rest.len() < n {
                break;
            }
            if pq_tq & 0x0F == 0 {
                let t: Vec<u16> = if wide {
                    rest[..n].chunks(2).map(be_u16).collect()
                } else {
                    rest[..n].iter().map(|&v| v as u16).collect()
                };
                table = Some(t);
            }
            p = &rest[n..];
        }
    }
    let table = table?;
    (1..=100u32)
        .min_by_key(|&q| {
            let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
            table
                .iter()
                .zip(STD_LUMA_ZIGZAG)
                .map(|(&have, std)| {
                    let want = ((std as u32 * scale + 50) / 100).clamp(1, 255);
                    (have as i64 - want as i64).unsigned_abs()
                })
                .sum::<u64>()
        })
        .map(|q| q as u8)
}

/// The number of colour components in the frame header (1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK).
pub fn frame_components(data: &[u8]) -> Option<u8> {
    let layout = walk(&mut std::io::Cursor::new(data), data.len() as u64).ok()?;
    let sof = layout
        .segments
        .iter()
        .find(|s| matches!(s.marker, 0xC0..=0xCF) && !matches!(s.marker, 0xC4 | 0xC8 | 0xCC))?;
    data.get(sof.payload_at as usize + 5).copied()
}
