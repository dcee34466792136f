//! The player's state machine: the link to the relay, message-scoped playback through the
//! AudioWorklet engine, and explicit, exactly-once completion.
//!
//! Sans-IO, like the relay's session core: the browser glue (`player/js/index.js`) feeds it
//! [`Input`]s with the AudioContext time and executes the [`Effect`]s it returns. Audio frames
//! never pass through it: the glue hands them to the engine in the worklet, which reports back
//! its play cursor. Its rules:
//!
//! - every `speak` gets a fresh stream in the engine; a new message stops the previous one, and
//!   the engine drops frames of any stream but the current one;
//! - a message completes exactly once: when the relay's `end` has arrived and the engine has
//!   played its last sample (or stopped it, or never began it); a safety time after the audio's
//!   expected end if the engine never reports (or stops moving its cursor); or, with a relay
//!   of protocol v1, at once (`interrupted`) if the socket is lost before its `end` (v2 parks
//!   it: see below). A socket lost *after* the `end` changes nothing: the engine already has
//!   all the audio, plays it, and the message completes `done`;
//! - `stop` is authoritative: the relay is told, the engine fades the stream out within 5 ms,
//!   and nothing of it plays afterwards;
//! - a `speak` is sent once the session is `ready` (queued while connecting); one the relay
//!   would refuse (too long, too large a frame) ends at once with the relay's code;
//! - the link reconnects after a drop with backoff (jittered, capped), but never after the
//!   relay replaced the socket (4000), refused it (44xx/45xx) or closed it for flooding (1008):
//!   those are reported as a fatal error and the player stays closed until `connect` again;
//! - while a message waits for its `end`, the link is watched: after `ping_after` of silence a
//!   ping goes out, after `dead_after` the socket is given up as dead (a half-open link); a
//!   connection attempt not `ready` within `connect_timeout` is given up and tried again;
//! - underruns are counted by the engine and reported, never hidden.
//!
//! With a relay of protocol v2 (`ready` carries `flow`), the player also reports its play
//! cursor (`played`, with each progress report of the engine and at once on stop), and a socket
//! lost before the message's `end` does not end the message: the engine plays on what it has,
//! and once the session is `ready` again the player asks to `resume` at its cursor. The relay
//! answers with the rest of the audio (the engine drops what it already has), a new stream that
//! restarts at a segment boundary, or the message's `end`; without an answer within the grace
//! period plus [`Config::resume_slack`], it ends `interrupted`.
//!
//! A `speak` still waiting to be sent when a connection attempt fails (of either protocol: the
//! relay never had it) waits for the next, up to [`Config::send_patience`] from the first
//! failure; then it ends `interrupted`.

use orpheus_protocol::PING_FRAME;
use orpheus_protocol::{is_refusal, EndReason, Limits, CLOSE_POLICY_VIOLATION, CLOSE_REPLACED};

pub use orpheus_protocol::codec::SpeakOptions;
use orpheus_protocol::codec::{self, Incoming, Metrics, RelayError};

/// Seconds on the AudioContext clock.
pub type Seconds = f64;

/// What a UI binds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerState {
    /// Connected, nothing playing.
    Idle,
    /// Opening (or re-opening) the socket.
    Connecting,
    /// A message was sent; its audio has not started yet.
    Buffering,
    /// Audio is playing.
    Speaking,
    /// Audio is ready but the AudioContext has never run: it waits for a user gesture.
    BlockedByAutoplay,
    /// The browser or the OS suspended the AudioContext mid-message (a tab switch, a call);
    /// playback continues, with nothing lost, when it runs again.
    Suspended,
    /// The connection failed and is being retried.
    Error,
    /// Closed for good: by the app, or by the relay (replaced, refused); see the `error` event.
    Closed,
}

impl PlayerState {
    /// The kebab-case name used by the JavaScript API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Connecting => "connecting",
            Self::Buffering => "buffering",
            Self::Speaking => "speaking",
            Self::BlockedByAutoplay => "blocked-by-autoplay",
            Self::Suspended => "suspended",
            Self::Error => "error",
            Self::Closed => "closed",
        }
    }
}

/// How a message finished, reported exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The message id.
    pub id: String,
    /// Why it ended (`interrupted` when the socket was lost before its `end`).
    pub reason: EndReason,
    /// The relay's error, for reason `error`.
    pub error: Option<RelayError>,
    /// Samples the relay sent.
    pub samples: u64,
    /// Samples the engine played: what the listener heard.
    pub played: u64,
    /// Times playback ran dry.
    pub underruns: u32,
    /// From `speak` to its first sample at the engine, if any.
    pub first_audio_s: Option<Seconds>,
    /// From `speak` to completion.
    pub total_s: Seconds,
    /// Protocol v2: characters of the text heard, as the relay estimated them.
    pub heard_chars: Option<u64>,
    /// Protocol v2: how the message went, from the relay.
    pub metrics: Option<Metrics>,
}

/// Playback of the current message, for progress events.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The message id.
    pub id: String,
    /// Samples played.
    pub played: u64,
    /// Samples received and not yet played.
    pub buffered: u64,
    /// The stream's sample rate.
    pub sample_rate: u32,
    /// Underruns so far.
    pub underruns: u32,
}

