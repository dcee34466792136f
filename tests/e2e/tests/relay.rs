//! End-to-end tests of the relay: real workerd via `wrangler dev`, real WebSockets, and the local
//! Groq-compatible upstream. One fixture is shared by all tests, which run one at a time so the
//! upstream's counters belong to the test that reads them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use orpheus_e2e::reliability::{self, Scale};
use orpheus_e2e::{
    check_bit_exact, ensure, http_request, protocols_with, ticket, Client, Fixture, Frame,
    TestResult, OTHER_ORIGIN, TEST_ORIGIN, TEST_SECRET,
};
use orpheus_protocol::{EndReason, ServerMessage, CLOSE_REPLACED};

const LONG: Duration = Duration::from_secs(60);

fn english(chars: usize) -> String {
    let sentence = "The relay keeps every stream in order, and every message ends exactly once. ";
    let mut text = sentence.repeat(chars / sentence.len() + 1);
    text.truncate(
        text.char_indices()
            .nth(chars)
            .map_or(text.len(), |(i, _)| i),
    );
    text
}

fn arabic(chars: usize) -> String {
    let sentence = "مَرْحَبًا بِكُمْ فِي الْمُرَحِّلِ، كُلُّ رِسَالَةٍ تَنْتَهِي مَرَّةً وَاحِدَةً فَقَطْ. ";
    sentence.chars().cycle().take(chars).collect()
}

/// A text whose first segment the upstream drips and then stalls without closing: only the
/// relay releasing the request can close that upstream connection.
fn slow_text() -> String {
    format!(
        "[[fault:chunk=4000;gap_ms=3;stall_after=160000]] {}",
        english(300)
    )
}

async fn second_message(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "second-message").await?;
    for (id, text) in [
        ("first", "Hello there, this is the first message."),
        ("second", "And this is the second one."),
    ] {
        let got = c.say(id, text, None).await?;
        ensure!(
            got.reason() == Some(EndReason::Done),
            "{id} ended {:?}",
            got.end
        );
        ensure!(!got.pcm.is_empty(), "{id} had no audio");
        check_bit_exact(&got.pcm, text)?;
    }
    Ok(())
}

async fn hundred_messages(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "hundred").await?;
    let before = fx.upstream.snapshot();
    let mut ends = 0;
    for i in 0..100 {
        let text = format!("Message number {i}. It carries a sentence or two of speech.");
        let got = c.say(&format!("m{i}"), &text, None).await?;
        ensure!(
            got.reason() == Some(EndReason::Done),
            "m{i} ended {:?}",
            got.end
        );
        check_bit_exact(&got.pcm, &text)?;
        ends += 1;
    }
    ensure!(ends == 100, "{ends} ends");
    fx.upstream_quiet(Duration::from_secs(2)).await?;
    let after = fx.upstream.snapshot();
    ensure!(
        after.completed_bodies - before.completed_bodies == 100,
        "{} bodies",
        after.completed_bodies - before.completed_bodies
    );
    Ok(())
}

async fn rapid_interrupt(fx: &Fixture) -> TestResult {
    let mut seed: u64 = 0x5EED_0002;
    println!("rapid_interrupt seed={seed:#x}");
    let mut c = Client::connect(fx, "rapid-interrupt").await?;
    let (mut stopped, mut done) = (0, 0);
    for trial in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = format!("t{trial}");
        c.speak(&id, &slow_text(), None).await?;
        tokio::time::sleep(Duration::from_millis(seed % 250)).await;
        c.stop(&id).await?;
        let got = c.until_end(&id, Duration::from_secs(10)).await?;
        match got.reason() {
            Some(EndReason::Stopped) => stopped += 1,
            Some(EndReason::Done) => done += 1,
            other => return Err(format!("{id} ended {other:?}")),
        }
        fx.upstream_quiet(Duration::from_secs(1))
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        if trial % 40 == 0 {
            no_new_requests(fx)
                .await
                .map_err(|e| format!("{id}: {e}"))?;
        }
    }
    // Nothing of any stopped stream may trail in after its end.
    match c.next(Duration::from_millis(300)).await {
        Err(_) => {}
        Ok(frame) => return Err(format!("frame after the last end: {frame:?}")),
    }
    println!("rapid_interrupt: {stopped} stopped, {done} done");
    ensure!(
        stopped > 100,
        "stops should mostly land mid-stream ({stopped} of 200)"
    );
    Ok(())
}

async fn supersede(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "supersede").await?;
    c.speak("old", &slow_text(), None).await?;
    match c.next(LONG).await? {
        Frame::Text(ServerMessage::Start { .. }) => {}
        other => return Err(format!("expected start, got {other:?}")),
    }
    let text = "A fresh message takes over.";
    let before = fx.upstream.snapshot().requests;
    c.speak("new", text, None).await?;
    let old = c.until_end("old", LONG).await?;
    ensure!(
        old.reason() == Some(EndReason::Superseded),
        "old ended {:?}",
        old.end
    );
    let new = c.until_end("new", LONG).await?;
    ensure!(
        new.reason() == Some(EndReason::Done),
        "new ended {:?}",
        new.end
    );
    check_bit_exact(&new.pcm, text)?;
    let made = fx.upstream.snapshot().requests - before;
    ensure!(
        made == 1,
        "{made} requests: the old message's remaining segments must never start"
    );
    fx.upstream_quiet(Duration::from_secs(1)).await
}

