//! Scenario and randomized tests of the session state machine, on the host.

use std::collections::{BTreeMap, HashMap, HashSet};

use orpheus_protocol::{AudioFrame, EndReason, ErrorCode, ServerMessage, CLOSE_REPLACED};
use orpheus_worker::budget::{BudgetLimits, SpeechBudget};
use orpheus_worker::session::{Config, Effect, FetchId, Input, Session, CLOSE_POLICY_VIOLATION};
use orpheus_worker::upstream::UpstreamStatus;

/// A deterministic WAV body for a fetch: header then `samples` samples derived from `seed`.
fn wav_body(seed: u64, samples: usize) -> (Vec<u8>, Vec<u8>) {
    let pcm: Vec<u8> = (0..samples)
        .flat_map(|i| ((seed as i64 * 31 + i as i64 * 7) as i16).to_le_bytes())
        .collect();
    let mut body = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0".to_vec();
    body.extend_from_slice(&24_000u32.to_le_bytes());
    body.extend_from_slice(&48_000u32.to_le_bytes());
    body.extend_from_slice(b"\x02\0\x10\0data\0\0\0\0");
    body.extend_from_slice(&pcm);
    (body, pcm)
}

fn ok() -> UpstreamStatus {
    UpstreamStatus {
        status: 200,
        ..Default::default()
    }
}

/// Drives a session and checks what a client would see, frame by frame.
struct Harness {
    session: Session,
    now: u64,
    /// Fetches started and not yet aborted or finished: id -> stream.
    open_fetches: HashMap<FetchId, u32>,
    /// Per stream, the latest fetch of each segment (a retry replaces the failed one).
    fetch_order: BTreeMap<u32, BTreeMap<u32, FetchId>>,
    /// Every fetch started, in order.
    started: Vec<FetchId>,
    /// The PCM each fetch delivered in full.
    delivered: HashMap<FetchId, Vec<u8>>,
    texts: Vec<ServerMessage>,
    audio: BTreeMap<u32, Vec<u8>>,
    ended_streams: HashSet<u32>,
    current_stream: Option<u32>,
    closed: Option<u16>,
}

impl Harness {
    fn new(config: Config) -> Self {
        let mut h = Self {
            session: Session::open(config, "s1", 1, SpeechBudget::default()),
            now: 1_000,
            open_fetches: HashMap::new(),
            fetch_order: BTreeMap::new(),
            started: Vec::new(),
            delivered: HashMap::new(),
            texts: Vec::new(),
            audio: BTreeMap::new(),
            ended_streams: HashSet::new(),
            current_stream: None,
            closed: None,
        };
        h.drain();
        assert!(matches!(h.texts[0], ServerMessage::Ready { .. }));
        h.texts.clear();
        h
    }

    fn feed(&mut self, input: Input<'_>) {
        // The runtime lets go of a request once its body ended, it failed, or (for an error
        // status) once it has read the short error body.
        match &input {
            Input::UpstreamEnd(f) | Input::UpstreamFailed(f) => {
                self.open_fetches.remove(f);
            }
            Input::UpstreamHead(f, status) if status.status != 200 => {
                self.open_fetches.remove(f);
            }
            _ => {}
        }
        self.session.handle(input, self.now);
        self.drain();
    }

    fn text(&mut self, frame: &str) {
        self.feed(Input::Text(frame));
    }

    fn speak(&mut self, id: &str, text: &str) {
        let frame = serde_json::json!({"type": "speak", "id": id, "text": text}).to_string();
        self.text(&frame);
    }

