//! MP4, MOV, M4A (ISO BMFF / QuickTime): the label is a metadata item in `moov/udta/meta` with
//! handler `mdta`: a `keys` entry `mdta`/`AIGC` and the `ilst` item for its index holding a UTF-8
//! `data` box. Existing iTunes (`mdir`) metadata is left alone beside it. Also read: `moov/meta`,
//! iTunes freeform `----` items named `AIGC`, and XMP in `udta/XMP_` or a top-level XMP `uuid`.
//!
//! Only `moov` is rebuilt (in memory; it is the index, a few MB even for hours of video). When it
//! grows and media data follows it, every absolute offset past it is shifted: `stco`/`co64` chunk
//! offsets, `tfhd` base data offsets of fragments, `tfra` fragment offsets. A `free` box right
//! after `moov` absorbs the growth when it is large enough, so nothing moves at all. Everything
//! after `moov` is streamed; fragments are patched one `moof` at a time.

use crate::bmff::{boxes, boxes_in, make_box, BoxRef};
use crate::bytes::{be_u32, be_u64, copy_range, read_at, source_len, Sink, Source};
use crate::error::{MetaError, Result};
use crate::handler::{Format, FormatHandler, Scan, WriteOptions};
use crate::xmp;

pub struct Mp4;

/// `moov` and `moof` boxes are read whole; past this they are refused.
const MAX_INDEX: u64 = 64 << 20;
const KEY: &[u8] = b"AIGC";
/// Moves of media data are rounded up to whole pages of this size.
const PAGE: i64 = 4096;
const XMP_UUID: [u8; 16] = [
    0xBE, 0x7A, 0xCF, 0xCB, 0x97, 0xA9, 0x42, 0xE8, 0x9C, 0x71, 0x99, 0x94, 0x91, 0xE3, 0xAF, 0xAC,
];

/// Where a `meta` box's children start: QuickTime's `meta` has no version/flags, ISO's has.
fn meta_children(buf: &[u8], meta: &BoxRef) -> Result<Vec<BoxRef>> {
    let body = meta.body() as usize;
    let full = !(buf.len() >= body + 8 && &buf[body + 4..body + 8] == b"hdlr");
    let start = if full { body + 4 } else { body };
    boxes_in(
        buf,
        start.min(meta.end() as usize),
        meta.end() as usize,
        "meta",
    )
}

fn handler_of(buf: &[u8], children: &[BoxRef]) -> Option<[u8; 4]> {
    let h = children.iter().find(|b| b.is(b"hdlr"))?;
    let at = h.body() as usize + 8;
    (h.end() as usize >= at + 4).then(|| buf[at..at + 4].try_into().expect("4 bytes"))
}

fn slice<'a>(buf: &'a [u8], b: &BoxRef) -> &'a [u8] {
    &buf[b.at as usize..b.end() as usize]
}

/// `keys` entries as (namespace, name).
fn parse_keys(buf: &[u8], keys: &BoxRef) -> Result<Vec<([u8; 4], Vec<u8>)>> {
    let bad = || MetaError::malformed("MP4 keys box is truncated or has bad sizes");
    let body = &buf[keys.body() as usize..keys.end() as usize];
    let count = be_u32(body.get(4..8).ok_or_else(bad)?) as usize;
    let mut p = 8;
    let mut out = Vec::new();
    for _ in 0..count {
        let size = be_u32(body.get(p..p + 4).ok_or_else(bad)?) as usize;
        if size < 8 || p + size > body.len() {
            return Err(bad());
        }
        out.push((
            body[p + 4..p + 8].try_into().expect("4 bytes"),
            body[p + 8..p + size].to_vec(),
        ));
        p += size;
    }
    Ok(out)
}

