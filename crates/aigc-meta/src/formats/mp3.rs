//! MP3 (and any stream led by an ID3v2 tag): the label is an ID3v2 `TXXX` frame with description
//! `AIGC`. Every other frame is kept byte for byte; the tag keeps its size when the new frame fits
//! its padding, so the audio does not move; ID3v1 and APE tags at the end are copied untouched.

use crate::bytes::{be_u32, read_at, source_len, Sink, Source};
use crate::error::{MetaError, Result};
use crate::handler::{Format, FormatHandler, Scan, WriteOptions};

pub struct Mp3;

const DESCRIPTION: &str = "AIGC";
/// Least padding left in a tag that has to grow, for later edits in place.
const NEW_PADDING: usize = 1024;

fn syncsafe(b: &[u8]) -> u32 {
    b[..4]
        .iter()
        .fold(0u32, |acc, &x| (acc << 7) | (x & 0x7F) as u32)
}

fn to_syncsafe(v: u32) -> [u8; 4] {
    [
        (v >> 21) as u8 & 0x7F,
        (v >> 14) as u8 & 0x7F,
        (v >> 7) as u8 & 0x7F,
        v as u8 & 0x7F,
    ]
}

/// Removes ID3 unsynchronisation (0xFF 0x00 → 0xFF).
fn unsync(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        out.push(b[i]);
        if b[i] == 0xFF && b.get(i + 1) == Some(&0) {
            i += 1;
        }
        i += 1;
    }
    out
}

struct Tag {
    major: u8,
    flags: u8,
    /// Total bytes of the tag on disk (header, body, footer).
    total: u64,
    /// Frames as stored (id, flags, data), after tag-level unsynchronisation is undone.
    frames: Vec<Frame>,
}

struct Frame {
    raw: Vec<u8>,
    id: [u8; 4],
    data: Vec<u8>,
}

fn read_tag(src: &mut dyn Source, len: u64) -> Result<Option<Tag>> {
    let h = read_at(src, 0, 10.min(len), len, "ID3v2 header")?;
    if h.len() < 10 || &h[..3] != b"ID3" {
        return Ok(None);
    }
    let (major, flags) = (h[3], h[5]);
    if !(2..=4).contains(&major) {
        return Err(MetaError::unsupported(format!(
            "ID3v2.{major} tags are not supported"
        )));
    }
    let size = syncsafe(&h[6..]) as u64;
    let footer = if major == 4 && flags & 0x10 != 0 {
        10
    } else {
        0
    };
    let total = 10 + size + footer;
    let mut body = read_at(src, 10, size, len, "ID3v2 tag")?;
    if flags & 0x80 != 0 && major < 4 {
        body = unsync(&body);
    }
    let mut p = 0usize;
    if flags & 0x40 != 0 {
        // Extended header: skipped (dropped on rewrite; its CRC would be stale).
        let n = if major == 4 {
            syncsafe(
                body.get(..4)
                    .ok_or_else(|| MetaError::malformed("ID3v2 extended header is truncated"))?,
            ) as usize
        } else {
            4 + be_u32(
                body.get(..4)
                    .ok_or_else(|| MetaError::malformed("ID3v2 extended header is truncated"))?,
            ) as usize
        };
        p = n.min(body.len());
    }
    let (id_len, head_len) = if major == 2 { (3, 6) } else { (4, 10) };
    let mut frames = Vec::new();
    while p + head_len <= body.len() && body[p] != 0 {
        let fh = &body[p..p + head_len];
        let flen = match major {
            2 => u32::from_be_bytes([0, fh[3], fh[4], fh[5]]) as usize,
            3 => be_u32(&fh[4..]) as usize,
            _ => syncsafe(&fh[4..]) as usize,
        };
        if p + head_len + flen > body.len() {
            return Err(MetaError::malformed(format!(
                "ID3v2 frame {:?} declares {flen} bytes past the end of the tag",
                String::from_utf8_lossy(&fh[..id_len])
            )));
        }
        let mut id = [b' '; 4];
        id[..id_len].copy_from_slice(&fh[..id_len]);
        let mut data = body[p + head_len..p + head_len + flen].to_vec();
        if major == 4 && fh[9] & 0x02 != 0 {
            data = unsync(&data);
        }
        frames.push(Frame {
            raw: body[p..p + head_len + flen].to_vec(),
            id,
            data,
        });
        p += head_len + flen;
    }
    Ok(Some(Tag {
        major,
        flags,
        total,
        frames,
    }))
}

/// The description and value of a TXXX (or v2.2 TXX) frame.
fn txxx(data: &[u8]) -> Option<(String, String)> {
    let (&enc, rest) = data.split_first()?;
    let decode = |b: &[u8]| -> String {
        match enc {
            1 | 2 => {
                let mut units: Vec<u16> = b
                    .chunks_exact(2)
                    .map(|c| {
                        if enc == 2 {
                            u16::from_be_bytes([c[0], c[1]])
                        } else {
                            u16::from_le_bytes([c[0], c[1]])
                        }
                    })
                    .collect();
                if enc == 1 && b.len() >= 2 && b[0] == 0xFE && b[1] == 0xFF {
                    units = b
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                }
                String::from_utf16_lossy(&units)
                    .trim_start_matches('\u{feff}')
                    .to_string()
            }
            3 => String::from_utf8_lossy(b).into_owned(),
            _ => b.iter().map(|&c| c as char).collect(),
        }
    };
    let split = if enc == 1 || enc == 2 {
        (0..rest.len().saturating_sub(1))
            .step_by(2)
            .find(|&i| rest[i] == 0 && rest[i + 1] == 0)
            .map(|i| (i, i + 2))
    } else {
        rest.iter().position(|&b| b == 0).map(|i| (i, i + 1))
    }?;
    let value = decode(&rest[split.1..]);
    Some((
        decode(&rest[..split.0]),
        value.trim_end_matches('\0').to_string(),
    ))
}

