//! Protocol v2 against real workerd: a listener that reports its play cursor, a link that drops
//! mid-message and resumes, flow control holding a slow reader to the window, and what an
//! `end` says was heard.

use std::time::{Duration, Instant};

use orpheus_e2e::{check_bit_exact, ensure, Fixture, Listener, TestResult};
use orpheus_protocol::{EndReason, ServerMessage};

use crate::texts::english;

const WINDOW_SAMPLES: u64 = 48_000;

fn heard_of(end: &ServerMessage) -> TestResult<(EndReason, u64, u64)> {
    match end {
        ServerMessage::End {
            reason,
            heard: Some(heard),
            metrics: Some(_),
            ..
        } => Ok((*reason, heard.samples, heard.chars)),
        other => Err(format!("a v2 end has heard and metrics: {other:?}")),
    }
}

/// A link cut mid-message: the listener reconnects, resumes at its cursor, and hears the rest,
/// each sample once (what the relay sends again is checked to be the same), ending `done`.
pub async fn v2_resume_after_a_dropped_link(fx: &Fixture) -> TestResult {
    let text = english(160);
    let mut listener = Listener::connect(fx, "v2-resume", 2.0).await?;
    listener.client.speak("m", &text, None).await?;
    ensure!(
        listener
            .listen("m", Duration::from_millis(1500))
            .await?
            .is_none(),
        "still speaking when the link drops"
    );
    let stream = listener.stream.ok_or("no start")?;
    ensure!(listener.played() > 0, "something played before the drop");
    let played = listener.cut_and_resume(fx, "v2-resume", "m").await?;
    let end = listener
        .listen("m", Duration::from_secs(60))
        .await?
        .ok_or("no end after the resume")?;
    let (reason, _, chars) = heard_of(&end)?;
    ensure!(
        reason == EndReason::Done,
        "resumed message ended {reason:?}"
    );
    ensure!(
        chars == text.chars().count() as u64,
        "done: all heard ({chars})"
    );
    check_bit_exact(&listener.pcm, &text)?;
    println!("resumed at sample {played} of stream {stream}: done, bit-exact");
    Ok(())
}

/// A listener at half speed: the relay never runs more than the window ahead of its reports;
/// a stop gets its `end` within a round trip, and the `end` says what was heard.
pub async fn v2_flow_control_and_heard_text(fx: &Fixture) -> TestResult {
    let text = english(400);
    let mut listener = Listener::connect(fx, "v2-flow", 0.5).await?;
    listener.client.speak("m", &text, None).await?;
    ensure!(
        listener
            .listen("m", Duration::from_secs(6))
            .await?
            .is_none(),
        "a half-speed listener is still listening"
    );
    // Allowance for the frame in flight when a report arrives.
    ensure!(
        listener.most_ahead <= WINDOW_SAMPLES + 8_192,
        "received {} samples beyond the last report",
        listener.most_ahead
    );
    listener.report().await?;
    let stopped_at = Instant::now();
    listener.client.stop("m").await?;
    let end = listener
        .listen("m", Duration::from_secs(10))
        .await?
        .ok_or("no end after stop")?;
    let stop_to_end = stopped_at.elapsed();
    let (reason, samples, chars) = heard_of(&end)?;
    ensure!(reason == EndReason::Stopped, "ended {reason:?}");
    ensure!(
        samples == listener.reported,
        "heard {samples}, reported {}",
        listener.reported
    );
    let heard: String = text.chars().take(chars as usize).collect();
    let rest = &text[heard.len()..];
    ensure!(
        chars > 0 && rest.starts_with(' ') && !heard.ends_with(' '),
        "heard text ends on a word: {heard:?} | {rest:?}"
    );
    println!(
        "half speed: most ahead {} ms; stop to end {} ms; heard {chars} of {} chars",
        listener.most_ahead * 1000 / 24_000,
        stop_to_end.as_millis(),
        text.chars().count()
    );
    ensure!(
        stop_to_end < Duration::from_secs(1),
        "stop to end {stop_to_end:?}"
    );
    Ok(())
}
