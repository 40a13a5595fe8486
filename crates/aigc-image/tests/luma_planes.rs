//! The watermark on bare luma planes, as video frames hand them over: the same change as on an
//! image, 10-bit samples, the enlarged tile read back through a decimating frame stack, and
//! frames stacked so a mark too weak for one frame is found in several, also when it moved
//! between them.

use aigc_image::watermark::{
    detect, detect_prepared, embed, embed_plane, target_rms, tile, tile_scaled, FrameStack,
    LumaPlane, MovableTile, TARGET_RMS,
};
use image::{DynamicImage, GrayImage};

/// Smooth-ish random texture: sums of a few noise octaves, seeded.
fn texture(w: u32, h: u32, seed: u64) -> GrayImage {
    let mut s = seed;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 1000) as f32 / 1000.0
    };
    let cells: Vec<Vec<f32>> = [8u32, 32, 128]
        .iter()
        .map(|c| (0..((w / c + 2) * (h / c + 2))).map(|_| rnd()).collect())
        .collect();
    GrayImage::from_fn(w, h, |x, y| {
        let mut v = 0.0;
        for (i, c) in [8u32, 32, 128].iter().enumerate() {
            v += cells[i][((y / c) * (w / c + 2) + x / c) as usize] * [30.0, 50.0, 80.0][i];
        }
        image::Luma([(v + 40.0).min(255.0) as u8])
    })
}

const KEY: [u8; 32] = [7; 32];
const PAYLOAD: u64 = 0x5eed_cafe_f00d_0001;

#[test]
fn a_plane_gets_the_same_change_as_an_image() {
    // Large enough (40 tiles) that the image gets the plain tile at the plain strength: a small
    // image's data bins are shaded against its own content, which a video frame's are not.
    let (w, h) = (1024usize, 640usize);
    let img = texture(w as u32, h as u32, 1);
    let mut as_image = DynamicImage::ImageLuma8(img.clone());
    embed(&mut as_image, &KEY, PAYLOAD);
    // A plane with padding at the end of each row, as decoders lay them out.
    let stride = w + 16;
    let mut data = vec![0u8; stride * h];
    for (y, row) in img.rows().enumerate() {
        for (x, p) in row.enumerate() {
            data[y * stride + x] = p[0];
        }
    }
    let before = data.clone();
    let mut plane = LumaPlane {
        data: &mut data,
        stride,
        width: w,
        height: h,
        bits: 8,
    };
    assert_eq!(target_rms(w as u32, h as u32), TARGET_RMS);
    embed_plane(&mut plane, &tile(&KEY, PAYLOAD), TARGET_RMS);
    let expected = as_image.to_luma8();
    for y in 0..h {
        assert_eq!(
            &data[y * stride..y * stride + w],
            &expected.as_raw()[y * w..(y + 1) * w]
        );
        assert_eq!(
            &data[y * stride + w..(y + 1) * stride],
            &before[y * stride + w..(y + 1) * stride],
            "padding touched"
        );
    }
    assert_eq!(
        detect(&DynamicImage::ImageLuma8(expected), &KEY).map(|f| f.payload),
        Some(PAYLOAD)
    );
}

#[test]
fn ten_bit_planes_and_the_enlarged_tile_read_back() {
    // Twice the tile needs twice the frame for as many tiles: video uses it from 1080p up.
    let (w, h) = (1536usize, 1024usize);
    let img = texture(w as u32, h as u32, 2);
    let mut data: Vec<u8> = img
        .as_raw()
        .iter()
        .flat_map(|&v| (v as u16 * 4).to_le_bytes())
        .collect();
    let mut plane = LumaPlane {
        data: &mut data,
        stride: 2 * w,
        width: w,
        height: h,
        bits: 10,
    };
    let sum_sq = embed_plane(&mut plane, &tile_scaled(&KEY, PAYLOAD, 2), TARGET_RMS);
    let psnr = 10.0 * (255.0f64.powi(2) / (sum_sq / (w * h) as f64)).log10();
    assert!((41.0..44.0).contains(&psnr), "PSNR {psnr:.2}");
    let mut at_2 = FrameStack::new(2);
    at_2.add(&plane);
    let found = detect_prepared(&at_2.prepare().unwrap(), &KEY).found;
    assert_eq!(found.map(|f| f.payload), Some(PAYLOAD));
    // Read at the wrong scale it is not found by the exact-grid path, nor under another key.
    assert!(detect_prepared(&at_2.prepare().unwrap(), &[8; 32])
        .found
        .is_none());
}

