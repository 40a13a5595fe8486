//! Development loop: embed into each file given, detect in-process, print SNR, agreement and
//! timings. `cargo run --release -p aigc-audio --example awm_dev -- FILES...`
use aigc_audio::{pcm, watermark};
use std::time::Instant;

fn main() {
    let key = aigc_dsp::public_key();
    let snr: f32 = std::env::var("SNR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(watermark::TARGET_SNR_DB);
    for f in std::env::args().skip(1) {
        let p = std::path::Path::new(&f);
        let mut a = pcm::decode_symphonia(p)
            .expect("decode")
            .expect("symphonia codec");
        let secs = a.seconds();
        let t = Instant::now();
        let e = watermark::embed_at(
            &mut a.channels,
            a.sample_rate,
            &key,
            watermark::Payload::bits64(0x1234_5678_9abc_def0),
            snr,
        );
        let te = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let d = watermark::detect(&a.slices(), a.sample_rate, &key);
        let td = t.elapsed().as_secs_f64();
        let name = p.file_name().unwrap().to_string_lossy();
        println!(
            "{name:40} {secs:6.1}s {e:?} found={} agree={:.3} embed {:.0}x detect {:.0}x",
            d.found.is_some(),
            d.best_agreement,
            secs / te,
            secs / td
        );
    }
}
