//! One response's audio: Orpheus' 16-bit PCM at 24 kHz in, in pieces of any length (a sample
//! may be split between two), the response's format and rate out, as soon as each piece of it
//! is determined; the rest at the end.

use orpheus_protocol::{ResponseFormat, NATIVE_RATE};

use crate::aac::Aac;
use crate::codecs::{Flac, Mp3, Opus, Unsupported};
use crate::g711;
use crate::resample::Resampler;

/// See the module docs.
pub struct Transcoder {
    /// A byte of a sample split across two pieces.
    odd: Option<u8>,
    /// Present when the rate is not Orpheus' own.
    resampler: Option<Resampler>,
    sink: Sink,
}

/// Where the samples go, in the response's format.
enum Sink {
    Pcm,
    /// WAV: the header goes out with the first samples.
    Wav {
        rate: u32,
        started: bool,
    },
    Mulaw,
    Alaw,
    Mp3(Box<Mp3>),
    Opus(Box<Opus>),
    Flac(Box<Flac>),
    Aac(Box<Aac>),
}

impl Transcoder {
    /// Audio in `format` at `rate`, or why not: a rate the format cannot carry.
    pub fn new(format: ResponseFormat, rate: u32) -> Result<Self, Unsupported> {
        if !format.carries(rate) {
            return Err(Unsupported);
        }
        let sink = match format {
            ResponseFormat::Pcm => Sink::Pcm,
            ResponseFormat::Wav => Sink::Wav {
                rate,
                started: false,
            },
            ResponseFormat::Mulaw => Sink::Mulaw,
            ResponseFormat::Alaw => Sink::Alaw,
            ResponseFormat::Mp3 => Sink::Mp3(Box::new(Mp3::new(rate))),
            ResponseFormat::Opus => Sink::Opus(Box::new(Opus::new(rate)?)),
            ResponseFormat::Flac => Sink::Flac(Box::new(Flac::new(rate)?)),
            ResponseFormat::Aac => Sink::Aac(Box::new(Aac::new(rate)?)),
        };
        Ok(Self {
            odd: None,
            resampler: Resampler::new(NATIVE_RATE, rate),
            sink,
        })
    }

    /// Takes in PCM (s16le), returns what of the response it makes.
    pub fn push(&mut self, mut pcm: &[u8]) -> Vec<u8> {
        let mut samples = Vec::with_capacity(pcm.len() / 2 + 1);
        if let (Some(low), Some(&high)) = (self.odd, pcm.first()) {
            self.odd = None;
            samples.push(i16::from_le_bytes([low, high]));
            pcm = &pcm[1..];
        }
        let mut pairs = pcm.chunks_exact(2);
        samples.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
        if let [odd] = pairs.remainder() {
            self.odd = Some(*odd);
        }
        let samples = self.resampled(&samples, false);
        let mut out = Vec::new();
        self.write(&samples, &mut out);
        out
    }

    /// The end of the audio: what of the response is left.
    pub fn finish(mut self) -> Vec<u8> {
        let samples = self.resampled(&[], true);
        let mut out = Vec::new();
        self.write(&samples, &mut out);
        match self.sink {
            Sink::Mp3(mut mp3) => mp3.finish(&mut out),
            Sink::Opus(opus) => opus.finish(&mut out),
            Sink::Flac(flac) => flac.finish(&mut out),
            Sink::Aac(aac) => aac.finish(&mut out),
            Sink::Wav { rate, started } if !started => {
                out.extend_from_slice(&orpheus_protocol::formats::streaming_wav_header(rate));
            }
            _ => {}
        }
        out
    }

