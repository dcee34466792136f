//! The page around the player core, simulated: it executes the core's effects, plays the
//! relay and the engine, and checks on every effect what a page would see (a message completed
//! twice fails at once).

use orpheus_player::core::{
    Boundary, Command, Completion, Config, ContextState, Effect, Input, PlayerCore, PlayerState,
    Report, ReportKind, SpeakOptions,
};
use orpheus_protocol::codec::RelayError;
use orpheus_protocol::{ClientMessage, EndReason, ServerMessage};

/// The browser and the engine, simulated.
pub struct Page {
    pub core: PlayerCore,
    pub now: f64,
    pub sent: Vec<String>,
    pub commands: Vec<Command>,
    pub completions: Vec<Completion>,
    pub states: Vec<PlayerState>,
    pub downs: Vec<(u16, bool)>,
    pub opens: usize,
    pub reconnects: Vec<u64>,
    pub disconnects: usize,
    pub boundaries: Vec<Boundary>,
    pub configured: Vec<Result<(String, u64), RelayError>>,
}

impl Page {
    /// A page whose player connected and got `ready`, its context running.
    pub fn new() -> Self {
        let mut p = Self::unconnected();
        p.feed(Input::Context(ContextState::Running));
        p.connect_ready();
        p
    }

    pub fn unconnected() -> Self {
        Self {
            core: PlayerCore::new(Config::default(), 42),
            now: 1.0,
            sent: vec![],
            commands: vec![],
            completions: vec![],
            states: vec![],
            downs: vec![],
            opens: 0,
            reconnects: vec![],
            disconnects: 0,
            boundaries: vec![],
            configured: vec![],
        }
    }

    /// A page like [`Page::new`] whose relay speaks protocol v2.
    pub fn v2() -> Self {
        let mut p = Self::unconnected();
        p.feed(Input::Context(ContextState::Running));
        p.feed(Input::Connect);
        p.feed(Input::Opened);
        p.ready_v2();
        p
    }

    /// The link drops: closed with no closing handshake.
    pub fn drop_link(&mut self) {
        self.feed(Input::Closed {
            code: 1006,
            reason: "",
        });
    }

    /// The pending reconnect happens, and the relay (protocol v2) says `ready`.
    pub fn reconnect_v2(&mut self) {
        self.feed(Input::Retry);
        self.feed(Input::Opened);
        self.ready_v2();
    }

    pub fn ready_v2(&mut self) {
        let flow = orpheus_protocol::Flow {
            window_ms: 2000,
            resume_grace_ms: 20_000,
        };
        self.server(ServerMessage::ready(
            "s",
            orpheus_protocol::Limits::default(),
            Some(flow),
        ));
    }

    pub fn connect_ready(&mut self) {
        self.feed(Input::Connect);
        self.feed(Input::Opened);
        self.server(ServerMessage::ready(
            "s",
            orpheus_protocol::Limits::default(),
            None,
        ));
    }

    pub fn feed(&mut self, input: Input<'_>) {
        self.core.handle(input, self.now);
        for effect in self.core.take_effects() {
            match effect {
                Effect::Open => self.opens += 1,
                Effect::Send(text) => self.sent.push(text),
                Effect::Engine(command) => self.commands.push(command),
                Effect::Complete(c) => {
                    assert!(
                        !self.completions.iter().any(|d| d.id == c.id),
                        "{} completed twice",
                        c.id
                    );
                    self.completions.push(c);
                }
                Effect::State(state) => self.states.push(state),
                Effect::Ready => {}
                Effect::LinkDown(e) => self.downs.push((e.code, e.fatal)),
                Effect::Disconnect => self.disconnects += 1,
                Effect::Reconnect { after_ms } => self.reconnects.push(after_ms),
                Effect::Boundary(boundary) => {
                    if let Some(last) = self.boundaries.last() {
                        assert!(
                            last.id != boundary.id || last.char_index < boundary.char_index,
                            "boundaries in order, each once"
                        );
                    }
                    self.boundaries.push(boundary);
                }
                Effect::Configured(result) => self.configured.push(result),
            }
        }
    }

    pub fn server(&mut self, message: ServerMessage) {
        let json = message.to_json();
        self.feed(Input::Text(&json));
    }

    pub fn speak(&mut self, id: &str, text: &str) {
        self.feed(Input::Speak {
            id: id.into(),
            text: text.into(),
            options: SpeakOptions {
                more: false,
                cache: true,
                ..SpeakOptions::default()
            },
        });
    }

    /// Opens message `id` with `text`, more to come.
    pub fn open(&mut self, id: &str, text: &str) {
        self.feed(Input::Speak {
            id: id.into(),
            text: text.into(),
            options: SpeakOptions {
                more: true,
                cache: true,
                ..SpeakOptions::default()
            },
        });
    }

    /// The frames sent, parsed, from index `from` on.
    pub fn sent_since(&self, from: usize) -> Vec<ClientMessage> {
        self.sent[from..]
            .iter()
            .map(|f| ClientMessage::parse(f).expect("a valid client frame"))
            .collect()
    }

    pub fn start(&mut self, id: &str, stream: u32) {
        self.server(ServerMessage::Start {
            id: id.into(),
            stream,
            sample_rate: 24_000,
            channels: 1,
            encoding: orpheus_protocol::AudioEncoding::Pcm,
            resumed_at: None,
        });
    }

    pub fn end(&mut self, id: &str, stream: Option<u32>, reason: EndReason, samples: u64) {
        self.server(ServerMessage::End {
            id: id.into(),
            stream,
            reason,
            samples,
            error: None,
            heard: None,
            metrics: None,
        });
    }

    pub fn report(&mut self, kind: ReportKind, stream: u32, played: u64) {
        self.report_words(kind, stream, played, 0);
    }

    /// An engine report whose cursor passed the start of `words` of the stream's words.
    pub fn report_words(&mut self, kind: ReportKind, stream: u32, played: u64, words: u32) {
        self.feed(Input::Engine(Report {
            kind,
            stream,
            played,
            buffered: 0,
            underruns: 0,
            at: self.now,
            words,
        }));
    }

    pub fn completion(&self, id: &str) -> Option<&Completion> {
        self.completions.iter().find(|c| c.id == id)
    }

    pub fn reason(&self, id: &str) -> Option<EndReason> {
        self.completion(id).map(|c| c.reason)
    }

    pub fn tick_by(&mut self, seconds: f64) {
        self.now += seconds;
        self.feed(Input::Tick);
    }
}

/// The client frames of `kind` sent, parsed.
pub fn sent_of(p: &Page, kind: &str) -> Vec<ClientMessage> {
    p.sent
        .iter()
        .filter(|f| f.contains(&format!("\"type\":\"{kind}\"")))
        .map(|f| ClientMessage::parse(f).expect("a valid client frame"))
        .collect()
}
