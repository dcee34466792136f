//! G.711 (ITU-T): 16-bit linear PCM to 8-bit μ-law or A-law, one byte a sample, as telephony
//! (Twilio Media Streams, SIP gateways) carries speech.

/// μ-law's bias, added before the segment is found.
const BIAS: i32 = 0x84;
const CLIP: i32 = 32_635;

/// One sample in μ-law.
pub fn mulaw(sample: i16) -> u8 {
    let mut x = i32::from(sample);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    let exponent = (31 - (x as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// One sample in A-law.
pub fn alaw(sample: i16) -> u8 {
    let mut x = i32::from(sample) >> 3;
    let sign = if x >= 0 {
        0x80
    } else {
        x = -x - 1;
        0
    };
    let byte = if x < 32 {
        (x >> 1) as u8
    } else {
        let exponent = (31 - (x as u32).leading_zeros() as i32 - 4).clamp(1, 7);
        ((exponent << 4) | ((x >> exponent) & 0x0F)) as u8
    };
    (sign | byte) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoders of G.711's tables, to check the encoders against.
    fn from_mulaw(byte: u8) -> i32 {
        let b = !byte;
        let exponent = i32::from((b >> 4) & 7);
        let mantissa = i32::from(b & 0x0F);
        let magnitude = ((mantissa << 3) + BIAS) << exponent;
        let value = magnitude - BIAS;
        if b & 0x80 != 0 {
            -value
        } else {
            value
        }
    }

    fn from_alaw(byte: u8) -> i32 {
        let b = byte ^ 0x55;
        let exponent = i32::from((b >> 4) & 7);
        let mantissa = i32::from(b & 0x0F);
        let magnitude = if exponent == 0 {
            (mantissa << 4) + 8
        } else {
            ((mantissa << 4) + 0x108) << (exponent - 1)
        };
        if b & 0x80 != 0 {
            magnitude
        } else {
            -magnitude
        }
    }

    #[test]
    fn known_codes() {
        assert_eq!(mulaw(0), 0xFF);
        assert_eq!(mulaw(-1), 0x7F);
        assert_eq!(mulaw(i16::MAX), 0x80);
        assert_eq!(mulaw(i16::MIN), 0x00);
        assert_eq!(alaw(0), 0xD5);
        assert_eq!(alaw(-8), 0x55);
        assert_eq!(alaw(i16::MAX), 0xAA);
        assert_eq!(alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn every_sample_decodes_within_its_step() {
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let x32 = i32::from(x);
            // G.711 keeps about 4 significant bits: the error is within a step of the segment.
            let tolerance = (x32.abs() / 16).max(16) + 8;
            let mu = from_mulaw(mulaw(x));
            assert!(
                (mu - x32).abs() <= tolerance.max(x32.abs() - CLIP + 8),
                "μ-law {x} -> {mu}"
            );
            let a = from_alaw(alaw(x));
            assert!((a - x32).abs() <= tolerance, "A-law {x} -> {a}");
        }
    }
}