/// Why the link is down, for the `error` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkError {
    /// The WebSocket close code (1006 when the socket failed without one).
    pub code: u16,
    /// The close reason.
    pub reason: String,
    /// Whether the player gave up: replaced, refused or closed for flooding. It stays closed
    /// until `connect` is called again.
    pub fatal: bool,
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct Config {
    /// Completes a message this long after its audio should have ended if the engine never
    /// reports.
    pub safety: Seconds,
    /// First reconnect delay; doubles per failed attempt.
    pub reconnect_base_ms: u64,
    /// Longest reconnect delay.
    pub reconnect_max_ms: u64,
    /// Silence, while a message waits for its end, after which the player pings.
    pub ping_after: Seconds,
    /// Silence, while a message waits for its end, after which the socket is given up.
    pub dead_after: Seconds,
    /// How long a connection attempt may take to reach `ready` before it is given up and
    /// tried again: a handshake lost on a half-open link would otherwise hang until the
    /// browser's own timeout (240 s in Chromium, 20 s in Firefox).
    pub connect_timeout: Seconds,
    /// Protocol v2: how long past the relay's grace period a message waits for a resume.
    pub resume_slack: Seconds,
    /// How long a `speak` not sent yet waits for a socket once a connection attempt failed
    /// (the relay never had it: it can wait for any protocol, and goes out on the next).
    pub send_patience: Seconds,
    /// Protocol v2: text written in quick succession goes out in one `append` at most this
    /// often, so a model's token stream stays well within the relay's frame rate.
    pub append_interval: Seconds,
    /// Protocol v2: while a message waits for its end and the engine reports nothing (a
    /// suspended AudioContext does not render), its cursor is still reported this often, so
    /// that the relay does not take the link for dead.
    pub keepalive: Seconds,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            safety: 0.5,
            reconnect_base_ms: 250,
            reconnect_max_ms: 8_000,
            ping_after: 3.0,
            dead_after: 9.0,
            connect_timeout: 10.0,
            resume_slack: 5.0,
            send_patience: 25.0,
            append_interval: 0.1,
            keepalive: 1.0,
        }
    }
}

/// What the engine reported about a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Its first sample was rendered.
    Started,
    /// It is playing (periodic).
    Progress,
    /// A frame of it arrived while little was buffered: the relay paces a slow link by these.
    Received,
    /// It ran dry.
    Underrun,
    /// Its last sample was rendered.
    Drained,
    /// It was stopped and has faded out.
    Stopped,
}

impl ReportKind {
    /// Each kind with its event bit from the engine (`orpheus_player_dsp::event`), in the
    /// order the kinds of one event are taken in: a frame received acks at once, so a progress
    /// report in the same event needs no ack of its own.
    pub const BITS: [(u32, ReportKind); 6] = [
        (1, ReportKind::Started),
        (32, ReportKind::Received),
        (2, ReportKind::Progress),
        (4, ReportKind::Underrun),
        (8, ReportKind::Drained),
        (16, ReportKind::Stopped),
    ];
}

/// A report from the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// What happened.
    pub kind: ReportKind,
    /// The stream.
    pub stream: u32,
    /// Its play cursor.
    pub played: u64,
    /// Samples buffered in the engine.
    pub buffered: u64,
    /// Its underruns.
    pub underruns: u32,
    /// For `Started`, the context time of its first sample.
    pub at: Seconds,
}

/// The AudioContext's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextState {
    /// Rendering.
    Running,
    /// Not rendering (no gesture yet, or suspended by the browser or the OS).
    Suspended,
    /// Closed.
    Closed,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// The app asked to connect (idempotent while connecting or connected).
    Connect,
    /// The reconnect delay is over.
    Retry,
    /// The socket opened.
    Opened,
    /// A text frame from the relay.
    Text(&'a str),
    /// The relay was heard from: audio frames are flowing (they go to the engine, not here).
    Heard,
    /// The socket closed (or failed: code 1006).
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: &'a str,
    },
    /// The app asked to speak.
    Speak {
        /// Message id.
        id: String,
        /// Text to speak (with `more`, its beginning).
        text: String,
        /// The voice, the model, the segment cache, and (protocol v2, `more`) whether text
        /// follows in [`Input::Append`]s until [`Input::Finish`].
        options: SpeakOptions,
    },
    /// More text for message `id`, opened with `more` (ignored once it is not the current
    /// message).
    Append {
        /// The message.
        id: String,
        /// The text to add.
        text: String,
    },
    /// The text of message `id` is complete.
    Finish {
        /// The message.
        id: String,
    },
    /// The app asked to stop the current message.
    Stop,
    /// The engine reported on a stream.
    Engine(Report),
    /// Time passed: timers may fire.
    Tick,
    /// The AudioContext changed state.
    Context(ContextState),
    /// The app closed the player.
    Shutdown,
}

/// A command for the engine in the worklet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A new stream: the engine drops any other.
    Begin {
        /// The stream.
        stream: u32,
        /// Its sample rate.
        rate: u32,
    },
    /// The relay ended the stream after this many samples.
    End {
        /// The stream.
        stream: u32,
        /// Its length.
        samples: u64,
    },
    /// Fade the stream out and drop the rest.
    Stop {
        /// The stream.
        stream: u32,
    },
}

/// What the glue must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Open a socket (with fresh subprotocols: a new single-use ticket), cancelling any pending
    /// reconnect.
    Open,
    /// Send a text frame.
    Send(String),
    /// Tell the engine.
    Engine(Command),
    /// A message finished; settle its promise.
    Complete(Completion),
    /// The state changed.
    State(PlayerState),
    /// The session is ready.
    Ready,
    /// The link went down.
    LinkDown(LinkError),
    /// Close the socket at once and ignore its further events.
    Disconnect,
    /// Call back with [`Input::Retry`] after this delay.
    Reconnect {
        /// Delay in milliseconds.
        after_ms: u64,
    },
}

