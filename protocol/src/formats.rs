//! The audio formats the relay's HTTP endpoint answers in (docs/http.md), by the names OpenAI's
//! and Groq's speech APIs give them: what the relay's Worker and its encoder Worker agree on.

use crate::prelude::*;

/// Orpheus' own sample rate: the upstream's audio, and PCM and WAV when no other is asked for.
pub const NATIVE_RATE: u32 = 24_000;

/// The sample rates a response may be asked in (`sample_rate`), resampled from [`NATIVE_RATE`].
pub const SAMPLE_RATES: [u32; 7] = [8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

/// A response's audio format (`response_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// MPEG-1/2 Layer III, the default (as OpenAI's API has it).
    Mp3,
    /// Opus in Ogg.
    Opus,
    /// AAC-LC in ADTS frames.
    Aac,
    /// FLAC, lossless.
    Flac,
    /// A WAV header for a stream of unknown length, then 16-bit PCM.
    Wav,
    /// Raw 16-bit little-endian PCM, mono.
    Pcm,
    /// G.711 μ-law, 8 bits a sample (telephony).
    Mulaw,
    /// G.711 A-law, 8 bits a sample (telephony).
    Alaw,
}

impl ResponseFormat {
    /// Every format.
    pub const ALL: [Self; 8] = [
        Self::Mp3,
        Self::Opus,
        Self::Aac,
        Self::Flac,
        Self::Wav,
        Self::Pcm,
        Self::Mulaw,
        Self::Alaw,
    ];

    /// Its name in a request.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
            Self::Aac => "aac",
            Self::Flac => "flac",
            Self::Wav => "wav",
            Self::Pcm => "pcm",
            Self::Mulaw => "mulaw",
            Self::Alaw => "alaw",
        }
    }

    /// The format of a request's name (Groq's `ogg` is Opus in Ogg).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ogg" => Some(Self::Opus),
            _ => Self::ALL.into_iter().find(|f| f.as_str() == name),
        }
    }

    /// The response's `content-type`, as OpenAI and Groq send it.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Mp3 => "audio/mpeg",
            Self::Opus => "audio/ogg",
            Self::Aac => "audio/aac",
            Self::Flac => "audio/flac",
            Self::Wav => "audio/wav",
            Self::Pcm => "audio/pcm",
            Self::Mulaw => "audio/basic",
            Self::Alaw => "audio/x-alaw-basic",
        }
    }

    /// The rate it is sent at when the request names none: telephony's 8 kHz for G.711,
    /// else Orpheus' own.
    pub fn default_rate(self) -> u32 {
        match self {
            Self::Mulaw | Self::Alaw => 8_000,
            _ => NATIVE_RATE,
        }
    }

    /// Whether it can carry `rate`: Opus codes at 8, 16, 24 and 48 kHz only.
    pub fn carries(self, rate: u32) -> bool {
        match self {
            Self::Opus => matches!(rate, 8_000 | 16_000 | 24_000 | 48_000),
            _ => SAMPLE_RATES.contains(&rate),
        }
    }

    /// Whether the relay's own Worker writes it (PCM and WAV at Orpheus' rate); every other
    /// format and rate is made by the encoder Worker.
    pub fn is_native(self, rate: u32) -> bool {
        matches!(self, Self::Wav | Self::Pcm) && rate == NATIVE_RATE
    }
}

/// A WAV header for 16-bit mono PCM at `sample_rate` whose length is not known yet: the RIFF
/// and `data` sizes are the largest values (as streaming encoders write them); readers take
/// the data to the end of the stream.
pub fn streaming_wav_header(sample_rate: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // mono
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes()); // block align
    h.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    h.extend_from_slice(b"data");
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rates() {
        for format in ResponseFormat::ALL {
            assert_eq!(ResponseFormat::from_name(format.as_str()), Some(format));
            assert!(format.carries(format.default_rate()));
        }
        assert_eq!(ResponseFormat::from_name("ogg"), Some(ResponseFormat::Opus));
        assert_eq!(ResponseFormat::from_name("MP3"), None);
        assert!(!ResponseFormat::Opus.carries(44_100));
        assert!(ResponseFormat::Flac.carries(44_100));
        assert!(ResponseFormat::Pcm.is_native(24_000));
        assert!(!ResponseFormat::Pcm.is_native(16_000));
        assert!(!ResponseFormat::Mp3.is_native(24_000));
    }
}
