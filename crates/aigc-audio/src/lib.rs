//! Audio for aigc-label: the keyed watermark (`watermark`), the Morse rhythm label
//! (`rhythm`), decoding (`pcm`) and the mark/inspect pipeline that re-encodes through FFmpeg.

pub mod mix;
pub mod pcm;
pub mod pipeline;
pub mod rhythm;
pub mod stream;
pub mod transcode;
pub mod watermark;

pub use pcm::Pcm;