/// The link to the relay. It moves Idle → Connecting → Open → Ready; a drop goes to Backoff
/// and round again; a fatal close or the app's shutdown ends in Closed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Link {
    /// Not asked to connect yet.
    Idle,
    /// Waiting out a reconnect delay.
    Backoff,
    /// A socket is opening (a ticket is fetched, then the handshake), since `since`.
    Connecting { since: Seconds },
    /// Open, waiting for `ready`; the attempt began at `since`.
    Open { since: Seconds },
    /// `ready` received: frames may be sent.
    Ready,
    /// Closed for good, until `connect` again.
    Closed,
}

/// Where a message is on its way to completion. It only moves forward.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Waiting for the session to be ready; this `speak` frame (of a text of `chars`
    /// characters) will be sent then.
    Unsent { frame: String, chars: usize },
    /// Sent (this frame); no `start` yet. `resumed` once a `resume` for it went out on a new
    /// socket: an answer that the relay does not know it means it never got the frame.
    Sent { frame: String, resumed: bool },
    /// Its audio flows in this stream at this rate.
    Streaming { stream: u32, rate: u32 },
    /// The relay's `end` arrived at `at`; the engine plays what it has.
    Ended {
        reason: EndReason,
        error: Option<RelayError>,
        at: Seconds,
    },
}

/// Where the message's stream is in the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Playback {
    /// Not begun (no audio yet, or none ever).
    NotBegun,
    /// Begun; not yet audible.
    Begun { stream: u32, rate: u32 },
    /// Audible.
    Playing { stream: u32, rate: u32 },
    /// Done with: drained, stopped, or replaced by a newer stream.
    Finished,
}

/// Protocol v2: the text of a message the app is still writing, and how much of it the relay
/// was sent. (Counts are Unicode scalar values, as the relay counts.)
#[derive(Debug)]
struct Written {
    /// All of the text so far.
    text: String,
    /// Its length.
    chars: u64,
    /// Characters the `speak` frame carried.
    in_speak: u64,
    /// Characters sent on the current socket.
    sent: u64,
    /// When an `append` last went out.
    sent_at: Seconds,
    /// Where the text stands.
    end: TextEnd,
    /// The `speak`'s options, for a relay of protocol v1, which is sent the whole text in one
    /// `speak` once it is complete.
    options: SpeakOptions,
}

/// Whether the app finished a written message's text, and whether the relay was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextEnd {
    /// More may come.
    Open,
    /// Complete; `finish` not sent yet (on this socket).
    Finished,
    /// Complete, and `finish` sent.
    Told,
}

#[derive(Debug)]
struct Message {
    id: String,
    phase: Phase,
    /// Protocol v2: text still being written (`speakStream`).
    written: Option<Written>,
    playback: Playback,
    /// Stopped or superseded by the app (which): it completes as that, even if the relay then
    /// reports `done`, since the listener did not hear it all.
    retired: Option<EndReason>,
    spoke_at: Seconds,
    /// When its first sample was rendered.
    first_audio_at: Option<Seconds>,
    samples: u64,
    played: u64,
    /// When the engine last reported the play cursor moving on.
    played_at: Seconds,
    buffered: u64,
    underruns: u32,
    /// Protocol v2: when its socket was lost (or the attempt that was to carry it failed);
    /// it waits to resume (or to be sent) on the next.
    parked_at: Option<Seconds>,
    heard_chars: Option<u64>,
    metrics: Option<Metrics>,
}

impl Message {
    fn stream(&self) -> Option<u32> {
        match self.playback {
            Playback::Begun { stream, .. } | Playback::Playing { stream, .. } => Some(stream),
            _ => None,
        }
    }

    /// Whether a sent message still waits for its relay `end`.
    fn awaits_end(&self) -> bool {
        matches!(self.phase, Phase::Sent { .. } | Phase::Streaming { .. })
    }

    /// When the safety timer completes it if the engine never reports: after what is left of
    /// its audio (nothing, once stopped) and the safety margin.
    fn safety_deadline(&self, safety: Seconds) -> Option<Seconds> {
        let Phase::Ended { at, .. } = self.phase else {
            return None;
        };
        match self.playback {
            Playback::NotBegun | Playback::Finished => None,
            Playback::Begun { rate, .. } | Playback::Playing { rate, .. } => {
                let left = match self.retired {
                    Some(_) => 0.0,
                    None => self.samples.saturating_sub(self.played) as f64 / f64::from(rate),
                };
                Some(at.max(self.played_at) + left + safety)
            }
        }
    }

    /// Takes in what the engine reported about the message's stream.
    fn apply(&mut self, report: &Report, now: Seconds) {
        // A starved stream is still reported, its cursor standing: that is no progress, and
        // must not hold off the safety timer (audio lost for good would hang the message).
        if report.played != self.played {
            self.played_at = now;
        }
        self.played = report.played;
        self.buffered = report.buffered;
        self.underruns = report.underruns;
        self.playback = match (report.kind, self.playback) {
            (ReportKind::Drained | ReportKind::Stopped, _) => Playback::Finished,
            (ReportKind::Started, Playback::Begun { stream, rate }) => {
                self.first_audio_at = Some(report.at);
                Playback::Playing { stream, rate }
            }
            (_, playback) => playback,
        };
    }

