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

use std::collections::VecDeque;

use orpheus_protocol::{
    resolve_voice, AudioFrame, ClientMessage, EndError, EndReason, ErrorCode, Limits, Model,
    ServerMessage, CLOSE_POLICY_VIOLATION, LAST_IN_SEGMENT,
};
use serde::{Deserialize, Serialize};

use crate::budget::{BudgetLimits, SpeechBudget};
use crate::frame_rate::{FrameRate, FrameVerdict};
use crate::log::LogLine;
use crate::segment;
use crate::time::Millis;
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
            hold_back_samples: 240,
            max_frame_pcm_bytes: 16 * 1024,
            budget: BudgetLimits::default(),
            frames_per_second: 20,
            max_retry_wait_s: 5,
        }
    }
}

/// What happened, fed to [`Session::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// A new socket was accepted; it replaces the socket the session served, if any.
    Connected(Generation),
    /// A text frame from a socket.
    Text(Generation, &'a str),
    /// A binary frame from a socket.
    Binary(Generation),
    /// A socket closed or failed.
    Disconnected(Generation),
    /// The session's stored state was read (after an earlier read failed).
    Loaded(Stored),
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
    /// Store the session's state (survives reconnection and eviction).
    Store(Stored),
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
}

impl Default for Stored {
    fn default() -> Self {
        Self {
            budget: SpeechBudget::default(),
            next_stream: 1,
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
    /// The active message, if any.
    pub active: Option<ActiveRecord>,
    /// Set once the session no longer serves this socket: its late frames are ignored.
    pub closed: bool,
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

/// The active message.
#[derive(Debug)]
struct Message {
    id: String,
    stream: u32,
    model: Model,
    voice: &'static str,
    /// Segments not yet requested.
    queued: VecDeque<String>,
    /// Segments requested so far.
    requested: u32,
    /// Requested segments in order; the front one is being relayed.
    segments: VecDeque<Segment>,
    /// The announced sample rate: set when `start` went out with the first audio.
    sample_rate: Option<u32>,
    samples_sent: u64,
    samples_persisted: u64,
    /// Whether the message's one upstream retry was used.
    retried: bool,
    /// When the `speak` was accepted.
    started_at: Millis,
    /// When its first audio was sent.
    first_audio_at: Option<Millis>,
}

/// The socket the session serves.
#[derive(Debug)]
struct Client {
    generation: Generation,
    frame_rate: FrameRate,
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
}

/// The state machine for one session. See the module docs for its rules.
#[derive(Debug)]
pub struct Session {
    config: Config,
    session: String,
    /// The stored state; `None` until it could be read.
    stored: Option<Stored>,
    client: Option<Client>,
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
            client: None,
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
            frame_rate: FrameRate::default(),
        });
        if let Some(record) = attachment.active {
            s.end(Ending {
                id: record.id,
                stream: Some(record.stream),
                reason: EndReason::Interrupted,
                samples: record.samples,
                error: None,
                timing: None,
            });
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

    /// The earliest upstream deadline; feed [`Input::Tick`] once it has passed.
    pub fn next_deadline(&self) -> Option<Millis> {
        let message = self.message.as_ref()?;
        message
            .segments
            .iter()
            .filter_map(|s| s.deadline(&self.config))
            .min()
    }

    /// Feeds one input at time `now`. Effects accumulate until [`Session::take_effects`].
    pub fn handle(&mut self, input: Input<'_>, now: Millis) {
        self.now = now;
        match input {
            Input::Connected(generation) => self.on_connected(generation),
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
                    self.stored = Some(stored);
                }
            }
            Input::UpstreamHead(fetch, status) => self.on_head(fetch, status),
            Input::UpstreamBody(fetch, bytes) => self.on_body(fetch, bytes),
            Input::UpstreamEnd(fetch) => self.on_upstream_end(fetch),
            Input::UpstreamFailed(fetch) => self.on_upstream_failed(fetch),
            Input::Tick => self.on_tick(),
        }
    }

    /// A newer socket takes over: the one served so far releases everything first.
    fn on_connected(&mut self, generation: Generation) {
        if let Some(old) = self.serving() {
            self.finish(EndReason::Replaced, None);
            self.close(orpheus_protocol::CLOSE_REPLACED, "replaced");
            debug_assert!(old < generation, "generations only grow");
        }
        self.client = Some(Client {
            generation,
            frame_rate: FrameRate::default(),
        });
        let ready = ServerMessage::ready(&self.session, self.config.limits);
        self.send(&ready);
        self.persist();
    }

