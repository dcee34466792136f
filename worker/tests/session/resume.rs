//! Protocol v2 resume: a dropped or replaced socket parks the message; a `resume` continues it
//! from the play cursor, or restarts it at a segment boundary after the object lost its memory;
//! the grace period ends it `interrupted`, once.

use orpheus_protocol::{EndReason, ServerMessage, CLOSE_LINK_SILENT, CLOSE_REPLACED};
use orpheus_worker::session::{Config, Durability, Input};

use crate::harness::{long_text, Harness};

const RATE: u64 = 24_000;

/// A v2 session with a message whose first two segments arrived, played `played` samples in.
fn playing(played: u64) -> Harness {
    playing_with(Config::default(), played)
}

fn playing_with(config: Config, played: u64) -> Harness {
    let mut h = Harness::v2(config);
    h.speak("m", &long_text(10));
    // The first two segments, 2 s each, are requested at once.
    h.deliver(1, 2 * RATE as usize);
    while h.received(1) < played + RATE / 10 {
        h.now += 100;
        let cursor = played.min(h.received(1));
        h.played(1, cursor);
    }
    h.played(1, played);
    h
}

#[test]
fn a_dropped_socket_parks_the_message_and_a_resume_continues_it_bit_exact() {
    let mut h = playing(30_000);
    h.feed(Input::Disconnected(h.socket));
    assert!(h.ends().is_empty(), "parked, not ended");
    assert!(!h.open_fetches.is_empty(), "the upstream goes on");
    // The upstream finishes the segment in progress meanwhile.
    h.deliver(1, 2 * RATE as usize);
    h.now += 5_000;
    h.connect();
    h.resume("m", Some(1), 30_000);
    h.play_to_end(1, 2 * RATE as usize);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(
        h.audio[&1],
        h.expected_audio(1),
        "each sample once, in order"
    );
}

#[test]
fn a_replaced_v2_socket_is_closed_and_its_message_waits_for_the_resume() {
    let mut h = playing(10_000);
    let old = h.socket;
    h.connect();
    assert_eq!(h.closed.get(&old), Some(&CLOSE_REPLACED));
    assert!(h.ends().is_empty(), "the old socket gets only its close");
    h.resume("m", Some(1), 10_000);
    h.play_to_end(1, 2 * RATE as usize);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&1], h.expected_audio(1));
}

#[test]
fn a_resume_before_start_restates_it() {
    let mut h = Harness::v2(Config::default());
    h.speak("m", &long_text(3));
    h.feed(Input::Disconnected(h.socket));
    let fetch = h.fetches_of(1)[0];
    h.complete(fetch, RATE as usize, 4096);
    h.connect();
    h.resume("m", None, 0);
    assert!(
        matches!(h.texts.last(), Some(ServerMessage::Start { stream: 1, .. }))
            || h.texts
                .iter()
                .any(|m| matches!(m, ServerMessage::Start { .. })),
        "start"
    );
    h.play_to_end(1, RATE as usize);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&1], h.expected_audio(1));
}

#[test]
fn a_reporting_client_whose_link_stalls_is_never_taken_to_have_heard_by_the_clock() {
    let config = Config::default();
    let dead_after = config.dead_link_ms();
    let mut h = Harness::v2(config);
    h.speak("a", "Hello there.");
    h.play_to_end(1, RATE as usize);
    // The next message goes out on a new socket, which goes dark (half-open) before the
    // client reports anything on it: its `start` and audio never arrive.
    let dark = h.connect();
    h.speak("b", &long_text(3));
    let first_audio = h.now;
    while h.now < first_audio + dead_after - 100 {
        h.deliver(2, 2 * RATE as usize);
        h.now += 100;
        h.feed(Input::Tick);
    }
    assert_eq!(
        h.ends().len(),
        1,
        "b waits for its client to report receiving it"
    );
    assert!(
        !h.closed.contains_key(&dark),
        "the link is not given up yet"
    );
    // Past the bound, the link is taken for dead: the socket is closed and b parked, never
    // ended by the clock.
    while h.now < first_audio + dead_after + 500 {
        h.now += 100;
        h.feed(Input::Tick);
    }
    assert_eq!(h.closed.get(&dark), Some(&CLOSE_LINK_SILENT));
    assert_eq!(h.ends().len(), 1, "b is parked, not ended");
    h.now += 5_000;
    h.connect();
    h.resume("b", None, 0);
    h.play_to_end(2, 2 * RATE as usize);
    assert_eq!(
        h.ends(),
        vec![
            ("a".into(), EndReason::Done, None),
            ("b".into(), EndReason::Done, None)
        ]
    );
    assert_eq!(h.audio[&2], h.expected_audio(2), "all of b, once, in order");
}

