//! GIF: the label lives in the XMP application extension (`XMP DataXMP`): the packet bytes
//! written raw, followed by the 258-byte "magic trailer" (0x01, 0xFF down to 0x00, then the block
//! terminator) that makes a decoder walking sub-blocks land on the terminator.

use crate::bytes::{copy_range, copy_rest, read_array, read_at, Sink, Source, MAX_CARRIER};
use crate::error::{MetaError, Result};
use crate::handler::{checked_len, merged_xmp, Format, FormatHandler, Scan, WriteOptions};
use std::io::SeekFrom;

const XMP_APP_ID: &[u8; 11] = b"XMP DataXMP";

pub struct Gif;

/// The 258 bytes after the packet: 0x01, 0xFF, 0xFE, ..., 0x00, then the terminator 0x00.
fn magic_trailer() -> Vec<u8> {
    let mut t = Vec::with_capacity(258);
    t.push(1);
    t.extend((0..=255u8).rev());
    t.push(0);
    t
}

#[derive(PartialEq, Eq)]
enum Kind {
    Xmp,
    /// An image descriptor or a graphic control extension: where image data begins.
    Image,
    Other,
}

struct Block {
    at: u64,
    end: u64,
    kind: Kind,
}

struct Layout {
    /// End of the header, logical screen descriptor and global colour table.
    header_end: u64,
    blocks: Vec<Block>,
    /// Offset of the trailer byte 0x3B.
    trailer_at: u64,
}

/// Skips data sub-blocks starting at the current position; returns the offset after the terminator.
fn skip_sub_blocks(src: &mut dyn Source, mut pos: u64, len: u64) -> Result<u64> {
    loop {
        if pos >= len {
            return Err(MetaError::malformed(format!(
                "GIF ends inside data sub-blocks at offset {pos} (truncated)"
            )));
        }
        src.seek(SeekFrom::Start(pos))?;
        let [n] = read_array::<1>(src)?;
        pos += 1 + n as u64;
        if n == 0 {
            return Ok(pos);
        }
    }
}

fn walk(src: &mut dyn Source, len: u64) -> std::result::Result<Layout, (Layout, MetaError)> {
    let mut layout = Layout {
        header_end: 13,
        blocks: Vec::new(),
        trailer_at: len,
    };
    let head = match read_at(src, 0, 13.min(len), len, "GIF header") {
        Ok(h) if h.len() == 13 => h,
        Ok(_) => return Err((layout, MetaError::malformed("GIF header is truncated"))),
        Err(e) => return Err((layout, e)),
    };
    if head[10] & 0x80 != 0 {
        layout.header_end += 3 * (2u64 << (head[10] & 7));
    }
    let mut pos = layout.header_end;
    loop {
        if pos >= len {
            let e = MetaError::malformed(format!(
                "GIF ends at offset {len} without a trailer (truncated)"
            ));
            return Err((layout, e));
        }
        let at = pos;
        let step = (|| -> Result<Option<Block>> {
            src.seek(SeekFrom::Start(pos))?;
            let [intro] = read_array::<1>(src)?;
            match intro {
                0x3B => Ok(None),
                0x2C => {
                    let d = read_at(src, at + 1, 9, len, "GIF image descriptor")?;
                    let mut p = at + 10;
                    if d[8] & 0x80 != 0 {
                        p += 3 * (2u64 << (d[8] & 7));
                    }
                    let end = skip_sub_blocks(src, p + 1, len)?; // +1: LZW minimum code size
                    Ok(Some(Block {
                        at,
                        end,
                        kind: Kind::Image,
                    }))
                }
                0x21 => {
                    let [label, first] = read_array::<2>(src)?;
                    let mut kind = if label == 0xF9 {
                        Kind::Image
                    } else {
                        Kind::Other
                    };
                    if label == 0xFF && first == 11 {
                        let id = read_at(src, at + 3, 11, len, "GIF application extension")?;
                        if id == XMP_APP_ID {
                            kind = Kind::Xmp;
                        }
                    }
                    let end = skip_sub_blocks(src, at + 2, len)?;
                    Ok(Some(Block { at, end, kind }))
                }
                b => Err(MetaError::malformed(format!(
                    "GIF has an unknown block 0x{b:02X} at offset {at}"
                ))),
            }
        })();
        match step {
            Ok(Some(b)) => {
                pos = b.end;
                layout.blocks.push(b);
            }
            Ok(None) => {
                layout.trailer_at = at;
                return Ok(layout);
            }
            Err(e) => return Err((layout, e)),
        }
    }
}

