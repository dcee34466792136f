//! The player in real headless Chromium, with a real AudioContext and its AudioWorklet engine,
//! against the real relay, through the demo page and the orpheus-player package.

use std::path::Path;

use orpheus_e2e::{
    compare_playback, decode_capture, ensure, expected_playback, Fixture, SampleApp, TestResult,
};
use serde_json::Value;

use crate::texts::*;

/// A capture played the text exactly as the player's engine renders it at the capture's rate
/// (the source itself at 24 kHz): nothing lost, nothing repeated, no seam, the pitch right.
fn played_exactly(run: &Value, text: &str, what: &str) -> TestResult {
    let rate = run["rate"].as_u64().unwrap_or(0) as u32;
    let captured = decode_capture(run)?;
    let (offset, worst) = compare_playback(&captured, &expected_playback(text, rate))
        .map_err(|e| format!("{what}: {e}"))?;
    ensure!(
        worst <= 1e-6,
        "{what}: played audio differs from the source by up to {worst} ({} quanta with a \
         repeated frame)",
        run["repeats"]
    );
    // Quanta the capture placed by their order, their context frame not having advanced.
    let repeats = run["repeats"].as_u64().unwrap_or(0);
    println!(
        "{what}: {} samples at {rate} Hz played exactly (offset {offset}, largest difference \
         {worst}; {repeats} quanta with a repeated frame)",
        captured.len() - offset
    );
    Ok(())
}

/// The upstream requests that spoke `text`: the last run of consecutive requests whose texts
/// make it up, in order (what a written message was cut into).
fn segments_of(inputs: &[String], text: &str) -> TestResult<Vec<String>> {
    let squash = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let whole = squash(text);
    for start in (0..inputs.len()).rev() {
        let mut joined = String::new();
        for end in start..inputs.len() {
            joined.push_str(&squash(&inputs[end]));
            if joined == whole {
                return Ok(inputs[start..=end].to_vec());
            }
            if !whole.starts_with(&joined) {
                break;
            }
        }
    }
    Err(format!("no run of upstream requests spoke {text:?}"))
}

