//! HEIF and AVIF (ISO/IEC 23008-12): the label lives in an XMP item (`infe` type `mime`, content
//! type `application/rdf+xml`) that describes the primary image (`iref` `cdsc`). Exif items are
//! read for UserComment labels.
//!
//! Writing rebuilds only the `meta` box and appends one `mdat` box holding the packet, addressed
//! by file offset (construction method 0, which every reader supports; exiftool cannot read
//! `idat`). `iloc` is re-serialized and every file offset that points past `meta` is shifted by
//! the amount `meta` grew. Everything else is copied byte for byte. Re-labeling drops the
//! trailing `mdat` an earlier run added instead of piling up packets.

use crate::bmff::{boxes, make_box, BoxRef};
use crate::bytes::{be_u16, be_u32, copy_range, read_at, source_len, Sink, Source, MAX_CARRIER};
use crate::error::{MetaError, Result};
use crate::handler::{merged_xmp, Format, FormatHandler, Scan, WriteOptions};
use crate::tiff_ifd::{blank_label_comments, patch};
use std::io::SeekFrom;

const XMP_MIME: &str = "application/rdf+xml";
const BRANDS: [&[u8; 4]; 10] = [
    b"mif1", b"msf1", b"heic", b"heix", b"heim", b"heis", b"hevc", b"avif", b"avis", b"miaf",
];

pub struct Heif;

struct Item {
    id: u32,
    ty: [u8; 4],
    content_type: String,
}

#[derive(Clone, Debug)]
struct Extent {
    index: u64,
    offset: u64,
    length: u64,
}

#[derive(Clone, Debug)]
struct Loc {
    id: u32,
    method: u8,
    data_ref: u16,
    base: u64,
    extents: Vec<Extent>,
}

struct Iloc {
    version: u8,
    offset_size: u8,
    length_size: u8,
    base_size: u8,
    index_size: u8,
    locs: Vec<Loc>,
}

/// A cursor over an in-memory box body with bounds-checked reads.
struct Cur<'a> {
    b: &'a [u8],
    p: usize,
    what: &'static str,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.p + n > self.b.len() {
            return Err(MetaError::malformed(format!(
                "{} box is truncated",
                self.what
            )));
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn uint(&mut self, size: u8) -> Result<u64> {
        let s = self.take(size as usize)?;
        Ok(s.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }
    fn cstr(&mut self) -> Result<String> {
        let rest = &self.b[self.p..];
        let n = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        self.p += (n + 1).min(rest.len());
        Ok(String::from_utf8_lossy(&rest[..n]).into_owned())
    }
}

fn put_uint(out: &mut Vec<u8>, v: u64, size: u8) {
    for i in (0..size).rev() {
        out.push((v >> (8 * i as u32)) as u8);
    }
}

fn parse_iloc(body: &[u8]) -> Result<Iloc> {
    let mut c = Cur {
        b: body,
        p: 0,
        what: "iloc",
    };
    let version = c.take(4)?[0];
    if version > 2 {
        return Err(MetaError::unsupported(format!(
            "iloc version {version} is not supported"
        )));
    }
    let s = c.take(2)?;
    let (offset_size, length_size, base_size) = (s[0] >> 4, s[0] & 15, s[1] >> 4);
    let index_size = if version >= 1 { s[1] & 15 } else { 0 };
    for sz in [offset_size, length_size, base_size, index_size] {
        if ![0, 4, 8].contains(&sz) {
            return Err(MetaError::malformed(format!(
                "iloc has a field size of {sz} bytes (only 0, 4, 8 are allowed)"
            )));
        }
    }
    let count = if version < 2 { c.uint(2)? } else { c.uint(4)? };
    let min_entry = if version < 2 { 2 } else { 4 } + 2 + base_size as u64 + 2;
    if count.saturating_mul(min_entry) > body.len() as u64 {
        return Err(MetaError::malformed(format!(
            "iloc declares {count} items, more than its {} bytes can hold",
            body.len()
        )));
    }
    let mut locs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let id = if version < 2 { c.uint(2)? } else { c.uint(4)? } as u32;
        let method = if version >= 1 {
            (c.uint(2)? & 15) as u8
        } else {
            0
        };
        let data_ref = c.uint(2)? as u16;
        let base = c.uint(base_size)?;
        let n = c.uint(2)?;
        let mut extents = Vec::new();
        for _ in 0..n {
            let index = if version >= 1 { c.uint(index_size)? } else { 0 };
            let offset = c.uint(offset_size)?;
            let length = c.uint(length_size)?;
            extents.push(Extent {
                index,
                offset,
                length,
            });
        }
        locs.push(Loc {
            id,
            method,
            data_ref,
            base,
            extents,
        });
    }
    Ok(Iloc {
        version,
        offset_size,
        length_size,
        base_size,
        index_size,
        locs,
    })
}