    fn complete_at(&self, now: Seconds, safety: Seconds) -> bool {
        matches!(self.phase, Phase::Ended { .. })
            && (matches!(self.playback, Playback::NotBegun | Playback::Finished)
                || self.safety_deadline(safety).is_some_and(|at| now >= at))
    }
}

/// The relay's error for a code the player finds itself. (Always inlined: with the code known,
/// only its own name and text are linked, not every code's.)
#[inline(always)]
fn refused(code: orpheus_protocol::ErrorCode) -> RelayError {
    RelayError {
        code: code.as_str().to_owned(),
        message: code.message().to_owned(),
        retry_after_s: None,
    }
}

/// The player core.
#[derive(Debug)]
pub struct PlayerCore {
    config: Config,
    now: Seconds,
    link: Link,
    limits: Limits,
    reconnect_attempts: u32,
    /// Seed of the reconnect jitter.
    jitter: u64,
    /// Whether the AudioContext has ever run (before that, a suspended context means autoplay).
    context_ran: bool,
    context: ContextState,
    /// When the relay was last heard from (or the watch started).
    last_heard: Seconds,
    /// Whether a ping went out since then.
    pinged: bool,
    /// Protocol v2 (the relay's `ready` had `flow`): its grace period for a resume.
    resume_grace: Option<Seconds>,
    /// When the play cursor was last reported.
    acked_at: Seconds,
    /// A parked message the app stopped while no socket was open: the relay is told on the
    /// next one.
    stop_on_ready: Option<String>,
    current: Option<Message>,
    /// Stopped or superseded messages waiting for their `end` and their engine stream.
    retiring: Vec<Message>,
    state: PlayerState,
    effects: Vec<Effect>,
}

impl PlayerCore {
    /// A player not yet connected; `seed` draws its reconnect jitter.
    pub fn new(config: Config, seed: u64) -> Self {
        Self {
            config,
            now: 0.0,
            link: Link::Idle,
            limits: Limits::default(),
            reconnect_attempts: 0,
            jitter: seed | 1,
            context_ran: false,
            context: ContextState::Suspended,
            last_heard: 0.0,
            pinged: false,
            resume_grace: None,
            acked_at: 0.0,
            stop_on_ready: None,
            current: None,
            retiring: Vec::new(),
            state: PlayerState::Connecting,
            effects: Vec::new(),
        }
    }

    /// Takes the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The current state.
    pub fn state(&self) -> PlayerState {
        self.state
    }

    fn messages(&self) -> impl Iterator<Item = &Message> {
        self.current.iter().chain(&self.retiring)
    }

    /// When the next timer is due, if any (feed [`Input::Tick`] then): a safety timer, a
    /// parked message's patience, the link watch's next ping or verdict, or written text
    /// waiting for its `append`.
    pub fn next_deadline(&self) -> Option<Seconds> {
        let safety = self
            .messages()
            .filter_map(|m| m.safety_deadline(self.config.safety))
            .chain(self.resume_deadline())
            .chain(self.append_deadline())
            .chain(self.keepalive_deadline());
        let watch = self.watching().then(|| {
            let after = if self.pinged {
                self.config.dead_after
            } else {
                self.config.ping_after
            };
            self.last_heard + after
        });
        safety
            .chain(watch)
            .chain(self.connect_deadline())
            .reduce(f64::min)
    }

    /// When the connection attempt under way is given up, if one is.
    fn connect_deadline(&self) -> Option<Seconds> {
        match self.link {
            Link::Connecting { since } | Link::Open { since } => {
                Some(since + self.config.connect_timeout)
            }
            _ => None,
        }
    }

    /// When a parked message stops waiting for a resume (or, not sent yet, for a socket).
    fn resume_deadline(&self) -> Option<Seconds> {
        let m = self.current.as_ref()?;
        let patience = match m.phase {
            Phase::Unsent { .. } => self.config.send_patience,
            _ => self.resume_grace? + self.config.resume_slack,
        };
        Some(m.parked_at? + patience)
    }

    /// Protocol v2: when the play cursor is reported again if the engine has not reported
    /// by then.
    fn keepalive_deadline(&self) -> Option<Seconds> {
        self.reportable()
            .is_some()
            .then_some(self.acked_at + self.config.keepalive)
    }

    /// When written text that the relay was not sent yet goes out.
    fn append_deadline(&self) -> Option<Seconds> {
        let w = self.sendable_text()?;
        (w.sent < w.chars).then_some(w.sent_at + self.config.append_interval)
    }

    /// The current message's written text, when it can be sent now: the session is ready and
    /// the message's `speak` went out on this socket.
    fn sendable_text(&self) -> Option<&Written> {
        let m = self.current.as_ref()?;
        let sent = matches!(m.phase, Phase::Sent { .. } | Phase::Streaming { .. });
        let ready = self.link == Link::Ready && m.parked_at.is_none() && sent;
        m.written.as_ref().filter(|_| ready)
    }

