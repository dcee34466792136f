//! Opus for a WebSocket listener (docs/protocol.md, "Opus frames"): one stream's PCM frames
//! in, as the relay would send them, its Opus frames out, each as soon as its packets are made
//! ([`orpheus_protocol::encoder_link`] carries both).
//!
//! The stream is coded in runs, each an Opus stream of its own in 20 ms packets: a run is a
//! stretch of contiguous audio, ended after a segment's last frame or before a frame that does
//! not follow on (the relay sends from a listener's play cursor again after a resume). A run's
//! last packets carry silence until the decoder's output, which lags the input by the
//! encoder's delay, reaches past the run's last sample with room for the listener's resampling
//! filter: every sample of a run can be decoded before the next run begins. Invariant: a
//! frame's offset is where its first packet's input began, the previous frame's offset plus
//! its samples within a run, a run's first frame carries [`RUN_START`] and its last
//! [`RUN_END`] (a decoder that holds its last packet back until more comes, as WebCodecs' in
//! Chromium may, is flushed there).

use opus_pure::{Application, OpusEncoder, OpusHead, MAX_PACKET_BYTES};
use orpheus_protocol::encoder_link::{put_record, Records};
use orpheus_protocol::{AudioFrame, OpusFrame, NATIVE_RATE, RUN_END, RUN_START};

use crate::codecs::{Unsupported, OPUS_BPS};

/// Samples of a packet: 20 ms at 24 kHz.
pub const PACKET_SAMPLES: usize = NATIVE_RATE as usize / 50;

/// Decoded audio a run's padding reaches past its end beyond the decoder's delay, in samples at
/// 24 kHz: room for the listener's filter (10 ms).
pub const TAIL_ROOM: u64 = 240;

/// Why the relay's records could not be coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketsError {
    /// A record is not a PCM audio frame.
    NotAFrame,
    /// No Opus encoder could be made.
    Unsupported,
}

impl std::fmt::Display for PacketsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAFrame => write!(f, "a record is not a PCM audio frame"),
            Self::Unsupported => write!(f, "no opus encoder could be made"),
        }
    }
}

impl From<Unsupported> for PacketsError {
    fn from(_: Unsupported) -> Self {
        Self::Unsupported
    }
}

/// See the module docs.
pub struct Packets {
    records: Records,
    /// The decoder's delay, samples at 48 kHz.
    delay: u16,
    run: Option<Run>,
}

/// The run being coded.
struct Run {
    encoder: OpusEncoder,
    stream: u32,
    /// The stream sample where it began, and samples taken in since.
    start: u64,
    taken: u64,
    /// Samples waiting for a whole packet.
    pending: Vec<i16>,
    /// Samples its packets coded, and of those, the stream's (the rest is padding).
    coded: u64,
    carried: u64,
    /// Whether a frame of it went out (its first carries [`RUN_START`]).
    framed: bool,
    packet: Vec<u8>,
}

/// Packets made for one frame: each with its length before it, and the stream samples they
/// carry.
#[derive(Default)]
struct Made {
    packets: Vec<u8>,
    samples: u32,
}

impl Run {
    fn new(stream: u32, start: u64) -> Result<Self, Unsupported> {
        // CELT alone (the restricted low-delay application): it keeps the waveform, never
        // switches mode mid-run, and its decoder lags by 2.5 ms instead of 6.5.
        let mut encoder = OpusEncoder::new(NATIVE_RATE as i32, 1, Application::RestrictedLowDelay)
            .map_err(|_| Unsupported)?;
        encoder.bitrate_bps = OPUS_BPS;
        Ok(Self {
            encoder,
            stream,
            start,
            taken: 0,
            pending: Vec::new(),
            coded: 0,
            carried: 0,
            framed: false,
            packet: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// Where its next frame belongs: in it, and where the stream takes it.
    fn follows(&self, frame: &AudioFrame) -> bool {
        frame.stream == self.stream && u64::from(frame.offset) == self.start + self.taken
    }

    fn push(&mut self, pcm: &[u8], made: &mut Made) {
        let samples = pcm
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]));
        self.pending.extend(samples);
        self.taken += (pcm.len() / 2) as u64;
        let whole = self.pending.len() / PACKET_SAMPLES * PACKET_SAMPLES;
        let blocks: Vec<i16> = self.pending.drain(..whole).collect();
        for block in blocks.chunks_exact(PACKET_SAMPLES) {
            self.encode(block, made);
        }
    }

