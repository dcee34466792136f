//! AAC-LC in ADTS, streamed, from `rusty_aac`, whose encoder only codes a whole input at its
//! end. Its frames are independent of each other but for what it decides about the whole
//! input first: each frame's window (long, or eight short ones around an attack), from an
//! attack detector that runs through the input and a rule that looks a frame either side.
//! Frame `b` codes input blocks `b - 1` and `b` (1,024 samples each; frame 0 codes silence
//! and block 0, the priming every AAC stream starts with).
//!
//! Invariant: every frame is coded by an encoder that holds [`CONTEXT`] blocks before it
//! (or the true start) and [`LOOKAHEAD`] blocks after it (or the true end), so that its window
//! is decided from what the whole input would have given; the frames come out byte for byte
//! those of one encoder given the whole input, as soon as the blocks after them are in. The
//! detector's memory fades by 0.75 every 128 samples: after [`CONTEXT`] blocks, 1e-4 of it is
//! left.

use rusty_aac::{write_adts_header, AacEncoder, AacEncoderConfig, AdtsHeader};

use crate::codecs::Unsupported;

/// AAC's bit rate for mono speech, bit/s: as MP3's.
const AAC_BPS: u32 = 64_000;

/// Samples a block (and a frame).
const BLOCK: usize = 1_024;

/// Blocks coded before the first frame taken, so that the attack detector has its history.
const CONTEXT: usize = 4;

/// Whole blocks needed after the last frame taken: its window depends on whether the next
/// frame has an attack, and on the one after (a lone long frame between short ones is
/// made short).
const LOOKAHEAD: usize = 2;

/// Frames coded together at most: each coding pays for its context and lookahead again.
const BATCH: usize = 16;

/// ADTS' object type for AAC-LC.
const AAC_LC: u8 = 2;

/// ADTS' header without a CRC, bytes.
const ADTS_HEADER: usize = 7;

/// See the module docs.
pub struct Aac {
    rate: u32,
    /// The input from block `first_block` on, as the encoder takes it.
    input: Vec<f32>,
    first_block: usize,
    /// The next frame to code.
    next_frame: usize,
}

impl Aac {
    pub fn new(rate: u32) -> Result<Self, Unsupported> {
        rusty_aac::sf_index_for_rate(rate).ok_or(Unsupported)?;
        Ok(Self {
            rate,
            input: Vec::new(),
            first_block: 0,
            next_frame: 0,
        })
    }

    pub fn push(&mut self, samples: &[i16], out: &mut Vec<u8>) {
        self.input
            .extend(samples.iter().map(|&s| f32::from(s) / 32_768.0));
        let whole_blocks = self.first_block + self.input.len() / BLOCK;
        let ready = whole_blocks.saturating_sub(LOOKAHEAD);
        // Batches grow from one frame, so that a listener's buffer grows with them.
        let batch = self.next_frame.clamp(1, BATCH);
        if ready >= self.next_frame + batch {
            self.code(Some(ready), out);
        }
    }

    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.code(None, out);
    }

    /// Codes the frames from the next one up to `until` (exclusive), or to the end.
    fn code(&mut self, until: Option<usize>, out: &mut Vec<u8>) {
        let start = self.next_frame.saturating_sub(CONTEXT);
        // Blocks before the context are no longer needed.
        let stale = (start - self.first_block) * BLOCK;
        self.input.drain(..stale.min(self.input.len()));
        self.first_block = start;
        let coded = match until {
            Some(until) => self.input.len().min((until + LOOKAHEAD - start) * BLOCK),
            None => self.input.len(),
        };
        let mut encoder = AacEncoder::new(config());
        if coded > 0
            && encoder
                .push_pcm(&self.input[..coded], 1, self.rate)
                .is_err()
        {
            return;
        }
        encoder.finish();
        let taken = self.next_frame..until.unwrap_or(usize::MAX);
        let mut frame = start;
        while let Ok(packet) = encoder.next_packet() {
            if taken.contains(&frame) {
                self.write(&packet.data, out);
                self.next_frame = frame + 1;
            }
            frame += 1;
        }
    }

    fn write(&self, raw: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&write_adts_header(&AdtsHeader {
            object_type: AAC_LC,
            sample_rate: self.rate,
            channels: 1,
            frame_length: ADTS_HEADER + raw.len(),
            header_len: ADTS_HEADER,
        }));
        out.extend_from_slice(raw);
    }
}

