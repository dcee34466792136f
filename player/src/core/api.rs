//! The player core's face to the page: what a UI binds to ([`PlayerState`], [`Completion`],
//! [`Progress`], [`LinkError`]), its tunables ([`Config`]), what it is fed ([`Input`], the
//! engine's [`Report`]s) and what it asks the page and the engine to do ([`Effect`],
//! [`Command`]).

use crate::prelude::*;

pub use orpheus_protocol::codec::{SpeakOptions, Word};

use orpheus_protocol::codec::{Metrics, RelayError};
use orpheus_protocol::EndReason;

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
    /// Protocol v2: where its words were said, as the relay told them.
    pub words: Vec<Word>,
    /// Protocol v2: its stream's sample rate (to tell word times in seconds).
    pub rate: Option<u32>,
    /// The context time its first sample played at, if it played (word times count from it).
    pub started_at: Option<Seconds>,
}

/// Protocol v2: the play cursor reached the start of a word of the current message.
#[derive(Debug, Clone, PartialEq)]
pub struct Boundary {
    /// The message id.
    pub id: String,
    /// The word's first character in the message's text, and its length.
    pub char_index: u64,
    pub char_length: u64,
    /// Where in the message's audio the word begins, in milliseconds.
    pub elapsed_ms: u64,
    /// The context time the engine rendered the word's start at: it is heard when the
    /// context's output reaches that time.
    pub rendered_at: Seconds,
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
    /// Protocol v2: while a message waits for its end and the AudioContext does not run (so the
    /// engine renders and reports nothing), its cursor is still reported this often, so that the
    /// relay does not take the link for dead.
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
    /// It ran dry.
    Underrun,
    /// Its last sample was rendered.
    Drained,
    /// It was stopped and has faded out.
    Stopped,
    /// Its cursor passed the start of a word.
    Word,
}

impl ReportKind {
    /// Each kind with its event bit from the engine (`orpheus_player_dsp::event`), in the
    /// order the kinds of one event are taken in. (A frame received while little is buffered
    /// is answered by the worklet and the socket's Worker, never the page: see
    /// `player/js/worklet.js`.)
    pub const BITS: [(u32, ReportKind); 6] = [
        (1, ReportKind::Started),
        (64, ReportKind::Word),
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
    /// The context time of the render quantum it reports on (for `Started`, that of its first
    /// sample).
    pub at: Seconds,
    /// Protocol v2: how many of its words the cursor passed.
    pub words: u32,
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
    /// Protocol v2: the session's defaults, sent once the session is ready (and again on each
    /// new socket): how text is read, and a lexicon.
    Configure {
        /// `markdown` or `plain`, or the relay's choice.
        markup: Option<String>,
        /// Words and how to say them; `None` leaves the session's as it is.
        lexicon: Option<Vec<(String, String)>>,
    },
}

/// A command for the engine in the worklet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A new stream: the engine drops any other.
    Begin {
        /// The stream.
        stream: u32,
        /// Its sample rate.
        rate: u32,
        /// Whether the engine's play cursor goes back to the relay (protocol v2's `played`:
        /// periodically, and at once for a frame received while little is buffered) from the
        /// worklet through the socket's Worker, until the stream's end or a stop. A relay of v1
        /// has no use for it.
        reports: bool,
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
    /// Where more words of the stream begin (stream samples).
    Words {
        /// The stream.
        stream: u32,
        /// The words' first samples, in order.
        starts: Vec<u64>,
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
    /// Protocol v2: a word of the current message starts at the output now.
    Boundary(Boundary),
    /// Protocol v2: the relay took the session's defaults (how text is read, the lexicon's
    /// words), or refused them.
    Configured(Result<(String, u64), RelayError>),
}
