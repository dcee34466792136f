//! Messages through the relay: in order, bit-exact, stopped, superseded, replaced, released.

use std::time::{Duration, Instant};

use orpheus_e2e::{
    check_bit_exact, ensure, protocols_with, ticket, Client, Fixture, Frame, TestResult,
    TEST_ORIGIN, TEST_SECRET,
};
use orpheus_protocol::{EndReason, ServerMessage, CLOSE_REPLACED};

use crate::texts::*;

pub async fn second_message(fx: &Fixture) -> TestResult {
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

pub async fn hundred_messages(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "hundred").await?;
    let before = fx.upstream.snapshot();
    let (mut ends, mut segments) = (0, 0);
    for i in 0..100 {
        let text = format!("Message number {i}. It carries a sentence or two of speech.");
        segments += orpheus_test_support::relay_segments(&text).len() as u64;
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
        after.completed_bodies - before.completed_bodies == segments,
        "{} bodies for {segments} segments",
        after.completed_bodies - before.completed_bodies
    );
    Ok(())
}

pub async fn rapid_interrupt(fx: &Fixture) -> TestResult {
    let seed: u64 = 0x5EED_0002;
    println!("rapid_interrupt seed={seed:#x}");
    let mut rng = orpheus_test_support::rng(seed);
    let mut c = Client::connect(fx, "rapid-interrupt").await?;
    let (mut stopped, mut done) = (0, 0);
    for trial in 0..200 {
        let id = format!("t{trial}");
        c.speak(&id, &slow_text(), None).await?;
        tokio::time::sleep(Duration::from_millis(rng.u64(..250))).await;
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

pub async fn supersede(fx: &Fixture) -> TestResult {
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

pub async fn replace(fx: &Fixture) -> TestResult {
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
pub async fn no_new_requests(fx: &Fixture) -> TestResult {
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

pub async fn disconnect_releases_upstream(fx: &Fixture) -> TestResult {
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

pub async fn long_texts(fx: &Fixture) -> TestResult {
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
        let segments = orpheus_test_support::relay_segments(&text);
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

pub async fn many_sessions_at_once(fx: &Fixture) -> TestResult {
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
