//! PCM s16le bytes to Float32 samples, natively (no `decodeAudioData`).

/// Converts little-endian 16-bit PCM to `f32` in [-1, 1). A sample split across two calls is
/// carried over, never dropped.
#[derive(Debug, Default, Clone)]
pub struct PcmDecoder {
    carry: Option<u8>,
}

/// One 16-bit sample as a Web Audio float.
pub fn to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32768.0
}

impl PcmDecoder {
    /// Appends the whole samples in `bytes` (after any carried byte) to `out`.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<f32>) {
        let mut bytes = bytes;
        if let (Some(low), Some(&high)) = (self.carry, bytes.first()) {
            out.push(to_f32(i16::from_le_bytes([low, high])));
            self.carry = None;
            bytes = &bytes[1..];
        }
        let pairs = bytes.chunks_exact(2);
        if let [odd] = pairs.remainder() {
            self.carry = Some(*odd);
        }
        out.extend(pairs.map(|p| to_f32(i16::from_le_bytes([p[0], p[1]]))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_exactly_and_carries_split_samples() {
        let samples: Vec<i16> = vec![0, 1, -1, i16::MAX, i16::MIN, 12345];
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let want: Vec<f32> = samples.iter().map(|&s| to_f32(s)).collect();
        for split in 0..=bytes.len() {
            let mut d = PcmDecoder::default();
            let mut out = Vec::new();
            d.decode(&bytes[..split], &mut out);
            d.decode(&bytes[split..], &mut out);
            assert_eq!(out, want, "split at {split}");
        }
        assert_eq!(to_f32(i16::MIN), -1.0);
        assert!(to_f32(i16::MAX) < 1.0);
    }
}
