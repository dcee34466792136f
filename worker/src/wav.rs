//! Incremental WAV reader: strips the RIFF container from an upstream body and yields PCM.
//!
//! Groq's WAV headers cannot be trusted byte for byte (extra chunks before `data`, stale or zero
//! size fields, headers split across reads), so the reader walks the chunks, reads `fmt `, and
//! treats everything after the `data` chunk header as PCM until the body ends. It only ever
//! yields whole 16-bit samples, carrying an odd byte over to the next read.

/// The audio format announced by the `fmt ` chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count (the relay accepts only 1).
    pub channels: u16,
    /// Bits per sample (the relay accepts only 16).
    pub bits_per_sample: u16,
}

/// Why a body is not audio the relay can relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavError {
    /// The body does not start with `RIFF....WAVE`.
    NotWav,
    /// A `data` chunk came before any `fmt ` chunk.
    DataBeforeFormat,
    /// The `fmt ` chunk is malformed or implausibly large.
    BadFormatChunk,
    /// Not mono 16-bit integer PCM.
    Unsupported(Format),
    /// The body ended before the `data` chunk began.
    Truncated,
}

impl WavError {
    /// A fixed word naming the error, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotWav => "not_wav",
            Self::DataBeforeFormat => "data_before_format",
            Self::BadFormatChunk => "bad_format_chunk",
            Self::Unsupported(_) => "unsupported_format",
            Self::Truncated => "truncated",
        }
    }
}

impl std::fmt::Display for WavError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotWav => f.write_str("the body is not a RIFF/WAVE file"),
            Self::DataBeforeFormat => f.write_str("a data chunk came before the fmt chunk"),
            Self::BadFormatChunk => f.write_str("the fmt chunk is malformed"),
            Self::Unsupported(format) => write!(
                f,
                "unsupported audio: {} channel(s), {} bits, {} Hz (want mono 16-bit PCM)",
                format.channels, format.bits_per_sample, format.sample_rate
            ),
            Self::Truncated => f.write_str("the body ended before its data chunk"),
        }
    }
}

impl std::error::Error for WavError {}

/// Longest `fmt ` chunk accepted; real ones are 16, 18 or 40 bytes.
const MAX_FMT_LEN: u32 = 256;
const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

#[derive(Debug)]
enum State {
    /// Collecting the 12-byte RIFF header.
    Riff,
    /// Collecting an 8-byte chunk header.
    ChunkHeader,
    /// Collecting a `fmt ` body of this many bytes (plus pad).
    FmtBody(u32),
    /// Skipping this many bytes of an unneeded chunk.
    Skip(u64),
    /// Everything from here on is PCM.
    Data,
    /// A previous error; the reader refuses further input.
    Failed(WavError),
}

/// Incremental WAV-to-PCM reader. Feed it body chunks of any size with [`WavReader::push`].
#[derive(Debug)]
pub struct WavReader {
    state: State,
    pending: Vec<u8>,
    format: Option<Format>,
    odd_byte: Option<u8>,
}

impl Default for WavReader {
    fn default() -> Self {
        Self::new()
    }
}

impl WavReader {
    /// A reader expecting the start of a WAV body.
    pub fn new() -> Self {
        Self {
            state: State::Riff,
            pending: Vec::new(),
            format: None,
            odd_byte: None,
        }
    }