/// A 512 x 512 texture (`seed`) marked with `tile` at `rms`, added to `stack`.
fn add_marked(stack: &mut FrameStack, seed: u64, tile: &[f32], rms: f32) {
    let mut data = texture(512, 512, seed).into_raw();
    let mut plane = LumaPlane {
        data: &mut data,
        stride: 512,
        width: 512,
        height: 512,
        bits: 8,
    };
    embed_plane(&mut plane, tile, rms);
    stack.add(&plane);
}

#[test]
fn frames_add_up() {
    // A mark at 1/4.5 of the strength: one frame is not enough, twelve different ones are
    // (the detector found one frame at 1/3; twelve stop sufficing at 1/6).
    let t = tile(&KEY, PAYLOAD);
    let mut stack = FrameStack::new(1);
    let mut single = None;
    for seed in 0..12 {
        add_marked(&mut stack, 10 + seed, &t, TARGET_RMS / 4.5);
        if seed == 0 {
            single = Some(detect_prepared(&stack.prepare().unwrap(), &KEY).found);
        }
    }
    assert_eq!(single, Some(None), "one weak frame should not be enough");
    assert_eq!(stack.frames(), 12);
    let found = detect_prepared(&stack.prepare().unwrap(), &KEY).found;
    assert_eq!(found.map(|f| f.payload), Some(PAYLOAD));
}

#[test]
fn a_moved_tile_is_the_tile_shifted() {
    let plain = tile_scaled(&KEY, PAYLOAD, 2);
    let mut movable = MovableTile::new(&KEY, PAYLOAD, 2);
    let side = movable.side();
    assert_eq!(side * side, plain.len());
    let mut drawn = Vec::new();
    movable.draw_at(0.0, 0.0, &mut drawn);
    let worst = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert!(worst(&drawn, &plain) < 1e-4);
    // Whole pixels: what stood at (x, y) stands at (x + 5, y - 3), wrapping.
    movable.draw_at(5.0, -3.0, &mut drawn);
    let rolled: Vec<f32> = (0..side * side)
        .map(|i| {
            let (x, y) = (i % side, i / side);
            plain[((y + 3) % side) * side + (x + side - 5) % side]
        })
        .collect();
    assert!(worst(&drawn, &rolled) < 1e-4);
    // Half a pixel lies between its neighbours, and keeps the unit RMS.
    movable.draw_at(0.5, 0.0, &mut drawn);
    let rms = (drawn.iter().map(|v| v * v).sum::<f32>() / drawn.len() as f32).sqrt();
    assert!((rms - 1.0).abs() < 1e-3, "RMS {rms}");
    let between = drawn
        .iter()
        .enumerate()
        .filter(|&(i, v)| {
            let (x, y) = (i % side, i / side);
            let (a, b) = (plain[y * side + x], plain[y * side + (x + side - 1) % side]);
            (v - 0.5 * (a + b)).abs() < 0.1 * (a - b).abs().max(0.2)
        })
        .count();
    assert!(
        between > side * side * 9 / 10,
        "{between} of {}",
        side * side
    );
}

#[test]
fn frames_whose_mark_moved_add_up() {
    // The mark follows a pan (as `mark` draws it on video): a different offset in every frame,
    // so the frames' sum holds no single pattern, but each frame read at its own offset does.
    // Weak, 12 frames: found at the strength `frames_add_up` uses, where the sum alone found
    // nothing. Half strength, 4 frames: each frame's mark is clear (one frame alone decodes),
    // and the sum shows a peak at one frame's offset; read there, the other three frames
    // pulled the decoding off (it failed so).
    for (weaker, count, one_is_enough) in [(4.5, 12u64, false), (2.0, 4, true)] {
        let mut movable = MovableTile::new(&KEY, PAYLOAD, 1);
        let mut drawn = Vec::new();
        let mut stack = FrameStack::new(1);
        let mut single = None;
        for seed in 0..count {
            movable.draw_at(13.3 * seed as f32, -7.6 * seed as f32, &mut drawn);
            add_marked(&mut stack, 40 + seed, &drawn, TARGET_RMS / weaker);
            if seed == 0 {
                single = Some(
                    detect_prepared(&stack.prepare().unwrap(), &KEY)
                        .found
                        .is_some(),
                );
            }
        }
        assert_eq!(single, Some(one_is_enough), "one frame at 1/{weaker}");
        let found = detect_prepared(&stack.prepare().unwrap(), &KEY).found;
        assert_eq!(
            found.map(|f| f.payload),
            Some(PAYLOAD),
            "{count} frames at 1/{weaker}"
        );
        assert!(detect_prepared(&stack.prepare().unwrap(), &[8; 32])
            .found
            .is_none());
    }
}
