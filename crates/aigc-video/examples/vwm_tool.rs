//! False-positive trials for the video watermark: every file's frames are sampled once the way
//! `verify` samples them, then detection runs under N random keys on each of verify's steps.
//!
//!   cargo run --release -p aigc-video --example vwm_tool -- fp-trials N FILE...
use aigc_image::watermark::detect_prepared;
use aigc_video::inspect::{watermark_stacks, DETECTION_STEPS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || args[0] != "fp-trials" {
        eprintln!("usage: vwm_tool fp-trials N FILE...");
        std::process::exit(2);
    }
    let n: usize = args[1].parse().expect("N is a number");
    let mut rng = aigc_dsp::KeyedRng::new(&aigc_dsp::public_key(), "video fp trials");
    let (mut trials, mut hits) = (0usize, 0usize);
    let start = std::time::Instant::now();
    for file in &args[2..] {
        let (first, full) = match watermark_stacks(std::path::Path::new(file)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{file}: {e}");
                continue;
            }
        };
        let prepared: Vec<_> = [Some(first), full]
            .into_iter()
            .flatten()
            .flat_map(|s| s.prepare())
            .collect();
        let mut file_hits = 0;
        for _ in 0..n {
            let mut key = [0u8; 32];
            for b in key.iter_mut() {
                *b = (rng.next_u64() >> 56) as u8;
            }
            if prepared
                .iter()
                .any(|p| detect_prepared(p, &key).found.is_some())
            {
                file_hits += 1;
            }
            trials += 1;
        }
        hits += file_hits;
        println!(
            "{file}: {file_hits}/{n} false detections ({} stacks)",
            prepared.len()
        );
    }
    println!(
        "fp-trials: {hits} false detections in {trials} trials ({} detection steps each), {:.1} s",
        DETECTION_STEPS,
        start.elapsed().as_secs_f64()
    );
    println!("{{\"trials\": {trials}, \"false_detections\": {hits}}}");
}
