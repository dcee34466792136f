//! The player's state machine: message-scoped playback with explicit, exactly-once completion.
//!
//! Sans-IO, like the relay's session core: the browser glue feeds it [`Input`]s with the
//! AudioContext time and executes the [`Effect`]s it returns. Its rules:
//!
//! - every `speak` gets a fresh timeline; a new message stops the previous message's sources,
//!   and frames of any stream other than the current one are dropped;
//! - a message completes exactly once: when its `end` has arrived and every source scheduled for
//!   it has finished, or a safety time after its scheduled end if the browser never reports
//!   `onended`, or at once (`interrupted`) if the socket is lost;
//! - `stop` is authoritative: the relay is told, every scheduled source of the message is silenced
//!   after a short gain ramp, and none of its audio is scheduled afterwards;
//! - a `speak` made while the socket is down is sent once it opens, and ends `interrupted` if
//!   that attempt fails; stopped or superseded before it was sent, it ends at once;
//! - while a message waits for its `end`, the link is watched: after `ping_after` of silence a
//!   ping goes out (the runtime answers it), and after `dead_after` of silence the socket is
//!   given up as dead (a half-open link) and its messages end `interrupted`;
//! - underruns are counted and reported, never hidden.

use std::collections::BTreeSet;

use orpheus_protocol::{AudioFrame, ClientMessage, EndError, EndReason, ServerMessage, PING_FRAME};

use crate::pcm::PcmDecoder;
use crate::timeline::{Seconds, Timeline, DEFAULT_LEAD};

