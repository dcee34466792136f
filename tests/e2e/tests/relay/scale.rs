//! The load benchmark (`scripts/bench scale`) in its short form: a dozen sessions speaking
//! replies one after another on the main relay, every message ending `done`, and the figures
//! the benchmark reports (printed, not judged: timing belongs to the benchmark).

use std::time::Duration;

use orpheus_e2e::scale::{run_step, Step};
use orpheus_e2e::{ensure, Fixture, TestResult};

pub async fn scale_short(fx: &Fixture) -> TestResult {
    let step = Step {
        sessions: 12,
        duration: Duration::from_secs(8),
        seed: 0x5CA1E,
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
