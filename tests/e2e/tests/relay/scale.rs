//! The load benchmarks in their short forms, on the main relay: `scripts/bench scale` (a dozen
//! sessions speaking replies one after another), `scripts/bench burst` (twenty sessions
//! connecting and speaking in the same second), `scripts/bench transcode` (four HTTP clients
//! asking for PCM, then MP3) and `scripts/bench opus` (four listeners asking for PCM, then
//! Opus); every message ends `done` or every answer is read, and the figures
//! the benchmarks report are printed, not judged: timing belongs to the benchmarks.

use std::time::Duration;

use orpheus_e2e::scale::{run_burst, run_http_step, run_step, Step};
use orpheus_e2e::{ensure, percentile, Fixture, TestResult};
use orpheus_protocol::AudioEncoding;

pub async fn scale_short(fx: &Fixture) -> TestResult {
    let step = Step {
        sessions: 12,
        duration: Duration::from_secs(8),
        seed: 0x5CA1E,
        encoding: AudioEncoding::Pcm,
    };
    let f = run_step(&fx.relay, step).await?;
    println!(
        "scale_short: {} sessions, {} messages done, {:.0} s of audio in {} frames; lateness \
         p50 {:.1} ms, p99 {:.1} ms; workerd {:.1} ms CPU per second of audio, {} MB",
        f.sessions,
        f.done,
        f.audio_s,
        f.frames,
        f.late_p50_ms,
        f.late_p99_ms,
        f.cpu_ms_per_audio_s,
        f.rss / 1_000_000
    );
    ensure!(
        f.failed == 0,
        "messages that did not end done: {:?}",
        f.failures
    );
    ensure!(
        f.done >= step.sessions as u64,
        "only {} messages for {} sessions",
        f.done,
        step.sessions
    );
    ensure!(
        f.audio_s > 0.0 && f.frames > 0 && f.late_p99_ms.is_finite(),
        "no audio measured: {f:?}"
    );
    ensure!(
        f.cpu_ms_per_audio_s > 0.0 && f.rss > 0,
        "workerd was not measured: {f:?}"
    );
    Ok(())
}

pub async fn burst_short(fx: &Fixture) -> TestResult {
    const SESSIONS: usize = 20;
    let text = "A burst of sessions, all speaking in the same second.";
    let b = run_burst(&fx.relay, SESSIONS, text, 0xB0257).await?;
    ensure!(
        b.done == SESSIONS as u64 && b.failures.is_empty(),
        "{} of {SESSIONS} done: {:?}",
        b.done,
        b.failures
    );
    ensure!(
        b.connect_ms.len() == SESSIONS && b.first_audio_ms.len() == SESSIONS,
        "not every session was measured: {} connected, {} heard audio",
        b.connect_ms.len(),
        b.first_audio_ms.len()
    );
    ensure!(!b.lateness_ms.is_empty(), "no frame measured");
    let p99 = |ms: &[f64]| percentile(ms, 99.0);
    println!(
        "burst_short: {SESSIONS} sessions in one second, {} done; connect p99 {:.0} ms, first \
         audio p99 {:.0} ms, lateness p99 {:.1} ms",
        b.done,
        p99(&b.connect_ms),
        p99(&b.first_audio_ms),
        p99(&b.lateness_ms)
    );
    Ok(())
}

pub async fn transcode_short(fx: &Fixture) -> TestResult {
    for format in ["pcm", "mp3"] {
        let step = Step {
            sessions: 4,
            duration: Duration::from_secs(4),
            seed: 0x7C0DE,
            encoding: AudioEncoding::Pcm,
        };
        let f = run_http_step(&fx.relay, &fx.upstream, step, format).await?;
        ensure!(
            f.failures.is_empty() && f.answered >= step.sessions as u64,
            "{format}: {} answered, failures {:?}",
            f.answered,
            f.failures
        );
        ensure!(
            f.audio_s > 0.0 && f.bytes > 0 && f.cpu_ms_per_audio_s > 0.0,
            "{format}: nothing measured: {f:?}"
        );
        println!(
            "transcode_short: {format}, {} answers, {:.0} s of audio, {:.0} bytes and {:.1} ms of \
             workerd CPU per second of audio",
            f.answered,
            f.audio_s,
            f.bytes as f64 / f.audio_s,
            f.cpu_ms_per_audio_s
        );
    }
    Ok(())
}

pub async fn opus_short(fx: &Fixture) -> TestResult {
    for encoding in [AudioEncoding::Pcm, AudioEncoding::Opus] {
        let step = Step {
            sessions: 4,
            duration: Duration::from_secs(6),
            seed: 0x0905,
            encoding,
        };
        let f = run_step(&fx.relay, step).await?;
        let name = encoding.as_str();
        ensure!(
            f.failed == 0 && f.done >= step.sessions as u64,
            "{name}: {} done, failures {:?}",
            f.done,
            f.failures
        );
        println!(
            "opus_short: {name}, {} messages done, {:.0} s of audio, {:.0} bytes and {:.1} ms of \
             workerd CPU per second of audio",
            f.done, f.audio_s, f.bytes_per_audio_s, f.cpu_ms_per_audio_s
        );
        // Opus is what the listener asked for: a ninth of PCM's bytes, give or take.
        let compressed = f.bytes_per_audio_s < 12_000.0;
        ensure!(
            compressed == (encoding == AudioEncoding::Opus),
            "{name}: {:.0} bytes per second of audio",
            f.bytes_per_audio_s
        );
    }
    Ok(())
}
