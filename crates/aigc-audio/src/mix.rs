//! The sound the detectors read: the channels' mean at about 22 kHz (`crate::pcm`), held in
//! memory for the first [`HELD_SECONDS`] and beyond that kept in an anonymous temporary file
//! and read back a span at a time. Verifying a two-hour file then holds tens of megabytes,
//! not the 636 MB its mix would take; a file of a few minutes never touches the disk. Where no
//! temporary file can be created, the mix stays in memory, as it did before it could spill.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

/// Sound read a span at a time: a slice, or a [`Mix`] that may live on disk.
pub trait Samples {
    /// Samples in all.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples `start..start + len`, cut at the end.
    fn read(&self, start: usize, len: usize) -> Cow<'_, [f32]>;
}

impl Samples for [f32] {
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }

    fn read(&self, start: usize, len: usize) -> Cow<'_, [f32]> {
        let a = start.min(self.len());
        let b = start.saturating_add(len).min(self.len());
        Cow::Borrowed(&self[a..b])
    }
}

/// Seconds of the mix held in memory before the rest goes to disk: 26 MB at 22 kHz.
pub const HELD_SECONDS: f64 = 300.0;

/// The detectors' mono mix at `sample_rate`, held or spilled, with the stretches
/// [`Mix::silence`] was asked to silence reading as zeros.
pub struct Mix {
    /// Samples per second of the mix (about 22 kHz for 44.1 and 48 kHz sources).
    pub sample_rate: u32,
    /// Everything, while nothing has been spilled; else empty.
    held: Vec<f32>,
    /// The whole mix as little-endian f32, once it outgrew [`HELD_SECONDS`].
    spilled: Option<File>,
    len: usize,
    silenced: Vec<(usize, usize)>,
    /// The first error reading the spilled mix back (what failed read as silence).
    read_error: RefCell<Option<String>>,
}

impl Mix {
    /// The samples, when the mix was held in memory.
    pub fn into_held(self) -> Option<Vec<f32>> {
        self.spilled.is_none().then_some(self.held)
    }

    /// Whether the mix lives in a temporary file.
    pub fn is_spilled(&self) -> bool {
        self.spilled.is_some()
    }

    /// Makes samples `from..to` read as zeros.
    pub fn silence(&mut self, from: usize, to: usize) {
        let to = to.min(self.len);
        if from >= to {
            return;
        }
        if self.spilled.is_some() {
            self.silenced.push((from, to));
        } else {
            self.held[from..to].fill(0.0);
        }
    }

    /// Why reading the spilled mix back failed, if it did: the detections made since read
    /// silence there and mean nothing.
    pub fn read_error(&self) -> Option<String> {
        self.read_error.borrow().clone()
    }

    fn read_spilled(&self, file: &File, start: usize, len: usize) -> Result<Vec<f32>, String> {
        let mut bytes = vec![0u8; 4 * len];
        let mut f = file;
        f.seek(SeekFrom::Start(4 * start as u64))
            .and_then(|_| f.read_exact(&mut bytes))
            .map_err(|e| format!("reading back the decoded sound from a temporary file: {e}"))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

impl Samples for Mix {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, start: usize, len: usize) -> Cow<'_, [f32]> {
        let Some(file) = &self.spilled else {
            return self.held.read(start, len);
        };
        let start = start.min(self.len);
        let len = len.min(self.len - start);
        let mut out = self.read_spilled(file, start, len).unwrap_or_else(|e| {
            self.read_error.borrow_mut().get_or_insert(e);
            vec![0.0; len]
        });
        for &(from, to) in &self.silenced {
            let (a, b) = (from.max(start), to.min(start + len));
            if a < b {
                out[a - start..b - start].fill(0.0);
            }
        }
        Cow::Owned(out)
    }
}

/// Builds a [`Mix`] as samples arrive, moving it to a temporary file once it holds more than
/// `held_limit` samples.
pub struct MixWriter {
    sample_rate: u32,
    held_limit: usize,
    held: Vec<f32>,
    spill: Option<BufWriter<File>>,
    len: usize,
    bytes: Vec<u8>,
}

impl MixWriter {
    /// A writer holding up to [`HELD_SECONDS`] in memory.
    pub fn new(sample_rate: u32) -> MixWriter {
        MixWriter::holding(sample_rate, (HELD_SECONDS * sample_rate as f64) as usize)
    }

    /// A writer holding up to `held_limit` samples in memory.
    pub fn holding(sample_rate: u32, held_limit: usize) -> MixWriter {
        MixWriter {
            sample_rate,
            held_limit,
            held: Vec::new(),
            spill: None,
            len: 0,
            bytes: Vec::new(),
        }
    }

    /// Appends `samples`. Errs only when writing the temporary file fails (a full disk).
    pub fn push(&mut self, samples: &[f32]) -> Result<(), String> {
        self.len += samples.len();
        if self.spill.is_none() {
            self.held.extend_from_slice(samples);
            if self.held.len() <= self.held_limit {
                return Ok(());
            }
            // No temporary file to be had (a read-only or full $TMPDIR): the mix stays in
            // memory, as it always did before it could spill, rather than fail the file.
            let Ok(file) = tempfile::tempfile() else {
                self.held_limit = usize::MAX;
                return Ok(());
            };
            self.spill = Some(BufWriter::with_capacity(1 << 20, file));
            let held = std::mem::take(&mut self.held);
            return self.write(&held);
        }
        self.write(samples)
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), String> {
        self.bytes.clear();
        self.bytes
            .extend(samples.iter().flat_map(|v| v.to_le_bytes()));
        self.spill
            .as_mut()
            .expect("spilling")
            .write_all(&self.bytes)
            .map_err(|e| format!("writing the decoded sound to a temporary file: {e}"))
    }

    /// The mix, held or spilled, with nothing silenced yet.
    pub fn finish(self) -> Result<Mix, String> {
        let spilled = match self.spill {
            Some(w) => Some(
                w.into_inner()
                    .map_err(|e| format!("writing the decoded sound to a temporary file: {e}"))?,
            ),
            None => None,
        };
        Ok(Mix {
            sample_rate: self.sample_rate,
            held: self.held,
            spilled,
            len: self.len,
            silenced: Vec::new(),
            read_error: RefCell::new(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spilled_mix_reads_back_what_was_written_and_silences_what_it_is_told() {
        let samples: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut w = MixWriter::holding(8000, 3000);
        for chunk in samples.chunks(777) {
            w.push(chunk).unwrap();
        }
        let mut mix = w.finish().unwrap();
        assert!(mix.is_spilled());
        assert_eq!(mix.len(), samples.len());
        assert_eq!(&*mix.read(2500, 4000), &samples[2500..6500]);
        assert_eq!(&*mix.read(9000, 5000), &samples[9000..]);
        mix.silence(100, 200);
        mix.silence(9990, 20_000);
        let all = mix.read(0, usize::MAX);
        let mut expect = samples.clone();
        expect[100..200].fill(0.0);
        expect[9990..].fill(0.0);
        assert_eq!(&*all, &expect[..]);
        assert_eq!(&*mix.read(150, 100), &expect[150..250]);
        assert!(mix.read_error().is_none());

        let mut held = MixWriter::holding(8000, 20_000);
        held.push(&samples).unwrap();
        let mut held = held.finish().unwrap();
        assert!(!held.is_spilled());
        held.silence(100, 200);
        let mut expect = samples.clone();
        expect[100..200].fill(0.0);
        assert_eq!(&*held.read(0, usize::MAX), &expect[..]);
    }
}
