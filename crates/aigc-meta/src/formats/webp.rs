//! WebP: the label lives in an `XMP ` chunk, which needs the extended format: a `VP8X` chunk with
//! its XMP flag set. Simple lossy (`VP8 `) and lossless (`VP8L`) files are turned into `VP8X`
//! files; the canvas size and alpha bit come from the bitstream header. UserComment in an `EXIF`
//! chunk is read as an alternative carrier.

use crate::bytes::{copy_range, le_u16, le_u32, read_array, read_at, source_len, Sink, Source};
use crate::error::{MetaError, Result};
use crate::handler::{merged_xmp, Format, FormatHandler, Scan, WriteOptions};
use std::io::SeekFrom;

const FLAG_XMP: u8 = 0x04;
const FLAG_ALPHA: u8 = 0x10;

pub struct Webp;

struct Chunk {
    at: u64,
    len: u64,
    fourcc: [u8; 4],
}

impl Chunk {
    fn data_at(&self) -> u64 {
        self.at + 8
    }
    /// End including the pad byte of odd-sized chunks.
    fn end(&self) -> u64 {
        self.at + 8 + self.len + (self.len & 1)
    }
    fn is(&self, fourcc: &[u8; 4]) -> bool {
        &self.fourcc == fourcc
    }
}

/// The chunks inside `RIFF....WEBP`, and where the RIFF data ends.
fn walk(
    src: &mut dyn Source,
    len: u64,
) -> std::result::Result<(Vec<Chunk>, u64), (Vec<Chunk>, MetaError)> {
    let mut chunks = Vec::new();
    let riff = match read_at(src, 0, 12.min(len), len, "RIFF header") {
        Ok(h) if h.len() == 12 && &h[..4] == b"RIFF" && &h[8..12] == b"WEBP" => h,
        Ok(_) => {
            return Err((
                chunks,
                MetaError::malformed("not a WebP file (no RIFF/WEBP header)"),
            ))
        }
        Err(e) => return Err((chunks, e)),
    };
    let riff_end = 8 + le_u32(&riff[4..]) as u64;
    if riff_end > len {
        let e = MetaError::malformed(format!(
            "WebP RIFF header declares {riff_end} bytes but the file has {len} (truncated)"
        ));
        return Err((chunks, e));
    }
    let mut pos = 12u64;
    while pos < riff_end {
        if pos + 8 > riff_end {
            let e = MetaError::malformed(format!(
                "WebP ends inside a chunk header at offset {pos} (truncated)"
            ));
            return Err((chunks, e));
        }
        let step = (|| -> Result<Chunk> {
            src.seek(SeekFrom::Start(pos))?;
            let head = read_array::<8>(src)?;
            let fourcc: [u8; 4] = head[..4].try_into().expect("4 bytes");
            let clen = le_u32(&head[4..]) as u64;
            let c = Chunk {
                at: pos,
                len: clen,
                fourcc,
            };
            if c.data_at() + clen > riff_end {
                return Err(MetaError::malformed(format!(
                    "WebP chunk {:?} at offset {pos} declares {clen} bytes past the end of the RIFF data (truncated)",
                    String::from_utf8_lossy(&fourcc)
                )));
            }
            Ok(c)
        })();
        match step {
            Ok(c) => {
                pos = c.end().min(riff_end);
                chunks.push(c);
            }
            Err(e) => return Err((chunks, e)),
        }
    }
    if chunks.is_empty() {
        return Err((chunks, MetaError::malformed("WebP has no chunks")));
    }
    Ok((chunks, riff_end))
}

/// Canvas size and alpha of a simple-format file, read from its bitstream header.
fn simple_canvas(src: &mut dyn Source, c: &Chunk, len: u64) -> Result<(u32, u32, bool)> {
    if c.is(b"VP8 ") {
        let h = read_at(src, c.data_at(), 10.min(c.len), len, "VP8 frame header")?;
        if h.len() < 10 || h[3..6] != [0x9D, 0x01, 0x2A] {
            return Err(MetaError::malformed(
                "VP8 chunk does not start with a key frame header",
            ));
        }
        Ok((
            (le_u16(&h[6..]) & 0x3FFF) as u32,
            (le_u16(&h[8..]) & 0x3FFF) as u32,
            false,
        ))
    } else {
        let h = read_at(src, c.data_at(), 5.min(c.len), len, "VP8L header")?;
        if h.len() < 5 || h[0] != 0x2F {
            return Err(MetaError::malformed("VP8L chunk has no lossless signature"));
        }
        let bits = le_u32(&h[1..]);
        Ok((
            (bits & 0x3FFF) + 1,
            ((bits >> 14) & 0x3FFF) + 1,
            (bits >> 28) & 1 == 1,
        ))
    }
}

