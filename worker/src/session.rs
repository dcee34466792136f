//! The session state machine: one per connected socket, the single owner of the active message.
//!
//! It is sans-IO: the Durable Object feeds it [`Input`]s with the current time and executes the
//! [`Effect`]s it returns (send a frame, start or abort an upstream request, persist the socket
//! attachment, close). It never touches a socket, a timer or the network itself, so every rule
//! below is tested on the host:
//!
//! - at most one message is active; a new `speak` ends the old one (`superseded`) first;
//! - every `speak` received gets exactly one `end`, and no frame of its stream follows it;
//! - every way a message ends goes through [`Session::finish`], which is idempotent: it aborts the
//!   message's upstream requests, sends `end`, and persists that nothing is active;
//! - audio is relayed in segment order with contiguous sample offsets, whatever order the
//!   upstream responses arrive in.

use std::collections::VecDeque;

use orpheus_protocol::{
    resolve_voice, AudioFrame, ClientMessage, EndError, EndReason, ErrorCode, Limits, Model,
    ServerMessage, LAST_IN_SEGMENT,
};
use serde::{Deserialize, Serialize};

use crate::budget::{BudgetLimits, FrameRate, FrameVerdict, SpeechBudget};
use crate::log::LogLine;
use crate::segment;
use crate::upstream::{self, UpstreamStatus};
use crate::wav::WavReader;

/// Identifies one upstream request for the life of a session.
pub type FetchId = u64;

/// Milliseconds since the Unix epoch, as the runtime's clock reports them.
pub type Millis = u64;

/// WebSocket close code for a client that keeps flooding.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

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
    /// A text frame from the client.
    Text(&'a str),
    /// A binary frame from the client, of this many bytes.
    Binary(usize),
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
    /// Another connection to the same session replaces this one.
    Replaced,
    /// The client's socket closed or failed.
    Disconnected,
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
    /// Send a JSON text frame.
    SendText(String),
    /// Send a binary audio frame.
    SendBinary(Vec<u8>),
    /// Start an upstream request.
    Fetch(FetchRequest),
    /// Abort an upstream request and release it.
    Abort(FetchId),
    /// Store this as the socket's attachment (survives hibernation).
    Persist(Attachment),
    /// Store the session's budget (survives reconnection and eviction).
    SaveBudget(SpeechBudget),
    /// Close the socket.
    Close {
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: &'static str,
    },
    /// A log line: typed fields only (ids, counts, codes, timings), never text, keys or tickets.
    Log(LogLine),
}

/// What must survive hibernation, stored on the socket (well under 2 KiB).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The session id.
    pub session: String,
    /// The next stream number to hand out.
    pub next_stream: u32,
    /// The active message, if any.
    pub active: Option<ActiveRecord>,
    /// Set once the socket was replaced or closed: its late frames are ignored.
    pub closed: bool,
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

/// One upstream request of the active message.
#[derive(Debug)]
struct Fetch {
    id: FetchId,
    /// Groq's JSON request body, kept for the one allowed retry.
    body: String,
    /// Set while a retry waits for this time before being requested.
    retry_at: Option<Millis>,
    /// Index of the segment within the message.
    segment: u32,
    wav: WavReader,
    /// PCM received but not yet sent.
    pcm: Vec<u8>,
    responded: bool,
    body_done: bool,
    /// Set when the request failed; reported when the segment's turn comes.
    failed: Option<EndError>,
    /// The runtime no longer holds this request (its body ended, it failed, or it was aborted).
    released: bool,
    deadline: Millis,
}

impl Fetch {
    /// The effect that starts this request (first time, or its retry).
    fn request(&self, stream: u32) -> Effect {
        Effect::Fetch(FetchRequest {
            fetch: self.id,
            stream,
            segment: self.segment,
            body: self.body.clone(),
        })
    }

    /// Whether the request's outcome is known: later upstream input for it is ignored.
    fn settled(&self) -> bool {
        self.body_done || self.failed.is_some()
    }
}

