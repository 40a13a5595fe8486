use std::fmt;
use std::io;

/// Why a file could not be read or written. `Display` is one line that says what is wrong; the
/// caller adds the file name.
#[derive(Debug)]
pub struct MetaError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading or writing failed at the operating-system level.
    Io,
    /// The bytes do not follow the format (truncated, bad lengths, bad CRC, loops).
    Malformed,
    /// No handler recognises the file (folder walks skip these).
    UnknownFormat,
    /// A recognised format in a variant the handler cannot write (a failure, never skipped).
    Unsupported,
    /// A declared or resulting size is beyond what the format or this tool allows.
    TooLarge,
    /// The written file did not read back as expected; nothing was put in place.
    Verification,
}

impl MetaError {
    pub fn malformed(message: impl Into<String>) -> MetaError {
        MetaError {
            kind: ErrorKind::Malformed,
            message: message.into(),
        }
    }
    pub fn unknown_format(message: impl Into<String>) -> MetaError {
        MetaError {
            kind: ErrorKind::UnknownFormat,
            message: message.into(),
        }
    }
    pub fn unsupported(message: impl Into<String>) -> MetaError {
        MetaError {
            kind: ErrorKind::Unsupported,
            message: message.into(),
        }
    }
    pub fn too_large(message: impl Into<String>) -> MetaError {
        MetaError {
            kind: ErrorKind::TooLarge,
            message: message.into(),
        }
    }
    pub fn verification(message: impl Into<String>) -> MetaError {
        MetaError {
            kind: ErrorKind::Verification,
            message: message.into(),
        }
    }
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MetaError {}

impl From<io::Error> for MetaError {
    fn from(e: io::Error) -> MetaError {
        let message = match e.kind() {
            io::ErrorKind::UnexpectedEof => "file ends early (truncated)".to_string(),
            _ => e.to_string(),
        };
        let kind = if e.kind() == io::ErrorKind::UnexpectedEof {
            ErrorKind::Malformed
        } else {
            ErrorKind::Io
        };
        MetaError { kind, message }
    }
}

pub type Result<T> = std::result::Result<T, MetaError>;