    /// Sends the current message's written text the relay does not have yet (at most one
    /// `append` per [`Config::append_interval`], unless the text is complete), then its
    /// `finish` once the app finished it.
    fn send_text(&mut self) {
        if self.link == Link::Ready {
            // (Only the text of a message for a relay of protocol v1 waits unsent.)
            if let Some(mut m) = self.current.take() {
                self.send_unsent(&mut m);
                self.current = Some(m);
            }
        }
        if self.sendable_text().is_none() {
            return;
        }
        let (now, interval) = (self.now, self.config.append_interval);
        let m = self.current.as_mut().expect("sendable");
        let w = m.written.as_mut().expect("sendable");
        let due = w.end != TextEnd::Open || now >= w.sent_at + interval;
        if w.sent < w.chars && due {
            let rest: String = w.text.chars().skip(w.sent as usize).collect();
            self.effects
                .push(Effect::Send(codec::append(&m.id, &rest, w.sent)));
            w.sent = w.chars;
            w.sent_at = now;
        }
        if w.end == TextEnd::Finished && w.sent == w.chars {
            self.effects.push(Effect::Send(codec::finish(&m.id)));
            w.end = TextEnd::Told;
        }
    }

    /// The relay must be sent the written text again from `from` characters on (a resume:
    /// it skips what it has; a `speak` sent again: it has what the frame carries).
    fn resend_text(m: &mut Message, from_speak: bool) {
        if let Some(w) = m.written.as_mut() {
            w.sent = if from_speak { w.in_speak } else { 0 };
            w.sent_at = f64::NEG_INFINITY;
            if w.end == TextEnd::Told {
                w.end = TextEnd::Finished;
            }
        }
    }

    /// A parked message that waited too long ends `interrupted`, its audio stopped.
    fn expire_parked(&mut self) {
        if self.resume_deadline().is_none_or(|at| self.now < at) {
            return;
        }
        let now = self.now;
        let m = self.current.as_mut().expect("a parked message");
        m.parked_at = None;
        m.phase = Phase::Ended {
            reason: EndReason::Interrupted,
            error: None,
            at: now,
        };
        if let Some(stream) = m.stream() {
            m.playback = Playback::Finished;
            self.effects.push(Effect::Engine(Command::Stop { stream }));
        }
    }

    /// Protocol v2: the current message and its stream, when its play cursor is reported: the
    /// session is ready, and the message's audio began and waits for its end.
    fn reportable(&self) -> Option<(&Message, u32)> {
        if self.link != Link::Ready || self.resume_grace.is_none() {
            return None;
        }
        let m = self.current.as_ref().filter(|m| m.awaits_end())?;
        Some((m, m.stream()?))
    }

    /// Protocol v2: reports the current message's play cursor to the relay (`on_receipt`: as
    /// the answer to a frame just received).
    fn ack(&mut self, on_receipt: bool) {
        let Some((m, stream)) = self.reportable() else {
            return;
        };
        let frame = codec::played(stream, m.played, m.played + m.buffered, on_receipt);
        self.acked_at = self.now;
        self.effects.push(Effect::Send(frame));
    }

    /// Whether a sent message waits for its `end` on an open socket.
    fn watching(&self) -> bool {
        self.link == Link::Ready && self.messages().any(Message::awaits_end)
    }

    /// Feeds an input at context time `now`.
    pub fn handle(&mut self, input: Input<'_>, now: Seconds) {
        self.now = now;
        match input {
            Input::Connect => self.on_connect(),
            Input::Retry => {
                if self.link == Link::Backoff {
                    self.open();
                }
            }
            Input::Opened => {
                if let Link::Connecting { since } = self.link {
                    self.link = Link::Open { since };
                    self.heard();
                }
            }
            Input::Text(text) => {
                self.heard();
                if let Some(message) = Incoming::parse(text) {
                    self.on_message(message);
                }
            }
            Input::Heard => self.heard(),
            Input::Closed { code, reason } => self.on_closed(code, reason),
            Input::Speak { id, text, options } => self.on_speak(id, &text, options),
            Input::Append { id, text } => {
                if let Some(w) = self.written_open(&id) {
                    w.chars += text.chars().count() as u64;
                    w.text.push_str(&text);
                }
            }
            Input::Finish { id } => {
                if let Some(w) = self.written_open(&id) {
                    w.end = TextEnd::Finished;
                }
            }
            Input::Stop => {
                // The relay learns how far the listener got before it hears of the stop.
                self.ack(false);
                if let Some(m) = self.current.take() {
                    self.retire(m, EndReason::Stopped);
                }
            }
            Input::Engine(report) => self.on_report(report),
            Input::Tick => {
                self.watch_link();
                self.expire_parked();
                if self.now >= self.acked_at + self.config.keepalive {
                    self.ack(false);
                }
            }
            Input::Context(state) => {
                self.context = state;
                self.context_ran |= state == ContextState::Running;
            }
            Input::Shutdown => {
                self.link = Link::Closed;
                self.lose_messages(EndReason::Interrupted, false);
            }
        }
        self.send_text();
        self.settle();
    }

    /// The text of message `id`, while it is current and the app may still add to it.
    fn written_open(&mut self, id: &str) -> Option<&mut Written> {
        let m = self.current.as_mut().filter(|m| m.id == id)?;
        m.written.as_mut().filter(|w| w.end == TextEnd::Open)
    }

    fn on_connect(&mut self) {
        match self.link {
            Link::Idle | Link::Closed => {
                self.reconnect_attempts = 0;
                self.open();
            }
            // A pending reconnect happens now instead.
            Link::Backoff => self.open(),
            Link::Connecting { .. } | Link::Open { .. } | Link::Ready => {}
        }
    }

    fn open(&mut self) {
        self.link = Link::Connecting { since: self.now };
        self.effects.push(Effect::Open);
    }