#[derive(Debug)]
struct Active {
    id: String,
    stream: u32,
    model: Model,
    voice: &'static str,
    /// Segments not yet requested.
    queued: VecDeque<String>,
    /// Segments requested so far.
    requested: u32,
    /// Requests in segment order; the front one is being relayed.
    fetches: VecDeque<Fetch>,
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

/// The state machine for one client socket. See the module docs for its rules.
#[derive(Debug)]
pub struct Session {
    config: Config,
    session: String,
    next_stream: u32,
    next_fetch: FetchId,
    active: Option<Active>,
    open: bool,
    budget: SpeechBudget,
    frame_rate: FrameRate,
    /// The time of the input being handled.
    now: Millis,
    effects: Vec<Effect>,
}

impl Session {
    /// A session for a newly accepted socket, spending from the session's `budget`: emits
    /// `ready` and the initial attachment.
    pub fn open(config: Config, session: &str, next_stream: u32, budget: SpeechBudget) -> Self {
        let mut s = Self::new(config, session, next_stream, budget);
        let ready = ServerMessage::ready(session, s.config.limits);
        s.send(&ready);
        s.persist();
        s
    }

    /// The session of a socket whose in-memory state was lost (hibernation or restart).
    /// A message the attachment says was active can no longer finish: it ends `interrupted`.
    pub fn restore(config: Config, attachment: Attachment, budget: SpeechBudget) -> Self {
        let mut s = Self::new(config, &attachment.session, attachment.next_stream, budget);
        s.open = !attachment.closed;
        if let Some(record) = attachment.active {
            s.log(
                LogLine::new("end")
                    .id("id", &record.id)
                    .num("stream", record.stream)
                    .word("reason", EndReason::Interrupted.as_str())
                    .num("samples", record.samples),
            );
            s.send(&ServerMessage::End {
                id: record.id,
                stream: Some(record.stream),
                reason: EndReason::Interrupted,
                samples: record.samples,
                error: None,
            });
            s.persist();
        }
        s
    }

    fn new(config: Config, session: &str, next_stream: u32, budget: SpeechBudget) -> Self {
        Self {
            config,
            session: session.to_owned(),
            next_stream: next_stream.max(1),
            next_fetch: 1,
            active: None,
            open: true,
            budget,
            frame_rate: FrameRate::default(),
            now: 0,
            effects: Vec::new(),
        }
    }

    /// Takes the effects produced so far, in the order they must be executed.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// What the session has spent (carried over to a replacing connection).
    pub fn budget(&self) -> &SpeechBudget {
        &self.budget
    }

    /// The session id this socket belongs to.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    /// The stream number of the active message, if any.
    pub fn active_stream(&self) -> Option<u32> {
        self.active.as_ref().map(|a| a.stream)
    }

    /// Whether the socket is still open from the session's point of view.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The stream number the next accepted message will get (carried over on replacement).
    pub fn next_stream(&self) -> u32 {
        self.next_stream
    }

    /// The earliest upstream deadline; feed [`Input::Tick`] once it has passed.
    pub fn next_deadline(&self) -> Option<Millis> {
        let active = self.active.as_ref()?;
        active
            .fetches
            .iter()
            .filter(|f| !f.settled())
            .map(|f| f.deadline)
            .min()
    }

    /// Feeds one input at time `now`. Effects accumulate until [`Session::take_effects`].
    pub fn handle(&mut self, input: Input<'_>, now: Millis) {
        self.now = now;
        if matches!(input, Input::Text(_) | Input::Binary(_)) {
            if !self.open {
                return;
            }
            match self.frame_rate.check(self.config.frames_per_second, now) {
                FrameVerdict::Accept => {}
                FrameVerdict::Refuse { warn } => return self.refuse_frame(&input, warn),
                FrameVerdict::Flood => {
                    self.log(LogLine::new("flood").num("close", CLOSE_POLICY_VIOLATION));
                    self.finish(
                        EndReason::Error,
                        Some(EndError::new(ErrorCode::RateLimited, Some(1))),
                    );
                    return self.close(CLOSE_POLICY_VIOLATION, "flooding");
                }
            }
        }
        match input {
            Input::Text(frame) => self.on_text(frame, now),
            Input::Binary(_) => self.send(&ServerMessage::error(ErrorCode::BinaryFrame)),
            Input::UpstreamHead(fetch, status) => self.on_head(fetch, status, now),
            Input::UpstreamBody(fetch, bytes) => self.on_body(fetch, bytes, now),
            Input::UpstreamEnd(fetch) => self.on_upstream_end(fetch, now),
            Input::UpstreamFailed(fetch) => self.on_upstream_failed(fetch, now),
            Input::Tick => self.on_tick(now),
            Input::Replaced => {
                self.finish(EndReason::Replaced, None);
                self.close(orpheus_protocol::CLOSE_REPLACED, "replaced");
            }
            Input::Disconnected => {
                // Nobody is listening: release the upstream, persist, send nothing.
                self.open = false;
                self.finish(EndReason::Interrupted, None);
            }
        }
    }

