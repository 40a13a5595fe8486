//! Decoding to planar f32 with symphonia (WAV, FLAC, MP3, AAC/ALAC in MP4, Vorbis in Ogg); Opus,
//! which symphonia does not decode, goes through FFmpeg's decoder (`ffmpeg` module).

use crate::mix::{Mix, MixWriter, Samples};
use aigc_dsp::resample;
use std::fs::File;
use std::path::Path;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL, CODEC_TYPE_OPUS};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Decoded audio: one `Vec` per channel, all the same length.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pcm {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
    /// Packets the decoder could not decode and skipped, as players do (0 for a sound file).
    pub damaged_packets: usize,
}

impl Pcm {
    /// Frames (samples per channel).
    pub fn len(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn seconds(&self) -> f64 {
        self.len() as f64 / self.sample_rate.max(1) as f64
    }

    /// The mean of the channels.
    pub fn mono(&self) -> Vec<f32> {
        mix(&self.slices())
    }

    /// Channel slices, for the DSP functions.
    pub fn slices(&self) -> Vec<&[f32]> {
        self.channels.iter().map(Vec::as_slice).collect()
    }
}

/// The mean of planar channels, over the shortest one.
pub fn mix(channels: &[&[f32]]) -> Vec<f32> {
    let len = channels.iter().map(|c| c.len()).min().unwrap_or(0);
    let n = channels.len().max(1) as f32;
    (0..len)
        .map(|i| channels.iter().map(|c| c[i]).sum::<f32>() / n)
        .collect()
}

/// Decodes the first audio track of `path`. `Ok(None)` means symphonia has no decoder for the
/// codec (Opus): the caller falls back to FFmpeg.
pub fn decode_symphonia(path: &Path) -> Result<Option<Pcm>, String> {
    SymphoniaReader::open(path)?
        .map(|mut r| read_all(&mut r))
        .transpose()
}

/// Everything `reader` hands out.
pub fn read_all(reader: &mut dyn ChunkReader) -> Result<Pcm, String> {
    let mut pcm = Pcm {
        sample_rate: reader.sample_rate(),
        channels: vec![Vec::new(); reader.channels()],
        damaged_packets: 0,
    };
    let mut chunk = vec![Vec::new(); reader.channels()];
    while reader.next_chunk(&mut chunk)? {
        for (c, part) in pcm.channels.iter_mut().zip(&chunk) {
            c.extend_from_slice(part);
        }
    }
    pcm.damaged_packets = reader.damaged_packets();
    if pcm.is_empty() {
        return Err("the audio track holds no samples".into());
    }
    Ok(pcm)
}

/// The channels' mean brought down to about 22 kHz as chunks arrive: what the detectors read.
struct DetectionMix {
    decimator: resample::Decimator,
    /// The decimator's output for the chunk at hand.
    out: Vec<f32>,
    writer: MixWriter,
}

impl DetectionMix {
    /// `held`: whether the whole mix stays in memory, else what outgrows
    /// [`crate::mix::HELD_SECONDS`] goes to a temporary file.
    fn new(sample_rate: u32, held: bool) -> DetectionMix {
        let factor = resample::decimation_for(sample_rate);
        let rate = sample_rate / factor as u32;
        DetectionMix {
            decimator: resample::Decimator::new(factor),
            out: Vec::new(),
            writer: if held {
                MixWriter::holding(rate, usize::MAX)
            } else {
                MixWriter::new(rate)
            },
        }
    }

    fn push(&mut self, channels: &[&[f32]]) -> Result<(), String> {
        self.out.clear();
        self.decimator.push(&mix(channels), &mut self.out);
        self.writer.push(&self.out)
    }

