//! One module per container format, each a stateless [`crate::FormatHandler`].

pub mod gif;
pub mod heif;
pub mod jpeg;
pub mod png;
pub mod tiff;
pub mod webp;
