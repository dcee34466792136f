//! The segment cache against real workerd and its local KV: the second identical message makes
//! no upstream request and is bit-exact with the first; `cache: false` (or the HTTP header)
//! makes requests; an expired entry makes requests; the `end` counts the hits.

use std::time::Duration;

use orpheus_e2e::{
    check_bit_exact, ensure, http_exchange, Fixture, Listener, Relay, TestResult, RELAY_API_KEYS,
    TEST_ORIGIN, TEST_SECRET,
};
use orpheus_protocol::{EndReason, ServerMessage};

/// Two segments at the default lengths.
const TEXT: &str = "One moment please. I am looking that up for you right now.";

/// Another two segments, for the expiry.
const LATER: &str = "Thanks for waiting. Here is what I found out about your order.";

/// How long the relay under test keeps an entry.
const TTL_S: u64 = 10;

/// Speaks `text` on a fresh v2 session of `relay` (with `cache: false` unless `cache`) and
/// returns the audio, the `end`'s cache hits and the upstream requests it made.
async fn say(
    fx: &Fixture,
    relay: &Relay,
    sid: &str,
    text: &str,
    cache: bool,
) -> TestResult<(Vec<u8>, u32, u64)> {
    let before = fx.upstream.snapshot().requests;
    let mut l = Listener::connect_at(&relay.session_url(sid), sid, 20.0, true).await?;
    let speak = serde_json::json!({"type": "speak", "id": "m", "text": text, "cache": cache});
    orpheus_e2e::LEDGER
        .lock()
        .expect("ledger")
        .texts
        .push(text.to_owned());
    l.client.send_text(speak.to_string()).await?;
    let end = l.until_end("m", Duration::from_secs(30)).await?;
    let hits = match end {
        ServerMessage::End {
            reason: EndReason::Done,
            metrics: Some(m),
            ..
        } => m.cache_hits,
        other => return Err(format!("{sid}: {other:?}")),
    };
    check_bit_exact(&l.pcm, text).map_err(|e| format!("{sid}: {e}"))?;
    Ok((l.pcm, hits, fx.upstream.snapshot().requests - before))
}

pub async fn segment_cache(fx: &Fixture) -> TestResult {
    let keys = RELAY_API_KEYS.join(",");
    let ttl = TTL_S.to_string();
    let vars = [
        ("ALLOWED_ORIGINS", TEST_ORIGIN),
        ("SEGMENT_CACHE_TTL_S", &ttl),
        ("RELAY_API_KEYS", keys.as_str()),
    ];
    let relay = fx.extra_relay("cache", &vars, Some(TEST_SECRET))?;
    let segments = orpheus_test_support::relay_segments(TEXT).len() as u64;
    ensure!(segments == 2, "the text should make two segments");

    // An entry to let expire, kept first so it is the oldest.
    let (_, hits, requests) = say(fx, &relay, "cache-later", LATER, true).await?;
    ensure!(
        hits == 0 && requests == segments,
        "{hits} hits, {requests} requests"
    );
    let kept = std::time::Instant::now();
    let (first, hits, requests) = say(fx, &relay, "cache-a", TEXT, true).await?;
    ensure!(
        hits == 0 && requests == segments,
        "first: {hits} hits, {requests} requests"
    );
    let (second, hits, requests) = say(fx, &relay, "cache-b", TEXT, true).await?;
    ensure!(
        hits == 2 && requests == 0,
        "the same text again: {hits} hits, {requests} upstream requests"
    );
    ensure!(
        second == first,
        "served from the cache, not bit-exact with the first"
    );
    let (_, hits, requests) = say(fx, &relay, "cache-c", TEXT, false).await?;
    ensure!(
        hits == 0 && requests == segments,
        "cache: false: {hits} hits, {requests} requests"
    );

    // Over HTTP: the same text is served from the cache; the header keeps it out.
    let body = serde_json::json!({"model": "canopylabs/orpheus-v1-english", "voice": "troy", "input": TEXT, "response_format": "wav"}).to_string();
    let auth = format!("Bearer {}", RELAY_API_KEYS[0]);
    for (header, want) in [("on", 0), ("off", segments)] {
        let before = fx.upstream.snapshot().requests;
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
            ("x-orpheus-cache", header),
        ];
        let answer = http_exchange(
            &relay.url,
            "POST",
            "/v1/audio/speech",
            &headers,
            body.as_bytes(),
        )
        .await?;
        let requests = fx.upstream.snapshot().requests - before;
        ensure!(
            answer.status == 200 && requests == want,
            "HTTP with x-orpheus-cache {header}: status {}, {requests} requests",
            answer.status
        );
        ensure!(
            answer.body[44..] == first[..],
            "HTTP ({header}): not the cached audio"
        );
    }

    ensure!(
        kept.elapsed() < Duration::from_secs(TTL_S),
        "the checks above took longer than the entries live: {:?}",
        kept.elapsed()
    );
    // Past its time an entry is not served: the upstream is asked again.
    tokio::time::sleep(Duration::from_secs(TTL_S + 1).saturating_sub(kept.elapsed())).await;
    let (_, hits, requests) = say(fx, &relay, "cache-d", LATER, true).await?;
    ensure!(
        hits == 0 && requests == segments,
        "expired: {hits} hits, {requests} requests"
    );
    Ok(())
}
