//! TIFF (classic and BigTIFF): the label lives in IFD0 tag 700 (XMP); UserComment in IFD0 or the
//! Exif IFD is read as an alternative.
//!
//! Writing never moves image data: the file is copied as it is, then either the XMP is rewritten
//! in place (when the merged packet fits the old one's bytes, padded with whitespace) or the packet
//! and a copy of IFD0 with tag 700 pointing at it are appended and the header is pointed at the
//! new IFD0. The old packet's bytes are blanked so no stale label copy stays in the file.

use crate::bytes::{copy_range, read_at, source_len, Sink, Source};
use crate::error::{MetaError, Result};
use crate::handler::{merged_xmp, Format, FormatHandler, Scan, WriteOptions};
use crate::tiff_ifd::{
    self, blank_user_comment, find_user_comments, patch, read_header, read_ifd, TAG_XMP,
};
use crate::xmp;
use std::io::SeekFrom;

pub struct Tiff;

impl FormatHandler for Tiff {
    fn format(&self) -> Format {
        Format::Tiff
    }

    fn matches(&self, head: &[u8]) -> bool {
        tiff_ifd::is_tiff(head)
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = source_len(src)?;
        let mut scan = Scan::default();
        let found = (|| -> Result<()> {
            let h = read_header(src, 0, len)?;
            let ifd0 = read_ifd(src, &h, h.ifd0, len)?;
            if let Some(e) = ifd0.entries.iter().find(|e| e.tag == TAG_XMP) {
                let packet = read_at(src, e.value_at, e.value_len, len, "TIFF XMP (tag 700)")?;
                scan.add_xmp("tiff:IFD0:XMP", &packet);
            }
            for c in find_user_comments(src, 0, len)?
                .into_iter()
                .filter(|c| c.is_label())
            {
                scan.add_json(&format!("tiff:{}:UserComment", c.ifd), c.text);
            }
            Ok(())
        })();
        scan.record("tiff", found)?;
        Ok(scan)
    }

    fn write(
        &self,
        src: &mut dyn Source,
        dst: &mut dyn Sink,
        label_json: &str,
        opts: &WriteOptions,
    ) -> Result<()> {
        let len = source_len(src)?;
        let h = read_header(src, 0, len)?;
        let ifd0 = read_ifd(src, &h, h.ifd0, len)?;
        let old = ifd0.entries.iter().find(|e| e.tag == TAG_XMP);
        let existing = match old {
            Some(e) => {
                let raw = read_at(src, e.value_at, e.value_len, len, "TIFF XMP (tag 700)")?;
                Some(raw)
            }
            None => None,
        };
        let packet = merged_xmp(existing, label_json, opts)?;
        let comments = find_user_comments(src, 0, len)?;

        copy_range(src, dst, 0, len)?;
        let out_of_line = |e: &tiff_ifd::Entry| e.value_len > if h.big_tiff { 8 } else { 4 };
        match old
            .filter(|e| out_of_line(e))
            .and_then(|e| xmp::pad_to(&packet, e.value_len as usize).map(|p| (e, p)))
        {
            Some((e, padded)) => patch(dst, e.value_at, padded.as_bytes())?,
            None => append_with_new_ifd0(dst, &h, &ifd0, len, &packet)?,
        }
        if let Some(e) = old.filter(|e| out_of_line(e) && (packet.len() as u64) > e.value_len) {
            patch(dst, e.value_at, &vec![b' '; e.value_len as usize])?;
        }
        for c in comments.iter().filter(|c| c.is_label()) {
            patch(dst, c.at, &blank_user_comment(c.len))?;
        }
        dst.seek(SeekFrom::End(0))?;
        Ok(())
    }
}

fn append_with_new_ifd0(
    dst: &mut dyn Sink,
    h: &tiff_ifd::Header,
    ifd0: &tiff_ifd::Ifd,
    len: u64,
    packet: &str,
) -> Result<()> {
    let align = if h.big_tiff { 8 } else { 2 };
    let mut pos = len;
    dst.seek(SeekFrom::Start(pos))?;
    let pad_to_align = |dst: &mut dyn Sink, pos: &mut u64| -> Result<()> {
        while !pos.is_multiple_of(align) {
            dst.write_all(&[0])?;
            *pos += 1;
        }
        Ok(())
    };
    pad_to_align(dst, &mut pos)?;
    let xmp_at = pos;
    dst.write_all(packet.as_bytes())?;
    pos += packet.len() as u64;
    pad_to_align(dst, &mut pos)?;
    let ifd_at = pos;

    let mut entries: Vec<Vec<u8>> = ifd0
        .entries
        .iter()
        .filter(|e| e.tag != TAG_XMP)
        .map(|e| e.raw.clone())
        .collect();
    let mut xmp_entry = Vec::with_capacity(h.entry_size() as usize);
    xmp_entry.extend_from_slice(&h.u16_bytes(TAG_XMP));
    xmp_entry.extend_from_slice(&h.u16_bytes(1)); // BYTE
    xmp_entry.extend_from_slice(&h.offset_bytes(packet.len() as u64));
    xmp_entry.extend_from_slice(&h.offset_bytes(xmp_at - h.base));
    entries.push(xmp_entry);
    entries.sort_by_key(|raw| h.u16(raw));

    let count_size = if h.big_tiff { 8 } else { 2 };
    let ifd_end = ifd_at
        + count_size
        + entries.len() as u64 * h.entry_size()
        + if h.big_tiff { 8 } else { 4 };
    if !h.big_tiff && ifd_end > u32::MAX as u64 {
        return Err(MetaError::too_large(
            "the TIFF would pass 4 GB; classic TIFF offsets cannot address it",
        ));
    }
    if h.big_tiff {
        dst.write_all(&h.offset_bytes(entries.len() as u64))?;
    } else {
        dst.write_all(&h.u16_bytes(entries.len() as u16))?;
    }
    for e in &entries {
        dst.write_all(e)?;
    }
    dst.write_all(&h.offset_bytes(ifd0.next))?;
    patch(dst, h.ifd0_field, &h.offset_bytes(ifd_at - h.base))
}
