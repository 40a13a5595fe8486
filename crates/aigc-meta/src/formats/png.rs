//! PNG: the label lives in an uncompressed `iTXt` chunk with keyword `XML:com.adobe.xmp` placed
//! before the first `IDAT`. Also read: `tEXt`/`zTXt`/`iTXt` keyword `AIGC` (Pillow and others
//! write these), XMP in `zTXt`/`tEXt`, and UserComment in an `eXIf` chunk.

use crate::bytes::{be_u32, copy_rest, read_array, read_at, Sink, Source, MAX_CARRIER};
use crate::error::{MetaError, Result};
use crate::handler::{checked_len, merged_xmp, Format, FormatHandler, Scan, WriteOptions};
use std::io::{Read, SeekFrom};

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
const XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";
const LABEL_KEYWORD: &[u8] = b"AIGC";

pub struct Png;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// XMP in a text chunk.
    Xmp,
    /// Label JSON in a text chunk keyed `AIGC`.
    Label,
    Exif,
    Other,
}

struct Chunk {
    at: u64,
    len: u64,
    ty: [u8; 4],
    kind: Kind,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.at + 12 + self.len
    }
    fn name(&self) -> String {
        String::from_utf8_lossy(&self.ty).into_owned()
    }
}

struct Layout {
    chunks: Vec<Chunk>,
    /// End of IEND; anything after it is kept as it is.
    iend_end: Option<u64>,
}

fn walk(src: &mut dyn Source, len: u64) -> std::result::Result<Layout, (Layout, MetaError)> {
    let mut layout = Layout {
        chunks: Vec::new(),
        iend_end: None,
    };
    let mut pos = 8u64;
    while pos < len {
        let step = (|| -> Result<Chunk> {
            if pos + 12 > len {
                return Err(MetaError::malformed(format!(
                    "PNG ends inside a chunk header at offset {pos} (truncated)"
                )));
            }
            src.seek(SeekFrom::Start(pos))?;
            let head = read_array::<8>(src)?;
            let clen = be_u32(&head) as u64;
            let ty: [u8; 4] = head[4..8].try_into().expect("4 bytes");
            if clen > 0x7FFF_FFFF || !ty.iter().all(u8::is_ascii_alphabetic) {
                return Err(MetaError::malformed(format!(
                    "PNG chunk at offset {pos} is malformed (type {:?}, length {clen})",
                    String::from_utf8_lossy(&ty)
                )));
            }
            if pos + 12 + clen > len {
                return Err(MetaError::malformed(format!(
                    "PNG chunk {} at offset {pos} declares {clen} bytes but the file ends at {len} (truncated)",
                    String::from_utf8_lossy(&ty)
                )));
            }
            let kind = match &ty {
                b"iTXt" | b"tEXt" | b"zTXt" => {
                    let n = clen.min(80);
                    let head = read_at(src, pos + 8, n, len, "PNG text chunk")?;
                    let keyword = head.split(|&b| b == 0).next().unwrap_or_default();
                    if keyword == XMP_KEYWORD {
                        Kind::Xmp
                    } else if keyword == LABEL_KEYWORD {
                        Kind::Label
                    } else {
                        Kind::Other
                    }
                }
                b"eXIf" => Kind::Exif,
                _ => Kind::Other,
            };
            Ok(Chunk {
                at: pos,
                len: clen,
                ty,
                kind,
            })
        })();
        match step {
            Ok(chunk) => {
                pos = chunk.end();
                let is_end = &chunk.ty == b"IEND";
                layout.chunks.push(chunk);
                if is_end {
                    layout.iend_end = Some(pos);
                    return Ok(layout);
                }
            }
            Err(e) => return Err((layout, e)),
        }
    }
    let e = MetaError::malformed(format!(
        "PNG ends at offset {len} without an IEND chunk (truncated)"
    ));
    Err((layout, e))
}

/// Reads a chunk's data and checks its CRC.
fn read_chunk(src: &mut dyn Source, c: &Chunk, len: u64) -> Result<Vec<u8>> {
    let all = read_at(
        src,
        c.at + 4,
        4 + c.len + 4,
        len,
        &format!("PNG {} chunk", c.name()),
    )?;
    let (body, crc) = all.split_at(all.len() - 4);
    if crc32fast::hash(body) != be_u32(crc) {
        return Err(MetaError::malformed(format!(
            "PNG {} chunk at offset {} has a bad CRC (corrupt)",
            c.name(),
            c.at
        )));
    }
    Ok(body[4..].to_vec())
}