    /// A frame over the rate limit is not handled. A `speak` still gets its one `end`; other
    /// frames get one `error` per second. (Replies are bounded: twice the rate closes.)
    fn refuse_frame(&mut self, input: &Input<'_>, warn: bool) {
        let speak_id = match input {
            Input::Text(frame) if frame.len() <= self.config.limits.max_frame_bytes as usize => {
                match ClientMessage::parse(frame) {
                    Ok(ClientMessage::Speak { id, .. }) => Some(id),
                    Err(e) => e.speak_id,
                    Ok(_) => None,
                }
            }
            _ => None,
        };
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

    fn on_text(&mut self, frame: &str, now: Millis) {
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
                let targets_active = self
                    .active
                    .as_ref()
                    .is_some_and(|a| id.as_deref().is_none_or(|id| id == a.id));
                if targets_active {
                    self.finish(EndReason::Stopped, None);
                }
            }
            Ok(ClientMessage::Speak {
                id,
                text,
                voice,
                model,
            }) => self.on_speak(id, &text, voice.as_deref(), model.as_deref(), now),
        }
    }

    fn on_speak(
        &mut self,
        id: String,
        text: &str,
        voice: Option<&str>,
        model: Option<&str>,
        now: Millis,
    ) {
        let chars = text.chars().count();
        let checked = if text.trim().is_empty() {
            Err(ErrorCode::EmptyText)
        } else if chars > self.config.limits.max_text_chars as usize {
            Err(ErrorCode::TextTooLong)
        } else {
            resolve_voice(voice, model)
        };
        let (model, voice) = match checked {
            Ok(resolved) => resolved,
            // A rejected speak leaves the active message alone.
            Err(code) => return self.reject(id, code, None),
        };
        if !self.config.upstream_configured {
            return self.reject(id, ErrorCode::NotConfigured, None);
        }
        if let Err(retry_after) = self.budget.admit(&self.config.budget, chars as u64, now) {
            return self.reject(id, ErrorCode::RateLimited, Some(retry_after));
        }
        self.effects.push(Effect::SaveBudget(self.budget.clone()));
        self.finish(EndReason::Superseded, None);
        let stream = self.next_stream;
        self.next_stream = self.next_stream.checked_add(1).unwrap_or(1);
        let segments = segment::split(
            text,
            self.config.limits.segment_chars as usize,
            self.config.first_segment_chars,
        );
        self.log(
            LogLine::new("speak")
                .id("id", &id)
                .num("stream", stream)
                .num("chars", chars as u64)
                .num("segments", segments.len() as u64)
                .word("voice", voice),
        );
        self.active = Some(Active {
            id,
            stream,
            model,
            voice,
            queued: segments.into(),
            requested: 0,
            fetches: VecDeque::new(),
            sample_rate: None,
            samples_sent: 0,
            samples_persisted: 0,
            retried: false,
            started_at: now,
            first_audio_at: None,
        });
        self.persist();
        self.request_more(now);
    }

    /// Ends a `speak` that was never accepted.
    fn reject(&mut self, id: String, code: ErrorCode, retry_after_s: Option<u32>) {
        self.log(
            LogLine::new("reject")
                .id("id", &id)
                .word("code", code.as_str()),
        );
        self.send(&ServerMessage::End {
            id,
            stream: None,
            reason: EndReason::Error,
            samples: 0,
            error: Some(EndError::new(code, retry_after_s)),
        });
    }