/// The encoder's settings: the attack detector that looks back only (the default one sets
/// its floor from the whole input's loudness, which a stream does not know yet).
fn config() -> AacEncoderConfig {
    AacEncoderConfig {
        bitrate_bps: AAC_BPS,
        relative_transients: false,
        ..AacEncoderConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speech-like sound with attacks: syllables that start abruptly after silences.
    fn syllables(seconds: f64) -> Vec<i16> {
        let n = (24_000.0 * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / 24_000.0;
                let syllable = (t * 5.0).fract();
                let envelope = if syllable < 0.6 {
                    (1.0 - syllable / 0.6) * (1.0 + (t * 37.0).sin())
                } else {
                    0.0
                };
                let f = 140.0 + 90.0 * (t * 2.3).sin();
                let voice = (t * 2.0 * std::f64::consts::PI * f).sin()
                    + 0.4 * (t * 2.0 * std::f64::consts::PI * 3.0 * f).sin();
                (voice * envelope * 9_000.0) as i16
            })
            .collect()
    }

    /// One encoder given the whole input, framed the same way.
    fn whole(samples: &[i16]) -> Vec<u8> {
        let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32_768.0).collect();
        let mut encoder = AacEncoder::new(config());
        encoder.push_pcm(&input, 1, 24_000).unwrap();
        encoder.finish();
        let aac = Aac::new(24_000).unwrap();
        let mut out = Vec::new();
        while let Ok(packet) = encoder.next_packet() {
            aac.write(&packet.data, &mut out);
        }
        out
    }

    fn streamed(samples: &[i16], piece: usize) -> (Vec<u8>, usize) {
        let mut aac = Aac::new(24_000).unwrap();
        let mut out = Vec::new();
        for chunk in samples.chunks(piece) {
            aac.push(chunk, &mut out);
        }
        let before_the_end = out.len();
        aac.finish(&mut out);
        (out, before_the_end)
    }

    /// Each ADTS frame's window sequence (2: eight short windows).
    fn windows(adts: &[u8]) -> Vec<u8> {
        let mut at = 0;
        let mut sequences = Vec::new();
        while at < adts.len() {
            let header = rusty_aac::parse_adts(&adts[at..]).unwrap();
            // The element's id (3 bits), tag (4), global gain (8), a reserved bit, then the
            // window sequence (2).
            let raw = &adts[at + header.header_len..];
            sequences.push((raw[2] >> 5) & 0b11);
            at += header.frame_length;
        }
        sequences
    }

    fn frames(adts: &[u8]) -> usize {
        windows(adts).len()
    }

    #[test]
    fn streamed_is_the_whole_inputs_coding_whatever_the_pieces() {
        let samples = syllables(4.0);
        let want = whole(&samples);
        let short = windows(&want).iter().filter(|&&w| w == 2).count();
        assert!(short >= 4, "the attacks are coded short: {short} frames");
        for piece in [1, 333, 1_024, 4_800, 24_000, samples.len()] {
            let (got, before_the_end) = streamed(&samples, piece);
            assert!(
                got == want,
                "pieces of {piece}: not the whole input's frames"
            );
            if piece < samples.len() {
                assert!(
                    before_the_end > got.len() / 2,
                    "pieces of {piece}: {before_the_end} of {} bytes before the end",
                    got.len()
                );
            }
        }
    }

    #[test]
    fn a_frame_a_block_and_the_priming() {
        for n in [0, 1, 1_023, 1_024, 5_000] {
            let samples = syllables(1.0)[..n].to_vec();
            let (out, _) = streamed(&samples, 700);
            let want = if n == 0 { 0 } else { n.div_ceil(BLOCK) + 1 };
            assert_eq!(frames(&out), want, "{n} samples");
        }
    }

    #[test]
    fn the_first_frame_leaves_as_soon_as_its_lookahead_is_in() {
        let samples = syllables(1.0);
        let mut aac = Aac::new(24_000).unwrap();
        let mut out = Vec::new();
        aac.push(&samples[..BLOCK * (LOOKAHEAD + 1) - 1], &mut out);
        assert!(out.is_empty());
        aac.push(
            &samples[BLOCK * (LOOKAHEAD + 1) - 1..BLOCK * (LOOKAHEAD + 1)],
            &mut out,
        );
        assert_eq!(frames(&out), 1);
    }

    #[test]
    fn rates_aac_cannot_carry_are_refused() {
        assert!(Aac::new(24_000).is_ok());
        assert!(Aac::new(8_000).is_ok());
        assert!(Aac::new(12_345).is_err());
    }
}
