//! The session core's face to its runtime: its tunables ([`Config`]), what it is fed
//! ([`Input`]) and what it asks the runtime to do ([`Effect`]). Effects carry protocol values
//! (a [`ServerMessage`], an [`AudioOut`]); they become bytes only where they leave, in the
//! runtime that executes them.

use orpheus_protocol::{AudioEncoding, AudioFrame, Limits, Markup, ServerMessage, Version};

use super::stored::{Attachment, Stored};
use crate::budget::BudgetLimits;
use crate::log::LogLine;
use crate::segment;
use crate::speech::Lexicon;
use crate::time::Millis;
use crate::unplayed::Piece;
use crate::upstream::UpstreamStatus;

/// Identifies one upstream request for the life of the session.
pub type FetchId = u64;

/// Names one socket of the session: each accepted socket gets a higher number than any before.
pub type Generation = u32;

/// Tunables of a session; the defaults are what production uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Limits announced in `ready` and enforced on client frames.
    pub limits: Limits,
    /// Whether an upstream API key is configured; without one every `speak` ends `not_configured`.
    pub upstream_configured: bool,
    /// Upstream requests in flight beyond the one being relayed.
    pub prefetch: usize,
    /// Target length of the first segment.
    pub first_segment_chars: usize,
    /// Time allowed from request to response headers.
    pub first_byte_timeout_ms: Millis,
    /// Time allowed between two body reads.
    pub stall_timeout_ms: Millis,
    /// Audio held back from the segment being relayed until the next read, so the segment's last
    /// frame can be flagged as such when its body ends.
    pub hold_back_samples: usize,
    /// Largest PCM payload of one audio frame.
    pub max_frame_pcm_bytes: usize,
    /// The session's spending limits.
    pub budget: BudgetLimits,
    /// Client frames allowed per second; more than twice that closes the socket (1008).
    pub frames_per_second: u32,
    /// Longest upstream `retry-after` the relay waits out (once, before any audio) on 429/503.
    pub max_retry_wait_s: u32,
    /// Protocol v2: audio goes out at most this far ahead of the client's play cursor.
    pub flow_window_ms: Millis,
    /// Protocol v2: how long a message whose socket dropped waits for a `resume`.
    pub resume_grace_ms: Millis,
    /// Protocol v2: how long a message opened with `more` waits for its next `append` or
    /// `finish` before it ends (`text_timeout`).
    pub text_idle_ms: Millis,
    /// Protocol v2: how long text still being written may pause before the relay cuts a
    /// segment at a word boundary rather than wait for a sentence.
    pub text_flush_ms: Millis,
    /// Whether the relay can code Opus (its encoder Worker is bound): a v2 `speak` that asks
    /// for it gets it; without, it gets PCM, as its `start` says.
    pub opus: bool,
    /// Whether a client of protocol v1 is told `words` too: the HTTP endpoint's job is, for an
    /// answer in server-sent events (a WebSocket client of v1 never is).
    pub words_to_v1: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            upstream_configured: true,
            prefetch: 1,
            first_segment_chars: segment::FIRST_SEGMENT_CHARS,
            first_byte_timeout_ms: 20_000,
            stall_timeout_ms: 10_000,
            hold_back_samples: 1,
            max_frame_pcm_bytes: 16 * 1024,
            budget: BudgetLimits::default(),
            frames_per_second: 20,
            max_retry_wait_s: 5,
            flow_window_ms: 2_000,
            resume_grace_ms: 20_000,
            text_idle_ms: 15_000,
            text_flush_ms: 300,
            opus: false,
            words_to_v1: false,
        }
    }
}

impl Config {
    /// Protocol v2: how long a client that reports its play cursor may fall silent while the
    /// relay waits on it (audio sent and not reported received, or held for the window) before
    /// its link is taken for dead: the socket is closed and the message parked for a resume.
    /// A few seconds past the window: a live client reports every 250 ms.
    pub fn dead_link_ms(&self) -> Millis {
        self.flow_window_ms + DEAD_LINK_MARGIN_MS
    }
}

/// What a silent reporting client gets beyond the flow window before its link is given up.
const DEAD_LINK_MARGIN_MS: Millis = 3_000;