    /// Something arrived, or the watch starts afresh.
    fn heard(&mut self) {
        self.last_heard = self.now;
        self.pinged = false;
    }

    /// Pings a quiet link, and gives up one that stayed silent too long, or that did not
    /// become ready in time.
    fn watch_link(&mut self) {
        if self.connect_deadline().is_some_and(|at| self.now >= at) {
            self.give_up("the relay did not answer the connection");
            return;
        }
        if !self.watching() {
            return;
        }
        let silence = self.now - self.last_heard;
        if silence >= self.config.dead_after {
            self.give_up("no answer from the relay");
        } else if silence >= self.config.ping_after && !self.pinged {
            self.pinged = true;
            self.effects.push(Effect::Send(PING_FRAME.to_owned()));
        }
    }

    /// Gives the socket up as dead (`reason`): it is closed at once, and the link goes down as
    /// if it had closed without a code.
    fn give_up(&mut self, reason: &str) {
        self.effects.push(Effect::Disconnect);
        self.on_closed(1006, reason);
    }

    fn on_speak(&mut self, id: String, text: &str, options: SpeakOptions) {
        if let Some(old) = self.current.take() {
            self.retire(old, EndReason::Superseded);
        }
        let frame = codec::speak(&id, text, &options);
        let chars = text.chars().count();
        let written = options.more.then(|| Written {
            text: text.to_owned(),
            chars: chars as u64,
            in_speak: chars as u64,
            sent: chars as u64,
            sent_at: f64::NEG_INFINITY,
            end: TextEnd::Open,
            options: options.clone(),
        });
        let mut message = Message {
            id,
            phase: Phase::Unsent { frame, chars },
            written,
            playback: Playback::NotBegun,
            retired: None,
            spoke_at: self.now,
            first_audio_at: None,
            samples: 0,
            played: 0,
            played_at: 0.0,
            buffered: 0,
            underruns: 0,
            parked_at: None,
            heard_chars: None,
            metrics: None,
        };
        if self.link == Link::Closed {
            // Replaced, refused or shut down: nothing will carry it.
            message.phase = self.ended(EndReason::Interrupted, None);
        } else if self.link == Link::Ready {
            self.send_unsent(&mut message);
        }
        self.current = Some(message);
    }

    fn ended(&self, reason: EndReason, error: Option<RelayError>) -> Phase {
        Phase::Ended {
            reason,
            error,
            at: self.now,
        }
    }

    /// What the relay would refuse with a code of its own, refused before sending.
    fn refusal(&self, frame: &str, chars: usize) -> Option<RelayError> {
        use orpheus_protocol::ErrorCode;
        if chars > self.limits.max_text_chars as usize {
            Some(refused(ErrorCode::TextTooLong))
        } else if frame.len() > self.limits.max_frame_bytes as usize {
            Some(refused(ErrorCode::FrameTooLarge))
        } else {
            None
        }
    }

    /// Sends a message waiting for the session, unless the relay would refuse it: then it
    /// ends at once with the relay's code.
    fn send_unsent(&mut self, m: &mut Message) {
        if !matches!(m.phase, Phase::Unsent { .. }) {
            return;
        }
        // It may have waited for a socket, but the relay never had it: nothing to resume.
        m.parked_at = None;
        // A relay of protocol v1 cannot take text in appends: it gets the whole text in one
        // `speak`, once the app has finished writing it.
        if let Some(w) = m.written.take_if(|_| self.resume_grace.is_none()) {
            if w.end == TextEnd::Open {
                m.written = Some(w);
                return;
            }
            let whole = SpeakOptions {
                more: false,
                ..w.options
            };
            let frame = codec::speak(&m.id, &w.text, &whole);
            let chars = w.chars as usize;
            m.phase = Phase::Unsent { frame, chars };
        }
        let Phase::Unsent { frame, chars } = &m.phase else {
            return;
        };
        if let Some(refusal) = self.refusal(frame, *chars) {
            m.phase = self.ended(EndReason::Error, Some(refusal));
            return;
        }
        if !self.watching() {
            self.heard();
        }
        let frame = frame.clone();
        self.effects.push(Effect::Send(frame.clone()));
        m.phase = Phase::Sent {
            frame,
            resumed: false,
        };
    }

    /// The app let go of a message: the relay and the engine are told; it completes when both
    /// have let go too.
    fn retire(&mut self, mut m: Message, reason: EndReason) {
        let audible = matches!(
            m.playback,
            Playback::Begun { .. } | Playback::Playing { .. }
        );
        match &mut m.phase {
            Phase::Unsent { .. } => m.phase = self.ended(reason, None),
            // No socket to tell now: the next one will, and the message ends here.
            Phase::Sent { .. } | Phase::Streaming { .. } if m.parked_at.is_some() => {
                self.stop_on_ready = Some(m.id.clone());
                m.phase = self.ended(reason, None);
            }
            Phase::Sent { .. } | Phase::Streaming { .. } => {
                self.effects.push(Effect::Send(codec::stop(&m.id)));
            }
            // All of it arrived but not all of it played: the listener cut it short.
            Phase::Ended {
                reason: ended @ EndReason::Done,
                ..
            } if audible => *ended = reason,
            Phase::Ended { .. } => {}
        }
        if let Some(stream) = m.stream() {
            self.effects.push(Effect::Engine(Command::Stop { stream }));
        }
        m.retired = Some(reason);
        self.retiring.push(m);
    }

