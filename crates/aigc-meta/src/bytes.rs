//! Bounded, seekable reading and range copying shared by the handlers.

use crate::error::{MetaError, Result};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Cursor, Read, Seek, SeekFrom, Write};

/// Anything a handler reads from: a file, or bytes in memory.
///
/// Implemented for the concrete types this crate uses rather than for every `Read + Seek`, so
/// that a file-backed source can hand out its `File` and bulk copies take the kernel's
/// `copy_file_range` path (as `cp` does) instead of moving every byte through user space.
pub trait Source: Read + Seek {
    /// The file underneath, positioned where this source is, if there is one.
    fn file(&mut self) -> Option<&mut File> {
        None
    }
}

impl Source for File {
    fn file(&mut self) -> Option<&mut File> {
        Some(self)
    }
}

impl Source for BufReader<File> {
    /// Only valid right after a seek (which empties the buffer); `copy_range` seeks first.
    fn file(&mut self) -> Option<&mut File> {
        Some(self.get_mut())
    }
}

impl<T: AsRef<[u8]>> Source for Cursor<T> {}

/// Anything a handler writes to. Seekable so that a handler may patch a few bytes after a
/// streaming copy (TIFF offsets) without holding the file in memory.
pub trait Sink: Write + Seek {
    /// The file underneath, with everything buffered so far flushed to it, if there is one.
    fn file(&mut self) -> io::Result<Option<&File>> {
        Ok(None)
    }

    /// For a sink that already holds the input's bytes (an in-place clone): when copying
    /// `offset..offset + len` of the input to the current position would change nothing, moves
    /// past it and returns true.
    fn skip_identical(&mut self, _offset: u64, _len: u64) -> bool {
        false
    }
}

impl Sink for File {
    fn file(&mut self) -> io::Result<Option<&File>> {
        Ok(Some(self))
    }
}

impl Sink for BufWriter<&File> {
    fn file(&mut self) -> io::Result<Option<&File>> {
        self.flush()?;
        Ok(Some(self.get_ref()))
    }
}

impl Sink for BufWriter<File> {
    fn file(&mut self) -> io::Result<Option<&File>> {
        self.flush()?;
        Ok(Some(self.get_ref()))
    }
}

impl Sink for Cursor<Vec<u8>> {}
impl Sink for Cursor<&mut Vec<u8>> {}

/// The most a single metadata carrier may hold. Real XMP packets are kilobytes; a declared size
/// past this is refused instead of allocated.
pub const MAX_CARRIER: u64 = 16 << 20;

/// When media data has to move, it moves by a multiple of this many bytes: page-aligned copies
/// are several times faster in the kernel, and the slack left becomes padding for later edits.
pub const PAGE: u64 = 4096;

/// The smallest size of at least `min + slack` that makes `new_total - old_total` a multiple of
/// [`PAGE`], where `new_total = fixed + size`.
pub fn page_rounded(fixed: u64, min: u64, slack: u64, old_total: u64) -> u64 {
    let want = fixed + min + slack;
    let shift = want.saturating_sub(old_total).div_ceil(PAGE) * PAGE;
    (old_total + shift).max(want) - fixed
}

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
    if dst.skip_identical(offset, len) {
        return Ok(());
    }
    let copied = match (src.file(), dst.file()?) {
        // File to file: std's io::copy uses copy_file_range/sendfile here.
        (Some(from), Some(to)) => {
            // The bytes up to the next page boundary go through user space, so the kernel copies
            // whole pages (a copy starting mid-page is several times slower).
            let head = ((PAGE - offset % PAGE) % PAGE).min(len);
            let mut first = vec![0u8; head as usize];
            from.read_exact(&mut first)?;
            (&*to).write_all(&first)?;
            head + io::copy(&mut Read::take(&*from, len - head), &mut &*to)?
        }
        _ => io::copy(&mut src.take(len), dst)?,
    };
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
    let end = src.seek(SeekFrom::End(0))?;
    copy_range(src, dst, offset, end.saturating_sub(offset))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_rounded_moves_by_whole_pages_with_slack() {
        for (fixed, min, slack, old) in [
            (10, 500, 1024, 300),
            (0, 5000, 0, 100),
            (10, 10, 10, 9000),
            (4, 0, 1024, 0),
        ] {
            let size = page_rounded(fixed, min, slack, old);
            assert!(size >= min + slack, "{size}");
            let new_total = fixed + size;
            assert!(
                new_total <= old || (new_total - old).is_multiple_of(PAGE),
                "{new_total} {old}"
            );
        }
    }
}