async fn replace(fx: &Fixture) -> TestResult {
    let mut first = Client::connect(fx, "replace").await?;
    first.speak("m", &slow_text(), None).await?;
    first.next(LONG).await?; // start
    let mut second = Client::connect(fx, "replace").await?;
    let got = first.until_end("m", LONG).await?;
    ensure!(
        got.reason() == Some(EndReason::Replaced),
        "ended {:?}",
        got.end
    );
    match first.next(Duration::from_secs(5)).await? {
        Frame::Closed(code) => ensure!(code == Some(CLOSE_REPLACED), "closed with {code:?}"),
        other => return Err(format!("expected the close after replaced, got {other:?}")),
    }
    fx.upstream_quiet(Duration::from_secs(1)).await?;
    no_new_requests(fx).await?;
    let text = "The new connection owns the session now.";
    let got = second.say("n", text, None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "ended {:?}", got.end);
    ensure!(
        got.stream() > Some(1),
        "stream numbers carry on: {:?}",
        got.stream()
    );
    check_bit_exact(&got.pcm, text)?;
    fx.upstream_quiet(Duration::from_secs(1)).await
}

/// After a message ended for good, no request for its remaining segments may start.
async fn no_new_requests(fx: &Fixture) -> TestResult {
    let before = fx.upstream.snapshot().requests;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = fx.upstream.snapshot().requests;
    ensure!(
        after == before,
        "{} upstream requests started after the message ended",
        after - before
    );
    Ok(())
}

async fn disconnect_releases_upstream(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "disconnect").await?;
    c.speak("m", &slow_text(), None).await?;
    c.next(LONG).await?; // start
    ensure!(
        fx.upstream.snapshot().open_connections > 0,
        "upstream should be streaming"
    );
    c.close().await;
    fx.upstream_quiet(Duration::from_secs(2)).await?;
    no_new_requests(fx).await?;
    // The session is usable again from a new connection.
    let mut c = Client::connect(fx, "disconnect").await?;
    let got = c.say("again", "Back again.", None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "ended {:?}", got.end);
    Ok(())
}

async fn long_texts(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "long-texts").await?;
    for (voice, text) in [("troy", english(2000)), ("noura", arabic(2000))] {
        let before = fx.upstream.inputs().len();
        let got = c.say(voice, &text, Some(voice)).await?;
        ensure!(
            got.reason() == Some(EndReason::Done),
            "{voice} ended {:?}",
            got.end
        );
        check_bit_exact(&got.pcm, &text)?;
        let inputs = fx.upstream.inputs()[before..].to_vec();
        ensure!(
            inputs.len() >= 10,
            "{} segments for 2000 chars",
            inputs.len()
        );
        ensure!(
            inputs.iter().all(|i| i.chars().count() <= 200),
            "a segment over 200 characters"
        );
        ensure!(
            got.segment_ends == inputs.len(),
            "{} segment-end flags for {} segments",
            got.segment_ends,
            inputs.len()
        );
        // Requests run concurrently (prefetch), so arrival order is not segment order: the
        // upstream must have received exactly the relay's segments, the first one short.
        let segments = orpheus_worker::segment::split(
            &text,
            orpheus_worker::segment::SEGMENT_MAX_CHARS,
            orpheus_worker::segment::FIRST_SEGMENT_CHARS,
        );
        let (mut got_sorted, mut want_sorted) = (inputs.clone(), segments.clone());
        got_sorted.sort();
        want_sorted.sort();
        ensure!(
            got_sorted == want_sorted,
            "the upstream received other segments than the relay's"
        );
        ensure!(
            segments[0].chars().count() <= 100,
            "first segment is short ({})",
            segments[0].chars().count()
        );
    }
    Ok(())
}

async fn all_ten_voices(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "voices").await?;
    let ServerMessage::Ready { voices, .. } = c.ready.clone() else {
        unreachable!()
    };
    let all: Vec<String> = voices.values().flatten().cloned().collect();
    ensure!(all.len() == 10, "{} voices announced", all.len());
    for voice in all {
        let text = format!("Hello from {voice}.");
        let got = c.say(&voice, &text, Some(&voice)).await?;
        ensure!(
            got.reason() == Some(EndReason::Done),
            "{voice} ended {:?}",
            got.end
        );
        check_bit_exact(&got.pcm, &text)?;
    }
    Ok(())
}

async fn upstream_faults(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "faults").await?;
    let cases: &[(&str, Option<&str>, Option<u32>)] = &[
        ("status=429;retry_after=7", Some("rate_limited"), Some(7)),
        ("status=401", Some("upstream_auth"), None),
        (
            "status=400;code=model_terms_required",
            Some("terms_required"),
            None,
        ),
        ("status=400", Some("upstream_rejected"), None),
        ("status=500", Some("upstream_unavailable"), None),
        (
            "status=503;retry_after=9",
            Some("upstream_unavailable"),
            Some(9),
        ),
        (
            "status=500;retry_after=1",
            Some("upstream_unavailable"),
            Some(1),
        ),
        ("reset_after=3000", Some("upstream_interrupted"), None),
        ("stall_after=2000", Some("upstream_timeout"), None),
        ("stall_head", Some("upstream_timeout"), None),
        ("delay_ms=400", None, None),
        ("split_header;chunk=7;gap_ms=0", None, None),
        ("extra_chunks;chunk=333", None, None),
        ("chunk=1001;gap_ms=1", None, None),
    ];
    for (i, (fault, code, retry)) in cases.iter().enumerate() {
        let text = format!("Fault case {i} [[fault:{fault}]] here.");
        let before = fx.upstream.snapshot().requests;
        let got = c
            .say(&format!("f{i}"), &text, None)
            .await
            .map_err(|e| format!("{fault}: {e}"))?;
        match code {
            Some(code) => {
                ensure!(
                    got.reason() == Some(EndReason::Error),
                    "{fault}: ended {:?}",
                    got.end
                );
                ensure!(
                    got.error_code().as_deref() == Some(*code),
                    "{fault}: {:?}",
                    got.end
                );
                let Some(ServerMessage::End { error: Some(e), .. }) = &got.end else {
                    unreachable!()
                };
                ensure!(
                    e.retry_after_s == *retry,
                    "{fault}: retry_after_s {:?}",
                    e.retry_after_s
                );
                ensure!(
                    !e.message.contains("org_"),
                    "{fault}: upstream text leaked: {}",
                    e.message
                );
            }
            None => {
                ensure!(
                    got.reason() == Some(EndReason::Done),
                    "{fault}: ended {:?}",
                    got.end
                );
                check_bit_exact(&got.pcm, &text).map_err(|e| format!("{fault}: {e}"))?;
            }
        }
        let requests = fx.upstream.snapshot().requests - before;
        ensure!(
            requests == 1,
            "{fault}: {requests} upstream requests (no hidden retries)"
        );
        fx.upstream_quiet(Duration::from_secs(2))
            .await
            .map_err(|e| format!("{fault}: {e}"))?;
    }
    Ok(())
}

