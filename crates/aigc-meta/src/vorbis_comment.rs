//! The Vorbis comment structure shared by FLAC (`VORBIS_COMMENT` block) and Ogg Vorbis/Opus
//! (comment header): a vendor string and `KEY=value` entries, lengths little-endian.

use crate::bytes::le_u32;
use crate::error::{MetaError, Result};

/// The comment key that holds the label (keys compare case-insensitively).
pub const KEY: &str = "AIGC";

#[derive(Clone, Debug)]
pub struct Comments {
    pub vendor: Vec<u8>,
    /// Raw `KEY=value` entries in file order.
    pub entries: Vec<Vec<u8>>,
    /// Bytes after the last entry (Vorbis framing bit, Opus binary extension data): kept.
    pub trailer: Vec<u8>,
}

impl Comments {
    pub fn parse(b: &[u8], what: &str) -> Result<Comments> {
        let bad = || {
            MetaError::malformed(format!(
                "{what}: comment structure is truncated or has bad lengths"
            ))
        };
        let mut p = 0usize;
        let take = |n: usize, p: &mut usize| -> Result<std::ops::Range<usize>> {
            if *p + n > b.len() {
                return Err(bad());
            }
            *p += n;
            Ok(*p - n..*p)
        };
        let vlen = le_u32(&b[take(4, &mut p)?]) as usize;
        let vendor = b[take(vlen, &mut p)?].to_vec();
        let count = le_u32(&b[take(4, &mut p)?]) as usize;
        if count > (b.len() - p) / 4 {
            return Err(MetaError::malformed(format!(
                "{what}: declares {count} comments, more than its bytes can hold"
            )));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let n = le_u32(&b[take(4, &mut p)?]) as usize;
            entries.push(b[take(n, &mut p)?].to_vec());
        }
        Ok(Comments {
            vendor,
            entries,
            trailer: b[p..].to_vec(),
        })
    }

    /// The values of every `AIGC=` entry.
    pub fn labels(&self) -> Vec<String> {
        self.entries.iter().filter_map(|e| label_value(e)).collect()
    }

    /// Replaces every `AIGC=` entry with one holding `json` (appended last).
    pub fn set_label(&mut self, json: &str) {
        self.entries.retain(|e| label_value(e).is_none());
        self.entries.push(format!("{KEY}={json}").into_bytes());
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.vendor.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.vendor);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&(e.len() as u32).to_le_bytes());
            out.extend_from_slice(e);
        }
        out.extend_from_slice(&self.trailer);
        out
    }
}

fn label_value(entry: &[u8]) -> Option<String> {
    let eq = entry.iter().position(|&b| b == b'=')?;
    entry[..eq]
        .eq_ignore_ascii_case(KEY.as_bytes())
        .then(|| String::from_utf8_lossy(&entry[eq + 1..]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_replace() {
        let mut c = Comments {
            vendor: b"x".to_vec(),
            entries: vec![b"TITLE=a".to_vec(), b"aigc={}".to_vec()],
            trailer: vec![1],
        };
        let parsed = Comments::parse(&c.to_bytes(), "t").unwrap();
        assert_eq!(parsed.labels(), vec!["{}".to_string()]);
        c.set_label("{\"Label\":\"1\"}");
        let again = Comments::parse(&c.to_bytes(), "t").unwrap();
        assert_eq!(again.entries.len(), 2);
        assert_eq!(again.labels(), vec!["{\"Label\":\"1\"}".to_string()]);
        assert_eq!(again.trailer, vec![1]);
        assert!(Comments::parse(&[255, 255, 255, 255], "t").is_err());
    }
}