/// The XMP packet of an `XMP DataXMP` extension block.
fn read_packet(src: &mut dyn Source, b: &Block, len: u64) -> Result<Vec<u8>> {
    let start = b.at + 14; // 0x21 0xFF 0x0B + 11-byte identifier
    let total = b.end - start;
    if total < 258 {
        return Err(MetaError::malformed(
            "GIF XMP extension is shorter than its magic trailer",
        ));
    }
    if total - 258 > MAX_CARRIER {
        return Err(MetaError::too_large(
            "GIF XMP extension is larger than the metadata limit",
        ));
    }
    let mut raw = read_at(src, start, total, len, "GIF XMP extension")?;
    if raw[raw.len() - 258..] != magic_trailer()[..] {
        return Err(MetaError::malformed(
            "GIF XMP extension has no valid magic trailer",
        ));
    }
    raw.truncate(raw.len() - 258);
    Ok(raw)
}

impl FormatHandler for Gif {
    fn format(&self) -> Format {
        Format::Gif
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a")
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = checked_len(self, src)?;
        let mut scan = Scan::default();
        let layout = match walk(src, len) {
            Ok(l) => l,
            Err((l, e)) => {
                scan.problem("gif", e.message);
                l
            }
        };
        for b in layout.blocks.iter().filter(|b| b.kind == Kind::Xmp) {
            match read_packet(src, b, len) {
                Ok(p) => scan.add_xmp("gif:XMP", &p),
                Err(e) => scan.problem("gif:XMP", e.message),
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
        let existing = match layout.blocks.iter().find(|b| b.kind == Kind::Xmp) {
            Some(b) => Some(read_packet(src, b, len)?),
            None => None,
        };
        let packet = merged_xmp(existing, label_json, opts)?;
        if packet.as_bytes().contains(&0) {
            return Err(MetaError::malformed(
                "XMP packet contains a NUL byte, which GIF cannot carry",
            ));
        }
        // Before the first image (or its graphic control extension), after leading extensions
        // such as the NETSCAPE loop block; else where the old XMP was.
        let insert_before = layout
            .blocks
            .iter()
            .position(|b| b.kind == Kind::Xmp)
            .or_else(|| layout.blocks.iter().position(|b| b.kind == Kind::Image))
            .unwrap_or(layout.blocks.len());

        // Extensions need GIF89a; a GIF87a header is the one byte outside the carrier that changes.
        dst.write_all(b"GIF89a")?;
        copy_range(src, dst, 6, layout.header_end - 6)?;
        for (i, b) in layout.blocks.iter().enumerate() {
            if i == insert_before {
                write_extension(dst, &packet)?;
            }
            if b.kind != Kind::Xmp {
                copy_range(src, dst, b.at, b.end - b.at)?;
            }
        }
        if insert_before == layout.blocks.len() {
            write_extension(dst, &packet)?;
        }
        copy_rest(src, dst, layout.trailer_at)
    }
}

fn write_extension(dst: &mut dyn Sink, packet: &str) -> Result<()> {
    dst.write_all(&[0x21, 0xFF, 0x0B])?;
    dst.write_all(XMP_APP_ID)?;
    dst.write_all(packet.as_bytes())?;
    dst.write_all(&magic_trailer())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn trailer_shape() {
        let t = super::magic_trailer();
        assert_eq!(t.len(), 258);
        assert_eq!(&t[..3], &[1, 0xFF, 0xFE]);
        assert_eq!(&t[255..], &[1, 0, 0]);
    }
}
