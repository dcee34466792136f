//! The session state machine: one per session id (one per Durable Object), the single owner of
//! the session's socket, its active message and that message's upstream requests.
//!
//! It is sans-IO: the Durable Object feeds it [`Input`]s with the current time and executes the
//! [`Effect`]s it returns (send a frame, start or abort an upstream request, persist a socket's
//! attachment, store the session's state, close a socket). It never touches a socket, a timer or
//! the network itself, so every rule below is tested on the host:
//!
//! - it serves at most one socket, named by its [`Generation`]; a newer socket replaces the one
//!   it served, which gets its `end` (`replaced`), its close (4000) and a closed attachment
//!   first. Input from any socket but the one it serves is ignored, so a stale socket can never
//!   displace the live one;
//! - at most one message is active; a new `speak` ends the old one (`superseded`) first;
//! - every `speak` received gets exactly one `end`, and no frame of its stream follows it;
//! - every way a message ends goes through [`Session::finish`], which is idempotent: it aborts the
//!   message's upstream requests, sends `end`, and persists that nothing is active;
//! - audio is relayed in segment order with contiguous sample offsets, whatever order the
//!   upstream responses arrive in; `start` goes out with the first audio frame, never before;
//! - stream numbers and the spending budget live in the session's storage ([`Stored`]), so no
//!   reconnection or eviction reuses a stream number or resets a limit. Until that state is
//!   known, new messages are refused (`relay_unavailable`), never run on a blank budget.
//!
//! With a client of protocol v2 (`orpheus.v2`), the session also knows what the listener heard:
//!
//! - audio goes out only within the flow window ahead of the client's `played` reports, and a
//!   later segment is requested only when the audio ahead runs low ([`crate::flow`]);
//! - a socket that drops (or is replaced) parks the active message for `resume_grace_ms`,
//!   keeping its upstream requests and the audio not yet reported played; a `resume` from the
//!   next socket continues it from the play cursor, else it ends `interrupted`, once;
//! - the active message's record (text, voice, the length of each finished segment) is stored,
//!   so a `resume` after the object lost its memory restarts the unplayed part at the segment
//!   boundary at or before the cursor, in a new stream; the record goes when the message ends,
//!   and how the session's recent messages ended is kept for the grace period, so a `resume`
//!   whose `end` was lost with the link gets that `end` again;
//! - every `end` says what was heard ([`crate::heard`]) and how the message went;
//! - a message opened with `more` takes its text in `append`s until `finish`: one stream, one
//!   `start`, one `end`. Its segments are cut as the text grows ([`segment::next_span`]), each
//!   when it is requested, so a cut never depends on text not yet received; its text counts
//!   against the limits as it arrives, and a message left open past `text_idle_ms` ends once.

use std::collections::VecDeque;
use std::ops::Range;

use orpheus_protocol::{
    resolve_voice, AudioFrame, ClientMessage, EndError, EndMetrics, EndReason, ErrorCode, Flow,
    Heard, Limits, Model, ServerMessage, Version, CLOSE_POLICY_VIOLATION, LAST_IN_SEGMENT,
};
use serde::{Deserialize, Serialize};

use crate::budget::{BudgetLimits, SpeechBudget};
use crate::flow::{self, FlowControl};
use crate::frame_rate::{FrameRate, FrameVerdict};
use crate::heard::{heard_chars, SegmentAudio};
use crate::log::LogLine;
use crate::segment;
use crate::time::Millis;
use crate::unplayed::{Piece, Unplayed};
use crate::upstream::{self, UpstreamStatus};
use crate::wav::{Format, WavReader};

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
        }
    }
}

/// What happened, fed to [`Session::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// A new socket was accepted, speaking this protocol version; it replaces the socket the
    /// session served, if any.
    Connected(Generation, Version),
    /// A text frame from a socket.
    Text(Generation, &'a str),
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

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a JSON text frame to a socket.
    SendText(Generation, String),
    /// Send a binary audio frame to a socket.
    SendBinary(Generation, Vec<u8>),
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
}