fn write_iloc(il: &Iloc) -> Vec<u8> {
    let mut b = vec![il.version, 0, 0, 0];
    b.push((il.offset_size << 4) | il.length_size);
    b.push((il.base_size << 4) | il.index_size);
    let id_size = if il.version < 2 { 2 } else { 4 };
    put_uint(&mut b, il.locs.len() as u64, id_size);
    for l in &il.locs {
        put_uint(&mut b, l.id as u64, id_size);
        if il.version >= 1 {
            put_uint(&mut b, l.method as u64, 2);
        }
        put_uint(&mut b, l.data_ref as u64, 2);
        put_uint(&mut b, l.base, il.base_size);
        put_uint(&mut b, l.extents.len() as u64, 2);
        for e in &l.extents {
            if il.version >= 1 {
                put_uint(&mut b, e.index, il.index_size);
            }
            put_uint(&mut b, e.offset, il.offset_size);
            put_uint(&mut b, e.length, il.length_size);
        }
    }
    make_box(b"iloc", &b)
}

fn parse_iinf(src: &mut dyn Source, b: &BoxRef, len: u64) -> Result<Vec<Item>> {
    let body = read_at(src, b.body(), b.size - b.header, len, "iinf box")?;
    let version = *body
        .first()
        .ok_or_else(|| MetaError::malformed("iinf box is empty"))?;
    let start = if version == 0 { 6 } else { 8 };
    if body.len() < start {
        return Err(MetaError::malformed("iinf box is truncated"));
    }
    let mut items = Vec::new();
    let base = b.body();
    for infe in boxes(src, base + start as u64, b.end(), "iinf")?
        .iter()
        .filter(|x| &x.ty == b"infe")
    {
        let rel = (infe.body() - base) as usize;
        let mut c = Cur {
            b: &body[rel..(infe.end() - base) as usize],
            p: 0,
            what: "infe",
        };
        let v = c.take(4)?[0];
        let (id, ty) = match v {
            0 | 1 => {
                let id = c.uint(2)? as u32;
                c.take(2)?;
                (id, *b"mime")
            }
            _ => {
                let id = if v == 2 { c.uint(2)? } else { c.uint(4)? } as u32;
                c.take(2)?;
                let ty: [u8; 4] = c.take(4)?.try_into().expect("4 bytes");
                (id, ty)
            }
        };
        c.cstr()?; // item_name
        let content_type = if &ty == b"mime" {
            c.cstr()?
        } else {
            String::new()
        };
        items.push(Item {
            id,
            ty,
            content_type,
        });
    }
    Ok(items)
}

/// Everything about the `meta` box that reading and writing need.
struct Meta {
    top: Vec<BoxRef>,
    meta: BoxRef,
    children: Vec<BoxRef>,
    items: Vec<Item>,
    iloc: Iloc,
    idat: Option<BoxRef>,
    primary: Option<u32>,
}

