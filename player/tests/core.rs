//! Scenario and randomized tests of the player core, on the host: the glue and the engine are
//! played by a small simulation that checks, on every effect, what a page would see.

use orpheus_player::core::{
    Command, Completion, Config, ContextState, Effect, Input, PlayerCore, PlayerState, Report,
    ReportKind, SpeakOptions,
};
use orpheus_protocol::{ClientMessage, EndReason, ServerMessage};

/// The browser and the engine, simulated.
struct Page {
    core: PlayerCore,
    now: f64,
    sent: Vec<String>,
    commands: Vec<Command>,
    completions: Vec<Completion>,
    states: Vec<PlayerState>,
    downs: Vec<(u16, bool)>,
    opens: usize,
    reconnects: Vec<u64>,
    disconnects: usize,
}

impl Page {
    /// A page whose player connected and got `ready`, its context running.
    fn new() -> Self {
        let mut p = Self::unconnected();
        p.feed(Input::Context(ContextState::Running));
        p.connect_ready();
        p
    }

    fn unconnected() -> Self {
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
        }
    }

    /// A page like [`Page::new`] whose relay speaks protocol v2.
    fn v2() -> Self {
        let mut p = Self::unconnected();
        p.feed(Input::Context(ContextState::Running));
        p.feed(Input::Connect);
        p.feed(Input::Opened);
        p.ready_v2();
        p
    }

    /// The link drops: closed with no closing handshake.
    fn drop_link(&mut self) {
        self.feed(Input::Closed {
            code: 1006,
            reason: "",
        });
    }

    /// The pending reconnect happens, and the relay (protocol v2) says `ready`.
    fn reconnect_v2(&mut self) {
        self.feed(Input::Retry);
        self.feed(Input::Opened);
        self.ready_v2();
    }

    fn ready_v2(&mut self) {
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

    fn connect_ready(&mut self) {
        self.feed(Input::Connect);
        self.feed(Input::Opened);
        self.server(ServerMessage::ready(
            "s",
            orpheus_protocol::Limits::default(),
            None,
        ));
    }

    fn feed(&mut self, input: Input<'_>) {
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
            }
        }
    }

    fn server(&mut self, message: ServerMessage) {
        let json = message.to_json();
        self.feed(Input::Text(&json));
    }

    fn speak(&mut self, id: &str, text: &str) {
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
    fn open(&mut self, id: &str, text: &str) {
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
    fn sent_since(&self, from: usize) -> Vec<ClientMessage> {
        self.sent[from..]
            .iter()
            .map(|f| ClientMessage::parse(f).expect("a valid client frame"))
            .collect()
    }

    fn start(&mut self, id: &str, stream: u32) {
        self.server(ServerMessage::Start {
            id: id.into(),
            stream,
            sample_rate: 24_000,
            channels: 1,
            encoding: "pcm_s16le".into(),
            resumed_at: None,
        });
    }

    fn end(&mut self, id: &str, stream: Option<u32>, reason: EndReason, samples: u64) {
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

    fn report(&mut self, kind: ReportKind, stream: u32, played: u64) {
        self.feed(Input::Engine(Report {
            kind,
            stream,
            played,
            buffered: 0,
            underruns: 0,
            at: self.now,
        }));
    }

    fn completion(&self, id: &str) -> Option<&Completion> {
        self.completions.iter().find(|c| c.id == id)
    }

    fn reason(&self, id: &str) -> Option<EndReason> {
        self.completion(id).map(|c| c.reason)
    }

    fn tick_by(&mut self, seconds: f64) {
        self.now += seconds;
        self.feed(Input::Tick);
    }
}

#[test]
fn a_message_completes_once_when_the_engine_has_played_its_last_sample() {
    let mut p = Page::new();
    p.speak("a", "Hello.");
    assert!(p.sent[0].contains(r#""type":"speak""#));
    p.start("a", 1);
    assert_eq!(
        p.commands,
        vec![Command::Begin {
            stream: 1,
            rate: 24_000
        }]
    );
    p.report(ReportKind::Started, 1, 0);
    assert_eq!(p.core.state(), PlayerState::Speaking);
    p.report(ReportKind::Progress, 1, 12_000);
    let progress = p.core.progress().unwrap();
    assert_eq!(
        (progress.id.as_str(), progress.played, progress.sample_rate),
        ("a", 12_000, 24_000)
    );
    p.end("a", Some(1), EndReason::Done, 48_000);
    assert_eq!(
        p.commands[1],
        Command::End {
            stream: 1,
            samples: 48_000
        }
    );
    assert!(p.completions.is_empty(), "the audio is still playing");
    p.report(ReportKind::Drained, 1, 48_000);
    let c = p.completion("a").unwrap();
    assert_eq!(
        (c.reason, c.samples, c.played),
        (EndReason::Done, 48_000, 48_000)
    );
    assert_eq!(c.first_audio_s, Some(0.0));
    assert_eq!(p.core.state(), PlayerState::Idle);
}

#[test]
fn a_second_message_gets_its_own_stream_and_both_complete() {
    let mut p = Page::new();
    for (i, id) in ["a", "b"].iter().enumerate() {
        let stream = i as u32 + 1;
        p.speak(id, "Hi.");
        p.start(id, stream);
        p.report(ReportKind::Started, stream, 0);
        p.end(id, Some(stream), EndReason::Done, 100);
        p.report(ReportKind::Drained, stream, 100);
    }
    assert_eq!(p.reason("a"), Some(EndReason::Done));
    assert_eq!(p.reason("b"), Some(EndReason::Done));
}

#[test]
fn stop_is_authoritative() {
    let mut p = Page::new();
    p.speak("a", "A long one.");
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    p.feed(Input::Stop);
    assert!(p.sent.last().unwrap().contains(r#""type":"stop""#));
    assert_eq!(p.commands.last(), Some(&Command::Stop { stream: 1 }));
    assert_eq!(p.core.state(), PlayerState::Idle, "idle at once");
    p.report(ReportKind::Stopped, 1, 1200);
    assert!(p.completions.is_empty(), "waits for the relay's end");
    p.end("a", Some(1), EndReason::Stopped, 5000);
    let c = p.completion("a").unwrap();
    assert_eq!((c.reason, c.played), (EndReason::Stopped, 1200));
}

#[test]
fn stopping_a_fully_delivered_message_mid_playback_is_stopped_not_done() {
    let mut p = Page::new();
    p.speak("a", "Hi.");
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    p.end("a", Some(1), EndReason::Done, 96_000);
    p.feed(Input::Stop);
    p.report(ReportKind::Stopped, 1, 24_000);
    assert_eq!(p.reason("a"), Some(EndReason::Stopped));
    // A stop that crosses the relay's done is stopped too.
    p.speak("b", "Hi.");
    p.start("b", 2);
    p.feed(Input::Stop);
    p.end("b", Some(2), EndReason::Done, 100);
    p.report(ReportKind::Stopped, 2, 10);
    assert_eq!(p.reason("b"), Some(EndReason::Stopped));
}

#[test]
fn a_new_message_supersedes_and_the_old_stream_is_done_with() {
    let mut p = Page::new();
    p.speak("a", "First.");
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    p.speak("b", "Second.");
    assert_eq!(p.commands.last(), Some(&Command::Stop { stream: 1 }));
    p.end("a", Some(1), EndReason::Superseded, 500);
    // The engine went on to the new stream before reporting the old one stopped.
    p.start("b", 2);
    assert_eq!(p.reason("a"), Some(EndReason::Superseded));
    p.end("b", Some(2), EndReason::Done, 100);
    p.report(ReportKind::Drained, 2, 100);
    assert_eq!(p.reason("b"), Some(EndReason::Done));
}

#[test]
fn completes_when_the_engine_never_reports() {
    let mut p = Page::new();
    p.speak("a", "Hi.");
    p.start("a", 1);
    p.end("a", Some(1), EndReason::Done, 24_000);
    let deadline = p.core.next_deadline().unwrap();
    assert!(
        (deadline - (p.now + 1.0 + 0.5)).abs() < 1e-9,
        "audio left plus safety"
    );
    p.tick_by(1.49);
    assert!(p.completions.is_empty());
    p.tick_by(0.02);
    assert_eq!(p.reason("a"), Some(EndReason::Done));
    assert_eq!(
        p.commands.last(),
        Some(&Command::Stop { stream: 1 }),
        "the engine is told to let go"
    );
    // Progress reports move the deadline with the audio, never ahead of it.
    let mut p = Page::new();
    p.speak("b", "Hi.");
    p.start("b", 2);
    p.end("b", Some(2), EndReason::Done, 48_000);
    p.now += 1.0;
    p.report(ReportKind::Progress, 2, 24_000);
    let deadline = p.core.next_deadline().unwrap();
    assert!((deadline - (p.now + 1.0 + 0.5)).abs() < 1e-9, "{deadline}");
}

#[test]
fn a_drop_before_the_end_interrupts_once_and_reconnects_with_jittered_backoff() {
    let mut p = Page::new();
    p.speak("a", "Hi.");
    p.start("a", 1);
    p.drop_link();
    assert_eq!(p.reason("a"), Some(EndReason::Interrupted));
    assert_eq!(p.commands.last(), Some(&Command::Stop { stream: 1 }));
    assert_eq!(p.downs, vec![(1006, false)]);
    let mut delays = vec![];
    for _ in 0..8 {
        delays.push(*p.reconnects.last().unwrap());
        p.feed(Input::Retry);
        p.drop_link();
    }
    assert!(delays[0] >= 125 && delays[0] <= 250, "{delays:?}");
    assert!(delays.iter().all(|&d| d <= 8_000), "capped: {delays:?}");
    assert!(delays[7] >= 4_000, "grows: {delays:?}");
    assert_eq!(p.core.state(), PlayerState::Error);
    // Two players never retry in lockstep.
    let other: Vec<u64> = {
        let mut q = Page::unconnected();
        q.core = PlayerCore::new(Config::default(), 7);
        q.connect_ready();
        q.drop_link();
        q.reconnects
    };
    assert_ne!(other[0], delays[0]);
    p.feed(Input::Retry);
    p.feed(Input::Opened);
    p.server(ServerMessage::ready(
        "s",
        orpheus_protocol::Limits::default(),
        None,
    ));
    assert_eq!(p.core.state(), PlayerState::Idle);
}

#[test]
fn a_drop_after_the_end_lets_the_audio_play_out_and_completes_done() {
    let mut p = Page::new();
    p.speak("a", "Hi.");
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    p.end("a", Some(1), EndReason::Done, 96_000);
    p.drop_link();
    assert!(p.completions.is_empty(), "still playing what it has");
    assert!(
        !p.commands.contains(&Command::Stop { stream: 1 }),
        "not cut"
    );
    p.report(ReportKind::Drained, 1, 96_000);
    let c = p.completion("a").unwrap();
    assert_eq!((c.reason, c.played), (EndReason::Done, 96_000));
}

#[test]
fn replaced_or_refused_never_reconnects_and_says_why() {
    for code in [4000, 4401, 4403, 4503, 1008] {
        let mut p = Page::new();
        p.speak("a", "Hi.");
        p.feed(Input::Closed {
            code,
            reason: "why",
        });
        assert!(p.reconnects.is_empty(), "{code}: no retry");
        assert_eq!(p.downs, vec![(code, true)], "{code}");
        assert_eq!(p.core.state(), PlayerState::Closed);
        let want = if code == 4000 {
            EndReason::Replaced
        } else {
            EndReason::Interrupted
        };
        assert_eq!(p.reason("a"), Some(want), "{code}");
        // A speak now cannot be carried: it ends at once, and no socket opens by itself.
        p.speak("b", "Hi.");
        assert_eq!(p.reason("b"), Some(EndReason::Interrupted));
        assert_eq!(p.opens, 1);
        // Until the app connects again.
        p.feed(Input::Connect);
        assert_eq!(p.opens, 2);
    }
}

#[test]
fn connect_is_idempotent_and_hurries_a_pending_reconnect() {
    let mut p = Page::unconnected();
    p.feed(Input::Connect);
    p.feed(Input::Connect);
    p.feed(Input::Opened);
    p.feed(Input::Connect);
    assert_eq!(p.opens, 1, "one socket");
    p.drop_link();
    assert_eq!(p.reconnects.len(), 1);
    p.feed(Input::Connect);
    assert_eq!(p.opens, 2, "connect during the backoff opens now");
    p.feed(Input::Retry);
    assert_eq!(p.opens, 2, "the pending retry is void");
}

#[test]
fn a_speak_is_sent_once_the_session_is_ready() {
    let mut p = Page::unconnected();
    p.feed(Input::Connect);
    p.speak("a", "Hi.");
    p.feed(Input::Opened);
    assert!(p.sent.is_empty(), "not before ready");
    p.server(ServerMessage::ready(
        "s",
        orpheus_protocol::Limits::default(),
        None,
    ));
    assert_eq!(p.sent.len(), 1);
    // Refused before ready: the message ends interrupted once, nothing was sent.
    let mut p = Page::unconnected();
    p.feed(Input::Connect);
    p.speak("a", "Hi.");
    p.feed(Input::Opened);
    p.feed(Input::Closed {
        code: 4401,
        reason: "expired ticket",
    });
    assert!(p.sent.is_empty());
    assert_eq!(p.reason("a"), Some(EndReason::Interrupted));
}

#[test]
fn what_the_relay_would_refuse_ends_at_once_unsent() {
    let mut p = Page::new();
    p.speak("long", &"x".repeat(4001));
    let c = p.completion("long").unwrap();
    assert_eq!(c.error.as_ref().unwrap().code, "text_too_long");
    assert_eq!(
        c.error.as_ref().unwrap().message,
        "text exceeds limits.max_text_chars"
    );
    // The relay's own limits, from ready, count.
    let limits = orpheus_protocol::Limits {
        max_text_chars: 10,
        max_frame_bytes: 50,
        ..Default::default()
    };
    p.server(ServerMessage::ready("s", limits, None));
    p.speak("eleven", "Hello world");
    assert_eq!(
        p.completion("eleven").unwrap().error.as_ref().unwrap().code,
        "text_too_long"
    );
    assert!(p.sent.is_empty(), "nothing refused was sent");
    // Within the characters but not the frame size: quotes escape to two bytes each.
    p.speak("b", &"\"".repeat(10));
    let c = p.completion("b").unwrap();
    assert_eq!(c.error.as_ref().unwrap().code, "frame_too_large");
    assert!(p.sent.is_empty());
    p.speak("c", &"q".repeat(10));
    assert_eq!(p.sent.len(), 1, "a frame within both limits goes out");
    // Protocol v2: one that waited across a failed attempt ends the same way, not resumed.
    let mut p = Page::v2();
    p.drop_link();
    p.speak("long", &"x".repeat(4001));
    p.feed(Input::Retry);
    p.drop_link();
    p.reconnect_v2();
    assert_eq!(p.reason("long"), Some(EndReason::Error));
    assert!(sent_of(&p, "speak").is_empty() && sent_of(&p, "resume").is_empty());
}

#[test]
fn an_error_frame_answering_a_speak_settles_it() {
    let mut p = Page::new();
    p.speak("a", "Hi.");
    p.server(ServerMessage::error(
        orpheus_protocol::ErrorCode::FrameTooLarge,
    ));
    let c = p.completion("a").unwrap();
    assert_eq!(c.reason, EndReason::Error);
    assert_eq!(c.error.as_ref().unwrap().code, "frame_too_large");
    // A rate-limit error answers some other frame (a speak over the rate gets an end).
    p.speak("b", "Hi.");
    p.server(ServerMessage::Error {
        code: orpheus_protocol::ErrorCode::RateLimited,
        message: "x".into(),
        retry_after_s: Some(1),
    });
    assert!(p.completion("b").is_none());
}

#[test]
fn a_silent_link_is_pinged_then_given_up() {
    let mut p = Page::new();
    p.speak("a", "Hi.");
    p.tick_by(2.9);
    assert_eq!(p.sent.len(), 1);
    p.tick_by(0.2);
    assert_eq!(p.sent.last().unwrap(), r#"{"type":"ping"}"#);
    p.tick_by(6.0);
    assert_eq!(p.disconnects, 1);
    assert_eq!(p.reason("a"), Some(EndReason::Interrupted));
    assert_eq!(p.reconnects.len(), 1);
}

#[test]
fn a_connection_that_never_becomes_ready_is_given_up_and_tried_again() {
    // The handshake hangs (a half-open link): a speak made meanwhile must not wait for the
    // browser's own timeout. (With a relay of protocol v2, it waits for the next attempt.)
    let mut p = Page::v2();
    p.drop_link();
    p.feed(Input::Retry);
    p.speak("a", "Hi.");
    let (downs, reconnects) = (p.downs.clone(), p.reconnects.len());
    assert_eq!(p.core.next_deadline(), Some(p.now + 10.0));
    p.tick_by(9.9);
    assert_eq!((p.disconnects, p.reconnects.len()), (0, reconnects));
    p.tick_by(0.2);
    assert_eq!((p.disconnects, p.reconnects.len()), (1, reconnects + 1));
    assert_eq!(p.downs[downs.len()..], [(1006, false)]);
    // Opened, but `ready` never comes: the same patience, counted from the attempt.
    p.feed(Input::Retry);
    p.now += 4.0;
    p.feed(Input::Opened);
    p.tick_by(5.9);
    assert_eq!(p.disconnects, 1);
    p.tick_by(0.2);
    assert_eq!((p.disconnects, p.reconnects.len()), (2, reconnects + 2));
    // The next attempt gets through, and the speak that waited goes out, once, not resumed.
    p.reconnect_v2();
    assert_eq!(sent_of(&p, "speak").len(), 1);
    assert!(sent_of(&p, "resume").is_empty());
    assert_eq!(
        p.core.next_deadline(),
        Some(p.now + 3.0),
        "now the link watch"
    );
    assert!(p.completions.is_empty());
    // With no attempt getting through, it ends `interrupted` after the resume patience.
    p.drop_link();
    p.speak("b", "Hello.");
    for _ in 0..34 {
        p.tick_by(1.0);
        p.feed(Input::Retry);
    }
    assert!(
        p.reason("b").is_none(),
        "an attempt's 10 s, then 25 s of patience"
    );
    assert!(
        sent_of(&p, "resume").is_empty(),
        "what the relay never had is not resumed"
    );
    for _ in 0..6 {
        p.tick_by(1.0);
        p.feed(Input::Retry);
    }
    assert_eq!(p.reason("b"), Some(EndReason::Interrupted));
    // The very first attempt hangs, before the player knows the relay's protocol: the speak
    // waits for the next all the same.
    let mut p = Page::unconnected();
    p.feed(Input::Context(ContextState::Running));
    p.feed(Input::Connect);
    p.speak("c", "Hi.");
    p.tick_by(10.0);
    assert_eq!((p.disconnects, p.reconnects.len()), (1, 1));
    p.feed(Input::Retry);
    p.feed(Input::Opened);
    p.server(ServerMessage::ready(
        "s",
        orpheus_protocol::Limits::default(),
        None,
    ));
    assert_eq!(sent_of(&p, "speak").len(), 1);
    assert!(p.completions.is_empty());
}

#[test]
fn a_starved_stream_after_its_end_completes_by_the_safety_timer() {
    // The end came but part of the audio never will: the engine reports the stream starved,
    // its cursor standing, every 250 ms; that must not hold the message open.
    let mut p = Page::new();
    p.speak("a", "Hi.");
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    p.now += 0.5;
    p.report(ReportKind::Progress, 1, 12_000);
    p.end("a", Some(1), EndReason::Done, 48_000);
    for _ in 0..40 {
        p.now += 0.25;
        p.report(ReportKind::Underrun, 1, 12_000);
    }
    let c = p
        .completion("a")
        .expect("completed within audio left plus safety");
    assert_eq!(
        (c.reason, c.played, c.samples),
        (EndReason::Done, 12_000, 48_000)
    );
}

#[test]
fn autoplay_and_interruptions_are_their_own_states() {
    let mut p = Page::unconnected();
    p.feed(Input::Context(ContextState::Suspended));
    p.connect_ready();
    p.speak("a", "Hi.");
    assert_eq!(p.core.state(), PlayerState::BlockedByAutoplay);
    p.feed(Input::Context(ContextState::Running));
    assert_eq!(p.core.state(), PlayerState::Buffering);
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    assert_eq!(p.core.state(), PlayerState::Speaking);
    p.feed(Input::Context(ContextState::Suspended));
    assert_eq!(
        p.core.state(),
        PlayerState::Suspended,
        "not autoplay: it ran"
    );
    p.feed(Input::Context(ContextState::Running));
    assert_eq!(p.core.state(), PlayerState::Speaking);
}

#[test]
fn a_rejected_speak_completes_with_its_error() {
    let mut p = Page::new();
    p.speak("a", "Hi.");
    p.server(ServerMessage::End {
        id: "a".into(),
        stream: None,
        reason: EndReason::Error,
        samples: 0,
        error: Some(orpheus_protocol::EndError::new(
            orpheus_protocol::ErrorCode::RateLimited,
            Some(7),
        )),
        heard: None,
        metrics: None,
    });
    let c = p.completion("a").unwrap();
    assert_eq!(c.error.as_ref().unwrap().retry_after_s, Some(7));
    assert_eq!(c.first_audio_s, None);
}

#[test]
fn shutdown_interrupts_everything_once() {
    let mut p = Page::new();
    p.speak("a", "Hi.");
    p.start("a", 1);
    p.end("a", Some(1), EndReason::Done, 100);
    p.speak("b", "Hi.");
    p.feed(Input::Shutdown);
    p.feed(Input::Shutdown);
    assert_eq!(p.reason("b"), Some(EndReason::Interrupted));
    assert_eq!(p.reason("a"), Some(EndReason::Superseded));
    assert_eq!(p.core.state(), PlayerState::Closed);
}

/// A random walk of 5 to 60 steps, time moving on by up to 0.5 s before each: a new speak
/// (draws 0 and 1), a `start` of the latest message in a new stream (2), a tick of up to 12 s
/// (11), or, for draws 3 to 10, what `step` does with the latest message's id and stream.
/// Returns how many speaks it made and the last stream.
fn random_walk(
    p: &mut Page,
    rng: &mut orpheus_test_support::Rng,
    mut step: impl FnMut(&mut Page, &mut orpheus_test_support::Rng, u32, &str, u32),
) -> (u32, u32) {
    let (mut spoken, mut stream) = (0u32, 0u32);
    for _ in 0..rng.usize(5..60) {
        p.now += rng.f64() * 0.5;
        let id = format!("m{spoken}");
        match rng.u32(..12) {
            0 | 1 => {
                spoken += 1;
                p.speak(&format!("m{spoken}"), "Some text.");
            }
            2 => {
                stream += 1;
                p.start(&id, stream);
            }
            11 => p.tick_by(rng.f64() * 12.0),
            draw => step(p, rng, draw, &id, stream),
        }
    }
    (spoken, stream)
}

/// Random sequences of everything a page and a relay can do: every speak completes exactly
/// once by the end, and no stream is begun twice.
#[test]
fn randomized_sequences_complete_every_message_exactly_once() {
    let mut rng = orpheus_test_support::rng(0x5EED_0010);
    for _ in 0..2000 {
        let mut p = Page::new();
        let (spoken, _) = random_walk(&mut p, &mut rng, |p, rng, draw, id, stream| match draw {
            3 => p.end(id, Some(stream), EndReason::Done, 1000),
            4 => p.end(id, None, EndReason::Error, 0),
            5 => p.feed(Input::Stop),
            6 => p.report(ReportKind::Started, stream, 0),
            7 => p.report(ReportKind::Drained, stream, 1000),
            8 => p.report(ReportKind::Stopped, stream, 10),
            9 => p.feed(Input::Closed {
                code: [1006, 1000, 4000][rng.usize(..3)],
                reason: "",
            }),
            _ => {
                p.feed(Input::Connect);
                p.feed(Input::Retry);
                p.feed(Input::Opened);
                p.server(ServerMessage::ready(
                    "s",
                    orpheus_protocol::Limits::default(),
                    None,
                ));
            }
        });
        p.feed(Input::Shutdown);
        assert_eq!(
            p.completions.len(),
            spoken as usize,
            "every speak completes once"
        );
        let begins: Vec<u32> = p
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Begin { stream, .. } => Some(*stream),
                _ => None,
            })
            .collect();
        let mut unique = begins.clone();
        unique.dedup();
        assert_eq!(unique, begins, "a stream is begun once");
    }
}

/// Random sequences of protocol v2 (drops mid-message, resumes, starved streams, attempts
/// that open and never become ready), then a world that never answers again (no socket
/// opens, no `end` comes, the engine reports its streams starved): every speak still
/// settles, exactly once, within the patience the player documents, without a shutdown.
#[test]
fn randomized_v2_sequences_settle_every_message_even_when_nothing_answers() {
    let mut rng = orpheus_test_support::rng(0x5EED_0011);
    for _ in 0..1000 {
        let mut p = Page::v2();
        let (spoken, stream) =
            random_walk(&mut p, &mut rng, |p, rng, draw, id, stream| match draw {
                3 => p.end(id, Some(stream), EndReason::Done, 48_000),
                4 => p.feed(Input::Stop),
                5 => p.report(ReportKind::Started, stream, 0),
                6 => p.report(ReportKind::Progress, stream, rng.u64(..24_000)),
                7 => p.report(ReportKind::Underrun, stream, 24_000),
                8 => p.drop_link(),
                9 => {
                    p.feed(Input::Retry);
                    p.feed(Input::Opened);
                }
                _ => p.reconnect_v2(),
            });
        // Nothing answers from here on; reconnect timers fire, and a live stream is reported
        // starved, as the engine does.
        let mut waited = 0.0;
        while p.completions.len() < spoken as usize && waited < 60.0 {
            p.tick_by(0.25);
            waited += 0.25;
            p.feed(Input::Retry);
            p.report(ReportKind::Underrun, stream, 24_000);
        }
        assert_eq!(
            p.completions.len(),
            spoken as usize,
            "every speak settles with nothing answering: {:?}",
            p.core
        );
        assert!(
            waited <= 10.0 + 20.0 + 5.0 + 0.5,
            "within a connect attempt plus the resume patience: {waited} s"
        );
    }
}

/// The client frames of `kind` sent, parsed.
fn sent_of(p: &Page, kind: &str) -> Vec<ClientMessage> {
    p.sent
        .iter()
        .filter(|f| f.contains(&format!("\"type\":\"{kind}\"")))
        .map(|f| ClientMessage::parse(f).expect("a valid client frame"))
        .collect()
}

#[test]
fn v2_reports_the_play_cursor_while_playing_and_at_once_on_stop() {
    let mut p = Page::v2();
    p.speak("a", "Hello there.");
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    for played in [6_000, 12_000] {
        p.now += 0.25;
        p.report(ReportKind::Progress, 1, played);
    }
    p.now += 0.01;
    p.report(ReportKind::Progress, 1, 12_240);
    p.feed(Input::Stop);
    let played: Vec<u64> = sent_of(&p, "played")
        .into_iter()
        .map(|m| match m {
            ClientMessage::Played {
                stream: 1, played, ..
            } => played,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        played,
        vec![6_000, 12_000, 12_240],
        "every 250 ms, and on stop"
    );
    let last_two: Vec<&String> = p.sent.iter().rev().take(2).collect();
    assert!(last_two[0].contains("\"stop\"") && last_two[1].contains("\"played\""));

    let mut v1 = Page::new();
    v1.speak("a", "Hello there.");
    v1.start("a", 1);
    v1.report(ReportKind::Progress, 1, 6_000);
    v1.feed(Input::Stop);
    assert!(
        sent_of(&v1, "played").is_empty(),
        "a v1 relay hears no reports"
    );
}

#[test]
fn v2_reports_the_cursor_while_the_engine_is_silent_so_the_link_is_not_taken_for_dead() {
    let mut p = Page::v2();
    p.speak("a", "Hello there.");
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    p.now += 0.25;
    p.report(ReportKind::Progress, 1, 6_000);
    // The context is suspended: the engine renders nothing and reports nothing.
    p.feed(Input::Context(ContextState::Suspended));
    let before = sent_of(&p, "played").len();
    for _ in 0..40 {
        match p.core.next_deadline() {
            Some(at) if at <= p.now + 0.1 => p.now = p.now.max(at),
            _ => p.now += 0.1,
        }
        p.feed(Input::Tick);
    }
    let keepalives = &sent_of(&p, "played")[before..];
    assert!(
        (3..=5).contains(&keepalives.len()),
        "about one a second: {keepalives:?}"
    );
    assert!(keepalives.iter().all(|m| matches!(
        m,
        ClientMessage::Played {
            stream: 1,
            played: 6_000,
            ..
        }
    )));
    // Once the message ended, nothing more is reported.
    p.end("a", Some(1), EndReason::Done, 24_000);
    let after_end = p.sent.len();
    p.tick_by(3.0);
    assert_eq!(p.sent.len(), after_end);
}

#[test]
fn v2_reports_every_frame_received_on_receipt_while_little_is_buffered() {
    let mut p = Page::v2();
    p.speak("a", "Hello there.");
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    for played in [100, 200, 300] {
        p.now += 0.01;
        p.report(ReportKind::Received, 1, played);
    }
    p.now += 0.25;
    p.report(ReportKind::Progress, 1, 6_000);
    let reports: Vec<(u64, bool)> = sent_of(&p, "played")
        .into_iter()
        .map(|m| match m {
            ClientMessage::Played {
                played, on_receipt, ..
            } => (played, on_receipt),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        reports,
        vec![(100, true), (200, true), (300, true), (6_000, false)],
        "each frame at once, marked; the periodic report as before"
    );
}

#[test]
fn v2_a_lost_socket_parks_the_message_and_resumes_it_at_the_cursor() {
    let mut p = Page::v2();
    p.speak("a", "Hello there, how are you?");
    p.start("a", 1);
    p.report(ReportKind::Started, 1, 0);
    p.now += 0.25;
    p.report(ReportKind::Progress, 1, 6_000);
    p.drop_link();
    assert!(
        p.completions.is_empty(),
        "the message waits for the next socket"
    );
    assert!(
        !p.commands.contains(&Command::Stop { stream: 1 }),
        "the engine plays on what it has"
    );
    p.now += 0.5;
    p.report(ReportKind::Progress, 1, 18_000);
    p.reconnect_v2();
    let resume = sent_of(&p, "resume");
    assert_eq!(
        resume,
        vec![ClientMessage::Resume {
            id: "a".into(),
            stream: Some(1),
            played: 18_000
        }]
    );
    p.server(ServerMessage::End {
        id: "a".into(),
        stream: Some(1),
        reason: EndReason::Done,
        samples: 48_000,
        error: None,
        heard: Some(orpheus_protocol::Heard {
            samples: 48_000,
            chars: 25,
        }),
        metrics: None,
    });
    p.report(ReportKind::Drained, 1, 48_000);
    let done = p.completion("a").expect("completed");
    assert_eq!((done.reason, done.heard_chars), (EndReason::Done, Some(25)));
}

#[test]
fn v2_a_restarted_message_plays_its_new_stream() {
    let mut p = Page::v2();
    p.speak("a", "Hello there.");
    p.start("a", 1);
    p.drop_link();
    p.reconnect_v2();
    p.start("a", 2);
    assert_eq!(
        p.commands.last(),
        Some(&Command::Begin {
            stream: 2,
            rate: 24_000
        })
    );
}

#[test]
fn v2_a_parked_message_ends_interrupted_once_when_no_socket_comes_back() {
    let mut p = Page::v2();
    p.speak("a", "Hello there.");
    p.start("a", 1);
    p.drop_link();
    p.tick_by(20.0);
    assert!(p.completions.is_empty(), "within the grace period");
    p.tick_by(6.0);
    assert_eq!(p.reason("a"), Some(EndReason::Interrupted));
    assert!(p.commands.contains(&Command::Stop { stream: 1 }));
    p.tick_by(30.0);
    assert_eq!(p.completions.len(), 1);
}

#[test]
fn v2_stop_while_parked_ends_at_once_and_tells_the_next_socket() {
    let mut p = Page::v2();
    p.speak("a", "Hello there.");
    p.start("a", 1);
    p.drop_link();
    p.feed(Input::Stop);
    assert!(p.commands.contains(&Command::Stop { stream: 1 }));
    p.report(ReportKind::Stopped, 1, 0);
    assert_eq!(p.reason("a"), Some(EndReason::Stopped));
    p.reconnect_v2();
    assert_eq!(
        sent_of(&p, "stop"),
        vec![ClientMessage::Stop {
            id: Some("a".into())
        }]
    );
    assert!(sent_of(&p, "resume").is_empty());
}

#[test]
fn v2_a_speak_lost_with_the_link_is_sent_again_when_the_relay_does_not_know_it() {
    let mut p = Page::v2();
    p.speak("a", "Hello there.");
    p.drop_link();
    p.reconnect_v2();
    assert_eq!(
        sent_of(&p, "resume"),
        vec![ClientMessage::Resume {
            id: "a".into(),
            stream: None,
            played: 0
        }]
    );
    // The relay never got the speak: it does not know the id.
    p.end("a", None, EndReason::Interrupted, 0);
    assert!(p.completions.is_empty(), "not settled: sent again");
    assert_eq!(sent_of(&p, "speak").len(), 2);
    p.start("a", 1);
    p.end("a", Some(1), EndReason::Done, 24_000);
    p.report(ReportKind::Drained, 1, 24_000);
    assert_eq!(p.reason("a"), Some(EndReason::Done));
}

#[test]
fn v2_written_text_goes_out_in_appends_at_most_every_interval_then_finish() {
    let mut p = Page::v2();
    let interval = Config::default().append_interval;
    p.open("m", "");
    let from = p.sent.len() - 1;
    assert!(matches!(
        p.sent_since(from)[..],
        [ClientMessage::Speak { more: true, .. }]
    ));
    // A model's tokens, 5 ms apart: coalesced.
    for token in ["Hel", "lo ", "the", "re.", " How", " are", " you?"] {
        p.now += 0.005;
        p.feed(Input::Append {
            id: "m".into(),
            text: token.into(),
        });
    }
    assert_eq!(
        p.sent_since(from + 1),
        vec![ClientMessage::Append {
            id: "m".into(),
            text: "Hel".into(),
            at: Some(0)
        }],
        "the first at once, the rest wait for the interval"
    );
    assert!(p
        .core
        .next_deadline()
        .is_some_and(|at| at <= p.now + interval));
    p.tick_by(interval);
    p.feed(Input::Finish { id: "m".into() });
    p.feed(Input::Finish { id: "m".into() });
    assert_eq!(
        p.sent_since(from + 2),
        vec![
            ClientMessage::Append {
                id: "m".into(),
                text: "lo there. How are you?".into(),
                at: Some(3)
            },
            ClientMessage::Finish { id: "m".into() }
        ],
        "coalesced, then finish once"
    );
    p.feed(Input::Append {
        id: "m".into(),
        text: "ignored".into(),
    });
    p.tick_by(1.0);
    assert_eq!(p.sent.len(), from + 4, "nothing after finish");
}

#[test]
fn v2_written_text_waits_for_ready_and_goes_again_whole_after_a_resume() {
    let mut p = Page::unconnected();
    p.feed(Input::Context(ContextState::Running));
    p.open("m", "Hi");
    p.feed(Input::Append {
        id: "m".into(),
        text: " there.".into(),
    });
    assert!(p.sent.is_empty(), "not connected yet");
    p.feed(Input::Connect);
    p.feed(Input::Opened);
    p.ready_v2();
    assert_eq!(
        p.sent_since(0),
        vec![
            ClientMessage::Speak {
                id: "m".into(),
                text: "Hi".into(),
                voice: None,
                model: None,
                more: true,
                cache: true
            },
            ClientMessage::Append {
                id: "m".into(),
                text: " there.".into(),
                at: Some(2)
            }
        ]
    );
    p.start("m", 1);
    p.drop_link();
    p.feed(Input::Append {
        id: "m".into(),
        text: " More".into(),
    });
    p.feed(Input::Finish { id: "m".into() });
    let from = p.sent.len();
    p.reconnect_v2();
    let resent = p.sent_since(from);
    assert!(
        matches!(resent[0], ClientMessage::Resume { .. }),
        "{resent:?}"
    );
    assert_eq!(
        resent[1..],
        [
            ClientMessage::Append {
                id: "m".into(),
                text: "Hi there. More".into(),
                at: Some(0)
            },
            ClientMessage::Finish { id: "m".into() }
        ],
        "all of it from 0: the relay skips what it has"
    );
}

#[test]
fn v2_a_written_speak_lost_with_the_link_goes_again_with_its_text() {
    let mut p = Page::v2();
    p.open("m", "One");
    p.feed(Input::Append {
        id: "m".into(),
        text: " two.".into(),
    });
    p.drop_link();
    p.reconnect_v2();
    let from = p.sent.len();
    p.end("m", None, EndReason::Interrupted, 0);
    assert_eq!(
        p.sent_since(from)[1..],
        [ClientMessage::Append {
            id: "m".into(),
            text: " two.".into(),
            at: Some(3)
        }],
        "the speak again, then what it lacked"
    );
    assert!(matches!(
        p.sent_since(from)[0],
        ClientMessage::Speak { more: true, .. }
    ));
    assert_eq!(p.reason("m"), None, "still going");
}

#[test]
fn v2_stop_ends_a_written_message_and_its_text_stops_going_out() {
    let mut p = Page::v2();
    p.open("m", "Start");
    p.feed(Input::Stop);
    let from = p.sent.len();
    p.feed(Input::Append {
        id: "m".into(),
        text: " more".into(),
    });
    p.feed(Input::Finish { id: "m".into() });
    p.tick_by(1.0);
    assert!(p.sent_since(from).is_empty());
    p.end("m", Some(1), EndReason::Stopped, 0);
    assert_eq!(p.reason("m"), Some(EndReason::Stopped));
}

#[test]
fn v2_text_of_a_message_no_longer_current_goes_nowhere() {
    let mut p = Page::v2();
    p.open("old", "One.");
    p.open("new", "Two.");
    let from = p.sent.len();
    p.feed(Input::Append {
        id: "old".into(),
        text: " Late.".into(),
    });
    p.feed(Input::Finish { id: "old".into() });
    p.tick_by(1.0);
    assert!(p.sent_since(from).is_empty(), "{:?}", p.sent_since(from));
}

#[test]
fn a_relay_of_protocol_1_gets_written_text_whole_once_it_is_finished() {
    let mut p = Page::new();
    p.open("m", "One");
    p.feed(Input::Append {
        id: "m".into(),
        text: " two.".into(),
    });
    p.tick_by(1.0);
    let from = p.sent.len();
    assert!(
        !p.sent_since(0)
            .iter()
            .any(|f| matches!(f, ClientMessage::Speak { .. })),
        "nothing before the text is complete"
    );
    p.feed(Input::Finish { id: "m".into() });
    assert_eq!(
        p.sent_since(from),
        vec![ClientMessage::Speak {
            id: "m".into(),
            text: "One two.".into(),
            voice: None,
            model: None,
            more: false,
            cache: true
        }]
    );
    p.start("m", 1);
    p.end("m", Some(1), EndReason::Done, 24_000);
    p.report(ReportKind::Drained, 1, 24_000);
    assert_eq!(p.reason("m"), Some(EndReason::Done));
}
