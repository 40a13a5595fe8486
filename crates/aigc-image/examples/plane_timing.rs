//! Times `watermark::embed_plane` on a luma plane of a photo (decode excluded):
//! `cargo run --release -p aigc-image --example plane_timing -- PHOTO [WIDTH HEIGHT]`.
use aigc_image::watermark::{embed_plane, tile, LumaPlane};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let img = image::open(&args[1]).expect("an image");
    let (w, h) = match (args.get(2), args.get(3)) {
        (Some(w), Some(h)) => (w.parse().unwrap(), h.parse().unwrap()),
        _ => (1920, 1080),
    };
    let grey = img
        .resize_exact(w, h, image::imageops::FilterType::Triangle)
        .to_luma8();
    let t = tile(&aigc_dsp::public_key(), 0x0123_4567_89ab_cdef);
    let rounds = 30;
    let mut best = f64::MAX;
    let mut data = grey.as_raw().clone();
    for _ in 0..rounds {
        data.copy_from_slice(grey.as_raw());
        let start = Instant::now();
        let mut plane = LumaPlane {
            data: &mut data,
            stride: w as usize,
            width: w as usize,
            height: h as usize,
            bits: 8,
        };
        std::hint::black_box(embed_plane(
            &mut plane,
            &t,
            aigc_image::watermark::TARGET_RMS,
        ));
        best = best.min(start.elapsed().as_secs_f64());
    }
    let mp = (w * h) as f64 / 1e6;
    println!(
        "embed_plane {w}x{h}: best {:.2} ms, {:.2} ms/MP",
        best * 1e3,
        best * 1e3 / mp
    );
}
