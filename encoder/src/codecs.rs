//! The compressed formats, each as a stream: 16-bit samples in, in pieces of any length; the
//! bytes of the file out as soon as a frame is whole; the rest at the end. MP3 by `rusty_mp3`,
//! Opus in Ogg by `opus-pure`, FLAC by `flacenc`: pure Rust, built for wasm32.

use flacenc::bitsink::MemSink;
use flacenc::component::{BitRepr, Stream};
use flacenc::error::Verify;
use flacenc::source::{Fill, FrameBuf};
use opus_pure::{Application, OggOpusWriter, OpusEncoder, OpusHead, MAX_PACKET_BYTES};
use rusty_mp3::{Mp3Encoder, Mp3EncoderConfig};

/// MP3's bit rate for mono speech (what OpenAI serves is about this), kbit/s.
const MP3_KBPS: u32 = 64;

/// Opus' bit rate for mono speech, bit/s: speech's native codec is transparent well below.
pub const OPUS_BPS: i32 = 32_000;

/// FLAC's block: samples a frame.
const FLAC_BLOCK: usize = 4_096;

/// FLAC's smallest block.
const FLAC_MIN_BLOCK: usize = 16;

/// Why an encoder could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

/// MP3, mono, at the rate given. At the MPEG-1 rates (32, 44.1, 48 kHz) a constant bit rate
/// holds every frame until the end (its bit reservoir is planned over the whole file): a
/// stream is coded at an average rate instead, frame by frame.
pub struct Mp3 {
    encoder: Mp3Encoder,
    rate: u32,
}

impl Mp3 {
    pub fn new(rate: u32) -> Self {
        let mpeg1 = rate >= 32_000;
        let config = Mp3EncoderConfig {
            bitrate_kbps: MP3_KBPS,
            vbr_quality: mpeg1.then_some(MP3_KBPS as f32),
        };
        Self {
            encoder: Mp3Encoder::new(config),
            rate,
        }
    }

    pub fn push(&mut self, samples: &[i16], out: &mut Vec<u8>) -> Result<(), Unsupported> {
        self.encoder
            .push_pcm_s16(samples, 1, self.rate)
            .map_err(|_| Unsupported)?;
        self.drain(out);
        Ok(())
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.encoder.finish();
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        while let Ok(packet) = self.encoder.next_packet() {
            out.extend_from_slice(&packet);
        }
    }
}

/// Opus in Ogg (RFC 7845), mono, in 20 ms packets, each page leaving as soon as the next
/// packet is made. Coded as audio (CELT), which keeps the waveform, rather than as a voice
/// call (SILK), which keeps only how it sounds. The end is trimmed exactly (RFC 7845 §4.4):
/// silence pushes the encoder's delay out, and the last page says where the audio ends.
pub struct Opus {
    encoder: OpusEncoder,
    writer: OggOpusWriter<Vec<u8>>,
    /// Samples a packet, and those waiting for a whole one.
    frame: usize,
    pending: Vec<i16>,
    packet: Vec<u8>,
    rate: u32,
    /// Samples taken in, and the decoder's skip at the start (at 48 kHz).
    taken: u64,
    pre_skip: u64,
}

/// A 20 ms packet's duration at 48 kHz, as Ogg counts it.
const PACKET_48K: i64 = 960;

impl Opus {
    pub fn new(rate: u32) -> Result<Self, Unsupported> {
        let mut encoder =
            OpusEncoder::new(rate as i32, 1, Application::Audio).map_err(|_| Unsupported)?;
        encoder.bitrate_bps = OPUS_BPS;
        let head = OpusHead::for_encoder(&encoder, rate);
        let pre_skip = u64::from(head.pre_skip);
        let mut writer = OggOpusWriter::new(Vec::new(), head).map_err(|_| Unsupported)?;
        writer.set_page_target(1);
        Ok(Self {
            encoder,
            writer,
            frame: rate as usize / 50,
            pending: Vec::new(),
            packet: vec![0; MAX_PACKET_BYTES],
            rate,
            taken: 0,
            pre_skip,
        })
    }

