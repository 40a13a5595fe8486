//! Ogg Vorbis and Ogg Opus: the label is a comment `AIGC=<json>` in the comment header packet.
//!
//! The header packets after the identification header (Vorbis: comment and setup; Opus: tags)
//! are laid out again on fresh pages. When that changes the number of header pages, every later
//! page of the stream gets its sequence number shifted and its CRC recomputed, page by page, so
//! memory stays bounded; when it does not, the rest of the file is copied as it is. Pages of
//! other logical streams are copied unchanged.

use crate::bytes::{copy_range, read_array, read_at, source_len, Sink, Source, MAX_CARRIER};
use crate::error::{MetaError, Result};
use crate::handler::{Format, FormatHandler, Scan, WriteOptions};
use crate::vorbis_comment::Comments;
use std::io::SeekFrom;

pub struct Ogg;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    Vorbis,
    Opus,
}

impl Codec {
    /// Header packets in all (identification included).
    fn headers(self) -> usize {
        match self {
            Codec::Vorbis => 3,
            Codec::Opus => 2,
        }
    }
    fn comment_magic(self) -> &'static [u8] {
        match self {
            Codec::Vorbis => b"\x03vorbis",
            Codec::Opus => b"OpusTags",
        }
    }
}

fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let mut r = (i as u32) << 24;
        for _ in 0..8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04C1_1DB7
            } else {
                r << 1
            };
        }
        *e = r;
    }
    t
}

/// The Ogg page checksum (CRC-32, polynomial 0x04C11DB7, MSB first, no reflection).
fn ogg_crc(page: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(crc_table);
    page.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ t[((crc >> 24) as u8 ^ b) as usize]
    })
}

struct Page {
    at: u64,
    flags: u8,
    serial: u32,
    seq: u32,
    lacing: Vec<u8>,
    header_len: u64,
    body_len: u64,
}

impl Page {
    fn end(&self) -> u64 {
        self.at + self.header_len + self.body_len
    }
}

fn read_page(src: &mut dyn Source, at: u64, len: u64) -> Result<Page> {
    if at + 27 > len {
        return Err(MetaError::malformed(format!(
            "Ogg ends inside a page header at offset {at} (truncated)"
        )));
    }
    src.seek(SeekFrom::Start(at))?;
    let h = read_array::<27>(src)?;
    if &h[..4] != b"OggS" || h[4] != 0 {
        return Err(MetaError::malformed(format!(
            "no Ogg page at offset {at} (lost sync)"
        )));
    }
    let mut lacing = vec![0u8; h[26] as usize];
    src.read_exact(&mut lacing)?;
    let body_len: u64 = lacing.iter().map(|&l| l as u64).sum();
    let page = Page {
        at,
        flags: h[5],
        serial: u32::from_le_bytes(h[14..18].try_into().expect("4 bytes")),
        seq: u32::from_le_bytes(h[18..22].try_into().expect("4 bytes")),
        header_len: 27 + lacing.len() as u64,
        lacing,
        body_len,
    };
    if page.end() > len {
        return Err(MetaError::malformed(format!(
            "Ogg page at offset {at} runs past the end of the file (truncated)"
        )));
    }
    Ok(page)
}

/// The header region of the first Vorbis or Opus stream.
struct Headers {
    codec: Codec,
    serial: u32,
    /// Every page up to the last header page, all streams, in file order.
    pages: Vec<Page>,
    /// The header packets of the stream (identification first).
    packets: Vec<Vec<u8>>,
    /// Audio segments that followed the last header packet on its page.
    tail: Option<Tail>,
}

/// The part of the last header page after the headers: audio that must keep its page's
/// granule position on a page of its own.
struct Tail {
    flags: u8,
    granule: [u8; 8],
    lacing: Vec<u8>,
    data: Vec<u8>,
}

impl Tail {
    fn page(&self, serial: u32, seq: u32) -> Vec<u8> {
        let mut page = b"OggS\0".to_vec();
        page.push(self.flags);
        page.extend_from_slice(&self.granule);
        page.extend_from_slice(&serial.to_le_bytes());
        page.extend_from_slice(&seq.to_le_bytes());
        page.extend_from_slice(&[0, 0, 0, 0]);
        page.push(self.lacing.len() as u8);
        page.extend_from_slice(&self.lacing);
        page.extend_from_slice(&self.data);
        let crc = ogg_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        page
    }
}

