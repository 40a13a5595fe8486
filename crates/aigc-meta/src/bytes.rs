//! Bounded, seekable reading and range copying shared by the handlers.

use crate::error::{MetaError, Result};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Anything a handler reads from: a file, or bytes in memory.
pub trait Source: Read + Seek {}
impl<T: Read + Seek> Source for T {}

/// Anything a handler writes to. Seekable so that a handler may patch a few bytes after a
/// streaming copy (TIFF offsets) without holding the file in memory.
pub trait Sink: Write + Seek {}
impl<T: Write + Seek> Sink for T {}

/// The most a single metadata carrier may hold. Real XMP packets are kilobytes; a declared size
/// past this is refused instead of allocated.
pub const MAX_CARRIER: u64 = 16 << 20;

/// Total length of the source, leaving the position at the start.
pub fn source_len(src: &mut dyn Source) -> Result<u64> {
    let len = src.seek(SeekFrom::End(0))?;
    src.seek(SeekFrom::Start(0))?;
    Ok(len)
}

/// Reads exactly `len` bytes at `offset` into a new buffer, refusing sizes past [`MAX_CARRIER`]
/// or past the end of the file before allocating anything.
pub fn read_at(
    src: &mut dyn Source,
    offset: u64,
    len: u64,
    file_len: u64,
    what: &str,
) -> Result<Vec<u8>> {
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(MetaError::malformed(format!(
            "{what} at offset {offset} declares {len} bytes but the file ends at {file_len} (truncated or bad length)"
        )));
    }
    if len > MAX_CARRIER {
        return Err(MetaError::too_large(format!(
            "{what} at offset {offset} is {len} bytes; metadata carriers over {MAX_CARRIER} bytes are refused"
        )));
    }
    src.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len as usize];
    src.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads exactly N bytes at the current position.
pub fn read_array<const N: usize>(src: &mut dyn Source) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    src.read_exact(&mut b)?;
    Ok(b)
}

/// Copies `len` bytes from `offset` in `src` to the current position of `dst`.
pub fn copy_range(src: &mut dyn Source, dst: &mut dyn Sink, offset: u64, len: u64) -> Result<()> {
    src.seek(SeekFrom::Start(offset))?;
    let copied = io::copy(&mut src.take(len), dst)?;
    if copied != len {
        return Err(MetaError::malformed(format!(
            "file ends at offset {} while copying {len} bytes from offset {offset} (truncated)",
            offset + copied
        )));
    }
    Ok(())
}

/// Copies everything from `offset` to the end of `src`.
pub fn copy_rest(src: &mut dyn Source, dst: &mut dyn Sink, offset: u64) -> Result<()> {
    src.seek(SeekFrom::Start(offset))?;
    io::copy(src, dst)?;
    Ok(())
}

pub fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
pub fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
pub fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}
pub fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
pub fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
