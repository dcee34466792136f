//! Protocol v2 against real workerd: a listener that reports its play cursor, a link that drops
//! mid-message (or goes dark before the message's first audio) and resumes, flow control
//! holding a slow reader to the window, and what an `end` says was heard.

use std::time::Duration;

use orpheus_e2e::{
    check_bit_exact, ensure, Client, Fixture, Listener, TestResult, TEST_ORIGIN, TEST_SECRET,
};
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
    listener
        .speak_and_listen("m", &text, Duration::from_millis(1500))
        .await?;
    let stream = listener.stream.ok_or("no start")?;
    ensure!(listener.played() > 0, "something played before the drop");
    let played = listener.cut_and_resume(fx, "v2-resume", "m").await?;
    let end = listener.until_end("m", Duration::from_secs(60)).await?;
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

/// A link that goes dark right after a `speak` reached the relay, before the listener reported
/// anything on that message (its `start` and audio never arrive): the listener reported on an
/// earlier message, so the relay counts nothing of this one as delivered by the clock. The
/// message waits, is parked when the socket goes, and the resume (without a stream: its
/// `start` never came) plays it whole, `done`.
pub async fn v2_resume_of_a_message_whose_link_went_dark_at_once(fx: &Fixture) -> TestResult {
    let sid = "v2-dark";
    let mut first = Listener::connect(fx, sid, 4.0).await?;
    first.client.speak("a", &english(40), None).await?;
    let end = first.until_end("a", Duration::from_secs(30)).await?;
    ensure!(heard_of(&end)?.0 == EndReason::Done, "{end:?}");
    // The next message goes out, and nothing more is read or reported on this socket, for
    // longer than its audio lasts: the clock would say it all played.
    let text = english(60);
    let audio = orpheus_e2e::expected_pcm(&text).len() as f64 / 2.0 / 24_000.0;
    first.client.speak("b", &text, None).await?;
    tokio::time::sleep(Duration::from_secs_f64(audio + 3.0)).await;
    first.client.cut().await;
    let mut resumed = Listener::connect(fx, sid, 4.0).await?;
    resumed.client.resume("b", None, 0).await?;
    let end = resumed.until_end("b", Duration::from_secs(60)).await?;
    let (reason, samples, _) = heard_of(&end)?;
    ensure!(
        reason == EndReason::Done && samples == resumed.received(),
        "resumed: {end:?}, {} samples received",
        resumed.received()
    );
    check_bit_exact(&resumed.pcm, &text)?;
    println!(
        "a message whose link went dark at once: resumed whole, done, bit-exact ({audio:.1} s)"
    );
    Ok(())
}

