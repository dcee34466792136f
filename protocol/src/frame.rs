//! The binary audio frame: a 12-byte little-endian header followed by PCM s16le samples.
//!
//! ```text
//! offset size field
//!      0    1 version (1)
//!      1    1 flags (bit 0: last frame of a segment)
//!      2    2 reserved (0)
//!      4    4 stream: the stream number from the message's `start`
//!      8    4 offset: index of the frame's first sample within the stream
//!     12    … PCM s16le, mono, a whole and non-zero number of samples
//! ```

use crate::prelude::*;

/// Length of the frame header in bytes.
pub const FRAME_HEADER_LEN: usize = 12;

/// The header version this crate writes and accepts.
pub const FRAME_VERSION: u8 = 1;

/// Flag bit: this frame carries the last samples of an upstream segment.
pub const LAST_IN_SEGMENT: u8 = 0b1;

/// A decoded audio frame borrowing its PCM bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFrame<'a> {
    /// Flag bits (see [`LAST_IN_SEGMENT`]).
    pub flags: u8,
    /// The stream this frame belongs to.
    pub stream: u32,
    /// Sample index of the first sample within the stream.
    pub offset: u32,
    /// PCM s16le bytes; always an even, non-zero length.
    pub pcm: &'a [u8],
}

/// Why a binary frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than a header plus one sample.
    TooShort,
    /// A header version this decoder does not know.
    UnknownVersion(u8),
    /// The PCM payload is not a whole number of 16-bit samples.
    PartialSample,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort => write!(f, "audio frame shorter than header plus one sample"),
            Self::UnknownVersion(v) => write!(f, "unknown audio frame version {v}"),
            Self::PartialSample => write!(f, "audio frame payload is not whole samples"),
        }
    }
}

impl core::error::Error for FrameError {}

impl<'a> AudioFrame<'a> {
    /// Number of samples in the frame.
    pub fn samples(&self) -> u32 {
        (self.pcm.len() / 2) as u32
    }

    /// Whether this is the last frame of an upstream segment.
    pub fn is_last_in_segment(&self) -> bool {
        self.flags & LAST_IN_SEGMENT != 0
    }

    /// Encodes the frame, header and PCM, into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(!self.pcm.is_empty() && self.pcm.len().is_multiple_of(2));
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + self.pcm.len());
        out.push(FRAME_VERSION);
        out.push(self.flags);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(self.pcm);
        out
    }

    /// Decodes a binary WebSocket message.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() < FRAME_HEADER_LEN + 2 {
            return Err(FrameError::TooShort);
        }
        if bytes[0] != FRAME_VERSION {
            return Err(FrameError::UnknownVersion(bytes[0]));
        }
        let pcm = &bytes[FRAME_HEADER_LEN..];
        if !pcm.len().is_multiple_of(2) {
            return Err(FrameError::PartialSample);
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        Ok(Self {
            flags: bytes[1],
            stream: word(4),
            offset: word(8),
            pcm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pcm = [1u8, 0, 0xff, 0x7f];
        let frame = AudioFrame {
            flags: LAST_IN_SEGMENT,
            stream: 7,
            offset: 0x0102_0304,
            pcm: &pcm,
        };
        let bytes = frame.encode();
        assert_eq!(&bytes[..4], &[1, 1, 0, 0]);
        assert_eq!(&bytes[4..8], &[7, 0, 0, 0]);
        assert_eq!(&bytes[8..12], &[4, 3, 2, 1]);
        let back = AudioFrame::decode(&bytes).unwrap();
        assert_eq!(back, frame);
        assert_eq!(back.samples(), 2);
        assert!(back.is_last_in_segment());
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(AudioFrame::decode(&[1; 13]), Err(FrameError::TooShort));
        let mut bytes = AudioFrame {
            flags: 0,
            stream: 1,
            offset: 0,
            pcm: &[0, 0],
        }
        .encode();
        bytes.push(0);
        assert_eq!(AudioFrame::decode(&bytes), Err(FrameError::PartialSample));
        bytes[0] = 2;
        assert_eq!(
            AudioFrame::decode(&bytes),
            Err(FrameError::UnknownVersion(2))
        );
    }
}
