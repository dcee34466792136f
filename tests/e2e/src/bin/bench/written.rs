//! `bench written`: a reply written in small pieces (protocol v2 streaming text): first audio
//! after its first sentence's last character, against the same sentence sent as a whole `speak`.

use std::time::{Duration, Instant};

use orpheus_e2e::{Fixture, Listener, TestResult, AGENT_REPLY, AGENT_REPLY_FIRST};

use crate::summary;

const WRITTEN_RUNS: usize = 8;

/// First audio of a reply written in pieces of 1 to 5 characters every 20 to 50 ms, counted
/// from the append that completed its first sentence, against that sentence as a whole `speak`
/// (from the `speak`), in milliseconds.
pub async fn written_figures(fx: &Fixture) -> TestResult {
    let (mut whole, mut written) = (vec![], vec![]);
    for run in 0..WRITTEN_RUNS {
        let mut l = Listener::connect(fx, &format!("bench-whole-{run}"), 8.0).await?;
        let sent = Instant::now();
        l.client.speak("w", AGENT_REPLY_FIRST, None).await?;
        l.listen("w", Duration::from_secs(20)).await?;
        let first = l.first_audio_at.ok_or("no audio for the whole sentence")?;
        whole.push((first - sent).as_secs_f64() * 1000.0);
        l.client.close().await;

        let mut l = Listener::connect(fx, &format!("bench-written-{run}"), 8.0).await?;
        let pieces = l.write("s", AGENT_REPLY, run as u64).await?;
        let sentence = AGENT_REPLY_FIRST.chars().count();
        let (_, completed) = pieces
            .iter()
            .find(|(chars, _)| *chars >= sentence)
            .ok_or("the sentence was never written")?;
        l.listen("s", Duration::from_secs(20)).await?;
        let first = l.first_audio_at.ok_or("no audio for the written reply")?;
        written.push(first.saturating_duration_since(*completed).as_secs_f64() * 1000.0);
        l.client.close().await;
    }
    let (whole50, whole99) = summary(whole);
    let (written50, written99) = summary(written);
    println!(
        "first audio of a reply written 1-5 characters every 20-50 ms, {WRITTEN_RUNS} runs: \
         {written50:.0} ms p50 / {written99:.0} ms p99 after its first sentence's last character; \
         the same sentence as a whole speak {whole50:.0} ms p50 / {whole99:.0} ms p99"
    );
    Ok(())
}
