//! Reads and writes the GB 45438 implicit label in media file metadata.
//!
//! One stateless handler per container format implements [`FormatHandler`]; [`detect`] picks one
//! by magic bytes (the extension is only used to word errors). Writes are byte-preserving: only
//! the label carrier changes, pixels and samples are never decoded, and memory stays bounded
//! because everything else is streamed from input to output.
//!
//! The file-level entry points are [`scan_file`] (read every carrier, for verification) and
//! [`write_file`] (write to a temporary file beside the destination, read it back, and rename it
//! into place only when it holds exactly the intended label).

pub mod bmff;
pub mod bytes;
pub mod error;
mod files;
pub mod formats;
mod handler;
mod in_place;
pub mod tiff_ifd;
pub mod vorbis_comment;
pub mod xmp;

pub use error::{ErrorKind, MetaError, Result};
pub use files::{
    carry_metadata, detect, handlers, open_input, scan_file, temp_beside, write_encoded,
    write_file, write_file_like, FileScan, SUPPORTED,
};
pub use handler::{Format, FormatHandler, Scan, WriteOptions};
