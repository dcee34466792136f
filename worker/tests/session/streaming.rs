//! Protocol v2 streaming text: a message opened with `more` takes its text in `append`s until
//! `finish`, is cut into segments as boundaries appear, and ends exactly once however it ends.

use orpheus_protocol::{EndReason, ErrorCode, ServerMessage};
use orpheus_worker::budget::BudgetLimits;
use orpheus_worker::session::{Config, Input};

use crate::harness::Harness;

const RATE: usize = 24_000;

const REPLY: &str = "Sure, I can help with that. The train leaves at 3.15 in the afternoon, \
    from platform nine. Dr. Lee will meet you there; she knows the way. [cheerful] Have a \
    lovely trip, and say hello to everyone for me! Anything else?";

/// Sends `text` in pieces of 1 to 5 characters, `step_ms` apart.
fn append_in_pieces(h: &mut Harness, id: &str, text: &str, step_ms: u64) {
    let chars: Vec<char> = text.chars().collect();
    let mut at = 0;
    let mut rng = orpheus_test_support::rng(7);
    while at < chars.len() {
        let (piece, _) = orpheus_test_support::next_piece(&chars, at, &mut rng);
        h.now += step_ms;
        h.append(id, &piece);
        at += piece.chars().count();
    }
}

fn squash(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn a_streamed_reply_is_one_message_cut_at_sentences_and_ends_done_once() {
    // A piece every 30 ms is more frames than the default allows (the player coalesces).
    let config = Config {
        frames_per_second: 50,
        ..Config::default()
    };
    let mut h = Harness::v2(config);
    h.open("m", "");
    append_in_pieces(&mut h, "m", REPLY, 30);
    h.finish("m");
    h.play_to_end(1, RATE);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    let inputs = h.inputs_of(1);
    assert_eq!(
        inputs[0], "Sure, I can help with that.",
        "the first sentence first"
    );
    assert_eq!(
        squash(&inputs.concat()),
        squash(REPLY),
        "all of it, in order"
    );
    for input in &inputs {
        assert!(
            !input.ends_with("3.") && !input.ends_with("Dr."),
            "{inputs:?}"
        );
        assert_eq!(input.matches('[').count(), input.matches(']').count());
    }
    assert_eq!(
        h.audio[&1],
        h.expected_audio(1),
        "each sample once, in order"
    );
    let starts = h
        .texts
        .iter()
        .filter(|m| matches!(m, ServerMessage::Start { .. }));
    assert_eq!(starts.count(), 1, "one start");
}

#[test]
fn the_first_segment_is_requested_when_its_sentence_ends() {
    let mut h = Harness::v2(Config::default());
    h.open("m", "Hello there");
    assert!(h.started.is_empty(), "the sentence may go on");
    h.append("m", "!");
    assert_eq!(h.inputs_of(1), vec!["Hello there!".to_owned()]);
    h.append("m", " It costs 3.");
    assert_eq!(h.started.len(), 1, "3. may be 3.5");
    h.append("m", "50 a month. And");
    assert_eq!(h.inputs_of(1)[1], "It costs 3.50 a month.");
}

#[test]
fn text_that_pauses_is_cut_at_a_word_and_an_idle_message_ends_once() {
    let config = Config::default();
    let (flush, idle) = (config.text_flush_ms, config.text_idle_ms);
    let mut h = Harness::v2(config);
    h.open("m", "Well then we could");
    assert!(h.started.is_empty());
    assert_eq!(h.session.next_deadline(), Some(h.now + flush));
    h.now += flush;
    h.feed(Input::Tick);
    assert_eq!(
        h.inputs_of(1),
        vec!["Well then we".to_owned()],
        "a pause cuts at a word"
    );
    h.deliver(1, RATE);
    let deadline = h.session.next_deadline().expect("the idle deadline");
    assert!(deadline <= h.now + idle);
    h.now += idle;
    h.feed(Input::Tick);
    assert_eq!(
        h.ends(),
        vec![("m".into(), EndReason::Error, Some(ErrorCode::TextTimeout))]
    );
    assert!(h.open_fetches.is_empty());
    h.feed(Input::Tick);
    h.append("m", " go.");
    assert_eq!(h.ends().len(), 1, "once");
    assert_eq!(h.errors(), vec![ErrorCode::MessageNotOpen]);
}

#[test]
fn appends_and_finishes_that_name_no_open_message_are_errors_that_lose_nothing() {
    let mut h = Harness::v2(Config::default());
    h.append("nobody", "hi");
    h.finish("nobody");
    h.speak("whole", "A complete message.");
    h.append("whole", " More?");
    assert_eq!(
        h.errors(),
        vec![ErrorCode::MessageNotOpen; 3],
        "unknown id, unknown id, a message that was not opened with more"
    );
    h.play_to_end(1, RATE);
    assert_eq!(h.inputs_of(1), vec!["A complete message.".to_owned()]);
    h.open("m", "One.");
    h.finish("m");
    h.finish("m");
    h.append("m", " Two.");
    assert_eq!(
        h.errors().len(),
        4,
        "a second finish is harmless; an append after it is not"
    );
    h.play_to_end(2, RATE);
    assert_eq!(
        h.ends(),
        vec![
            ("whole".into(), EndReason::Done, None),
            ("m".into(), EndReason::Done, None)
        ]
    );
    assert_eq!(h.inputs_of(2), vec!["One.".to_owned()]);
}

#[test]
fn stop_between_appends_ends_it_once_and_nothing_is_requested_after() {
    let mut h = Harness::v2(Config::default());
    h.open("m", "First sentence here. Second");
    assert_eq!(h.started.len(), 1);
    h.text(r#"{"type":"stop","id":"m"}"#);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Stopped, None)]);
    assert!(h.open_fetches.is_empty(), "aborted");
    h.append("m", " one. Third one. ");
    h.finish("m");
    h.now += 60_000;
    h.feed(Input::Tick);
    assert_eq!(h.started.len(), 1, "no request after the end");
    assert_eq!(h.ends().len(), 1);
}

#[test]
fn text_over_the_limit_ends_the_message_and_nothing_more_is_requested() {
    let mut config = Config::default();
    config.limits.max_text_chars = 60;
    let mut h = Harness::v2(config);
    h.open("m", "This first part fits. ");
    let requested = h.started.len();
    h.append("m", &"and this is far too much to fit. ".repeat(2));
    assert_eq!(
        h.ends(),
        vec![("m".into(), EndReason::Error, Some(ErrorCode::TextTooLong))]
    );
    assert!(h.open_fetches.is_empty());
    assert_eq!(
        h.started.len(),
        requested,
        "the refused text was never requested"
    );
}

#[test]
fn an_append_over_the_frame_rate_ends_its_message_rather_than_leave_a_hole() {
    let mut h = Harness::v2(Config::default());
    h.open("m", "");
    for _ in 0..25 {
        h.append("m", "word ");
    }
    assert_eq!(
        h.ends(),
        vec![("m".into(), EndReason::Error, Some(ErrorCode::RateLimited))]
    );
}

#[test]
fn appended_text_is_charged_to_the_character_budget() {
    let config = Config {
        budget: BudgetLimits {
            messages_per_minute: 30,
            chars_per_minute: 50,
            chars_per_day: 1_000,
        },
        ..Config::default()
    };
    let mut h = Harness::v2(config);
    h.open("m", "Twenty characters.. ");
    h.append("m", "Twenty more of them. ");
    h.append("m", "And that is too many now.");
    match h.last_end() {
        ServerMessage::End {
            reason: EndReason::Error,
            error: Some(e),
            ..
        } => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            assert!(e.retry_after_s.is_some_and(|s| s > 0));
        }
        other => panic!("expected a rate_limited end, got {other:?}"),
    }
}

#[test]
fn an_append_sent_again_from_an_earlier_offset_adds_only_what_is_new() {
    let mut h = Harness::v2(Config::default());
    h.open("m", "");
    h.append("m", "Hello ");
    h.text(r#"{"type":"append","id":"m","text":"Hello there.","at":0}"#);
    h.text(r#"{"type":"append","id":"m","text":"there.","at":6}"#);
    h.text(r#"{"type":"append","id":"m","text":" Lost","at":40}"#);
    assert_eq!(h.errors(), vec![ErrorCode::TextGap], "a gap is refused");
    h.finish("m");
    h.play_to_end(1, RATE);
    assert_eq!(h.inputs_of(1), vec!["Hello there.".to_owned()]);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
}

#[test]
fn a_message_finished_with_nothing_to_speak_ends_empty_text() {
    let mut h = Harness::v2(Config::default());
    h.open("m", "");
    h.append("m", " ... ");
    h.finish("m");
    assert_eq!(
        h.ends(),
        vec![("m".into(), EndReason::Error, Some(ErrorCode::EmptyText))]
    );
    assert!(h.started.is_empty());
}

#[test]
fn version_1_neither_opens_nor_appends() {
    let mut h = Harness::new(Config::default());
    h.open("m", "Spoken whole. Even");
    h.append("m", " this.");
    assert_eq!(h.errors(), vec![ErrorCode::UnknownType]);
    h.deliver(1, RATE);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.inputs_of(1), vec!["Spoken whole. Even".to_owned()]);
}

#[test]
fn an_open_message_parked_by_a_drop_waits_out_the_grace_not_the_idle_time() {
    let config = Config::default();
    let idle = config.text_idle_ms;
    let mut h = Harness::v2(config);
    h.open("m", "The first sentence is here. And the ");
    h.deliver(1, RATE);
    h.played(1, 0);
    h.feed(Input::Disconnected(h.socket));
    h.now += idle + 1_000;
    h.feed(Input::Tick);
    assert!(h.ends().is_empty(), "parked: the idle time does not run");
    h.connect();
    h.resume("m", Some(1), 0);
    h.text(
        r#"{"type":"append","id":"m","text":"The first sentence is here. And the second.","at":0}"#,
    );
    h.finish("m");
    h.play_to_end(1, RATE);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(
        h.inputs_of(1),
        vec![
            "The first sentence is here.".to_owned(),
            "And the second.".to_owned()
        ]
    );
    assert_eq!(h.audio[&1], h.expected_audio(1));
}

#[test]
fn an_open_message_restarts_after_eviction_and_takes_more_text() {
    let mut h = Harness::v2(Config::default());
    h.open("m", "One sentence. Two sentences. Three");
    h.deliver(1, RATE);
    h.played(1, 2 * RATE as u64);
    h.evict(Config::default());
    h.connect();
    h.resume("m", Some(1), 2 * RATE as u64);
    h.text(
        r#"{"type":"append","id":"m","text":"One sentence. Two sentences. Three of them.","at":0}"#,
    );
    h.finish("m");
    h.play_to_end(2, RATE);
    let restarted = h.texts.iter().any(|m| {
        matches!(m, ServerMessage::Start { stream: 2, resumed_at: Some(at), .. } if *at == 2 * RATE as u64)
    });
    assert!(
        restarted,
        "a new stream, at the boundary the cursor reached"
    );
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(
        h.inputs_of(2),
        vec!["Three of them.".to_owned()],
        "on from the boundary"
    );
}