fn parse(src: &mut dyn Source, len: u64) -> Result<Meta> {
    let top = boxes(src, 0, len, "HEIF")?;
    let meta = top
        .iter()
        .find(|b| &b.ty == b"meta")
        .cloned()
        .ok_or_else(|| MetaError::malformed("HEIF file has no top-level meta box"))?;
    let children = boxes(src, meta.body() + 4, meta.end(), "meta")?;
    let find = |ty: &[u8; 4]| children.iter().find(|b| &b.ty == ty).cloned();
    let items = match find(b"iinf") {
        Some(b) => parse_iinf(src, &b, len)?,
        None => Vec::new(),
    };
    let iloc = match find(b"iloc") {
        Some(b) => parse_iloc(&read_at(src, b.body(), b.size - b.header, len, "iloc box")?)?,
        None => Iloc {
            version: 1,
            offset_size: 4,
            length_size: 4,
            base_size: 0,
            index_size: 0,
            locs: Vec::new(),
        },
    };
    let primary = match find(b"pitm") {
        Some(b) => {
            let body = read_at(src, b.body(), b.size - b.header, len, "pitm box")?;
            match body.first() {
                Some(0) if body.len() >= 6 => Some(be_u16(&body[4..]) as u32),
                Some(_) if body.len() >= 8 => Some(be_u32(&body[4..])),
                _ => return Err(MetaError::malformed("pitm box is truncated")),
            }
        }
        None => None,
    };
    let idat = find(b"idat");
    Ok(Meta {
        top,
        meta,
        children,
        items,
        iloc,
        idat,
        primary,
    })
}

impl Meta {
    fn xmp_item(&self) -> Option<&Item> {
        self.items
            .iter()
            .find(|i| &i.ty == b"mime" && i.content_type.trim() == XMP_MIME)
    }

    fn loc(&self, id: u32) -> Option<&Loc> {
        self.iloc.locs.iter().find(|l| l.id == id)
    }

    /// Absolute file ranges holding an item's bytes.
    fn ranges(&self, id: u32) -> Result<Vec<(u64, u64)>> {
        let loc = self
            .loc(id)
            .ok_or_else(|| MetaError::malformed(format!("item {id} has no iloc entry")))?;
        let origin = match (loc.method, loc.data_ref) {
            (0, 0) => 0,
            (1, _) => self
                .idat
                .as_ref()
                .ok_or_else(|| {
                    MetaError::malformed(format!("item {id} is in idat but there is no idat box"))
                })?
                .body(),
            _ => {
                return Err(MetaError::unsupported(format!(
                    "item {id} uses construction method {} or an external data reference",
                    loc.method
                )))
            }
        };
        Ok(loc
            .extents
            .iter()
            .map(|e| {
                (
                    origin.saturating_add(loc.base).saturating_add(e.offset),
                    e.length,
                )
            })
            .collect())
    }

    fn item_bytes(&self, src: &mut dyn Source, id: u32, len: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for (at, n) in self.ranges(id)? {
            let n = if n == 0 { len.saturating_sub(at) } else { n };
            if out.len() as u64 + n > MAX_CARRIER {
                return Err(MetaError::too_large(format!(
                    "item {id} is larger than the metadata limit"
                )));
            }
            out.extend(read_at(src, at, n, len, &format!("item {id} data"))?);
        }
        Ok(out)
    }
}

fn check_ftyp(src: &mut dyn Source) -> Result<u64> {
    let len = source_len(src)?;
    let head = read_at(src, 0, 12.min(len), len, "ftyp box")?;
    if head.len() < 12 || &head[4..8] != b"ftyp" {
        return Err(MetaError::malformed("not a HEIF file (no ftyp box)"));
    }
    Ok(len)
}

impl FormatHandler for Heif {
    fn format(&self) -> Format {
        Format::Heif
    }

