//! The core as the JavaScript glue sees it: one method per input, each returning the effects to
//! execute as JSON text (a few per control message; audio frames never come here). Times are
//! the AudioContext's, in seconds; durations in the effects are whole milliseconds. The wasm
//! exports that reach these methods are [`crate::ffi`]'s.

use crate::prelude::*;

use crate::core::{
    Command, Completion, Config, ContextState, Effect, Input, PlayerCore, Progress, Report,
    ReportKind, SpeakOptions, Word,
};
use orpheus_protocol::codec::{numbers, string_map, RelayError, Writer};

/// Whole milliseconds, rounded half up (`f64::round` is std's; the cast saturates below 0).
fn ms(seconds: f64) -> u64 {
    (seconds * 1000.0 + 0.5) as u64
}

fn error_json(e: &RelayError) -> String {
    Writer::default()
        .str("code", &e.code)
        .str("message", &e.message)
        .opt_num("retryAfterSeconds", e.retry_after_s.map(u64::from))
        .finish()
}

fn completion_json(c: &Completion) -> String {
    let mut w = Writer::default()
        .str("t", "complete")
        .str("id", &c.id)
        .str("reason", c.reason.as_str())
        .num("samples", c.samples)
        .num("played", c.played)
        .num("underruns", u64::from(c.underruns))
        .opt_num("firstAudioMs", c.first_audio_s.map(ms))
        .opt_num("startedAtMs", c.started_at.map(ms))
        .num("totalMs", ms(c.total_s));
    if let Some(e) = &c.error {
        w = w.raw("error", &error_json(e));
    }
    if let Some(m) = &c.metrics {
        let metrics = Writer::default()
            .opt_num("firstByteMs", m.first_byte_ms)
            .opt_num("firstAudioMs", m.first_audio_ms)
            .num("segments", m.segments)
            .num("retries", m.retries)
            .num("heldBackMs", m.held_back_ms)
            .num("cacheHits", m.cache_hits)
            .finish();
        w = w.raw("metrics", &metrics);
    }
    if let (Some(rate), false) = (c.rate, c.words.is_empty()) {
        w = w.raw("words", &words_json(&c.words, rate));
    }
    w.opt_num("heardChars", c.heard_chars).finish()
}

/// Words as `[{charIndex, charLength, startMs, endMs}]`.
fn words_json(words: &[Word], rate: u32) -> String {
    let ms = |samples: u64| samples * 1000 / u64::from(rate.max(1));
    let mut out = String::from("[");
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let word = Writer::default()
            .num("charIndex", w.from)
            .num("charLength", w.to.saturating_sub(w.from))
            .num("startMs", ms(w.start))
            .num("endMs", ms(w.end))
            .finish();
        out.push_str(&word);
    }
    out.push(']');
    out
}

fn progress_json(p: &Progress) -> String {
    Writer::default()
        .str("id", &p.id)
        .num("played", p.played)
        .num("buffered", p.buffered)
        .num("rate", u64::from(p.sample_rate))
        .num("underruns", u64::from(p.underruns))
        .finish()
}

fn effect_json(effect: &Effect) -> String {
    let kind = |t: &str| Writer::default().str("t", t);
    match effect {
        Effect::Open => kind("open").finish(),
        Effect::Send(text) => kind("send").str("text", text).finish(),
        Effect::Engine(Command::Begin {
            stream,
            rate,
            reports,
        }) => kind("engine")
            .str("cmd", "begin")
            .num("stream", u64::from(*stream))
            .num("rate", u64::from(*rate))
            .bool("reports", *reports)
            .finish(),
        Effect::Engine(Command::End { stream, samples }) => kind("engine")
            .str("cmd", "end")
            .num("stream", u64::from(*stream))
            .num("samples", *samples)
            .finish(),
        Effect::Engine(Command::Stop { stream }) => kind("engine")
            .str("cmd", "stop")
            .num("stream", u64::from(*stream))
            .finish(),
        Effect::Engine(Command::Words { stream, starts }) => kind("engine")
            .str("cmd", "words")
            .num("stream", u64::from(*stream))
            .raw("starts", &numbers(starts))
            .finish(),
        Effect::Boundary(b) => kind("boundary")
            .str("id", &b.id)
            .num("charIndex", b.char_index)
            .num("charLength", b.char_length)
            .num("elapsedMs", b.elapsed_ms)
            .num("renderedAtMs", ms(b.rendered_at))
            .finish(),
        Effect::Configured(Ok((markup, lexicon))) => kind("configured")
            .str("markup", markup)
            .num("lexicon", *lexicon)
            .finish(),
        Effect::Configured(Err(e)) => kind("configured").raw("error", &error_json(e)).finish(),
        Effect::Complete(c) => completion_json(c),
        Effect::State(state) => kind("state").str("state", state.as_str()).finish(),
        Effect::Ready => kind("ready").finish(),
        Effect::LinkDown(e) => kind("down")
            .num("code", u64::from(e.code))
            .str("reason", &e.reason)
            .bool("fatal", e.fatal)
            .finish(),
        Effect::Disconnect => kind("disconnect").finish(),
        Effect::Reconnect { after_ms } => kind("reconnect").num("ms", *after_ms).finish(),
    }
}

/// The player core, driven by the JavaScript glue.
pub struct Core {
    core: PlayerCore,
}

