//! The link: a drop before a message's end (protocol v1) interrupts it once and reconnects
//! with jittered backoff, one after it lets the audio play out; a replaced or refused socket
//! never reconnects; a silent link is pinged then given up; an attempt that never becomes ready
//! is given up and tried again.

use orpheus_player::core::{
    Command, Config, ContextState, Input, PlayerCore, PlayerState, ReportKind,
};
use orpheus_protocol::{EndReason, ServerMessage};

use crate::page::{sent_of, Page};

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
