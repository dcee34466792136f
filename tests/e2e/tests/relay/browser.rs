//! The player in real headless Chromium against the real relay.

use std::path::Path;

use orpheus_e2e::{ensure, Fixture, TestResult};

use crate::texts::*;

/// The player in real headless Chromium against the real relay, through the demo page.
pub async fn browser_player(fx: &Fixture) -> TestResult {
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
