//! Every deadline is served whether or not an upstream request runs, and across the object
//! losing its memory: an open message left idle ends `text_timeout` once, whatever its text;
//! one whose appends come far apart (the object hibernating between them) takes them all and
//! ends `done`; a silent reporting client holds its message only for a bounded time.

use orpheus_protocol::{EndReason, ErrorCode, CLOSE_LINK_SILENT};
use orpheus_worker::session::{Config, Input};

use crate::harness::Harness;

const RATE: usize = 24_000;

/// The listener gets and plays, in real time, all the audio of `stream` the relay has so far,
/// each upstream request answered with `samples`, reporting every 250 ms.
fn play_what_there_is(h: &mut Harness, stream: u32, samples: usize) {
    h.deliver(stream, samples);
    for _ in 0..(samples / RATE * 4 + 8) {
        h.now += 250;
        let received = h.received(stream);
        h.played(stream, received);
    }
}

/// Opens message `m` with `text`, more to come, and leaves it: it ends `text_timeout` once, at
/// the idle limit after it opened, the object hibernating (`hibernate`) a second in.
fn left_idle(text: &str, hibernate: bool) {
    let config = Config::default();
    let idle = config.text_idle_ms;
    let mut h = Harness::v2(config.clone());
    let opened = h.now;
    h.open("m", text);
    h.wait_until(opened + 1_000);
    if hibernate {
        h.hibernate(config);
    }
    h.wait_until(opened + idle - 1);
    assert!(h.ends().is_empty(), "{text:?}: not before the idle limit");
    assert!(h.session.next_deadline().is_some(), "its deadline is kept");
    h.wait_until(opened + idle + 60_000);
    assert_eq!(
        h.ends(),
        vec![("m".into(), EndReason::Error, Some(ErrorCode::TextTimeout))],
        "{text:?}"
    );
    assert!(h.started.is_empty(), "{text:?}: nothing was requested");
}

#[test]
fn an_open_message_with_no_text_left_idle_ends_text_timeout_once() {
    left_idle("", false);
}

#[test]
fn an_open_message_with_an_unfinished_word_left_idle_ends_text_timeout_once() {
    left_idle("Hello", false);
}

#[test]
fn an_idle_open_message_ends_text_timeout_once_after_the_object_lost_its_memory() {
    left_idle("", true);
    left_idle("Hello", true);
}

#[test]
fn appends_far_apart_across_hibernations_end_done_bit_exact() {
    let config = Config::default();
    let mut h = Harness::v2(config.clone());
    h.open("m", "");
    let pieces = [
        "Hello there, this is the first sentence. ",
        "And this one comes twelve seconds later. ",
        "The last one closes the reply.",
    ];
    let mut appended = h.now;
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            // Twelve seconds after the last append: the object hibernated, and wakes for this.
            h.hibernate(config.clone());
            h.wait_until(appended + 12_000);
        }
        h.append("m", piece);
        appended = h.now;
        if i + 1 < pieces.len() {
            play_what_there_is(&mut h, 1, RATE);
            assert!(h.ends().is_empty(), "the message waits for more text");
        }
    }
    h.finish("m");
    h.play_to_end(1, RATE);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(
        h.audio[&1],
        h.expected_audio(1),
        "every sample once, in order"
    );
    let sentences: Vec<&str> = pieces.iter().map(|p| p.trim_end()).collect();
    assert_eq!(h.inputs_of(1), sentences);
}

#[test]
fn a_message_waiting_for_text_has_only_its_idle_deadline() {
    // What lets the object hibernate: nothing ticks while nothing can change.
    let config = Config::default();
    let idle = config.text_idle_ms;
    let mut h = Harness::v2(config);
    h.open("m", "");
    h.append("m", "A whole sentence to speak. ");
    let appended = h.now;
    play_what_there_is(&mut h, 1, RATE);
    assert_eq!(h.session.next_deadline(), Some(appended + idle));
}

#[test]
fn a_message_waiting_for_text_of_a_client_that_never_reports_has_only_its_idle_deadline() {
    // Once the clock says it played what it was sent, nothing ticks for it either.
    let config = Config::default();
    let idle = config.text_idle_ms;
    let mut h = Harness::v2(config);
    h.open("m", "");
    h.append("m", "A whole sentence to speak. ");
    let appended = h.now;
    h.deliver(1, RATE);
    h.wait_until(appended + 4_000);
    assert_eq!(
        h.received(1),
        RATE as u64,
        "all of it went out, paced by the clock"
    );
    assert_eq!(h.session.next_deadline(), Some(appended + idle));
}

#[test]
fn a_silent_reporting_client_with_everything_is_left_alone() {
    // It has all the audio and reported it: its silence holds nothing up.
    let config = Config::default();
    let dead_after = config.dead_link_ms();
    let mut h = Harness::v2(config);
    h.open("m", "");
    h.append("m", "A whole sentence to speak. ");
    play_what_there_is(&mut h, 1, RATE);
    h.wait_until(h.now + dead_after * 2);
    assert!(h.closed.is_empty(), "{:?}", h.closed);
    assert!(h.ends().is_empty());
}

#[test]
fn a_silent_reporting_client_the_relay_waits_on_is_closed_and_its_message_resumes() {
    let config = Config::default();
    let dead_after = config.dead_link_ms();
    let mut h = Harness::v2(config);
    h.speak(
        "m",
        "A message long enough to be in flight when the link goes dark.",
    );
    h.deliver(1, 3 * RATE);
    h.played(1, 2_400);
    let silent_from = h.now;
    let socket = h.socket;
    h.wait_until(silent_from + dead_after - 1);
    assert!(h.closed.is_empty(), "not before the bound");
    h.wait_until(silent_from + dead_after + 200);
    assert_eq!(h.closed.get(&socket), Some(&CLOSE_LINK_SILENT));
    assert!(h.ends().is_empty(), "parked, not ended");
    // The client gives its dead socket up, reconnects and resumes where it was.
    h.feed(Input::Disconnected(socket));
    h.connect();
    h.resume("m", Some(1), 2_400);
    h.play_to_end(1, 3 * RATE);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&1], h.expected_audio(1));
}