    /// The format, once the `fmt ` chunk has been read.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Feeds the next body bytes, appending any whole PCM samples to `pcm`.
    pub fn push(&mut self, mut bytes: &[u8], pcm: &mut Vec<u8>) -> Result<(), WavError> {
        while !bytes.is_empty() {
            match self.state {
                State::Failed(e) => return Err(e),
                State::Data => {
                    self.push_pcm(bytes, pcm);
                    return Ok(());
                }
                State::Skip(remaining) => {
                    let n = remaining.min(bytes.len() as u64) as usize;
                    bytes = &bytes[n..];
                    self.state = match remaining - n as u64 {
                        0 => State::ChunkHeader,
                        left => State::Skip(left),
                    };
                }
                State::Riff | State::ChunkHeader | State::FmtBody(_) => {
                    let need = self.header_len() - self.pending.len();
                    let n = need.min(bytes.len());
                    self.pending.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if self.pending.len() == self.header_len() {
                        let header = std::mem::take(&mut self.pending);
                        if let Err(e) = self.on_header(&header) {
                            self.state = State::Failed(e);
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Call when the body has ended: fails if the `data` chunk never began.
    pub fn finish(&self) -> Result<(), WavError> {
        match self.state {
            State::Data => Ok(()),
            State::Failed(e) => Err(e),
            _ => Err(WavError::Truncated),
        }
    }

    fn header_len(&self) -> usize {
        match self.state {
            State::Riff => 12,
            State::ChunkHeader => 8,
            State::FmtBody(len) => (len + (len & 1)) as usize,
            _ => 0,
        }
    }

    fn on_header(&mut self, header: &[u8]) -> Result<(), WavError> {
        match self.state {
            State::Riff => {
                if &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" {
                    return Err(WavError::NotWav);
                }
                self.state = State::ChunkHeader;
            }
            State::ChunkHeader => {
                let size = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
                self.state = match &header[0..4] {
                    // The data size is often stale or zero: PCM runs to the end of the body.
                    b"data" if self.format.is_none() => return Err(WavError::DataBeforeFormat),
                    b"data" => State::Data,
                    b"fmt " if !(16..=MAX_FMT_LEN).contains(&size) => {
                        return Err(WavError::BadFormatChunk)
                    }
                    b"fmt " => State::FmtBody(size),
                    _ => match u64::from(size) + u64::from(size & 1) {
                        0 => State::ChunkHeader,
                        skip => State::Skip(skip),
                    },
                };
            }
            State::FmtBody(_) => {
                let word = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
                let format = Format {
                    channels: word(2),
                    sample_rate: u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")),
                    bits_per_sample: word(14),
                };
                let tag = match word(0) {
                    // WAVE_FORMAT_EXTENSIBLE keeps the real tag at the start of its sub-format GUID.
                    WAVE_FORMAT_EXTENSIBLE if header.len() >= 26 => word(24),
                    tag => tag,
                };
                let supported = tag == WAVE_FORMAT_PCM
                    && format.channels == 1
                    && format.bits_per_sample == 16
                    && format.sample_rate > 0;
                if !supported {
                    return Err(WavError::Unsupported(format));
                }
                self.format = Some(format);
                self.state = State::ChunkHeader;
            }
            _ => unreachable!("on_header only runs in header states"),
        }
        Ok(())
    }

    fn push_pcm(&mut self, bytes: &[u8], pcm: &mut Vec<u8>) {
        let mut bytes = bytes;
        if let Some(low) = self.odd_byte.take() {
            pcm.extend_from_slice(&[low, bytes[0]]);
            bytes = &bytes[1..];
        }
        let whole = bytes.len() & !1;
        pcm.extend_from_slice(&bytes[..whole]);
        if whole < bytes.len() {
            self.odd_byte = Some(bytes[whole]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use orpheus_test_support::{wav, Quirks};

    /// A canonical mono 16-bit WAV header announcing `data_len` bytes of PCM.
    fn header(sample_rate: u32, data_len: usize) -> Vec<u8> {
        let mut h = wav(sample_rate, &vec![0; data_len], Quirks::default());
        h.truncate(44);
        h
    }

    fn pcm(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| ((i as i16).wrapping_mul(257)).to_le_bytes())
            .collect()
    }

    fn read_in_pieces(body: &[u8], sizes: &[usize]) -> (Result<(), WavError>, Vec<u8>, WavReader) {
        let mut reader = WavReader::new();
        let mut out = Vec::new();
        let mut at = 0;
        let mut k = 0;
        while at < body.len() {
            let n = sizes[k % sizes.len()].min(body.len() - at);
            if let Err(e) = reader.push(&body[at..at + n], &mut out) {
                return (Err(e), out, reader);
            }
            assert_eq!(out.len() % 2, 0, "only whole samples are emitted");
            at += n;
            k += 1;
        }
        (reader.finish(), out, reader)
    }

    #[test]
    fn canonical_header_any_split() {
        let samples = pcm(1000);
        let mut body = header(24_000, samples.len());
        body.extend_from_slice(&samples);
        for sizes in [
            &[1usize][..],
            &[3, 7, 1],
            &[43, 2],
            &[44],
            &[5000],
            &[13, 1, 1, 2],
        ] {
            let (done, out, reader) = read_in_pieces(&body, sizes);
            assert_eq!(done, Ok(()));
            assert_eq!(out, samples, "split {sizes:?}");
            assert_eq!(reader.format().unwrap().sample_rate, 24_000);
        }
    }

    #[test]
    fn extra_chunks_and_stale_sizes() {
        let samples = pcm(300);
        let mut body = b"RIFF\xff\xff\xff\xffWAVE".to_vec();
        body.extend_from_slice(b"LIST\x05\0\0\0abcde\0"); // odd size with pad byte
        body.extend_from_slice(b"junk\0\0\0\0");
        let h = header(22_050, 0);
        body.extend_from_slice(&h[12..36]); // fmt chunk
        body.extend_from_slice(b"data\0\0\0\0"); // zero size: PCM runs to the end
        body.extend_from_slice(&samples);
        let (done, out, reader) = read_in_pieces(&body, &[7]);
        assert_eq!(done, Ok(()));
        assert_eq!(out, samples);
        assert_eq!(reader.format().unwrap().sample_rate, 22_050);
    }

    #[test]
    fn extensible_fmt() {
        let mut body = b"RIFF\0\0\0\0WAVEfmt \x28\0\0\0".to_vec();
        let mut fmt = vec![0u8; 40];
        fmt[0..2].copy_from_slice(&0xFFFEu16.to_le_bytes());
        fmt[2..4].copy_from_slice(&1u16.to_le_bytes());
        fmt[4..8].copy_from_slice(&48_000u32.to_le_bytes());
        fmt[14..16].copy_from_slice(&16u16.to_le_bytes());
        fmt[24..26].copy_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&fmt);
        body.extend_from_slice(b"data\x04\0\0\0\x01\x02\x03\x04");
        let (done, out, reader) = read_in_pieces(&body, &[9]);
        assert_eq!(done, Ok(()));
        assert_eq!(out, vec![1, 2, 3, 4]);
        assert_eq!(reader.format().unwrap().sample_rate, 48_000);
    }

    #[test]
    fn odd_trailing_byte_is_not_a_sample() {
        let mut body = header(24_000, 5);
        body.extend_from_slice(&[1, 2, 3, 4, 5]);
        let (done, out, _) = read_in_pieces(&body, &[45, 1]);
        assert_eq!(done, Ok(()));
        assert_eq!(out, vec![1, 2, 3, 4]);
    }

    #[test]
    fn rejects_what_it_cannot_relay() {
        assert_eq!(
            read_in_pieces(b"{\"error\":{}}", &[4]).0,
            Err(WavError::NotWav)
        );
        let mut stereo = header(24_000, 0);
        stereo[22] = 2;
        assert!(matches!(
            read_in_pieces(&stereo, &[100]).0,
            Err(WavError::Unsupported(Format { channels: 2, .. }))
        ));
        let no_fmt = b"RIFF\0\0\0\0WAVEdata\0\0\0\0\0\0".to_vec();
        assert_eq!(
            read_in_pieces(&no_fmt, &[3]).0,
            Err(WavError::DataBeforeFormat)
        );
        let h = header(24_000, 0);
        assert_eq!(read_in_pieces(&h[..30], &[30]).0, Err(WavError::Truncated));
        let mut reader = WavReader::new();
        let mut out = Vec::new();
        assert!(reader.push(b"nope, not a wav", &mut out).is_err());
        assert!(
            reader.push(&h, &mut out).is_err(),
            "a failed reader stays failed"
        );
    }
}