    /// Keeps `1 + prefetch` requests in flight while segments remain.
    fn request_more(&mut self, now: Millis) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        while active.fetches.len() <= self.config.prefetch {
            let Some(text) = active.queued.pop_front() else {
                break;
            };
            let fetch = self.next_fetch;
            self.next_fetch += 1;
            let body = upstream::request_body(active.model, active.voice, &text);
            let segment = active.requested;
            active.requested += 1;
            active.fetches.push_back(Fetch {
                id: fetch,
                body,
                retry_at: None,
                segment,
                wav: WavReader::new(),
                pcm: Vec::new(),
                responded: false,
                body_done: false,
                failed: None,
                released: false,
                deadline: now + self.config.first_byte_timeout_ms,
            });
            let started = active.fetches.back().expect("just pushed");
            self.effects.push(started.request(active.stream));
        }
        if active.fetches.is_empty() {
            self.finish(EndReason::Done, None);
        }
    }

    fn fetch_mut(&mut self, fetch: FetchId) -> Option<&mut Fetch> {
        let active = self.active.as_mut()?;
        active
            .fetches
            .iter_mut()
            .find(|f| f.id == fetch && !f.settled())
    }

    fn on_head(&mut self, fetch: FetchId, status: UpstreamStatus, now: Millis) {
        let stall = self.config.stall_timeout_ms;
        if self.fetch_mut(fetch).is_none() {
            return;
        }
        if self.retry_later(fetch, &status, now) {
            return;
        }
        let f = self.fetch_mut(fetch).expect("checked above");
        match upstream::classify(&status) {
            Ok(()) => {
                f.responded = true;
                f.deadline = now + stall;
            }
            Err(error) => {
                let line = LogLine::new("upstream")
                    .num("status", status.status)
                    .word("code", error.code.as_str());
                f.failed = Some(error);
                // The runtime has already read the whole (short) error body.
                f.released = true;
                self.log(line);
            }
        }
        self.relay(now);
    }

    /// Schedules the one retry a message may have: for 429 or 503, before any of its audio was
    /// sent, when `retry-after` (default 1 s) is short enough. The request is replaced by one
    /// with a new id that the tick at the retry time starts.
    fn retry_later(&mut self, fetch: FetchId, status: &UpstreamStatus, now: Millis) -> bool {
        let wait_s = status.retry_after_s.unwrap_or(1);
        let Some(active) = self.active.as_mut() else {
            return false;
        };
        let allowed = matches!(status.status, 429 | 503)
            && !active.retried
            && active.samples_sent == 0
            && wait_s <= self.config.max_retry_wait_s;
        if !allowed {
            return false;
        }
        active.retried = true;
        let retry = self.next_fetch;
        self.next_fetch += 1;
        let f = active
            .fetches
            .iter_mut()
            .find(|f| f.id == fetch)
            .expect("a live fetch");
        f.id = retry;
        f.retry_at = Some(now + u64::from(wait_s) * 1000);
        f.deadline = now + u64::from(wait_s) * 1000;
        // The error response is over, and the retry is not started yet: nothing to abort.
        f.released = true;
        self.log(
            LogLine::new("upstream")
                .num("status", status.status)
                .num("retry_in_s", wait_s),
        );
        true
    }

    fn on_body(&mut self, fetch: FetchId, bytes: &[u8], now: Millis) {
        let stall = self.config.stall_timeout_ms;
        let Some(f) = self.fetch_mut(fetch) else {
            return;
        };
        f.deadline = now + stall;
        if f.wav.push(bytes, &mut f.pcm).is_err() {
            f.failed = Some(EndError::new(ErrorCode::UpstreamBadAudio, None));
            self.release(fetch);
        }
        self.relay(now);
    }

    fn on_upstream_end(&mut self, fetch: FetchId, now: Millis) {
        let Some(f) = self.fetch_mut(fetch) else {
            return;
        };
        if f.wav.finish().is_err() {
            f.failed = Some(EndError::new(ErrorCode::UpstreamBadAudio, None));
        }
        f.body_done = true;
        f.released = true;
        self.relay(now);
    }

    fn on_upstream_failed(&mut self, fetch: FetchId, now: Millis) {
        let Some(f) = self.fetch_mut(fetch) else {
            return;
        };
        let code = if f.responded {
            ErrorCode::UpstreamInterrupted
        } else {
            ErrorCode::UpstreamUnavailable
        };
        f.failed = Some(EndError::new(code, None));
        f.released = true;
        self.relay(now);
    }

    fn on_tick(&mut self, now: Millis) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        for f in active
            .fetches
            .iter_mut()
            .filter(|f| f.retry_at.is_some_and(|at| at <= now))
        {
            f.retry_at = None;
            f.released = false;
            f.deadline = now + self.config.first_byte_timeout_ms;
            self.effects.push(f.request(active.stream));
        }
        let expired: Vec<FetchId> = active
            .fetches
            .iter_mut()
            .filter(|f| !f.settled() && f.retry_at.is_none() && f.deadline <= now)
            .map(|f| {
                f.failed = Some(EndError::new(ErrorCode::UpstreamTimeout, None));
                f.id
            })
            .collect();
        for fetch in expired {
            self.release(fetch);
        }
        self.relay(now);
    }

    /// Aborts a request the runtime still holds; once per request.
    fn release(&mut self, fetch: FetchId) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        if let Some(f) = active
            .fetches
            .iter_mut()
            .find(|f| f.id == fetch && !f.released)
        {
            f.released = true;
            self.effects.push(Effect::Abort(fetch));
        }
    }

    /// Sends what the front request has, in order; moves on to the next segment when it is done.
    fn relay(&mut self, now: Millis) {
        loop {
            let Some(active) = self.active.as_mut() else {
                return;
            };
            let Some(front) = active.fetches.front_mut() else {
                return self.request_more(now);
            };
            if let Some(error) = front.failed.take() {
                return self.finish(EndReason::Error, Some(error));
            }
            if let Some(format) = front.wav.format() {
                match active.sample_rate {
                    None => {
                        active.sample_rate = Some(format.sample_rate);
                        let start = ServerMessage::Start {
                            id: active.id.clone(),
                            stream: active.stream,
                            sample_rate: format.sample_rate,
                            channels: 1,
                            encoding: "pcm_s16le".to_owned(),
                        };
                        self.send(&start);
                        continue;
                    }
                    Some(rate) if rate != format.sample_rate => {
                        let error = EndError::new(ErrorCode::UpstreamBadAudio, None);
                        return self.finish(EndReason::Error, Some(error));
                    }
                    Some(_) => {}
                }
            }
            let done = front.body_done;
            let keep = if done {
                0
            } else {
                self.config.hold_back_samples * 2
            };
            let ready = front.pcm.len().saturating_sub(keep);
            if ready > 0 {
                let pcm: Vec<u8> = front.pcm.drain(..ready).collect();
                self.send_audio(&pcm, done);
            }
            if !done {
                return;
            }
            let active = self.active.as_mut().expect("still active");
            active.fetches.pop_front();
            // A next segment that already failed ends the message: request nothing more for it.
            let next_failed = active.fetches.front().is_some_and(|f| f.failed.is_some());
            if active.samples_persisted != active.samples_sent {
                active.samples_persisted = active.samples_sent;
                self.persist();
            }
            if !next_failed {
                self.request_more(now);
            }
        }
    }

    fn send_audio(&mut self, pcm: &[u8], last_in_segment: bool) {
        let max = self.config.max_frame_pcm_bytes & !1;
        let now = self.now;
        let active = self.active.as_mut().expect("audio needs an active message");
        active.first_audio_at.get_or_insert(now);
        let pieces = pcm.chunks(max).count();
        let mut frames = Vec::with_capacity(pieces);
        for (i, piece) in pcm.chunks(max).enumerate() {
            let frame = AudioFrame {
                flags: if last_in_segment && i + 1 == pieces {
                    LAST_IN_SEGMENT
                } else {
                    0
                },
                stream: active.stream,
                offset: active.samples_sent as u32,
                pcm: piece,
            };
            active.samples_sent += (piece.len() / 2) as u64;
            frames.push(frame.encode());
        }
        if self.open {
            self.effects
                .extend(frames.into_iter().map(Effect::SendBinary));
        }
    }

    /// Ends the active message, if there is one: aborts and releases its upstream requests,
    /// sends its `end`, and persists that nothing is active. Idempotent by construction: the
    /// message is taken out first, so a second call finds nothing to end.
    pub fn finish(&mut self, reason: EndReason, error: Option<EndError>) {
        let Some(active) = self.active.take() else {
            return;
        };
        for f in active.fetches.iter().filter(|f| !f.released) {
            self.effects.push(Effect::Abort(f.id));
        }
        let mut line = LogLine::new("end")
            .id("id", &active.id)
            .num("stream", active.stream)
            .word("reason", reason.as_str())
            .num("samples", active.samples_sent)
            .num("ms", self.now.saturating_sub(active.started_at));
        if let Some(at) = active.first_audio_at {
            line = line.num("first_audio_ms", at.saturating_sub(active.started_at));
        }
        if let Some(e) = &error {
            line = line.word("code", e.code.as_str());
        }
        self.log(line);
        self.send(&ServerMessage::End {
            id: active.id,
            stream: Some(active.stream),
            reason,
            samples: active.samples_sent,
            error,
        });
        self.persist();
    }

    fn close(&mut self, code: u16, reason: &'static str) {
        if self.open {
            self.open = false;
            self.persist();
            self.effects.push(Effect::Close { code, reason });
        }
    }

    fn send(&mut self, message: &ServerMessage) {
        if self.open {
            self.effects.push(Effect::SendText(message.to_json()));
        }
    }

    fn log(&mut self, line: LogLine) {
        self.effects.push(Effect::Log(line));
    }

    fn persist(&mut self) {
        let active = self.active.as_ref().map(|a| ActiveRecord {
            id: a.id.clone(),
            stream: a.stream,
            samples: a.samples_persisted,
        });
        self.effects.push(Effect::Persist(Attachment {
            session: self.session.clone(),
            next_stream: self.next_stream,
            active,
            closed: !self.open,
        }));
    }
}
