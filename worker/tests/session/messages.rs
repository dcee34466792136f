//! A message's life: start, audio in order, stop, supersede, and one end for every speak.

use orpheus_protocol::{AudioFrame, EndReason, ErrorCode, ServerMessage};
use orpheus_worker::session::{Config, Effect, Input};

use crate::harness::{long_text, ok, wav_body, Harness};

#[test]
fn one_message_end_to_end() {
    let mut h = Harness::new(Config::default());
    h.speak("m1", "secret text, short.");
    assert_eq!(h.fetches_of(1).len(), 1);
    h.complete(h.fetches_of(1)[0], 5000, 333);
    assert_eq!(h.ends(), vec![("m1".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&1], h.expected_audio(1));
    assert!(h.open_fetches.is_empty());
    match &h.texts[0] {
        ServerMessage::Start {
            sample_rate,
            stream,
            ..
        } => assert_eq!((*sample_rate, *stream), (24_000, 1)),
        other => panic!("expected start, got {other:?}"),
    }
    match h.last_end() {
        ServerMessage::End { samples, .. } => assert_eq!(samples, 5000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn second_message_after_the_first() {
    let mut h = Harness::new(Config::default());
    for (i, id) in ["a", "b"].iter().enumerate() {
        h.speak(id, "Hello there.");
        let stream = i as u32 + 1;
        h.complete(h.fetches_of(stream)[0], 1000, 64);
        assert_eq!(h.audio[&stream], h.expected_audio(stream));
    }
    assert_eq!(h.ends().len(), 2);
    assert!(h.ends().iter().all(|e| e.1 == EndReason::Done));
}

#[test]
fn segments_in_order_whatever_order_responses_arrive() {
    let mut h = Harness::new(Config::default());
    h.speak("long", &long_text(12));
    let first = h.fetches_of(1);
    assert_eq!(first.len(), 2, "one segment streaming, one prefetched");
    // The prefetched segment finishes first; nothing of it may be sent before segment 0.
    h.complete(first[1], 800, 1000);
    assert!(h.audio.get(&1).is_none_or(|a| a.is_empty()));
    h.complete(first[0], 900, 7);
    let mut k = 2;
    while h.session.active_stream().is_some() {
        let fetches = h.fetches_of(1);
        h.complete(fetches[k], 700 + k, 501);
        k += 1;
    }
    assert_eq!(h.audio[&1], h.expected_audio(1));
    assert_eq!(h.ends(), vec![("long".into(), EndReason::Done, None)]);
    assert!(h.open_fetches.is_empty());
}

#[test]
fn last_frame_of_each_segment_is_flagged() {
    let mut h = Harness::new(Config::default());
    let mut flagged = 0;
    h.speak("m", "One sentence here.");
    let fetch = h.fetches_of(1)[0];
    let (body, _) = wav_body(fetch, 2000);
    h.feed(Input::UpstreamHead(fetch, ok()));
    for chunk in body.chunks(700) {
        h.session.handle(Input::UpstreamBody(fetch, chunk), h.now);
        for e in h.session.take_effects() {
            if let Effect::Audio(_, audio) = e {
                assert!(!AudioFrame::decode(&audio.encode())
                    .unwrap()
                    .is_last_in_segment());
            }
        }
    }
    h.session.handle(Input::UpstreamEnd(fetch), h.now);
    for e in h.session.take_effects() {
        if let Effect::Audio(_, audio) = e {
            flagged += AudioFrame::decode(&audio.encode())
                .unwrap()
                .is_last_in_segment() as u32;
        }
    }
    assert_eq!(flagged, 1);
}

#[test]
fn start_goes_out_with_the_first_audio_never_before() {
    // The body breaks off after the WAV header: no audio, so no start.
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    let fetch = h.fetches_of(1)[0];
    let (body, _) = wav_body(fetch, 100);
    h.feed(Input::UpstreamHead(fetch, ok()));
    h.feed(Input::UpstreamBody(fetch, &body[..44]));
    assert!(h.texts.is_empty(), "nothing before audio: {:?}", h.texts);
    h.feed(Input::UpstreamFailed(fetch));
    assert!(
        !h.texts
            .iter()
            .any(|m| matches!(m, ServerMessage::Start { .. })),
        "a message without audio has no start"
    );
    assert_eq!(
        h.ends(),
        vec![(
            "m".into(),
            EndReason::Error,
            Some(ErrorCode::UpstreamInterrupted)
        )]
    );

    // An empty data chunk: the message is done, with no audio and no start.
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    let fetch = h.fetches_of(1)[0];
    h.complete(fetch, 0, 7);
    assert_eq!(h.texts.len(), 1, "only the end: {:?}", h.texts);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
}

#[test]
fn stop_aborts_upstream_and_ends_once() {
    let mut h = Harness::new(Config::default());
    h.speak("m", &long_text(10));
    assert_eq!(h.open_fetches.len(), 2);
    h.text(r#"{"type":"stop","id":"m"}"#);
    assert!(h.open_fetches.is_empty(), "both requests aborted");
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Stopped, None)]);
    // Late upstream data of the stopped message is ignored; stopping again is a no-op.
    let (body, _) = wav_body(1, 100);
    h.feed(Input::UpstreamBody(1, &body));
    h.feed(Input::UpstreamEnd(1));
    h.text(r#"{"type":"stop"}"#);
    h.text(r#"{"type":"stop","id":"m"}"#);
    assert_eq!(h.ends().len(), 1);
    assert!(h.audio.is_empty());
}

#[test]
fn stop_of_another_id_is_a_no_op() {
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hi.");
    h.text(r#"{"type":"stop","id":"other"}"#);
    assert!(h.ends().is_empty());
    assert_eq!(h.session.active_stream(), Some(1));
}

#[test]
fn finish_three_times_is_the_same_as_once() {
    let mut h = Harness::new(Config::default());
    h.speak("m", &long_text(5));
    h.session.finish(EndReason::Stopped, None);
    let once = h.session.take_effects();
    h.session.finish(EndReason::Stopped, None);
    h.session.finish(EndReason::Error, None);
    assert!(
        h.session.take_effects().is_empty(),
        "second and third calls do nothing"
    );
    assert_eq!(
        once.iter()
            .filter(|e| matches!(e, Effect::Abort(_)))
            .count(),
        2
    );
    assert_eq!(
        once.iter()
            .filter(|e| matches!(e, Effect::Send(_, ServerMessage::End { .. })))
            .count(),
        1
    );
}

#[test]
fn supersede_ends_the_old_message_first() {
    let mut h = Harness::new(Config::default());
    h.speak("a", &long_text(4));
    let old = h.fetches_of(1);
    h.feed(Input::UpstreamHead(old[0], ok()));
    let (body, _) = wav_body(old[0], 3000);
    h.feed(Input::UpstreamBody(old[0], &body));
    h.speak("b", "Fresh.");
    assert!(old.iter().all(|f| !h.open_fetches.contains_key(f)));
    assert_eq!(h.ends(), vec![("a".into(), EndReason::Superseded, None)]);
    h.complete(h.fetches_of(2)[0], 500, 100);
    assert_eq!(h.ends()[1], ("b".into(), EndReason::Done, None));
    assert_eq!(h.audio[&2], h.expected_audio(2));
}

#[test]
fn rejected_speak_leaves_the_active_message_alone() {
    let mut h = Harness::new(Config::default());
    h.speak("a", "Keep playing.");
    let too_long = "x".repeat(4001);
    h.speak("b", "   ");
    h.speak("c", &too_long);
    h.text(r#"{"type":"speak","id":"d","text":"hi","voice":"bob"}"#);
    h.text(r#"{"type":"speak","id":"e","text":"hi","model":"gpt"}"#);
    h.text(r#"{"type":"speak","id":"f","text":"hi","voice":"troy","model":"canopylabs/orpheus-arabic-saudi"}"#);
    h.text(r#"{"type":"speak","id":"g","text":5}"#);
    h.speak("h", "... !? \u{200B}\u{FEFF} —");
    let codes: Vec<_> = h
        .ends()
        .into_iter()
        .map(|(id, _, code)| (id, code.unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("b".into(), ErrorCode::EmptyText),
            ("c".into(), ErrorCode::TextTooLong),
            ("d".into(), ErrorCode::UnknownVoice),
            ("e".into(), ErrorCode::UnknownModel),
            ("f".into(), ErrorCode::VoiceModelMismatch),
            ("g".into(), ErrorCode::InvalidMessage),
            ("h".into(), ErrorCode::EmptyText),
        ]
    );
    assert_eq!(h.started.len(), 1, "no upstream call for rejected input");
    assert_eq!(h.open_fetches.len(), 1);
    assert_eq!(
        h.stored.as_ref().unwrap().budget,
        {
            let mut once = orpheus_worker::budget::SpeechBudget::default();
            let limits = orpheus_worker::budget::BudgetLimits::default();
            once.admit(&limits, "Keep playing.".chars().count() as u64, h.now)
                .unwrap();
            once
        },
        "rejected text is never charged"
    );
    h.complete(h.fetches_of(1)[0], 100, 50);
    assert_eq!(h.ends().last().unwrap().1, EndReason::Done);
}

#[test]
fn a_speak_with_a_lone_surrogate_is_spoken_and_ends_once() {
    let mut h = Harness::new(Config::default());
    h.text(r#"{"type":"speak","id":"m1","text":"cut \ud83d here"}"#);
    assert_eq!(
        h.started.len(),
        1,
        "spoken, with U+FFFD in place of the half emoji"
    );
    h.complete(h.fetches_of(1)[0], 300, 100);
    assert_eq!(h.ends(), vec![("m1".into(), EndReason::Done, None)]);
}

#[test]
fn frame_errors_get_an_error_frame() {
    let mut h = Harness::new(Config::default());
    h.text("{not json");
    h.text(r#"{"type":"sing"}"#);
    h.text(r#"{"type":"speak","text":"no id"}"#);
    h.feed(Input::Binary(h.socket));
    let big = format!(
        r#"{{"type":"speak","id":"x","text":"{}"}}"#,
        "a".repeat(40_000)
    );
    h.text(&big);
    h.text(r#"{"type":"ping"}"#);
    let codes: Vec<_> = h
        .texts
        .iter()
        .map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            Some(ErrorCode::InvalidJson),
            Some(ErrorCode::UnknownType),
            Some(ErrorCode::InvalidMessage),
            Some(ErrorCode::BinaryFrame),
            Some(ErrorCode::FrameTooLarge),
            None
        ]
    );
    assert_eq!(h.texts.last(), Some(&ServerMessage::Pong));
    assert!(h.fetch_order.is_empty());
}
