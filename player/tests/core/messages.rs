//! A message's life on a steady link: sent once the session is ready, one stream each, stopped
//! at once, completed exactly once when its end has come and its last sample played (or by the
//! safety timer), refused up front when the relay would refuse it; the states a UI sees.

use orpheus_player::core::{Command, ContextState, Input, PlayerState, ReportKind};
use orpheus_protocol::{EndReason, ServerMessage};

use crate::page::{sent_of, Page};

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
            rate: 24_000,
            reports: false
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