fn read_headers(src: &mut dyn Source, len: u64) -> Result<Headers> {
    let mut pages = Vec::new();
    let mut target: Option<(u32, Codec)> = None;
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut tail = None;
    let mut pos = 0u64;
    loop {
        let page = read_page(src, pos, len)?;
        pos = page.end();
        if target.is_none() && page.flags & 0x02 != 0 {
            let head = read_at(
                src,
                page.at + page.header_len,
                page.body_len.min(8),
                len,
                "Ogg BOS packet",
            )?;
            if head.starts_with(b"\x01vorbis") {
                target = Some((page.serial, Codec::Vorbis));
            } else if head.starts_with(b"OpusHead") {
                target = Some((page.serial, Codec::Opus));
            }
        }
        let Some((serial, codec)) = target else {
            if page.flags & 0x02 == 0 {
                return Err(MetaError::unsupported(
                    "Ogg stream is neither Vorbis nor Opus",
                ));
            }
            pages.push(page);
            continue;
        };
        if page.serial == serial {
            let body = read_at(
                src,
                page.at + page.header_len,
                page.body_len,
                len,
                "Ogg page",
            )?;
            let mut off = 0usize;
            for (k, &l) in page.lacing.iter().enumerate() {
                partial.extend_from_slice(&body[off..off + l as usize]);
                off += l as usize;
                if partial.len() as u64 > MAX_CARRIER {
                    return Err(MetaError::too_large(
                        "an Ogg header packet is larger than the metadata limit",
                    ));
                }
                if l < 255 {
                    packets.push(std::mem::take(&mut partial));
                    if packets.len() == codec.headers() {
                        // Audio may start on the page where the headers end (valid Ogg, seen
                        // in real files): its segments are kept to go on a page of their own.
                        if k + 1 < page.lacing.len() {
                            let granule = read_at(src, page.at + 6, 8, len, "Ogg page")?;
                            tail = Some(Tail {
                                flags: page.flags & !0x01,
                                granule: granule.try_into().expect("8 bytes"),
                                lacing: page.lacing[k + 1..].to_vec(),
                                data: body[off..].to_vec(),
                            });
                        }
                        break;
                    }
                }
            }
            if packets.len() >= codec.headers() {
                pages.push(page);
                return Ok(Headers {
                    tail,
                    codec,
                    serial,
                    pages,
                    packets,
                });
            }
        }
        pages.push(page);
    }
}

/// Lays packets out on pages of the given stream, starting at sequence number `seq`.
fn paginate(packets: &[&[u8]], serial: u32, mut seq: u32) -> Vec<Vec<u8>> {
    let mut lacing_all: Vec<(u8, bool)> = Vec::new(); // (lacing value, ends a packet)
    let mut data: Vec<u8> = Vec::new();
    for p in packets {
        let n = p.len();
        for _ in 0..n / 255 {
            lacing_all.push((255, false));
        }
        lacing_all.push(((n % 255) as u8, true));
        data.extend_from_slice(p);
    }
    let mut pages = Vec::new();
    let (mut li, mut di) = (0usize, 0usize);
    let mut continued = false;
    while li < lacing_all.len() {
        let seg = &lacing_all[li..(li + 255).min(lacing_all.len())];
        let body_len: usize = seg.iter().map(|(l, _)| *l as usize).sum();
        let ends_packet = seg.iter().any(|(_, e)| *e);
        let mut page = b"OggS\0".to_vec();
        page.push(if continued { 0x01 } else { 0 });
        let granule: u64 = if ends_packet { 0 } else { u64::MAX };
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&serial.to_le_bytes());
        page.extend_from_slice(&seq.to_le_bytes());
        page.extend_from_slice(&[0, 0, 0, 0]);
        page.push(seg.len() as u8);
        page.extend(seg.iter().map(|(l, _)| *l));
        page.extend_from_slice(&data[di..di + body_len]);
        let crc = ogg_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        continued = !seg.last().is_some_and(|(_, e)| *e);
        li += seg.len();
        di += body_len;
        seq += 1;
        pages.push(page);
    }
    pages
}

fn comments_of(h: &Headers) -> Result<Comments> {
    let magic = h.codec.comment_magic();
    let p = &h.packets[1];
    if !p.starts_with(magic) {
        return Err(MetaError::malformed(
            "the second Ogg header packet is not a comment header",
        ));
    }
    Comments::parse(&p[magic.len()..], "Ogg comment header")
}