impl Stored {
    /// Whether `other` differs from it at most in the active message's record.
    pub fn same_but_message(&self, other: &Stored) -> bool {
        self.budget == other.budget
            && self.next_stream == other.next_stream
            && self.ended == other.ended
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
    /// segments, its liveness), and audio must not stall behind a disk. Lost with the object,
    /// it costs a restart from an earlier segment boundary, never a reused stream or a budget.
    Unconfirmed,
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

impl Default for Stored {
    fn default() -> Self {
        Self {
            budget: SpeechBudget::default(),
            next_stream: 1,
            message: None,
            ended: VecDeque::new(),
        }
    }
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
    /// The message asked for no segment from the cache.
    #[serde(default)]
    pub no_cache: bool,
    /// When the message was last known to be alive.
    pub alive_at: Millis,
}

impl MessageRecord {
    /// The segments of the text, as the message split them.
    fn spans(&self, config: &Config) -> Vec<Range<usize>> {
        if self.open || !self.spans.is_empty() {
            return self.spans.clone();
        }
        segment::split_spans(
            &self.text,
            config.limits.segment_chars as usize,
            config.first_segment_chars,
        )
    }

    /// The last segment boundary at or before sample `at` of the message: the index of the
    /// segment that starts there, and the sample.
    fn boundary_at_or_before(&self, at: u64) -> (usize, u64) {
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

    /// What was heard when `played` samples of the stream had played.
    fn heard(&self, config: &Config, played: u64) -> Heard {
        let audio: Vec<SegmentAudio> = self
            .segment_samples
            .iter()
            .map(|&samples| SegmentAudio {
                samples,
                complete: true,
            })
            .collect();
        let samples = self.base + played;
        Heard {
            samples,
            chars: heard_chars(&self.text, &self.spans(config), &audio, samples),
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

/// Where one upstream request of a segment stands. It only moves forward, except that a
/// refused first attempt may wait for its one retry.
#[derive(Debug)]
enum Phase {
    /// Requested; the response head has not arrived. The runtime holds the request.
    Awaiting { fetch: FetchId, deadline: Millis },
    /// Refused with 429/503; the message's one retry starts at this time.
    Retrying { at: Millis },
    /// Answered 2xx; the body streams. The runtime holds the request.
    Streaming {
        fetch: FetchId,
        /// When the body stalls out.
        stall_at: Millis,
        wav: WavReader,
    },
    /// The body ended; any PCM left waits for its turn.
    Complete,
    /// The request failed; reported when the segment's turn comes.
    Failed(EndError),
}

/// One segment of the active message, from its request until its audio is sent.
#[derive(Debug)]
struct Segment {
    /// Index within the message.
    index: u32,
    /// Groq's JSON request body, kept for the one allowed retry.
    body: String,
    /// Its characters (given back to the budget when the cache answers).
    chars: u64,
    /// When its current request started.
    requested_at: Millis,
    /// PCM received and not yet sent.
    pcm: Vec<u8>,
    /// PCM bytes received in all.
    received: u64,
    /// The audio format, once read.
    format: Option<Format>,
    phase: Phase,
}

impl Segment {
    /// Asks the runtime for this segment's audio as `fetch`, in `stream` (`cache`: the answer
    /// may come from the segment cache): the first request and its retry alike.
    fn request(&self, fetch: FetchId, stream: u32, cache: bool) -> Effect {
        Effect::Fetch(FetchRequest {
            fetch,
            stream,
            segment: self.index,
            body: self.body.clone(),
            cache,
        })
    }

    /// The request the runtime holds for this segment, if any.
    fn held(&self) -> Option<FetchId> {
        match self.phase {
            Phase::Awaiting { fetch, .. } | Phase::Streaming { fetch, .. } => Some(fetch),
            _ => None,
        }
    }

    /// When the segment's next deadline fires, if it has one.
    fn deadline(&self, config: &Config) -> Option<Millis> {
        match &self.phase {
            Phase::Awaiting { deadline, .. } => Some(*deadline),
            Phase::Retrying { at } => Some(*at),
            Phase::Streaming { stall_at, .. } => {
                // However steadily it drips, a body must keep up with real time once the
                // first-byte and stall allowances are spent.
                let rate = self
                    .format
                    .map_or(24_000, |f| u64::from(f.sample_rate.max(1)));
                let audio_ms = self.received / 2 * 1000 / rate;
                let cap = self.requested_at
                    + config.first_byte_timeout_ms
                    + config.stall_timeout_ms
                    + audio_ms;
                Some((*stall_at).min(cap))
            }
            Phase::Complete | Phase::Failed(_) => None,
        }
    }
}

/// Whether a message's text is all there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextInput {
    /// It is complete.
    Complete,
    /// More may come in `append`s (protocol v2 `more`); the last text came at `last_at`.
    Open { last_at: Millis },
}

/// The active message.
#[derive(Debug)]
struct Message {
    id: String,
    stream: u32,
    model: Model,
    voice: &'static str,
    /// The text, and its segments cut so far as character ranges.
    text: String,
    spans: Vec<Range<usize>>,
    /// The characters of the text already cut into segments (or skipped as unspeakable).
    scanned: usize,
    input: TextInput,
    /// The index of the next segment to request, and of the first this stream requested.
    next_index: usize,
    first_index: usize,
    /// Requested segments in order; the front one is being relayed.
    segments: VecDeque<Segment>,
    /// The audio of each segment requested so far, by index (for the heard estimate).
    audio: Vec<SegmentAudio>,
    /// The announced sample rate: set when `start` went out with the first audio.
    sample_rate: Option<u32>,
    samples_sent: u64,
    samples_persisted: u64,
    /// Protocol v2: this stream restarts the message (after the object lost it) at this sample
    /// of the message, a segment boundary.
    resumed_at: Option<u64>,
    /// Protocol v2 flow control, and the audio not yet reported played.
    flow: Option<Flow2>,
    /// Protocol v2: the socket dropped; the message waits for a `resume` until then.
    parked_until: Option<Millis>,
    /// Upstream requests retried (at most one).
    retries: u32,
    /// Whether segments may come from the segment cache, and how many did.
    cache: bool,
    cache_hits: u32,
    /// When the `speak` was accepted.
    started_at: Millis,
    /// When the first segment's response head arrived.
    first_byte_at: Option<Millis>,
    /// When its first audio was sent.
    first_audio_at: Option<Millis>,
}

impl Message {
    /// Samples the relay has of the stream beyond the client's play cursor at `now`: sent, to
    /// be sent, and waiting in the segments.
    fn ahead(&self, now: Millis) -> u64 {
        let waiting: usize = self.segments.iter().map(|s| s.pcm.len() / 2).sum();
        let rate = self.rate();
        let held = self.flow.as_ref().map_or(0, |f| {
            let cursor = f.control.cursor(now, rate, self.samples_sent);
            f.unplayed.end().saturating_sub(cursor)
        });
        held + waiting as u64
    }

    /// The stream's sample rate, or Orpheus's before it is known.
    fn rate(&self) -> u32 {
        self.sample_rate.unwrap_or(24_000)
    }

    /// With flow control: whether the client has all the audio there is (as far as the relay
    /// can tell at `now`; `reports`: the session's client reports its cursor).
    fn delivered(&self, reports: bool, now: Millis) -> bool {
        self.flow.as_ref().is_none_or(|f| {
            let end = f.unplayed.end();
            f.unplayed.unsent() == 0
                && f.control
                    .delivered(end, reports, now, self.rate(), self.samples_sent)
        })
    }

    /// The stream's `start`, once its sample rate is known.
    fn start_message(&self) -> Option<ServerMessage> {
        Some(ServerMessage::Start {
            id: self.id.clone(),
            stream: self.stream,
            sample_rate: self.sample_rate?,
            channels: 1,
            encoding: "pcm_s16le".to_owned(),
            resumed_at: self.resumed_at,
        })
    }

    /// The message's first sample in this stream.
    fn base(&self) -> u64 {
        self.resumed_at.unwrap_or(0)
    }

    /// What the listener heard, from the last play cursor reported (protocol v2).
    fn heard(&self) -> Option<Heard> {
        let flow = self.flow.as_ref()?;
        let samples = self.base() + flow.control.played();
        Some(Heard {
            samples,
            chars: heard_chars(&self.text, &self.spans, &self.audio, samples),
        })
    }

    /// All of the message, as heard once the client plays out what it has (protocol v2).
    fn heard_all(&self) -> Option<Heard> {
        self.flow.as_ref()?;
        Some(Heard {
            samples: self.base() + self.samples_sent,
            chars: self.text.chars().count() as u64,
        })
    }

    /// How the message went (protocol v2).
    fn metrics(&self) -> Option<EndMetrics> {
        let flow = self.flow.as_ref()?;
        let rate = self.sample_rate.unwrap_or(24_000);
        let since_start = |at: Option<Millis>| at.map(|at| at.saturating_sub(self.started_at));
        Some(EndMetrics {
            first_byte_ms: since_start(self.first_byte_at),
            first_audio_ms: since_start(self.first_audio_at),
            segments: (self.next_index - self.first_index) as u32,
            retries: self.retries,
            held_back_ms: flow::millis(flow.held_back_max, rate),
            cache_hits: self.cache_hits,
        })
    }

    /// The text of `span`, a range of characters of the message's text.
    fn span_text(&self, span: &Range<usize>) -> String {
        self.text
            .chars()
            .skip(span.start)
            .take(span.len())
            .collect()
    }

    /// The next segment to cut from the text not yet scanned, or `None` to wait for text (or
    /// when there is none left). Unspeakable pieces (punctuation alone) are skipped.
    fn next_cut(&mut self, config: &Config, now: Millis) -> Option<Range<usize>> {
        let end = match self.input {
            TextInput::Complete => segment::TextEnd::Complete,
            // A parked message cannot get text: its pause says nothing about the writer.
            TextInput::Open { last_at }
                if self.parked_until.is_none() && now >= last_at + config.text_flush_ms =>
            {
                segment::TextEnd::Paused
            }
            TextInput::Open { .. } => segment::TextEnd::Open,
        };
        loop {
            let span = segment::next_span(
                &self.text,
                self.scanned,
                self.spans.last().map(Range::len),
                config.limits.segment_chars as usize,
                config.first_segment_chars,
                end,
            )?;
            if segment::is_speakable(&self.span_text(&span)) {
                return Some(span);
            }
            self.scanned = span.end;
        }
    }

    /// Cuts every segment left of a text that is complete (it cuts the same whenever it is cut),
    /// so that requesting them needs no further scan of the text.
    fn cut_rest(&mut self, config: &Config, now: Millis) {
        debug_assert_eq!(self.input, TextInput::Complete);
        while let Some(span) = self.next_cut(config, now) {
            self.scanned = span.end;
            self.spans.push(span);
        }
    }

    /// When text still being written may next be cut at a word boundary, if that is to come.
    fn flush_at(&self, config: &Config, now: Millis) -> Option<Millis> {
        let TextInput::Open { last_at } = self.input else {
            return None;
        };
        if self.parked_until.is_some() {
            return None;
        }
        let at = last_at + config.text_flush_ms;
        let unscanned = self.text.chars().count() > self.scanned;
        (at > now && unscanned).then_some(at)
    }

    /// When text still being written has waited too long for more.
    fn idle_at(&self, config: &Config) -> Option<Millis> {
        match self.input {
            TextInput::Open { last_at } if self.parked_until.is_none() => {
                Some(last_at + config.text_idle_ms)
            }
            _ => None,
        }
    }

    /// Whether the audio ahead at `now` is too little to wait any longer for a segment of
    /// `chars`.
    fn needs_lead(&self, chars: usize, now: Millis) -> bool {
        flow::millis(self.ahead(now), self.rate()) < flow::lead_needed_ms(chars)
    }
}

/// A v2 message's flow: the client's reports, and the audio it has not played yet.
#[derive(Debug)]
struct Flow2 {
    control: FlowControl,
    unplayed: Unplayed,
    /// The most audio flow control held back at once, in samples.
    held_back_max: u64,
}

impl Flow2 {
    fn new(window_ms: Millis) -> Self {
        Self {
            control: FlowControl::new(window_ms),
            unplayed: Unplayed::new(),
            held_back_max: 0,
        }
    }
}

/// The socket the session serves.
#[derive(Debug)]
struct Client {
    generation: Generation,
    version: Version,
    frame_rate: FrameRate,
}

/// What a `speak` asks for beyond its text.
#[derive(Debug, Clone, Copy)]
struct SpeakOptions {
    /// Protocol v2: more text follows in `append`s.
    more: bool,
    /// Segments may come from the segment cache.
    cache: bool,
}

/// How a message ends: everything its `end` frame and log line carry.
struct Ending {
    id: String,
    stream: Option<u32>,
    reason: EndReason,
    samples: u64,
    error: Option<EndError>,
    /// When the message was accepted and when its first audio went out.
    timing: Option<(Millis, Option<Millis>)>,
    /// Protocol v2: what was heard, and how the message went.
    heard: Option<Heard>,
    metrics: Option<EndMetrics>,
}

/// The state machine for one session. See the module docs for its rules.
#[derive(Debug)]
pub struct Session {
    config: Config,
    session: String,
    /// The stored state; `None` until it could be read.
    stored: Option<Stored>,
    /// What the last write held outside the active message's record (`None` before one).
    written: Option<Stored>,
    client: Option<Client>,
    /// Protocol v2: the session's client sent a `played`, on this socket or an earlier one. A
    /// client that reports is expected to report on every stream: its silence means a stalled
    /// (half-open) link, not a client that cannot report, so audio it did not report
    /// receiving never counts as delivered.
    client_reports: bool,
    message: Option<Message>,
    next_fetch: FetchId,
    /// The time of the input being handled.
    now: Millis,
    effects: Vec<Effect>,
}

impl Session {
    /// A session serving no socket yet. `stored` is `None` when the stored state could not be
    /// read: new messages are then refused until [`Input::Loaded`] brings it.
    pub fn new(config: Config, session: &str, stored: Option<Stored>) -> Self {
        if stored.is_none() {
            let line = LogLine::new("storage").word("read", "failed");
            let mut s = Self::blank(config, session, stored);
            s.log(line);
            return s;
        }
        Self::blank(config, session, stored)
    }

    fn blank(config: Config, session: &str, stored: Option<Stored>) -> Self {
        Self {
            config,
            session: session.to_owned(),
            stored,
            written: None,
            client: None,
            client_reports: false,
            message: None,
            next_fetch: 1,
            now: 0,
            effects: Vec::new(),
        }
    }

    /// The session of a socket whose in-memory state was lost (hibernation or restart): it
    /// serves that socket again. A message its attachment says was active can no longer
    /// finish: it ends `interrupted`, once.
    pub fn restore(config: Config, attachment: Attachment, stored: Option<Stored>) -> Self {
        let mut s = Self::new(config, &attachment.session, stored);
        if attachment.closed {
            return s;
        }
        s.client = Some(Client {
            generation: attachment.generation,
            version: attachment.version,
            frame_rate: FrameRate::default(),
        });
        s.client_reports = attachment.reports;
        if let Some(record) = attachment.active {
            s.end(Ending {
                id: record.id,
                stream: Some(record.stream),
                reason: EndReason::Interrupted,
                samples: record.samples,
                error: None,
                timing: None,
                heard: None,
                metrics: None,
            });
            s.store(false);
            s.persist();
        }
        s
    }

    /// Takes the effects produced so far, in the order they must be executed.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    /// The socket the session serves, if any.
    pub fn serving(&self) -> Option<Generation> {
        self.client.as_ref().map(|c| c.generation)
    }

    /// The stream number of the active message, if any.
    pub fn active_stream(&self) -> Option<u32> {
        self.message.as_ref().map(|m| m.stream)
    }

    /// Whether the stored state is still unknown (its read failed): feed [`Input::Loaded`].
    pub fn needs_stored(&self) -> bool {
        self.stored.is_none()
    }

    /// The earliest deadline (an upstream one, or a parked message's grace); feed
    /// [`Input::Tick`] once it has passed.
    pub fn next_deadline(&self) -> Option<Millis> {
        let message = self.message.as_ref()?;
        // A client that falls silent is paced by the clock: look again when that moves.
        let estimate = message
            .flow
            .as_ref()
            .filter(|_| message.parked_until.is_none())
            .and_then(|f| f.control.next_estimate(self.now));
        message
            .segments
            .iter()
            .filter_map(|s| s.deadline(&self.config))
            .chain(message.parked_until)
            .chain(estimate)
            .chain(message.idle_at(&self.config))
            .chain(message.flush_at(&self.config, self.now))
            .min()
    }

    /// Feeds one input at time `now`. Effects accumulate until [`Session::take_effects`].
    pub fn handle(&mut self, input: Input<'_>, now: Millis) {
        self.now = now;
        match input {
            Input::Connected(generation, version) => self.on_connected(generation, version),
            Input::Text(generation, frame) => {
                if self.admit_frame(generation, Some(frame)) {
                    self.on_text(frame);
                }
            }
            Input::Binary(generation) => {
                if self.admit_frame(generation, None) {
                    self.send(&ServerMessage::error(ErrorCode::BinaryFrame));
                }
            }
            Input::Disconnected(generation) => self.on_disconnected(generation),
            Input::Loaded(stored) => {
                if self.stored.is_none() {
                    self.log(LogLine::new("storage").word("read", "recovered"));
                    self.stored = Some(*stored);
                }
            }
            Input::UpstreamHead(fetch, status) => self.on_head(fetch, status),
            Input::UpstreamBody(fetch, bytes) => self.on_body(fetch, bytes),
            Input::UpstreamEnd(fetch) => self.on_upstream_end(fetch),
            Input::UpstreamFailed(fetch) => self.on_upstream_failed(fetch),
            Input::Tick => self.on_tick(),
        }
    }

    /// A newer socket takes over: the one served so far releases everything first. A v2
    /// message is parked instead (the new socket may `resume` it) when the new socket speaks
    /// v2 too; the old socket then gets only its close.
    fn on_connected(&mut self, generation: Generation, version: Version) {
        if let Some(old) = self.serving() {
            debug_assert!(old < generation, "generations only grow");
            if !self.park(Some(version)) {
                self.finish(EndReason::Replaced, None);
            }
            self.close(orpheus_protocol::CLOSE_REPLACED, "replaced");
        }
        if version == Version::V1 && self.parked() {
            // A v1 client cannot resume what a v2 one left: it ends, heard by nobody.
            self.finish(EndReason::Interrupted, None);
        }
        self.client = Some(Client {
            generation,
            version,
            frame_rate: FrameRate::default(),
        });
        let flow = (version == Version::V2).then_some(Flow {
            window_ms: self.config.flow_window_ms as u32,
            resume_grace_ms: self.config.resume_grace_ms as u32,
        });
        let ready = ServerMessage::ready(&self.session, self.config.limits, flow);
        self.send(&ready);
        self.forget_stale_record();
        self.persist();
    }

    fn on_disconnected(&mut self, generation: Generation) {
        if self.serving() == Some(generation) {
            if !self.park(None) {
                // Nobody is listening: release the upstream, send nothing.
                self.client = None;
                self.finish(EndReason::Interrupted, None);
            }
            self.client = None;
        }
        self.persist_closed(generation);
    }

    fn speaks_v2(&self) -> bool {
        self.client
            .as_ref()
            .is_some_and(|c| c.version == Version::V2)
    }

    /// Whether the active message waits for a `resume`.
    fn parked(&self) -> bool {
        self.message
            .as_ref()
            .is_some_and(|m| m.parked_until.is_some())
    }

    /// Parks the active message of a v2 client whose socket is going (for a v2 successor, or
    /// none yet): it keeps its upstream requests and its unplayed audio, and waits for a
    /// `resume` for the grace period. Returns whether it did.
    fn park(&mut self, successor: Option<Version>) -> bool {
        let v2 = self.speaks_v2() && successor.is_none_or(|v| v == Version::V2);
        let until = self.now + self.config.resume_grace_ms;
        let Some(message) = self.message.as_mut().filter(|m| v2 && m.flow.is_some()) else {
            return false;
        };
        message.parked_until = Some(until);
        let line = LogLine::new("park")
            .id("id", &message.id)
            .num("stream", message.stream)
            .num("grace_ms", self.config.resume_grace_ms);
        self.log(line);
        self.store(true);
        true
    }

    /// A v2 client's play cursor: it frees the window and releases the audio played.
    fn on_played(&mut self, stream: u32, played: u64, received: u64, on_receipt: bool) {
        let now = self.now;
        if !self.client_reports {
            self.client_reports = true;
            self.persist();
        }
        let Some(message) = self.message.as_mut().filter(|m| m.stream == stream) else {
            return;
        };
        let Some(flow) = message.flow.as_mut() else {
            return;
        };
        // Nothing beyond what was sent can have been received, let alone played.
        let sent = message.samples_sent;
        flow.control
            .on_ack(played.min(sent), received.min(sent), on_receipt, now);
        flow.unplayed.release(flow.control.played());
        self.store(false);
        self.relay();
    }

    /// A v2 client asks to continue message `id` from `played` samples into `stream` (or, if
    /// it never learned the stream, from the start): the parked message goes on from there;
    /// one the object lost restarts at a segment boundary; one that is gone ends
    /// `interrupted`.
    fn on_resume(&mut self, id: String, stream: Option<u32>, played: u64) {
        let names = |m_id: &str, m_stream: u32| m_id == id && stream.is_none_or(|s| s == m_stream);
        if self
            .message
            .as_ref()
            .is_some_and(|m| names(&m.id, m.stream))
        {
            return self.continue_message(stream.is_none(), played);
        }
        let record = self
            .stored
            .as_ref()
            .and_then(|s| s.message.clone())
            .filter(|r| names(&r.id, r.stream));
        let grace = self.config.resume_grace_ms;
        match record {
            Some(record) if record.alive_at + grace >= self.now => self.restart(record, played),
            // Waited too long: it ends now, with what was heard.
            Some(record) => {
                let heard = record.heard(&self.config, played);
                self.log(
                    LogLine::new("resume")
                        .id("id", &id)
                        .word("result", "expired"),
                );
                self.stored.as_mut().expect("it held the record").message = None;
                self.end(Ending {
                    id,
                    stream: Some(record.stream),
                    reason: EndReason::Interrupted,
                    samples: played,
                    error: None,
                    timing: None,
                    heard: Some(heard),
                    metrics: None,
                });
                self.store(true);
            }
            None => self.answer_ended(id, stream, played),
        }
    }

    /// Answers a `resume` of a message that is neither active nor restartable: one that ended
    /// (its `end` was lost with the link) gets the same `end` again, which is not a second
    /// ending and is not logged as one; one the relay does not know (it never got the `speak`,
    /// or forgot it long ago) gets `end` `interrupted` without `heard`.
    fn answer_ended(&mut self, id: String, stream: Option<u32>, played: u64) {
        let ended = self.stored.as_ref().and_then(|s| {
            s.ended
                .iter()
                .find(|e| e.id == id && stream.is_none_or(|s| s == e.stream))
                .cloned()
        });
        let line = LogLine::new("resume").id("id", &id);
        let answer = match ended {
            Some(ended) => {
                self.log(
                    line.word("result", "ended")
                        .word("reason", ended.reason.as_str()),
                );
                ServerMessage::End {
                    id,
                    stream: Some(ended.stream),
                    reason: ended.reason,
                    samples: ended.samples,
                    error: ended.error,
                    heard: Some(ended.heard),
                    metrics: None,
                }
            }
            None => {
                self.log(line.word("result", "unknown"));
                ServerMessage::End {
                    id,
                    stream,
                    reason: EndReason::Interrupted,
                    samples: played,
                    error: None,
                    heard: None,
                    metrics: None,
                }
            }
        };
        self.send(&answer);
    }

    /// Remembers how a v2 message ended (one that has a stream and what was heard), for a
    /// `resume` that comes after.
    fn record_ending(&mut self, ending: &Ending) {
        let (Some(stream), Some(heard)) = (ending.stream, ending.heard) else {
            return;
        };
        let at = self.now;
        let Some(stored) = self.stored.as_mut() else {
            return;
        };
        stored.ended.retain(|e| e.id != ending.id);
        if stored.ended.len() >= ENDED_KEPT {
            stored.ended.pop_front();
        }
        stored.ended.push_back(EndedRecord {
            id: ending.id.clone(),
            stream,
            reason: ending.reason,
            error: ending.error.clone(),
            samples: ending.samples,
            heard,
            at,
        });
    }

    /// Continues the active message from `played`: everything held from there on goes out
    /// again (`start` first, if the client never saw it), then the rest as it comes.
    fn continue_message(&mut self, restate_start: bool, played: u64) {
        let now = self.now;
        let message = self.message.as_mut().expect("a message to continue");
        message.parked_until = None;
        if let TextInput::Open { last_at } = &mut message.input {
            // The idle time starts again: the client could not append while its link was down.
            *last_at = now;
        }
        let Some(flow) = message.flow.as_mut() else {
            return;
        };
        let played = if restate_start {
            0
        } else {
            played.min(message.samples_sent)
        };
        flow.control.rewind(played);
        flow.unplayed.rewind(played);
        let line = LogLine::new("resume")
            .id("id", &message.id)
            .num("stream", message.stream)
            .num("played", played);
        // (A `start` not sent yet goes out with the first audio.)
        if restate_start && message.first_audio_at.is_some() {
            if let Some(start) = message.start_message() {
                self.send(&start);
            }
        }
        self.log(line);
        self.store(true);
        self.relay();
    }

    /// Restarts a message the object lost, from the segment boundary at or before `played`,
    /// in a new stream whose `start` says where in the message it begins.
    fn restart(&mut self, record: MessageRecord, played: u64) {
        let Ok((model, voice)) = resolve_voice(Some(&record.voice), Some(&record.model)) else {
            return;
        };
        let (index, at) = record.boundary_at_or_before(record.base + played);
        let stored = self.stored.as_mut().expect("a record came from it");
        let stream = stored.next_stream;
        stored.next_stream = stored.next_stream.checked_add(1).unwrap_or(1);
        let spans = record.spans(&self.config);
        let scanned = spans.last().map_or(0, |s| s.end);
        let input = if record.open {
            TextInput::Open { last_at: self.now }
        } else {
            TextInput::Complete
        };
        let audio = record.segment_samples[..index]
            .iter()
            .map(|&samples| SegmentAudio {
                samples,
                complete: true,
            })
            .collect();
        self.log(
            LogLine::new("restart")
                .id("id", &record.id)
                .num("stream", stream)
                .num("segment", index as u64)
                .num("at", at),
        );
        self.message = Some(Message {
            id: record.id,
            stream,
            model,
            voice,
            text: record.text,
            spans,
            scanned,
            input,
            next_index: index,
            first_index: index,
            segments: VecDeque::new(),
            audio,
            sample_rate: None,
            samples_sent: 0,
            samples_persisted: 0,
            resumed_at: Some(at),
            flow: Some(Flow2::new(self.config.flow_window_ms)),
            parked_until: None,
            retries: 0,
            cache: !record.no_cache,
            cache_hits: 0,
            started_at: self.now,
            first_byte_at: None,
            first_audio_at: None,
        });
        let message = self.message.as_mut().expect("just set");
        if message.input == TextInput::Complete {
            // (A record of a text written in appends holds only the segments cut so far.)
            message.cut_rest(&self.config, self.now);
        }
        self.store(true);
        self.persist();
        self.request_more();
    }

    /// Forgets a stored message record older than the grace period: nobody can resume it.
    fn forget_stale_record(&mut self) {
        let (now, grace) = (self.now, self.config.resume_grace_ms);
        let idle = self.message.is_none();
        let Some(stored) = self.stored.as_mut() else {
            return;
        };
        let before = (stored.message.is_some(), stored.ended.len());
        if idle
            && stored
                .message
                .as_ref()
                .is_some_and(|r| r.alive_at + grace < now)
        {
            stored.message = None;
        }
        stored.ended.retain(|e| e.at + grace >= now);
        if before != (stored.message.is_some(), stored.ended.len()) {
            self.store(true);
        }
    }

    /// The record of the active v2 message, as of now.
    fn record(&self) -> Option<MessageRecord> {
        self.message
            .as_ref()
            .filter(|m| m.flow.is_some())
            .map(|m| MessageRecord {
                id: m.id.clone(),
                stream: m.stream,
                base: m.base(),
                text: m.text.clone(),
                model: m.model.id().to_owned(),
                voice: m.voice.to_owned(),
                segment_samples: m
                    .audio
                    .iter()
                    .take_while(|a| a.complete)
                    .map(|a| a.samples)
                    .collect(),
                spans: m.spans.clone(),
                open: matches!(m.input, TextInput::Open { .. }),
                no_cache: !m.cache,
                alive_at: self.now,
            })
    }

    /// Stores the session's state with the active v2 message's record (or none): when `always`,
    /// when the record changed, or when its liveness is a quarter of the grace period old. Only
    /// a write that changes nothing but the record goes [`Durability::Unconfirmed`].
    fn store(&mut self, always: bool) {
        let (now, grace) = (self.now, self.config.resume_grace_ms);
        let Some(stored) = self.stored.as_ref() else {
            return;
        };
        // Compared without building the record: this runs on every `played` report. A
        // complete segment's samples never change, so counting them is comparing them.
        let active = self.message.as_ref().filter(|m| m.flow.is_some());
        let changed = match (&stored.message, active) {
            (Some(old), Some(m)) => {
                old.segment_samples.len() != m.audio.iter().take_while(|a| a.complete).count()
                    || old.spans.len() != m.spans.len()
                    || old.open != matches!(m.input, TextInput::Open { .. })
                    || old.stream != m.stream
                    || old.alive_at + grace / 4 <= now
            }
            (None, None) => false,
            _ => true,
        };
        let settled = self
            .written
            .as_ref()
            .is_some_and(|written| written.same_but_message(stored));
        if always || changed || !settled {
            let record = self.record();
            if let Some(stored) = self.stored.as_mut() {
                stored.message = record;
                let durability = if always || !settled {
                    Durability::Confirmed
                } else {
                    Durability::Unconfirmed
                };
                self.written = Some(Stored {
                    message: None,
                    ..stored.clone()
                });
                let effect = Effect::Store(Box::new(stored.clone()), durability);
                self.effects.push(effect);
            }
        }
    }

    /// Whether a client frame is handled: it must come from the socket served, within the
    /// frame rate. A refused `speak` still gets its one `end`; a flood closes the socket.
    fn admit_frame(&mut self, generation: Generation, text: Option<&str>) -> bool {
        let per_second = self.config.frames_per_second;
        let now = self.now;
        let Some(client) = self.client.as_mut().filter(|c| c.generation == generation) else {
            return false;
        };
        match client.frame_rate.check(per_second, now) {
            FrameVerdict::Accept => true,
            FrameVerdict::Refuse { warn } => {
                self.refuse_frame(text, warn);
                false
            }
            FrameVerdict::Flood => {
                self.log(LogLine::new("flood").num("close", CLOSE_POLICY_VIOLATION));
                self.finish(
                    EndReason::Error,
                    Some(EndError::new(ErrorCode::RateLimited, Some(1))),
                );
                self.close(CLOSE_POLICY_VIOLATION, "flooding");
                false
            }
        }
    }

    /// A frame over the rate limit is not handled. A `speak` still gets its one `end`; other
    /// frames get one `error` per second. (Replies are bounded: twice the rate closes.)
    fn refuse_frame(&mut self, text: Option<&str>, warn: bool) {
        let parsed = text
            .filter(|frame| frame.len() <= self.config.limits.max_frame_bytes as usize)
            .map(ClientMessage::parse);
        // Text dropped from the middle of a message would leave a hole: the message ends.
        if let Some(Ok(ClientMessage::Append { id, .. })) = &parsed {
            if self.open_message(id) {
                let error = EndError::new(ErrorCode::RateLimited, Some(1));
                return self.finish(EndReason::Error, Some(error));
            }
        }
        let speak_id = parsed.and_then(|parsed| match parsed {
            Ok(ClientMessage::Speak { id, .. }) => Some(id),
            Err(e) => e.speak_id,
            Ok(_) => None,
        });
        match speak_id {
            Some(id) => self.reject(id, ErrorCode::RateLimited, Some(1)),
            None if warn => self.send(&ServerMessage::Error {
                code: ErrorCode::RateLimited,
                message: ErrorCode::RateLimited.message().to_owned(),
                retry_after_s: Some(1),
            }),
            None => {}
        }
    }

    fn on_text(&mut self, frame: &str) {
        if frame.len() > self.config.limits.max_frame_bytes as usize {
            return self.send(&ServerMessage::error(ErrorCode::FrameTooLarge));
        }
        match ClientMessage::parse(frame) {
            Err(e) => match e.speak_id {
                Some(id) => self.reject(id, e.code, None),
                None => self.send(&ServerMessage::error(e.code)),
            },
            Ok(ClientMessage::Ping) => self.send(&ServerMessage::Pong),
            Ok(
                ClientMessage::Played { .. }
                | ClientMessage::Resume { .. }
                | ClientMessage::Append { .. }
                | ClientMessage::Finish { .. },
            ) if !self.speaks_v2() => self.send(&ServerMessage::error(ErrorCode::UnknownType)),
            Ok(ClientMessage::Played {
                stream,
                played,
                received,
                on_receipt,
            }) => self.on_played(stream, played, received, on_receipt),
            Ok(ClientMessage::Resume { id, stream, played }) => self.on_resume(id, stream, played),
            Ok(ClientMessage::Append { id, text, at }) => self.on_append(&id, &text, at),
            Ok(ClientMessage::Finish { id }) => self.on_finish(&id),
            Ok(ClientMessage::Stop { id }) => {
                let matches = self
                    .message
                    .as_ref()
                    .is_some_and(|m| id.as_deref().is_none_or(|id| id == m.id));
                if matches {
                    self.finish(EndReason::Stopped, None);
                }
            }
            Ok(ClientMessage::Speak {
                id,
                text,
                voice,
                model,
                more,
                cache,
            }) => {
                // Version 1 ignores `more`, an unknown field there.
                let more = more && self.speaks_v2();
                let options = SpeakOptions { more, cache };
                self.on_speak(id, &text, voice.as_deref(), model.as_deref(), options)
            }
        }
    }

    /// Whether `id` names the active message and its text is still open.
    fn open_message(&self, id: &str) -> bool {
        self.message
            .as_ref()
            .is_some_and(|m| m.id == id && matches!(m.input, TextInput::Open { .. }))
    }

    /// More text for an open message: what the relay has not got yet (from `at`) is added,
    /// counted against the limits, and cut into segments as boundaries appear.
    fn on_append(&mut self, id: &str, text: &str, at: Option<u64>) {
        if !self.open_message(id) {
            return self.send(&ServerMessage::error(ErrorCode::MessageNotOpen));
        }
        let message = self.message.as_mut().expect("checked open");
        let have = message.text.chars().count() as u64;
        let at = at.unwrap_or(have);
        if at > have {
            return self.send(&ServerMessage::error(ErrorCode::TextGap));
        }
        let new: String = text.chars().skip((have - at) as usize).collect();
        let chars = new.chars().count() as u64;
        if have + chars > u64::from(self.config.limits.max_text_chars) {
            let error = EndError::new(ErrorCode::TextTooLong, None);
            return self.finish(EndReason::Error, Some(error));
        }
        let (now, limits) = (self.now, self.config.budget);
        if chars > 0 {
            let stored = self
                .stored
                .as_mut()
                .expect("a message runs on a known budget");
            if let Err(retry_after) = stored.budget.admit_more(&limits, chars, now) {
                let error = EndError::new(ErrorCode::RateLimited, Some(retry_after));
                return self.finish(EndReason::Error, Some(error));
            }
        }
        let message = self.message.as_mut().expect("checked open");
        message.text.push_str(&new);
        message.input = TextInput::Open { last_at: now };
        self.relay();
    }

    /// The text of an open message is complete: the rest is cut and spoken. Finishing a
    /// message whose text is already complete changes nothing (a `finish` may be sent again
    /// after a resume); any other id is an error.
    fn on_finish(&mut self, id: &str) {
        let Some(message) = self.message.as_mut().filter(|m| m.id == id) else {
            return self.send(&ServerMessage::error(ErrorCode::MessageNotOpen));
        };
        if message.input == TextInput::Complete {
            return;
        }
        message.input = TextInput::Complete;
        if !segment::is_speakable(&message.text) {
            let error = EndError::new(ErrorCode::EmptyText, None);
            return self.finish(EndReason::Error, Some(error));
        }
        message.cut_rest(&self.config, self.now);
        self.store(true);
        self.relay();
    }

    /// Checks a `speak` without touching anything: the model and voice, or why it is refused.
    fn check_speak(
        &self,
        text: &str,
        voice: Option<&str>,
        model: Option<&str>,
        more: bool,
    ) -> Result<(Model, &'static str), (ErrorCode, Option<u32>)> {
        // Text still to come may make it speakable: that is checked at `finish`.
        if !more && !segment::is_speakable(text) {
            return Err((ErrorCode::EmptyText, None));
        }
        if text.chars().count() > self.config.limits.max_text_chars as usize {
            return Err((ErrorCode::TextTooLong, None));
        }
        let resolved = resolve_voice(voice, model).map_err(|code| (code, None))?;
        if !self.config.upstream_configured {
            return Err((ErrorCode::NotConfigured, None));
        }
        if self.stored.is_none() {
            return Err((ErrorCode::RelayUnavailable, Some(1)));
        }
        Ok(resolved)
    }

    fn on_speak(
        &mut self,
        id: String,
        text: &str,
        voice: Option<&str>,
        model: Option<&str>,
        options: SpeakOptions,
    ) {
        let SpeakOptions { more, cache } = options;
        let (model, voice) = match self.check_speak(text, voice, model, more) {
            Ok(resolved) => resolved,
            // A rejected speak leaves the active message alone.
            Err((code, retry_after)) => return self.reject(id, code, retry_after),
        };
        let chars = text.chars().count() as u64;
        let (now, limits) = (self.now, self.config.budget);
        let stored = self.stored.as_mut().expect("checked");
        if let Err(retry_after) = stored.budget.admit(&limits, chars, now) {
            return self.reject(id, ErrorCode::RateLimited, Some(retry_after));
        }
        let stream = stored.next_stream;
        stored.next_stream = stored.next_stream.checked_add(1).unwrap_or(1);
        self.finish(EndReason::Superseded, None);
        let (spans, input) = if more {
            (Vec::new(), TextInput::Open { last_at: now })
        } else {
            let spans = segment::split_spans(
                text,
                self.config.limits.segment_chars as usize,
                self.config.first_segment_chars,
            );
            (spans, TextInput::Complete)
        };
        let scanned = spans.last().map_or(0, |s| s.end);
        self.log(
            LogLine::new("speak")
                .id("id", &id)
                .num("stream", stream)
                .num("chars", chars)
                .num("segments", spans.len() as u64)
                .word("voice", voice)
                .word("text", if more { "open" } else { "complete" }),
        );
        let flow = self
            .speaks_v2()
            .then(|| Flow2::new(self.config.flow_window_ms));
        self.message = Some(Message {
            id,
            stream,
            model,
            voice,
            text: text.to_owned(),
            spans,
            scanned,
            input,
            next_index: 0,
            first_index: 0,
            segments: VecDeque::new(),
            audio: Vec::new(),
            sample_rate: None,
            samples_sent: 0,
            samples_persisted: 0,
            resumed_at: None,
            flow,
            parked_until: None,
            retries: 0,
            cache,
            cache_hits: 0,
            started_at: now,
            first_byte_at: None,
            first_audio_at: None,
        });
        self.store(true);
        self.persist();
        self.request_more();
    }

    /// Ends a `speak` that was never accepted.
    fn reject(&mut self, id: String, code: ErrorCode, retry_after_s: Option<u32>) {
        self.end(Ending {
            id,
            stream: None,
            reason: EndReason::Error,
            samples: 0,
            error: Some(EndError::new(code, retry_after_s)),
            timing: None,
            heard: None,
            metrics: None,
        });
    }

    /// Keeps `1 + prefetch` requests in flight while segments remain and none has failed; with
    /// flow control (v2), a segment after the first two waits until the audio ahead of the play
    /// cursor is less than what the upstream needs to produce it. Text still being written is
    /// cut only when a segment is due, so it is as full as the text allows. Ends the message
    /// `done` once its text is complete and every segment was relayed.
    fn request_more(&mut self) {
        let now = self.now;
        let config = &self.config;
        let Some(message) = self.message.as_mut() else {
            return;
        };
        let failed = message
            .segments
            .iter()
            .any(|s| matches!(s.phase, Phase::Failed(_)));
        let cut_before = message.spans.len();
        while !failed && message.segments.len() <= config.prefetch {
            // Paced: one segment at a time, and only once the audio ahead runs low.
            let paced = message.flow.is_some() && message.next_index >= message.first_index + 2;
            if paced && !message.segments.is_empty() {
                break;
            }
            // A complete text has all its segments cut already; text still being written is
            // cut as its segments are due.
            let open = matches!(message.input, TextInput::Open { .. });
            let span = match message.spans.get(message.next_index) {
                Some(span) => span.clone(),
                None if open => match message.next_cut(config, now) {
                    Some(span) => span,
                    None => break,
                },
                None => break,
            };
            if paced && !message.needs_lead(span.len(), now) {
                break;
            }
            if message.next_index == message.spans.len() {
                message.scanned = span.end;
                message.spans.push(span.clone());
            }
            let text = message.span_text(&span);
            let fetch = self.next_fetch;
            self.next_fetch += 1;
            let segment = Segment {
                index: message.next_index as u32,
                body: upstream::request_body(message.model, message.voice, &text),
                chars: span.len() as u64,
                requested_at: now,
                pcm: Vec::new(),
                received: 0,
                format: None,
                phase: Phase::Awaiting {
                    fetch,
                    deadline: now + self.config.first_byte_timeout_ms,
                },
            };
            message.next_index += 1;
            message.audio.push(SegmentAudio {
                samples: 0,
                complete: false,
            });
            self.effects
                .push(segment.request(fetch, message.stream, message.cache));
            message.segments.push_back(segment);
        }
        // With flow control, `done` waits until the client has everything: a link that drops
        // before then can still resume the message.
        let exhausted =
            message.input == TextInput::Complete && message.next_index >= message.spans.len();
        let cut_more = message.spans.len() != cut_before;
        if message.segments.is_empty() && exhausted && message.delivered(self.client_reports, now) {
            return self.finish(EndReason::Done, None);
        }
        if cut_more {
            self.store(false);
        }
    }

    /// The segment whose request the runtime holds as `fetch`.
    fn segment_mut(&mut self, fetch: FetchId) -> Option<&mut Segment> {
        let message = self.message.as_mut()?;
        message
            .segments
            .iter_mut()
            .find(|s| s.held() == Some(fetch))
    }

    /// Marks a segment failed, aborting its request if the runtime still holds it.
    fn fail(&mut self, fetch: FetchId, error: EndError, runtime_holds_it: bool) {
        if let Some(segment) = self.segment_mut(fetch) {
            segment.phase = Phase::Failed(error);
            if runtime_holds_it {
                self.effects.push(Effect::Abort(fetch));
            }
        }
    }

    fn on_head(&mut self, fetch: FetchId, status: UpstreamStatus) {
        let (now, stall) = (self.now, self.config.stall_timeout_ms);
        if self.segment_mut(fetch).is_none() {
            return;
        }
        if let Some(message) = self.message.as_mut() {
            message.first_byte_at.get_or_insert(now);
        }
        if status.cached {
            // Served from the segment cache: no upstream request, so no characters spent.
            let chars = self.segment_mut(fetch).map_or(0, |s| s.chars);
            let message = self.message.as_mut().expect("it holds the segment");
            message.cache_hits += 1;
            let since = message.started_at;
            if let Some(stored) = self.stored.as_mut() {
                stored.budget.refund(chars, since);
            }
        }
        if (200..300).contains(&status.status) {
            let segment = self.segment_mut(fetch).expect("checked above");
            segment.phase = Phase::Streaming {
                fetch,
                stall_at: now + stall,
                wav: WavReader::new(),
            };
            return;
        }
        if self.retry_later(fetch, &status) {
            return;
        }
        let error = upstream::classify(&status).expect_err("not 2xx");
        self.log(
            LogLine::new("upstream")
                .num("status", status.status)
                .word("code", error.code.as_str()),
        );
        // The runtime has already read what it reads of an error body, and let go.
        self.fail(fetch, error, false);
        self.relay();
    }

    /// Schedules the one retry a message may have: for 429 or 503, before any of its audio was
    /// sent, when `retry-after` (default 1 s) is short enough. The tick at the retry time starts
    /// a new request for the segment.
    fn retry_later(&mut self, fetch: FetchId, status: &UpstreamStatus) -> bool {
        let wait_s = status
            .retry_after_s
            .unwrap_or(upstream::DEFAULT_RETRY_AFTER_S);
        let (now, max_wait) = (self.now, self.config.max_retry_wait_s);
        let Some(message) = self.message.as_mut() else {
            return false;
        };
        let allowed = matches!(status.status, 429 | 503)
            && message.retries == 0
            && message.samples_sent == 0
            && wait_s <= max_wait;
        if !allowed {
            return false;
        }
        message.retries += 1;
        let segment = self.segment_mut(fetch).expect("a live fetch");
        // The error response is over, and the retry is not started yet: nothing to abort.
        segment.phase = Phase::Retrying {
            at: now + u64::from(wait_s) * 1000,
        };
        self.log(
            LogLine::new("upstream")
                .num("status", status.status)
                .num("retry_in_s", wait_s),
        );
        true
    }

    fn on_body(&mut self, fetch: FetchId, bytes: &[u8]) {
        let deadline = self.now + self.config.stall_timeout_ms;
        let Some(segment) = self.segment_mut(fetch) else {
            return;
        };
        let Phase::Streaming { stall_at, wav, .. } = &mut segment.phase else {
            return;
        };
        *stall_at = deadline;
        let before = segment.pcm.len();
        let pushed = wav.push(bytes, &mut segment.pcm);
        segment.received += (segment.pcm.len() - before) as u64;
        segment.format = segment.format.or(wav.format());
        let (index, samples) = (segment.index as usize, segment.received / 2);
        if let Some(message) = self.message.as_mut() {
            message.audio[index].samples = samples;
        }
        if let Err(e) = pushed {
            self.bad_audio(fetch, e, true);
        }
        self.relay();
    }

    fn bad_audio(&mut self, fetch: FetchId, error: crate::wav::WavError, runtime_holds_it: bool) {
        self.log(LogLine::new("upstream").word("wav", error.name()));
        let error = EndError::new(ErrorCode::UpstreamBadAudio, None);
        self.fail(fetch, error, runtime_holds_it);
    }

    fn on_upstream_end(&mut self, fetch: FetchId) {
        let Some(segment) = self.segment_mut(fetch) else {
            return;
        };
        let finished = match &segment.phase {
            Phase::Streaming { wav, .. } => wav.finish(),
            _ => Err(crate::wav::WavError::Truncated),
        };
        let index = segment.index as usize;
        match finished {
            Ok(()) => {
                segment.phase = Phase::Complete;
                let message = self.message.as_mut().expect("it holds the segment");
                message.audio[index].complete = true;
                self.store(false);
            }
            Err(e) => self.bad_audio(fetch, e, false),
        }
        self.relay();
    }

    fn on_upstream_failed(&mut self, fetch: FetchId) {
        let Some(segment) = self.segment_mut(fetch) else {
            return;
        };
        let code = match segment.phase {
            Phase::Streaming { .. } => ErrorCode::UpstreamInterrupted,
            _ => ErrorCode::UpstreamUnavailable,
        };
        self.fail(fetch, EndError::new(code, None), false);
        self.relay();
    }

    fn on_tick(&mut self) {
        let now = self.now;
        let first_byte = self.config.first_byte_timeout_ms;
        let Some(message) = self.message.as_ref() else {
            return;
        };
        if message.parked_until.is_some_and(|until| until <= now) {
            self.log(
                LogLine::new("resume")
                    .id("id", &message.id)
                    .word("result", "expired"),
            );
            return self.finish(EndReason::Interrupted, None);
        }
        if message
            .idle_at(&self.config)
            .is_some_and(|until| until <= now)
        {
            let error = EndError::new(ErrorCode::TextTimeout, None);
            return self.finish(EndReason::Error, Some(error));
        }
        let due: Vec<(usize, Option<FetchId>)> = message
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.deadline(&self.config).is_some_and(|at| at <= now))
            .map(|(i, s)| (i, s.held()))
            .collect();
        for (index, held) in due {
            match held {
                // A request out of time: timed out.
                Some(fetch) => {
                    self.fail(fetch, EndError::new(ErrorCode::UpstreamTimeout, None), true)
                }
                // A retry whose time has come.
                None => {
                    let fetch = self.next_fetch;
                    self.next_fetch += 1;
                    let message = self.message.as_mut().expect("checked above");
                    let (stream, cache) = (message.stream, message.cache);
                    let segment = &mut message.segments[index];
                    segment.requested_at = now;
                    segment.phase = Phase::Awaiting {
                        fetch,
                        deadline: now + first_byte,
                    };
                    self.effects.push(segment.request(fetch, stream, cache));
                }
            }
        }
        self.relay();
    }

    /// Relays what the front segment has, in order, moving on to the next segment when it is
    /// done; ends the message on the first failed segment whose turn has come.
    fn relay(&mut self) {
        loop {
            let Some(message) = self.message.as_mut() else {
                return;
            };
            let Some(front) = message.segments.front_mut() else {
                break;
            };
            if let Phase::Failed(error) = &front.phase {
                let error = error.clone();
                return self.finish(EndReason::Error, Some(error));
            }
            if !self.flush_front() {
                return;
            }
            if !self.next_segment() {
                break;
            }
        }
        // With flow control, audio already out of the segments may be waiting for the window.
        self.send_unplayed();
        self.request_more();
    }

    /// Releases the front segment's PCM, holding back its last few milliseconds while more may
    /// follow so that its final frame can carry the flag. Without flow control it goes straight
    /// out; with it, into the unplayed audio, which goes out as far as the window allows.
    /// Returns false if the message ended.
    fn flush_front(&mut self) -> bool {
        let hold_back = self.config.hold_back_samples * 2;
        let message = self.message.as_mut().expect("a message to flush");
        let front = message.segments.front_mut().expect("a front segment");
        let complete = matches!(front.phase, Phase::Complete);
        let ready = front
            .pcm
            .len()
            .saturating_sub(if complete { 0 } else { hold_back });
        if ready > 0 {
            let rate = front.format.expect("PCM follows the format").sample_rate;
            if message
                .sample_rate
                .is_some_and(|announced| announced != rate)
            {
                let error = EndError::new(ErrorCode::UpstreamBadAudio, None);
                self.finish(EndReason::Error, Some(error));
                return false;
            }
            message.sample_rate = Some(rate);
            // Whole-slice moves: what is held back (a sample) stays, the rest goes.
            let held = front.pcm.split_off(ready);
            let pcm = std::mem::replace(&mut front.pcm, held);
            let last = complete && front.pcm.is_empty();
            match message.flow.as_mut() {
                Some(flow) => flow.unplayed.push(&pcm, last),
                None => self.send_now(&pcm, last),
            }
        }
        self.send_unplayed();
        true
    }

    /// Drops the front segment once all its audio is out, recording the progress. Returns
    /// whether it did.
    fn next_segment(&mut self) -> bool {
        let message = self.message.as_mut().expect("a message");
        let done = message
            .segments
            .front()
            .is_some_and(|s| matches!(s.phase, Phase::Complete) && s.pcm.is_empty());
        if !done {
            return false;
        }
        message.segments.pop_front();
        if message.samples_persisted != message.samples_sent {
            message.samples_persisted = message.samples_sent;
            self.persist();
        }
        true
    }

    /// Sends PCM of a message without flow control, in frames from the next sample on.
    fn send_now(&mut self, pcm: &[u8], last_in_segment: bool) {
        let max = self.config.max_frame_pcm_bytes & !1;
        let message = self.message.as_mut().expect("audio needs a message");
        let pieces = pcm.chunks(max).count();
        let mut offset = message.samples_sent;
        let pieces = pcm
            .chunks(max)
            .enumerate()
            .map(|(i, chunk)| {
                let piece = Piece {
                    offset,
                    flags: if last_in_segment && i + 1 == pieces {
                        LAST_IN_SEGMENT
                    } else {
                        0
                    },
                    pcm: chunk.to_vec(),
                };
                offset += (chunk.len() / 2) as u64;
                piece
            })
            .collect();
        message.samples_sent = offset;
        self.send_pieces(pieces);
    }

    /// Sends the unplayed audio of a v2 message as far as flow control allows: nothing while
    /// the message is parked.
    fn send_unplayed(&mut self) {
        let max = self.config.max_frame_pcm_bytes & !1;
        let (now, serving) = (self.now, self.serving().is_some());
        let Some(message) = self.message.as_mut() else {
            return;
        };
        let (Some(rate), Some(flow)) = (message.sample_rate, message.flow.as_mut()) else {
            return;
        };
        let open = serving && message.parked_until.is_none();
        let allowed = if open {
            flow.control.allowance(flow.unplayed.cursor(), rate, now)
        } else {
            0
        };
        let max = match flow.control.paced_frame(rate, now) {
            Some(frame) => max.min(frame as usize * 2),
            None => max,
        };
        let pieces = flow.unplayed.take(allowed, max);
        let held = flow.unplayed.unsent();
        flow.held_back_max = flow.held_back_max.max(held);
        if pieces.is_empty() {
            return;
        }
        flow.control
            .on_sent(flow.unplayed.cursor(), held > 0, rate, now);
        message.samples_sent = message.samples_sent.max(flow.unplayed.cursor());
        self.send_pieces(pieces);
    }

    /// Sends audio frames of the active message, `start` first if none went out yet.
    fn send_pieces(&mut self, pieces: Vec<Piece>) {
        let now = self.now;
        let message = self.message.as_mut().expect("audio needs a message");
        let stream = message.stream;
        let start = message
            .first_audio_at
            .is_none()
            .then(|| message.start_message())
            .flatten();
        message.first_audio_at.get_or_insert(now);
        if let Some(start) = start {
            self.send(&start);
        }
        let Some(generation) = self.serving() else {
            return;
        };
        self.effects.extend(pieces.into_iter().map(|piece| {
            let frame = AudioFrame {
                flags: piece.flags,
                stream,
                offset: piece.offset as u32,
                pcm: &piece.pcm,
            };
            Effect::SendBinary(generation, frame.encode())
        }));
    }

    /// Ends the active message, if there is one: aborts its upstream requests, sends its `end`,
    /// and persists that nothing is active. Idempotent by construction: the message is taken
    /// out first, so a second call finds nothing to end.
    pub fn finish(&mut self, reason: EndReason, error: Option<EndError>) {
        let Some(message) = self.message.take() else {
            return;
        };
        for fetch in message.segments.iter().filter_map(Segment::held) {
            self.effects.push(Effect::Abort(fetch));
        }
        let heard = match reason {
            // The client has all of it, and plays it out.
            EndReason::Done => message.heard_all(),
            _ => message.heard(),
        };
        let metrics = message.metrics();
        self.end(Ending {
            id: message.id,
            stream: Some(message.stream),
            reason,
            samples: message.samples_sent,
            error,
            timing: Some((message.started_at, message.first_audio_at)),
            heard,
            metrics,
        });
        self.store(true);
        self.persist();
    }

    /// Logs a message's end and sends its `end` frame: the one place both are built. A v2
    /// ending is remembered, for a `resume` that comes after.
    fn end(&mut self, ending: Ending) {
        self.record_ending(&ending);
        let mut line = LogLine::new("end").id("id", &ending.id);
        if let Some(stream) = ending.stream {
            line = line.num("stream", stream);
        }
        line = line
            .word("reason", ending.reason.as_str())
            .num("samples", ending.samples);
        if let Some((started, first_audio)) = ending.timing {
            line = line.num("ms", self.now.saturating_sub(started));
            if let Some(at) = first_audio {
                line = line.num("first_audio_ms", at.saturating_sub(started));
            }
        }
        if let Some(e) = &ending.error {
            line = line.word("code", e.code.as_str());
        }
        if let Some(heard) = &ending.heard {
            line = line
                .num("heard_samples", heard.samples)
                .num("heard_chars", heard.chars);
        }
        self.log(line);
        self.send(&ServerMessage::End {
            id: ending.id,
            stream: ending.stream,
            reason: ending.reason,
            samples: ending.samples,
            error: ending.error,
            heard: ending.heard,
            metrics: ending.metrics,
        });
    }

    /// Closes the socket served, which the session then no longer serves.
    fn close(&mut self, code: u16, reason: &'static str) {
        if let Some(client) = self.client.take() {
            self.persist_closed(client.generation);
            self.effects.push(Effect::Close {
                socket: client.generation,
                code,
                reason,
            });
        }
    }

    fn send(&mut self, message: &ServerMessage) {
        if let Some(generation) = self.serving() {
            self.effects
                .push(Effect::SendText(generation, message.to_json()));
        }
    }

    fn log(&mut self, line: LogLine) {
        self.effects.push(Effect::Log(line));
    }

    /// Stores the served socket's attachment: which message is active, and how far it got.
    fn persist(&mut self) {
        let Some(generation) = self.serving() else {
            return;
        };
        let active = self.message.as_ref().map(|m| ActiveRecord {
            id: m.id.clone(),
            stream: m.stream,
            samples: m.samples_persisted,
        });
        let version = self.client.as_ref().map_or(Version::V1, |c| c.version);
        self.effects.push(Effect::Persist(
            generation,
            Attachment {
                session: self.session.clone(),
                generation,
                version,
                active,
                closed: false,
                reports: self.client_reports,
            },
        ));
    }

    /// Marks a socket the session no longer serves as closed, so it is never served again.
    fn persist_closed(&mut self, generation: Generation) {
        self.effects.push(Effect::Persist(
            generation,
            Attachment {
                session: self.session.clone(),
                generation,
                version: Version::default(),
                active: None,
                closed: true,
                reports: false,
            },
        ));
    }
}