    fn resampled(&mut self, samples: &[i16], end: bool) -> Vec<i16> {
        let Some(resampler) = self.resampler.as_mut() else {
            return samples.to_vec();
        };
        let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32_768.0).collect();
        let mut out = Vec::new();
        resampler.push(&input, &mut out);
        if end {
            resampler.finish(&mut out);
        }
        out.iter()
            .map(|&x| (x * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
            .collect()
    }

    fn write(&mut self, samples: &[i16], out: &mut Vec<u8>) {
        match &mut self.sink {
            Sink::Pcm => out.extend(samples.iter().flat_map(|s| s.to_le_bytes())),
            Sink::Wav { rate, started } => {
                if !samples.is_empty() && !std::mem::replace(started, true) {
                    out.extend_from_slice(&orpheus_protocol::formats::streaming_wav_header(*rate));
                }
                out.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
            }
            Sink::Mulaw => out.extend(samples.iter().map(|&s| g711::mulaw(s))),
            Sink::Alaw => out.extend(samples.iter().map(|&s| g711::alaw(s))),
            Sink::Mp3(mp3) => {
                // The rate is one MP3 carries: checked when the transcoder was made.
                let _ = mp3.push(samples, out);
            }
            Sink::Opus(opus) => opus.push(samples, out),
            Sink::Flac(flac) => flac.push(samples, out),
            Sink::Aac(aac) => aac.push(samples, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second of speech-like sound: a tone gliding under a syllable-rate envelope.
    fn speech_like(seconds: f64) -> Vec<u8> {
        let n = (24_000.0 * seconds) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / 24_000.0;
                let envelope = (t * 2.0 * std::f64::consts::PI * 4.0).sin().abs();
                let f = 150.0 + 100.0 * (t * 3.0).sin();
                ((t * 2.0 * std::f64::consts::PI * f).sin() * envelope * 12_000.0) as i16
            })
            .flat_map(|s| s.to_le_bytes())
            .collect()
    }

    fn run(format: ResponseFormat, rate: u32, pcm: &[u8], piece: usize) -> (Vec<u8>, usize) {
        let mut t = Transcoder::new(format, rate).unwrap();
        let mut out = Vec::new();
        for chunk in pcm.chunks(piece) {
            out.extend(t.push(chunk));
        }
        let streamed = out.len();
        out.extend(t.finish());
        (out, streamed)
    }

    #[test]
    fn pcm_at_orpheus_rate_is_the_input_whatever_the_pieces() {
        let pcm = speech_like(0.3);
        assert_eq!(run(ResponseFormat::Pcm, 24_000, &pcm, 7).0, pcm);
        let (wav, _) = run(ResponseFormat::Wav, 24_000, &pcm, 1001);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav[44..], pcm[..]);
    }

    #[test]
    fn each_format_streams_before_the_end() {
        let pcm = speech_like(2.0);
        for format in ResponseFormat::ALL {
            let rate = format.default_rate();
            let (out, streamed) = run(format, rate, &pcm, 4_800);
            assert!(
                streamed > out.len() / 2,
                "{format:?}: {streamed} of {} before the end",
                out.len()
            );
        }
    }

    #[test]
    fn containers_and_lengths() {
        let pcm = speech_like(1.0);
        let (mp3, _) = run(ResponseFormat::Mp3, 24_000, &pcm, 4_800);
        assert_eq!(mp3[0], 0xFF, "an MPEG frame sync first");
        let (opus, _) = run(ResponseFormat::Opus, 24_000, &pcm, 4_800);
        assert_eq!(&opus[..4], b"OggS");
        let (aac, _) = run(ResponseFormat::Aac, 24_000, &pcm, 4_800);
        assert_eq!(
            (aac[0], aac[1] & 0xF6),
            (0xFF, 0xF0),
            "an ADTS frame sync first"
        );
        let (flac, _) = run(ResponseFormat::Flac, 24_000, &pcm, 4_800);
        assert_eq!(&flac[..4], b"fLaC");
        let (mulaw, _) = run(ResponseFormat::Mulaw, 8_000, &pcm, 4_801);
        assert_eq!(mulaw.len(), 8_000, "a byte a sample at 8 kHz");
        let (wav, _) = run(ResponseFormat::Wav, 16_000, &pcm, 4_800);
        assert_eq!(wav.len(), 44 + 16_000 * 2);
        assert!(Transcoder::new(ResponseFormat::Opus, 44_100).is_err());
    }
}
