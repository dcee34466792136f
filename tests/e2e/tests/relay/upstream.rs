//! The upstream failing in every way Groq can, and the one retry.

use std::time::{Duration, Instant};

use orpheus_e2e::{check_bit_exact, ensure, Client, Fixture, TestResult};
use orpheus_protocol::{EndReason, ServerMessage};
use orpheus_test_support::relay_segments;

pub async fn upstream_faults(fx: &Fixture) -> TestResult {
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
        // Any 2xx is a body to read: audio under 201, and no audio at once under 204.
        ("ok_status=201", None, None),
        ("ok_status=204", Some("upstream_bad_audio"), None),
    ];
    for (i, (fault, code, retry)) in cases.iter().enumerate() {
        // One segment, so that every request counted is this one's.
        let text = format!("F{i} [[fault:{fault}]]");
        ensure!(relay_segments(&text).len() == 1, "{text:?} is one segment");
        let before = fx.upstream.snapshot().requests;
        let started = Instant::now();
        let got = c
            .say(&format!("f{i}"), &text, None)
            .await
            .map_err(|e| format!("{fault}: {e}"))?;
        if fault.starts_with("ok_status") {
            ensure!(
                started.elapsed() < Duration::from_millis(orpheus_e2e::UPSTREAM_TIMEOUT_MS),
                "{fault}: ended only after {:?}, as if by a timeout",
                started.elapsed()
            );
        }
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

/// A huge error page is not read whole: the relay reads what it needs for `error.code` and
/// closes the response.
pub async fn upstream_error_body_is_capped(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "error-body").await?;
    let before = fx.upstream.snapshot().cut_short;
    let text = "Huge error [[fault:status=400;code=model_terms_required;pad_error_kb=32768]] here.";
    let got = c.say("e", text, None).await?;
    ensure!(
        got.error_code().as_deref() == Some("terms_required"),
        "the code is still read: {:?}",
        got.end
    );
    fx.upstream_quiet(Duration::from_secs(2)).await?;
    ensure!(
        fx.upstream.snapshot().cut_short == before + 1,
        "the 32 MiB error body was read to its end"
    );
    Ok(())
}

/// 429 and 503: one retry, only before any audio, honouring retry-after; never a loop.
pub async fn upstream_retry(fx: &Fixture) -> TestResult {
    let mut c = Client::connect(fx, "retry").await?;
    // (fault, error code and retry_after_s when the retry fails too, upstream requests)
    type Case<'a> = (&'a str, Option<(&'a str, u32)>, u64);
    let cases: &[Case] = &[
        ("status=429;retry_after=1;once", None, 2),
        ("status=503;once", None, 2),
        ("status=429;retry_after=2", Some(("rate_limited", 2)), 2),
        (
            "status=503;retry_after=1",
            Some(("upstream_unavailable", 1)),
            2,
        ),
        // No retry-after at all: the end still says when to try again.
        ("status=503", Some(("upstream_unavailable", 1)), 2),
    ];
    for (i, (fault, failure, requests)) in cases.iter().enumerate() {
        let text = format!("R{i} [[fault:{fault}]]");
        ensure!(relay_segments(&text).len() == 1, "{text:?} is one segment");
        let before = fx.upstream.snapshot().requests;
        let started = Instant::now();
        let got = c.say(&format!("r{i}"), &text, None).await?;
        let waited = started.elapsed();
        match failure {
            None => {
                ensure!(
                    got.reason() == Some(EndReason::Done),
                    "{fault}: {:?}",
                    got.end
                );
                check_bit_exact(&got.pcm, &text)?;
            }
            Some((code, retry_after)) => {
                let Some(ServerMessage::End { error: Some(e), .. }) = &got.end else {
                    return Err(format!("{fault}: {:?}", got.end));
                };
                ensure!(
                    e.code.as_str() == *code && e.retry_after_s == Some(*retry_after),
                    "{fault}: {e:?}"
                );
            }
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
    let text = "Audio first, then a refusal. [[fault:delay_ms=400;status=429;retry_after=1;once]] \
        The rest is never spoken.";
    let segments = relay_segments(text);
    ensure!(
        segments.len() == 2 && segments[1].contains("[[fault:"),
        "two segments, the fault in the second: {segments:?}"
    );
    let before = fx.upstream.snapshot().requests;
    let got = c.say("after-audio", text, None).await?;
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
