//! A segment's loudness over time, taken in as its audio arrives: the mean square of each
//! [`FRAME_MS`] of samples. All the word timing needs of the audio, at 200 values a second,
//! so the audio itself is never kept for it.

use crate::time::Millis;

/// The length of one frame of the envelope.
pub const FRAME_MS: Millis = 5;

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// Samples a frame.
    frame: usize,
    /// The mean square of each whole frame.
    frames: Vec<f32>,
    /// The sum of squares of the frame being filled, and its samples so far.
    sum: f64,
    filled: usize,
    /// A byte of a sample split across two pieces of audio.
    odd: Option<u8>,
}

impl Envelope {
    /// An empty envelope of audio at `rate` samples a second.
    pub fn new(rate: u32) -> Self {
        Self {
            frame: (rate as usize * FRAME_MS as usize / 1000).max(1),
            ..Self::default()
        }
    }

    /// Takes in PCM (signed 16-bit little-endian), in pieces of any length.
    pub fn push(&mut self, mut pcm: &[u8]) {
        if let (Some(low), Some(&high)) = (self.odd, pcm.first()) {
            self.odd = None;
            self.sample(i16::from_le_bytes([low, high]));
            pcm = &pcm[1..];
        }
        let mut pairs = pcm.chunks_exact(2);
        for pair in pairs.by_ref() {
            self.sample(i16::from_le_bytes([pair[0], pair[1]]));
        }
        if let [odd] = pairs.remainder() {
            self.odd = Some(*odd);
        }
    }

    fn sample(&mut self, sample: i16) {
        let x = f64::from(sample);
        self.sum += x * x;
        self.filled += 1;
        if self.filled == self.frame {
            self.frames.push((self.sum / self.frame as f64) as f32);
            self.sum = 0.0;
            self.filled = 0;
        }
    }

    /// The mean square of each frame so far, the last partial one included.
    pub fn frames(&self) -> Vec<f32> {
        let mut frames = self.frames.clone();
        if self.filled > 0 {
            frames.push((self.sum / self.filled as f64) as f32);
        }
        frames
    }

    /// Samples a frame.
    pub fn frame_samples(&self) -> usize {
        self.frame
    }

    /// Samples taken in.
    pub fn samples(&self) -> u64 {
        (self.frames.len() * self.frame + self.filled) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_any_length_make_the_same_envelope() {
        let pcm: Vec<u8> = (0..1000i32)
            .flat_map(|i| ((i * 37 % 2000 - 1000) as i16).to_le_bytes())
            .collect();
        let mut whole = Envelope::new(24_000);
        whole.push(&pcm);
        let mut pieces = Envelope::new(24_000);
        for piece in pcm.chunks(7) {
            pieces.push(piece);
        }
        assert_eq!(whole.frames(), pieces.frames());
        assert_eq!(
            whole.frames().len(),
            9,
            "eight whole frames of 120 and a partial one"
        );
    }
}