/// A listener at half speed: the relay never runs more than the window ahead of its reports;
/// a stop gets its `end` within a round trip, and the `end` says what was heard.
pub async fn v2_flow_control_and_heard_text(fx: &Fixture) -> TestResult {
    let text = english(400);
    let mut listener = Listener::connect(fx, "v2-flow", 0.5).await?;
    listener
        .speak_and_listen("m", &text, Duration::from_secs(6))
        .await?;
    // Allowance for the frame in flight when a report arrives.
    ensure!(
        listener.most_ahead <= WINDOW_SAMPLES + 8_192,
        "received {} samples beyond the last report",
        listener.most_ahead
    );
    let (end, stop_to_end) = listener.stop_and_wait("m", Duration::from_secs(10)).await?;
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

/// STOP on a link slower than real time (0.75x, 25 ms each way): with v1 the `end` waits behind
/// every second of audio the relay pushed into the link; with v2, whose listener reports on
/// receipt as the player does, the relay paces the link and the `end` usually waits behind a
/// few milliseconds of audio. No upstream request starts once the `end` is out. Prints both
/// (`scripts/bench listener` measures the p99 over 40 stops).
pub async fn v2_stop_on_a_slow_link(fx: &Fixture) -> TestResult {
    let proxy = fx.slow_link().await?;
    let text = english(200);
    let mut stop_to_end = [Vec::new(), Vec::new()];
    for (v2, runs) in [(false, 1), (true, 3)] {
        for run in 0..runs {
            let sid = format!("slow-v{}-{run}", 1 + u8::from(v2));
            let url = format!("ws://{}/v1/sessions/{sid}/ws", proxy.addr());
            let mut listener = Listener::connect_at(&url, &sid, 1.0, v2).await?;
            listener
                .speak_and_listen("m", &text, Duration::from_secs(2))
                .await?;
            let (end, elapsed) = listener.stop_and_wait("m", Duration::from_secs(40)).await?;
            stop_to_end[usize::from(v2)].push(elapsed.as_millis());
            // A v1 relay may have sent everything, and ended it `done`, long before: that
            // `end` then answers the stop, behind the audio still in the link.
            let answered = match end {
                ServerMessage::End { reason, .. } => {
                    reason == EndReason::Stopped || (!v2 && reason == EndReason::Done)
                }
                _ => false,
            };
            ensure!(answered, "{end:?}");
            let requests = fx.upstream.snapshot().requests;
            tokio::time::sleep(Duration::from_millis(300)).await;
            ensure!(
                fx.upstream.snapshot().requests == requests,
                "an upstream request started after the end"
            );
            listener.client.close().await;
        }
    }
    let [v1, v2] = &stop_to_end;
    println!("stop to end on a 0.75x link, 25 ms each way: v1 {v1:?} ms, v2 {v2:?} ms");
    ensure!(
        v2.iter().max() < v1.iter().min(),
        "v2 should answer a stop sooner than v1: {v1:?} vs {v2:?}"
    );
    // Paced, the `end` comes within about a round trip (50 ms) plus 50 ms. Before the link is
    // timed it waits behind up to 375 ms of audio (500 ms of this link's time), and some stops
    // (most likely after a noisy rate sample made the link look faster than real time) wait
    // behind what flow control alone lets in (about 1.4 s here): never behind the message.
    ensure!(
        v2.iter().all(|&ms| ms < 2000),
        "a stop on a slow link is answered within two seconds: {v2:?}"
    );
    Ok(())
}

/// The relay crashes mid-message (wrangler and workerd killed, then started again on the same
/// stored state): within the grace period the listener reconnects and resumes; the restarted
/// object restarts the message at the segment boundary at or before the cursor, in a new
/// stream, and it ends `done` with the upstream's audio for the whole text.
pub async fn v2_resume_after_a_relay_restart(fx: &Fixture) -> TestResult {
    let vars = [("ALLOWED_ORIGINS", TEST_ORIGIN)];
    let mut relay = fx.extra_relay("restart-resume", &vars, Some(TEST_SECRET))?;
    let (sid, text) = ("restart-resume", english(600));
    let url = relay.session_url(sid);
    let mut listener = Listener::connect_at(&url, sid, 4.0, true).await?;
    listener
        .speak_and_listen("m", &text, Duration::from_millis(2500))
        .await?;
    let before = listener.stream.ok_or("no start")?;
    ensure!(listener.played() > 0, "something played before the crash");
    let down = relay.crash_and_restart().await?;
    listener.client = Client::connect_at(&url, sid, true).await?;
    let played = listener.resume("m").await?;
    let end = listener.until_end("m", Duration::from_secs(60)).await?;
    let (reason, _, chars) = heard_of(&end)?;
    ensure!(
        reason == EndReason::Done && chars == text.chars().count() as u64,
        "after the restart: {end:?}"
    );
    let after = listener.stream.ok_or("no stream")?;
    ensure!(after != before, "the restart should begin a new stream");
    check_bit_exact(&listener.pcm, &text)?;
    println!(
        "restarted {:.1} s after the crash, resumed at sample {played} in stream {after}: done, bit-exact",
        down.as_secs_f64()
    );
    Ok(())
}