/// 429 and 503: one retry, only before any audio, honouring retry-after; never a loop.
async fn upstream_retry(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "retry").await?;
    let cases: &[(&str, Option<&str>, u64)] = &[
        ("status=429;retry_after=1;once", None, 2),
        ("status=503;once", None, 2),
        ("status=429;retry_after=2", Some("rate_limited"), 2),
        ("status=503;retry_after=1", Some("upstream_unavailable"), 2),
    ];
    for (i, (fault, code, requests)) in cases.iter().enumerate() {
        let text = format!("Retry case {i} [[fault:{fault}]] here.");
        let before = fx.upstream.snapshot().requests;
        let started = Instant::now();
        let got = c.say(&format!("r{i}"), &text, None).await?;
        let waited = started.elapsed();
        match code {
            None => {
                ensure!(
                    got.reason() == Some(EndReason::Done),
                    "{fault}: {:?}",
                    got.end
                );
                check_bit_exact(&got.pcm, &text)?;
            }
            Some(code) => ensure!(
                got.error_code().as_deref() == Some(*code),
                "{fault}: {:?}",
                got.end
            ),
        }
        ensure!(
            waited >= Duration::from_millis(900),
            "{fault}: retry-after not honoured ({waited:?})"
        );
        let made = fx.upstream.snapshot().requests - before;
        ensure!(
            made == *requests,
            "{fault}: {made} upstream requests, expected {requests}"
        );
    }
    // Audio already sent: the second segment's 429 is not retried (that would stall playback).
    let text = format!(
        "{} [[fault:delay_ms=400;status=429;retry_after=1;once]] {}",
        english(90),
        english(60)
    );
    let before = fx.upstream.snapshot().requests;
    let got = c.say("after-audio", &text, None).await?;
    ensure!(!got.pcm.is_empty(), "the first segment's audio was relayed");
    ensure!(
        got.error_code().as_deref() == Some("rate_limited"),
        "after audio: {:?}",
        got.end
    );
    let made = fx.upstream.snapshot().requests - before;
    ensure!(
        made == 2,
        "after audio: {made} upstream requests, expected 2 (no retry)"
    );
    fx.upstream_quiet(Duration::from_secs(2)).await
}

async fn bad_input(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "bad-input").await?;
    let before = fx.upstream.snapshot().requests;
    let frame_errors: Vec<(String, &str)> = vec![
        ("{not json".into(), "invalid_json"),
        (r#"{"type":"sing"}"#.into(), "unknown_type"),
        (
            r#"{"type":"speak","text":"no id"}"#.into(),
            "invalid_message",
        ),
        (
            format!(
                r#"{{"type":"speak","id":"x","text":"{}"}}"#,
                "a".repeat(40_000)
            ),
            "frame_too_large",
        ),
    ];
    for (frame, code) in &frame_errors {
        c.send_text(frame.clone()).await?;
        match c.next(Duration::from_secs(5)).await? {
            Frame::Text(ServerMessage::Error { code: got, .. }) => {
                ensure!(got.as_str() == *code, "{code}: got {got:?}")
            }
            other => return Err(format!("{code}: got {other:?}")),
        }
    }
    c.send_binary(vec![1, 2, 3]).await?;
    match c.next(Duration::from_secs(5)).await? {
        Frame::Text(ServerMessage::Error { code, .. }) => {
            ensure!(code.as_str() == "binary_frame", "{code:?}")
        }
        other => return Err(format!("binary: got {other:?}")),
    }
    let rejected: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({"type":"speak","id":"e","text":"   "}),
            "empty_text",
        ),
        (
            serde_json::json!({"type":"speak","id":"l","text":"a".repeat(4001)}),
            "text_too_long",
        ),
        (
            serde_json::json!({"type":"speak","id":"v","text":"hi","voice":"bob"}),
            "unknown_voice",
        ),
        (
            serde_json::json!({"type":"speak","id":"m","text":"hi","model":"whisper-1"}),
            "unknown_model",
        ),
        (
            serde_json::json!({"type":"speak","id":"x","text":"hi","voice":"troy","model":"canopylabs/orpheus-arabic-saudi"}),
            "voice_model_mismatch",
        ),
        (
            serde_json::json!({"type":"speak","id":"t","text":42}),
            "invalid_message",
        ),
    ];
    for (frame, code) in &rejected {
        c.send_text(frame.to_string()).await?;
        let id = frame["id"].as_str().unwrap();
        let got = c.until_end(id, Duration::from_secs(5)).await?;
        ensure!(
            got.reason() == Some(EndReason::Error) && got.error_code().as_deref() == Some(*code),
            "{code}: {:?}",
            got.end
        );
        ensure!(got.stream().is_none(), "a rejected speak has no stream");
    }
    ensure!(
        fx.upstream.snapshot().requests == before,
        "rejected input reached the upstream"
    );
    // Pings: the exact frame is answered by the runtime, any other spelling by the session.
    for ping in [r#"{"type":"ping"}"#, r#"{ "type" : "ping" }"#] {
        c.send_text(ping).await?;
        match c.next(Duration::from_secs(5)).await? {
            Frame::Text(ServerMessage::Pong) => {}
            other => return Err(format!("ping: got {other:?}")),
        }
    }
    // Stopping an unknown id is a no-op; the session is still usable.
    c.stop("nobody").await?;
    let text = "Still here after all that.";
    let got = c.say("ok", text, None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "ended {:?}", got.end);
    check_bit_exact(&got.pcm, text)
}

