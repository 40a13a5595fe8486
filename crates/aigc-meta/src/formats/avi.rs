//! AVI: the label is a `LIST`/`INFO` sub-chunk `AIGC` holding the JSON, NUL-terminated and padded
//! to even length.
//!
//! `movi` never moves, so `idx1` and OpenDML index offsets stay valid: the new `INFO` list takes
//! the place of the old one plus any `JUNK` after it (muxers reserve such padding), or of a `JUNK`
//! chunk before `movi`. Only when there is no room anywhere, and the file has a single RIFF, is it
//! appended after the index (some readers look for `INFO` only before `movi`).

use crate::bytes::{
    copy_range, le_u32, read_array, read_at, source_len, Sink, Source, MAX_CARRIER,
};
use crate::error::{MetaError, Result};
use crate::handler::{Format, FormatHandler, Scan, WriteOptions};
use crate::tiff_ifd::patch;
use std::io::SeekFrom;

pub struct Avi;

struct Chunk {
    at: u64,
    id: [u8; 4],
    len: u64,
    /// The list type for `LIST` chunks.
    list: Option<[u8; 4]>,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.at + 8 + self.len + (self.len & 1)
    }
    fn is_list(&self, ty: &[u8; 4]) -> bool {
        &self.id == b"LIST" && self.list.as_ref() == Some(ty)
    }
}

fn chunks(src: &mut dyn Source, from: u64, to: u64) -> Result<Vec<Chunk>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos + 8 <= to {
        src.seek(SeekFrom::Start(pos))?;
        let h = read_array::<12>(src).or_else(|_| -> Result<[u8; 12]> {
            let mut b = [0u8; 12];
            b[..8].copy_from_slice(&read_at(src, pos, 8, to, "AVI chunk header")?);
            Ok(b)
        })?;
        let id: [u8; 4] = h[..4].try_into().expect("4 bytes");
        let len = le_u32(&h[4..]) as u64;
        if pos + 8 + len > to {
            return Err(MetaError::malformed(format!(
                "AVI chunk {:?} at offset {pos} declares {len} bytes past the end of its container (truncated)",
                String::from_utf8_lossy(&id)
            )));
        }
        let list =
            (&id == b"LIST" || &id == b"RIFF").then(|| h[8..12].try_into().expect("4 bytes"));
        let c = Chunk {
            at: pos,
            id,
            len,
            list,
        };
        pos = c.end();
        out.push(c);
    }
    Ok(out)
}

/// The sub-chunks of an INFO list as (id, value bytes without padding).
fn info_entries(src: &mut dyn Source, info: &Chunk, len: u64) -> Result<Vec<([u8; 4], Vec<u8>)>> {
    if info.len > MAX_CARRIER {
        return Err(MetaError::too_large(
            "AVI INFO list is over the metadata limit",
        ));
    }
    let mut out = Vec::new();
    for c in chunks(src, info.at + 12, info.at + 8 + info.len)? {
        out.push((c.id, read_at(src, c.at + 8, c.len, len, "AVI INFO entry")?));
    }
    Ok(out)
}