    /// Executes effects as the runtime would, checking the client-visible invariants.
    fn drain(&mut self) {
        for effect in self.session.take_effects() {
            assert!(
                self.closed.is_none()
                    || matches!(
                        effect,
                        Effect::Persist(_)
                            | Effect::Log(_)
                            | Effect::Abort(_)
                            | Effect::SaveBudget(_)
                    ),
                "nothing is sent after close: {effect:?}"
            );
            match effect {
                Effect::SendText(json) => {
                    let message = ServerMessage::parse(&json).expect("valid server JSON");
                    match &message {
                        ServerMessage::Start { stream, .. } => {
                            assert_eq!(self.current_stream, None, "one active stream at a time");
                            self.current_stream = Some(*stream);
                        }
                        ServerMessage::End {
                            stream: Some(stream),
                            ..
                        } => {
                            assert!(self.ended_streams.insert(*stream), "one end per stream");
                            if self.current_stream == Some(*stream) {
                                self.current_stream = None;
                            }
                        }
                        _ => {}
                    }
                    self.texts.push(message);
                }
                Effect::SendBinary(bytes) => {
                    let frame = AudioFrame::decode(&bytes).expect("valid frame");
                    assert_eq!(
                        Some(frame.stream),
                        self.current_stream,
                        "audio only for the started stream"
                    );
                    assert!(
                        !self.ended_streams.contains(&frame.stream),
                        "no audio after end"
                    );
                    let got = self.audio.entry(frame.stream).or_default();
                    assert_eq!(
                        frame.offset as usize,
                        got.len() / 2,
                        "offsets are contiguous"
                    );
                    got.extend_from_slice(frame.pcm);
                }
                Effect::Fetch(request) => {
                    self.open_fetches.insert(request.fetch, request.stream);
                    self.fetch_order
                        .entry(request.stream)
                        .or_default()
                        .insert(request.segment, request.fetch);
                    self.started.push(request.fetch);
                    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
                    assert!(body["input"].as_str().unwrap().chars().count() <= 200);
                }
                Effect::Abort(fetch) => {
                    assert!(
                        self.open_fetches.remove(&fetch).is_some(),
                        "abort of a live fetch only"
                    );
                }
                Effect::Close { code, .. } => self.closed = Some(code),
                Effect::Persist(attachment) => {
                    assert!(serde_json::to_string(&attachment).unwrap().len() < 2048);
                }
                Effect::SaveBudget(_) => {}
                Effect::Log(line) => {
                    let text = orpheus_worker::log::format(Some("s1"), &line);
                    assert!(!text.contains("secret text"), "logs carry no text: {text}");
                }
            }
        }
    }

    /// Ends a response whose body was already fed in full.
    fn complete_rest(&mut self, fetch: FetchId, body: &[u8]) {
        let pcm_at = body.windows(4).position(|w| w == b"data").unwrap() + 8;
        self.delivered.insert(fetch, body[pcm_at..].to_vec());
        self.feed(Input::UpstreamEnd(fetch));
    }

    /// Delivers a complete upstream response for `fetch` in pieces of `piece` bytes.
    fn complete(&mut self, fetch: FetchId, samples: usize, piece: usize) {
        let (body, pcm) = wav_body(fetch, samples);
        self.feed(Input::UpstreamHead(fetch, ok()));
        for chunk in body.chunks(piece) {
            self.feed(Input::UpstreamBody(fetch, chunk));
        }
        self.delivered.insert(fetch, pcm);
        self.feed(Input::UpstreamEnd(fetch));
    }

    fn ends(&self) -> Vec<(String, EndReason, Option<ErrorCode>)> {
        self.texts
            .iter()
            .filter_map(|m| match m {
                ServerMessage::End {
                    id, reason, error, ..
                } => Some((id.clone(), *reason, error.as_ref().map(|e| e.code))),
                _ => None,
            })
            .collect()
    }

    fn expected_audio(&self, stream: u32) -> Vec<u8> {
        self.fetch_order[&stream]
            .values()
            .flat_map(|f| self.delivered[f].clone())
            .collect()
    }

    /// The latest fetch of each segment of `stream`, in segment order.
    fn fetches_of(&self, stream: u32) -> Vec<FetchId> {
        self.fetch_order
            .get(&stream)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default()
    }
}

