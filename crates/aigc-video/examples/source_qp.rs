//! Prints the mean QP of a video's first 60 frames, as `mark` measures it to match quality:
//!   cargo run --release -p aigc-video --example source_qp -- FILE...
fn main() {
    for f in std::env::args().skip(1) {
        let _ = ffmpeg_next::init();
        let qp = aigc_video::encode::source_qp(std::path::Path::new(&f), 0, 60);
        println!("{f}: {qp:?}");
    }
}
