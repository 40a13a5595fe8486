//! Matroska and WebM: the label is a `Tags/Tag/SimpleTag` with `TagName` `AIGC` and the JSON as
//! `TagString`, targeting the whole segment.
//!
//! Clusters never move, so Cues and every cluster position stay valid. The new `Tags` element is
//! written where the old one was when it fits (with any `Void` after it); otherwise the old one
//! becomes a `Void`, the new one is appended at the end of the segment, the segment size is
//! updated in place, and the `SeekHead` entry for `Tags` is rewritten (the SeekHead may grow into
//! the `Void` that muxers reserve after it; its CRC-32 is recomputed).

use crate::bytes::{copy_range, read_at, source_len, Sink, Source, MAX_CARRIER};
use crate::error::{MetaError, Result};
use crate::handler::{Format, FormatHandler, Scan, WriteOptions};
use crate::tiff_ifd::patch;
use std::io::SeekFrom;

pub struct Matroska;

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const SEEK_HEAD: u32 = 0x114D_9B74;
const SEEK: u32 = 0x4DBB;
const SEEK_ID: u32 = 0x53AB;
const SEEK_POSITION: u32 = 0x53AC;
const TAGS: u32 = 0x1254_C367;
const TAG: u32 = 0x7373;
const TARGETS: u32 = 0x63C0;
const SIMPLE_TAG: u32 = 0x67C8;
const TAG_NAME: u32 = 0x45A3;
const TAG_STRING: u32 = 0x4487;
const VOID: u32 = 0xEC;
const CRC32: u32 = 0xBF;
const NAME: &str = "AIGC";

/// An element: where it starts, its header length, and its data length (`None`: unknown size).
#[derive(Clone, Debug)]
struct El {
    id: u32,
    at: u64,
    header: u64,
    size: Option<u64>,
    /// Bytes used by the size field.
    size_len: u64,
}

impl El {
    fn data(&self) -> u64 {
        self.at + self.header
    }
    fn end(&self) -> u64 {
        self.data() + self.size.unwrap_or(0)
    }
}

fn vint_len(first: u8) -> Option<u64> {
    (first != 0).then(|| first.leading_zeros() as u64 + 1)
}

/// Reads an element header from bytes (at most 12 needed).
fn header(b: &[u8], at: u64) -> Result<El> {
    let bad = || {
        MetaError::malformed(format!(
            "Matroska element header at offset {at} is invalid or truncated"
        ))
    };
    let il = vint_len(*b.first().ok_or_else(bad)?)
        .filter(|&l| l <= 4)
        .ok_or_else(bad)? as usize;
    let sl = vint_len(*b.get(il).ok_or_else(bad)?).ok_or_else(bad)? as usize;
    if b.len() < il + sl {
        return Err(bad());
    }
    let id = b[..il].iter().fold(0u32, |a, &x| (a << 8) | x as u32);
    let mut size = (b[il] as u16 & (0xFF >> sl)) as u64;
    for &x in &b[il + 1..il + sl] {
        size = (size << 8) | x as u64;
    }
    let unknown = size == (1u64 << (7 * sl)) - 1;
    Ok(El {
        id,
        at,
        header: (il + sl) as u64,
        size: (!unknown).then_some(size),
        size_len: sl as u64,
    })
}

fn read_el(src: &mut dyn Source, at: u64, len: u64) -> Result<El> {
    let b = read_at(src, at, 12.min(len - at), len, "Matroska element")?;
    header(&b, at)
}

/// Children of `[from, to)` in a file; unknown sizes are only allowed for the segment itself.
fn children(src: &mut dyn Source, from: u64, to: u64, len: u64) -> Result<Vec<El>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        let e = read_el(src, pos, len)?;
        let Some(size) = e.size else {
            return Err(MetaError::unsupported(format!("Matroska element 0x{:X} at offset {pos} has an unknown size (live stream); not supported", e.id)));
        };
        if e.data() + size > to {
            return Err(MetaError::malformed(format!(
                "Matroska element 0x{:X} at offset {pos} declares {size} bytes past its parent's end (truncated)",
                e.id
            )));
        }
        pos = e.end();
        out.push(e);
    }
    Ok(out)
}

