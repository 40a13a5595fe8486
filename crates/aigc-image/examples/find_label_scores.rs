//! Calibration aid: prints the visible-label detector's best score per image, unlabeled and
//! labeled (then JPEG q75 and halved), for a folder of images. `cargo run --release --example
//! find_label_scores -- DIR`
use aigc_image::{draw_label_any, embedded_font, find_label, LabelStyle, Position};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;

fn main() {
    let dir = std::env::args().nth(1).expect("DIR");
    let font = embedded_font();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (i, p) in files.iter().enumerate() {
        let Ok(img) = image::open(p) else { continue };
        let t0 = std::time::Instant::now();
        let clean = find_label(&img, &font, "AI生成");
        let dt = t0.elapsed();
        let pos = Position::ALL[i % 8];
        let mut marked = img.clone();
        let style = LabelStyle {
            position: pos,
            ..LabelStyle::default()
        };
        draw_label_any(&mut marked, &font, &style).unwrap();
        let mut jpg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpg, 75)
            .encode_image(&marked.to_rgb8())
            .unwrap();
        let j = image::load_from_memory(&jpg).unwrap();
        let half = marked.resize_exact(
            marked.width() / 2,
            marked.height() / 2,
            FilterType::CatmullRom,
        );
        let fj = find_label(&j, &font, "AI生成");
        let fh = find_label(&half, &font, "AI生成");
        println!(
            "{:40} {}x{} clean={:?} jpeg75={:?} half={:?} want={} {:?}",
            p.file_name().unwrap().to_string_lossy(),
            img.width(),
            img.height(),
            clean.map(|c| c.score),
            fj.map(|c| (c.position.name(), c.text_height_ratio, c.score)),
            fh.map(|c| (c.position.name(), c.text_height_ratio, c.score)),
            pos.name(),
            dt
        );
    }
}