fn info_list(entries: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut body = b"INFO".to_vec();
    for (id, v) in entries {
        body.extend_from_slice(id);
        body.extend_from_slice(&(v.len() as u32).to_le_bytes());
        body.extend_from_slice(v);
        if v.len() & 1 == 1 {
            body.push(0);
        }
    }
    let mut out = b"LIST".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

fn junk(n: u64) -> Vec<u8> {
    let mut out = b"JUNK".to_vec();
    out.extend_from_slice(&((n - 8) as u32).to_le_bytes());
    out.resize(n as usize, 0);
    out
}

fn label_of(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .trim_end_matches('\0')
        .to_string()
}

struct Layout {
    riff_end: u64,
    top: Vec<Chunk>,
    more_riffs: bool,
}

fn layout(src: &mut dyn Source, len: u64) -> Result<Layout> {
    let h = read_at(src, 0, 12.min(len), len, "RIFF header")?;
    if h.len() < 12 || &h[..4] != b"RIFF" || &h[8..12] != b"AVI " {
        return Err(MetaError::malformed("not an AVI file (no RIFF/AVI header)"));
    }
    let riff_end = (8 + le_u32(&h[4..]) as u64).min(len);
    let top = chunks(src, 12, riff_end)?;
    Ok(Layout {
        riff_end,
        top,
        more_riffs: riff_end + 8 < len,
    })
}

impl FormatHandler for Avi {
    fn format(&self) -> Format {
        Format::Avi
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"AVI "
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = source_len(src)?;
        let mut scan = Scan::default();
        let found = (|| -> Result<()> {
            let l = layout(src, len)?;
            for info in l.top.iter().filter(|c| c.is_list(b"INFO")) {
                for (id, v) in info_entries(src, info, len)? {
                    if &id == b"AIGC" {
                        scan.add_json("avi:INFO:AIGC", label_of(&v));
                    }
                }
            }
            Ok(())
        })();
        scan.record("avi", found)?;
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
        let l = layout(src, len)?;
        let movi = l
            .top
            .iter()
            .position(|c| c.is_list(b"movi"))
            .ok_or_else(|| MetaError::malformed("AVI has no movi list"))?;
        let infos: Vec<usize> = (0..l.top.len())
            .filter(|&i| l.top[i].is_list(b"INFO"))
            .collect();
        let mut entries = match infos.first() {
            Some(&i) => info_entries(src, &l.top[i], len)?,
            None => Vec::new(),
        };
        entries.retain(|(id, _)| id != b"AIGC");
        let mut value = label_json.as_bytes().to_vec();
        value.push(0);
        entries.push((*b"AIGC", value));
        let new_info = info_list(&entries);
        let n = new_info.len() as u64;

        // Space = a chunk plus the JUNK chunks right after it.
        let room = |i: usize| -> u64 {
            let mut end = l.top[i].end();
            for c in &l.top[i + 1..] {
                if &c.id != b"JUNK" || c.at != end {
                    break;
                }
                end = c.end();
            }
            end - l.top[i].at
        };
        let fits = |space: u64| n == space || n + 8 <= space;
        let place = infos
            .first()
            .copied()
            .filter(|&i| fits(room(i)))
            .or_else(|| (0..movi).find(|&i| &l.top[i].id == b"JUNK" && fits(room(i))));

        let mut patches: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut append = false;
        match place {
            Some(i) => {
                let mut bytes = new_info.clone();
                if n < room(i) {
                    bytes.extend(junk(room(i) - n));
                }
                patches.push((l.top[i].at, bytes));
            }
            None if !l.more_riffs && l.riff_end == len => append = true,
            None => {
                return Err(MetaError::unsupported(
                    "no room for the INFO list before movi in this multi-RIFF (OpenDML) AVI",
                ))
            }
        }
        // Any other INFO list (or the old one, when the new one went elsewhere) loses its label.
        for &i in &infos {
            if place == Some(i) {
                continue;
            }
            let c = &l.top[i];
            if i == infos[0] {
                patches.push((c.at, junk(c.end() - c.at)));
                continue;
            }
            let mut others = info_entries(src, c, len)?;
            if others.iter().any(|(id, _)| id == b"AIGC") {
                others.retain(|(id, _)| id != b"AIGC");
                let mut bytes = info_list(&others);
                let span = c.end() - c.at;
                if bytes.len() as u64 + 8 <= span {
                    bytes.extend(junk(span - bytes.len() as u64));
                } else {
                    bytes = junk(span);
                }
                patches.push((c.at, bytes));
            }
        }
        copy_range(src, dst, 0, len)?;
        if append {
            dst.write_all(&new_info)?;
            let riff = u32::try_from(len + n - 8)
                .map_err(|_| MetaError::too_large("the AVI would pass the 4 GB RIFF limit"))?;
            patches.push((4, riff.to_le_bytes().to_vec()));
        }
        for (at, bytes) in patches {
            patch(dst, at, &bytes)?;
        }
        dst.seek(SeekFrom::End(0))?;
        Ok(())
    }
}