fn is_label_frame(f: &Frame) -> Option<String> {
    if &f.id != b"TXXX" && &f.id[..3] != b"TXX" {
        return None;
    }
    txxx(&f.data)
        .filter(|(d, _)| d.eq_ignore_ascii_case(DESCRIPTION))
        .map(|(_, v)| v)
}

impl FormatHandler for Mp3 {
    fn format(&self) -> Format {
        Format::Mp3
    }

    fn matches(&self, head: &[u8]) -> bool {
        if head.starts_with(b"ID3") {
            return true;
        }
        // An MPEG audio frame header: sync, layer III, a valid bitrate and sample-rate index.
        head.len() >= 4
            && head[0] == 0xFF
            && head[1] & 0xE6 == 0xE2
            && head[2] & 0xF0 != 0xF0
            && head[2] & 0x0C != 0x0C
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = source_len(src)?;
        let mut scan = Scan::default();
        match read_tag(src, len) {
            Ok(Some(tag)) => {
                for f in &tag.frames {
                    if let Some(v) = is_label_frame(f) {
                        scan.add_json("mp3:ID3v2:TXXX:AIGC", v);
                    }
                }
            }
            Ok(None) => {}
            Err(e) if e.kind == crate::ErrorKind::Io => return Err(e),
            Err(e) => scan.problem("mp3:ID3v2", e.message),
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
        let tag = read_tag(src, len)?;
        let major = match &tag {
            Some(t) if t.major >= 3 => t.major,
            Some(_) => {
                return Err(MetaError::unsupported(
                    "ID3v2.2 tags cannot be rewritten; convert the tag to ID3v2.3 or 2.4",
                ))
            }
            None => 4,
        };
        // The new frame: UTF-8 in v2.4; in v2.3 Latin-1 for ASCII, else UTF-16 with BOM.
        let mut data = Vec::new();
        if major == 4 {
            data.push(3);
            data.extend_from_slice(DESCRIPTION.as_bytes());
            data.push(0);
            data.extend_from_slice(label_json.as_bytes());
        } else if label_json.is_ascii() {
            data.push(0);
            data.extend_from_slice(DESCRIPTION.as_bytes());
            data.push(0);
            data.extend_from_slice(label_json.as_bytes());
        } else {
            data.push(1);
            for s in [DESCRIPTION, label_json] {
                data.extend_from_slice(&[0xFF, 0xFE]);
                s.encode_utf16()
                    .for_each(|u| data.extend_from_slice(&u.to_le_bytes()));
                if s == DESCRIPTION {
                    data.extend_from_slice(&[0, 0]);
                }
            }
        }
        let mut frame = b"TXXX".to_vec();
        frame.extend_from_slice(&if major == 4 {
            to_syncsafe(data.len() as u32)
        } else {
            (data.len() as u32).to_be_bytes()
        });
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&data);

        let mut body: Vec<u8> = Vec::new();
        if let Some(t) = &tag {
            for f in t.frames.iter().filter(|f| is_label_frame(f).is_none()) {
                body.extend_from_slice(&f.raw);
            }
        }
        body.extend_from_slice(&frame);
        let old_total = tag.as_ref().map_or(0, |t| t.total);
        let has_footer = tag
            .as_ref()
            .is_some_and(|t| t.major == 4 && t.flags & 0x10 != 0);
        let footer = if has_footer { 10 } else { 0 };
        // Keep the tag's size when the frames fit; otherwise grow it and leave padding. A tag with
        // a footer cannot hold padding, so it always takes exactly its frames.
        let size = if has_footer {
            body.len()
        } else if 10 + body.len() as u64 <= old_total {
            (old_total - 10) as usize
        } else {
            crate::bytes::page_rounded(10, body.len() as u64, NEW_PADDING as u64, old_total)
                as usize
        };
        if size >= 1 << 28 {
            return Err(MetaError::too_large(
                "the ID3v2 tag would pass its 256 MB limit",
            ));
        }
        body.resize(size, 0);
        // Unsynchronisation and the extended header are not carried over (flags cleared).
        let flags = tag.as_ref().map_or(0, |t| t.flags & 0x10);
        let header = |id: &[u8; 3]| {
            let mut h = id.to_vec();
            h.extend_from_slice(&[major, 0, flags]);
            h.extend_from_slice(&to_syncsafe(size as u32));
            h
        };
        dst.write_all(&header(b"ID3"))?;
        dst.write_all(&body)?;
        if footer > 0 {
            dst.write_all(&header(b"3DI"))?;
        }
        crate::bytes::copy_rest(src, dst, old_total)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn syncsafe_round_trip() {
        for v in [0u32, 127, 128, 1 << 20, (1 << 28) - 1] {
            assert_eq!(super::syncsafe(&super::to_syncsafe(v)), v);
        }
    }
}