impl Core {
    fn run(&mut self, input: Input<'_>, now: f64) -> String {
        self.core.handle(input, now);
        self.effects()
    }

    /// The effects so far, as a JSON array.
    fn effects(&mut self) -> String {
        let effects = self.core.take_effects();
        let mut out = String::from("[");
        for (i, effect) in effects.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&effect_json(effect));
        }
        out.push(']');
        out
    }
}

impl Core {
    /// A core not yet connected; `seed` (0 to 1) draws its reconnect jitter.
    pub fn new(seed: f64) -> Core {
        Core {
            core: PlayerCore::new(Config::default(), (seed * u64::MAX as f64) as u64),
        }
    }

    /// The app asked to connect.
    pub fn connect(&mut self, now: f64) -> String {
        self.run(Input::Connect, now)
    }

    /// The reconnect delay is over.
    pub fn retry(&mut self, now: f64) -> String {
        self.run(Input::Retry, now)
    }

    /// The socket opened.
    pub fn opened(&mut self, now: f64) -> String {
        self.run(Input::Opened, now)
    }

    /// A text frame arrived.
    pub fn text(&mut self, text: &str, now: f64) -> String {
        self.run(Input::Text(text), now)
    }

    /// Audio frames are flowing (to the engine); nothing to do but note the link lives.
    pub fn heard(&mut self, now: f64) {
        self.core.handle(Input::Heard, now);
    }

    /// The socket closed.
    pub fn closed(&mut self, code: u16, reason: &str, now: f64) -> String {
        self.run(Input::Closed { code, reason }, now)
    }

    /// The app asked to speak; `more` when the text goes on in `append`s until `finish`;
    /// `cache` false keeps it from the relay's segment cache; `markup` (`markdown`, `plain`)
    /// says how the relay reads the text; `encoding` (`opus`) how its audio travels.
    #[allow(clippy::too_many_arguments)]
    pub fn speak(
        &mut self,
        id: &str,
        text: &str,
        voice: Option<&str>,
        model: Option<&str>,
        more: bool,
        cache: bool,
        markup: Option<&str>,
        encoding: Option<&str>,
        now: f64,
    ) -> String {
        let options = SpeakOptions {
            voice: voice.map(ToOwned::to_owned),
            model: model.map(ToOwned::to_owned),
            more,
            cache,
            markup: markup.map(ToOwned::to_owned),
            encoding: encoding.map(ToOwned::to_owned),
        };
        let (id, text) = (id.to_owned(), text.to_owned());
        self.run(Input::Speak { id, text, options }, now)
    }

    /// More text for message `id`, opened with `more`.
    pub fn append(&mut self, id: &str, text: &str, now: f64) -> String {
        let (id, text) = (id.to_owned(), text.to_owned());
        self.run(Input::Append { id, text }, now)
    }

    /// The text of message `id` is complete.
    pub fn finish(&mut self, id: &str, now: f64) -> String {
        self.run(Input::Finish { id: id.to_owned() }, now)
    }

    /// The session's defaults: how the relay reads text (`markdown`, `plain`) and a lexicon
    /// as the JSON object of its words and what is said for them (`None` leaves the session's
    /// as it is; one string crosses into wasm more cheaply than an array of them).
    pub fn configure(&mut self, markup: Option<&str>, lexicon: Option<&str>, now: f64) -> String {
        let lexicon = lexicon.and_then(string_map);
        let markup = markup.map(ToOwned::to_owned);
        self.run(Input::Configure { markup, lexicon }, now)
    }

    /// The app asked to stop.
    pub fn stop(&mut self, now: f64) -> String {
        self.run(Input::Stop, now)
    }

    /// The engine reported `events` (its event bits) on a stream.
    #[allow(clippy::too_many_arguments)]
    pub fn engine(
        &mut self,
        events: u32,
        stream: u32,
        played: f64,
        buffered: f64,
        underruns: u32,
        at: f64,
        words: u32,
        now: f64,
    ) -> String {
        for (bit, kind) in ReportKind::BITS {
            if events & bit != 0 {
                let report = Report {
                    kind,
                    stream,
                    played: played as u64,
                    buffered: buffered as u64,
                    underruns,
                    at,
                    words,
                };
                self.core.handle(Input::Engine(report), now);
            }
        }
        self.effects()
    }

    /// Time passed.
    pub fn tick(&mut self, now: f64) -> String {
        self.run(Input::Tick, now)
    }

    /// The AudioContext's state: `running`, `suspended`, `interrupted` or `closed`.
    pub fn context(&mut self, state: &str, now: f64) -> String {
        let state = match state {
            "running" => ContextState::Running,
            "closed" => ContextState::Closed,
            _ => ContextState::Suspended,
        };
        self.run(Input::Context(state), now)
    }

    /// The app closed the player.
    pub fn shutdown(&mut self, now: f64) -> String {
        self.run(Input::Shutdown, now)
    }

    /// How far the current message has played (`{id, played, buffered, rate, underruns}`), or
    /// an empty string before its audio begins.
    pub fn progress(&self) -> String {
        self.core
            .progress()
            .as_ref()
            .map_or_else(String::new, progress_json)
    }

    /// When to call `tick` next (context seconds), or NaN when no timer is due.
    pub fn next_deadline(&self) -> f64 {
        self.core.next_deadline().unwrap_or(f64::NAN)
    }

    /// The current state's name.
    pub fn state(&self) -> &'static str {
        self.core.state().as_str()
    }
}