/// The value of the first `data` box inside an `ilst` item.
fn item_value(buf: &[u8], item: &BoxRef) -> Result<Option<String>> {
    for d in boxes_in(buf, item.body() as usize, item.end() as usize, "ilst item")? {
        if d.is(b"data") && d.size >= d.header + 8 {
            let v = &buf[d.body() as usize + 8..d.end() as usize];
            return Ok(Some(String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(None)
}

/// Labels in a `meta` box: `mdta` keys named AIGC, and iTunes freeform items named AIGC.
fn meta_labels(buf: &[u8], meta: &BoxRef) -> Result<Vec<String>> {
    let children = meta_children(buf, meta)?;
    let mut out = Vec::new();
    let Some(ilst) = children.iter().find(|b| b.is(b"ilst")) else {
        return Ok(out);
    };
    let keys = match children.iter().find(|b| b.is(b"keys")) {
        Some(k) if handler_of(buf, &children) == Some(*b"mdta") => parse_keys(buf, k)?,
        _ => Vec::new(),
    };
    for item in boxes_in(buf, ilst.body() as usize, ilst.end() as usize, "ilst")? {
        let idx = be_u32(&item.ty) as usize;
        let keyed = idx >= 1 && keys.get(idx - 1).is_some_and(|(_, name)| name == KEY);
        if keyed || is_freeform_label(buf, &item)? {
            if let Some(v) = item_value(buf, &item)? {
                out.push(v);
            }
        }
    }
    Ok(out)
}

fn is_freeform_label(buf: &[u8], item: &BoxRef) -> Result<bool> {
    if !item.is(b"----") {
        return Ok(false);
    }
    Ok(boxes_in(
        buf,
        item.body() as usize,
        item.end() as usize,
        "freeform item",
    )?
    .iter()
    .any(|n| {
        n.is(b"name")
            && n.size >= n.header + 4
            && &buf[n.body() as usize + 4..n.end() as usize] == KEY
    }))
}

/// A `meta` box rewritten without any label item; with `add`, an `mdta` one gets the new label.
fn rewrite_meta(buf: &[u8], meta: &BoxRef, add: Option<&str>) -> Result<Vec<u8>> {
    let children = meta_children(buf, meta)?;
    let full = children.first().is_none_or(|c| c.at != meta.body());
    let mdta = handler_of(buf, &children) == Some(*b"mdta");
    let mut keys = match children.iter().find(|b| b.is(b"keys")) {
        Some(k) if mdta => parse_keys(buf, k)?,
        _ => Vec::new(),
    };
    // Old index → new index, with label keys removed.
    let mut remap = vec![0u32; keys.len() + 1];
    let mut kept_keys = Vec::new();
    for (i, k) in keys.drain(..).enumerate() {
        if k.1 != KEY {
            kept_keys.push(k);
            remap[i + 1] = kept_keys.len() as u32;
        }
    }
    let mut body = if full {
        buf[meta.body() as usize..meta.body() as usize + 4].to_vec()
    } else {
        Vec::new()
    };
    let mut have_keys = false;
    let mut have_ilst = false;
    let new_key_index = kept_keys.len() as u32 + 1;
    let keys_box = |kept: &[([u8; 4], Vec<u8>)], add: bool| {
        let mut kb = vec![0, 0, 0, 0];
        kb.extend_from_slice(&((kept.len() + add as usize) as u32).to_be_bytes());
        for (ns, name) in kept {
            kb.extend_from_slice(&((8 + name.len()) as u32).to_be_bytes());
            kb.extend_from_slice(ns);
            kb.extend_from_slice(name);
        }
        if add {
            kb.extend_from_slice(&((8 + KEY.len()) as u32).to_be_bytes());
            kb.extend_from_slice(b"mdta");
            kb.extend_from_slice(KEY);
        }
        make_box(b"keys", &kb)
    };
    let label_item = |json: &str| {
        let mut data = vec![0, 0, 0, 1, 0, 0, 0, 0]; // well-known type 1 (UTF-8), locale 0
        data.extend_from_slice(json.as_bytes());
        let mut ty = [0u8; 4];
        ty.copy_from_slice(&new_key_index.to_be_bytes());
        make_box(&ty, &make_box(b"data", &data))
    };
    for c in &children {
        if c.is(b"keys") && mdta {
            body.extend(keys_box(&kept_keys, add.is_some()));
            have_keys = true;
        } else if c.is(b"ilst") {
            let mut ib = Vec::new();
            for item in boxes_in(buf, c.body() as usize, c.end() as usize, "ilst")? {
                let idx = be_u32(&item.ty) as usize;
                if mdta && idx >= 1 && idx < remap.len() {
                    if remap[idx] == 0 {
                        continue;
                    }
                    let mut renumbered = slice(buf, &item).to_vec();
                    renumbered[4..8].copy_from_slice(&remap[idx].to_be_bytes());
                    ib.extend(renumbered);
                } else if !is_freeform_label(buf, &item)? {
                    ib.extend_from_slice(slice(buf, &item));
                }
            }
            if let Some(json) = add {
                ib.extend(label_item(json));
            }
            body.extend(make_box(b"ilst", &ib));
            have_ilst = true;
        } else {
            body.extend_from_slice(slice(buf, c));
        }
    }
    if let Some(json) = add {
        if !have_keys {
            body.extend(keys_box(&kept_keys, true));
        }
        if !have_ilst {
            body.extend(make_box(b"ilst", &label_item(json)));
        }
    }
    Ok(make_box(b"meta", &body))
}

/// A new `meta` box with handler `mdta` holding only the label.
fn new_mdta_meta(json: &str) -> Vec<u8> {
    let mut hdlr = vec![0u8; 8];
    hdlr.extend_from_slice(b"mdta");
    hdlr.extend_from_slice(&[0u8; 12]);
    hdlr.push(0);
    let mut body = vec![0, 0, 0, 0];
    body.extend(make_box(b"hdlr", &hdlr));
    let scratch = make_box(b"meta", &body);
    let meta = BoxRef {
        at: 0,
        header: 8,
        size: scratch.len() as u64,
        ty: *b"meta",
    };
    rewrite_meta(&scratch, &meta, Some(json)).expect("a well-formed meta box")
}

/// Adds `delta` to every absolute offset at or past `from` inside `buf` (a moov, moof or mfra).
fn shift_offsets(buf: &mut [u8], range: (usize, usize), from: u64, delta: i64) -> Result<()> {
    let shifted = |v: u64| -> Result<u64> {
        if v < from {
            return Ok(v);
        }
        v.checked_add_signed(delta)
            .ok_or_else(|| MetaError::malformed("offset underflow while shifting"))
    };
    for b in boxes_in(buf, range.0, range.1, "MP4")? {
        let (body, end) = (b.body() as usize, b.end() as usize);
        match &b.ty {
            b"trak" | b"mdia" | b"minf" | b"stbl" | b"moof" | b"traf" | b"mfra" | b"moov" => {
                shift_offsets(buf, (body, end), from, delta)?
            }
            b"stco" | b"co64" => {
                let wide = b.is(b"co64");
                let n = be_u32(
                    buf.get(body + 4..body + 8)
                        .ok_or_else(|| MetaError::malformed("stco is truncated"))?,
                ) as usize;
                let w = if wide { 8 } else { 4 };
                if body + 8 + n * w > end {
                    return Err(MetaError::malformed(format!(
                        "{} declares {n} entries past its end",
                        b.name()
                    )));
                }
                for i in 0..n {
                    let at = body + 8 + i * w;
                    if wide {
                        let v = shifted(be_u64(&buf[at..]))?;
                        buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
                    } else {
                        let v = shifted(be_u32(&buf[at..]) as u64)?;
                        let v = u32::try_from(v).map_err(|_| {
                            MetaError::too_large(
                                "a chunk offset would pass 4 GB in a 32-bit stco box",
                            )
                        })?;
                        buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
                    }
                }
            }
            b"tfhd"
                // flags 0x000001: base-data-offset present (absolute), right after track_ID.
                if body + 16 <= end && buf[body + 3] & 1 != 0 => {
                    let v = shifted(be_u64(&buf[body + 8..]))?;
                    buf[body + 8..body + 16].copy_from_slice(&v.to_be_bytes());
                }
            b"tfra" => {
                let version = buf[body];
                let sizes = be_u32(&buf[body + 8..]);
                let entry = if version == 1 { 16 } else { 8 }
                    + ((sizes >> 4 & 3) + (sizes >> 2 & 3) + (sizes & 3) + 3) as usize;
                let n = be_u32(&buf[body + 12..]) as usize;
                if body + 16 + n * entry > end {
                    return Err(MetaError::malformed("tfra declares entries past its end"));
                }
                for i in 0..n {
                    let at = body + 16 + i * entry + if version == 1 { 8 } else { 4 };
                    if version == 1 {
                        let v = shifted(be_u64(&buf[at..]))?;
                        buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
                    } else {
                        let v = u32::try_from(shifted(be_u32(&buf[at..]) as u64)?)
                            .map_err(|_| MetaError::too_large("tfra offset past 4 GB"))?;
                        buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn top_level(src: &mut dyn Source, len: u64) -> Result<(Vec<BoxRef>, usize)> {
    let top = boxes(src, 0, len, "MP4")?;
    let moov = top
        .iter()
        .position(|b| b.is(b"moov"))
        .ok_or_else(|| MetaError::malformed("MP4 has no moov box"))?;
    if top[moov].size > MAX_INDEX {
        return Err(MetaError::too_large(format!(
            "moov box is {} bytes; over the {MAX_INDEX}-byte limit",
            top[moov].size
        )));
    }
    Ok((top, moov))
}

impl FormatHandler for Mp4 {
    fn format(&self) -> Format {
        Format::Mp4
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.len() >= 8
            && matches!(
                &head[4..8],
                b"ftyp" | b"moov" | b"mdat" | b"free" | b"skip" | b"wide" | b"pnot"
            )
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = source_len(src)?;
        let mut scan = Scan::default();
        let found = (|| -> Result<()> {
            let (top, moov_i) = top_level(src, len)?;
            for b in top
                .iter()
                .filter(|b| b.is(b"uuid") && b.size >= b.header + 16)
            {
                let id = read_at(src, b.body(), 16, len, "uuid box")?;
                if id == XMP_UUID {
                    let packet = read_at(
                        src,
                        b.body() + 16,
                        b.size - b.header - 16,
                        len,
                        "XMP uuid box",
                    )?;
                    scan.add_xmp("mp4:uuid:XMP", &packet);
                } else {
                    scan.c2pa = true;
                }
            }
            let m = &top[moov_i];
            let buf = read_at(src, m.at, m.size, len, "moov box")?;
            let moov = BoxRef { at: 0, ..m.clone() };
            for c in boxes_in(&buf, moov.body() as usize, buf.len(), "moov")? {
                if c.is(b"meta") {
                    meta_labels(&buf, &c)?
                        .into_iter()
                        .for_each(|l| scan.add_json("mp4:moov/meta", l));
                }
                if c.is(b"udta") {
                    for u in boxes_in(&buf, c.body() as usize, c.end() as usize, "udta")? {
                        if u.is(b"meta") {
                            meta_labels(&buf, &u)?
                                .into_iter()
                                .for_each(|l| scan.add_json("mp4:udta/meta", l));
                        } else if u.is(b"XMP_") {
                            scan.add_xmp(
                                "mp4:udta/XMP_",
                                &buf[u.body() as usize..u.end() as usize],
                            );
                        }
                    }
                }
            }
            Ok(())
        })();
        scan.record("mp4", found)?;
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
        let (top, moov_i) = top_level(src, len)?;
        for b in top
            .iter()
            .filter(|b| b.is(b"uuid") && b.size >= b.header + 16)
        {
            if read_at(src, b.body(), 16, len, "uuid box")? == XMP_UUID {
                let packet = read_at(
                    src,
                    b.body() + 16,
                    b.size - b.header - 16,
                    len,
                    "XMP uuid box",
                )?;
                if !xmp::read(&String::from_utf8_lossy(&packet))
                    .map(|i| i.labels.is_empty())
                    .unwrap_or(true)
                {
                    return Err(MetaError::unsupported(
                        "a label in a top-level XMP uuid box cannot be replaced yet",
                    ));
                }
            }
        }
        let m = top[moov_i].clone();
        let buf = read_at(src, m.at, m.size, len, "moov box")?;
        let moov = BoxRef { at: 0, ..m.clone() };

        // moov's children, udta rebuilt (or added) with the label.
        let mut body = Vec::with_capacity(buf.len() + 512);
        let mut have_udta = false;
        for c in boxes_in(&buf, moov.body() as usize, buf.len(), "moov")? {
            if c.is(b"meta") {
                body.extend(rewrite_meta(&buf, &c, None)?);
            } else if c.is(b"udta") && !have_udta {
                have_udta = true;
                let mut ub = Vec::new();
                let mut placed = false;
                for u in boxes_in(&buf, c.body() as usize, c.end() as usize, "udta")? {
                    if u.is(b"meta") {
                        let mdta = handler_of(&buf, &meta_children(&buf, &u)?) == Some(*b"mdta");
                        let add = (mdta && !placed).then_some(label_json);
                        placed |= add.is_some();
                        ub.extend(rewrite_meta(&buf, &u, add)?);
                    } else if u.is(b"XMP_") {
                        let packet =
                            String::from_utf8_lossy(&buf[u.body() as usize..u.end() as usize])
                                .into_owned();
                        match xmp::read(&packet) {
                            Ok(info) if !info.labels.is_empty() => {
                                let cleaned =
                                    xmp::remove_label(&packet).map_err(MetaError::malformed)?;
                                ub.extend(make_box(b"XMP_", cleaned.as_bytes()));
                            }
                            _ => ub.extend_from_slice(slice(&buf, &u)),
                        }
                    } else {
                        ub.extend_from_slice(slice(&buf, &u));
                    }
                }
                if !placed {
                    ub.extend(new_mdta_meta(label_json));
                }
                body.extend(make_box(b"udta", &ub));
            } else {
                body.extend_from_slice(slice(&buf, &c));
            }
        }
        if !have_udta {
            body.extend(make_box(b"udta", &new_mdta_meta(label_json)));
        }
        let mut new_moov = if m.header == 16 {
            let mut h = 1u32.to_be_bytes().to_vec();
            h.extend_from_slice(b"moov");
            h.extend_from_slice(&((body.len() + 16) as u64).to_be_bytes());
            h.extend(body);
            h
        } else {
            if body.len() + 8 > u32::MAX as usize {
                return Err(MetaError::too_large("moov would pass 4 GB"));
            }
            make_box(b"moov", &body)
        };
        let mut delta = new_moov.len() as i64 - m.size as i64;

        // A free box right after moov takes up the difference when it can.
        let next = top.get(moov_i + 1);
        let mut skip_next = false;
        let mut new_free: Option<Vec<u8>> = None;
        if let Some(f) = next.filter(|f| (f.is(b"free") || f.is(b"skip")) && f.header == 8) {
            let remaining = f.size as i64 - delta;
            if delta != 0 && remaining >= 8 {
                new_free = Some(make_box(b"free", &vec![0u8; remaining as usize - 8]));
                skip_next = true;
                delta = 0;
            }
        }
        if delta != 0 && moov_i + 1 < top.len() {
            // Media after moov must move: pad the move to a whole number of 4 KiB pages so the
            // kernel copies page-aligned (several times faster than a misaligned copy), and the
            // padding leaves room for the next relabel to happen without any move at all.
            let mut pad = (PAGE - delta.rem_euclid(PAGE)) % PAGE;
            if pad > 0 && pad < 8 {
                pad += PAGE;
            }
            if pad > 0 {
                new_free = Some(make_box(b"free", &vec![0u8; pad as usize - 8]));
                delta += pad;
            }
        }
        if delta != 0 {
            let end = new_moov.len();
            shift_offsets(&mut new_moov, (0, end), m.end(), delta)?;
        }

        copy_range(src, dst, 0, m.at)?;
        dst.write_all(&new_moov)?;
        if let Some(f) = &new_free {
            dst.write_all(f)?;
        }
        for (i, b) in top.iter().enumerate().skip(moov_i + 1) {
            if skip_next && i == moov_i + 1 {
                continue;
            }
            if delta != 0 && (b.is(b"moof") || b.is(b"mfra")) {
                if b.size > MAX_INDEX {
                    return Err(MetaError::too_large(format!(
                        "{} box at {} is over the size limit",
                        b.name(),
                        b.at
                    )));
                }
                let mut frag = read_at(src, b.at, b.size, len, "fragment box")?;
                let n = frag.len();
                shift_offsets(&mut frag, (0, n), m.end(), delta)?;
                dst.write_all(&frag)?;
            } else {
                copy_range(src, dst, b.at, b.size)?;
            }
        }
        Ok(())
    }
}