fn inflate(data: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(MAX_CARRIER + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            MetaError::malformed(format!("{what}: compressed text does not inflate: {e}"))
        })?;
    if out.len() as u64 > MAX_CARRIER {
        return Err(MetaError::too_large(format!(
            "{what}: text inflates past {MAX_CARRIER} bytes"
        )));
    }
    Ok(out)
}

/// The text of a `tEXt`, `zTXt` or `iTXt` chunk's data.
fn chunk_text(ty: &[u8; 4], data: &[u8]) -> Result<Vec<u8>> {
    let what = format!("PNG {} chunk", String::from_utf8_lossy(ty));
    let nul = data
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| MetaError::malformed(format!("{what} has no keyword terminator")))?;
    let rest = &data[nul + 1..];
    match ty {
        b"tEXt" => Ok(rest
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .into_bytes()),
        b"zTXt" => {
            if rest.is_empty() || rest[0] != 0 {
                return Err(MetaError::malformed(format!(
                    "{what} has an unknown compression method"
                )));
            }
            inflate(&rest[1..], &what)
        }
        _ => {
            if rest.len() < 2 {
                return Err(MetaError::malformed(format!("{what} is truncated")));
            }
            let (flag, method) = (rest[0], rest[1]);
            let mut p = &rest[2..];
            for _ in 0..2 {
                let z = p
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| MetaError::malformed(format!("{what} is truncated")))?;
                p = &p[z + 1..];
            }
            match (flag, method) {
                (0, _) => Ok(p.to_vec()),
                (1, 0) => inflate(p, &what),
                _ => Err(MetaError::malformed(format!(
                    "{what} has an unknown compression method"
                ))),
            }
        }
    }
}

