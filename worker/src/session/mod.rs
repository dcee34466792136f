//! The session state machine: one per session id (one per Durable Object), the single owner of
//! the session's socket, its active message and that message's upstream requests.
//!
//! It is sans-IO: the runtime feeds it [`Input`]s with the current time and executes the
//! [`Effect`]s it returns (send a message or an audio frame, start or abort an upstream
//! request, persist a socket's attachment, store the session's state, close a socket). It never
//! touches a socket, a timer or the network itself, so every rule below is tested on the host:
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
//!   known, new messages are refused (`relay_unavailable`), never run on a blank budget;
//! - every deadline (an upstream timeout, a retry, text idle or paused, a resume's grace, a
//!   silent client) is in [`Session::next_deadline`], whether or not a request runs: the
//!   runtime ticks the core then, from a timer while it is awake and from the object's alarm
//!   when it is not.
//!
//! With a client of protocol v2 (`orpheus.v2`), the session also knows what the listener heard:
//!
//! - audio goes out only within the flow window ahead of the client's `played` reports, and a
//!   later segment is requested only when the audio ahead runs low ([`crate::flow`]);
//! - a socket that drops (or is replaced, or falls silent while the relay waits on its reports:
//!   [`Config::dead_link_ms`]) parks the active message for `resume_grace_ms`, keeping its
//!   upstream requests and the audio not yet reported played; a `resume` from the next socket
//!   continues it from the play cursor, else it ends `interrupted`, once;
//! - the active message's record (text, voice, the length of each finished segment) is stored,
//!   so a `resume` after the object lost its memory restarts the unplayed part at the segment
//!   boundary at or before the cursor, in a new stream, and an object that wakes with the socket
//!   still open goes on where the message was; the record goes when the message ends, and how
//!   the session's recent messages ended is kept for the grace period, so a `resume` whose `end`
//!   was lost with the link gets that `end` again;
//! - every `end` says what was heard ([`crate::heard`]) and how the message went;
//! - a message opened with `more` takes its text in `append`s until `finish`: one stream, one
//!   `start`, one `end`. Its segments are cut as the text grows ([`crate::segment::next_span`]), each
//!   when it is requested, so a cut never depends on text not yet received; its text counts
//!   against the limits as it arrives, and a message left open past `text_idle_ms` ends once.
//!
//! Beside this file, each concern in its own: [`api`] (what the core takes and gives),
//! [`stored`] (what outlives its memory), `message` (the active message, built in one place),
//! `speak` (text in: `speak`, `append`, `finish`), `fetch` (segments and their upstream
//! requests), `relay` (audio out, and the `played` reports that pace it) and `resume` (parking,
//! resuming, restarting, waking).

pub mod api;
mod fetch;
mod message;
mod relay;
mod resume;
mod speak;
pub mod stored;

use orpheus_protocol::{
    ClientMessage, EndError, EndMetrics, EndReason, ErrorCode, Flow, Heard, ServerMessage, Version,
    CLOSE_POLICY_VIOLATION,
};

pub use api::{
    AudioOut, Config, Durability, Effect, FetchId, FetchRequest, Generation, Input, Speak,
};
pub use stored::{
    serving_after_wake, ActiveRecord, Attachment, EndedRecord, MessageRecord, Stored, ENDED_KEPT,
};

use crate::frame_rate::{FrameRate, FrameVerdict};
use crate::log::LogLine;
use crate::time::Millis;
use message::Message;

