//! FLAC: the label is a `VORBIS_COMMENT` entry `AIGC=<json>`. The block is rewritten in place and
//! any change in its size is taken from (or given to) a PADDING block, so the audio frames keep
//! their offsets whenever there is padding to spare. When they must move, nothing breaks: FLAC
//! seek points are relative to the first frame.

use crate::bytes::{copy_range, read_array, read_at, source_len, Sink, Source};
use crate::error::{MetaError, Result};
use crate::handler::{Format, FormatHandler, Scan, WriteOptions};
use crate::vorbis_comment::Comments;
use std::io::SeekFrom;

const VORBIS_COMMENT: u8 = 4;
const PADDING: u8 = 1;
/// Room left for later edits when the audio has to move anyway.
const NEW_PADDING: usize = 1024;

pub struct Flac;

struct Block {
    ty: u8,
    at: u64,
    len: u64,
}

/// The metadata blocks and where the audio frames start.
fn walk(src: &mut dyn Source, len: u64) -> Result<(Vec<Block>, u64)> {
    if read_at(src, 0, 4.min(len), len, "FLAC signature")? != b"fLaC" {
        return Err(MetaError::malformed("not a FLAC file (no fLaC signature)"));
    }
    let mut blocks = Vec::new();
    let mut pos = 4u64;
    loop {
        if pos + 4 > len {
            return Err(MetaError::malformed(format!(
                "FLAC ends inside the metadata at offset {pos} (truncated)"
            )));
        }
        src.seek(SeekFrom::Start(pos))?;
        let h = read_array::<4>(src)?;
        let blen = u32::from_be_bytes([0, h[1], h[2], h[3]]) as u64;
        if pos + 4 + blen > len {
            return Err(MetaError::malformed(format!(
                "FLAC metadata block {} at offset {pos} declares {blen} bytes past the end of the file (truncated)",
                h[0] & 0x7F
            )));
        }
        blocks.push(Block {
            ty: h[0] & 0x7F,
            at: pos,
            len: blen,
        });
        pos += 4 + blen;
        if h[0] & 0x80 != 0 {
            return Ok((blocks, pos));
        }
        if blocks.len() > 1 << 16 {
            return Err(MetaError::malformed("FLAC has no last-metadata-block flag"));
        }
    }
}

/// Padding when the metadata must grow: at least [`NEW_PADDING`], rounded so the audio frames
/// move by whole pages.
fn grown_padding(fixed: u64, old_total: u64) -> usize {
    (crate::bytes::page_rounded(fixed + 4, 0, NEW_PADDING as u64, old_total)) as usize
}

impl FormatHandler for Flac {
    fn format(&self) -> Format {
        Format::Flac
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.starts_with(b"fLaC")
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = source_len(src)?;
        let mut scan = Scan::default();
        let blocks = match walk(src, len) {
            Ok((b, _)) => b,
            Err(e) => {
                scan.record("flac", Err(e))?;
                return Ok(scan);
            }
        };
        for b in blocks.iter().filter(|b| b.ty == VORBIS_COMMENT) {
            let parsed = read_at(src, b.at + 4, b.len, len, "FLAC VORBIS_COMMENT")
                .and_then(|d| Comments::parse(&d, "FLAC VORBIS_COMMENT"));
            match parsed {
                Ok(c) => c
                    .labels()
                    .into_iter()
                    .for_each(|l| scan.add_json("flac:VORBIS_COMMENT:AIGC", l)),
                Err(e) => scan.problem("flac:VORBIS_COMMENT", e.message),
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
        let (blocks, audio_at) = walk(src, len)?;
        if blocks.first().is_none_or(|b| b.ty != 0) {
            return Err(MetaError::malformed(
                "FLAC does not start with a STREAMINFO block",
            ));
        }
        let mut comments = match blocks.iter().find(|b| b.ty == VORBIS_COMMENT) {
            Some(b) => Comments::parse(
                &read_at(src, b.at + 4, b.len, len, "FLAC VORBIS_COMMENT")?,
                "FLAC VORBIS_COMMENT",
            )?,
            None => Comments {
                vendor: b"aigc-label".to_vec(),
                entries: Vec::new(),
                trailer: Vec::new(),
            },
        };
        comments.set_label(label_json);
        let body = comments.to_bytes();
        if body.len() >= 1 << 24 {
            return Err(MetaError::too_large(
                "the VORBIS_COMMENT block would pass the 16 MiB FLAC block limit",
            ));
        }
        // Blocks keep their order: the comment replaces the first old one (or follows
        // STREAMINFO), other comment blocks go, and the first PADDING block absorbs the change.
        enum Item<'a> {
            Keep(&'a Block),
            Comment,
            Padding(usize),
        }
        let mut items: Vec<Item> = Vec::new();
        let mut have_comment = false;
        let mut padding_at = None;
        for b in &blocks {
            match b.ty {
                VORBIS_COMMENT if !have_comment => {
                    items.push(Item::Comment);
                    have_comment = true;
                }
                VORBIS_COMMENT => {}
                PADDING if padding_at.is_none() => {
                    padding_at = Some(items.len());
                    items.push(Item::Padding(0));
                }
                _ => items.push(Item::Keep(b)),
            }
        }
        if !have_comment {
            items.insert(1, Item::Comment);
            padding_at = padding_at.map(|i| i + 1);
        }
        let old_total = audio_at - 4;
        let fixed: u64 = items
            .iter()
            .map(|i| match i {
                Item::Keep(b) => 4 + b.len,
                Item::Comment => 4 + body.len() as u64,
                Item::Padding(_) => 0,
            })
            .sum();
        // Padding size that keeps the audio where it is, if there is one.
        let fit = old_total.checked_sub(fixed + 4).map(|n| n as usize);
        match (padding_at, fit) {
            (Some(i), Some(n)) => items[i] = Item::Padding(n),
            (Some(i), None) if fixed == old_total => {
                items.remove(i);
            }
            (Some(i), None) => items[i] = Item::Padding(grown_padding(fixed, old_total)),
            (None, Some(n)) => items.push(Item::Padding(n)),
            (None, None) if fixed == old_total => {}
            (None, None) => items.push(Item::Padding(grown_padding(fixed, old_total))),
        }

        dst.write_all(b"fLaC")?;
        let last = items.len() - 1;
        for (i, item) in items.iter().enumerate() {
            let flag = if i == last { 0x80 } else { 0 };
            match item {
                Item::Keep(b) => {
                    dst.write_all(&[b.ty | flag])?;
                    copy_range(src, dst, b.at + 1, 3 + b.len)?;
                }
                Item::Comment => {
                    dst.write_all(&[VORBIS_COMMENT | flag])?;
                    dst.write_all(&(body.len() as u32).to_be_bytes()[1..])?;
                    dst.write_all(&body)?;
                }
                Item::Padding(n) => {
                    dst.write_all(&[PADDING | flag])?;
                    dst.write_all(&(*n as u32).to_be_bytes()[1..])?;
                    dst.write_all(&vec![0u8; *n])?;
                }
            }
        }
        crate::bytes::copy_rest(src, dst, audio_at)
    }
}
