//! TIFF structure (classic and BigTIFF): the header and image file directories. Used for TIFF
//! files themselves and for the EXIF blocks inside JPEG, PNG, WebP and HEIF.
//!
//! Every offset is checked against the data length before it is followed, entry counts are bounded
//! by the bytes that could hold them, and directory chains are followed with a visited set, so
//! loops and absurd counts are errors rather than hangs or huge allocations.

use crate::bytes::{read_at, Source};
use crate::error::{MetaError, Result};
use std::io::{Cursor, SeekFrom};

pub const TAG_XMP: u16 = 700;
pub const TAG_EXIF_IFD: u16 = 0x8769;
pub const TAG_USER_COMMENT: u16 = 0x9286;

/// Where the TIFF data starts inside its source, its byte order and flavour.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// Absolute offset of the `II`/`MM` bytes; every TIFF offset is relative to it.
    pub base: u64,
    pub little_endian: bool,
    pub big_tiff: bool,
    /// Relative offset of IFD0.
    pub ifd0: u64,
    /// Absolute offset of the field that holds `ifd0`.
    pub ifd0_field: u64,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub tag: u16,
    pub typ: u16,
    pub count: u64,
    /// The entry exactly as stored (12 bytes, or 20 in BigTIFF).
    pub raw: Vec<u8>,
    /// Absolute offset of the value's bytes (inline in the entry or out of line).
    pub value_at: u64,
    /// Length of the value in bytes.
    pub value_len: u64,
    /// Absolute offset of the entry itself.
    pub entry_at: u64,
}

#[derive(Clone, Debug)]
pub struct Ifd {
    /// Relative offset of the directory.
    pub offset: u64,
    pub entries: Vec<Entry>,
    /// Relative offset of the next IFD (0 for none).
    pub next: u64,
}

