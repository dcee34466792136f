//! Per-session limits enforced end to end.

use std::time::Duration;

use orpheus_e2e::{
    ensure, protocols_with, ticket, Client, Fixture, Frame, TestResult, TEST_ORIGIN, TEST_SECRET,
};
use orpheus_protocol::{EndReason, ServerMessage};

use crate::texts::*;

/// Connects to a session of `relay` with a fresh ticket.
pub async fn connect_to(relay: &orpheus_e2e::Relay, sid: &str) -> TestResult<Client> {
    let protocols = protocols_with(&ticket(TEST_SECRET, sid, TEST_ORIGIN, 60));
    Client::connect_with(&relay.session_url(sid), &protocols, Some(TEST_ORIGIN)).await
}

pub fn refused_with(got: &orpheus_e2e::Received, code: &str) -> TestResult<u32> {
    match &got.end {
        Some(ServerMessage::End {
            reason: EndReason::Error,
            error: Some(e),
            ..
        }) if e.code.as_str() == code => Ok(e.retry_after_s.unwrap_or(0)),
        other => Err(format!("expected {code}, got {other:?}")),
    }
}

pub async fn expect_error(c: &mut Client, code: &str) -> TestResult<Option<u32>> {
    match c.next(Duration::from_secs(5)).await? {
        Frame::Text(ServerMessage::Error {
            code: got,
            retry_after_s,
            ..
        }) if got.as_str() == code => Ok(retry_after_s),
        other => Err(format!("expected error {code}, got {other:?}")),
    }
}

pub async fn limits(fx: &Fixture) -> TestResult {
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
    let keys = orpheus_e2e::RELAY_API_KEYS.join(",");
    let daily = [
        ("ALLOWED_ORIGINS", TEST_ORIGIN),
        ("LIMIT_CHARS_PER_DAY", "150"),
        ("RELAY_API_KEYS", keys.as_str()),
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
    // The HTTP endpoint's limits are per API key, on the same relay.
    crate::http::per_key_limits(fx, &relay).await
}