#[test]
fn the_grace_period_ends_the_message_interrupted_once() {
    // Shorter than the upstream's first-byte timeout, so that only the grace period ends it.
    let config = Config {
        resume_grace_ms: 10_000,
        ..Config::default()
    };
    let grace = config.resume_grace_ms;
    let mut h = playing_with(config, 30_000);
    h.feed(Input::Disconnected(h.socket));
    // The upstream finishes meanwhile; nothing is sent while the message is parked.
    h.deliver(1, 2 * RATE as usize);
    h.now += grace - 1;
    h.feed(Input::Tick);
    assert_eq!(
        h.session.active_stream(),
        Some(1),
        "still within the grace period"
    );
    h.now += 1;
    h.feed(Input::Tick);
    assert!(
        h.open_fetches.is_empty(),
        "expired: the upstream is released"
    );
    assert_eq!(h.session.active_stream(), None);
    h.feed(Input::Tick);
    // A late resume learns the ending, with what was heard.
    h.connect();
    h.resume("m", Some(1), 30_000);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Interrupted, None)]);
    let ServerMessage::End {
        heard: Some(heard), ..
    } = h.last_end()
    else {
        panic!("heard");
    };
    assert_eq!(heard.samples, 30_000);
}

#[test]
fn after_an_eviction_the_unplayed_part_restarts_at_the_segment_boundary() {
    // The first segment (2 s) played whole, the second partly: the restart begins at 2 s.
    let mut h = playing(2 * RATE + 2_000);
    h.evict(Config::default());
    h.connect();
    h.resume("m", Some(1), 2 * RATE + 2_000);
    let fetches = h.fetches_of(2);
    assert!(
        !fetches.is_empty(),
        "a new stream, its segments requested again"
    );
    assert_eq!(
        h.fetch_order[&2].keys().next(),
        Some(&1),
        "from the segment in progress"
    );
    h.play_to_end(2, 2 * RATE as usize);
    let starts: Vec<_> = h
        .texts
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Start {
                stream, resumed_at, ..
            } => Some((*stream, *resumed_at)),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![(1, None), (2, Some(2 * RATE))]);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&2], h.expected_audio(2));
}

#[test]
fn only_the_record_of_a_message_playing_is_written_without_holding_its_audio() {
    let mut h = Harness::v2(Config::default());
    h.speak("m", &long_text(10));
    assert_eq!(
        h.writes,
        vec![Durability::Confirmed],
        "its stream number and budget are confirmed before its first frame"
    );
    // Finished segments and a liveness refresh change only the record.
    h.deliver(1, 2 * RATE as usize);
    h.now += Config::default().resume_grace_ms / 4;
    h.played(1, 1_000);
    assert!(h.writes.len() >= 3, "{:?}", h.writes);
    assert!(
        h.writes[1..].iter().all(|&w| w == Durability::Unconfirmed),
        "{:?}",
        h.writes
    );
    // Its ending is confirmed.
    h.text(r#"{"type":"stop","id":"m"}"#);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Stopped, None)]);
    assert_eq!(h.writes.last(), Some(&Durability::Confirmed));
}

#[test]
fn a_resume_whose_end_was_lost_gets_the_same_end_again() {
    let mut h = Harness::v2(Config::default());
    h.speak("m", "Hello there.");
    h.play_to_end(1, RATE as usize);
    let first = h.last_end();
    // The link drops before the client reads the `end`; it resumes on a new socket.
    h.feed(Input::Disconnected(h.socket));
    h.connect();
    h.resume("m", Some(1), 12_000);
    let again = h.last_end();
    let ending = |m: &ServerMessage| match m {
        ServerMessage::End {
            id,
            reason,
            samples,
            heard,
            ..
        } => (id.clone(), *reason, *samples, *heard),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        ending(&again),
        ending(&first),
        "the same end: done, all samples"
    );
    assert_eq!(h.ends().len(), 2, "sent twice, ended once");
}