impl FormatHandler for Ogg {
    fn format(&self) -> Format {
        Format::Ogg
    }

    fn matches(&self, head: &[u8]) -> bool {
        head.starts_with(b"OggS")
    }

    fn scan(&self, src: &mut dyn Source) -> Result<Scan> {
        let len = source_len(src)?;
        let mut scan = Scan::default();
        match read_headers(src, len).and_then(|h| comments_of(&h)) {
            Ok(c) => c
                .labels()
                .into_iter()
                .for_each(|l| scan.add_json("ogg:comment:AIGC", l)),
            Err(e) if e.kind == crate::ErrorKind::Io => return Err(e),
            Err(e) => scan.problem("ogg", e.message),
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
        let h = read_headers(src, len)?;
        let mut comments = comments_of(&h)?;
        comments.set_label(label_json);
        let mut comment_packet = h.codec.comment_magic().to_vec();
        comment_packet.extend(comments.to_bytes());
        let mut rest: Vec<&[u8]> = vec![&comment_packet];
        rest.extend(h.packets[2..].iter().map(Vec::as_slice));
        let target_pages: Vec<&Page> = h.pages.iter().filter(|p| p.serial == h.serial).collect();
        let first_seq = target_pages[0].seq;
        if target_pages[0].lacing.len() != 1 {
            return Err(MetaError::unsupported(
                "the Ogg identification header does not sit alone on its page",
            ));
        }
        let mut new_pages = paginate(&rest, h.serial, first_seq + 1);
        if let Some(t) = &h.tail {
            new_pages.push(t.page(h.serial, first_seq + 1 + new_pages.len() as u32));
        }
        let old_count = target_pages.len() as i64 - 1;
        let delta = new_pages.len() as i64 - old_count;

        let mut wrote_new = false;
        for p in &h.pages {
            if p.serial != h.serial || p.at == target_pages[0].at {
                copy_range(src, dst, p.at, p.end() - p.at)?;
            } else if !wrote_new {
                for np in &new_pages {
                    dst.write_all(np)?;
                }
                wrote_new = true;
            }
        }
        let header_end = h.pages.last().expect("at least the header pages").end();
        if delta == 0 {
            return crate::bytes::copy_rest(src, dst, header_end);
        }
        // Renumber every later page of the stream.
        let mut pos = header_end;
        let mut buf = Vec::new();
        while pos < len {
            let p = read_page(src, pos, len)?;
            if p.serial != h.serial {
                copy_range(src, dst, p.at, p.end() - p.at)?;
            } else {
                buf.clear();
                src.seek(SeekFrom::Start(p.at))?;
                buf.resize((p.end() - p.at) as usize, 0);
                src.read_exact(&mut buf)?;
                let seq = (p.seq as i64 + delta) as u32;
                buf[18..22].copy_from_slice(&seq.to_le_bytes());
                buf[22..26].copy_from_slice(&[0; 4]);
                let crc = ogg_crc(&buf);
                buf[22..26].copy_from_slice(&crc.to_le_bytes());
                dst.write_all(&buf)?;
            }
            pos = p.end();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc_matches_pages_written_by_ffmpeg() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/samples-av/tone.ogg"
        );
        let file = std::fs::read(path).unwrap();
        let mut pos = 0;
        let mut checked = 0;
        while pos + 27 <= file.len() {
            let n = file[pos + 26] as usize;
            let body: usize = file[pos + 27..pos + 27 + n]
                .iter()
                .map(|&l| l as usize)
                .sum();
            let mut page = file[pos..pos + 27 + n + body].to_vec();
            let stored = u32::from_le_bytes(page[22..26].try_into().unwrap());
            page[22..26].copy_from_slice(&[0; 4]);
            assert_eq!(super::ogg_crc(&page), stored, "page at {pos}");
            pos += 27 + n + body;
            checked += 1;
        }
        assert!(checked > 3);
    }

    #[test]
    fn paginate_splits_long_packets() {
        let big = vec![7u8; 255 * 300];
        let pages = super::paginate(&[&big, b"x"], 1, 5);
        assert!(pages.len() >= 2);
        assert_eq!(pages[1][5] & 1, 1, "second page continues the packet");
    }
}