    /// Codes what is pending and then silence, until the decoded audio reaches past the end.
    fn finish(&mut self, made: &mut Made) {
        let reach = self.taken + delay_24k(&self.encoder) + TAIL_ROOM;
        let mut block = std::mem::take(&mut self.pending);
        while self.coded < reach {
            block.resize(PACKET_SAMPLES, 0);
            self.encode(&block, made);
            block.clear();
        }
    }

    fn encode(&mut self, block: &[i16], made: &mut Made) {
        let carried = (self.taken - self.carried).min(PACKET_SAMPLES as u64);
        let len = self
            .encoder
            .encode_s16(block, PACKET_SAMPLES, &mut self.packet)
            // Never for a whole mono block; were it to happen, the listener would hear 20 ms of
            // silence (a packet of nothing but its header) rather than lose its place.
            .unwrap_or_else(|_| {
                self.packet[0] = 0xF8;
                1
            });
        OpusFrame::put_packet(&mut made.packets, &self.packet[..len]);
        self.coded += PACKET_SAMPLES as u64;
        self.carried += carried;
        made.samples += carried as u32;
    }

    /// The frame of what was `made`, as the record that carries it; nothing if nothing was.
    /// `last` when it ends the run.
    fn frame(&mut self, made: Made, delay: u16, last: bool, out: &mut Vec<u8>) {
        if made.packets.is_empty() {
            return;
        }
        let before = self.carried - u64::from(made.samples);
        let first = !std::mem::replace(&mut self.framed, true);
        let frame = OpusFrame {
            flags: if first { RUN_START } else { 0 } | if last { RUN_END } else { 0 },
            delay,
            stream: self.stream,
            offset: (self.start + before) as u32,
            samples: made.samples,
            packets: &made.packets,
        };
        put_record(out, &frame.encode());
    }
}

/// The decoder's delay of `encoder`, at 24 kHz.
fn delay_24k(encoder: &OpusEncoder) -> u64 {
    u64::from(OpusHead::for_encoder(encoder, NATIVE_RATE).pre_skip) / 2
}

impl Packets {
    pub fn new() -> Result<Self, Unsupported> {
        let probe = Run::new(0, 0)?;
        Ok(Self {
            records: Records::default(),
            delay: OpusHead::for_encoder(&probe.encoder, NATIVE_RATE).pre_skip,
            run: None,
        })
    }

    /// Takes in a piece of the relay's records; returns the records of the frames it makes.
    pub fn push(&mut self, piece: &[u8]) -> Result<Vec<u8>, PacketsError> {
        let mut out = Vec::new();
        for record in self.records.push(piece) {
            let frame = AudioFrame::decode(&record).map_err(|_| PacketsError::NotAFrame)?;
            self.take(&frame, &mut out)?;
        }
        Ok(out)
    }

