//! Protocol v2 flow control: audio within the window of the play cursor, later segments
//! requested only when the audio ahead runs low, and what an `end` says was heard.

use orpheus_protocol::{ClientMessage, EndReason, ErrorCode, ServerMessage};
use orpheus_worker::flow::lead_needed_ms;
use orpheus_worker::session::Config;

use crate::harness::{long_text, Harness};

const RATE: u64 = 24_000;

fn stop(h: &mut Harness) {
    h.text(&ClientMessage::Stop { id: None }.to_json());
}

#[test]
fn audio_stays_within_the_window_and_later_segments_wait_for_the_cursor() {
    let mut h = Harness::v2(Config::default());
    h.speak("m", &long_text(20));
    let stream = 1;
    assert_eq!(
        h.fetches_of(stream).len(),
        2,
        "the first two segments at once"
    );
    let fetches = h.fetches_of(stream);
    h.complete(fetches[0], 12 * RATE as usize, 4096);
    h.complete(fetches[1], 12 * RATE as usize, 4096);
    assert!(
        h.received(stream) <= 375 * RATE / 1000,
        "before any report, only what may be in flight: {}",
        h.received(stream)
    );
    // The client plays in real time, reporting every 250 ms.
    let mut played = 0;
    while h.fetches_of(stream).len() == 2 {
        h.now += 250;
        played = (played + RATE / 4).min(h.received(stream));
        h.played(stream, played);
        assert!(
            h.received(stream) - played <= 2 * RATE,
            "never more than the window ahead of the cursor"
        );
        assert!(
            played < 24 * RATE,
            "the third segment was requested in time"
        );
    }
    let ahead_ms = (24 * RATE - played) * 1000 / RATE;
    assert!(
        ahead_ms < lead_needed_ms(200) && ahead_ms + 500 >= lead_needed_ms(150),
        "requested when the audio ahead fell below the lead: {ahead_ms} ms ahead"
    );
    stop(&mut h);
    assert!(h.open_fetches.is_empty(), "a stop releases the upstream");
    let ServerMessage::End {
        reason,
        heard: Some(heard),
        metrics: Some(metrics),
        ..
    } = h.last_end()
    else {
        panic!("a v2 end says what was heard and how it went");
    };
    assert_eq!(reason, EndReason::Stopped);
    assert_eq!(heard.samples, played);
    assert_eq!(metrics.segments, 3);
    assert!(
        metrics.held_back_ms >= 20_000,
        "most of 24 s waited in the relay"
    );
    // Heard: the whole first segment and part of the second, cut at a word.
    let text = long_text(20);
    let heard_text: String = text.chars().take(heard.chars as usize).collect();
    assert!(text.starts_with(&heard_text));
    let rest = &text[heard_text.len()..];
    assert!(rest.starts_with(' '), "{heard_text:?} then {rest:?}");
}

#[test]
fn a_slow_reader_holds_at_most_the_window_and_every_message_ends_done() {
    let mut h = Harness::v2(Config::default());
    let text = long_text(12);
    h.speak("m", &text);
    let most_ahead = h.play_to_end(1, 3 * RATE as usize);
    assert!(most_ahead <= 2 * RATE, "ahead of the cursor: {most_ahead}");
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&1], h.expected_audio(1), "bit-exact");
    let ServerMessage::End {
        heard: Some(heard), ..
    } = h.last_end()
    else {
        panic!("heard");
    };
    assert_eq!(heard.chars, text.chars().count() as u64, "done: all of it");
    assert_eq!(
        h.session.next_deadline(),
        None,
        "nothing left to wake the object for"
    );
}

/// What a reader at half speed makes the relay hold depends on its segments, not on the
/// message's length: a 4,000-character message holds no more than one of 1,200.
#[test]
fn a_slow_readers_longer_message_holds_no_more_in_the_relay() {
    let segment = 12 * RATE;
    let held_back_ms = |chars: usize| {
        let mut h = Harness::v2(Config::default());
        let text: String = long_text(66).chars().take(chars).collect();
        h.speak("m", &text);
        let mut played = 0;
        // A minute of reports every 250 ms, each 125 ms of audio further on.
        for _ in 0..240 {
            h.deliver(1, segment as usize);
            h.now += 250;
            played = (played + RATE / 8).min(h.received(1));
            h.played(1, played);
        }
        stop(&mut h);
        let ServerMessage::End {
            metrics: Some(metrics),
            ..
        } = h.last_end()
        else {
            panic!("a v2 end reports its metrics");
        };
        metrics.held_back_ms
    };
    let (short, long) = (held_back_ms(1200), held_back_ms(4000));
    assert!(long <= short, "held {long} ms against {short} ms");
    assert!(
        long <= 2 * segment * 1000 / RATE,
        "at most the first two segments, requested together: {long} ms"
    );
}

#[test]
fn version_1_clients_see_nothing_of_version_2() {
    let mut h = Harness::new(Config::default());
    h.played(1, 0);
    assert!(matches!(
        h.texts.last(),
        Some(ServerMessage::Error {
            code: ErrorCode::UnknownType,
            ..
        })
    ));
    h.speak("m", "Hello there.");
    let fetch = h.fetches_of(1)[0];
    h.complete(fetch, 48_000, 4096);
    let ServerMessage::End {
        reason,
        heard,
        metrics,
        ..
    } = h.last_end()
    else {
        unreachable!()
    };
    assert_eq!(reason, EndReason::Done);
    assert_eq!((heard, metrics), (None, None));
    assert_eq!(h.audio[&1].len(), 96_000, "no window: everything at once");
}

#[test]
fn a_client_that_never_reports_is_paced_in_real_time_and_its_message_ends_done() {
    let mut h = Harness::v2(Config::default());
    h.speak("m", &long_text(4));
    let mut waited_ms = 0;
    while h.ends().is_empty() {
        assert!(waited_ms < 60_000, "the message never ended");
        h.deliver(1, 2 * RATE as usize);
        h.now += 100;
        waited_ms += 100;
        h.feed(orpheus_worker::session::Input::Tick);
    }
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&1], h.expected_audio(1));
    let audio_ms = h.received(1) * 1000 / RATE;
    assert!(
        waited_ms >= audio_ms && waited_ms <= audio_ms + 2_000 + 1_000,
        "paced by the clock: {waited_ms} ms for {audio_ms} ms of audio"
    );
}

#[test]
fn a_report_with_a_malformed_on_receipt_is_refused_and_the_message_goes_on() {
    let mut h = Harness::v2(Config::default());
    h.speak("m", "Hello there.");
    let fetch = h.fetches_of(1)[0];
    h.complete(fetch, 4_800, 4096);
    let received = h.received(1);
    let frame = serde_json::json!({
        "type": "played", "stream": 1, "played": 0, "received": received, "on_receipt": "yes",
    });
    h.text(&frame.to_string());
    assert_eq!(h.errors(), vec![ErrorCode::InvalidMessage]);
    assert!(h.ends().is_empty(), "the message goes on");
    let frame = serde_json::json!({
        "type": "played", "stream": 1, "played": 4_800, "received": received, "on_receipt": true,
    });
    h.text(&frame.to_string());
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&1], h.expected_audio(1));
}
