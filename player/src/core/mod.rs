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
//! cursor (`played`: the worklet periodically and on receipt, through the socket's Worker and
//! never through the page; the core at once on stop), and a socket
//! lost before the message's `end` does not end the message: the engine plays on what it has,
//! and once the session is `ready` again the player asks to `resume` at its cursor. The relay
//! answers with the rest of the audio (the engine drops what it already has), a new stream that
//! restarts at a segment boundary, or the message's `end`; without an answer within the grace
//! period plus [`Config::resume_slack`], it ends `interrupted`.
//!
//! A `speak` still waiting to be sent when a connection attempt fails (of either protocol: the
//! relay never had it) waits for the next, up to [`Config::send_patience`] from the first
//! failure; then it ends `interrupted`.
//!
//! Beside this file: [`api`] (what the core takes and gives), `link` (the socket's life),
//! `message` (a message from `speak` to its one completion) and `written` (text still being
//! written).

use crate::prelude::*;

pub mod api;
mod link;
mod message;
mod written;

pub use api::{
    Boundary, Command, Completion, Config, ContextState, Effect, Input, LinkError, PlayerState,
    Progress, Report, ReportKind, Seconds, SpeakOptions, Word,
};

use orpheus_protocol::codec::{self, Incoming, RelayError};
use orpheus_protocol::{EndReason, Limits, Markup};

use link::Link;
use message::{Message, Playback};
use written::{char_count, TextEnd};

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
    /// Protocol v2: the session's defaults the app set (how text is read, a lexicon), told to
    /// every socket once it is ready.
    configure: Option<Defaults>,
    current: Option<Message>,
    /// Stopped or superseded messages waiting for their `end` and their engine stream.
    retiring: Vec<Message>,
    state: PlayerState,
    effects: Vec<Effect>,
}

/// The session's defaults the app set: how text is read, and a lexicon.
type Defaults = (Option<String>, Option<Vec<(String, String)>>);

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
            configure: None,
            current: None,
            retiring: Vec::new(),
            state: PlayerState::Connecting,
            effects: Vec::new(),
        }
    }

    /// Takes the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        ::core::mem::take(&mut self.effects)
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
                    w.chars += char_count(&text);
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
                self.ack();
                if let Some(m) = self.current.take() {
                    self.retire(m, EndReason::Stopped);
                }
            }
            Input::Engine(report) => self.on_report(report),
            Input::Tick => {
                self.watch_link();
                self.expire_parked();
                if self.keepalive_deadline().is_some_and(|at| self.now >= at) {
                    self.ack();
                }
            }
            Input::Context(state) => {
                self.context = state;
                self.context_ran |= state == ContextState::Running;
            }
            Input::Configure { markup, lexicon } => self.on_configure(markup, lexicon),
            Input::Shutdown => {
                self.link = Link::Closed;
                self.lose_messages(EndReason::Interrupted, false);
            }
        }
        self.send_text();
        self.settle();
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
                self.send_configure();
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
            Incoming::Error(error) if error.code == "invalid_lexicon" => {
                self.effects.push(Effect::Configured(Err(error)));
            }
            Incoming::Error(error) => self.on_error(error),
            Incoming::Pong => {}
            Incoming::Configured { markup, lexicon } => {
                self.effects.push(Effect::Configured(Ok((markup, lexicon))));
            }
            Incoming::Words { stream, words } => self.on_words(stream, words),
        }
    }

    /// The app sets the session's defaults: kept, and told to the relay now if the session is
    /// ready (else once it is). Refused here, a bad `markup` never reaches the relay (whose
    /// answer to an unreadable frame would fail a message waiting for its `start`).
    fn on_configure(&mut self, markup: Option<String>, lexicon: Option<Vec<(String, String)>>) {
        if markup
            .as_deref()
            .is_some_and(|m| Markup::from_name(m).is_none())
        {
            let error = RelayError {
                code: "invalid_message".into(),
                message: "markup must be \"markdown\" or \"plain\"".into(),
                retry_after_s: None,
            };
            self.effects.push(Effect::Configured(Err(error)));
            return;
        }
        self.configure = Some((markup, lexicon));
        if self.link == Link::Ready {
            self.send_configure();
        }
    }

    /// Protocol v2: sends the session's defaults the app set, if any, on a ready session.
    /// A relay of protocol 1 has no `configure`: the app is told, once.
    fn send_configure(&mut self) {
        let v2 = self.resume_grace.is_some();
        match self.configure.as_ref() {
            Some((markup, lexicon)) if v2 => {
                let frame = codec::configure(markup.as_deref(), lexicon.as_deref());
                self.effects.push(Effect::Send(frame));
            }
            Some(_) => {
                self.configure = None;
                let error = RelayError {
                    code: "unknown_type".into(),
                    message: "the relay speaks protocol 1, which has no configure".into(),
                    retry_after_s: None,
                };
                self.effects.push(Effect::Configured(Err(error)));
            }
            None => {}
        }
    }

    /// Completes every message whose end has come and whose audio is over, and reports the
    /// state if it changed.
    fn settle(&mut self) {
        let (now, safety) = (self.now, self.config.safety);
        let (done, waiting): (Vec<Message>, Vec<Message>) = ::core::mem::take(&mut self.retiring)
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