    fn on_message(&mut self, message: Incoming) {
        match message {
            Incoming::Ready {
                max_text_chars,
                max_frame_bytes,
                resume_grace_ms,
            } => {
                self.limits.max_text_chars = max_text_chars;
                self.limits.max_frame_bytes = max_frame_bytes;
                self.resume_grace = resume_grace_ms.map(|ms| ms as f64 / 1000.0);
                self.link = Link::Ready;
                self.reconnect_attempts = 0;
                self.effects.push(Effect::Ready);
                if let Some(mut m) = self.current.take() {
                    self.send_unsent(&mut m);
                    self.current = Some(m);
                }
                if let Some(id) = self.stop_on_ready.take() {
                    self.effects.push(Effect::Send(codec::stop(&id)));
                }
                self.resume_parked();
            }
            Incoming::Start {
                id,
                stream,
                sample_rate,
            } => self.on_start(&id, stream, sample_rate),
            Incoming::End {
                id,
                reason,
                samples,
                error,
                heard_chars,
                metrics,
                ..
            } => self.on_end(&id, reason, samples, error, heard_chars, metrics),
            Incoming::Error(error) => self.on_error(error),
            Incoming::Pong => {}
        }
    }

    /// Asks the relay to continue the parked message where the engine is; a session that
    /// cannot (protocol v1) ends it `interrupted`.
    fn resume_parked(&mut self) {
        let v2 = self.resume_grace.is_some();
        let Some(m) = self.current.as_mut().filter(|m| m.parked_at.is_some()) else {
            return;
        };
        m.parked_at = None;
        if v2 {
            if let Phase::Sent { resumed, .. } = &mut m.phase {
                *resumed = true;
            }
            let frame = codec::resume(&m.id, m.stream(), m.played);
            self.effects.push(Effect::Send(frame));
            // Appends may have been lost with the link: the relay takes what it lacks.
            Self::resend_text(m, false);
            return;
        }
        m.phase = Phase::Ended {
            reason: EndReason::Interrupted,
            error: None,
            at: self.now,
        };
        if let Some(stream) = m.stream() {
            m.playback = Playback::Finished;
            self.effects.push(Effect::Engine(Command::Stop { stream }));
        }
    }

    fn on_start(&mut self, id: &str, stream: u32, rate: u32) {
        // A new stream for a streaming message: the relay restarted it after a resume.
        let Some(m) = self.current.as_mut().filter(|m| {
            m.id == id
                && match m.phase {
                    Phase::Sent { .. } => true,
                    Phase::Streaming { stream: old, .. } => stream > old,
                    _ => false,
                }
        }) else {
            return;
        };
        m.phase = Phase::Streaming { stream, rate };
        m.playback = Playback::Begun { stream, rate };
        // The engine plays one stream: whatever it played before is done with.
        for old in &mut self.retiring {
            old.playback = match old.playback {
                Playback::NotBegun => Playback::NotBegun,
                _ => Playback::Finished,
            };
        }
        self.effects
            .push(Effect::Engine(Command::Begin { stream, rate }));
    }

    fn on_end(
        &mut self,
        id: &str,
        reason: EndReason,
        samples: u64,
        error: Option<RelayError>,
        heard_chars: Option<u64>,
        metrics: Option<Metrics>,
    ) {
        let now = self.now;
        // The first message with this id still waiting: a retiring one was spoken earlier.
        let Some(m) = self
            .retiring
            .iter_mut()
            .chain(self.current.iter_mut())
            .find(|m| m.id == id && m.awaits_end())
        else {
            return;
        };
        // The relay does not know a message resumed before its `start`: the `speak` was lost
        // with the link. It goes again.
        if let Phase::Sent {
            frame,
            resumed: resumed @ true,
        } = &mut m.phase
        {
            if reason == EndReason::Interrupted && heard_chars.is_none() {
                *resumed = false;
                self.effects.push(Effect::Send(frame.clone()));
                Self::resend_text(m, true);
                return;
            }
        }
        m.samples = samples;
        m.heard_chars = heard_chars;
        m.metrics = metrics;
        // The player stopped it itself (a stop, or a newer speak): its own reason is the truth.
        let reason = match m.retired {
            Some(retired) if matches!(reason, EndReason::Done | EndReason::Stopped) => retired,
            _ => reason,
        };
        m.phase = Phase::Ended {
            reason,
            error,
            at: now,
        };
        if let Some(stream) = m.stream() {
            self.effects
                .push(Effect::Engine(Command::End { stream, samples }));
        }
    }

    /// An `error` frame answers a frame of the player's that the relay could not read; if a
    /// `speak` awaits its first answer, that was it: it ends with the error.
    fn on_error(&mut self, error: RelayError) {
        let unreadable = [
            "frame_too_large",
            "invalid_json",
            "invalid_message",
            "unknown_type",
        ];
        if !unreadable.contains(&error.code.as_str()) {
            return;
        }
        let unanswered = |m: &&mut Message| matches!(m.phase, Phase::Sent { .. });
        if let Some(m) = self.current.as_mut().filter(unanswered) {
            self.effects.push(Effect::Send(codec::stop(&m.id)));
            m.phase = Phase::Ended {
                reason: EndReason::Error,
                error: Some(error),
                at: self.now,
            };
        }
    }

    fn on_report(&mut self, report: Report) {
        let now = self.now;
        if let Some(m) = self
            .current
            .iter_mut()
            .chain(self.retiring.iter_mut())
            .find(|m| m.stream() == Some(report.stream))
        {
            m.apply(&report, now);
        }
        match report.kind {
            ReportKind::Received => self.ack(true),
            ReportKind::Progress if self.now - self.acked_at >= 0.2 => self.ack(false),
            _ => {}
        }
    }