    /// The relay's records ended: the open run ends too.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.end_run(&mut out);
        out
    }

    fn take(&mut self, frame: &AudioFrame, out: &mut Vec<u8>) -> Result<(), PacketsError> {
        if !self.run.as_ref().is_some_and(|run| run.follows(frame)) {
            self.end_run(out);
        }
        let run = match &mut self.run {
            Some(run) => run,
            none => none.insert(Run::new(frame.stream, u64::from(frame.offset))?),
        };
        let mut made = Made::default();
        run.push(frame.pcm, &mut made);
        let last = frame.is_last_in_segment();
        if last {
            run.finish(&mut made);
        }
        run.frame(made, self.delay, last, out);
        if last {
            self.run = None;
        }
        Ok(())
    }

    fn end_run(&mut self, out: &mut Vec<u8>) {
        if let Some(mut run) = self.run.take() {
            let mut made = Made::default();
            run.finish(&mut made);
            run.frame(made, self.delay, true, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opus_pure::OpusDecoder;
    use orpheus_protocol::LAST_IN_SEGMENT;

    use super::*;

    /// Speech-like test audio: a gliding, swelling tone.
    fn glide(n: usize, phase: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 24_000.0 + phase;
                let swell = 0.6 + 0.4 * (5.0 * t).sin();
                ((2.0 * std::f64::consts::PI * (180.0 + 400.0 * t) * t).sin() * 9_000.0 * swell)
                    as i16
            })
            .collect()
    }

    /// A PCM frame of `samples` at `offset` of stream 7, as a record.
    fn frame(offset: u32, samples: &[i16], flags: u8) -> Vec<u8> {
        let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let frame = AudioFrame {
            flags,
            stream: 7,
            offset,
            pcm: &pcm,
        };
        let mut out = Vec::new();
        put_record(&mut out, &frame.encode());
        out
    }

    /// What a listener makes of an answer: each frame's offset, samples and flags, and the
    /// stream's samples by offset.
    struct Heard {
        frames: Vec<(u32, u32, u8)>,
        samples: BTreeMap<u64, f32>,
    }

    /// Decodes a stream's Opus frames as a listener does: a fresh decoder for every run, its
    /// output placed `delay` samples earlier.
    fn listen(answer: &[u8]) -> Heard {
        let mut heard = BTreeMap::new();
        let mut frames = Vec::new();
        let (mut decoder, mut start, mut decoded, mut end) = (None, 0u64, Vec::new(), 0u64);
        let mut place = |start: u64, decoded: &[f32], end: u64, delay: usize| {
            for (i, s) in decoded.iter().enumerate().skip(delay) {
                let at = start + (i - delay) as u64;
                if at < end {
                    heard.insert(at, *s);
                }
            }
        };
        let mut delay = 0;
        for record in Records::default().push(answer) {
            let f = OpusFrame::decode(&record).unwrap();
            frames.push((f.offset, f.samples, f.flags));
            delay = usize::from(f.delay) / 2;
            if f.starts_run() {
                place(start, &decoded, end, delay);
                decoder = Some(OpusDecoder::new(24_000, 1).unwrap());
                (start, end, decoded) = (u64::from(f.offset), u64::from(f.offset), Vec::new());
            }
            end += u64::from(f.samples);
            for packet in f.packets() {
                let mut out = vec![0f32; PACKET_SAMPLES];
                let n = decoder
                    .as_mut()
                    .unwrap()
                    .decode(packet.unwrap(), PACKET_SAMPLES, &mut out);
                decoded.extend_from_slice(&out[..n.unwrap()]);
            }
        }
        place(start, &decoded, end, delay);
        Heard {
            frames,
            samples: heard,
        }
    }

    fn correlation(a: &[i16], b: &[f32]) -> f64 {
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (f64::from(x) / 32_768.0, f64::from(y));
            (ab, aa, bb) = (ab + x * y, aa + x * x, bb + y * y);
        }
        ab / (aa * bb).sqrt()
    }

    #[test]
    fn a_stream_decodes_to_its_input_in_place_run_by_run() {
        let (one, two) = (glide(7_321, 0.0), glide(4_000, 0.5));
        // Two segments, the first in two frames; then a resume from sample 5,000 again.
        let mut input = frame(0, &one[..1_000], 0);
        input.extend(frame(1_000, &one[1_000..], LAST_IN_SEGMENT));
        input.extend(frame(7_321, &two, 0));
        input.extend(frame(5_000, &one[5_000..6_000], 0));
        let mut packets = Packets::new().unwrap();
        let mut answer = Vec::new();
        // Fed in awkward pieces, as a stream arrives.
        for piece in input.chunks(333) {
            answer.extend(packets.push(piece).unwrap());
        }
        answer.extend(packets.finish());
        let Heard {
            frames,
            samples: heard,
        } = listen(&answer);

        let starts: Vec<u32> = frames
            .iter()
            .filter(|f| f.2 & RUN_START != 0)
            .map(|f| f.0)
            .collect();
        assert_eq!(
            starts,
            [0, 7_321, 5_000],
            "a run a segment, and one a resume"
        );
        for pair in frames.windows(2) {
            if pair[1].2 & RUN_START == 0 {
                assert_eq!(pair[1].0, pair[0].0 + pair[0].1, "contiguous offsets");
            }
            // A run ends exactly where the next begins (and the last at the end).
            assert_eq!(
                pair[0].2 & RUN_END != 0,
                pair[1].2 & RUN_START != 0,
                "a run's last frame says so"
            );
        }
        assert!(frames.last().is_some_and(|f| f.2 & RUN_END != 0));
        let carried: u32 = frames.iter().map(|f| f.1).sum();
        assert_eq!(carried, 7_321 + 4_000 + 1_000);
        assert_eq!(
            heard.len(),
            7_321 + 4_000,
            "every sample decoded, once placed"
        );
        let first: Vec<f32> = (0..7_321).map(|i| heard[&i]).collect();
        let second: Vec<f32> = (7_321..11_321).map(|i| heard[&i]).collect();
        assert!(
            correlation(&one, &first) > 0.95,
            "{}",
            correlation(&one, &first)
        );
        assert!(correlation(&two, &second) > 0.95);
    }

    #[test]
    fn what_is_not_a_pcm_frame_is_refused() {
        let mut packets = Packets::new().unwrap();
        let mut input = Vec::new();
        put_record(&mut input, &[9, 9, 9]);
        assert_eq!(packets.push(&input), Err(PacketsError::NotAFrame));
        assert!(
            Packets::new().unwrap().finish().is_empty(),
            "no run, no frame"
        );
    }
}