    fn on_disconnected(&mut self, generation: Generation) {
        if self.serving() == Some(generation) {
            // Nobody is listening: release the upstream, send nothing.
            self.client = None;
            self.finish(EndReason::Interrupted, None);
        }
        self.persist_closed(generation);
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
        let speak_id = text
            .filter(|frame| frame.len() <= self.config.limits.max_frame_bytes as usize)
            .and_then(|frame| match ClientMessage::parse(frame) {
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
            }) => self.on_speak(id, &text, voice.as_deref(), model.as_deref()),
        }
    }

    /// Checks a `speak` without touching anything: the model and voice, or why it is refused.
    fn check_speak(
        &self,
        text: &str,
        voice: Option<&str>,
        model: Option<&str>,
    ) -> Result<(Model, &'static str), (ErrorCode, Option<u32>)> {
        if !segment::is_speakable(text) {
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

    fn on_speak(&mut self, id: String, text: &str, voice: Option<&str>, model: Option<&str>) {
        let (model, voice) = match self.check_speak(text, voice, model) {
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
        let snapshot = stored.clone();
        self.effects.push(Effect::Store(snapshot));
        self.finish(EndReason::Superseded, None);
        let segments = segment::split(
            text,
            self.config.limits.segment_chars as usize,
            self.config.first_segment_chars,
        );
        self.log(
            LogLine::new("speak")
                .id("id", &id)
                .num("stream", stream)
                .num("chars", chars)
                .num("segments", segments.len() as u64)
                .word("voice", voice),
        );
        self.message = Some(Message {
            id,
            stream,
            model,
            voice,
            queued: segments.into(),
            requested: 0,
            segments: VecDeque::new(),
            sample_rate: None,
            samples_sent: 0,
            samples_persisted: 0,
            retried: false,
            started_at: now,
            first_audio_at: None,
        });
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
        });
    }

    /// Keeps `1 + prefetch` requests in flight while segments remain and none has failed; ends
    /// the message `done` once every segment was relayed.
    fn request_more(&mut self) {
        let now = self.now;
        let Some(message) = self.message.as_mut() else {
            return;
        };
        let failed = message
            .segments
            .iter()
            .any(|s| matches!(s.phase, Phase::Failed(_)));
        while !failed && message.segments.len() <= self.config.prefetch {
            let Some(text) = message.queued.pop_front() else {
                break;
            };
            let fetch = self.next_fetch;
            self.next_fetch += 1;
            let segment = Segment {
                index: message.requested,
                body: upstream::request_body(message.model, message.voice, &text),
                requested_at: now,
                pcm: Vec::new(),
                received: 0,
                format: None,
                phase: Phase::Awaiting {
                    fetch,
                    deadline: now + self.config.first_byte_timeout_ms,
                },
            };
            message.requested += 1;
            self.effects.push(Effect::Fetch(FetchRequest {
                fetch,
                stream: message.stream,
                segment: segment.index,
                body: segment.body.clone(),
            }));
            message.segments.push_back(segment);
        }
        if message.segments.is_empty() && message.queued.is_empty() {
            self.finish(EndReason::Done, None);
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
            && !message.retried
            && message.samples_sent == 0
            && wait_s <= max_wait;
        if !allowed {
            return false;
        }
        message.retried = true;
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
        match finished {
            Ok(()) => segment.phase = Phase::Complete,
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
                    let segment = &mut message.segments[index];
                    segment.requested_at = now;
                    segment.phase = Phase::Awaiting {
                        fetch,
                        deadline: now + first_byte,
                    };
                    self.effects.push(Effect::Fetch(FetchRequest {
                        fetch,
                        stream: message.stream,
                        segment: segment.index,
                        body: segment.body.clone(),
                    }));
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
        self.request_more();
    }

    /// Sends the front segment's PCM, holding back its last few milliseconds while more may
    /// follow so that its final frame can carry the flag. Returns false if the message ended.
    fn flush_front(&mut self) -> bool {
        let hold_back = self.config.hold_back_samples * 2;
        let message = self.message.as_mut().expect("a message to flush");
        let front = message.segments.front_mut().expect("a front segment");
        let complete = matches!(front.phase, Phase::Complete);
        let ready = front
            .pcm
            .len()
            .saturating_sub(if complete { 0 } else { hold_back });
        if ready == 0 {
            return true;
        }
        let rate = front.format.expect("PCM follows the format").sample_rate;
        match message.sample_rate {
            Some(announced) if announced != rate => {
                let error = EndError::new(ErrorCode::UpstreamBadAudio, None);
                self.finish(EndReason::Error, Some(error));
                return false;
            }
            Some(_) => {}
            None => {
                message.sample_rate = Some(rate);
                let start = ServerMessage::Start {
                    id: message.id.clone(),
                    stream: message.stream,
                    sample_rate: rate,
                    channels: 1,
                    encoding: "pcm_s16le".to_owned(),
                };
                self.send(&start);
            }
        }
        let message = self.message.as_mut().expect("still active");
        let front = message.segments.front_mut().expect("still there");
        let pcm: Vec<u8> = front.pcm.drain(..ready).collect();
        let last = complete && front.pcm.is_empty();
        self.send_audio(&pcm, last);
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

    fn send_audio(&mut self, pcm: &[u8], last_in_segment: bool) {
        let max = self.config.max_frame_pcm_bytes & !1;
        let now = self.now;
        let message = self
            .message
            .as_mut()
            .expect("audio needs an active message");
        message.first_audio_at.get_or_insert(now);
        let pieces = pcm.chunks(max).count();
        let mut frames = Vec::with_capacity(pieces);
        for (i, piece) in pcm.chunks(max).enumerate() {
            let frame = AudioFrame {
                flags: if last_in_segment && i + 1 == pieces {
                    LAST_IN_SEGMENT
                } else {
                    0
                },
                stream: message.stream,
                offset: message.samples_sent as u32,
                pcm: piece,
            };
            message.samples_sent += (piece.len() / 2) as u64;
            frames.push(frame.encode());
        }
        if let Some(generation) = self.serving() {
            self.effects.extend(
                frames
                    .into_iter()
                    .map(|frame| Effect::SendBinary(generation, frame)),
            );
        }
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
        self.end(Ending {
            id: message.id,
            stream: Some(message.stream),
            reason,
            samples: message.samples_sent,
            error,
            timing: Some((message.started_at, message.first_audio_at)),
        });
        self.persist();
    }

    /// Logs a message's end and sends its `end` frame: the one place both are built.
    fn end(&mut self, ending: Ending) {
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
        self.log(line);
        self.send(&ServerMessage::End {
            id: ending.id,
            stream: ending.stream,
            reason: ending.reason,
            samples: ending.samples,
            error: ending.error,
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
        self.effects.push(Effect::Persist(
            generation,
            Attachment {
                session: self.session.clone(),
                generation,
                active,
                closed: false,
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
                active: None,
                closed: true,
            },
        ));
    }
}