    /// How far the current message has played, once its audio has begun.
    pub fn progress(&self) -> Option<Progress> {
        let m = self.current.as_ref()?;
        let (Playback::Begun { rate, .. } | Playback::Playing { rate, .. }) = m.playback else {
            return None;
        };
        Some(Progress {
            id: m.id.clone(),
            played: m.played,
            buffered: m.buffered,
            sample_rate: rate,
            underruns: m.underruns,
        })
    }

    fn on_closed(&mut self, code: u16, reason: &str) {
        if matches!(self.link, Link::Idle | Link::Closed | Link::Backoff) {
            return;
        }
        let fatal = code == CLOSE_REPLACED || code == CLOSE_POLICY_VIOLATION || is_refusal(code);
        self.effects.push(Effect::LinkDown(LinkError {
            code,
            reason: reason.to_owned(),
            fatal,
        }));
        let lost = if code == CLOSE_REPLACED {
            EndReason::Replaced
        } else {
            EndReason::Interrupted
        };
        // The current message waits for the next socket: with protocol v2, playing on
        // meanwhile; not sent yet, with either.
        let v2 = self.resume_grace.is_some();
        let parked = self.current.take_if(|m| {
            !fatal && (v2 && m.awaits_end() || matches!(m.phase, Phase::Unsent { .. }))
        });
        self.lose_messages(lost, true);
        if let Some(mut m) = parked {
            m.parked_at.get_or_insert(self.now);
            self.current = Some(m);
        }
        if fatal {
            self.link = Link::Closed;
            return;
        }
        self.link = Link::Backoff;
        let exponent = self.reconnect_attempts.min(16);
        let ceiling = self
            .config
            .reconnect_base_ms
            .saturating_mul(1 << exponent)
            .min(self.config.reconnect_max_ms);
        // Full range jitter in the upper half: never two players in lockstep, never instant.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let after_ms = ceiling / 2 + self.jitter % (ceiling / 2 + 1);
        self.reconnect_attempts += 1;
        self.effects.push(Effect::Reconnect { after_ms });
    }

    /// The socket is gone: every message still waiting for its `end` never gets it and ends
    /// with `reason`, its audio stopped. Messages whose `end` came keep playing (when
    /// `keep_ended`): the engine has all of their audio.
    fn lose_messages(&mut self, reason: EndReason, keep_ended: bool) {
        let now = self.now;
        let mut lost = Vec::new();
        for m in self.current.iter_mut().chain(self.retiring.iter_mut()) {
            let keep = keep_ended && matches!(m.phase, Phase::Ended { .. });
            if keep {
                continue;
            }
            if let Some(stream) = m.stream() {
                lost.push(Command::Stop { stream });
                m.playback = Playback::Finished;
            }
            if !matches!(m.phase, Phase::Ended { .. }) {
                m.phase = Phase::Ended {
                    reason: m.retired.unwrap_or(reason),
                    error: None,
                    at: now,
                };
            } else {
                m.playback = Playback::Finished;
            }
        }
        self.effects.extend(lost.into_iter().map(Effect::Engine));
    }

    /// Completes every message whose end has come and whose audio is over, and reports the
    /// state if it changed.
    fn settle(&mut self) {
        let (now, safety) = (self.now, self.config.safety);
        let (done, waiting): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|m| m.complete_at(now, safety));
        self.retiring = waiting;
        for m in done {
            self.complete(m);
        }
        if self
            .current
            .as_ref()
            .is_some_and(|m| m.complete_at(now, safety))
        {
            let m = self.current.take().expect("checked");
            self.complete(m);
        }
        self.update_state();
    }

    fn complete(&mut self, m: Message) {
        if let Some(stream) = m.stream() {
            // The safety timer fired: the engine never reported; make sure it lets go.
            self.effects.push(Effect::Engine(Command::Stop { stream }));
        }
        let Phase::Ended { reason, error, .. } = m.phase else {
            unreachable!("only ended messages complete");
        };
        self.effects.push(Effect::Complete(Completion {
            id: m.id,
            reason,
            error,
            samples: m.samples,
            played: m.played,
            underruns: m.underruns,
            first_audio_s: m.first_audio_at.map(|at| at - m.spoke_at),
            total_s: self.now - m.spoke_at,
            heard_chars: m.heard_chars,
            metrics: m.metrics,
        }));
    }

    fn update_state(&mut self) {
        let state = match self.link {
            Link::Closed => PlayerState::Closed,
            Link::Idle | Link::Backoff | Link::Connecting { .. } | Link::Open { .. } => {
                if self.reconnect_attempts > 1 {
                    PlayerState::Error
                } else {
                    PlayerState::Connecting
                }
            }
            Link::Ready => match &self.current {
                None => PlayerState::Idle,
                Some(_) if self.context != ContextState::Running && !self.context_ran => {
                    PlayerState::BlockedByAutoplay
                }
                Some(_) if self.context != ContextState::Running => PlayerState::Suspended,
                Some(m) if matches!(m.playback, Playback::Playing { .. }) => PlayerState::Speaking,
                Some(_) => PlayerState::Buffering,
            },
        };
        if state != self.state {
            self.state = state;
            self.effects.push(Effect::State(state));
        }
    }
}
