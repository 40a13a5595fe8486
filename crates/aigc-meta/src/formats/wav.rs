//! WAV (RIFF/WAVE, and RF64/BW64 for files over 4 GB): the label is an `AIGC` chunk holding the
//! JSON, padded to even length. It is written as the last chunk so `data` never moves; every other
//! chunk (`LIST`/`INFO`, `bext`, `iXML`, unknown ones) is copied as it is.

use crate::bytes::{copy_range, le_u32, read_array, read_at, source_len, Sink, Source};
use crate::error::{MetaError, Result};
use crate::handler::{Format, FormatHandler, Scan, WriteOptions};
use std::io::SeekFrom;

pub struct Wav;

struct Chunk {
    at: u64,
    id: [u8; 4],
    /// Data length (from ds64 for RF64 chunks whose 32-bit size is 0xFFFFFFFF).
    len: u64,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.at + 8 + self.len + (self.len & 1)
    }
}

struct Layout {
    rf64: bool,
    chunks: Vec<Chunk>,
    /// End of the RIFF data; bytes after it (if any) are kept.
    riff_end: u64,
}

fn u64le(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

fn walk(src: &mut dyn Source, len: u64) -> Result<Layout> {
    let h = read_at(src, 0, 12.min(len), len, "RIFF header")?;
    if h.len() < 12 || &h[8..12] != b"WAVE" {
        return Err(MetaError::malformed("not a WAV file (no RIFF/WAVE header)"));
    }
    let rf64 = &h[..4] == b"RF64" || &h[..4] == b"BW64";
    let mut riff_end = 8 + le_u32(&h[4..]) as u64;
    let mut ds64: Option<Vec<u8>> = None;
    if rf64 {
        let d = read_at(src, 12, 36.min(len.saturating_sub(12)), len, "ds64 chunk")?;
        if d.len() < 36 || &d[..4] != b"ds64" {
            return Err(MetaError::malformed(
                "RF64 file does not start with a ds64 chunk",
            ));
        }
        riff_end = 8 + u64le(&d[8..]);
        ds64 = Some(d);
    }
    if riff_end > len {
        // Writers that stream often leave a stale size; trust the file length instead.
        riff_end = len;
    }
    let mut chunks = Vec::new();
    let mut pos = 12u64;
    while pos + 8 <= riff_end {
        src.seek(SeekFrom::Start(pos))?;
        let head = read_array::<8>(src)?;
        let id: [u8; 4] = head[..4].try_into().expect("4 bytes");
        let mut clen = le_u32(&head[4..]) as u64;
        if rf64 && clen == 0xFFFF_FFFF && &id == b"data" {
            clen = u64le(&ds64.as_ref().expect("rf64 has ds64")[16..]);
        }
        if pos + 8 + clen > riff_end {
            return Err(MetaError::malformed(format!(
                "WAV chunk {:?} at offset {pos} declares {clen} bytes past the end of the file (truncated)",
                String::from_utf8_lossy(&id)
            )));
        }
        let c = Chunk {
            at: pos,
            id,
            len: clen,
        };
        pos = c.end().min(riff_end);
        chunks.push(c);
    }
    Ok(Layout {
        rf64,
        chunks,
        riff_end,
    })
}

impl FormatHandler for Wav {
    fn format(&self) -> Format {
        Format::Wav
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.len() >= 12
            && matches!(&head[..4], b"RIFF" | b"RF64" | b"BW64")
            && &head[8..12] == b"WAVE"
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = source_len(src)?;
        let mut scan = Scan::default();
        let layout = match walk(src, len) {
            Ok(l) => l,
            Err(e) => {
                scan.record("wav", Err(e))?;
                return Ok(scan);
            }
        };
        for c in layout.chunks.iter().filter(|c| &c.id == b"AIGC") {
            match read_at(src, c.at + 8, c.len, len, "WAV AIGC chunk") {
                Ok(d) => scan.add_json("wav:AIGC", String::from_utf8_lossy(&d).into_owned()),
                Err(e) => scan.problem("wav:AIGC", e.message),
            }
        }
        Ok(scan)
    }

    fn write(
        &self,
        src: &mut dyn Source,
        dst: &mut dyn Sink,
        label_json: &str,
        _opts: &WriteOptions,
    ) -> Result<()> {
        let len = source_len(src)?;
        let layout = walk(src, len)?;
        let kept: Vec<&Chunk> = layout.chunks.iter().filter(|c| &c.id != b"AIGC").collect();
        let body = label_json.as_bytes();
        let padded = body.len() as u64 + (body.len() as u64 & 1);
        let riff_size: u64 =
            4 + kept.iter().map(|c| 8 + c.len + (c.len & 1)).sum::<u64>() + 8 + padded;
        if !layout.rf64 && riff_size > u32::MAX as u64 {
            return Err(MetaError::too_large(
                "the WAV would pass the 4 GB RIFF limit; convert it to RF64 first",
            ));
        }
        copy_range(src, dst, 0, 4)?;
        dst.write_all(
            &(if layout.rf64 {
                u32::MAX
            } else {
                riff_size as u32
            })
            .to_le_bytes(),
        )?;
        dst.write_all(b"WAVE")?;
        // Contiguous runs of kept chunks are copied in one go.
        let mut i = 0;
        while i < kept.len() {
            let start = kept[i].at;
            let mut end = kept[i].end().min(layout.riff_end);
            while i + 1 < kept.len() && kept[i + 1].at == end {
                i += 1;
                end = kept[i].end().min(layout.riff_end);
            }
            if layout.rf64 && start == 12 {
                // ds64 first: its riffSize changes.
                let ds = &kept[0];
                let mut d = read_at(src, ds.at, 8 + ds.len, len, "ds64 chunk")?;
                d[8..16].copy_from_slice(&riff_size.to_le_bytes());
                dst.write_all(&d)?;
                copy_range(src, dst, ds.end(), end - ds.end())?;
            } else {
                copy_range(src, dst, start, end - start)?;
            }
            let last = kept[i];
            if last.end() > layout.riff_end {
                dst.write_all(&[0])?; // pad byte missing at the very end
            }
            i += 1;
        }
        dst.write_all(b"AIGC")?;
        dst.write_all(&(body.len() as u32).to_le_bytes())?;
        dst.write_all(body)?;
        if body.len() & 1 == 1 {
            dst.write_all(&[0])?;
        }
        crate::bytes::copy_rest(src, dst, layout.riff_end)
    }
}