impl FormatHandler for Png {
    fn format(&self) -> Format {
        Format::Png
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.starts_with(&SIGNATURE)
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = checked_len(self, src)?;
        let mut scan = Scan::default();
        let layout = match walk(src, len) {
            Ok(l) => l,
            Err((l, e)) => {
                scan.problem("png", e.message);
                l
            }
        };
        for c in &layout.chunks {
            scan.c2pa |= &c.ty == b"caBX";
            if c.kind == Kind::Other {
                continue;
            }
            let carrier = match c.kind {
                Kind::Xmp => format!("png:{}:XMP", c.name()),
                Kind::Label => format!("png:{}:AIGC", c.name()),
                _ => "png:eXIf".to_string(),
            };
            let text = read_chunk(src, c, len).and_then(|d| {
                if c.kind == Kind::Exif {
                    Ok(d)
                } else {
                    chunk_text(&c.ty, &d)
                }
            });
            match (c.kind, text) {
                (_, Err(e)) => scan.problem(&carrier, e.message),
                (Kind::Xmp, Ok(t)) => scan.add_xmp(&carrier, &t),
                (Kind::Label, Ok(t)) => {
                    scan.add_json(&carrier, String::from_utf8_lossy(&t).into_owned())
                }
                (_, Ok(block)) => scan.add_exif("png:eXIf", &block),
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
        let first_idat = layout
            .chunks
            .iter()
            .position(|c| &c.ty == b"IDAT")
            .ok_or_else(|| MetaError::malformed("PNG has no IDAT chunk"))?;
        let existing = match layout.chunks.iter().find(|c| c.kind == Kind::Xmp) {
            Some(c) => {
                let text = chunk_text(&c.ty, &read_chunk(src, c, len)?)?;
                Some(text)
            }
            None => None,
        };
        let packet = merged_xmp(existing, label_json, opts)?;
        let insert_before = layout
            .chunks
            .iter()
            .position(|c| c.kind == Kind::Xmp)
            .filter(|&i| i < first_idat)
            .unwrap_or(first_idat);

        dst.write_all(&SIGNATURE)?;
        let mut buf = vec![0u8; 256 << 10];
        for (i, c) in layout.chunks.iter().enumerate() {
            if i == insert_before {
                let mut data = Vec::with_capacity(XMP_KEYWORD.len() + 5 + packet.len());
                data.extend_from_slice(XMP_KEYWORD);
                data.extend_from_slice(&[0, 0, 0, 0, 0]); // keyword end, uncompressed, method, no language, no translation
                data.extend_from_slice(packet.as_bytes());
                write_chunk(dst, b"iTXt", &data)?;
            }
            match c.kind {
                Kind::Xmp | Kind::Label => {}
                Kind::Exif => {
                    let mut block = read_chunk(src, c, len)?;
                    crate::tiff_ifd::blank_label_comments(&mut block).ok();
                    write_chunk(dst, &c.ty, &block)?;
                }
                Kind::Other => copy_checked(src, dst, c, &mut buf)?,
            }
        }
        copy_rest(src, dst, layout.iend_end.unwrap_or(len))
    }
}

/// Copies a chunk unchanged, checking its CRC on the way (a corrupt input is refused, not passed on).
fn copy_checked(src: &mut dyn Source, dst: &mut dyn Sink, c: &Chunk, buf: &mut [u8]) -> Result<()> {
    src.seek(SeekFrom::Start(c.at))?;
    let mut head = [0u8; 8];
    src.read_exact(&mut head)?;
    dst.write_all(&head)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[4..]);
    let mut left = c.len;
    while left > 0 {
        let n = (left as usize).min(buf.len());
        src.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let crc = read_array::<4>(src)?;
    if hasher.finalize() != u32::from_be_bytes(crc) {
        return Err(MetaError::malformed(format!(
            "PNG {} chunk at offset {} has a bad CRC (corrupt)",
            c.name(),
            c.at
        )));
    }
    dst.write_all(&crc)?;
    Ok(())
}

fn write_chunk(dst: &mut dyn Sink, ty: &[u8; 4], data: &[u8]) -> Result<()> {
    dst.write_all(&(data.len() as u32).to_be_bytes())?;
    dst.write_all(ty)?;
    dst.write_all(data)?;
    let mut h = crc32fast::Hasher::new();
    h.update(ty);
    h.update(data);
    dst.write_all(&h.finalize().to_be_bytes())?;
    Ok(())
}

/// Re-encoded pixels with the original's metadata: the `IHDR`, palette, transparency and `IDAT`
/// of `encoded`, with every ancillary chunk of `original` (ICC, gamma, text, EXIF, physical size...)
/// put back on its side of the image data. Chunks tied to the old pixel layout (`tRNS`, `bKGD`,
/// `sBIT`, `hIST`, `sPLT`) are dropped, since the colour type may have changed.
pub fn carry_metadata(original: &[u8], encoded: &[u8]) -> Result<Vec<u8>> {
    let walk_all = |data: &[u8], what: &str| -> Result<Layout> {
        if !data.starts_with(&SIGNATURE) {
            return Err(MetaError::malformed(format!("{what} PNG has no signature")));
        }
        walk(&mut std::io::Cursor::new(data), data.len() as u64).map_err(|(_, e)| e)
    };
    let orig = walk_all(original, "the original")?;
    let enc = walk_all(encoded, "the re-encoded")?;
    let bytes = |data: &'_ [u8], c: &Chunk| data[c.at as usize..c.end() as usize].to_vec();
    let layout_bound = |c: &Chunk| {
        c.ty[0].is_ascii_uppercase()
            || matches!(&c.ty, b"tRNS" | b"bKGD" | b"sBIT" | b"hIST" | b"sPLT")
    };
    let first_idat = orig
        .chunks
        .iter()
        .position(|c| &c.ty == b"IDAT")
        .unwrap_or(orig.chunks.len());
    let (before, after): (Vec<_>, Vec<_>) = orig
        .chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| !layout_bound(c))
        .partition(|(i, _)| *i < first_idat);
    let mut out = Vec::with_capacity(encoded.len() + original.len().min(1 << 20));
    out.extend_from_slice(&SIGNATURE);
    for c in enc.chunks.iter().filter(|c| &c.ty == b"IHDR") {
        out.extend(bytes(encoded, c));
    }
    for (_, c) in &before {
        out.extend(bytes(original, c));
    }
    for c in enc
        .chunks
        .iter()
        .filter(|c| !matches!(&c.ty, b"IHDR" | b"IEND"))
    {
        out.extend(bytes(encoded, c));
    }
    for (_, c) in &after {
        out.extend(bytes(original, c));
    }
    for c in enc.chunks.iter().filter(|c| &c.ty == b"IEND") {
        out.extend(bytes(encoded, c));
    }
    Ok(out)
}