async fn refused_upgrades(fx: &Fixture) -> TestResult {
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let mut with_protocol = upgrade.to_vec();
    with_protocol.push(("Sec-WebSocket-Protocol", "orpheus.v1"));
    let before = fx.upstream.snapshot().requests;
    let too_long = format!("/v1/sessions/{}/ws", "a".repeat(65));
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        ("/v1/sessions/bad.id/ws", with_protocol.clone(), 400),
        (&too_long, with_protocol.clone(), 400),
        ("/v1/sessions/fine/ws", upgrade.to_vec(), 400),
        ("/v1/sessions/fine/ws", vec![], 426),
        ("/nowhere", vec![], 404),
    ];
    for (path, headers, status) in cases {
        let (got, body) = http_request(fx.relay_url(), path, &headers).await?;
        ensure!(got == status, "{path}: {got} {body}");
    }
    ensure!(
        fx.upstream.snapshot().requests == before,
        "a refused upgrade reached the upstream"
    );
    Ok(())
}

/// A session idles past hibernation (workerd evicts an idle object after about 10-25 s). The
/// exact ping is answered by the runtime without waking it; the next speak re-creates the object,
/// which restores the socket's attachment (stream numbers carry on) and speaks normally.
async fn hibernation_round_trip(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "hibernate").await?;
    let first = c.say("before", "Before the nap.", None).await?;
    ensure!(first.reason() == Some(EndReason::Done), "{:?}", first.end);
    let constructed = || fx.relay.log().matches("object event=constructed").count();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let before = constructed();
    c.send_text(r#"{"type":"ping"}"#).await?;
    ensure!(
        matches!(
            c.next(Duration::from_secs(5)).await?,
            Frame::Text(ServerMessage::Pong)
        ),
        "no pong while hibernated"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        constructed() == before,
        "the ping woke the hibernated object"
    );
    let text = "After the nap, the same socket still works.";
    let got = c.say("after", text, None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "{:?}", got.end);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        constructed() == before + 1,
        "the object was not evicted and re-created ({} constructions)",
        constructed() - before
    );
    ensure!(
        got.stream() == first.stream().map(|s| s + 1),
        "stream {:?} after {:?}",
        got.stream(),
        first.stream()
    );
    check_bit_exact(&got.pcm, text)
}