/// Identifies one scheduled audio source.
pub type SourceId = u64;

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
    /// Audio is ready but the AudioContext is suspended until a user gesture.
    BlockedByAutoplay,
    /// The connection failed and is being retried.
    Error,
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
            Self::Error => "error",
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
    pub error: Option<EndError>,
    /// Samples received and scheduled.
    pub samples: u64,
    /// Late chunks that left a gap.
    pub underruns: u32,
    /// From `speak` to the first audio's scheduled start, if any.
    pub first_audio_s: Option<Seconds>,
    /// From `speak` to completion.
    pub total_s: Seconds,
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct Config {
    /// Jitter buffer: how far ahead the first chunk is scheduled.
    pub lead: Seconds,
    /// Completes a message this long after its scheduled end if `onended` never fires.
    pub safety: Seconds,
    /// Gain ramp when stopping, to avoid a click.
    pub stop_ramp: Seconds,
    /// First reconnect delay; doubles per failed attempt.
    pub reconnect_base_ms: u64,
    /// Longest reconnect delay.
    pub reconnect_max_ms: u64,
    /// Silence, while a message waits for its end, after which the player pings.
    pub ping_after: Seconds,
    /// Silence, while a message waits for its end, after which the socket is given up.
    pub dead_after: Seconds,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lead: DEFAULT_LEAD,
            safety: 0.5,
            stop_ramp: 0.008,
            reconnect_base_ms: 250,
            reconnect_max_ms: 8_000,
            ping_after: 3.0,
            dead_after: 9.0,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// The socket opened.
    Opened,
    /// A text frame from the relay.
    Text(&'a str),
    /// A binary frame from the relay.
    Binary(&'a [u8]),
    /// The socket closed (or failed) unexpectedly.
    Closed,
    /// The app asked to speak.
    Speak {
        /// Message id.
        id: String,
        /// Text to speak.
        text: String,
        /// Voice, if chosen.
        voice: Option<String>,
    },
    /// The app asked to stop the current message.
    Stop,
    /// A source finished playing (or was stopped).
    SourceEnded(SourceId),
    /// Time passed: safety timers may fire.
    Tick,
    /// The AudioContext is running (true) or suspended (false), at this sample rate.
    Context {
        /// Whether it is running.
        running: bool,
        /// Its sample rate.
        sample_rate: f64,
    },
}

/// What the glue must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a text frame.
    Send(String),
    /// Play `samples` (at `sample_rate`) starting exactly at `at` on the context clock.
    Schedule {
        /// The new source.
        source: SourceId,
        /// Float samples.
        samples: Vec<f32>,
        /// Their rate.
        sample_rate: u32,
        /// Start time.
        at: Seconds,
    },
    /// Ramp these sources to silence over `ramp` seconds from `at`, then stop them.
    Silence {
        /// The sources.
        sources: Vec<SourceId>,
        /// When to start the ramp.
        at: Seconds,
        /// Ramp length.
        ramp: Seconds,
    },
    /// Forget these sources (their playback ended; release nodes and closures).
    Release(Vec<SourceId>),
    /// A message finished; settle its promise.
    Complete(Completion),
    /// The state (and underrun count) changed.
    State {
        /// The new state.
        state: PlayerState,
        /// Underruns of the current message.
        underruns: u32,
    },
    /// Close the socket at once and ignore its further events: the link is dead.
    Disconnect,
    /// Reopen the socket after this delay.
    Reconnect {
        /// Delay in milliseconds.
        after_ms: u64,
    },
}

#[derive(Debug)]
struct Message {
    id: String,
    stream: Option<u32>,
    timeline: Option<Timeline>,
    decoder: PcmDecoder,
    live: BTreeSet<SourceId>,
    samples: u64,
    end: Option<(EndReason, Option<EndError>)>,
    /// When the last scheduled source ends.
    scheduled_end: Seconds,
    spoke_at: Seconds,
    first_audio_at: Option<Seconds>,
    /// Stopped or superseded (which one): its remaining frames are dropped, and it completes
    /// as that even if the relay then reports `done`, since the listener did not hear it all.
    retired_as: Option<EndReason>,
    /// The `speak` frame, while it waits for the socket to open.
    unsent: Option<String>,
}

impl Message {
    fn underruns(&self) -> u32 {
        self.timeline.as_ref().map_or(0, Timeline::underruns)
    }
}

/// The player core.
#[derive(Debug)]
pub struct PlayerCore {
    config: Config,
    now: Seconds,
    context_rate: f64,
    context_running: bool,
    connected: bool,
    reconnect_attempts: u32,
    /// When the relay was last heard from (or a message was sent, which starts the watch).
    last_heard: Seconds,
    /// Whether a ping went out since then.
    pinged: bool,
    current: Option<Message>,
    /// Stopped or superseded messages waiting for their `end` and their sources.
    retiring: Vec<Message>,
    next_source: SourceId,
    state: PlayerState,
    /// The state and underrun count last reported.
    reported: (PlayerState, u32),
    effects: Vec<Effect>,
}

impl PlayerCore {
    /// A player not yet connected.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            now: 0.0,
            context_rate: 48_000.0,
            context_running: false,
            connected: false,
            reconnect_attempts: 0,
            last_heard: 0.0,
            pinged: false,
            current: None,
            retiring: Vec::new(),
            next_source: 1,
            state: PlayerState::Connecting,
            reported: (PlayerState::Connecting, 0),
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

    /// Sources scheduled and not yet ended or released.
    pub fn live_sources(&self) -> usize {
        self.current
            .iter()
            .chain(&self.retiring)
            .map(|m| m.live.len())
            .sum()
    }

    /// When the next timer is due, if any (feed [`Input::Tick`] then): a safety timer, or the
    /// link watch's next ping or verdict.
    pub fn next_deadline(&self) -> Option<Seconds> {
        let safety = self
            .current
            .iter()
            .chain(&self.retiring)
            .filter(|m| m.end.is_some() && !m.live.is_empty())
            .map(|m| m.scheduled_end + self.config.safety);
        let watch = self.watching().then(|| {
            let next = if self.pinged {
                self.config.dead_after
            } else {
                self.config.ping_after
            };
            self.last_heard + next
        });
        safety.chain(watch).reduce(f64::min)
    }

    /// Whether a sent message waits for its `end` on an open socket.
    fn watching(&self) -> bool {
        self.connected
            && self
                .current
                .iter()
                .chain(&self.retiring)
                .any(|m| m.end.is_none() && m.unsent.is_none())
    }

    /// Pings a quiet link, and gives up one that stayed silent too long.
    fn watch_link(&mut self) {
        if !self.watching() {
            return;
        }
        let silence = self.now - self.last_heard;
        if silence >= self.config.dead_after {
            self.effects.push(Effect::Disconnect);
            self.on_closed();
        } else if silence >= self.config.ping_after && !self.pinged {
            self.pinged = true;
            self.effects.push(Effect::Send(PING_FRAME.to_owned()));
        }
    }

    /// Something arrived, or the watch starts afresh.
    fn heard(&mut self) {
        self.last_heard = self.now;
        self.pinged = false;
    }

    /// Feeds an input at context time `now`.
    pub fn handle(&mut self, input: Input<'_>, now: Seconds) {
        self.now = now;
        match input {
            Input::Opened => {
                self.connected = true;
                self.reconnect_attempts = 0;
                self.heard();
                if let Some(speak) = self.current.as_mut().and_then(|m| m.unsent.take()) {
                    self.effects.push(Effect::Send(speak));
                }
                self.update_state();
            }
            Input::Text(text) => {
                self.heard();
                self.on_text(text);
            }
            Input::Binary(bytes) => {
                self.heard();
                self.on_binary(bytes);
            }
            Input::Closed => self.on_closed(),
            Input::Speak { id, text, voice } => self.on_speak(id, text, voice),
            Input::Stop => self.on_stop(),
            Input::SourceEnded(source) => {
                for m in self.current.iter_mut().chain(self.retiring.iter_mut()) {
                    m.live.remove(&source);
                }
                self.effects.push(Effect::Release(vec![source]));
                self.settle();
            }
            Input::Tick => {
                self.watch_link();
                self.settle();
            }
            Input::Context {
                running,
                sample_rate,
            } => {
                self.context_running = running;
                self.context_rate = sample_rate;
                self.update_state();
            }
        }
    }

    fn on_speak(&mut self, id: String, text: String, voice: Option<String>) {
        if let Some(old) = self.current.take() {
            self.retire(old, EndReason::Superseded);
        }
        let speak = ClientMessage::Speak {
            id: id.clone(),
            text,
            voice,
            model: None,
        }
        .to_json();
        let unsent = if self.connected {
            if !self.watching() {
                self.heard();
            }
            self.effects.push(Effect::Send(speak));
            None
        } else {
            Some(speak)
        };
        self.current = Some(Message {
            id,
            stream: None,
            timeline: None,
            decoder: PcmDecoder::default(),
            live: BTreeSet::new(),
            samples: 0,
            end: None,
            scheduled_end: self.now,
            spoke_at: self.now,
            first_audio_at: None,
            retired_as: None,
            unsent,
        });
        self.settle();
    }

    fn on_stop(&mut self) {
        if let Some(m) = self.current.take() {
            if m.unsent.is_none() {
                self.effects.push(Effect::Send(
                    ClientMessage::Stop {
                        id: Some(m.id.clone()),
                    }
                    .to_json(),
                ));
            }
            self.retire(m, EndReason::Stopped);
            self.settle();
        }
    }

    /// Silences a message that is no longer current; it completes when its `end` arrives. If the
    /// relay already delivered all of it but it is still playing, the listener cut it short:
    /// it completes with `reason` rather than `done`.
    fn retire(&mut self, mut m: Message, reason: EndReason) {
        if m.unsent.is_some() {
            // The relay never heard of it: no `end` will come.
            m.end = Some((reason, None));
            return self.complete(m);
        }
        m.retired_as = Some(reason);
        if !m.live.is_empty() && matches!(m.end, Some((EndReason::Done, _))) {
            m.end = Some((reason, None));
        }
        if !m.live.is_empty() {
            self.effects.push(Effect::Silence {
                sources: m.live.iter().copied().collect(),
                at: self.now,
                ramp: self.config.stop_ramp,
            });
            // Nothing of it plays past the ramp.
            m.scheduled_end = self.now + self.config.stop_ramp;
        }
        self.retiring.push(m);
    }

    fn on_text(&mut self, text: &str) {
        let Ok(message) = ServerMessage::parse(text) else {
            return;
        };
        match message {
            ServerMessage::Start {
                id,
                stream,
                sample_rate,
                ..
            } => {
                if let Some(m) = self
                    .current
                    .as_mut()
                    .filter(|m| m.id == id && m.stream.is_none())
                {
                    m.stream = Some(stream);
                    m.timeline = Some(Timeline::new(
                        sample_rate,
                        self.context_rate,
                        self.config.lead,
                    ));
                }
            }
            ServerMessage::End {
                id, reason, error, ..
            } => {
                // The first message with this id that has not ended yet: current last, since a
                // retiring message with the same id was spoken earlier.
                let target = self
                    .retiring
                    .iter_mut()
                    .chain(self.current.iter_mut())
                    .find(|m| m.id == id && m.end.is_none());
                if let Some(m) = target {
                    let reason = match m.retired_as {
                        Some(retired) if reason == EndReason::Done => retired,
                        _ => reason,
                    };
                    m.end = Some((reason, error));
                }
                self.settle();
            }
            _ => {}
        }
    }

    fn on_binary(&mut self, bytes: &[u8]) {
        let Ok(frame) = AudioFrame::decode(bytes) else {
            return;
        };
        let now = self.now;
        let Some(m) = self.current.as_mut() else {
            return;
        };
        // Frames of any other stream (an old message, or one from before a reconnect) are dropped.
        if m.retired_as.is_some()
            || m.end.is_some()
            || m.stream != Some(frame.stream)
            || u64::from(frame.offset) != m.samples
        {
            return;
        }
        let Some(timeline) = m.timeline.as_mut() else {
            return;
        };
        let mut samples = Vec::with_capacity(frame.pcm.len() / 2);
        m.decoder.decode(frame.pcm, &mut samples);
        if samples.is_empty() {
            return;
        }
        let before = timeline.underruns();
        let placement = timeline.place(now, samples.len() as u64);
        let sample_rate = timeline.sample_rate();
        m.samples += u64::from(frame.samples());
        m.scheduled_end = timeline.next_start().unwrap_or(placement.start);
        m.first_audio_at.get_or_insert(placement.start);
        let source = self.next_source;
        self.next_source += 1;
        m.live.insert(source);
        let underrun = timeline.underruns() != before;
        self.effects.push(Effect::Schedule {
            source,
            samples,
            sample_rate,
            at: placement.start,
        });
        if underrun || self.state != PlayerState::Speaking {
            self.update_state();
        }
    }

    fn on_closed(&mut self) {
        self.connected = false;
        // Every message still waiting for its end will never get it: interrupted, exactly once.
        let mut lost: Vec<Message> = self.retiring.drain(..).collect();
        lost.extend(self.current.take());
        for mut m in lost {
            if !m.live.is_empty() {
                self.effects.push(Effect::Silence {
                    sources: m.live.iter().copied().collect(),
                    at: self.now,
                    ramp: self.config.stop_ramp,
                });
                self.effects
                    .push(Effect::Release(m.live.iter().copied().collect()));
                m.live.clear();
            }
            if m.end.is_none() {
                m.end = Some((EndReason::Interrupted, None));
            }
            self.complete(m);
        }
        let delay = self
            .config
            .reconnect_base_ms
            .saturating_mul(1 << self.reconnect_attempts.min(16));
        self.reconnect_attempts += 1;
        self.effects.push(Effect::Reconnect {
            after_ms: delay.min(self.config.reconnect_max_ms),
        });
        self.update_state();
    }

    /// Completes every message whose end has arrived and whose audio is over.
    fn settle(&mut self) {
        let now = self.now;
        let safety = self.config.safety;
        let done =
            |m: &Message| m.end.is_some() && (m.live.is_empty() || now >= m.scheduled_end + safety);
        let (finished, waiting): (Vec<Message>, Vec<Message>) =
            self.retiring.drain(..).partition(done);
        self.retiring = waiting;
        for m in finished {
            self.complete(m);
        }
        if self.current.as_ref().is_some_and(done) {
            let m = self.current.take().expect("checked");
            self.complete(m);
        }
        self.update_state();
    }

    fn complete(&mut self, m: Message) {
        if !m.live.is_empty() {
            // The safety timer fired: the browser never reported these as ended.
            self.effects
                .push(Effect::Release(m.live.iter().copied().collect()));
        }
        let underruns = m.underruns();
        let (reason, error) = m.end.expect("complete only ended messages");
        self.effects.push(Effect::Complete(Completion {
            id: m.id,
            reason,
            error,
            samples: m.samples,
            underruns,
            first_audio_s: m.first_audio_at.map(|at| at - m.spoke_at),
            total_s: self.now - m.spoke_at,
        }));
    }

    fn update_state(&mut self) {
        let state = if !self.connected {
            if self.reconnect_attempts > 1 {
                PlayerState::Error
            } else {
                PlayerState::Connecting
            }
        } else {
            match &self.current {
                None => PlayerState::Idle,
                Some(m) if m.live.is_empty() => PlayerState::Buffering,
                Some(_) if !self.context_running => PlayerState::BlockedByAutoplay,
                Some(_) => PlayerState::Speaking,
            }
        };
        let underruns = self.current.as_ref().map_or(0, Message::underruns);
        if (state, underruns) != self.reported {
            self.reported = (state, underruns);
            self.state = state;
            self.effects.push(Effect::State { state, underruns });
        }
    }
}