    fn matches(&self, head: &[u8]) -> bool {
        if head.len() < 16 || &head[4..8] != b"ftyp" {
            return false;
        }
        let size = (be_u32(head) as usize).min(head.len());
        head[8..size.max(12)]
            .chunks_exact(4)
            .enumerate()
            .filter(|(i, _)| *i != 1) // minor_version
            .any(|(_, b)| BRANDS.iter().any(|brand| b == *brand))
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = check_ftyp(src)?;
        let mut scan = Scan::default();
        let m = match parse(src, len) {
            Ok(m) => m,
            Err(e) => {
                scan.record("heif", Err(e))?;
                return Ok(scan);
            }
        };
        scan.c2pa = m.top.iter().any(|b| &b.ty == b"uuid");
        for item in &m.items {
            let is_xmp = &item.ty == b"mime" && item.content_type.trim() == XMP_MIME;
            if !is_xmp && &item.ty != b"Exif" {
                continue;
            }
            match m.item_bytes(src, item.id, len) {
                Ok(bytes) if is_xmp => scan.add_xmp("heif:item:XMP", &bytes),
                Ok(bytes) => match bytes.get(..4).map(be_u32) {
                    Some(skip) if (skip as usize) + 4 <= bytes.len() => {
                        scan.add_exif("heif:item:Exif", &bytes[4 + skip as usize..])
                    }
                    _ => scan.problem(
                        "heif:item:Exif",
                        "Exif item is shorter than its header offset",
                    ),
                },
                Err(e) => scan.problem(
                    if is_xmp {
                        "heif:item:XMP"
                    } else {
                        "heif:item:Exif"
                    },
                    e.message,
                ),
            }
        }
        Ok(scan)
    }

