//! One module per container format, each a stateless [`crate::FormatHandler`].

pub mod avi;
pub mod flac;
pub mod gif;
pub mod heif;
pub mod jpeg;
pub mod mkv;
pub mod mp3;
pub mod mp4;
pub mod ogg;
pub mod png;
pub mod tiff;
pub mod wav;
pub mod webp;
