//! What outlives the session's memory: the session's state in the Durable Object's storage
//! ([`Stored`]: the budget, the stream counter, the active message's record, recent endings)
//! and each socket's attachment ([`Attachment`], which survives hibernation with the socket).

use std::collections::VecDeque;
use std::ops::Range;

use orpheus_protocol::{AudioEncoding, EndError, EndReason, Heard, Markup, Version};
use serde::{Deserialize, Serialize};

use super::api::{Config, Generation};
use crate::budget::SpeechBudget;
use crate::heard::SegmentAudio;
use crate::segment;
use crate::speech::{Lexicon, SpeechText};
use crate::time::Millis;

/// What outlives every socket, kept in the Durable Object's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// What the session has spent.
    pub budget: SpeechBudget,
    /// The next stream number to hand out; stream numbers are never reused within a session.
    pub next_stream: u32,
    /// Protocol v2: the active message, so that it can restart after the object lost it.
    #[serde(default)]
    pub message: Option<MessageRecord>,
    /// Protocol v2: how recent messages ended, so that a `resume` that comes after (their
    /// `end` was lost with the link) gets that `end` again. Kept for the grace period, at most
    /// [`ENDED_KEPT`].
    #[serde(default)]
    pub ended: VecDeque<EndedRecord>,
    /// Protocol v2: how messages' text is read unless a `speak` says otherwise.
    #[serde(default)]
    pub markup: Markup,
    /// Protocol v2: words the session's messages say another way.
    #[serde(default)]
    pub lexicon: Lexicon,
}

impl Stored {
    /// Whether `other` differs from it at most in the active message's record.
    pub fn same_but_message(&self, other: &Stored) -> bool {
        self.budget == other.budget
            && self.next_stream == other.next_stream
            && self.ended == other.ended
            && self.markup == other.markup
            && self.lexicon == other.lexicon
    }

    /// Hands out the next stream number.
    pub(super) fn take_stream(&mut self) -> u32 {
        let stream = self.next_stream;
        self.next_stream = self.next_stream.checked_add(1).unwrap_or(1);
        stream
    }
}

impl Default for Stored {
    fn default() -> Self {
        Self {
            budget: SpeechBudget::default(),
            next_stream: 1,
            message: None,
            ended: VecDeque::new(),
            markup: Markup::default(),
            lexicon: Lexicon::default(),
        }
    }
}

/// How many recent endings [`Stored`] keeps.
pub const ENDED_KEPT: usize = 16;

/// Protocol v2: how a message ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedRecord {
    /// The `speak` id.
    pub id: String,
    /// Its last stream.
    pub stream: u32,
    /// Why it ended.
    pub reason: EndReason,
    /// For reason `error`: what went wrong.
    pub error: Option<EndError>,
    /// Samples sent in its stream.
    pub samples: u64,
    /// What was heard.
    pub heard: Heard,
    /// When it ended.
    pub at: Millis,
}

/// Protocol v2: what it takes to restart a message the object lost (its text stays in the
/// object's storage, never in a log or a frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The `speak` id.
    pub id: String,
    /// Its current stream.
    pub stream: u32,
    /// The message offset of the stream's first sample (non-zero after a restart).
    pub base: u64,
    /// The text.
    pub text: String,
    /// The model id.
    pub model: String,
    /// The voice.
    pub voice: String,
    /// The length in samples of each segment relayed to its end, in order.
    pub segment_samples: Vec<u64>,
    /// The segments cut so far, as character ranges of the text (empty for a record of a
    /// complete text stored before they were kept: they are cut again, identically).
    #[serde(default)]
    pub spans: Vec<Range<usize>>,
    /// Whether more text may still be appended.
    #[serde(default)]
    pub open: bool,
    /// For text still open: when text last came.
    #[serde(default)]
    pub text_at: Millis,
    /// The stream's sample rate, once its `start` went out.
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// The message asked for no segment from the cache.
    #[serde(default)]
    pub no_cache: bool,
    /// How its audio travels.
    #[serde(default)]
    pub encoding: AudioEncoding,
    /// How its text is read (a record from before Markdown was read says nothing: plain).
    #[serde(default = "plain")]
    pub markup: Markup,
    /// The words it says another way.
    #[serde(default)]
    pub lexicon: Lexicon,
    /// When the message was last known to be alive.
    pub alive_at: Millis,
}

/// How a record written before the relay read Markdown reads its text.
fn plain() -> Markup {
    Markup::Plain
}

impl MessageRecord {
    /// What the message says of its text so far, read as it was.
    pub(super) fn speech(&self) -> SpeechText {
        let mut speech = SpeechText::new(self.markup, self.lexicon.clone());
        speech.read(&self.text, !self.open);
        speech
    }

    /// The segments of what is said, as the message split them.
    pub(super) fn spans(&self, config: &Config, speech: &SpeechText) -> Vec<Range<usize>> {
        if self.open || !self.spans.is_empty() {
            return self.spans.clone();
        }
        segment::split_spans(
            speech.spoken(),
            config.limits.segment_chars as usize,
            config.first_segment_chars,
        )
    }

    /// The last segment boundary at or before sample `at` of the message: the index of the
    /// segment that starts there, and the sample.
    pub(super) fn boundary_at_or_before(&self, at: u64) -> (usize, u64) {
        let mut boundary = (0, 0);
        for &samples in &self.segment_samples {
            let next = boundary.1 + samples;
            if next > at {
                break;
            }
            boundary = (boundary.0 + 1, next);
        }
        boundary
    }

    /// The audio of the first `segments` segments, all relayed to their end.
    pub(super) fn audio(&self, segments: usize) -> Vec<SegmentAudio> {
        self.segment_samples[..segments]
            .iter()
            .map(|&samples| SegmentAudio {
                samples,
                complete: true,
            })
            .collect()
    }

    /// What was heard when `played` samples of the stream had played (the record keeps no
    /// word timings: the estimate is by segment lengths).
    pub(super) fn heard(&self, config: &Config, played: u64) -> Heard {
        let audio = self.audio(self.segment_samples.len());
        let speech = self.speech();
        let samples = self.base + played;
        let spans = self.spans(config, &speech);
        Heard {
            samples,
            chars: crate::heard::heard_original(&self.text, &speech, &spans, &audio, samples),
        }
    }
}

/// What must survive hibernation, stored on each socket (well under 2 KiB).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The session id.
    pub session: String,
    /// The socket's generation: of the open sockets, the highest is the one the session serves.
    pub generation: Generation,
    /// The protocol version the socket speaks.
    #[serde(default)]
    pub version: Version,
    /// The active message, if any.
    pub active: Option<ActiveRecord>,
    /// Set once the session no longer serves this socket: its late frames are ignored.
    pub closed: bool,
    /// Protocol v2: the session's client reports its play cursor.
    #[serde(default)]
    pub reports: bool,
}

/// Which socket a session that woke with no state in memory serves: of the sockets whose
/// attachments say open, the one of the highest generation. Every other socket is stale.
pub fn serving_after_wake<'a>(
    attachments: impl IntoIterator<Item = &'a Attachment>,
) -> Option<Generation> {
    attachments
        .into_iter()
        .filter(|a| !a.closed)
        .map(|a| a.generation)
        .max()
}

/// The persisted trace of an active message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRecord {
    /// The `speak` id.
    pub id: String,
    /// Its stream number.
    pub stream: u32,
    /// Samples sent up to the last completed segment.
    pub samples: u64,
}
