//! FFmpeg (through ffmpeg-next, on the system's libav* libraries): what an audio file holds,
//! decoding what symphonia cannot (Opus), and encoding marked samples back into the input's
//! container, codec, sample rate, channels, sample format and bitrate class, with the input's
//! tags.

use ffmpeg_next as ff;
use std::path::Path;
use std::sync::Once;

/// Initialises FFmpeg once for this process (the video pipeline shares it). Errors come back
/// as values and are reported once, naming the file; FFmpeg's own log stays available for
/// diagnosing a file: AIGC_FFMPEG_LOG=1.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ff::init();
        let level = if std::env::var_os("AIGC_FFMPEG_LOG").is_some() {
            ff::util::log::Level::Info
        } else {
            ff::util::log::Level::Quiet
        };
        ff::util::log::set_level(level);
    });
}

/// Whether a container or stream tag is carried into a re-encoded file: all but the AIGC
/// label (aigc-meta writes the one label) and the encoder's name.
pub fn kept_tag(key: &str) -> bool {
    !key.eq_ignore_ascii_case("AIGC") && !key.eq_ignore_ascii_case("encoder")
}

/// The length of stream `index`, seconds, from the stream or else the container.
pub fn stream_seconds(ictx: &ff::format::context::Input, index: usize) -> Option<f64> {
    let s = ictx.stream(index)?;
    let tb = s.time_base();
    if s.duration() > 0 && tb.denominator() > 0 {
        return Some(s.duration() as f64 * tb.numerator() as f64 / tb.denominator() as f64);
    }
    (ictx.duration() > 0).then(|| ictx.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE))
}

/// What the input holds, as FFmpeg reads it: enough to write the same kind of file back.
#[derive(Clone, Debug)]
pub struct Source {
    /// FFmpeg's demuxer name (`"mp3"`, `"mov,mp4,m4a,3gp,3g2,mj2"`, `"ogg"`, ...).
    pub demuxer: String,
    pub codec: ff::codec::Id,
    pub sample_format: ff::format::Sample,
    pub sample_rate: u32,
    pub channels: u16,
    /// Bits per second of the audio stream (0 when the file does not say).
    pub bit_rate: usize,
    /// The file has a video stream (cover art does not count).
    pub has_video: bool,
    /// The audio stream's stated length, seconds, when the file says.
    pub seconds: Option<f64>,
    /// Container-level and stream-level tags, the AIGC label left out.
    pub container_tags: Vec<(String, String)>,
    pub stream_tags: Vec<(String, String)>,
}