/// The player states a run went through, in order.
fn states_of(run: &Value) -> Vec<&str> {
    run["states"]
        .as_array()
        .map(|states| states.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn done_with_all(result: &Value, text: &str, what: &str) -> TestResult {
    let want = orpheus_e2e::expected_pcm(text).len() as u64 / 2;
    ensure!(
        result["reason"] == "done"
            && result["samples"].as_u64() == Some(want)
            && result["played"].as_u64() == Some(want),
        "{what}: {result}, want done with {want} samples played"
    );
    Ok(())
}

/// The player as an app ships it: the packed tarball installed into the sample app with npm,
/// bundled with esbuild, served by the app's own server (which mints tickets), and played
/// through in Chromium.
pub async fn browser_player(fx: &Fixture) -> TestResult {
    let relay = fx.extra_relay(
        "browser",
        &[("ORPHEUS_DEV_MODE", "1")],
        Some("browser-secret"),
    )?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = orpheus_e2e::Relay::log_dir(&root);
    let relay_ws = relay.url.replacen("http", "ws", 1);
    let app = SampleApp::start(&out.join("sample-app"), &relay_ws, "browser-secret").await?;
    let files = &app.build["files"];
    ensure!(
        files["demo.js"].as_u64().is_some_and(|n| n > 0)
            && files["orpheus_player_dsp.wasm"]
                .as_u64()
                .is_some_and(|n| n < 16 * 1024),
        "the bundle: {files}"
    );
    let texts = serde_json::json!({
        "first": "Hello there, this is the first message.",
        "second": "And this is the second one.",
        "long": english(300),
        "capture": "[[fault:chunk=1001;gap_ms=2]] Split at odd sizes, played without a gap.",
        "jitter": "[[fault:chunk=4800;gap_ms=40;jitter_ms=60]] Jitter up to sixty milliseconds leaves no gap.",
        "tone": "[[fault:chunk=3333;gap_ms=3]] Resampled to the device rate, the pitch stays right and no seam shows.",
        // Slower than real time: still streaming whenever something cuts in.
        "slow": "[[fault:chunk=4800;gap_ms=150]] A message that the replacement cuts off while it still streams.",
        "written": "Written as a model streams it, piece by piece. It plays without a gap, exactly once.",
    });
    let text = |key: &str| texts[key].as_str().unwrap().to_owned();
    let out_dir = out.to_string_lossy();
    let texts_json = texts.to_string();
    let report =
        orpheus_e2e::run_browser_script("player.mjs", &[&app.url, &out_dir, &texts_json]).await?;

    // Second message plays, and both complete with every sample played.
    let second = &report["second"];
    done_with_all(&second["first"], &text("first"), "first")?;
    done_with_all(&second["second"], &text("second"), "second")?;
    ensure!(second["state"] == "idle", "after two messages: {second}");
    ensure!(
        second["configured"]["lexicon"] == 2 && second["cleared"]["lexicon"] == 0,
        "the lexicon set and cleared: {second}"
    );

    // 100 consecutive messages: every promise settles once.
    let hundred = &report["hundred"];
    let reasons = hundred["reasons"].as_array().ok_or("no reasons")?;
    ensure!(
        reasons.len() == 100 && reasons.iter().all(|r| r == "done"),
        "100 messages: {reasons:?}"
    );
    let ids: std::collections::BTreeSet<String> = hundred["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    ensure!(
        ids.len() == 100 && hundred["state"] == "idle",
        "each message settled once: {hundred}"
    );

    // Gapless and exact: what the page played is the source, sample for sample.
    for key in ["capture", "jitter"] {
        let run = &report[key];
        ensure!(run["rate"] == 24000, "{key}: context rate {}", run["rate"]);
        done_with_all(&run["result"], &text(key), key)?;
        ensure!(
            run["result"]["underruns"] == 0,
            "{key}: underruns {}",
            run["result"]["underruns"]
        );
        played_exactly(run, &text(key), key)?;
    }

    // Written as a model streams it (speakStream): one message, done, gapless, and exactly
    // the upstream's audio for the segments it was asked for.
    let written = &report["written"];
    let segments = segments_of(&fx.upstream.inputs(), &text("written"))?;
    let want = orpheus_e2e::pcm_of_segments(&segments);
    ensure!(
        written["result"]["reason"] == "done"
            && written["result"]["played"].as_u64() == Some(want.len() as u64 / 2)
            && written["result"]["underruns"] == 0
            && written["result"]["heardText"] == text("written"),
        "written: {}",
        written["result"]
    );
    let rate = written["rate"].as_u64().unwrap_or(0) as u32;
    let (_, worst) = compare_playback(
        &decode_capture(written)?,
        &orpheus_e2e::playback_of(&want, rate),
    )?;
    ensure!(
        worst <= 1e-6,
        "written: played audio differs by up to {worst}"
    );
    println!("written: segments {segments:?} played exactly");

    // Rapid interrupt: after each stop, silence within the fade and the message's latency;
    // idle at once, every time.
    let rapid = &report["rapid"];
    let rate = rapid["rate"].as_f64().unwrap_or(24_000.0);
    let trials = rapid["trials"].as_array().ok_or("no trials")?;
    let stopped = trials.iter().filter(|t| t["reason"] == "stopped").count();
    for (i, t) in trials.iter().enumerate() {
        ensure!(
            t["reason"] == "stopped" || t["reason"] == "done",
            "trial {i}: {t}"
        );
        ensure!(
            t["stateAtStop"] == "idle" && t["stateAfter"] == "idle",
            "trial {i}: {t}"
        );
        let from = t["stopAt"].as_f64().unwrap_or(0.0) + 0.05;
        let to = t["quietUntil"].as_f64().unwrap_or(0.0);
        let loudest = orpheus_e2e::loudest_between(&rapid["tap"], rate, from, to)?;
        ensure!(
            loudest == 0.0,
            "trial {i}: audio played after the stop ({loudest}): {t}"
        );
    }
    ensure!(
        stopped > trials.len() / 2,
        "stops should land mid-message ({stopped} of {})",
        trials.len()
    );
    let heard: u64 = trials.iter().filter_map(|t| t["played"].as_u64()).sum();
    ensure!(
        heard > 0,
        "the stopped messages played nothing at all: {trials:?}"
    );

    // Suspended mid-message and resumed: its own state, and the message goes on exactly.
    let suspended = &report["suspended"];
    let states = states_of(suspended);
    ensure!(
        states.contains(&"suspended"),
        "suspension not reported: {states:?}"
    );
    done_with_all(&suspended["result"], &text("capture"), "suspended")?;
    played_exactly(
        &serde_json::json!({"rate": 24000, "samples": suspended["samples"]}),
        &text("capture"),
        "suspended and resumed",
    )?;

    // The link dropped after the relay's end: the audio it had plays out, done.
    let dropped = &report["dropAfterEnd"];
    ensure!(
        dropped["cut"].as_u64() >= Some(1)
            && dropped["drops"][0]["fatal"] == false
            && dropped["drops"][0]["code"] == 1006,
        "the link was not cut: {dropped}"
    );
    done_with_all(&dropped["result"], &text("capture"), "drop after end")?;
    let played_after_drop =
        dropped["endedAt"].as_f64().unwrap_or(0.0) - dropped["droppedAt"].as_f64().unwrap_or(0.0);
    ensure!(
        played_after_drop > 1.0,
        "the drop came too late to test anything: {dropped}"
    );

    // connect() is idempotent; what the relay would refuse is refused unsent.
    let players = &report["players"];
    ensure!(
        players["idempotent"]["asked"] == 1 && players["idempotent"]["state"] == "idle",
        "four connect() calls: {}",
        players["idempotent"]
    );
    let too_long = &players["tooLong"];
    ensure!(
        too_long["result"]["error"]["code"] == "text_too_long"
            && too_long["result"]["totalSeconds"] == 0.0,
        "a text over the limit: {too_long}"
    );
    ensure!(
        !relay.log().contains("code=text_too_long"),
        "the relay saw the text the player should have refused"
    );

    // Replaced by another connection: settles replaced, the reason surfaced, no retry.
    let replaced = &players["replaced"];
    ensure!(
        replaced["result"]["reason"] == "replaced"
            && replaced["errors"][0]["code"] == 4000
            && replaced["errors"][0]["fatal"] == true
            && replaced["asked"] == 1
            && replaced["state"] == "closed",
        "replaced: {replaced}"
    );
    // A refused ticket: one attempt, the refusal surfaced.
    let refused = &players["refused"];
    ensure!(
        refused["tries"] == 1
            && refused["refusals"][0]["code"] == 4401
            && refused["refusals"][0]["fatal"] == true
            && refused["state"] == "closed",
        "refused: {refused}"
    );

    // A 48 kHz context: resampled in the engine, exactly as the Rust engine renders it (so no
    // seam, the pitch right).
    let rate48k = &report["rate48k"];
    ensure!(rate48k["rate"] == 48000, "{rate48k}");
    done_with_all(&rate48k["result"], &text("tone"), "48 kHz")?;
    played_exactly(rate48k, &text("tone"), "48 kHz")?;
    // The device's own rate when no other is allowed (44.1 or 48 kHz: resampled either way).
    let fallback = &report["fallback"];
    ensure!(
        fallback["rate"] != 24000
            && fallback["pageErrors"]
                .as_array()
                .is_some_and(|e| e.is_empty()),
        "no rate but the device's allowed: {}",
        fallback["rate"]
    );
    done_with_all(&fallback["result"], &text("first"), "fallback")?;
    played_exactly(fallback, &text("first"), "fallback to the device rate")?;

    // The engine never reports: the safety timer completes the message after its audio.
    let no_reports = &report["noReports"];
    ensure!(
        no_reports["result"]["reason"] == "done" && no_reports["state"] == "idle",
        "without engine reports: {no_reports}"
    );
    let audio_s = no_reports["result"]["samples"].as_f64().unwrap_or(0.0) / 24_000.0;
    let total_s = no_reports["result"]["totalSeconds"].as_f64().unwrap_or(0.0);
    ensure!(
        total_s >= audio_s + 0.5,
        "completed after {total_s} s for {audio_s} s of audio: did the engine report after all?"
    );

    // Protocol v2: the socket's Worker answers frames on receipt (the relay paces by them);
    // the core's own reports are periodic.
    let receipts = &report["receipts"];
    ensure!(
        receipts["result"]["reason"] == "done"
            && receipts["sent"]["receipts"].as_u64().is_some_and(|n| n > 0)
            && receipts["sent"]["periodic"].as_u64().is_some_and(|n| n > 0),
        "played on receipt and periodic: {receipts}"
    );
    println!(
        "protocol v2 reports from the socket's Worker: {} on receipt, {} periodic",
        receipts["sent"]["receipts"], receipts["sent"]["periodic"]
    );

    // Suspended context: blocked-by-autoplay, never "speaking", until a gesture resumes it.
    let blocked = &report["blocked"];
    let states = states_of(blocked);
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

    // The demo page in its speaking state, showing its figures.
    let shot = &report["screenshot"];
    ensure!(
        shot["badge"] == "speaking" && shot["played"] != "–" && shot["level"] != "0%",
        "screenshot taken in state {shot}"
    );
    let png = std::fs::read(shot["path"].as_str().unwrap()).map_err(|e| e.to_string())?;
    ensure!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot is not a real PNG"
    );
    Ok(())
}
