//! Protocol v2: the play cursor reported (periodically, on receipt, on stop, and while the
//! engine is silent), a lost socket parking the message and resuming it at the cursor, a
//! restarted message's new stream, a parked message's patience, a `speak` lost with the link.

use orpheus_player::core::{Command, ContextState, Input, ReportKind};
use orpheus_protocol::{ClientMessage, EndReason, ServerMessage};

use crate::page::{sent_of, Page};

#[test]
fn v2_reports_the_play_cursor_while_playing_from_the_worklet_and_at_once_on_stop() {
    let mut p = Page::v2();
    p.speak("a", "Hello there.");
    p.start("a", 1);
    assert_eq!(
        p.commands.last(),
        Some(&Command::Begin {
            stream: 1,
            rate: 24_000,
            reports: true
        }),
        "while playing, the worklet reports the cursor (every 250 ms and on receipt)"
    );
    p.report(ReportKind::Started, 1, 0);
    for played in [6_000, 12_000] {
        p.now += 0.25;
        p.report(ReportKind::Progress, 1, played);
    }
    p.now += 0.01;
    p.report(ReportKind::Progress, 1, 12_240);
    assert!(
        sent_of(&p, "played").is_empty(),
        "the core adds none of its own"
    );
    p.feed(Input::Stop);
    let played: Vec<u64> = sent_of(&p, "played")
        .into_iter()
        .map(|m| match m {
            ClientMessage::Played {
                stream: 1,
                played,
                on_receipt: false,
                ..
            } => played,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(played, vec![12_240], "on stop, the last cursor");
    let last_two: Vec<&String> = p.sent.iter().rev().take(2).collect();
    assert!(last_two[0].contains("\"stop\"") && last_two[1].contains("\"played\""));

    let mut v1 = Page::new();
    v1.speak("a", "Hello there.");
    v1.start("a", 1);
    assert!(
        matches!(
            v1.commands.last(),
            Some(Command::Begin { reports: false, .. })
        ),
        "a v1 relay hears no reports from the worklet"
    );
    v1.report(ReportKind::Progress, 1, 6_000);
    v1.feed(Input::Stop);
    assert!(sent_of(&v1, "played").is_empty(), "nor from the core");
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
    // A running context whose engine reports nothing is not covered for: what it has is not
    // known, and the relay goes by its clock.
    p.feed(Input::Context(ContextState::Running));
    let running = p.sent.len();
    p.tick_by(3.0);
    assert_eq!(p.sent.len(), running, "no keepalive while the context runs");
    // Once the message ended, nothing more is reported.
    p.end("a", Some(1), EndReason::Done, 24_000);
    let after_end = p.sent.len();
    p.tick_by(3.0);
    assert_eq!(p.sent.len(), after_end);
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
            rate: 24_000,
            reports: true
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