impl Header {
    pub fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.little_endian {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }
    pub fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.little_endian {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }
    pub fn u64(&self, b: &[u8]) -> u64 {
        let a: [u8; 8] = b[..8].try_into().expect("8 bytes");
        if self.little_endian {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }
    /// Encodes an offset or count as this file stores it (4 or 8 bytes).
    pub fn offset_bytes(&self, v: u64) -> Vec<u8> {
        match (self.big_tiff, self.little_endian) {
            (true, true) => v.to_le_bytes().to_vec(),
            (true, false) => v.to_be_bytes().to_vec(),
            (false, true) => (v as u32).to_le_bytes().to_vec(),
            (false, false) => (v as u32).to_be_bytes().to_vec(),
        }
    }
    pub fn u16_bytes(&self, v: u16) -> [u8; 2] {
        if self.little_endian {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    }
    pub fn entry_size(&self) -> u64 {
        if self.big_tiff {
            20
        } else {
            12
        }
    }
    fn inline_size(&self) -> u64 {
        if self.big_tiff {
            8
        } else {
            4
        }
    }
}

/// True when `head` starts with a TIFF header.
pub fn is_tiff(head: &[u8]) -> bool {
    head.len() >= 4
        && matches!(
            &head[..4],
            b"II*\0" | b"MM\0*" | [b'I', b'I', 0x2B, 0] | [b'M', b'M', 0, 0x2B]
        )
}

pub fn read_header(src: &mut dyn Source, base: u64, len: u64) -> Result<Header> {
    let head = read_at(
        src,
        base,
        16.min(len.saturating_sub(base)),
        len,
        "TIFF header",
    )?;
    if !is_tiff(&head) {
        return Err(MetaError::malformed("TIFF header is not II*\\0 or MM\\0*"));
    }
    let little_endian = head[0] == b'I';
    let mut h = Header {
        base,
        little_endian,
        big_tiff: false,
        ifd0: 0,
        ifd0_field: base + 4,
    };
    if h.u16(&head[2..]) == 43 {
        if head.len() < 16 || h.u16(&head[4..]) != 8 {
            return Err(MetaError::malformed(
                "BigTIFF header is truncated or has a bad offset size",
            ));
        }
        h.big_tiff = true;
        h.ifd0_field = base + 8;
        h.ifd0 = h.u64(&head[8..]);
    } else {
        if head.len() < 8 {
            return Err(MetaError::malformed("TIFF header is truncated"));
        }
        h.ifd0 = h.u32(&head[4..]) as u64;
    }
    Ok(h)
}

fn type_size(typ: u16) -> u64 {
    match typ {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => 1,
    }
}

/// Reads the directory at relative offset `offset`.
pub fn read_ifd(src: &mut dyn Source, h: &Header, offset: u64, len: u64) -> Result<Ifd> {
    let abs = h
        .base
        .checked_add(offset)
        .filter(|&a| a < len)
        .ok_or_else(|| {
            MetaError::malformed(format!(
                "TIFF directory offset {offset} points past the end of the data"
            ))
        })?;
    let count_size = if h.big_tiff { 8 } else { 2 };
    let cb = read_at(src, abs, count_size, len, "TIFF directory count")?;
    let count = if h.big_tiff {
        h.u64(&cb)
    } else {
        h.u16(&cb) as u64
    };
    let es = h.entry_size();
    let room = (len - abs - count_size) / es;
    if count > room {
        return Err(MetaError::malformed(format!(
            "TIFF directory at {offset} declares {count} entries but only {room} fit before the end"
        )));
    }
    let table = read_at(src, abs + count_size, count * es, len, "TIFF directory")?;
    let mut entries = Vec::with_capacity(count as usize);
    for (i, raw) in table.chunks_exact(es as usize).enumerate() {
        let tag = h.u16(raw);
        let typ = h.u16(&raw[2..]);
        let (n, field_at) = if h.big_tiff {
            (h.u64(&raw[4..]), 12)
        } else {
            (h.u32(&raw[4..]) as u64, 8)
        };
        let value_len = n.saturating_mul(type_size(typ));
        let entry_at = abs + count_size + i as u64 * es;
        let value_at = if value_len <= h.inline_size() {
            entry_at + field_at
        } else {
            let off = if h.big_tiff {
                h.u64(&raw[field_at as usize..])
            } else {
                h.u32(&raw[field_at as usize..]) as u64
            };
            h.base.saturating_add(off)
        };
        entries.push(Entry {
            tag,
            typ,
            count: n,
            raw: raw.to_vec(),
            value_at,
            value_len,
            entry_at,
        });
    }
    let next_at = abs + count_size + count * es;
    let nb = read_at(
        src,
        next_at,
        h.inline_size(),
        len,
        "TIFF next-directory offset",
    )
    .unwrap_or_else(|_| vec![0; h.inline_size() as usize]);
    let next = if h.big_tiff {
        h.u64(&nb)
    } else {
        h.u32(&nb) as u64
    };
    Ok(Ifd {
        offset,
        entries,
        next,
    })
}

/// A UserComment value: where it sits and what it says.
#[derive(Clone, Debug)]
pub struct UserComment {
    /// Absolute offset of the value (8-byte charset header included).
    pub at: u64,
    pub len: u64,
    pub text: String,
    /// `ifd0` or `exif`.
    pub ifd: &'static str,
}

impl UserComment {
    /// True when the comment holds a label (bare or wrapped JSON), valid or not.
    pub fn is_label(&self) -> bool {
        let t = self.text.trim();
        t.starts_with('{') && (t.contains("\"AIGC\"") || t.contains("\"ContentProducer\""))
    }
}

/// Finds UserComment (0x9286) in IFD0 and in the Exif IFD of the TIFF data at `base`.
pub fn find_user_comments(src: &mut dyn Source, base: u64, len: u64) -> Result<Vec<UserComment>> {
    let h = read_header(src, base, len)?;
    let ifd0 = read_ifd(src, &h, h.ifd0, len)?;
    let mut out = Vec::new();
    collect_comments(src, &h, &ifd0, "ifd0", len, &mut out)?;
    if let Some(ptr) = ifd0.entries.iter().find(|e| e.tag == TAG_EXIF_IFD) {
        let b = read_at(
            src,
            ptr.value_at,
            h.inline_size().min(ptr.value_len.max(4)),
            len,
            "Exif IFD pointer",
        )?;
        let exif_off = if h.big_tiff && b.len() >= 8 {
            h.u64(&b)
        } else {
            h.u32(&b) as u64
        };
        if exif_off == h.ifd0 {
            return Err(MetaError::malformed("Exif IFD pointer loops back to IFD0"));
        }
        let exif = read_ifd(src, &h, exif_off, len)?;
        if exif.entries.iter().any(|e| e.tag == TAG_EXIF_IFD) {
            return Err(MetaError::malformed(
                "Exif IFD points to an Exif IFD again (loop)",
            ));
        }
        collect_comments(src, &h, &exif, "exif", len, &mut out)?;
    }
    Ok(out)
}

fn collect_comments(
    src: &mut dyn Source,
    h: &Header,
    ifd: &Ifd,
    name: &'static str,
    len: u64,
    out: &mut Vec<UserComment>,
) -> Result<()> {
    for e in ifd.entries.iter().filter(|e| e.tag == TAG_USER_COMMENT) {
        let raw = read_at(src, e.value_at, e.value_len, len, "EXIF UserComment")?;
        out.push(UserComment {
            at: e.value_at,
            len: e.value_len,
            text: decode_user_comment(&raw, h.little_endian),
            ifd: name,
        });
    }
    Ok(())
}

/// Decodes a UserComment value: 8-byte character code, then the text.
pub fn decode_user_comment(raw: &[u8], little_endian: bool) -> String {
    if raw.len() < 8 {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let (code, body) = raw.split_at(8);
    let text = if code.starts_with(b"UNICODE") {
        let decode = |le: bool| {
            let units: Vec<u16> = body
                .chunks_exact(2)
                .map(|c| {
                    if le {
                        u16::from_le_bytes([c[0], c[1]])
                    } else {
                        u16::from_be_bytes([c[0], c[1]])
                    }
                })
                .collect();
            String::from_utf16_lossy(&units)
        };
        // Writers disagree on the byte order of UNICODE comments; take the one that reads as text.
        let first = decode(little_endian);
        if first.trim_start().starts_with('{') {
            first
        } else {
            let other = decode(!little_endian);
            if other.trim_start().starts_with('{') {
                other
            } else {
                first
            }
        }
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

/// A UserComment value of `len` bytes that says nothing: undefined character code, spaces.
pub fn blank_user_comment(len: u64) -> Vec<u8> {
    let mut v = vec![b' '; len as usize];
    for b in v.iter_mut().take(8) {
        *b = 0;
    }
    v
}

/// The UserComments of an EXIF block held in memory (with or without the `Exif\0\0` prefix),
/// offsets relative to `block`. Reads only.
pub fn block_user_comments(block: &[u8]) -> Result<Vec<UserComment>> {
    let base = if block.starts_with(b"Exif\0\0") { 6 } else { 0 };
    find_user_comments(&mut Cursor::new(block), base, block.len() as u64)
}

/// Finds UserComments in an EXIF block held in memory (with or without the `Exif\0\0` prefix)
/// and blanks those that hold a label. Returns the comments found (offsets relative to `block`)
/// and whether anything changed.
pub fn blank_label_comments(block: &mut [u8]) -> Result<(Vec<UserComment>, bool)> {
    let comments = block_user_comments(block)?;
    let mut changed = false;
    for c in comments.iter().filter(|c| c.is_label()) {
        let blank = blank_user_comment(c.len);
        block[c.at as usize..(c.at + c.len) as usize].copy_from_slice(&blank);
        changed = true;
    }
    Ok((comments, changed))
}

/// Seeks helper used by writers that patch a file after copying it.
pub fn patch(dst: &mut dyn crate::bytes::Sink, at: u64, bytes: &[u8]) -> Result<()> {
    dst.seek(SeekFrom::Start(at))?;
    dst.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian TIFF whose IFD0 holds one entry: an Exif IFD pointer to `exif_at`.
    fn tiff_with_exif_pointer(exif_at: u32) -> Vec<u8> {
        let mut t = b"II*\0".to_vec();
        t.extend_from_slice(&8u32.to_le_bytes());
        t.extend_from_slice(&1u16.to_le_bytes());
        t.extend_from_slice(&TAG_EXIF_IFD.to_le_bytes());
        t.extend_from_slice(&4u16.to_le_bytes()); // LONG
        t.extend_from_slice(&1u32.to_le_bytes());
        t.extend_from_slice(&exif_at.to_le_bytes());
        t.extend_from_slice(&0u32.to_le_bytes());
        t
    }

    #[test]
    fn exif_pointer_loops_are_errors() {
        let t = tiff_with_exif_pointer(8);
        let e = find_user_comments(&mut Cursor::new(&t), 0, t.len() as u64).unwrap_err();
        assert!(e.message.contains("loop"), "{e}");
    }

    #[test]
    fn exif_pointer_past_the_end_is_an_error() {
        let t = tiff_with_exif_pointer(0xFFFF_0000);
        let e = find_user_comments(&mut Cursor::new(&t), 0, t.len() as u64).unwrap_err();
        assert!(e.message.contains("past the end"), "{e}");
    }
}
