//! Why a message ended, and the error codes a client can act on.

/// Why a message's stream ended. Every `speak` gets exactly one `end` carrying one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum EndReason {
    /// All audio was sent.
    Done,
    /// The client sent `stop`.
    Stopped,
    /// A newer `speak` on the same session took over.
    Superseded,
    /// A new connection to the same session took over.
    Replaced,
    /// The message was rejected or failed; `error` says why.
    Error,
    /// The relay lost the message's state (eviction or restart) before it finished.
    Interrupted,
}

impl EndReason {
    /// Every reason.
    pub const ALL: [EndReason; 6] = [
        Self::Done,
        Self::Stopped,
        Self::Superseded,
        Self::Replaced,
        Self::Error,
        Self::Interrupted,
    ];

    /// The reason of a wire name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The snake_case name used on the wire (for logs and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Stopped => "stopped",
            Self::Superseded => "superseded",
            Self::Replaced => "replaced",
            Self::Error => "error",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A machine-readable error code. The accompanying text is fixed per code, so nothing a user
/// typed and nothing the upstream said ever reaches a client through an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    InvalidJson,
    /// The JSON is not a well-formed client message (missing or mistyped field).
    InvalidMessage,
    /// The `type` is not one this protocol knows.
    UnknownType,
    /// The client sent a binary frame; clients send JSON text only.
    BinaryFrame,
    /// The frame is larger than `limits.max_frame_bytes`.
    FrameTooLarge,
    /// `text` is empty or only white space.
    EmptyText,
    /// `text` is longer than `limits.max_text_chars`.
    TextTooLong,
    /// `voice` is not one of the ten Orpheus voices.
    UnknownVoice,
    /// `model` is not an Orpheus model.
    UnknownModel,
    /// `voice` does not belong to `model`.
    VoiceModelMismatch,
    /// The upstream rate limit was hit; `retry_after_s` says when to try again.
    RateLimited,
    /// The relay's API key was refused by the upstream (operator problem).
    UpstreamAuth,
    /// The upstream organisation has not accepted the model's terms (operator problem).
    TermsRequired,
    /// The upstream rejected the request (4xx other than the above).
    UpstreamRejected,
    /// The upstream is down or over capacity (5xx, 498, network failure).
    UpstreamUnavailable,
    /// The upstream did not answer, or stalled, within the relay's time limit.
    UpstreamTimeout,
    /// The upstream connection broke in the middle of the audio.
    UpstreamInterrupted,
    /// The upstream answered with audio the relay cannot read.
    UpstreamBadAudio,
    /// The relay is not configured with an upstream API key.
    NotConfigured,
    /// The relay cannot read the session's stored limits right now; retry shortly.
    RelayUnavailable,
    /// Protocol v2: an `append` or `finish` names no message whose text is still open.
    MessageNotOpen,
    /// Protocol v2: an `append`'s `at` is past the text the relay has; text was lost.
    TextGap,
    /// Protocol v2: a message opened with `more` had no `append` or `finish` for the idle time.
    TextTimeout,
    /// Protocol v2: a lexicon breaks a limit (entries, a key that is not one word, a value's
    /// length); nothing changed.
    InvalidLexicon,
}

impl ErrorCode {
    /// The fixed human-readable text sent with this code.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidJson => "frame is not valid JSON",
            Self::InvalidMessage => "message is missing a field or has a field of the wrong type",
            Self::UnknownType => "unknown message type",
            Self::BinaryFrame => "binary frames are not accepted from clients; send JSON text",
            Self::FrameTooLarge => "frame exceeds limits.max_frame_bytes",
            Self::EmptyText => "text is empty",
            Self::TextTooLong => "text exceeds limits.max_text_chars",
            Self::UnknownVoice => "unknown voice; see the voices in the ready message",
            Self::UnknownModel => "unknown model; see the models in the ready message",
            Self::VoiceModelMismatch => "the voice does not belong to the model",
            Self::RateLimited => "speech service rate limit reached; retry after retry_after_s",
            Self::UpstreamAuth => "the relay's speech service credentials were refused",
            Self::TermsRequired => {
                "the speech model's terms have not been accepted by the operator"
            }
            Self::UpstreamRejected => "the speech service rejected the request",
            Self::UpstreamUnavailable => "the speech service is unavailable",
            Self::UpstreamTimeout => "the speech service did not answer in time",
            Self::UpstreamInterrupted => "the speech service connection broke mid-stream",
            Self::UpstreamBadAudio => "the speech service returned audio the relay cannot read",
            Self::NotConfigured => "the relay has no speech service credentials configured",
            Self::MessageNotOpen => "no message with this id is open for more text",
            Self::TextGap => "append.at is past the text the relay has; send the missing text",
            Self::TextTimeout => "no append or finish came within the idle time; the message ended",
            Self::InvalidLexicon => {
                "a lexicon holds at most 200 entries, each a word of 1 to 48 characters said as 1 to 128 characters"
            }
            Self::RelayUnavailable => {
                "the relay cannot read this session's limits right now; retry after retry_after_s"
            }
        }
    }

    /// The snake_case name used on the wire (for logs and metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidMessage => "invalid_message",
            Self::UnknownType => "unknown_type",
            Self::BinaryFrame => "binary_frame",
            Self::FrameTooLarge => "frame_too_large",
            Self::EmptyText => "empty_text",
            Self::TextTooLong => "text_too_long",
            Self::UnknownVoice => "unknown_voice",
            Self::UnknownModel => "unknown_model",
            Self::VoiceModelMismatch => "voice_model_mismatch",
            Self::RateLimited => "rate_limited",
            Self::UpstreamAuth => "upstream_auth",
            Self::TermsRequired => "terms_required",
            Self::UpstreamRejected => "upstream_rejected",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamInterrupted => "upstream_interrupted",
            Self::UpstreamBadAudio => "upstream_bad_audio",
            Self::NotConfigured => "not_configured",
            Self::RelayUnavailable => "relay_unavailable",
            Self::MessageNotOpen => "message_not_open",
            Self::TextGap => "text_gap",
            Self::TextTimeout => "text_timeout",
            Self::InvalidLexicon => "invalid_lexicon",
        }
    }

    /// Every code.
    pub const ALL: [ErrorCode; 24] = [
        Self::InvalidJson,
        Self::InvalidMessage,
        Self::UnknownType,
        Self::BinaryFrame,
        Self::FrameTooLarge,
        Self::EmptyText,
        Self::TextTooLong,
        Self::UnknownVoice,
        Self::UnknownModel,
        Self::VoiceModelMismatch,
        Self::RateLimited,
        Self::UpstreamAuth,
        Self::TermsRequired,
        Self::UpstreamRejected,
        Self::UpstreamUnavailable,
        Self::UpstreamTimeout,
        Self::UpstreamInterrupted,
        Self::UpstreamBadAudio,
        Self::NotConfigured,
        Self::RelayUnavailable,
        Self::MessageNotOpen,
        Self::TextGap,
        Self::TextTimeout,
        Self::InvalidLexicon,
    ];
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    #[test]
    fn reason_names_match_serde() {
        for reason in EndReason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
            assert_eq!(EndReason::from_name(reason.as_str()), Some(reason));
        }
        assert_eq!(EndReason::from_name("nope"), None);
    }

    #[test]
    fn names_match_serde() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert!(!code.message().is_empty());
        }
    }
}