    fn finish(mut self) -> Result<Mix, String> {
        self.out.clear();
        self.decimator.finish(&mut self.out);
        self.writer.push(&self.out)?;
        self.writer.finish()
    }
}

/// What the detectors read: the channels' mean, brought down to about 22 kHz while reading
/// (`aigc_dsp::resample`), so only that is kept, and past five minutes kept on disk
/// (`crate::mix`): 20 minutes of 44.1 kHz stereo decode to 424 MB, their mix to 106 MB.
/// Both detectors look below 7.2 kHz. At most the first `limit_seconds`.
pub fn read_for_detection(
    reader: &mut dyn ChunkReader,
    limit_seconds: Option<f64>,
) -> Result<Mix, String> {
    let limit = limit_seconds.map(|s| (s * reader.sample_rate() as f64) as usize);
    let mut mix = DetectionMix::new(reader.sample_rate(), false);
    let mut chunk = vec![Vec::new(); reader.channels()];
    let mut read = 0;
    while limit.is_none_or(|l| read < l) && reader.next_chunk(&mut chunk)? {
        let take = limit.map_or(usize::MAX, |l| l - read);
        let chans: Vec<&[f32]> = chunk.iter().map(|c| &c[..c.len().min(take)]).collect();
        read += chans.first().map_or(0, |c| c.len());
        mix.push(&chans)?;
    }
    let mix = mix.finish()?;
    if mix.is_empty() {
        return Err("the audio track holds no samples".into());
    }
    Ok(mix)
}

/// [`read_for_detection`] on sound already decoded: the channels' mean at about 22 kHz, held
/// in memory, and that rate.
pub fn for_detection(channels: &[&[f32]], sample_rate: u32) -> (Vec<f32>, u32) {
    let mut mix = DetectionMix::new(sample_rate, true);
    mix.push(channels)
        .expect("a held mix writes nothing to disk");
    let mix = mix.finish().expect("a held mix writes nothing to disk");
    let rate = mix.sample_rate;
    (mix.into_held().expect("held"), rate)
}

/// Decoded sound handed out a chunk at a time, so a long file is never held whole.
pub trait ChunkReader {
    fn sample_rate(&self) -> u32;
    fn channels(&self) -> usize;
    /// Replaces `chunk`'s contents (one vector per channel) with the next decoded samples;
    /// false at the end.
    fn next_chunk(&mut self, chunk: &mut [Vec<f32>]) -> Result<bool, String>;
    /// Packets that could not be decoded and were skipped, as players do.
    fn damaged_packets(&self) -> usize;
}

/// Symphonia's decoder over a file's first audio track.
pub struct SymphoniaReader {
    format: Box<dyn symphonia::core::formats::FormatReader>,
    decoder: Box<dyn symphonia::core::codecs::Decoder>,
    track: u32,
    sample_rate: u32,
    channels: usize,
    buf: Option<SampleBuffer<f32>>,
    /// The first chunk, decoded when opening to learn the channel count.
    first: Option<Vec<Vec<f32>>>,
    damaged: usize,
}

impl SymphoniaReader {
    /// Opens `path`; `Ok(None)` when symphonia has no decoder for its codec (Opus).
    pub fn open(path: &Path) -> Result<Option<SymphoniaReader>, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let probed = symphonia::default::get_probe()
            .format(
                &hint,
                mss,
                &FormatOptions::default(),
                &MetadataOptions::default(),
            )
            .map_err(|e| format!("cannot read the audio container: {e}"))?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or("no audio track")?
            .clone();
        if track.codec_params.codec == CODEC_TYPE_OPUS {
            return Ok(None);
        }
        let decoder = match symphonia::default::get_codecs()
            .make(&track.codec_params, &DecoderOptions::default())
        {
            Ok(d) => d,
            Err(SymError::Unsupported(_)) => return Ok(None),
            Err(e) => return Err(format!("cannot decode the audio: {e}")),
        };
        let mut reader = SymphoniaReader {
            format,
            decoder,
            track: track.id,
            sample_rate: track.codec_params.sample_rate.unwrap_or(0),
            channels: 0,
            buf: None,
            first: None,
            damaged: 0,
        };
        let mut first = Vec::new();
        if !reader.decode_next(&mut first)? || reader.sample_rate == 0 {
            return Err("the audio track holds no samples".into());
        }
        reader.first = Some(first);
        Ok(Some(reader))
    }

    /// Decodes the next packet of the track into `chunk` (resized to the channel count).
    fn decode_next(&mut self, chunk: &mut Vec<Vec<f32>>) -> Result<bool, String> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(false)
                }
                Err(SymError::ResetRequired) => return Ok(false),
                Err(e) => return Err(format!("cannot read audio packet: {e}")),
            };
            if packet.track_id() != self.track {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(d) => d,
                // A damaged packet is skipped, as players do, and counted for the report.
                Err(SymError::DecodeError(_)) => {
                    self.damaged += 1;
                    continue;
                }
                Err(e) => return Err(format!("cannot decode the audio: {e}")),
            };
            let spec = *decoded.spec();
            let nch = spec.channels.count();
            if self.channels == 0 {
                self.channels = nch;
                self.sample_rate = spec.rate;
            }
            if nch != self.channels {
                return Err("the channel count changes mid-stream".into());
            }
            let b = self
                .buf
                .get_or_insert_with(|| SampleBuffer::new(decoded.capacity() as u64, spec));
            if b.capacity() < decoded.capacity() * nch {
                *b = SampleBuffer::new(decoded.capacity() as u64, spec);
            }
            b.copy_interleaved_ref(decoded);
            chunk.resize(nch, Vec::new());
            for c in chunk.iter_mut() {
                c.clear();
            }
            for frame in b.samples().chunks_exact(nch) {
                for (c, &v) in chunk.iter_mut().zip(frame) {
                    c.push(v);
                }
            }
            return Ok(true);
        }
    }
}

impl ChunkReader for SymphoniaReader {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn next_chunk(&mut self, chunk: &mut [Vec<f32>]) -> Result<bool, String> {
        if let Some(first) = self.first.take() {
            for (c, f) in chunk.iter_mut().zip(first) {
                *c = f;
            }
            return Ok(true);
        }
        let mut v: Vec<Vec<f32>> = chunk.iter_mut().map(std::mem::take).collect();
        let more = self.decode_next(&mut v)?;
        for (c, f) in chunk.iter_mut().zip(v) {
            *c = f;
        }
        Ok(more)
    }

    fn damaged_packets(&self) -> usize {
        self.damaged
    }
}

/// Writes `pcm` as a 32-bit float WAV (WAVE_FORMAT_IEEE_FLOAT), for tools and tests.
pub fn write_wav_f32(path: &Path, pcm: &Pcm) -> std::io::Result<()> {
    use std::io::Write;
    let nch = pcm.channels.len() as u16;
    let data_len = (pcm.len() * nch as usize * 4) as u32;
    let mut out = std::io::BufWriter::new(File::create(path)?);
    out.write_all(b"RIFF")?;
    out.write_all(&(36 + data_len).to_le_bytes())?;
    out.write_all(b"WAVEfmt ")?;
    out.write_all(&16u32.to_le_bytes())?;
    out.write_all(&3u16.to_le_bytes())?;
    out.write_all(&nch.to_le_bytes())?;
    out.write_all(&pcm.sample_rate.to_le_bytes())?;
    out.write_all(&(pcm.sample_rate * nch as u32 * 4).to_le_bytes())?;
    out.write_all(&(nch * 4).to_le_bytes())?;
    out.write_all(&32u16.to_le_bytes())?;
    out.write_all(b"data")?;
    out.write_all(&data_len.to_le_bytes())?;
    for i in 0..pcm.len() {
        for c in &pcm.channels {
            out.write_all(&c[i].to_le_bytes())?;
        }
    }
    out.flush()
}
