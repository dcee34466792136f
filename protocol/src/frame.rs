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
//!
//! Protocol v2, a stream whose `start` says `opus`: a 16-byte header followed by Opus packets.
//!
//! ```text
//! offset size field
//!      0    1 version (2)
//!      1    1 flags (bit 1: the first packet starts a run, to be decoded by a fresh decoder)
//!      2    2 delay: the run's decoded audio lags its input by this many samples at 48 kHz
//!      4    4 stream
//!      8    4 offset: the stream sample where the input of the frame's first packet begins
//!     12    4 samples: stream samples the packets carry (what they decode to beyond is padding)
//!     16    … one or more packets, each a u16 length and then the packet
//! ```

use crate::prelude::*;

/// Length of the frame header in bytes.
pub const FRAME_HEADER_LEN: usize = 12;

/// The header version this crate writes and accepts.
pub const FRAME_VERSION: u8 = 1;

/// Flag bit: this frame carries the last samples of an upstream segment.
pub const LAST_IN_SEGMENT: u8 = 0b1;

/// The header version of an Opus frame.
pub const OPUS_FRAME_VERSION: u8 = 2;

/// Length of an Opus frame's header in bytes.
pub const OPUS_HEADER_LEN: usize = 16;

/// Flag bit of an Opus frame: its first packet starts a run (the decoder starts afresh).
pub const RUN_START: u8 = 0b10;

/// Flag bit of an Opus frame: its last packet ends a run (a decoder that holds packets back
/// is flushed).
pub const RUN_END: u8 = 0b100;

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
    /// An Opus frame with no packet, or a packet's length running past the frame.
    BrokenPacket,
    /// The PCM payload is not a whole number of 16-bit samples.
    PartialSample,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort => write!(f, "audio frame shorter than header plus one sample"),
            Self::UnknownVersion(v) => write!(f, "unknown audio frame version {v}"),
            Self::PartialSample => write!(f, "audio frame payload is not whole samples"),
            Self::BrokenPacket => write!(f, "opus frame packets are missing or cut short"),
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

/// A decoded Opus frame borrowing its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusFrame<'a> {
    /// Flag bits (see [`RUN_START`]).
    pub flags: u8,
    /// The run's decoder delay, in samples at 48 kHz.
    pub delay: u16,
    /// The stream.
    pub stream: u32,
    /// The stream sample where the first packet's input begins.
    pub offset: u32,
    /// Stream samples the packets carry.
    pub samples: u32,
    /// The packets, each with its u16 length before it.
    pub packets: &'a [u8],
}

impl<'a> OpusFrame<'a> {
    /// Appends `packet` with its length, as [`OpusFrame::packets`] holds it.
    pub fn put_packet(packets: &mut Vec<u8>, packet: &[u8]) {
        packets.extend_from_slice(&(packet.len() as u16).to_le_bytes());
        packets.extend_from_slice(packet);
    }

    /// Whether its first packet starts a run.
    pub fn starts_run(&self) -> bool {
        self.flags & RUN_START != 0
    }

    /// Whether its last packet ends a run.
    pub fn ends_run(&self) -> bool {
        self.flags & RUN_END != 0
    }

    /// Encodes the frame, header and packets, into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(OPUS_HEADER_LEN + self.packets.len());
        out.push(OPUS_FRAME_VERSION);
        out.push(self.flags);
        out.extend_from_slice(&self.delay.to_le_bytes());
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.samples.to_le_bytes());
        out.extend_from_slice(self.packets);
        out
    }

    /// Decodes a binary WebSocket message, checking that its packets are whole.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() < OPUS_HEADER_LEN {
            return Err(FrameError::TooShort);
        }
        if bytes[0] != OPUS_FRAME_VERSION {
            return Err(FrameError::UnknownVersion(bytes[0]));
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let frame = Self {
            flags: bytes[1],
            delay: u16::from_le_bytes([bytes[2], bytes[3]]),
            stream: word(4),
            offset: word(8),
            samples: word(12),
            packets: &bytes[OPUS_HEADER_LEN..],
        };
        let mut count = 0;
        for packet in frame.packets() {
            packet?;
            count += 1;
        }
        if count == 0 {
            return Err(FrameError::BrokenPacket);
        }
        Ok(frame)
    }

    /// Its packets, in order.
    pub fn packets(&self) -> impl Iterator<Item = Result<&'a [u8], FrameError>> {
        let mut rest = self.packets;
        core::iter::from_fn(move || {
            let (len, tail) = match rest {
                [] => return None,
                [a, b, tail @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), tail),
                _ => {
                    rest = &[];
                    return Some(Err(FrameError::BrokenPacket));
                }
            };
            if len == 0 || len > tail.len() {
                rest = &[];
                return Some(Err(FrameError::BrokenPacket));
            }
            let (packet, after) = tail.split_at(len);
            rest = after;
            Some(Ok(packet))
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

    #[test]
    fn opus_frames_round_trip_and_packets_must_be_whole() {
        let mut packets = Vec::new();
        OpusFrame::put_packet(&mut packets, &[9, 8, 7]);
        OpusFrame::put_packet(&mut packets, &[6]);
        let frame = OpusFrame {
            flags: RUN_START,
            delay: 312,
            stream: 7,
            offset: 480,
            samples: 700,
            packets: &packets,
        };
        let bytes = frame.encode();
        assert_eq!(&bytes[..4], &[2, 2, 0x38, 1]);
        let back = OpusFrame::decode(&bytes).unwrap();
        assert_eq!(back, frame);
        assert!(back.starts_run());
        let got: Vec<&[u8]> = back.packets().map(Result::unwrap).collect();
        assert_eq!(got, [&[9u8, 8, 7][..], &[6]]);

        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(OpusFrame::decode(cut), Err(FrameError::BrokenPacket));
        assert_eq!(
            OpusFrame::decode(&bytes[..OPUS_HEADER_LEN]),
            Err(FrameError::BrokenPacket)
        );
        assert_eq!(OpusFrame::decode(&bytes[..15]), Err(FrameError::TooShort));
        let mut pcm = bytes.clone();
        pcm[0] = 1;
        assert_eq!(OpusFrame::decode(&pcm), Err(FrameError::UnknownVersion(1)));
    }
}