fn tags(d: ff::DictionaryRef) -> Vec<(String, String)> {
    d.iter()
        .filter(|(k, _)| kept_tag(k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reads the container's description of its first audio stream; `Ok(None)` when it has none.
pub fn probe(path: &Path) -> Result<Option<Source>, String> {
    init();
    let ictx = ff::format::input(path).map_err(|e| format!("FFmpeg cannot open it: {e}"))?;
    let Some(stream) = ictx.streams().best(ff::media::Type::Audio) else {
        return Ok(None);
    };
    let ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| e.to_string())?;
    let dec = ctx.decoder().audio().map_err(|e| e.to_string())?;
    let bit_rate = match dec.bit_rate() {
        0 => ictx.bit_rate().max(0) as usize,
        b => b,
    };
    Ok(Some(Source {
        demuxer: ictx.format().name().to_string(),
        codec: dec.id(),
        sample_format: dec.format(),
        sample_rate: dec.rate(),
        channels: dec.channels(),
        bit_rate,
        has_video: ictx.streams().any(|s| {
            s.parameters().medium() == ff::media::Type::Video
                && !s
                    .disposition()
                    .contains(ff::format::stream::Disposition::ATTACHED_PIC)
        }),
        seconds: stream_seconds(&ictx, stream.index()),
        container_tags: tags(ictx.metadata()),
        stream_tags: tags(stream.metadata()),
    }))
}

/// Opens the decoder of an audio stream; refuses one without a sample rate.
pub fn audio_decoder(stream: &ff::format::stream::Stream) -> Result<ff::decoder::Audio, String> {
    let ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| e.to_string())?;
    let decoder = ctx
        .decoder()
        .audio()
        .map_err(|e| format!("cannot decode the audio: {e}"))?;
    if decoder.rate() == 0 {
        return Err("the audio stream has no sample rate".into());
    }
    Ok(decoder)
}

/// FFmpeg's decoder over a file's main audio stream, a frame at a time.
pub struct FfmpegReader {
    ictx: ff::format::context::Input,
    decoder: ff::decoder::Audio,
    index: usize,
    frame: ff::frame::Audio,
    channels: usize,
    ended: bool,
    damaged: usize,
}

impl FfmpegReader {
    /// Opens the main audio stream of any file FFmpeg reads (a video's too); `Ok(None)`: the
    /// file has none.
    pub fn open(path: &Path) -> Result<Option<FfmpegReader>, String> {
        init();
        let ictx = ff::format::input(path).map_err(|e| format!("FFmpeg cannot open it: {e}"))?;
        let Some(stream) = ictx.streams().best(ff::media::Type::Audio) else {
            return Ok(None);
        };
        let index = stream.index();
        let decoder = audio_decoder(&stream)?;
        let channels = decoder.channels().max(1) as usize;
        Ok(Some(FfmpegReader {
            ictx,
            decoder,
            index,
            frame: ff::frame::Audio::empty(),
            channels,
            ended: false,
            damaged: 0,
        }))
    }
}

impl crate::pcm::ChunkReader for FfmpegReader {
    fn sample_rate(&self) -> u32 {
        self.decoder.rate()
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn next_chunk(&mut self, chunk: &mut [Vec<f32>]) -> Result<bool, String> {
        loop {
            if self.decoder.receive_frame(&mut self.frame).is_ok() {
                for c in chunk.iter_mut() {
                    c.clear();
                }
                append_frame(&self.frame, chunk)?;
                return Ok(true);
            }
            if self.ended {
                return Ok(false);
            }
            let mut next = None;
            for (s, packet) in self.ictx.packets() {
                if s.index() == self.index {
                    next = Some(packet);
                    break;
                }
            }
            match next {
                // A damaged packet is skipped, as players do, and counted for the report.
                Some(packet) => {
                    if self.decoder.send_packet(&packet).is_err() {
                        self.damaged += 1;
                    }
                }
                None => {
                    let _ = self.decoder.send_eof();
                    self.ended = true;
                }
            }
        }
    }

    fn damaged_packets(&self) -> usize {
        self.damaged
    }
}

/// Appends a decoded frame's samples, as f32 in [-1, 1], to `channels` (one vector per channel).
pub fn append_frame(frame: &ff::frame::Audio, channels: &mut [Vec<f32>]) -> Result<(), String> {
    use ff::format::Sample;
    let n = frame.samples();
    let nch = channels.len();
    if frame.channels() as usize != nch {
        return Err("the channel count changes mid-stream".into());
    }
    let planar = frame.is_planar();
    let (size, read): (usize, fn(&[u8]) -> f32) = match frame.format() {
        Sample::F32(_) => (4, |b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
        Sample::F64(_) => (8, |b| {
            f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32
        }),
        Sample::I16(_) => (2, |b| {
            i16::from_le_bytes(b.try_into().expect("2 bytes")) as f32 / 32768.0
        }),
        Sample::I32(_) => (4, |b| {
            i32::from_le_bytes(b.try_into().expect("4 bytes")) as f32 / 2_147_483_648.0
        }),
        Sample::U8(_) => (1, |b| (b[0] as f32 - 128.0) / 128.0),
        other => return Err(format!("unsupported decoded sample format {other:?}")),
    };
    for (c, out) in channels.iter_mut().enumerate() {
        // ffmpeg-next gives a planar frame's second and later planes only through `plane`
        // (their `data` is sized by a line size FFmpeg sets for the first plane alone).
        if planar {
            match frame.format() {
                Sample::F32(_) => out.extend_from_slice(&frame.plane::<f32>(c)[..n]),
                Sample::F64(_) => out.extend(frame.plane::<f64>(c)[..n].iter().map(|&v| v as f32)),
                Sample::I16(_) => out.extend(
                    frame.plane::<i16>(c)[..n]
                        .iter()
                        .map(|&v| v as f32 / 32768.0),
                ),
                Sample::I32(_) => out.extend(
                    frame.plane::<i32>(c)[..n]
                        .iter()
                        .map(|&v| v as f32 / 2_147_483_648.0),
                ),
                Sample::U8(_) => out.extend(
                    frame.plane::<u8>(c)[..n]
                        .iter()
                        .map(|&v| (v as f32 - 128.0) / 128.0),
                ),
                _ => unreachable!("checked above"),
            }
        } else {
            let data = frame.data(0);
            for i in 0..n {
                let at = (i * nch + c) * size;
                out.push(read(&data[at..at + size]));
            }
        }
    }
    Ok(())
}

/// The encoder and muxer that write the same kind of file as `src`.
fn choose(src: &Source) -> Result<(&'static str, &'static str), String> {
    let muxer = match src.demuxer.as_str() {
        "mp3" => "mp3",
        "wav" => "wav",
        "flac" => "flac",
        "ogg" => "ogg",
        d if d.starts_with("mov,mp4") => "ipod",
        d => return Err(format!("cannot write audio back into a {d} container")),
    };
    let encoder = encoder_for(src.codec)
        .ok_or_else(|| format!("no encoder to write {:?} audio back", src.codec))?;
    Ok((encoder, muxer))
}

/// This FFmpeg's encoder for audio of `codec`, when there is one.
pub fn encoder_for(codec: ff::codec::Id) -> Option<&'static str> {
    use ff::codec::Id;
    Some(match codec {
        Id::MP3 => "libmp3lame",
        Id::AAC => "aac",
        Id::VORBIS => "libvorbis",
        Id::OPUS => "libopus",
        Id::FLAC => "flac",
        Id::ALAC => "alac",
        Id::AC3 => "ac3",
        Id::EAC3 => "eac3",
        Id::PCM_S16LE => "pcm_s16le",
        Id::PCM_S24LE => "pcm_s24le",
        Id::PCM_S32LE => "pcm_s32le",
        Id::PCM_F32LE => "pcm_f32le",
        Id::PCM_F64LE => "pcm_f64le",
        Id::PCM_S16BE => "pcm_s16be",
        Id::PCM_S24BE => "pcm_s24be",
        Id::PCM_U8 => "pcm_u8",
        _ => return None,
    })
}

/// Bitrate for a lossy encoder: the input's (`bit_rate`, 0 when unknown), else a common
/// default for the codec.
pub fn lossy_bit_rate(codec: ff::codec::Id, bit_rate: usize, channels: u16) -> usize {
    use ff::codec::Id;
    match (bit_rate, codec) {
        (b, _) if b >= 8000 => b,
        (_, Id::OPUS) => 64_000,
        _ => 128_000 * channels.max(1) as usize / 2,
    }
}

/// The encoder's sample format closest to the input's: the same when it takes it, else the
/// first of float, 32-bit and 16-bit that it takes.
fn sample_format(
    codec: &ff::codec::Audio,
    prefer: ff::format::Sample,
) -> Result<ff::format::Sample, String> {
    let formats: Vec<ff::format::Sample> = codec.formats().map(|f| f.collect()).unwrap_or_default();
    if formats.is_empty() || formats.contains(&prefer) {
        return Ok(prefer);
    }
    use ff::format::sample::Type::{Packed, Planar};
    use ff::format::Sample;
    let want = [
        Sample::F32(Planar),
        Sample::F32(Packed),
        Sample::I32(Planar),
        Sample::I32(Packed),
        Sample::I16(Planar),
        Sample::I16(Packed),
    ];
    want.into_iter()
        .find(|f| formats.contains(f))
        .or_else(|| formats.first().copied())
        .ok_or_else(|| "the encoder takes no sample format".to_string())
}

/// An audio file being written: the same kind of file as a source (container, codec, rate,
/// channels, bitrate, tags), fed planar chunks of any length.
pub struct AudioFile {
    octx: ff::format::context::Output,
    enc: AudioEncoder,
    ost_tb: ff::Rational,
    encoder_name: &'static str,
}

impl AudioFile {
    pub fn create(
        src: &Source,
        out: &Path,
        sample_rate: u32,
        channels: usize,
    ) -> Result<AudioFile, String> {
        init();
        let (encoder_name, muxer) = choose(src)?;
        let mut octx = ff::format::output_as(out, muxer)
            .map_err(|e| format!("cannot create the output: {e}"))?;
        let global_header = octx
            .format()
            .flags()
            .contains(ff::format::Flags::GLOBAL_HEADER);
        let enc = AudioEncoder::open(
            encoder_name,
            sample_rate,
            ff::ChannelLayout::default(channels as i32),
            src.sample_format,
            lossy_bit_rate(src.codec, src.bit_rate, src.channels),
            global_header,
        )?;
        let mut ost = octx.add_stream(enc.codec()).map_err(|e| e.to_string())?;
        ost.set_parameters(enc.context());
        ost.set_time_base(enc.time_base());
        let mut stream_tags = ff::Dictionary::new();
        for (k, v) in &src.stream_tags {
            stream_tags.set(k, v);
        }
        ost.set_metadata(stream_tags);
        let mut container_tags = ff::Dictionary::new();
        for (k, v) in &src.container_tags {
            container_tags.set(k, v);
        }
        octx.set_metadata(container_tags);
        octx.write_header()
            .map_err(|e| format!("cannot write the header: {e}"))?;
        let ost_tb = octx.stream(0).expect("one stream").time_base();
        Ok(AudioFile {
            octx,
            enc,
            ost_tb,
            encoder_name,
        })
    }

    /// Encodes and writes a planar chunk (samples in [-1, 1]).
    pub fn push(&mut self, chunk: &[&[f32]]) -> Result<(), String> {
        let (octx, enc_tb, ost_tb) = (&mut self.octx, self.enc.time_base(), self.ost_tb);
        self.enc.push(chunk, &mut |packet| {
            write_packet(octx, packet, enc_tb, ost_tb)
        })
    }

    /// Drains the encoder and finishes the file; returns the encoder's name.
    pub fn finish(mut self) -> Result<String, String> {
        let (octx, enc_tb, ost_tb) = (&mut self.octx, self.enc.time_base(), self.ost_tb);
        self.enc
            .finish(&mut |packet| write_packet(octx, packet, enc_tb, ost_tb))?;
        self.octx
            .write_trailer()
            .map_err(|e| format!("cannot finish the file: {e}"))?;
        Ok(self.encoder_name.to_string())
    }
}

fn write_packet(
    octx: &mut ff::format::context::Output,
    packet: &mut ff::Packet,
    from: ff::Rational,
    to: ff::Rational,
) -> Result<(), String> {
    packet.set_stream(0);
    packet.rescale_ts(from, to);
    packet
        .write_interleaved(octx)
        .map_err(|e| format!("cannot write a packet: {e}"))
}

/// An FFmpeg audio encoder fed planar f32 chunks of any length: it cuts them into the
/// codec's frames, counts timestamps in samples, and hands out the packets.
pub struct AudioEncoder {
    enc: ff::encoder::Audio,
    codec: ff::Codec,
    format: ff::format::Sample,
    layout: ff::ChannelLayout,
    rate: u32,
    frame_size: usize,
    pending: Vec<Vec<f32>>,
    /// Timestamp of the next frame, samples.
    pts: i64,
    packet: ff::Packet,
}

impl AudioEncoder {
    /// Opens the encoder `name` (e.g. from [`encoder_for`]) at `rate` with `layout`, in the
    /// sample format `prefer` when it takes it, at `bit_rate` when it is lossy.
    pub fn open(
        name: &str,
        rate: u32,
        layout: ff::ChannelLayout,
        prefer: ff::format::Sample,
        bit_rate: usize,
        global_header: bool,
    ) -> Result<AudioEncoder, String> {
        init();
        let codec = ff::encoder::find_by_name(name)
            .ok_or_else(|| format!("this FFmpeg has no {name} encoder"))?;
        let format = sample_format(&codec.audio().map_err(|e| e.to_string())?, prefer)?;
        let mut enc = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(|e| e.to_string())?;
        enc.set_rate(rate as i32);
        enc.set_channel_layout(layout);
        enc.set_channels(layout.channels());
        enc.set_format(format);
        enc.set_time_base((1, rate as i32));
        let lossless = name.starts_with("pcm_") || name == "flac" || name == "alac";
        if !lossless {
            enc.set_bit_rate(bit_rate);
        }
        if global_header {
            enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        }
        let enc = enc
            .open_as(codec)
            .map_err(|e| format!("cannot open the {name} encoder: {e}"))?;
        let frame_size = match enc.frame_size() {
            0 => 4096,
            n => n as usize,
        };
        Ok(AudioEncoder {
            enc,
            codec,
            format,
            layout,
            rate,
            frame_size,
            pending: vec![Vec::new(); layout.channels().max(1) as usize],
            pts: 0,
            packet: ff::Packet::empty(),
        })
    }

    pub fn codec(&self) -> ff::Codec {
        self.codec
    }

    /// The opened encoder, for the output stream's parameters.
    pub fn context(&self) -> &ff::encoder::Audio {
        &self.enc
    }

    /// One tick per sample.
    pub fn time_base(&self) -> ff::Rational {
        ff::Rational::new(1, self.rate as i32)
    }

    /// Where the first sample lies, in samples (default 0).
    pub fn set_start(&mut self, pts: i64) {
        self.pts = pts;
    }

    /// Takes a planar chunk; every packet the encoder has ready goes to `out`, timed in
    /// [`Self::time_base`].
    pub fn push(
        &mut self,
        chunk: &[&[f32]],
        out: &mut dyn FnMut(&mut ff::Packet) -> Result<(), String>,
    ) -> Result<(), String> {
        for (p, c) in self.pending.iter_mut().zip(chunk) {
            p.extend_from_slice(c);
        }
        let mut from = 0;
        while self.pending[0].len() - from >= self.frame_size {
            self.send(from, self.frame_size, out)?;
            from += self.frame_size;
        }
        for p in self.pending.iter_mut() {
            p.drain(..from);
        }
        Ok(())
    }

    /// Sends what is pending as a last, shorter frame and drains the encoder.
    pub fn finish(
        &mut self,
        out: &mut dyn FnMut(&mut ff::Packet) -> Result<(), String>,
    ) -> Result<(), String> {
        let left = self.pending[0].len();
        if left > 0 {
            self.send(0, left, out)?;
            for p in self.pending.iter_mut() {
                p.clear();
            }
        }
        self.enc.send_eof().map_err(|e| e.to_string())?;
        self.drain(out)
    }

    fn send(
        &mut self,
        from: usize,
        n: usize,
        out: &mut dyn FnMut(&mut ff::Packet) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut frame = ff::frame::Audio::new(self.format, n, self.layout);
        frame.set_rate(self.rate);
        frame.set_pts(Some(self.pts));
        let chans: Vec<&[f32]> = self.pending.iter().map(|p| &p[from..from + n]).collect();
        fill(&mut frame, &chans);
        self.enc
            .send_frame(&frame)
            .map_err(|e| format!("the encoder refused a frame: {e}"))?;
        self.pts += n as i64;
        self.drain(out)
    }

    fn drain(
        &mut self,
        out: &mut dyn FnMut(&mut ff::Packet) -> Result<(), String>,
    ) -> Result<(), String> {
        while self.enc.receive_packet(&mut self.packet).is_ok() {
            // The FLAC encoder ends with an empty packet carrying updated STREAMINFO as side
            // data, which the muxers here refuse; the header written first stays valid.
            if self.packet.size() == 0 {
                continue;
            }
            out(&mut self.packet)?;
        }
        Ok(())
    }
}

/// Writes planar f32 `chans` into `frame` in its own sample format.
fn fill(frame: &mut ff::frame::Audio, chans: &[&[f32]]) {
    use ff::format::Sample;
    let planar = frame.is_planar();
    let nch = chans.len();
    let format = frame.format();
    let write = |dst: &mut [u8], v: f32| {
        let v = v.clamp(-1.0, 1.0);
        match format {
            Sample::F32(_) => dst.copy_from_slice(&v.to_le_bytes()),
            Sample::F64(_) => dst.copy_from_slice(&(v as f64).to_le_bytes()),
            Sample::I16(_) => dst.copy_from_slice(&((v * 32767.0).round() as i16).to_le_bytes()),
            Sample::I32(_) => {
                dst.copy_from_slice(&((v as f64 * 2_147_483_647.0).round() as i32).to_le_bytes())
            }
            Sample::U8(_) => dst[0] = (v * 127.0 + 128.0).round() as u8,
            _ => {}
        }
    };
    let size = format.bytes();
    for (c, &src) in chans.iter().enumerate() {
        if planar {
            // See `append_frame`: later planes are reachable only through `plane_mut`.
            match format {
                Sample::F32(_) => frame.plane_mut::<f32>(c)[..src.len()].copy_from_slice(src),
                Sample::F64(_) => {
                    for (d, &v) in frame.plane_mut::<f64>(c).iter_mut().zip(src) {
                        *d = v.clamp(-1.0, 1.0) as f64;
                    }
                }
                Sample::I16(_) => {
                    for (d, &v) in frame.plane_mut::<i16>(c).iter_mut().zip(src) {
                        *d = (v.clamp(-1.0, 1.0) * 32767.0).round() as i16;
                    }
                }
                Sample::I32(_) => {
                    for (d, &v) in frame.plane_mut::<i32>(c).iter_mut().zip(src) {
                        *d = (v.clamp(-1.0, 1.0) as f64 * 2_147_483_647.0).round() as i32;
                    }
                }
                Sample::U8(_) => {
                    for (d, &v) in frame.plane_mut::<u8>(c).iter_mut().zip(src) {
                        *d = (v.clamp(-1.0, 1.0) * 127.0 + 128.0).round() as u8;
                    }
                }
                _ => {}
            }
        } else {
            let plane = frame.data_mut(0);
            for (i, &v) in src.iter().enumerate() {
                let at = (i * nch + c) * size;
                write(&mut plane[at..at + size], v);
            }
        }
    }
}
