//! Relabeling a file in place without rewriting it, still atomically.
//!
//! On file systems that clone files (XFS, btrfs: `FICLONE`), the input is cloned in O(1) to a
//! temporary file beside it, only the bytes the label changes are written into the clone, the
//! clone is read back and checked, and then renamed over the input. The bytes to change come
//! from running the format handler's ordinary `write` into a [`DiffSink`], which records what
//! differs from the input and skips every range the handler copies to its own offset, so no
//! per-format code is needed and nothing is read but the headers. When the change is not small
//! (media would move) or the file system cannot clone, the caller falls back to a full rewrite.

use crate::bytes::{Sink, PAGE};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// Past this many changed bytes a clone-and-patch is not worth it; the caller rewrites instead.
pub const MAX_PATCH: u64 = 16 << 20;

/// A sink that compares what is written with the original file and keeps only the differences.
pub struct DiffSink<'a> {
    original: &'a File,
    original_len: u64,
    pos: u64,
    /// Length of the output written so far.
    pub len: u64,
    /// (offset, bytes) to write over the original, in order (later ones win).
    pub patches: Vec<(u64, Vec<u8>)>,
    patched: u64,
}

impl<'a> DiffSink<'a> {
    pub fn new(original: &'a File, original_len: u64) -> DiffSink<'a> {
        DiffSink {
            original,
            original_len,
            pos: 0,
            len: 0,
            patches: Vec::new(),
            patched: 0,
        }
    }

    fn advance(&mut self, n: u64) {
        self.pos += n;
        self.len = self.len.max(self.pos);
    }
}

/// The message of the error a [`DiffSink`] gives when the change is too large to patch.
const TOO_LARGE: &str = "change too large for a clone-and-patch";

fn too_large() -> io::Error {
    io::Error::other(TOO_LARGE)
}

impl Write for DiffSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Compared in blocks aligned to the file's 4 KiB pages, so a rebuilt index of several MB
        // that differs only in its label costs a page or two, not the whole index.
        let mut done = 0usize;
        let mut old = vec![0u8; PAGE as usize];
        while done < buf.len() {
            let at = self.pos + done as u64;
            let n = ((PAGE - at % PAGE) as usize).min(buf.len() - done);
            let piece = &buf[done..done + n];
            let same = at + n as u64 <= self.original_len && {
                self.original.read_exact_at(&mut old[..n], at)?;
                old[..n] == *piece
            };
            if !same {
                self.patched += n as u64;
                if self.patched > MAX_PATCH {
                    return Err(too_large());
                }
                match self.patches.last_mut() {
                    Some((start, bytes)) if *start + bytes.len() as u64 == at => {
                        bytes.extend_from_slice(piece)
                    }
                    _ => self.patches.push((at, piece.to_vec())),
                }
            }
            done += n;
        }
        self.advance(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for DiffSink<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = base
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl Sink for DiffSink<'_> {
    fn skip_identical(&mut self, offset: u64, len: u64) -> bool {
        if self.pos == offset && offset + len <= self.original_len {
            self.advance(len);
            true
        } else {
            false
        }
    }
}

/// Runs `write` into a [`DiffSink`] over `original`; `None` when the change is too large.
pub fn diff(
    original: &File,
    original_len: u64,
    write: impl FnOnce(&mut dyn Sink) -> crate::Result<()>,
) -> crate::Result<Option<DiffSink<'_>>> {
    let mut sink = DiffSink::new(original, original_len);
    match write(&mut sink) {
        Ok(()) => Ok(Some(sink)),
        Err(e) if e.message == TOO_LARGE => Ok(None),
        Err(e) => Err(e),
    }
}

/// Applies the recorded differences to a clone of the original.
pub fn apply(clone: &File, sink: &DiffSink) -> io::Result<()> {
    for (at, bytes) in &sink.patches {
        clone.write_all_at(bytes, *at)?;
    }
    clone.set_len(sink.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn patching_a_copy_reproduces_the_written_stream() {
        let original: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&original).unwrap();
        // The "new" file: a changed run in the middle, the rest identical, then 10 bytes longer.
        let mut expected = original.clone();
        expected[9000..9100].fill(0xAA);
        expected.extend_from_slice(&[1; 10]);
        let mut sink = DiffSink::new(&file, original.len() as u64);
        sink.write_all(&expected[..5000]).unwrap();
        assert!(sink.skip_identical(5000, 3000));
        sink.write_all(&expected[8000..]).unwrap();
        assert_eq!(sink.len, expected.len() as u64);
        assert!(sink.patches.iter().map(|(_, b)| b.len()).sum::<usize>() <= 2 * PAGE as usize + 10);
        apply(&file, &sink).unwrap();
        let mut got = Vec::new();
        let mut f = file.try_clone().unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(got, expected);
    }
}