impl FormatHandler for Webp {
    fn format(&self) -> Format {
        Format::Webp
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP"
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = source_len(src)?;
        let mut scan = Scan::default();
        let chunks = match walk(src, len) {
            Ok((c, _)) => c,
            Err((c, e)) => {
                scan.problem("webp", e.message);
                c
            }
        };
        for c in &chunks {
            if c.is(b"XMP ") {
                match read_at(src, c.data_at(), c.len, len, "WebP XMP chunk") {
                    Ok(p) => scan.add_xmp("webp:XMP", &p),
                    Err(e) => scan.problem("webp:XMP", e.message),
                }
            } else if c.is(b"EXIF") {
                match read_at(src, c.data_at(), c.len, len, "WebP EXIF chunk") {
                    Ok(b) => scan.add_exif("webp:EXIF", &b),
                    Err(e) => scan.problem("webp:EXIF", e.message),
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
        let len = source_len(src)?;
        let (chunks, riff_end) = walk(src, len).map_err(|(_, e)| e)?;
        let existing = match chunks.iter().find(|c| c.is(b"XMP ")) {
            Some(c) => {
                let raw = read_at(src, c.data_at(), c.len, len, "WebP XMP chunk")?;
                Some(raw)
            }
            None => None,
        };
        let packet = merged_xmp(existing, label_json, opts)?;

        let first = &chunks[0];
        let new_vp8x: Option<[u8; 10]> = if first.is(b"VP8X") {
            let mut d: [u8; 10] =
                read_at(src, first.data_at(), 10.min(first.len), len, "VP8X chunk")?
                    .try_into()
                    .map_err(|_| MetaError::malformed("VP8X chunk is shorter than 10 bytes"))?;
            d[0] |= FLAG_XMP;
            Some(d)
        } else if first.is(b"VP8 ") || first.is(b"VP8L") {
            let (w, h, alpha) = simple_canvas(src, first, len)?;
            let mut d = [0u8; 10];
            d[0] = FLAG_XMP | if alpha { FLAG_ALPHA } else { 0 };
            d[4..7].copy_from_slice(&(w - 1).to_le_bytes()[..3]);
            d[7..10].copy_from_slice(&(h - 1).to_le_bytes()[..3]);
            Some(d)
        } else {
            return Err(MetaError::malformed(format!(
                "WebP starts with chunk {:?}, not VP8X, VP8 or VP8L",
                String::from_utf8_lossy(&first.fourcc)
            )));
        };
        // Spec order: VP8X, ICCP, ANIM, image data, EXIF, XMP, then unknown chunks. The new XMP
        // goes where the old one was, else after the last known chunk.
        let known: [&[u8; 4]; 8] = [
            b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L", b"EXIF",
        ];
        let insert_after = chunks
            .iter()
            .position(|c| c.is(b"XMP "))
            .map(|i| i as isize - 1)
            .unwrap_or_else(|| {
                chunks
                    .iter()
                    .rposition(|c| known.iter().any(|k| c.is(k)))
                    .unwrap_or(0) as isize
            });

        // Output size: header + VP8X + kept chunks + XMP chunk.
        let padded = |n: u64| n + (n & 1);
        let xmp_len = packet.len() as u64;
        let mut body = 4 + 8 + 10 + 8 + padded(xmp_len);
        for c in chunks.iter().filter(|c| !c.is(b"VP8X") && !c.is(b"XMP ")) {
            body += 8 + padded(c.len);
        }
        if body > u32::MAX as u64 {
            return Err(MetaError::too_large(
                "the WebP file would exceed the 4 GB RIFF limit",
            ));
        }
        dst.write_all(b"RIFF")?;
        dst.write_all(&(body as u32).to_le_bytes())?;
        dst.write_all(b"WEBP")?;
        dst.write_all(b"VP8X")?;
        dst.write_all(&10u32.to_le_bytes())?;
        dst.write_all(&new_vp8x.expect("set above"))?;
        let write_xmp = |dst: &mut dyn Sink| -> Result<()> {
            dst.write_all(b"XMP ")?;
            dst.write_all(&(xmp_len as u32).to_le_bytes())?;
            dst.write_all(packet.as_bytes())?;
            if xmp_len & 1 == 1 {
                dst.write_all(&[0])?;
            }
            Ok(())
        };
        if insert_after < 0 {
            write_xmp(dst)?;
        }
        for (i, c) in chunks.iter().enumerate() {
            if c.is(b"EXIF") {
                let mut block = read_at(src, c.data_at(), c.len, len, "WebP EXIF chunk")?;
                if crate::tiff_ifd::blank_label_comments(&mut block)
                    .is_ok_and(|(_, changed)| changed)
                {
                    copy_range(src, dst, c.at, 8)?;
                    dst.write_all(&block)?;
                    if c.len & 1 == 1 {
                        dst.write_all(&[0])?;
                    }
                } else {
                    copy_chunk(src, dst, c, riff_end)?;
                }
            } else if !c.is(b"VP8X") && !c.is(b"XMP ") {
                copy_chunk(src, dst, c, riff_end)?;
            }
            if i as isize == insert_after {
                write_xmp(dst)?;
            }
        }
        // Bytes after the RIFF data are not part of the image; keep them.
        crate::bytes::copy_rest(src, dst, riff_end)
    }
}

/// Copies a chunk with its pad byte as stored; a pad missing at the very end is added.
fn copy_chunk(src: &mut dyn Source, dst: &mut dyn Sink, c: &Chunk, riff_end: u64) -> Result<()> {
    if c.end() <= riff_end {
        return copy_range(src, dst, c.at, c.end() - c.at);
    }
    copy_range(src, dst, c.at, 8 + c.len)?;
    dst.write_all(&[0])?;
    Ok(())
}