/// A request to speak, as a `speak` frame carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speak {
    /// The client's id for it.
    pub id: String,
    /// The text (with `more`, its beginning).
    pub text: String,
    /// The voice, if chosen.
    pub voice: Option<String>,
    /// The model, if chosen.
    pub model: Option<String>,
    /// Protocol v2: more text follows in `append`s.
    pub more: bool,
    /// Segments may come from the segment cache.
    pub cache: bool,
    /// How the text is read; `None`: the session's choice.
    pub markup: Option<Markup>,
    /// Words said another way; `None`: the session's lexicon.
    pub lexicon: Option<Lexicon>,
    /// Protocol v2: how its audio travels; `None`: PCM.
    pub encoding: Option<AudioEncoding>,
}

/// What happened, fed to [`super::Session::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// A new socket was accepted, speaking this protocol version; it replaces the socket the
    /// session served, if any.
    Connected(Generation, Version),
    /// A text frame from a socket.
    Text(Generation, &'a str),
    /// A request to speak that did not come as a frame (the HTTP endpoint's): handled as a
    /// `speak` from that socket.
    Speak(Generation, Speak),
    /// A binary frame from a socket.
    Binary(Generation),
    /// A socket closed or failed.
    Disconnected(Generation),
    /// The session's stored state was read (after an earlier read failed).
    Loaded(Box<Stored>),
    /// An upstream request answered with a status (and, for errors, what the relay read of it).
    UpstreamHead(FetchId, UpstreamStatus),
    /// Body bytes of an upstream response.
    UpstreamBody(FetchId, &'a [u8]),
    /// The upstream body ended normally.
    UpstreamEnd(FetchId),
    /// The upstream request failed at the network level, or its body broke off.
    UpstreamFailed(FetchId),
    /// Time passed; expired deadlines fire.
    Tick,
}

/// An upstream request the runtime must start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Names the request in later inputs and effects.
    pub fetch: FetchId,
    /// The stream the request belongs to.
    pub stream: u32,
    /// The segment of the message's text it speaks (0-based); a retry repeats it.
    pub segment: u32,
    /// Groq's JSON body: model, input, voice, response_format.
    pub body: String,
    /// Whether the answer may come from the segment cache (and a fresh one go into it).
    pub cache: bool,
}

/// One audio frame of a stream, before it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioOut {
    /// The stream.
    pub stream: u32,
    /// How the stream's audio travels: PCM leaves as it is; Opus is coded on its way out.
    pub encoding: AudioEncoding,
    /// Its first sample's offset, its flags and its PCM.
    pub piece: Piece,
}

impl AudioOut {
    /// The binary frame of PCM as it goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        AudioFrame {
            flags: self.piece.flags,
            stream: self.stream,
            offset: self.piece.offset as u32,
            pcm: &self.piece.pcm,
        }
        .encode()
    }
}

/// Whether the runtime must confirm a write of [`Stored`] before the session's later frames
/// leave (its output gate, which holds them meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Frames wait for the write: it holds what a client is told next (a stream number, a
    /// budget spent, an ending), which a restarted object must not forget.
    Confirmed,
    /// Frames do not wait: the write only refreshes the active message's record (its finished
    /// segments, its text, its liveness), and audio must not stall behind a disk. Lost with the
    /// object, it costs a restart from an earlier segment boundary, never a reused stream or a
    /// budget.
    Unconfirmed,
}

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a control message to a socket.
    Send(Generation, ServerMessage),
    /// Send an audio frame to a socket.
    Audio(Generation, AudioOut),
    /// Start an upstream request.
    Fetch(FetchRequest),
    /// Abort an upstream request and release it.
    Abort(FetchId),
    /// Store this as the socket's attachment (survives hibernation).
    Persist(Generation, Attachment),
    /// Store the session's state (survives reconnection and eviction), as durably as it says.
    Store(Box<Stored>, Durability),
    /// Close a socket.
    Close {
        /// The socket.
        socket: Generation,
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: &'static str,
    },
    /// A log line: typed fields only (ids, counts, codes, timings), never text, keys or tickets.
    Log(LogLine),
}