/// Children of an element held in memory (offsets relative to `buf`).
fn children_in(buf: &[u8], from: usize, to: usize) -> Result<Vec<El>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        let e = header(&buf[pos..to.min(pos + 12)], pos as u64)?;
        let size = e
            .size
            .ok_or_else(|| MetaError::malformed("unknown-size element inside Tags"))?;
        if e.data() + size > to as u64 {
            return Err(MetaError::malformed(format!(
                "Matroska element 0x{:X} runs past its parent",
                e.id
            )));
        }
        pos = e.end() as usize;
        out.push(e);
    }
    Ok(out)
}

fn encode_id(id: u32) -> Vec<u8> {
    let b = id.to_be_bytes();
    let skip = b.iter().position(|&x| x != 0).unwrap_or(3);
    b[skip..].to_vec()
}

fn encode_size(size: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut v = size;
    for i in (0..len).rev() {
        out[i] = v as u8;
        v >>= 8;
    }
    out[0] |= 0x80 >> (len - 1);
    out
}

fn size_len(size: u64) -> usize {
    (1..=8).find(|&n| size < (1u64 << (7 * n)) - 1).unwrap_or(8)
}

fn element(id: u32, data: &[u8]) -> Vec<u8> {
    let mut out = encode_id(id);
    out.extend(encode_size(data.len() as u64, size_len(data.len() as u64)));
    out.extend_from_slice(data);
    out
}

/// A Void element exactly `n` bytes long (n >= 2).
fn void(n: u64) -> Vec<u8> {
    let (sl, data) = if n >= 10 { (8, n - 9) } else { (1, n - 2) };
    let mut out = vec![0xEC];
    out.extend(encode_size(data, sl));
    out.resize(n as usize, 0);
    out
}

fn simple_tag_label(buf: &[u8], st: &El) -> Result<Option<String>> {
    let kids = children_in(buf, st.data() as usize, st.end() as usize)?;
    let text = |id: u32| {
        kids.iter().find(|k| k.id == id).map(|k| {
            String::from_utf8_lossy(&buf[k.data() as usize..k.end() as usize]).into_owned()
        })
    };
    Ok(match text(TAG_NAME) {
        Some(n) if n.trim_end_matches('\0') == NAME => Some(
            text(TAG_STRING)
                .unwrap_or_default()
                .trim_end_matches('\0')
                .to_string(),
        ),
        _ => None,
    })
}

