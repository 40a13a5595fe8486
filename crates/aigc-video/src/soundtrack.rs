//! A video's soundtrack, marked on the way through: decoded packet by packet, given the audio
//! watermark and the rhythm label by `aigc_audio::stream` (mixed, so the sound keeps its
//! length and stays in step with the pictures), and encoded again with the same codec, sample
//! rate, channels and bitrate. Memory stays bounded however long the video.

use aigc_audio::pipeline::{SoundLayers, SoundReport};
use aigc_audio::stream::{StreamLayers, StreamMarker};
use aigc_audio::transcode::{self, AudioEncoder};
use ffmpeg_next as ff;

/// The soundtrack's decoder, marker and encoder, driven by the reader thread.
pub(crate) struct Soundtrack {
    /// The input stream it reads.
    pub(crate) index: usize,
    in_tb: ff::Rational,
    decoder: ff::decoder::Audio,
    marker: Option<StreamMarker>,
    encoder: AudioEncoder,
    encoder_name: &'static str,
    started: bool,
    chunk: Vec<Vec<f32>>,
    frame: ff::frame::Audio,
    damaged: usize,
    payload: Option<aigc_audio::watermark::Payload>,
}

/// Sends one encoded packet on, timed in the encoder's time base.
pub(crate) type Send<'a> = dyn FnMut(&mut ff::Packet) -> Result<(), String> + 'a;

impl Soundtrack {
    /// Prepares to mark the input's main audio stream. `Ok(None)`: nothing to add, no audio
    /// stream, or no encoder for its codec in this FFmpeg (the stream is then copied).
    pub(crate) fn open(
        ictx: &ff::format::context::Input,
        layers: &SoundLayers,
        global_header: bool,
    ) -> Result<Option<Soundtrack>, String> {
        if layers.rhythm.is_none() && layers.watermark.is_none() {
            return Ok(None);
        }
        let Some(ist) = ictx.streams().best(ff::media::Type::Audio) else {
            return Ok(None);
        };
        let Some(encoder_name) = transcode::encoder_for(ist.parameters().id()) else {
            return Ok(None);
        };
        let decoder = transcode::audio_decoder(&ist)?;
        let rate = decoder.rate();
        let channels = decoder.channels().max(1) as usize;
        let layout = match decoder.channel_layout() {
            l if l.channels() as usize == channels => l,
            _ => ff::ChannelLayout::default(channels as i32),
        };
        let encoder = AudioEncoder::open(
            encoder_name,
            rate,
            layout,
            decoder.format(),
            transcode::lossy_bit_rate(decoder.id(), decoder.bit_rate(), channels as u16),
            global_header,
        )?;
        // The tone's place is fixed up front; for the end, from the stream's stated length.
        let stated_len =
            transcode::stream_seconds(ictx, ist.index()).map(|s| (s * rate as f64) as usize);
        let tone_at = layers.rhythm.map(|style| {
            (
                style,
                aigc_audio::rhythm::mixed_start(style, rate, stated_len),
            )
        });
        let marker = StreamMarker::new(
            rate,
            channels,
            &StreamLayers {
                watermark: layers.watermark,
                // The soundtrack is marked as it is read, beside the pictures: its strength is
                // set from the sound so far.
                strength: None,
                rhythm: tone_at,
                inserts: &[],
            },
        );
        Ok(Some(Soundtrack {
            index: ist.index(),
            in_tb: ist.time_base(),
            decoder,
            marker: Some(marker),
            encoder,
            encoder_name,
            started: false,
            chunk: vec![Vec::new(); channels],
            frame: ff::frame::Audio::empty(),
            damaged: 0,
            payload: layers.watermark.map(|(_, p)| p),
        }))
    }

    /// The opened encoder, for the output stream's parameters.
    pub(crate) fn encoder(&self) -> &AudioEncoder {
        &self.encoder
    }

    /// Decodes `packet`, marks what it holds and sends what the encoder makes of it.
    pub(crate) fn feed(&mut self, packet: &ff::Packet, send: &mut Send) -> Result<(), String> {
        match self.decoder.send_packet(packet) {
            Ok(()) => {}
            // A damaged packet is skipped, as players do, and counted for the report.
            Err(ff::Error::InvalidData) => self.damaged += 1,
            Err(e) => return Err(format!("the audio decoder failed: {e}")),
        }
        self.drain_decoder(send)
    }

    /// Flushes decoder, marker and encoder, and reports.
    pub(crate) fn finish(mut self, send: &mut Send) -> Result<SoundReport, String> {
        let _ = self.decoder.send_eof();
        self.drain_decoder(send)?;
        let marker = self.marker.take().expect("finished once");
        let encoder = &mut self.encoder;
        let mut failed = None;
        let r = marker.finish(&mut |marked| {
            if failed.is_none() {
                failed = encoder.push(marked, send).err();
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        encoder.finish(send)?;
        let rate = self.decoder.rate();
        Ok(SoundReport {
            format: None,
            codec: self.encoder_name.to_string(),
            sample_rate: rate,
            channels: self.chunk.len(),
            rhythm_at: r.rhythm_at,
            voice_at: None,
            watermark: r.watermark.zip(self.payload).map(|(e, p)| (p, e)),
            damaged_packets: self.damaged,
            seconds: r.samples as f64 / rate as f64,
            limiter_db: r.limiter_db,
        })
    }

    fn drain_decoder(&mut self, send: &mut Send) -> Result<(), String> {
        while self.decoder.receive_frame(&mut self.frame).is_ok() {
            if !self.started {
                // The encoded sound starts where the decoded one did, so it stays in step.
                self.started = true;
                if let Some(pts) = self.frame.timestamp().or(self.frame.pts()) {
                    let rate = self.decoder.rate() as i64;
                    let tb = self.in_tb;
                    let samples = (pts as i128 * tb.numerator() as i128 * rate as i128
                        / tb.denominator().max(1) as i128) as i64;
                    self.encoder.set_start(samples);
                }
            }
            for c in self.chunk.iter_mut() {
                c.clear();
            }
            transcode::append_frame(&self.frame, &mut self.chunk)?;
            let chans: Vec<&[f32]> = self.chunk.iter().map(Vec::as_slice).collect();
            let encoder = &mut self.encoder;
            let mut failed = None;
            self.marker
                .as_mut()
                .expect("not finished")
                .push(&chans, &mut |marked| {
                    if failed.is_none() {
                        failed = encoder.push(marked, send).err();
                    }
                });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }
}