    fn write(
        &self,
        src: &mut dyn Source,
        dst: &mut dyn Sink,
        label_json: &str,
        opts: &WriteOptions,
    ) -> Result<()> {
        let len = check_ftyp(src)?;
        let m = parse(src, len)?;
        if m.top.iter().any(|b| &b.ty == b"moov") {
            return Err(MetaError::unsupported(
                "HEIF image sequences (a moov track) are not supported yet",
            ));
        }
        let old_xmp = m.xmp_item().map(|i| i.id);
        let existing = match old_xmp {
            Some(id) => Some(m.item_bytes(src, id, len)?),
            None => None,
        };
        let packet = merged_xmp(existing, label_json, opts)?;
        let last = m.top.last().expect("meta was found");
        if last.at + last.size == len && be_u32(&read_at(src, last.at, 4, len, "box header")?) == 0
        {
            return Err(MetaError::unsupported(
                "the last box runs to the end of the file (size 0); cannot append the XMP after it",
            ));
        }

        // Where the old packet goes: a trailing mdat that holds only it (what an earlier run
        // wrote) is dropped; bytes elsewhere are blanked so no stale label copy stays.
        let mut keep_until = len;
        let mut blank_in_file: Vec<(u64, u64)> = Vec::new();
        let mut idat: Option<Vec<u8>> = None;
        if let Some(id) = old_xmp {
            let ranges = m.ranges(id)?;
            let in_idat = m.loc(id).is_some_and(|l| l.method == 1);
            if !in_idat
                && ranges.len() == 1
                && &last.ty == b"mdat"
                && ranges[0] == (last.body(), last.size - last.header)
                && last.at > m.meta.at
            {
                keep_until = last.at;
            } else if in_idat {
                let b = m.idat.as_ref().expect("checked by ranges");
                let mut bytes = read_at(src, b.body(), b.size - b.header, len, "idat box")?;
                for (at, n) in ranges {
                    let rel = (at - b.body()) as usize;
                    bytes[rel..rel + n as usize].fill(b' ');
                }
                idat = Some(bytes);
            } else {
                blank_in_file.extend(ranges);
            }
        }

        let mut iloc = Iloc {
            locs: m.iloc.locs.clone(),
            ..m.iloc
        };
        iloc.offset_size = iloc.offset_size.max(4);
        iloc.length_size = iloc.length_size.max(4);
        let (xmp_id, new_item) = match old_xmp {
            Some(id) => (id, false),
            None => (
                m.items
                    .iter()
                    .map(|i| i.id)
                    .chain(iloc.locs.iter().map(|l| l.id))
                    .max()
                    .unwrap_or(0)
                    + 1,
                true,
            ),
        };
        if iloc.version < 2 && xmp_id > 0xFFFF {
            return Err(MetaError::unsupported(
                "HEIF has too many items for a 16-bit item ID",
            ));
        }
        iloc.locs.retain(|l| l.id != xmp_id);
        let original = iloc.locs.clone();
        iloc.locs.push(Loc {
            id: xmp_id,
            method: 0,
            data_ref: 0,
            base: 0,
            extents: vec![Extent {
                index: 0,
                offset: 0,
                length: packet.len() as u64,
            }],
        });

        let mut replaced: Vec<([u8; 4], Vec<u8>)> = Vec::new();
        if new_item {
            replaced.push((*b"iinf", iinf_with_xmp(src, &m, len, xmp_id)?));
            if let Some(primary) = m.primary {
                replaced.push((*b"iref", iref_with_cdsc(src, &m, len, xmp_id, primary)?));
            }
        }
        if let Some(bytes) = &idat {
            replaced.push((*b"idat", make_box(b"idat", bytes)));
        }

        // File offsets past meta move by the growth of meta (delta); the packet goes in an mdat
        // appended at the end. Iterate to a fixed point: offsets widened to 8 bytes grow meta.
        let old_meta_end = m.meta.end();
        let relocate = |iloc: &mut Iloc, delta: i64| -> Result<()> {
            for (l, o) in iloc.locs.iter_mut().zip(&original) {
                if l.method != 0 || l.data_ref != 0 {
                    continue;
                }
                let shift = |v: u64| {
                    if v >= old_meta_end {
                        v.checked_add_signed(delta)
                    } else {
                        Some(v)
                    }
                };
                let bad = || MetaError::malformed("iloc offset underflow while shifting");
                if o.base != 0 {
                    l.base = shift(o.base).ok_or_else(bad)?;
                } else {
                    for (e, oe) in l.extents.iter_mut().zip(&o.extents) {
                        e.offset = shift(oe.offset).ok_or_else(bad)?;
                    }
                }
            }
            let xmp_at = (keep_until as i64 + delta) as u64 + 8;
            iloc.locs.last_mut().expect("pushed above").extents[0].offset = xmp_at;
            let max = iloc
                .locs
                .iter()
                .flat_map(|l| l.extents.iter().map(move |e| l.base.max(e.offset)))
                .max()
                .unwrap_or(0);
            if max > u32::MAX as u64 {
                iloc.offset_size = 8;
                if iloc.base_size == 4 {
                    iloc.base_size = 8;
                }
            }
            Ok(())
        };
        let mut delta = 0i64;
        for _ in 0..4 {
            relocate(&mut iloc, delta)?;
            let size = assemble_meta(src, &m, len, &replaced, &write_iloc(&iloc), m.meta.header)?
                .len() as i64;
            let grown = size - m.meta.size as i64;
            if grown == delta {
                break;
            }
            delta = grown;
        }
        relocate(&mut iloc, delta)?;
        let meta_bytes = assemble_meta(src, &m, len, &replaced, &write_iloc(&iloc), m.meta.header)?;
        if meta_bytes.len() as i64 - m.meta.size as i64 != delta {
            return Err(MetaError::malformed(
                "HEIF meta box size did not settle while shifting offsets",
            ));
        }

        copy_range(src, dst, 0, m.meta.at)?;
        dst.write_all(&meta_bytes)?;
        copy_range(src, dst, old_meta_end, keep_until - old_meta_end)?;
        dst.write_all(&make_box(b"mdat", packet.as_bytes()))?;
        let moved = |at: u64| {
            if at >= old_meta_end {
                (at as i64 + delta) as u64
            } else {
                at
            }
        };
        for (at, n) in blank_in_file {
            patch(dst, moved(at), &vec![b' '; n as usize])?;
        }
        // Exif items in the media data whose UserComment holds a label are blanked in place.
        for item in m.items.iter().filter(|i| &i.ty == b"Exif") {
            let ranges = m.ranges(item.id)?;
            if ranges.len() != 1 || m.loc(item.id).is_some_and(|l| l.method != 0) {
                continue;
            }
            let mut bytes = m.item_bytes(src, item.id, len)?;
            let skip = bytes.get(..4).map(be_u32).unwrap_or(u32::MAX) as usize;
            if skip + 4 > bytes.len() {
                continue;
            }
            if blank_label_comments(&mut bytes[4 + skip..]).is_ok_and(|(_, changed)| changed) {
                patch(dst, moved(ranges[0].0), &bytes)?;
            }
        }
        dst.seek(SeekFrom::End(0))?;
        Ok(())
    }
}

