//! How a stream's audio travels in its binary frames: raw PCM, or Opus packets (protocol v2).

/// The audio encoding of a stream's binary frames, named in its `start`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AudioEncoding {
    /// 16-bit little-endian PCM, mono, in version 1 frames (384 kbit/s at 24 kHz).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "pcm_s16le"))]
    Pcm,
    /// Protocol v2: Opus packets of 20 ms in version 2 frames (about 34 kbit/s), for a link
    /// slower than PCM's rate.
    #[cfg_attr(feature = "serde", serde(rename = "opus"))]
    Opus,
}

impl AudioEncoding {
    /// Every encoding.
    pub const ALL: [AudioEncoding; 2] = [Self::Pcm, Self::Opus];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pcm => "pcm_s16le",
            Self::Opus => "opus",
        }
    }

    /// The encoding of a wire name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }
}
