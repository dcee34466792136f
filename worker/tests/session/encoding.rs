//! Protocol v2's audio encodings: a `speak` that asks for Opus gets it when the relay can code
//! it, and its stream keeps it across a restart; otherwise PCM, as its `start` says.

use orpheus_protocol::{AudioEncoding, EndReason, ErrorCode, ServerMessage, Version};
use orpheus_worker::session::Config;

use crate::harness::{long_text, Harness};

const RATE: u64 = 24_000;

fn with_opus() -> Config {
    Config {
        opus: true,
        ..Config::default()
    }
}

fn speak_opus(h: &mut Harness, id: &str, text: &str) {
    let frame = serde_json::json!({"type": "speak", "id": id, "text": text, "encoding": "opus"});
    h.text(&frame.to_string());
}

/// The encoding each `start` announced, by stream.
fn announced(h: &Harness) -> Vec<(u32, AudioEncoding)> {
    h.texts
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Start {
                stream, encoding, ..
            } => Some((*stream, *encoding)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_v2_speak_that_asks_for_opus_gets_it_and_one_that_does_not_gets_pcm() {
    let mut h = Harness::v2(with_opus());
    speak_opus(&mut h, "m1", "Hello there.");
    h.deliver(1, RATE as usize);
    h.play_to_end(1, RATE as usize);
    h.speak("m2", "Hello again.");
    h.deliver(2, RATE as usize);
    h.play_to_end(2, RATE as usize);
    assert_eq!(
        announced(&h),
        [(1, AudioEncoding::Opus), (2, AudioEncoding::Pcm)]
    );
    assert_eq!(h.encodings[&1], AudioEncoding::Opus);
    assert_eq!(h.encodings[&2], AudioEncoding::Pcm);
    assert_eq!(h.audio[&1], h.expected_audio(1), "the same samples go out");
    assert_eq!(h.ends().len(), 2);
    assert!(h
        .ends()
        .iter()
        .all(|(_, reason, _)| *reason == EndReason::Done));
}

#[test]
fn without_an_encoder_or_with_protocol_v1_opus_is_pcm() {
    let mut h = Harness::v2(Config::default());
    speak_opus(&mut h, "m", "Hello there.");
    h.deliver(1, RATE as usize);
    assert_eq!(announced(&h), [(1, AudioEncoding::Pcm)]);

    let mut h = Harness::new(with_opus());
    assert_eq!(h.version, Version::V1);
    speak_opus(&mut h, "m", "Hello there.");
    h.deliver(1, RATE as usize);
    assert_eq!(announced(&h), [(1, AudioEncoding::Pcm)]);
    assert_eq!(h.encodings[&1], AudioEncoding::Pcm);
}

#[test]
fn an_unknown_encoding_is_refused_before_the_upstream_and_the_session_goes_on() {
    let mut h = Harness::v2(with_opus());
    let frame = r#"{"type":"speak","id":"bad","text":"Hello.","encoding":"mp3"}"#;
    h.text(frame);
    assert_eq!(
        h.ends(),
        [(
            "bad".into(),
            EndReason::Error,
            Some(ErrorCode::InvalidMessage)
        )]
    );
    assert!(h.started.is_empty(), "nothing reached the upstream");
    speak_opus(&mut h, "good", "Hello.");
    h.deliver(1, RATE as usize);
    h.play_to_end(1, RATE as usize);
    assert_eq!(h.ends().last().map(|e| e.1), Some(EndReason::Done));
}

#[test]
fn a_message_restarted_after_an_eviction_keeps_its_encoding() {
    let mut h = Harness::v2(with_opus());
    speak_opus(&mut h, "m", &long_text(10));
    h.deliver(1, 2 * RATE as usize);
    while h.received(1) < 2 * RATE + RATE / 10 {
        h.now += 100;
        let cursor = h.received(1);
        h.played(1, cursor);
    }
    h.evict(with_opus());
    h.connect();
    h.resume("m", Some(1), h.received(1));
    h.play_to_end(2, 2 * RATE as usize);
    assert_eq!(
        announced(&h),
        [(1, AudioEncoding::Opus), (2, AudioEncoding::Opus)]
    );
    assert_eq!(h.encodings[&2], AudioEncoding::Opus);
    assert_eq!(h.ends(), [("m".into(), EndReason::Done, None)]);
}