fn long_text(sentences: usize) -> String {
    "The quick brown fox jumps over the lazy dog again and again. ".repeat(sentences)
}

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
    match h.texts.last().unwrap() {
        ServerMessage::End { samples, .. } => assert_eq!(*samples, 5000),
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
            if let Effect::SendBinary(b) = e {
                assert!(!AudioFrame::decode(&b).unwrap().is_last_in_segment());
            }
        }
    }
    h.session.handle(Input::UpstreamEnd(fetch), h.now);
    for e in h.session.take_effects() {
        if let Effect::SendBinary(b) = e {
            flagged += AudioFrame::decode(&b).unwrap().is_last_in_segment() as u32;
        }
    }
    assert_eq!(flagged, 1);
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
            .filter(|e| matches!(e, Effect::SendText(t) if t.contains("\"end\"")))
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
        ]
    );
    assert_eq!(h.started.len(), 1, "no upstream call for rejected input");
    assert_eq!(h.open_fetches.len(), 1);
    h.complete(h.fetches_of(1)[0], 100, 50);
    assert_eq!(h.ends().last().unwrap().1, EndReason::Done);
}

#[test]
fn frame_errors_get_an_error_frame() {
    let mut h = Harness::new(Config::default());
    h.text("{not json");
    h.text(r#"{"type":"sing"}"#);
    h.text(r#"{"type":"speak","text":"no id"}"#);
    h.feed(Input::Binary(10));
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

fn error_head(status: u16, retry_after_s: Option<u32>) -> UpstreamStatus {
    UpstreamStatus {
        status,
        retry_after_s,
        error_code: None,
    }
}

#[test]
fn upstream_errors_map_to_codes() {
    for (status, retry, code) in [
        (429, Some(60), ErrorCode::RateLimited),
        (401, None, ErrorCode::UpstreamAuth),
        (500, None, ErrorCode::UpstreamUnavailable),
        (503, Some(30), ErrorCode::UpstreamUnavailable),
        (400, None, ErrorCode::UpstreamRejected),
    ] {
        let mut h = Harness::new(Config::default());
        h.speak("m", "Hello.");
        h.feed(Input::UpstreamHead(
            h.fetches_of(1)[0],
            error_head(status, retry),
        ));
        match h.texts.last().unwrap() {
            ServerMessage::End {
                reason,
                error: Some(e),
                ..
            } => {
                assert_eq!(
                    (*reason, e.code, e.retry_after_s),
                    (EndReason::Error, code, retry),
                    "{status}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            h.started.len(),
            1,
            "{status}: no retry (not retryable, or retry-after too long)"
        );
    }
}

#[test]
fn one_retry_for_429_and_503_before_any_audio() {
    // The retry succeeds: the client only sees latency.
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    h.feed(Input::UpstreamHead(
        h.fetches_of(1)[0],
        error_head(503, Some(2)),
    ));
    assert!(h.ends().is_empty());
    assert_eq!(h.session.next_deadline(), Some(h.now + 2000));
    h.now += 1999;
    h.feed(Input::Tick);
    assert_eq!(h.started.len(), 1, "not before retry-after");
    h.now += 1;
    h.feed(Input::Tick);
    assert_eq!(h.started.len(), 2, "retried once");
    h.complete(h.fetches_of(1)[0], 500, 77);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&1], h.expected_audio(1));

    // The retry fails too: the client learns retry_after_s; there is no third request.
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    h.feed(Input::UpstreamHead(
        h.fetches_of(1)[0],
        error_head(429, None),
    ));
    h.now += 1000;
    h.feed(Input::Tick);
    h.feed(Input::UpstreamHead(
        h.fetches_of(1)[0],
        error_head(429, Some(3)),
    ));
    assert_eq!(h.ends()[0].2, Some(ErrorCode::RateLimited));
    assert_eq!(h.started.len(), 2);
    match h.texts.last().unwrap() {
        ServerMessage::End { error: Some(e), .. } => assert_eq!(e.retry_after_s, Some(3)),
        other => panic!("{other:?}"),
    }

    // Stopping while a retry waits releases everything and ends once.
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    h.feed(Input::UpstreamHead(
        h.fetches_of(1)[0],
        error_head(429, Some(2)),
    ));
    h.text(r#"{"type":"stop"}"#);
    h.now += 5000;
    h.feed(Input::Tick);
    assert_eq!(h.started.len(), 1, "a stopped message never retries");
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Stopped, None)]);
}

#[test]
fn no_retry_once_audio_was_sent() {
    let mut h = Harness::new(Config::default());
    h.speak("m", &long_text(8));
    let f = h.fetches_of(1);
    h.feed(Input::UpstreamHead(f[0], ok()));
    let (body, _) = wav_body(f[0], 3000);
    h.feed(Input::UpstreamBody(f[0], &body));
    assert!(!h.audio[&1].is_empty());
    h.feed(Input::UpstreamHead(f[1], error_head(429, Some(1))));
    h.complete_rest(f[0], &body);
    assert_eq!(h.ends()[0].2, Some(ErrorCode::RateLimited));
    assert_eq!(h.started.len(), 2, "no retry after audio");
}

#[test]
fn error_in_a_later_segment_comes_after_the_earlier_audio() {
    let mut h = Harness::new(Config::default());
    h.speak("m", &long_text(8));
    let f = h.fetches_of(1);
    h.feed(Input::UpstreamHead(f[1], error_head(500, None)));
    assert!(h.ends().is_empty(), "segment 0 still plays");
    h.complete(f[0], 1000, 300);
    assert_eq!(
        h.ends(),
        vec![(
            "m".into(),
            EndReason::Error,
            Some(ErrorCode::UpstreamUnavailable)
        )]
    );
    assert_eq!(h.audio[&1], h.delivered[&f[0]]);
}

#[test]
fn mid_stream_break_and_timeouts() {
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    let f = h.fetches_of(1)[0];
    h.feed(Input::UpstreamHead(f, ok()));
    h.feed(Input::UpstreamFailed(f));
    assert_eq!(h.ends()[0].2, Some(ErrorCode::UpstreamInterrupted));

    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    assert_eq!(h.session.next_deadline(), Some(h.now + 20_000));
    h.now += 19_999;
    h.feed(Input::Tick);
    assert!(h.ends().is_empty());
    h.now += 1;
    h.feed(Input::Tick);
    assert_eq!(h.ends()[0].2, Some(ErrorCode::UpstreamTimeout));
    assert!(h.open_fetches.is_empty(), "timed-out request aborted");

    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    let f = h.fetches_of(1)[0];
    h.feed(Input::UpstreamHead(f, ok()));
    assert_eq!(
        h.session.next_deadline(),
        Some(h.now + 10_000),
        "stall timer after headers"
    );
}

#[test]
fn bad_audio_ends_with_an_error() {
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    let f = h.fetches_of(1)[0];
    h.feed(Input::UpstreamHead(f, ok()));
    h.feed(Input::UpstreamBody(f, b"<html>oops</html>"));
    assert_eq!(h.ends()[0].2, Some(ErrorCode::UpstreamBadAudio));
}

#[test]
fn replace_and_disconnect_release_the_upstream() {
    let mut h = Harness::new(Config::default());
    h.speak("m", &long_text(6));
    h.feed(Input::Replaced);
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Replaced, None)]);
    assert_eq!(h.closed, Some(CLOSE_REPLACED));
    assert!(h.open_fetches.is_empty());
    h.speak("late", "ignored");

    let mut h = Harness::new(Config::default());
    h.speak("m", &long_text(6));
    h.feed(Input::Disconnected);
    assert!(
        h.open_fetches.is_empty(),
        "nobody listens: upstream released"
    );
    assert!(h.ends().is_empty(), "nothing is sent to a closed socket");
}