    pub fn push(&mut self, samples: &[i16], out: &mut Vec<u8>) {
        self.taken += samples.len() as u64;
        self.pending.extend_from_slice(samples);
        let whole = self.pending.len() / self.frame * self.frame;
        let frames: Vec<i16> = self.pending.drain(..whole).collect();
        for block in frames.chunks_exact(self.frame) {
            self.encode(block, PACKET_48K);
        }
        self.drain(out);
    }

    pub fn finish(mut self, out: &mut Vec<u8>) {
        let end = (self.pre_skip + self.taken * 48_000 / u64::from(self.rate)) as i64;
        let mut block = std::mem::take(&mut self.pending);
        while self.writer.granule() < end {
            block.resize(self.frame, 0);
            let duration = (end - self.writer.granule()).min(PACKET_48K);
            self.encode(&block, duration);
            block.clear();
        }
        self.drain(out);
        if let Ok(rest) = self.writer.finish() {
            out.extend_from_slice(&rest);
        }
    }

    fn encode(&mut self, block: &[i16], duration_48k: i64) {
        let Ok(n) = self.encoder.encode_s16(block, self.frame, &mut self.packet) else {
            return;
        };
        let _ = self
            .writer
            .write_packet_with_duration(&self.packet[..n], duration_48k as u32);
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        if let Some(written) = self.writer.get_mut() {
            out.append(written);
        }
    }
}

/// FLAC, 16-bit mono, lossless: the stream header first (its length and checksum unknown, as
/// a stream's are), then a frame for every [`FLAC_BLOCK`] samples. The last block is held
/// back until the end so that it is never shorter than FLAC allows.
pub struct Flac {
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    stream: Stream,
    pending: Vec<i32>,
    frames: usize,
    started: bool,
}

impl Flac {
    pub fn new(rate: u32) -> Result<Self, Unsupported> {
        let config = flacenc::config::Encoder::default()
            .into_verified()
            .map_err(|_| Unsupported)?;
        let mut stream = Stream::new(rate as usize, 1, 16).map_err(|_| Unsupported)?;
        stream
            .stream_info_mut()
            .set_block_sizes(FLAC_MIN_BLOCK, FLAC_BLOCK + FLAC_MIN_BLOCK - 1)
            .map_err(|_| Unsupported)?;
        Ok(Self {
            config,
            stream,
            pending: Vec::new(),
            frames: 0,
            started: false,
        })
    }

    pub fn push(&mut self, samples: &[i16], out: &mut Vec<u8>) {
        self.header(out);
        self.pending.extend(samples.iter().map(|&s| i32::from(s)));
        while self.pending.len() >= FLAC_BLOCK + FLAC_MIN_BLOCK {
            let block: Vec<i32> = self.pending.drain(..FLAC_BLOCK).collect();
            self.frame(&block, out);
        }
    }

    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.header(out);
        let mut last = std::mem::take(&mut self.pending);
        if last.is_empty() {
            return;
        }
        // Shorter than FLAC's smallest block only when the whole stream is: padded.
        if last.len() < FLAC_MIN_BLOCK {
            last.resize(FLAC_MIN_BLOCK, 0);
        }
        self.frame(&last, out);
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if !std::mem::replace(&mut self.started, true) {
            write_flac(&self.stream, out);
        }
    }

    fn frame(&mut self, block: &[i32], out: &mut Vec<u8>) {
        let Ok(mut buf) = FrameBuf::with_size(1, block.len()) else {
            return;
        };
        if buf.fill_interleaved(block).is_err() {
            return;
        }
        let info = self.stream.stream_info();
        if let Ok(frame) = flacenc::encode_fixed_size_frame(&self.config, &buf, self.frames, info) {
            write_flac(&frame, out);
            self.frames += 1;
        }
    }
}

/// A FLAC component's bytes (whole bytes: a stream header and a frame end byte-aligned).
fn write_flac(component: &impl BitRepr, out: &mut Vec<u8>) {
    let mut sink = MemSink::<u8>::new();
    if component.write(&mut sink).is_ok() {
        out.extend_from_slice(&sink.into_inner());
    }
}
