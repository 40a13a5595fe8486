//! The explicit-label rule: for every size from 64x64 to 7680x4320 and every position, the ink
//! measured on the rendered pixels is at least 5% of the shortest side, inside the image, on the
//! requested edge or corner.

use aigc_image::{draw_label, embedded_font, LabelStyle, Position, MIN_HEIGHT_RATIO};
use image::RgbaImage;

/// Ink box of the pixels whose alpha is at least half: x0, y0, x1, y1 (exclusive).
fn measured_ink(img: &RgbaImage) -> [u32; 4] {
    let mut b = [u32::MAX, u32::MAX, 0, 0];
    for (x, y, p) in img.enumerate_pixels() {
        if p[3] >= 128 {
            b = [b[0].min(x), b[1].min(y), b[2].max(x + 1), b[3].max(y + 1)];
        }
    }
    b
}

#[test]
fn ink_meets_five_percent_everywhere_on_the_requested_side() {
    let font = embedded_font();
    let sizes = [
        (64, 64),
        (100, 64),
        (64, 300),
        (320, 240),
        (1080, 1920),
        (1920, 1080),
        (4000, 3000),
        (7680, 4320),
        (7680, 300),
    ];
    for (w, h) in sizes {
        for position in Position::ALL {
            let mut img = RgbaImage::new(w, h); // transparent: only the text has alpha
            let style = LabelStyle {
                position,
                plate: false,
                ..LabelStyle::default()
            };
            let placed = draw_label(&mut img, &font, &style)
                .unwrap_or_else(|e| panic!("{w}x{h} {position:?}: {e}"));
            let ink = measured_ink(&img);
            let short = w.min(h) as f32;
            let height = (ink[3] - ink[1]) as f32;
            assert!(
                height >= MIN_HEIGHT_RATIO * short,
                "{w}x{h} {position:?}: ink {height} px < 5% of {short}"
            );
            assert!(
                ink[2] <= w && ink[3] <= h,
                "{w}x{h} {position:?}: outside the image"
            );
            assert_eq!(
                placed.ink, ink,
                "{w}x{h} {position:?}: reported placement differs from the pixels"
            );
            // On the requested side: within the margin (+2 px for anti-aliasing) of its edges.
            let slack = (0.02 * short).round().max(1.0) as u32 + 2;
            let (cx, cy) = ((ink[0] + ink[2]) / 2, (ink[1] + ink[3]) / 2);
            let (left, right, top, bottom) = (
                ink[0] <= slack,
                w - ink[2] <= slack,
                ink[1] <= slack,
                h - ink[3] <= slack,
            );
            let (mid_x, mid_y) = (cx.abs_diff(w / 2) <= 2, cy.abs_diff(h / 2) <= 2);
            let ok = match position {
                Position::TopLeft => left && top,
                Position::Top => mid_x && top,
                Position::TopRight => right && top,
                Position::Left => left && mid_y,
                Position::Right => right && mid_y,
                Position::BottomLeft => left && bottom,
                Position::Bottom => mid_x && bottom,
                Position::BottomRight => right && bottom,
            };
            assert!(ok, "{w}x{h} {position:?}: ink {ink:?} is not on that side");
        }
    }
}

#[test]
fn the_text_stands_out_from_its_plate_on_any_background() {
    let font = embedded_font();
    for shade in [0u8, 64, 128, 192, 255] {
        let mut img = RgbaImage::from_pixel(640, 480, image::Rgba([shade, shade, shade, 255]));
        let placed = draw_label(&mut img, &font, &LabelStyle::default()).unwrap();
        let [x0, y0, x1, y1] = placed.plate;
        assert!(x1 <= 640 && y1 <= 480 && x0 < x1 && y0 < y1);
        let plate = img.get_pixel(x0 + 1, y0 + 1)[0] as i32;
        let brightest_text = (placed.ink[1]..placed.ink[3])
            .flat_map(|y| (placed.ink[0]..placed.ink[2]).map(move |x| (x, y)))
            .map(|(x, y)| img.get_pixel(x, y)[0] as i32)
            .max()
            .unwrap();
        assert!(
            brightest_text - plate >= 150,
            "shade {shade}: text {brightest_text} vs plate {plate}"
        );
    }
}

#[test]
fn text_the_font_lacks_and_text_too_long_are_clear_errors() {
    let font = embedded_font();
    let mut img = RgbaImage::new(200, 200);
    let e = draw_label(
        &mut img,
        &font,
        &LabelStyle {
            text: "AI生成图片".into(),
            ..LabelStyle::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("图片"), "{e}");
    let long = "AI生成 ".repeat(20);
    let e = draw_label(
        &mut img,
        &font,
        &LabelStyle {
            text: long,
            ..LabelStyle::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("shorter text"), "{e}");
}