#[test]
fn restore_after_eviction_ends_the_lost_message_once() {
    let mut session = Session::open(Config::default(), "s1", 1, SpeechBudget::default());
    session.handle(Input::Text(r#"{"type":"speak","id":"m","text":"Hi."}"#), 0);
    let last = session
        .take_effects()
        .into_iter()
        .rev()
        .find_map(|e| match e {
            Effect::Persist(a) => Some(a),
            _ => None,
        })
        .unwrap();
    assert_eq!(last.active.as_ref().unwrap().id, "m");
    let mut restored = Session::restore(Config::default(), last.clone(), SpeechBudget::default());
    let effects = restored.take_effects();
    let ends: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendText(t) => Some(ServerMessage::parse(t).unwrap()),
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
        Effect::Persist(a) => Some(a.clone()),
        _ => None,
    });
    assert_eq!(
        persisted.unwrap().active,
        None,
        "the interruption is recorded, so it is sent once"
    );
    assert_eq!(restored.next_stream(), 2, "stream numbers are never reused");
}

#[test]
fn not_configured_makes_no_upstream_call() {
    let mut h = Harness::new(Config {
        upstream_configured: false,
        ..Config::default()
    });
    h.speak("m", "Hello.");
    assert_eq!(h.ends()[0].2, Some(ErrorCode::NotConfigured));
    assert!(h.fetch_order.is_empty());
}

