//! The audio watermark without the container work, for the evaluation harness
//! (`benches/audio_eval.py`): times exclude decoding and encoding.
//!   awm_tool embed IN OUT.wav       marks IN (any format symphonia reads) into a float WAV, as
//!                                   `mark` does (the streaming marker, limiter included)
//!   awm_tool detect FILE...         one JSON line per file
//!   awm_tool fp-trials N FILE...    N random keys per file; prints the detections
//! The key is the public key unless AIGC_WM_KEY holds 64 hex digits.
use aigc_audio::{pcm, watermark};
use std::time::Instant;

fn key() -> aigc_dsp::Key {
    match std::env::var("AIGC_WM_KEY") {
        Ok(h) => {
            let mut k = [0u8; 32];
            for (i, b) in k.iter_mut().enumerate() {
                *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex key");
            }
            k
        }
        Err(_) => aigc_dsp::public_key(),
    }
}

fn load(path: &str) -> pcm::Pcm {
    pcm::decode_symphonia(std::path::Path::new(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .unwrap_or_else(|| panic!("{path}: codec not decodable by symphonia"))
}

/// Marks `a` in place as `mark` does (or at a fixed strength, `AIGC_WM_SNR`).
fn mark_once(a: &mut pcm::Pcm, payload: watermark::Payload) -> Option<watermark::Embedded> {
    // AIGC_WM_SNR overrides the strength, for experiments only.
    match std::env::var("AIGC_WM_SNR")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(snr) => watermark::embed_at(&mut a.channels, a.sample_rate, &key(), payload, snr),
        // What `mark` does on a file: a pass for the whole file's strength, then the streaming
        // marker at that strength (with the limiter). $AIGC_WM_STREAMED: the strength set block
        // by block from the sound so far instead, as for a video's soundtrack.
        None => {
            let k = key();
            let chunks = |len: usize| {
                (0..len)
                    .step_by(4096)
                    .map(move |f| (f, (f + 4096).min(len)))
            };
            let strength = if std::env::var_os("AIGC_WM_STREAMED").is_some() {
                None
            } else {
                let mut scan = watermark::StrengthScan::new(a.sample_rate, a.channels.len());
                for (from, to) in chunks(a.len()) {
                    let chunk: Vec<&[f32]> = a.channels.iter().map(|c| &c[from..to]).collect();
                    scan.push(&chunk);
                }
                scan.finish()
            };
            let layers = aigc_audio::stream::StreamLayers {
                watermark: Some((&k, payload)),
                strength,
                rhythm: None,
                inserts: &[],
            };
            let mut m =
                aigc_audio::stream::StreamMarker::new(a.sample_rate, a.channels.len(), &layers);
            // Reserved up front: growing it would be the tool's cost, not the marker's.
            let mut out: Vec<Vec<f32>> = (0..a.channels.len())
                .map(|_| Vec::with_capacity(a.len()))
                .collect();
            let mut take = |c: &[&[f32]]| {
                for (o, c) in out.iter_mut().zip(c) {
                    o.extend_from_slice(c);
                }
            };
            for (from, to) in chunks(a.len()) {
                let chunk: Vec<&[f32]> = a.channels.iter().map(|c| &c[from..to]).collect();
                m.push(&chunk, &mut take);
            }
            let r = m.finish(&mut take);
            a.channels = out;
            r.watermark
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("embed") => {
            let mut a = load(&args[1]);
            let payload = std::env::var("AIGC_WM_PAYLOAD")
                .ok()
                .map(|h| {
                    let v = u128::from_str_radix(&h, 16).expect("hex payload");
                    if h.len() > 16 {
                        watermark::Payload::bits128(v)
                    } else {
                        watermark::Payload::bits64(v as u64)
                    }
                })
                .unwrap_or(watermark::Payload::bits64(0x1234_5678_9abc_def0));
            let original = a.clone();
            // Best of three: this machine's timings are noisy, and the marker's own time is
            // the figure (the input is the same each time, the output the last one's).
            let mut secs = f64::MAX;
            let mut e = None;
            for _ in 0..3 {
                a = original.clone();
                let t = Instant::now();
                e = mark_once(&mut a, payload);
                secs = secs.min(t.elapsed().as_secs_f64());
            }
            let (mut sig, mut err) = (0f64, 0f64);
            for (c, o) in a.channels.iter().zip(&original.channels) {
                for (x, y) in c.iter().zip(o) {
                    sig += (*y as f64).powi(2);
                    err += ((x - y) as f64).powi(2);
                }
            }
            pcm::write_wav_f32(std::path::Path::new(&args[2]), &a).expect("write");
            println!(
                "{{\"file\":{:?},\"seconds\":{},\"embed_s\":{secs},\"snr_db\":{},\"strength\":{}}}",
                args[1],
                a.seconds(),
                10.0 * (sig / err.max(1e-30)).log10(),
                e.map_or(0.0, |e| e.strength)
            );
        }
        Some("detect") => {
            let k = key();
            for f in &args[1..] {
                let a = load(f);
                let t = Instant::now();
                let d = watermark::detect(&a.slices(), a.sample_rate, &k);
                let secs = t.elapsed().as_secs_f64();
                println!(
                    "{{\"file\":{f:?},\"seconds\":{},\"detect_s\":{secs},\"found\":{},\"payload\":\"{}\",\"agreement\":{},\"speed\":{}}}",
                    a.seconds(),
                    d.found.is_some(),
                    d.found.map_or(d.best_payload, |f| f.payload).hex(),
                    d.found.map_or(d.best_agreement, |f| f.agreement),
                    d.found.map_or(0.0, |f| f.speed),
                );
            }
        }
        Some("fp-trials") => {
            // N random keys per file, each a full detection (plain reading and speed search)
            // on the file's audio, sharing the key-independent folds.
            let n: usize = args[1].parse().expect("trial count");
            let seed = std::env::var("AIGC_WM_SEED").unwrap_or_default();
            let mut hits = 0;
            let mut trials = 0;
            let t = Instant::now();
            for f in &args[2..] {
                let a = load(f);
                let (mono, rate) = pcm::for_detection(&a.slices(), a.sample_rate);
                let prepared = watermark::Prepared::new(&mono, rate);
                let mut rng = aigc_dsp::KeyedRng::new(&[0u8; 32], &format!("fp {seed} {f}"));
                for i in 0..n {
                    let mut key = [0u8; 32];
                    for b in key.iter_mut() {
                        *b = rng.next_u64() as u8;
                    }
                    trials += 1;
                    if watermark::detect_prepared(&prepared, &key).found.is_some() {
                        hits += 1;
                        println!("false detection: {f} key {i}");
                    }
                }
            }
            println!(
                "{{\"trials\":{trials},\"false_detections\":{hits},\"seconds\":{:.1}}}",
                t.elapsed().as_secs_f64()
            );
        }
        _ => eprintln!("usage: awm_tool embed IN OUT.wav | detect FILE... | fp-trials N FILE..."),
    }
}
