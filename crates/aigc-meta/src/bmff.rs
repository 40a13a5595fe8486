//! ISO base media file format boxes (MP4, MOV, HEIF): listing boxes in a file range or in bytes
//! held in memory, with sizes checked against their container.

use crate::bytes::{be_u32, be_u64, read_array, Source};
use crate::error::{MetaError, Result};
use std::io::SeekFrom;

/// A box located in a file (or in a buffer: offsets are then buffer offsets).
#[derive(Clone, Debug)]
pub struct BoxRef {
    pub at: u64,
    /// Header length: 8, or 16 with a 64-bit size.
    pub header: u64,
    pub size: u64,
    pub ty: [u8; 4],
}

impl BoxRef {
    pub fn body(&self) -> u64 {
        self.at + self.header
    }
    pub fn end(&self) -> u64 {
        self.at + self.size
    }
    pub fn is(&self, ty: &[u8; 4]) -> bool {
        &self.ty == ty
    }
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.ty).into_owned()
    }
}

fn check(at: u64, size: u64, header: u64, to: u64, ty: &[u8; 4], what: &str) -> Result<()> {
    if size < header || at.checked_add(size).is_none_or(|end| end > to) {
        return Err(MetaError::malformed(format!(
            "{what}: box '{}' at offset {at} declares {size} bytes past its container's end at {to} (truncated or bad size)",
            String::from_utf8_lossy(ty)
        )));
    }
    Ok(())
}

/// Lists the boxes in `[from, to)` of a file.
pub fn boxes(src: &mut dyn Source, from: u64, to: u64, what: &str) -> Result<Vec<BoxRef>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        if to - pos < 8 {
            return Err(MetaError::malformed(format!(
                "{what}: {} stray bytes at offset {pos} (truncated box header)",
                to - pos
            )));
        }
        src.seek(SeekFrom::Start(pos))?;
        let h = read_array::<8>(src)?;
        let ty: [u8; 4] = h[4..8].try_into().expect("4 bytes");
        let (size, header) = match be_u32(&h) as u64 {
            0 => (to - pos, 8),
            1 => (be_u64(&read_array::<8>(src)?), 16),
            s => (s, 8),
        };
        check(pos, size, header, to, &ty, what)?;
        out.push(BoxRef {
            at: pos,
            header,
            size,
            ty,
        });
        pos += size;
    }
    Ok(out)
}

/// Lists the boxes in `buf[from..to]`.
pub fn boxes_in(buf: &[u8], from: usize, to: usize, what: &str) -> Result<Vec<BoxRef>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        if to - pos < 8 {
            return Err(MetaError::malformed(format!(
                "{what}: truncated box header"
            )));
        }
        let ty: [u8; 4] = buf[pos + 4..pos + 8].try_into().expect("4 bytes");
        let (size, header) = match be_u32(&buf[pos..]) as u64 {
            0 => ((to - pos) as u64, 8),
            1 if to - pos >= 16 => (be_u64(&buf[pos + 8..]), 16),
            1 => {
                return Err(MetaError::malformed(format!(
                    "{what}: truncated box header"
                )))
            }
            s => (s, 8),
        };
        check(pos as u64, size, header, to as u64, &ty, what)?;
        out.push(BoxRef {
            at: pos as u64,
            header,
            size,
            ty,
        });
        pos += size as usize;
    }
    Ok(out)
}

/// A box with an 8-byte header around `body`.
pub fn make_box(ty: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(ty);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_with_64_bit_sizes_and_size_zero() {
        let mut b = make_box(b"ftyp", b"isom\0\0\0\0");
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(b"mdat");
        b.extend_from_slice(&24u64.to_be_bytes());
        b.extend_from_slice(&[7u8; 8]);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(b"free");
        b.extend_from_slice(&[0u8; 5]);
        let list = boxes_in(&b, 0, b.len(), "t").unwrap();
        assert_eq!(
            list.iter().map(|x| x.name()).collect::<Vec<_>>(),
            ["ftyp", "mdat", "free"]
        );
        assert_eq!((list[1].header, list[1].size), (16, 24));
        assert_eq!(list[2].end(), b.len() as u64);
        let mut bad = b.clone();
        bad[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(boxes_in(&bad, 0, bad.len(), "t").is_err());
        let mut c = std::io::Cursor::new(b.clone());
        assert_eq!(boxes(&mut c, 0, b.len() as u64, "t").unwrap().len(), 3);
    }
}
