//! The limits a session announces in `ready`.

use crate::MAX_MESSAGE_ID_LEN;

/// Limits announced in `ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Limits {
    /// Longest `text` of one `speak`, in Unicode scalar values.
    pub max_text_chars: u32,
    /// Largest client text frame, in bytes.
    pub max_frame_bytes: u32,
    /// Longest text sent to the upstream in one request (Groq's limit).
    pub segment_chars: u32,
    /// Longest message id, in characters.
    pub max_id_chars: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text_chars: 4000,
            max_frame_bytes: 32 * 1024,
            segment_chars: 200,
            max_id_chars: MAX_MESSAGE_ID_LEN as u32,
        }
    }
}