async fn many_sessions_at_once(fx: &Fixture) -> TestResult {
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let sid = format!("parallel-{i}");
            let url = fx.session_url(&sid);
            let protocols = protocols_with(&ticket(TEST_SECRET, &sid, TEST_ORIGIN, 60));
            tokio::spawn(async move {
                let mut c = Client::connect_with(&url, &protocols, Some(TEST_ORIGIN)).await?;
                let text = format!("Session {i} speaks at the same time as the others.");
                let got = c.say("m", &text, None).await?;
                ensure!(
                    got.reason() == Some(EndReason::Done),
                    "session {i}: {:?}",
                    got.end
                );
                check_bit_exact(&got.pcm, &text)
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    println!("8 parallel sessions in {:?}", started.elapsed());
    fx.upstream_quiet(Duration::from_secs(2)).await
}

const UPGRADE_HEADERS: [(&str, &str); 4] = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
];

/// Attempts an upgrade and returns the HTTP status (101 means admitted).
async fn upgrade_status(
    base: &str,
    sid: &str,
    origin: Option<&str>,
    protocols: &str,
) -> TestResult<u16> {
    let mut headers = UPGRADE_HEADERS.to_vec();
    headers.push(("Sec-WebSocket-Protocol", protocols));
    if let Some(origin) = origin {
        headers.push(("Origin", origin));
    }
    let path = format!("/v1/sessions/{sid}/ws");
    let request = http_request(base, &path, &headers);
    // An admitted upgrade keeps the connection open: its status line is all we need.
    match tokio::time::timeout(Duration::from_secs(3), request).await {
        Ok(result) => result.map(|(status, _)| status),
        Err(_) => Ok(101),
    }
}

/// How many times the session objects were reached (each logs one upgrade line).
fn object_invocations(relay: &orpheus_e2e::Relay) -> usize {
    relay.log().matches("upgrade session=").count()
}

async fn wait_for_log(relay: &orpheus_e2e::Relay, what: &str, within: Duration) -> TestResult {
    let deadline = Instant::now() + within;
    while !relay.log().contains(what) {
        ensure!(
            Instant::now() < deadline,
            "{what:?} not logged within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn ticket_refusals(fx: &Fixture) -> TestResult {
    let sid = "guarded";
    let good = |origin: &str| protocols_with(&ticket(TEST_SECRET, sid, origin, 60));
    // Positive control: an admitted connection reaches the object and is logged as such.
    let before = object_invocations(&fx.relay);
    let c =
        Client::connect_with(&fx.session_url(sid), &good(TEST_ORIGIN), Some(TEST_ORIGIN)).await?;
    c.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while object_invocations(&fx.relay) == before {
        ensure!(
            Instant::now() < deadline,
            "the object's upgrade line never appeared in the log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        ("no ticket", "orpheus.v1".into(), Some(TEST_ORIGIN), 401),
        (
            "malformed",
            "orpheus.v1, orpheus.ticket.not-a-ticket".into(),
            Some(TEST_ORIGIN),
            401,
        ),
        (
            "bad signature",
            protocols_with(&ticket("another-secret", sid, TEST_ORIGIN, 60)),
            Some(TEST_ORIGIN),
            401,
        ),
        (
            "expired",
            protocols_with(&ticket(TEST_SECRET, sid, TEST_ORIGIN, -120)),
            Some(TEST_ORIGIN),
            401,
        ),
        (
            "too long-lived",
            protocols_with(&ticket(TEST_SECRET, sid, TEST_ORIGIN, 3600)),
            Some(TEST_ORIGIN),
            401,
        ),
        (
            "wrong session",
            protocols_with(&ticket(TEST_SECRET, "other", TEST_ORIGIN, 60)),
            Some(TEST_ORIGIN),
            401,
        ),
        (
            "ticket for another allowed origin",
            good(TEST_ORIGIN),
            Some(OTHER_ORIGIN),
            401,
        ),
        (
            "origin not allowed",
            good(TEST_ORIGIN),
            Some("http://evil.e2e.test"),
            403,
        ),
        ("no origin", good(TEST_ORIGIN), None, 403),
    ];
    let requests = fx.upstream.snapshot().requests;
    let invocations = object_invocations(&fx.relay);
    for (case, protocols, origin, status) in &cases {
        let got = upgrade_status(fx.relay_url(), sid, *origin, protocols).await?;
        ensure!(got == *status, "{case}: status {got}, expected {status}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        object_invocations(&fx.relay) == invocations,
        "a refused upgrade reached the Durable Object"
    );
    ensure!(
        fx.upstream.snapshot().requests == requests,
        "a refused upgrade reached the upstream"
    );

    // Replay: the Worker cannot know a ticket was used; the session's object refuses it.
    let once = good(TEST_ORIGIN);
    let c = Client::connect_with(&fx.session_url(sid), &once, Some(TEST_ORIGIN)).await?;
    c.close().await;
    let got = upgrade_status(fx.relay_url(), sid, Some(TEST_ORIGIN), &once).await?;
    ensure!(got == 401, "replayed ticket: status {got}");
    wait_for_log(
        &fx.relay,
        "result=refused reason=ticket_already_used",
        Duration::from_secs(5),
    )
    .await?;
    ensure!(
        fx.upstream.snapshot().requests == requests,
        "a refused upgrade reached the upstream"
    );
    ensure!(
        !fx.relay
            .log()
            .contains(&once["orpheus.v1, orpheus.ticket.".len()..]),
        "a ticket was logged"
    );
    Ok(())
}

/// The README's Node snippet mints tickets the relay accepts.
async fn node_minted_ticket(fx: &Fixture) -> TestResult {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/mint-ticket.mjs");
    let output = std::process::Command::new("node")
        .arg(&script)
        .args(["node-minted", TEST_ORIGIN])
        .env("SESSION_SECRET", TEST_SECRET)
        .output()
        .map_err(|e| format!("node: {e}"))?;
    ensure!(
        output.status.success(),
        "mint-ticket.mjs: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ticket = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    orpheus_e2e::record_ticket(&ticket);
    // The README shows the same function: it must not drift from the file that runs here.
    let source = std::fs::read_to_string(&script).map_err(|e| e.to_string())?;
    let start = source
        .find("export function mintTicket")
        .ok_or("no mintTicket in the example")?;
    let end = source[start..]
        .find("\n}\n")
        .ok_or("mintTicket not closed")?
        + start
        + 3;
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .map_err(|e| e.to_string())?;
    ensure!(
        readme.contains(&source[start..end]),
        "README.md's mintTicket differs from docs/examples/mint-ticket.mjs"
    );
    let url = fx.session_url("node-minted");
    let mut c = Client::connect_with(&url, &protocols_with(&ticket), Some(TEST_ORIGIN)).await?;
    let got = c.say("n", "Minted by node.", None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "{:?}", got.end);
    Ok(())
}

async fn secure_defaults_and_dev_mode(fx: &Fixture) -> TestResult {
    // The production relay has no development endpoint.
    let (status, _) = http_request(fx.relay_url(), "/_dev/ticket?session=x", &[]).await?;
    ensure!(
        status == 404,
        "/_dev/ticket outside development mode: {status}"
    );

    // No secret and no development mode: every connection is refused, and the log says why.
    let bare = fx.extra_relay("bare", &[], None)?;
    let requests = fx.upstream.snapshot().requests;
    let got = upgrade_status(&bare.url, "s", Some(TEST_ORIGIN), "orpheus.v1").await?;
    ensure!(got == 503, "no secret, no dev mode: status {got}");
    wait_for_log(
        &bare,
        "SESSION_SECRET is not set: refusing every connection",
        Duration::from_secs(5),
    )
    .await?;
    ensure!(
        object_invocations(&bare) == 0,
        "the refused upgrade reached the Durable Object"
    );
    drop(bare);

    // Development mode with a secret: the dev endpoint mints a ticket the relay accepts.
    let dev = fx.extra_relay("dev", &[("ORPHEUS_DEV_MODE", "1")], Some("dev-secret"))?;
    let (status, body) = http_request(&dev.url, "/_dev/ticket?session=dev-demo", &[]).await?;
    ensure!(status == 200, "/_dev/ticket: {status} {body}");
    let json: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| format!("{e}: {body}"))?;
    orpheus_e2e::record_ticket(json["ticket"].as_str().unwrap_or_default());
    let protocols: Vec<&str> = json["protocols"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .collect();
    let mut c = Client::connect_with(
        &dev.session_url("dev-demo"),
        &protocols.join(", "),
        Some(&dev.url),
    )
    .await?;
    let text = "Development mode works with tickets too.";
    let got = c.say("d", text, None).await?;
    ensure!(got.reason() == Some(EndReason::Done), "dev: {:?}", got.end);
    check_bit_exact(&got.pcm, text)?;
    ensure!(
        fx.upstream.snapshot().requests == requests + 1,
        "one upstream request for one segment"
    );
    wait_for_log(&dev, "LOCAL DEVELOPMENT MODE", Duration::from_secs(5)).await
}

/// Connects to a session of `relay` with a fresh ticket.
async fn connect_to(relay: &orpheus_e2e::Relay, sid: &str) -> TestResult<Client> {
    let protocols = protocols_with(&ticket(TEST_SECRET, sid, TEST_ORIGIN, 60));
    Client::connect_with(&relay.session_url(sid), &protocols, Some(TEST_ORIGIN)).await
}

fn refused_with(got: &orpheus_e2e::Received, code: &str) -> TestResult<u32> {
    match &got.end {
        Some(ServerMessage::End {
            reason: EndReason::Error,
            error: Some(e),
            ..
        }) if e.code.as_str() == code => Ok(e.retry_after_s.unwrap_or(0)),
        other => Err(format!("expected {code}, got {other:?}")),
    }
}

async fn expect_error(c: &mut Client, code: &str) -> TestResult<Option<u32>> {
    match c.next(Duration::from_secs(5)).await? {
        Frame::Text(ServerMessage::Error {
            code: got,
            retry_after_s,
            ..
        }) if got.as_str() == code => Ok(retry_after_s),
        other => Err(format!("expected error {code}, got {other:?}")),
    }
}

async fn limits(fx: &Fixture) -> TestResult {
    let tight = [
        ("ALLOWED_ORIGINS", TEST_ORIGIN),
        ("LIMIT_MESSAGES_PER_MINUTE", "3"),
        ("LIMIT_CHARS_PER_MINUTE", "120"),
        ("LIMIT_TEXT_CHARS", "100"),
        ("LIMIT_FRAME_BYTES", "512"),
        ("LIMIT_FRAMES_PER_SECOND", "5"),
    ];
    let relay = fx.extra_relay("limits", &tight, Some(TEST_SECRET))?;
    let requests = || fx.upstream.snapshot().requests;

    // Text length per message: exactly the limit passes, one over is refused.
    let mut c = connect_to(&relay, "text-length").await?;
    let at_limit = english(100);
    ensure!(
        c.say("a", &at_limit, None).await?.reason() == Some(EndReason::Done),
        "100 chars refused"
    );
    let before = requests();
    refused_with(&c.say("b", &english(101), None).await?, "text_too_long")?;
    ensure!(requests() == before, "text_too_long reached the upstream");

    // Characters per minute: 60 + 60 = 120 passes, one more character is refused.
    let mut c = connect_to(&relay, "chars-per-minute").await?;
    for id in ["a", "b"] {
        ensure!(
            c.say(id, &english(60), None).await?.reason() == Some(EndReason::Done),
            "{id} refused"
        );
    }
    let before = requests();
    let retry = refused_with(&c.say("c", "x", None).await?, "rate_limited")?;
    ensure!((1..=60).contains(&retry), "retry_after_s {retry}");
    ensure!(
        requests() == before,
        "a refused message reached the upstream"
    );
    c.close().await;
    // Reconnecting does not reset the budget.
    let mut c = connect_to(&relay, "chars-per-minute").await?;
    refused_with(&c.say("d", "x", None).await?, "rate_limited")?;

    // Control frame size: exactly 512 bytes passes, 513 is refused.
    let mut c = connect_to(&relay, "frame-size").await?;
    // `{"type":"ping"` and `}` are 15 bytes; spaces make up the rest.
    let ping = |len: usize| format!("{{\"type\":\"ping\"{}}}", " ".repeat(len - 15));
    ensure!(ping(512).len() == 512, "ping helper");
    c.send_text(ping(512)).await?;
    ensure!(
        matches!(
            c.next(Duration::from_secs(5)).await?,
            Frame::Text(ServerMessage::Pong)
        ),
        "512-byte frame refused"
    );
    c.send_text(ping(513)).await?;
    expect_error(&mut c, "frame_too_large").await?;

    // Frames per second: 5 pass, the 6th is refused, a flood is closed with 1008.
    let mut c = connect_to(&relay, "frame-rate").await?;
    for _ in 0..6 {
        c.send_text(r#"{ "type": "ping" }"#).await?;
    }
    for _ in 0..5 {
        ensure!(
            matches!(
                c.next(Duration::from_secs(5)).await?,
                Frame::Text(ServerMessage::Pong)
            ),
            "ping within the rate refused"
        );
    }
    ensure!(
        expect_error(&mut c, "rate_limited").await? == Some(1),
        "rate_limited without retry_after_s"
    );
    for _ in 0..10 {
        let _ = c.send_text(r#"{ "type": "ping" }"#).await;
    }
    match c.next(Duration::from_secs(5)).await? {
        Frame::Closed(code) => ensure!(code == Some(1008), "flood closed with {code:?}"),
        other => return Err(format!("flood: expected a 1008 close, got {other:?}")),
    }

    // Messages per minute: 3 pass, the 4th is refused; once the window passes it works again.
    let mut c = connect_to(&relay, "messages-per-minute").await?;
    for id in ["a", "b", "c"] {
        ensure!(
            c.say(id, "Hi.", None).await?.reason() == Some(EndReason::Done),
            "{id} refused"
        );
    }
    let before = requests();
    let retry = refused_with(&c.say("d", "Hi.", None).await?, "rate_limited")?;
    ensure!(
        requests() == before,
        "a refused message reached the upstream"
    );
    ensure!((1..=60).contains(&retry), "retry_after_s {retry}");
    tokio::time::sleep(Duration::from_secs(u64::from(retry))).await;
    let got = c.say("e", "Hi again.", None).await?;
    ensure!(
        got.reason() == Some(EndReason::Done),
        "after the window: {:?}",
        got.end
    );
    drop(relay);

    // Characters per day, on a relay whose day budget is smaller than its minute budget.
    let daily = [
        ("ALLOWED_ORIGINS", TEST_ORIGIN),
        ("LIMIT_CHARS_PER_DAY", "150"),
    ];
    let relay = fx.extra_relay("daily", &daily, Some(TEST_SECRET))?;
    let mut c = connect_to(&relay, "chars-per-day").await?;
    for id in ["a", "b"] {
        ensure!(
            c.say(id, &english(75), None).await?.reason() == Some(EndReason::Done),
            "{id} refused"
        );
    }
    let before = requests();
    let retry = refused_with(&c.say("c", "x", None).await?, "rate_limited")?;
    ensure!(
        retry > 86_000,
        "a day's limit waits about a day, got {retry}"
    );
    ensure!(
        requests() == before,
        "a refused message reached the upstream"
    );
    Ok(())
}

/// The player in real headless Chromium against the real relay, through the demo page.
async fn browser_player(fx: &Fixture) -> TestResult {
    let relay = fx.extra_relay(
        "browser",
        &[("ORPHEUS_DEV_MODE", "1")],
        Some("browser-secret"),
    )?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = orpheus_e2e::Relay::log_dir(&root);
    let texts = serde_json::json!({
        "first": "Hello there, this is the first message.",
        "second": "And this is the second one.",
        "long": english(300),
        "capture": "[[fault:chunk=1001;gap_ms=2]] Split at odd sizes, played without a gap.",
        "jitter": "[[fault:chunk=4800;gap_ms=40;jitter_ms=60]] Jitter up to sixty milliseconds leaves no gap.",
    });
    let out_dir = out.to_string_lossy();
    let texts_json = texts.to_string();
    let report =
        orpheus_e2e::run_browser_script("player.mjs", &[&relay.url, &out_dir, &texts_json]).await?;

    // Second message plays, and both complete.
    let second = &report["second"];
    for (key, text) in [
        ("first", texts["first"].as_str().unwrap()),
        ("second", texts["second"].as_str().unwrap()),
    ] {
        ensure!(second[key]["reason"] == "done", "{key}: {}", second[key]);
        let want = orpheus_e2e::expected_pcm(text).len() as u64 / 2;
        ensure!(
            second[key]["samples"].as_u64() == Some(want),
            "{key}: {} samples, expected {want}",
            second[key]["samples"]
        );
    }
    ensure!(
        second["live"] == 0 && second["state"] == "idle",
        "after two messages: {second}"
    );

    // 100 consecutive messages: every promise settles once, live sources back to zero.
    let hundred = &report["hundred"];
    let reasons = hundred["reasons"].as_array().ok_or("no reasons")?;
    ensure!(
        reasons.len() == 100 && reasons.iter().all(|r| r == "done"),
        "100 messages: {reasons:?}"
    );
    let ids: std::collections::BTreeSet<_> = hundred["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    ensure!(ids.len() == 100, "each message settled once");
    ensure!(
        hundred["live"] == 0,
        "live sources after 100 messages: {}",
        hundred["live"]
    );

    // Rapid interrupt: nothing of a stopped message is scheduled after stop; idle every time.
    let trials = report["rapid"]["trials"].as_array().ok_or("no trials")?;
    // Positive control: the start counter does see the player's sources.
    ensure!(
        report["rapid"]["starts"].as_u64().unwrap_or(0) > 0,
        "no source start was counted"
    );
    let stopped = trials.iter().filter(|t| t["reason"] == "stopped").count();
    for (i, t) in trials.iter().enumerate() {
        ensure!(
            t["reason"] == "stopped" || t["reason"] == "done",
            "trial {i}: {t}"
        );
        ensure!(
            t["startedAfterStop"] == 0,
            "trial {i}: audio scheduled after stop: {t}"
        );
        ensure!(
            t["stateAtStop"] == "idle" && t["stateAfter"] == "idle" && t["live"] == 0,
            "trial {i}: {t}"
        );
    }
    ensure!(
        stopped > trials.len() / 2,
        "stops should land mid-message ({stopped} of {})",
        trials.len()
    );

    // Gapless and exact: what the page played is the source, sample for sample.
    for key in ["capture", "jitter"] {
        let run = &report[key];
        ensure!(run["rate"] == 24000, "{key}: context rate {}", run["rate"]);
        ensure!(
            run["result"]["reason"] == "done",
            "{key}: {}",
            run["result"]
        );
        ensure!(
            run["result"]["underruns"] == 0,
            "{key}: underruns {}",
            run["result"]["underruns"]
        );
        let reported: Vec<u64> = run["states"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s[1].as_u64())
            .collect();
        ensure!(
            reported.iter().all(|&u| u == 0),
            "{key}: underruns reported in state events: {reported:?}"
        );
        let captured = orpheus_e2e::decode_capture(run)?;
        let (offset, worst) =
            orpheus_e2e::compare_capture(&captured, texts[key].as_str().unwrap())?;
        ensure!(
            worst <= 1e-6,
            "{key}: played audio differs from the source by up to {worst}"
        );
        println!(
            "{key}: {} samples played exactly (offset {offset}, largest difference {worst})",
            captured.len() - offset
        );
    }

    // onended never fires: the safety timer completes the message and releases its sources.
    let no_ended = &report["noEnded"];
    ensure!(
        no_ended["result"]["reason"] == "done" && no_ended["live"] == 0,
        "without onended: {no_ended}"
    );
    // It really was the safety timer: completion came half a second after the audio's end.
    let audio_s = no_ended["result"]["samples"].as_f64().unwrap_or(0.0) / 24_000.0;
    let total_s = no_ended["result"]["totalSeconds"].as_f64().unwrap_or(0.0);
    ensure!(
        total_s >= audio_s + 0.5,
        "completed after {total_s} s for {audio_s} s of audio: onended still fired?"
    );

    // Suspended context: blocked-by-autoplay, never "speaking", until a gesture resumes it.
    let blocked = &report["blocked"];
    let states: Vec<&str> = blocked["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    ensure!(
        states.contains(&"blocked-by-autoplay") && !states.contains(&"speaking"),
        "suspended: {states:?}"
    );
    ensure!(blocked["contextState"] == "suspended", "{blocked}");
    ensure!(
        blocked["afterGesture"]["contextState"] == "running",
        "after a click: {}",
        blocked["afterGesture"]
    );
    ensure!(
        blocked["afterGesture"]["first"] == "superseded",
        "after a click: {}",
        blocked["afterGesture"]
    );

    // The demo page in its speaking state.
    let shot = &report["screenshot"];
    ensure!(
        shot["badge"] == "speaking",
        "screenshot taken in state {}",
        shot["badge"]
    );
    let png = std::fs::read(shot["path"].as_str().unwrap()).map_err(|e| e.to_string())?;
    ensure!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot is not a real PNG"
    );
    Ok(())
}

/// Run last: neither the API key, nor a secret, nor any ticket, nor any text (or segment of it)
/// appears in any frame the relay sent or in any log of any relay of this run.
async fn chaos_client_leg(fx: &Fixture) -> TestResult {
    reliability::client_leg_chaos(fx.rig().await?, fx, Scale::SHORT).await?;
    Ok(())
}

async fn chaos_upstream_leg(fx: &Fixture) -> TestResult {
    reliability::upstream_leg_chaos(fx.rig().await?, fx, Scale::SHORT).await?;
    Ok(())
}

async fn eviction_mid_stream(fx: &Fixture) -> TestResult {
    reliability::eviction(fx.rig().await?, fx, Scale::SHORT).await?;
    Ok(())
}

async fn soak_short(fx: &Fixture) -> TestResult {
    let stage = reliability::soak(fx.rig().await?, fx, 4, Duration::from_secs(20)).await?;
    ensure!(
        stage.verdict.speaks >= 20 && stage.verdict.ends.get("done").is_some_and(|&n| n > 0),
        "the soak barely ran:\n{stage}"
    );
    ensure!(
        stage.notes.iter().all(|n| !n.contains('?')),
        "workerd's memory was not found: {:?}",
        stage.notes
    );
    Ok(())
}

async fn browser_through_chaos(fx: &Fixture) -> TestResult {
    reliability::browser_chaos(fx.rig().await?, 8).await?;
    Ok(())
}

async fn nothing_leaks(fx: &Fixture) -> TestResult {
    use orpheus_worker::segment::{split, FIRST_SEGMENT_CHARS, SEGMENT_MAX_CHARS};
    let ledger = orpheus_e2e::LEDGER.lock().map_err(|e| e.to_string())?;
    let logs = fx.all_logs();
    // Positive controls: the run produced what is being searched.
    ensure!(
        ledger.texts.len() > 50 && ledger.tickets.len() > 10,
        "ledger too small: {} texts, {} tickets",
        ledger.texts.len(),
        ledger.tickets.len()
    );
    ensure!(
        ledger.frames.len() > 100,
        "only {} frames captured",
        ledger.frames.len()
    );
    let main_log = logs
        .iter()
        .find(|(name, _)| name == "relay.log")
        .map(|(_, l)| l.as_str())
        .unwrap_or_default();
    ensure!(
        main_log.contains("end session=") && main_log.contains("speak session="),
        "the relay log lacks its own lines"
    );
    ensure!(
        main_log.contains("chars=2000"),
        "the relay log should carry lengths"
    );

    let mut secrets: Vec<(&str, String)> = vec![
        ("the API key", orpheus_e2e::TEST_KEY.to_owned()),
        ("the session secret", TEST_SECRET.to_owned()),
        ("the dev secret", "dev-secret".to_owned()),
    ];
    for ticket in &ledger.tickets {
        secrets.push(("a ticket", ticket.clone()));
        if let Some((_, signature)) = ticket.split_once('.') {
            secrets.push(("a ticket signature", signature.to_owned()));
        }
    }
    for text in ledger.texts.iter().filter(|t| t.chars().count() >= 12) {
        secrets.push(("a text", text.clone()));
        for segment in split(text, SEGMENT_MAX_CHARS, FIRST_SEGMENT_CHARS) {
            if segment.chars().count() >= 12 {
                secrets.push(("a segment of text", segment));
            }
        }
    }
    let frames = ledger.frames.join("\n");
    let mut places: Vec<(String, &str)> = logs
        .iter()
        .map(|(name, log)| (format!("log {name}"), log.as_str()))
        .collect();
    places.push(("frames sent to clients".to_owned(), &frames));
    for (place, haystack) in &places {
        for (what, secret) in &secrets {
            ensure!(
                !haystack.contains(secret.as_str()),
                "{what} appears in {place}"
            );
        }
    }
    println!(
        "checked {} secrets against {} logs and {} frames",
        secrets.len(),
        logs.len(),
        ledger.frames.len()
    );
    Ok(())
}

type TestFn = for<'a> fn(
    &'a Fixture,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = TestResult> + 'a>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|fx| Box::pin($name(fx))) as TestFn)),*]
    };
}

fn main() {
    let mut args = Arguments::from_args();
    // One at a time: tests read the shared upstream's counters.
    args.test_threads = Some(1);
    let tests = tests![
        second_message,
        hundred_messages,
        rapid_interrupt,
        supersede,
        replace,
        disconnect_releases_upstream,
        long_texts,
        all_ten_voices,
        upstream_faults,
        upstream_retry,
        bad_input,
        refused_upgrades,
        ticket_refusals,
        node_minted_ticket,
        limits,
        secure_defaults_and_dev_mode,
        many_sessions_at_once,
        hibernation_round_trip,
        chaos_client_leg,
        chaos_upstream_leg,
        eviction_mid_stream,
        soak_short,
        browser_player,
        browser_through_chaos,
        nothing_leaks,
    ];
    if args.list {
        let trials = tests
            .into_iter()
            .map(|(name, _)| Trial::test(name, || Ok(())))
            .collect();
        libtest_mimic::run(&args, trials).exit();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixture = match Fixture::start(&root, Fixture::test_upstream()) {
        Ok(fixture) => Arc::new(fixture),
        Err(e) => {
            eprintln!("e2e fixture failed to start: {e}");
            std::process::exit(1);
        }
    };
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let fx = fixture.clone();
            Trial::test(name, move || {
                fx.runtime.block_on(test(&fx)).map_err(Failed::from)
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed() {
        eprintln!("wrangler dev log: {}", fixture.relay.log_path.display());
    }
    drop(fixture);
    conclusion.exit();
}
