//! What the upstream does wrong, and what the client then sees: errors mapped to codes, the one
//! retry, timeouts, drips, bad audio.

use orpheus_protocol::{EndReason, ErrorCode, ServerMessage};
use orpheus_worker::session::{Config, Input};

use crate::harness::{long_text, ok, status, wav_body, Harness};

/// The `retry_after_s` of the last `end`.
fn retry_after(h: &Harness) -> Option<u32> {
    match h.last_end() {
        ServerMessage::End { error: Some(e), .. } => e.retry_after_s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn upstream_errors_map_to_codes() {
    for (code_status, retry, code) in [
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
            status(code_status, retry),
        ));
        match h.last_end() {
            ServerMessage::End {
                reason,
                error: Some(e),
                ..
            } => {
                assert_eq!(
                    (reason, e.code, e.retry_after_s),
                    (EndReason::Error, code, retry),
                    "{code_status}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            h.started.len(),
            1,
            "{code_status}: no retry (not retryable, or retry-after too long)"
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
        status(503, Some(2)),
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
    h.feed(Input::UpstreamHead(h.fetches_of(1)[0], status(429, None)));
    h.now += 1000;
    h.feed(Input::Tick);
    h.feed(Input::UpstreamHead(
        h.fetches_of(1)[0],
        status(429, Some(3)),
    ));
    assert_eq!(h.ends()[0].2, Some(ErrorCode::RateLimited));
    assert_eq!(h.started.len(), 2);
    assert_eq!(retry_after(&h), Some(3));

    // Stopping while a retry waits releases everything and ends once.
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    h.feed(Input::UpstreamHead(
        h.fetches_of(1)[0],
        status(429, Some(2)),
    ));
    h.text(r#"{"type":"stop"}"#);
    h.now += 5000;
    h.feed(Input::Tick);
    assert_eq!(h.started.len(), 1, "a stopped message never retries");
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Stopped, None)]);
}

#[test]
fn a_failed_retry_without_retry_after_still_says_when() {
    for code_status in [429, 503] {
        let mut h = Harness::new(Config::default());
        h.speak("m", "Hello.");
        h.feed(Input::UpstreamHead(
            h.fetches_of(1)[0],
            status(code_status, None),
        ));
        h.now += 1000;
        h.feed(Input::Tick);
        h.feed(Input::UpstreamHead(
            h.fetches_of(1)[0],
            status(code_status, None),
        ));
        assert_eq!(h.started.len(), 2);
        assert_eq!(retry_after(&h), Some(1), "{code_status}");
    }
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
    h.feed(Input::UpstreamHead(f[1], status(429, Some(1))));
    h.complete_rest(f[0], &body);
    assert_eq!(h.ends()[0].2, Some(ErrorCode::RateLimited));
    assert_eq!(h.started.len(), 2, "no retry after audio");
}

#[test]
fn error_in_a_later_segment_comes_after_the_earlier_audio() {
    let mut h = Harness::new(Config::default());
    h.speak("m", &long_text(8));
    let f = h.fetches_of(1);
    h.feed(Input::UpstreamHead(f[1], status(500, None)));
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
fn a_drip_that_never_stalls_still_ends() {
    // One byte every 9 s: never a stall, but far slower than real time.
    let config = Config::default();
    let cap = config.first_byte_timeout_ms + config.stall_timeout_ms;
    let mut h = Harness::new(config);
    h.speak("m", "Hello.");
    let f = h.fetches_of(1)[0];
    let requested = h.now;
    let (body, _) = wav_body(f, 24_000);
    h.feed(Input::UpstreamHead(f, ok()));
    for byte in body.chunks(1) {
        if !h.open_fetches.contains_key(&f) {
            break;
        }
        h.now += 9_000;
        h.feed(Input::Tick);
        if h.open_fetches.contains_key(&f) {
            h.feed(Input::UpstreamBody(f, byte));
        }
    }
    assert_eq!(h.ends()[0].2, Some(ErrorCode::UpstreamTimeout));
    assert!(h.open_fetches.is_empty(), "the drip is aborted");
    assert!(
        h.now - requested <= cap + 9_000,
        "ended {} ms after the request",
        h.now - requested
    );
}

#[test]
fn a_2xx_other_than_200_streams_its_body() {
    // 201 with audio is audio.
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    let f = h.fetches_of(1)[0];
    let (body, pcm) = wav_body(f, 400);
    h.feed(Input::UpstreamHead(f, status(201, None)));
    h.feed(Input::UpstreamBody(f, &body));
    h.delivered.insert(f, pcm);
    h.feed(Input::UpstreamEnd(f));
    assert_eq!(h.ends(), vec![("m".into(), EndReason::Done, None)]);
    assert_eq!(h.audio[&1], h.expected_audio(1));

    // 204 has no body: bad audio, at once rather than after a timeout.
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    let f = h.fetches_of(1)[0];
    h.feed(Input::UpstreamHead(f, status(204, None)));
    h.feed(Input::UpstreamEnd(f));
    assert_eq!(h.ends()[0].2, Some(ErrorCode::UpstreamBadAudio));
}

#[test]
fn bad_audio_ends_with_an_error() {
    let mut h = Harness::new(Config::default());
    h.speak("m", "Hello.");
    let f = h.fetches_of(1)[0];
    h.feed(Input::UpstreamHead(f, ok()));
    h.feed(Input::UpstreamBody(f, b"<html>oops</html>"));
    assert_eq!(h.ends()[0].2, Some(ErrorCode::UpstreamBadAudio));
    assert!(h.open_fetches.is_empty(), "the bad body is aborted");
}
