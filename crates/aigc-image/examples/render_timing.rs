//! Times drawing the visible label on a 12-megapixel (4000x3000) image, per position, on one
//! core: `cargo run --release --example render_timing -- PHOTO`. Used by
//! `benches/visible_label.sh`.
use aigc_image::{draw_label_any, embedded_font, LabelStyle, Position};
use image::imageops::FilterType;
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("PHOTO");
    let base = image::open(&path)
        .expect("a photo")
        .resize_exact(4000, 3000, FilterType::Triangle);
    let font = embedded_font();
    let mut best = f64::MAX;
    let mut total = 0.0;
    let rounds = 5;
    for _ in 0..rounds {
        for pos in Position::ALL {
            let mut img = base.clone();
            let style = LabelStyle {
                position: pos,
                ..LabelStyle::default()
            };
            let t = Instant::now();
            draw_label_any(&mut img, &font, &style).unwrap();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            best = best.min(ms);
            total += ms;
        }
    }
    println!(
        "render_12mp_ms_mean={:.2} render_12mp_ms_best={:.2}",
        total / (rounds * 8) as f64,
        best
    );
}