#[test]
fn budget_refuses_without_an_upstream_call_and_carries_over() {
    let budget = BudgetLimits {
        messages_per_minute: 2,
        chars_per_minute: 1000,
        chars_per_day: 1000,
    };
    let mut h = Harness::new(Config {
        budget,
        ..Config::default()
    });
    for id in ["a", "b"] {
        h.speak(id, "Hello.");
        h.complete(
            *h.fetches_of(h.session.active_stream().unwrap())
                .last()
                .unwrap(),
            10,
            100,
        );
    }
    h.now += 5_000;
    h.speak("c", "Hello.");
    let last = h.texts.last().unwrap().clone();
    match last {
        ServerMessage::End {
            id,
            reason: EndReason::Error,
            error: Some(e),
            stream: None,
            ..
        } => {
            assert_eq!(
                (id.as_str(), e.code, e.retry_after_s),
                ("c", ErrorCode::RateLimited, Some(55))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.fetch_order.len(),
        2,
        "no upstream call for the refused message"
    );
    // A new connection with the carried-over budget is refused too; after the window, it passes.
    let carried = h.session.budget().clone();
    let mut next = Session::open(
        Config {
            budget,
            ..Config::default()
        },
        "s1",
        3,
        carried,
    );
    next.take_effects();
    next.handle(
        Input::Text(r#"{"type":"speak","id":"d","text":"Hi."}"#),
        h.now,
    );
    assert!(next
        .take_effects()
        .iter()
        .all(|e| !matches!(e, Effect::Fetch(_))));
    next.handle(
        Input::Text(r#"{"type":"speak","id":"e","text":"Hi."}"#),
        h.now + 55_000,
    );
    assert!(next
        .take_effects()
        .iter()
        .any(|e| matches!(e, Effect::Fetch(_))));
}

#[test]
fn flooding_client_is_throttled_then_closed() {
    // Frames 1-5 pass, 6-10 are refused, the 11th within the same second closes.
    let mut h = Harness::new(Config {
        frames_per_second: 5,
        ..Config::default()
    });
    h.speak("m", "Hello.");
    for _ in 0..4 {
        h.text(r#"{"type":"ping"}"#);
    }
    assert_eq!(
        h.texts
            .iter()
            .filter(|m| **m == ServerMessage::Pong)
            .count(),
        4
    );
    h.text(r#"{"type":"ping"}"#);
    assert!(matches!(
        h.texts.last(),
        Some(ServerMessage::Error {
            code: ErrorCode::RateLimited,
            retry_after_s: Some(1),
            ..
        })
    ));
    let before = h.texts.len();
    for _ in 0..3 {
        h.text(r#"{"type":"ping"}"#);
    }
    assert_eq!(
        h.texts.len(),
        before,
        "further excess frames are dropped silently"
    );
    h.speak("over", "Too fast.");
    assert_eq!(
        h.ends().last().unwrap(),
        &(
            "over".into(),
            EndReason::Error,
            Some(ErrorCode::RateLimited)
        ),
        "an over-rate speak still ends once"
    );
    assert_eq!(h.closed, None);
    h.text(r#"{"type":"ping"}"#);
    assert_eq!(h.closed, Some(CLOSE_POLICY_VIOLATION));
    assert_eq!(h.ends().len(), 2);
    assert_eq!(
        h.ends()[1],
        ("m".into(), EndReason::Error, Some(ErrorCode::RateLimited)),
        "the active message still ends once"
    );
    assert!(h.open_fetches.is_empty());
}

/// How far a simulated upstream response has been delivered.
struct Cursor {
    body: Vec<u8>,
    at: usize,
    responded: bool,
}

/// Thousands of random event sequences; the harness asserts the client-visible invariants on
/// every effect, and each run ends by checking one end per speak and no upstream left open.
#[test]
fn randomized_event_sequences_keep_the_invariants() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let texts = [
        "Hi.",
        "Short one, then more.",
        &long_text(3),
        &long_text(9),
        "  ",
        "مرحبا بكم. كيف حالكم؟",
    ];
    let mut done_checked = 0;
    for _run in 0..3000 {
        let mut h = Harness::new(Config {
            hold_back_samples: next(300) as usize,
            ..Config::default()
        });
        let mut speaks = 0;
        let mut bodies: HashMap<FetchId, Cursor> = HashMap::new();
        for _step in 0..(10 + next(60)) {
            h.now += next(120);
            let live: Vec<FetchId> = {
                let mut v: Vec<_> = h.open_fetches.keys().copied().collect();
                v.sort();
                v
            };
            match next(12) {
                0 | 1 => {
                    speaks += 1;
                    let text = texts[next(texts.len() as u64) as usize];
                    h.speak(&format!("m{}", next(4)), text);
                }
                2 => h.text(&format!(r#"{{"type":"stop","id":"m{}"}}"#, next(4))),
                3 => h.text(r#"{"type":"stop"}"#),
                4 => h.text(["{bad", r#"{"type":"ping"}"#, r#"{"type":"x"}"#][next(3) as usize]),
                5 => {
                    h.now += next(25_000);
                    h.feed(Input::Tick);
                }
                _ if live.is_empty() => {}
                k => {
                    let fetch = live[next(live.len() as u64) as usize];
                    let cursor = bodies.entry(fetch).or_insert_with(|| {
                        let (body, pcm) = wav_body(fetch, 1 + next(3000) as usize);
                        h.delivered.insert(fetch, pcm);
                        Cursor {
                            body,
                            at: 0,
                            responded: false,
                        }
                    });
                    if k == 11 {
                        h.delivered.remove(&fetch);
                        h.feed(Input::UpstreamFailed(fetch));
                    } else if !cursor.responded {
                        cursor.responded = true;
                        let status = if next(20) == 0 { 503 } else { 200 };
                        h.feed(Input::UpstreamHead(
                            fetch,
                            UpstreamStatus {
                                status,
                                ..Default::default()
                            },
                        ));
                    } else {
                        let end = (cursor.at + 1 + next(2000) as usize).min(cursor.body.len());
                        let chunk = cursor.body[cursor.at..end].to_vec();
                        let finished = end == cursor.body.len();
                        cursor.at = end;
                        h.feed(Input::UpstreamBody(fetch, &chunk));
                        if finished {
                            h.feed(Input::UpstreamEnd(fetch));
                        }
                    }
                }
            }
        }
        // Whatever is still active is stopped: afterwards every speak has exactly one end.
        h.text(r#"{"type":"stop"}"#);
        assert_eq!(h.ends().len(), speaks, "exactly one end per speak");
        assert!(h.open_fetches.is_empty(), "no upstream request left open");
        assert_eq!(h.session.active_stream(), None);
        for message in &h.texts {
            if let ServerMessage::End {
                stream: Some(s),
                reason: EndReason::Done,
                samples,
                ..
            } = message
            {
                assert_eq!(h.audio.get(s).map_or(0, |a| a.len() / 2) as u64, *samples);
                assert_eq!(
                    h.audio.get(s).cloned().unwrap_or_default(),
                    h.expected_audio(*s),
                    "bit-exact"
                );
                done_checked += 1;
            }
        }
        h.feed(Input::Disconnected);
    }
    assert!(
        done_checked > 100,
        "the random walk reaches completed messages ({done_checked})"
    );
}
