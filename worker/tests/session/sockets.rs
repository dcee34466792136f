//! Sockets come and go: replacement, disconnection, stale sockets, hibernation and restarts.

use orpheus_protocol::{EndReason, ServerMessage, CLOSE_REPLACED};
use orpheus_worker::session::{
    serving_after_wake, Attachment, Config, Effect, Input, Session, Stored,
};

use crate::harness::{long_text, Harness};

#[test]
fn replace_and_disconnect_release_the_upstream() {
    let mut h = Harness::new(Config::default());
    h.speak("m", &long_text(6));
    let old = h.socket;
    h.connect();
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Replaced, None)]);
    assert!(
        matches!(h.sent_to[&old].last(), Some(ServerMessage::End { .. })),
        "the old socket hears its message's end"
    );
    assert_eq!(h.closed.get(&old), Some(&CLOSE_REPLACED));
    assert!(h.attachments[&old].closed);
    assert!(h.open_fetches.is_empty());

    let mut h = Harness::new(Config::default());
    h.speak("m", &long_text(6));
    h.feed(Input::Disconnected(h.socket));
    assert!(
        h.open_fetches.is_empty(),
        "nobody listens: upstream released"
    );
    assert!(h.ends().is_empty(), "nothing is sent to a closed socket");
    assert!(h.attachments[&h.socket].closed);
}

#[test]
fn a_stale_socket_never_displaces_the_live_one() {
    let mut h = Harness::new(Config::default());
    let stale = h.socket;
    h.connect();
    h.speak("m", &long_text(6));
    let live_fetches = h.open_fetches.len();
    // The replaced socket still sends and then errors: nothing it says counts.
    h.feed(Input::Text(stale, r#"{"type":"stop"}"#));
    h.feed(Input::Text(
        stale,
        r#"{"type":"speak","id":"intruder","text":"Hello."}"#,
    ));
    h.feed(Input::Disconnected(stale));
    assert_eq!(h.session.serving(), Some(h.socket));
    assert_eq!(h.session.active_stream(), Some(1));
    assert_eq!(h.open_fetches.len(), live_fetches, "its requests still run");
    assert!(h.ends().is_empty());
}

#[test]
fn a_disconnect_without_a_message_marks_the_socket_closed() {
    let mut h = Harness::new(Config::default());
    h.feed(Input::Disconnected(h.socket));
    assert!(h.attachments[&h.socket].closed);
    assert_eq!(h.session.serving(), None);
}

#[test]
fn stream_numbers_and_fetch_ids_continue_across_sockets() {
    let mut h = Harness::new(Config::default());
    h.speak("a", "Hello.");
    h.complete(h.fetches_of(1)[0], 100, 64);
    // The client goes away and comes back: not a live replacement.
    h.feed(Input::Disconnected(h.socket));
    h.connect();
    h.speak("b", "Hello again.");
    assert_eq!(h.session.active_stream(), Some(2), "stream 1 is not reused");
    assert_eq!(h.stored.as_ref().unwrap().next_stream, 3);
    // The harness also checks that no fetch id is ever reused.
    h.complete(h.fetches_of(2)[0], 100, 64);
    assert_eq!(h.ends().len(), 2);
}

#[test]
fn stream_numbers_come_from_the_stored_state() {
    let stored = Stored {
        next_stream: 41,
        ..Stored::default()
    };
    let mut h = Harness::with_stored(Config::default(), Some(stored));
    h.speak("m", "Hello.");
    assert_eq!(h.session.active_stream(), Some(41));
    assert_eq!(h.stored.as_ref().unwrap().next_stream, 42, "stored at once");
}

#[test]
fn restore_after_eviction_ends_the_lost_message_once() {
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hi.");
    let last = h.attachments[&h.socket].clone();
    assert_eq!(last.active.as_ref().unwrap().id, "m");
    let mut restored = Session::restore(Config::default(), last.clone(), h.stored.clone(), h.now);
    assert_eq!(restored.serving(), Some(h.socket));
    let effects = restored.take_effects();
    let ends: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(_, message) => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 1);
    assert!(matches!(
        &ends[0],
        ServerMessage::End {
            reason: EndReason::Interrupted,
            stream: Some(1),
            ..
        }
    ));
    let persisted = effects.iter().rev().find_map(|e| match e {
        Effect::Persist(_, a) => Some(a.clone()),
        _ => None,
    });
    assert_eq!(
        persisted.unwrap().active,
        None,
        "the interruption is recorded, so it is sent once"
    );
    restored.handle(
        Input::Text(h.socket, r#"{"type":"speak","id":"n","text":"Hi."}"#),
        h.now,
    );
    assert_eq!(restored.active_stream(), Some(2), "stream numbers carry on");
}

#[test]
fn after_a_wake_only_the_newest_open_socket_is_served() {
    let attachment = |generation, closed| Attachment {
        session: "s1".into(),
        generation,
        active: None,
        closed,
        version: Default::default(),
        reports: false,
    };
    let all = [
        attachment(3, false),
        attachment(7, true),
        attachment(5, false),
        attachment(1, false),
    ];
    assert_eq!(serving_after_wake(&all), Some(5));
    assert_eq!(serving_after_wake(&[attachment(2, true)]), None);
    assert_eq!(serving_after_wake(&[]), None);
}