/// The new `meta` box: original children in order, with `iloc` and the `replaced` boxes swapped
/// in (those that did not exist are added at the end).
fn assemble_meta(
    src: &mut dyn Source,
    m: &Meta,
    len: u64,
    replaced: &[([u8; 4], Vec<u8>)],
    iloc: &[u8],
    header: u64,
) -> Result<Vec<u8>> {
    let mut body = read_at(src, m.meta.body(), 4, len, "meta box")?; // version and flags
    let mut used = vec![false; replaced.len()];
    let mut have_iloc = false;
    for c in &m.children {
        if &c.ty == b"iloc" {
            body.extend_from_slice(iloc);
            have_iloc = true;
        } else if let Some(i) = replaced.iter().position(|(ty, _)| *ty == c.ty) {
            if !used[i] {
                body.extend_from_slice(&replaced[i].1);
                used[i] = true;
            }
        } else {
            body.extend(read_at(src, c.at, c.size, len, "meta child box")?);
        }
    }
    if !have_iloc {
        body.extend_from_slice(iloc);
    }
    for (i, (_, bytes)) in replaced.iter().enumerate() {
        if !used[i] {
            body.extend_from_slice(bytes);
        }
    }
    let total = body.len() as u64 + header;
    let mut out = Vec::with_capacity(total as usize);
    if header == 16 {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(b"meta");
        out.extend_from_slice(&total.to_be_bytes());
    } else {
        if total > u32::MAX as u64 {
            return Err(MetaError::too_large("HEIF meta box would pass 4 GB"));
        }
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(b"meta");
    }
    out.extend(body);
    Ok(out)
}

/// `iinf` with one more `infe`: the XMP item.
fn iinf_with_xmp(src: &mut dyn Source, m: &Meta, len: u64, id: u32) -> Result<Vec<u8>> {
    let mut infe = vec![if id > 0xFFFF { 3 } else { 2 }, 0, 0, 0];
    put_uint(&mut infe, id as u64, if id > 0xFFFF { 4 } else { 2 });
    infe.extend_from_slice(&[0, 0]); // item_protection_index
    infe.extend_from_slice(b"mime");
    infe.extend_from_slice(b"XMP\0");
    infe.extend_from_slice(XMP_MIME.as_bytes());
    infe.push(0);
    let infe = make_box(b"infe", &infe);
    let Some(old) = m.children.iter().find(|b| &b.ty == b"iinf") else {
        let mut body = vec![0, 0, 0, 0, 0, 1];
        body.extend(infe);
        return Ok(make_box(b"iinf", &body));
    };
    let mut body = read_at(src, old.body(), old.size - old.header, len, "iinf box")?;
    if body[0] == 0 {
        let n = be_u16(&body[4..])
            .checked_add(1)
            .ok_or_else(|| MetaError::unsupported("iinf holds 65535 items already"))?;
        body[4..6].copy_from_slice(&n.to_be_bytes());
    } else {
        let n = be_u32(&body[4..]) + 1;
        body[4..8].copy_from_slice(&n.to_be_bytes());
    }
    body.extend(infe);
    Ok(make_box(b"iinf", &body))
}

/// `iref` with a `cdsc` reference from the XMP item to the primary image.
fn iref_with_cdsc(src: &mut dyn Source, m: &Meta, len: u64, from: u32, to: u32) -> Result<Vec<u8>> {
    let (mut body, wide) = match m.children.iter().find(|b| &b.ty == b"iref") {
        Some(old) => {
            let b = read_at(src, old.body(), old.size - old.header, len, "iref box")?;
            let wide = b.first().is_some_and(|&v| v != 0);
            (b, wide)
        }
        None => (vec![0, 0, 0, 0], false),
    };
    if !wide && (from > 0xFFFF || to > 0xFFFF) {
        return Err(MetaError::unsupported(
            "iref version 0 cannot reference item IDs above 65535",
        ));
    }
    let size = if wide { 4 } else { 2 };
    let mut r = Vec::new();
    put_uint(&mut r, from as u64, size);
    put_uint(&mut r, 1, 2);
    put_uint(&mut r, to as u64, size);
    body.extend(make_box(b"cdsc", &r));
    Ok(make_box(b"iref", &body))
}