/// The socket the session serves.
#[derive(Debug)]
struct Client {
    generation: Generation,
    version: Version,
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
        let mut s = Self {
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
        };
        if s.stored.is_none() {
            s.log(LogLine::new("storage").word("read", "failed"));
        }
        s
    }

    /// The session of a socket whose in-memory state was lost (hibernation or restart), at
    /// `now`: it serves that socket again. A message its attachment says was active goes on
    /// if the stored record shows nothing of it was lost, else ends `interrupted`, once.
    pub fn restore(
        config: Config,
        attachment: Attachment,
        stored: Option<Stored>,
        now: Millis,
    ) -> Self {
        let mut s = Self::new(config, &attachment.session, stored);
        s.now = now;
        if attachment.closed {
            return s;
        }
        s.client = Some(Client {
            generation: attachment.generation,
            version: attachment.version,
            frame_rate: FrameRate::default(),
        });
        s.client_reports = attachment.reports;
        if let Some(active) = attachment.active {
            s.wake_with(active);
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

    /// The earliest deadline; feed [`Input::Tick`] once it has passed. `None` when nothing
    /// is due however long the session waits.
    pub fn next_deadline(&self) -> Option<Millis> {
        let message = self.message.as_ref()?;
        // A client that falls silent is paced by the clock: look again when that moves, while
        // the moving cursor can change what the relay does.
        let estimate = message
            .flow
            .as_ref()
            .filter(|_| {
                message.parked_until.is_none()
                    && message.moves_with_cursor(self.client_reports, self.now)
            })
            .and_then(|f| f.control.next_estimate(self.now));
        message
            .segments
            .iter()
            .filter_map(|s| s.deadline(&self.config))
            .chain(message.parked_until)
            .chain(estimate)
            .chain(message.idle_at(&self.config))
            .chain(message.flush_at(&self.config, self.now))
            .chain(self.dead_link_at())
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
            Input::Speak(generation, speak) => {
                if self.serving() == Some(generation) {
                    self.on_speak(speak);
                }
            }
            Input::Binary(generation) => {
                if self.admit_frame(generation, None) {
                    self.send(ServerMessage::error(ErrorCode::BinaryFrame));
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
        self.send(ServerMessage::ready(
            &self.session,
            self.config.limits,
            flow,
        ));
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
            None if warn => self.send(ServerMessage::Error {
                code: ErrorCode::RateLimited,
                message: ErrorCode::RateLimited.message().to_owned(),
                retry_after_s: Some(1),
            }),
            None => {}
        }
    }

    fn on_text(&mut self, frame: &str) {
        if frame.len() > self.config.limits.max_frame_bytes as usize {
            return self.send(ServerMessage::error(ErrorCode::FrameTooLarge));
        }
        match ClientMessage::parse(frame) {
            Err(e) => match e.speak_id {
                Some(id) => self.reject(id, e.code, None),
                None => self.send(ServerMessage::error(e.code)),
            },
            Ok(ClientMessage::Ping) => self.send(ServerMessage::Pong),
            Ok(
                ClientMessage::Played { .. }
                | ClientMessage::Resume { .. }
                | ClientMessage::Append { .. }
                | ClientMessage::Finish { .. }
                | ClientMessage::Configure { .. },
            ) if !self.speaks_v2() => self.send(ServerMessage::error(ErrorCode::UnknownType)),
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
                markup,
                encoding,
            }) => self.on_speak(Speak {
                id,
                text,
                voice,
                model,
                more,
                cache,
                markup,
                lexicon: None,
                encoding,
            }),
            Ok(ClientMessage::Configure { markup, lexicon }) => self.on_configure(markup, lexicon),
        }
    }

    /// Fires every deadline that has passed: a parked message's grace, an open text's idle
    /// time, a silent client's link, the segments' timeouts and retries; then relays what the
    /// clock allows now.
    fn on_tick(&mut self) {
        let now = self.now;
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
        if self.dead_link_at().is_some_and(|at| at <= now) {
            self.give_up_silent_link();
        }
        self.segment_deadlines();
        self.relay();
    }

    /// Ends the active message, if there is one: aborts its upstream requests, sends its `end`,
    /// and persists that nothing is active. Idempotent by construction: the message is taken
    /// out first, so a second call finds nothing to end.
    pub fn finish(&mut self, reason: EndReason, error: Option<EndError>) {
        let Some(message) = self.message.take() else {
            return;
        };
        for fetch in message.segments.iter().filter_map(|s| s.held()) {
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
        self.send(ServerMessage::End {
            id: ending.id,
            stream: ending.stream,
            reason: ending.reason,
            samples: ending.samples,
            error: ending.error,
            heard: ending.heard,
            metrics: ending.metrics,
        });
    }

    /// Stores the session's state with the active v2 message's record (or none): when `always`,
    /// when the record changed, or when its liveness is a quarter of the grace period old. Only
    /// a write that changes nothing but the record goes [`Durability::Unconfirmed`].
    fn store(&mut self, always: bool) {
        let (now, grace) = (self.now, self.config.resume_grace_ms);
        let Some(stored) = self.stored.as_ref() else {
            return;
        };
        let active = self.message.as_ref().filter(|m| m.flow.is_some());
        let changed = match (&stored.message, active) {
            (Some(old), Some(m)) => !m.recorded_in(old) || old.alive_at + grace / 4 <= now,
            (None, None) => false,
            _ => true,
        };
        let settled = self
            .written
            .as_ref()
            .is_some_and(|written| written.same_but_message(stored));
        if !(always || changed || !settled) {
            return;
        }
        let record = active.map(|m| m.record(now));
        let stored = self.stored.as_mut().expect("checked above");
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

    fn send(&mut self, message: ServerMessage) {
        if let Some(generation) = self.serving() {
            self.effects.push(Effect::Send(generation, message));
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
