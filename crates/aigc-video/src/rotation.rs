//! Videos stored sideways (phones) and shown turned by a display matrix: the visible label is
//! drawn upright as the video is *shown*, and the matrix is carried into the output.
//!
//! FFmpeg gives the matrix as stream side data (`M = [a b u; c d v; x y w]`, a point `(p, q)` of
//! the stored frame shown at `(a·p + c·q + x, b·p + d·q + y)`). Its encoder-side setter needs
//! `unsafe`, which this workspace forbids, so for MP4/MOV the nine values are written into the
//! output track's `tkhd` box instead, where FFmpeg's own muxer would have put them (same order,
//! big-endian); both are fixed-size, so the file is patched in place.

use aigc_image::LabelLayer;
use aigc_meta::bmff;
use ffmpeg_next as ff;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// How the stored frame is turned or mirrored for display: one of the eight right-angle
/// orientations, kept with the matrix it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orientation {
    /// a, b, c, d of the matrix, each -1, 0 or 1.
    m: [i32; 4],
    /// The input's matrix as FFmpeg gives it.
    pub matrix: [i32; 9],
}

impl Orientation {
    /// The display orientation of stream `ist`; `None` when it is shown as stored (or the
    /// matrix is not a right-angle turn or mirror, which is left as it is).
    pub fn of(ist: &ff::format::stream::Stream) -> Option<Orientation> {
        let sd = ist
            .side_data()
            .find(|sd| sd.kind() == ff::codec::packet::side_data::Type::DisplayMatrix)?;
        let bytes = sd.data();
        if bytes.len() < 36 {
            return None;
        }
        let mut matrix = [0i32; 9];
        for (v, b) in matrix.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = i32::from_ne_bytes(b.try_into().expect("4 bytes"));
        }
        let unit = |v: i32| -> Option<i32> {
            match (v as f64 / 65536.0).round() as i32 {
                u @ -1..=1 if (v - u * 65536).abs() < 64 => Some(u),
                _ => None,
            }
        };
        let m = [
            unit(matrix[0])?,
            unit(matrix[1])?,
            unit(matrix[3])?,
            unit(matrix[4])?,
        ];
        // A right-angle turn or mirror: one non-zero entry per row and column.
        let ok =
            (m[0] != 0) == (m[3] != 0) && (m[1] != 0) == (m[2] != 0) && (m[0] != 0) != (m[1] != 0);
        (ok && m != [1, 0, 0, 1]).then_some(Orientation { m, matrix })
    }

    /// The shown size of a `w` x `h` stored frame.
    pub fn display_size(&self, w: u32, h: u32) -> (u32, u32) {
        if self.m[0] == 0 {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// Where stored pixel `(p, q)` of a `w` x `h` frame is shown.
    pub fn to_display(&self, p: u32, q: u32, w: u32, h: u32) -> (u32, u32) {
        let [a, b, c, d] = self.m;
        let (p, q, w1, h1) = (p as i64, q as i64, w as i64 - 1, h as i64 - 1);
        let x = a as i64 * p + c as i64 * q;
        let y = b as i64 * p + d as i64 * q;
        // Shift so the shown frame starts at 0: subtract the smallest value over the corners.
        let min_x = (a as i64 * w1).min(0) + (c as i64 * h1).min(0);
        let min_y = (b as i64 * w1).min(0) + (d as i64 * h1).min(0);
        ((x - min_x) as u32, (y - min_y) as u32)
    }

    /// The stored-frame rectangle `[x0, y0, x1, y1)` that shows as display rectangle `r`.
    pub fn rect_to_stored(&self, r: [u32; 4], w: u32, h: u32) -> [u32; 4] {
        let (dw, dh) = self.display_size(w, h);
        let inv = self.inverse();
        let (ax, ay) = inv.to_display(r[0], r[1], dw, dh);
        let (bx, by) = inv.to_display(r[2] - 1, r[3] - 1, dw, dh);
        [ax.min(bx), ay.min(by), ax.max(bx) + 1, ay.max(by) + 1]
    }

    /// The orientation that undoes this one (the transpose of an orthogonal matrix).
    fn inverse(&self) -> Orientation {
        let [a, b, c, d] = self.m;
        Orientation {
            m: [a, c, b, d],
            matrix: self.matrix,
        }
    }

    /// A label layer rendered for the shown frame, turned into the stored frame of `w` x `h`.
    pub fn layer_to_stored(&self, layer: &LabelLayer, w: u32, h: u32) -> LabelLayer {
        let rect = self.rect_to_stored(layer.rect, w, h);
        let rw = (layer.rect[2] - layer.rect[0]) as usize;
        let mut pixels = Vec::with_capacity(layer.pixels.len());
        for q in rect[1]..rect[3] {
            for p in rect[0]..rect[2] {
                let (x, y) = self.to_display(p, q, w, h);
                let (lx, ly) = ((x - layer.rect[0]) as usize, (y - layer.rect[1]) as usize);
                pixels.push(layer.pixels[ly * rw + lx]);
            }
        }
        LabelLayer {
            rect,
            pixels,
            placement: layer.placement,
        }
    }

    /// A stored frame's luma as it is shown.
    pub fn image_to_display(&self, img: &image::GrayImage) -> image::GrayImage {
        let (w, h) = img.dimensions();
        let (dw, dh) = self.display_size(w, h);
        let mut out = image::GrayImage::new(dw, dh);
        for (p, q, px) in img.enumerate_pixels() {
            let (x, y) = self.to_display(p, q, w, h);
            out.put_pixel(x, y, *px);
        }
        out
    }

    /// The turn as shown, in degrees anticlockwise as ffprobe's `rotation` gives it (0, 90,
    /// 180, 270), and whether the picture is also mirrored.
    pub fn describe(&self) -> (u32, bool) {
        let [a, b, c, d] = self.m;
        let mirrored = a * d - b * c < 0;
        // Where the stored x axis points when shown (y down): right, down, left or up.
        let turn = match (a, b) {
            (1, 0) => 0,
            (0, 1) => 270,
            (-1, 0) => 180,
            _ => 90,
        };
        (turn, mirrored)
    }
}

/// Writes `matrix` into the `tkhd` of track number `track` (0-based, in file order) of the
/// MP4/MOV file at `path`. Returns false when that track is not a video track or the file is
/// laid out otherwise than expected (nothing is then changed).
pub fn write_track_matrix(path: &Path, track: usize, matrix: &[i32; 9]) -> std::io::Result<bool> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let what = "the encoded video";
    let err = |e: aigc_meta::MetaError| std::io::Error::other(e.to_string());
    let top = bmff::boxes(&mut f, 0, len, what).map_err(err)?;
    let Some(moov) = top.iter().find(|b| b.is(b"moov")) else {
        return Ok(false);
    };
    let traks: Vec<_> = bmff::boxes(&mut f, moov.body(), moov.end(), what)
        .map_err(err)?
        .into_iter()
        .filter(|b| b.is(b"trak"))
        .collect();
    let Some(trak) = traks.get(track) else {
        return Ok(false);
    };
    let inner = bmff::boxes(&mut f, trak.body(), trak.end(), what).map_err(err)?;
    let (Some(tkhd), Some(mdia)) = (
        inner.iter().find(|b| b.is(b"tkhd")),
        inner.iter().find(|b| b.is(b"mdia")),
    ) else {
        return Ok(false);
    };
    // Only a video track ('vide' handler) takes the matrix.
    let hdlr = bmff::boxes(&mut f, mdia.body(), mdia.end(), what)
        .map_err(err)?
        .into_iter()
        .find(|b| b.is(b"hdlr"));
    let Some(hdlr) = hdlr else {
        return Ok(false);
    };
    let mut head = [0u8; 12];
    f.seek(SeekFrom::Start(hdlr.body()))?;
    f.read_exact(&mut head)?;
    if &head[8..12] != b"vide" {
        return Ok(false);
    }
    let mut version = [0u8; 1];
    f.seek(SeekFrom::Start(tkhd.body()))?;
    f.read_exact(&mut version)?;
    // version/flags, times, track id, reserved, duration; reserved, layer, group, volume, reserved.
    let at = tkhd.body() + 4 + if version[0] == 1 { 32 } else { 20 } + 16;
    if at + 36 > tkhd.end() {
        return Ok(false);
    }
    let bytes: Vec<u8> = matrix.iter().flat_map(|v| v.to_be_bytes()).collect();
    f.seek(SeekFrom::Start(at))?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orient(m: [i32; 4]) -> Orientation {
        Orientation { m, matrix: [0; 9] }
    }

    #[test]
    fn a_quarter_turn_shows_the_top_left_at_the_bottom_left() {
        // FFmpeg's matrix for a video shown turned 90 degrees anticlockwise (rotate=90).
        let o = orient([0, -1, 1, 0]);
        assert_eq!(o.describe(), (90, false));
        assert_eq!(o.display_size(160, 120), (120, 160));
        assert_eq!(o.to_display(0, 0, 160, 120), (0, 159));
        assert_eq!(o.to_display(159, 0, 160, 120), (0, 0));
        assert_eq!(o.to_display(0, 119, 160, 120), (119, 159));
    }

    #[test]
    fn stored_rectangles_and_layers_map_back_exactly() {
        for m in [
            [0, -1, 1, 0],
            [0, 1, -1, 0],
            [-1, 0, 0, -1],
            [-1, 0, 0, 1],
            [1, 0, 0, -1],
            [0, 1, 1, 0],
            [0, -1, -1, 0],
        ] {
            let o = orient(m);
            let (w, h) = (40, 30);
            let (dw, dh) = o.display_size(w, h);
            // A layer in the shown frame's bottom-right corner, each pixel distinct.
            let rect = [dw - 7, dh - 5, dw - 1, dh - 1];
            let pixels: Vec<(f32, f32)> = (0..24).map(|i| (1.0, i as f32)).collect();
            let layer = LabelLayer {
                rect,
                pixels,
                placement: aigc_image::Placement {
                    ink: [0; 4],
                    plate: [0; 4],
                    height_ratio: 0.06,
                },
            };
            let stored = o.layer_to_stored(&layer, w, h);
            let sr = stored.rect;
            assert_eq!(
                ((sr[2] - sr[0]) * (sr[3] - sr[1])) as usize,
                24,
                "{m:?}: {sr:?}"
            );
            // Every stored pixel shows where the layer had it.
            for (i, px) in stored.pixels.iter().enumerate() {
                let p = sr[0] + i as u32 % (sr[2] - sr[0]);
                let q = sr[1] + i as u32 / (sr[2] - sr[0]);
                let (x, y) = o.to_display(p, q, w, h);
                let j = ((y - rect[1]) * 6 + (x - rect[0])) as usize;
                assert_eq!(px.1, j as f32, "{m:?}");
            }
        }
    }
}