/// Labels in a Tags element held in memory.
fn tags_labels(buf: &[u8]) -> Result<Vec<String>> {
    let top = header(buf, 0)?;
    let mut out = Vec::new();
    for tag in children_in(buf, top.data() as usize, buf.len())?
        .iter()
        .filter(|t| t.id == TAG)
    {
        for st in children_in(buf, tag.data() as usize, tag.end() as usize)?
            .iter()
            .filter(|s| s.id == SIMPLE_TAG)
        {
            if let Some(v) = simple_tag_label(buf, st)? {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// A Tags element's content without label SimpleTags (empty Tags dropped, CRC-32 dropped).
fn tags_without_label(buf: &[u8]) -> Result<Vec<u8>> {
    let top = header(buf, 0)?;
    let mut content = Vec::new();
    for c in children_in(buf, top.data() as usize, buf.len())? {
        let raw = &buf[c.at as usize..c.end() as usize];
        match c.id {
            CRC32 => {}
            TAG => {
                let kids = children_in(buf, c.data() as usize, c.end() as usize)?;
                let mut kept = Vec::new();
                let mut simple = 0;
                for k in &kids {
                    if k.id == SIMPLE_TAG && simple_tag_label(buf, k)?.is_some() {
                        continue;
                    }
                    simple += (k.id == SIMPLE_TAG) as usize;
                    if k.id != CRC32 {
                        kept.extend_from_slice(&buf[k.at as usize..k.end() as usize]);
                    }
                }
                if simple > 0 {
                    content.extend(element(TAG, &kept));
                }
            }
            _ => content.extend_from_slice(raw),
        }
    }
    Ok(content)
}

fn label_tag(json: &str) -> Vec<u8> {
    let mut st = element(TAG_NAME, NAME.as_bytes());
    st.extend(element(TAG_STRING, json.as_bytes()));
    let mut tag = element(TARGETS, &[]);
    tag.extend(element(SIMPLE_TAG, &st));
    element(TAG, &tag)
}

struct Layout {
    segment: El,
    segment_end: u64,
    kids: Vec<El>,
}

fn layout(src: &mut dyn Source, len: u64) -> Result<Layout> {
    let ebml = read_el(src, 0, len)?;
    if ebml.id != EBML {
        return Err(MetaError::malformed("not a Matroska file (no EBML header)"));
    }
    let segment = read_el(src, ebml.end(), len)?;
    if segment.id != SEGMENT {
        return Err(MetaError::malformed(
            "Matroska has no Segment after the EBML header",
        ));
    }
    let segment_end = match segment.size {
        Some(s) if segment.data() + s <= len => segment.data() + s,
        Some(s) => {
            return Err(MetaError::malformed(format!(
                "Matroska segment declares {s} bytes past the end of the file (truncated)"
            )))
        }
        None => len,
    };
    let kids = children(src, segment.data(), segment_end, len)?;
    Ok(Layout {
        segment,
        segment_end,
        kids,
    })
}

impl FormatHandler for Matroska {
    fn format(&self) -> Format {
        Format::Matroska
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3])
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = source_len(src)?;
        let mut scan = Scan::default();
        let found = (|| -> Result<()> {
            let l = layout(src, len)?;
            for t in l.kids.iter().filter(|k| k.id == TAGS) {
                let buf = read_at(src, t.at, t.end() - t.at, len, "Matroska Tags")?;
                tags_labels(&buf)?
                    .into_iter()
                    .for_each(|v| scan.add_json("matroska:Tags:SimpleTag:AIGC", v));
            }
            Ok(())
        })();
        scan.record("matroska", found)?;
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
        if l.segment_end != len && l.segment.size.is_some() {
            return Err(MetaError::unsupported(
                "data after the Matroska segment (several segments) is not supported",
            ));
        }
        let tags: Vec<&El> = l.kids.iter().filter(|k| k.id == TAGS).collect();
        let first = tags.first().copied();
        let mut content = match first {
            Some(t) => {
                if t.end() - t.at > MAX_CARRIER {
                    return Err(MetaError::too_large(
                        "Matroska Tags element is over the metadata limit",
                    ));
                }
                tags_without_label(&read_at(src, t.at, t.end() - t.at, len, "Matroska Tags")?)?
            }
            None => Vec::new(),
        };
        content.extend(label_tag(label_json));
        let new_tags = element(TAGS, &content);

        // In place: the old Tags plus any Void right after it.
        let room = |t: &El| -> u64 {
            let i = l.kids.iter().position(|k| k.at == t.at).expect("a child");
            let mut end = t.end();
            for k in &l.kids[i + 1..] {
                if k.id != VOID || k.at != end {
                    break;
                }
                end = k.end();
            }
            end - t.at
        };
        let new_len = new_tags.len() as u64;
        let mut patches: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut append: Option<u64> = None; // where the new Tags goes at the end
        match first {
            Some(t) if new_len == room(t) || new_len + 2 <= room(t) => {
                let mut bytes = new_tags.clone();
                if new_len < room(t) {
                    bytes.extend(void(room(t) - new_len));
                }
                patches.push((t.at, bytes));
            }
            Some(t) if l.kids.last().is_some_and(|k| k.at == t.at) => append = Some(t.at),
            Some(t) => {
                patches.push((t.at, void(t.end() - t.at)));
                append = Some(l.segment_end);
            }
            None => append = Some(l.segment_end),
        }
        // Other Tags elements lose their label SimpleTags in place.
        for t in tags.iter().skip(1) {
            let buf = read_at(src, t.at, t.end() - t.at, len, "Matroska Tags")?;
            if tags_labels(&buf)?.is_empty() {
                continue;
            }
            let mut bytes = element(TAGS, &tags_without_label(&buf)?);
            let span = t.end() - t.at;
            if bytes.len() as u64 + 2 > span {
                bytes = void(span);
            } else {
                bytes.extend(void(span - bytes.len() as u64));
            }
            patches.push((t.at, bytes));
        }

        let copy_end = append.unwrap_or(len);
        if let Some(at) = append {
            let rel = at - l.segment.data();
            patches.push(seek_head_patch(src, &l, len, rel)?);
            if let Some(old) = l.segment.size {
                let new_size = old - (l.segment_end - at) + new_len;
                if size_len(new_size) > l.segment.size_len as usize {
                    return Err(MetaError::unsupported(
                        "the Matroska segment size field is too short for the new size",
                    ));
                }
                let field_at = l.segment.at + l.segment.header - l.segment.size_len;
                patches.push((field_at, encode_size(new_size, l.segment.size_len as usize)));
            }
        }
        copy_range(src, dst, 0, copy_end)?;
        if append.is_some() {
            dst.write_all(&new_tags)?;
        }
        for (at, bytes) in patches {
            patch(dst, at, &bytes)?;
        }
        dst.seek(SeekFrom::End(0))?;
        Ok(())
    }
}

/// The SeekHead rewritten (into its own bytes plus the Void after it) with its Tags entry
/// pointing at `rel` (relative to the segment data).
fn seek_head_patch(src: &mut dyn Source, l: &Layout, len: u64, rel: u64) -> Result<(u64, Vec<u8>)> {
    let i = l
        .kids
        .iter()
        .position(|k| k.id == SEEK_HEAD)
        .ok_or_else(|| {
            MetaError::unsupported("Matroska has no SeekHead to index the new Tags element")
        })?;
    let sh = &l.kids[i];
    let mut space = sh.end() - sh.at;
    if let Some(v) = l
        .kids
        .get(i + 1)
        .filter(|v| v.id == VOID && v.at == sh.end())
    {
        space += v.end() - v.at;
    }
    let buf = read_at(src, sh.at, sh.end() - sh.at, len, "Matroska SeekHead")?;
    let kids = children_in(&buf, sh.header as usize, buf.len())?;
    let has_crc = kids.iter().any(|k| k.id == CRC32);
    let tags_id = encode_id(TAGS);
    let mut body = Vec::new();
    let mut done = false;
    for k in kids.iter().filter(|k| k.id != CRC32) {
        let raw = &buf[k.at as usize..k.end() as usize];
        let inner = if k.id == SEEK {
            children_in(&buf, k.data() as usize, k.end() as usize)?
        } else {
            Vec::new()
        };
        let is_tags = inner
            .iter()
            .any(|c| c.id == SEEK_ID && buf[c.data() as usize..c.end() as usize] == tags_id[..]);
        if is_tags && !done {
            body.extend(seek_entry(&tags_id, rel));
            done = true;
        } else if !is_tags {
            body.extend_from_slice(raw);
        }
    }
    if !done {
        body.extend(seek_entry(&tags_id, rel));
    }
    if has_crc {
        let crc = crc32fast::hash(&body);
        let mut with = element(CRC32, &crc.to_le_bytes());
        with.extend(body);
        body = with;
    }
    let mut out = element(SEEK_HEAD, &body);
    let n = out.len() as u64;
    if n != space && n + 2 > space {
        return Err(MetaError::unsupported(
            "no room in the Matroska SeekHead for the new Tags position",
        ));
    }
    if n < space {
        out.extend(void(space - n));
    }
    Ok((sh.at, out))
}

fn seek_entry(id: &[u8], pos: u64) -> Vec<u8> {
    let bytes = pos.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    let mut inner = element(SEEK_ID, id);
    inner.extend(element(SEEK_POSITION, &bytes[skip..]));
    element(SEEK, &inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn void_has_the_exact_length() {
        for n in [2, 3, 9, 10, 11, 200, 70000] {
            let v = void(n);
            assert_eq!(v.len() as u64, n);
            let e = header(&v, 0).unwrap();
            assert_eq!(e.end(), n, "{n}");
        }
    }

    #[test]
    fn label_tag_reads_back() {
        let tags = element(TAGS, &label_tag("{\"Label\":\"1\"}"));
        assert_eq!(
            tags_labels(&tags).unwrap(),
            vec!["{\"Label\":\"1\"}".to_string()]
        );
        let cleaned = element(TAGS, &tags_without_label(&tags).unwrap());
        assert!(tags_labels(&cleaned).unwrap().is_empty());
    }
}
