//! Development check of the image watermark with in-process attacks (the real evaluation,
//! with independent tools, is benches/watermark_eval.py): `wm_dev DIR [MAX_SIDE]`.
#![allow(clippy::needless_range_loop, clippy::type_complexity)]
use aigc_image::watermark::{detect, embed};
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use std::time::Instant;

fn jpeg(img: &DynamicImage, q: u8) -> DynamicImage {
    let mut v = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut v, q)
        .encode_image(&img.to_rgb8())
        .unwrap();
    image::load_from_memory(&v).unwrap()
}

fn rotate(img: &DynamicImage, deg: f32) -> DynamicImage {
    let src = img.to_rgb8();
    let (w, h) = src.dimensions();
    let (s, c) = deg.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let out = RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let (sx, sy) = (c * dx + s * dy + cx, -s * dx + c * dy + cy);
        if sx < 0.0 || sy < 0.0 || sx >= (w - 1) as f32 || sy >= (h - 1) as f32 {
            return image::Rgb([0, 0, 0]);
        }
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        let mut p = [0u8; 3];
        for ch in 0..3 {
            let g = |x, y| src.get_pixel(x, y)[ch] as f32;
            let v = g(x0, y0) * (1.0 - fx) * (1.0 - fy)
                + g(x0 + 1, y0) * fx * (1.0 - fy)
                + g(x0, y0 + 1) * (1.0 - fx) * fy
                + g(x0 + 1, y0 + 1) * fx * fy;
            p[ch] = v.round() as u8;
        }
        image::Rgb(p)
    });
    DynamicImage::ImageRgb8(out)
}

fn main() {
    let dir = std::env::args().nth(1).expect("DIR");
    let max_side: u32 = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1024);
    let key = aigc_dsp::public_key();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let attacks: Vec<(&str, Box<dyn Fn(&DynamicImage) -> DynamicImage>)> = vec![
        ("none", Box::new(|i: &DynamicImage| i.clone())),
        ("jpeg90", Box::new(|i: &DynamicImage| jpeg(i, 90))),
        ("jpeg75", Box::new(|i: &DynamicImage| jpeg(i, 75))),
        ("jpeg50", Box::new(|i: &DynamicImage| jpeg(i, 50))),
        (
            "resize50",
            Box::new(|i: &DynamicImage| {
                i.resize_exact(i.width() / 2, i.height() / 2, FilterType::CatmullRom)
            }),
        ),
        (
            "resize75",
            Box::new(|i: &DynamicImage| {
                i.resize_exact(
                    i.width() * 3 / 4,
                    i.height() * 3 / 4,
                    FilterType::CatmullRom,
                )
            }),
        ),
        (
            "resize150",
            Box::new(|i: &DynamicImage| {
                i.resize_exact(
                    i.width() * 3 / 2,
                    i.height() * 3 / 2,
                    FilterType::CatmullRom,
                )
            }),
        ),
        (
            "crop75",
            Box::new(|i: &DynamicImage| {
                let (w, h) = (i.width() * 3 / 4, i.height() * 3 / 4);
                i.crop_imm((i.width() - w) / 2, (i.height() - h) / 2, w, h)
            }),
        ),
        (
            "crop50area",
            Box::new(|i: &DynamicImage| {
                i.crop_imm(0, 0, i.width() * 707 / 1000, i.height() * 707 / 1000)
            }),
        ),
        ("blur1", Box::new(|i: &DynamicImage| i.blur(1.0))),
        (
            "bright120",
            Box::new(|i: &DynamicImage| {
                let mut b = i.to_rgb8();
                b.pixels_mut().for_each(|p| {
                    p.0.iter_mut()
                        .for_each(|c| *c = (*c as f32 * 1.2).min(255.0) as u8)
                });
                DynamicImage::ImageRgb8(b)
            }),
        ),
        (
            "contrast80",
            Box::new(|i: &DynamicImage| {
                let mut b = i.to_rgb8();
                b.pixels_mut().for_each(|p| {
                    p.0.iter_mut()
                        .for_each(|c| *c = (128.0 + (*c as f32 - 128.0) * 0.8) as u8)
                });
                DynamicImage::ImageRgb8(b)
            }),
        ),
        (
            "social",
            Box::new(|i: &DynamicImage| {
                jpeg(
                    &i.resize_exact(
                        i.width() * 3 / 4,
                        i.height() * 3 / 4,
                        FilterType::CatmullRom,
                    ),
                    75,
                )
            }),
        ),
        ("rotate2", Box::new(|i: &DynamicImage| rotate(i, 2.0))),
    ];
    let mut ok = vec![0; attacks.len()];
    let mut clean_fp = 0;
    let (mut emb_t, mut det_t, mut mp) = (0.0, 0.0, 0.0);
    let mut psnrs = Vec::new();
    let mut n = 0;
    for p in &files {
        let Ok(img) = image::open(p) else { continue };
        let img = if img.width().max(img.height()) > max_side {
            img.resize(max_side, max_side, FilterType::Triangle)
        } else {
            img
        };
        let img = DynamicImage::ImageRgb8(img.to_rgb8());
        n += 1;
        let payload = 0x1234_5678_9abc_def0u64 ^ n as u64;
        let mut marked = img.clone();
        let t = Instant::now();
        let rms = embed(&mut marked, &key, payload);
        emb_t += t.elapsed().as_secs_f64();
        mp += (img.width() * img.height()) as f64 / 1e6;
        psnrs.push(20.0 * (255.0 / rms.max(1e-3)).log10());
        if detect(&img, &key).is_some() {
            clean_fp += 1;
        }
        let mut line = format!("{:24}", p.file_name().unwrap().to_string_lossy());
        for (ai, (name, f)) in attacks.iter().enumerate() {
            let a = f(&marked);
            let t = Instant::now();
            let d = detect(&a, &key);
            if ai == 0 {
                det_t += t.elapsed().as_secs_f64();
            }
            let good = d.map(|d| d.payload == payload).unwrap_or(false);
            ok[ai] += good as usize;
            if !good {
                line.push_str(&format!(" !{name}"));
            }
        }
        println!("{line}  psnr {:.1}", psnrs.last().unwrap());
    }
    for (ai, (name, _)) in attacks.iter().enumerate() {
        println!("{name:12} {}/{n}", ok[ai]);
    }
    let mean_psnr = psnrs.iter().sum::<f32>() / psnrs.len() as f32;
    let min_psnr = psnrs.iter().cloned().fold(f32::MAX, f32::min);
    println!("unmarked false detections {clean_fp}/{n}; psnr mean {mean_psnr:.1} min {min_psnr:.1}; embed {:.1} ms/MP detect {:.1} ms/MP", emb_t * 1e3 / mp, det_t * 1e3 / mp);
}
