//! The load modes, each taking minutes (docs/scaling.md): `scale`, the ramp (frame lateness,
//! CPU per second of audio and memory of one workerd for growing numbers of sessions), `burst`,
//! many sessions connecting and speaking in the same second, `transcode`, what the HTTP
//! endpoint's answers cost in each format, `opus`, what a WebSocket listener's Opus costs,
//! `soak`, workerd's memory over a long run, and `profile`, a CPU profile of workerd under
//! load, summed up by function.

use std::path::Path;
use std::time::Duration;

use groq_local::Config as UpstreamConfig;
use orpheus_e2e::{ensure, percentile, Fixture, TestResult};
use orpheus_protocol::AudioEncoding;

use crate::{summary, text_of, MS_PER_CHAR};

/// The fixture and relay the load modes run on: the upstream paced like Groq (first byte after
/// generation, then twice real time) and the relay with production's upstream timeouts, not the
/// tests' short ones (under load the upstream's first byte comes late, as Groq's does).
fn load_relay(root: &Path) -> TestResult<(Fixture, orpheus_e2e::Relay)> {
    let upstream = UpstreamConfig {
        ms_per_char: MS_PER_CHAR,
        fault: groq_local::Fault {
            // 16 KiB chunks are 341 ms of audio.
            gap_ms: 170,
            ..Default::default()
        },
        ..Fixture::test_upstream()
    };
    let fixture = Fixture::start(root, upstream)?;
    let relay = fixture.extra_relay(
        "scale",
        &[
            ("ALLOWED_ORIGINS", orpheus_e2e::TEST_ORIGIN),
            ("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", "20000"),
            ("UPSTREAM_STALL_TIMEOUT_MS", "10000"),
        ],
        Some(orpheus_e2e::TEST_SECRET),
    )?;
    Ok((fixture, relay))
}

/// One step of `sessions` speaking for `seconds` on `relay`, their audio asked for as
/// `encoding`.
fn load_step(
    fixture: &Fixture,
    relay: &orpheus_e2e::Relay,
    (sessions, seconds): (usize, u64),
    seed: u64,
    encoding: AudioEncoding,
) -> TestResult<orpheus_e2e::scale::Figures> {
    let step = orpheus_e2e::scale::Step {
        sessions,
        duration: Duration::from_secs(seconds),
        seed,
        encoding,
    };
    fixture
        .runtime
        .block_on(orpheus_e2e::scale::run_step(relay, step))
}

/// The load ramp (`scale`): one step of `seconds` for each number of sessions in `ramp`. Prints
/// each step's figures and draws the ramp into docs/scale-ramp.svg.
pub fn scale(root: &Path, ramp: &[usize], seconds: u64) -> TestResult {
    let (fixture, relay) = load_relay(root)?;
    println!("load ramp: sessions speaking one to three sentences each, one after another, {seconds} s per step");
    println!("  sessions   done  failed   audio s   frames   late p50   late p99   workerd CPU/audio s   CPU share   workerd RSS");
    let mut figures = Vec::new();
    for (i, &sessions) in ramp.iter().enumerate() {
        let seed = 0x5CA1E + i as u64;
        let f = load_step(
            &fixture,
            &relay,
            (sessions, seconds),
            seed,
            AudioEncoding::Pcm,
        )?;
        println!(
            "  {:8} {:6} {:7} {:9.0} {:8} {:7.1} ms {:7.1} ms {:15.1} ms {:10.0}% {:10.0} MB",
            f.sessions,
            f.done,
            f.failed,
            f.audio_s,
            f.frames,
            f.late_p50_ms,
            f.late_p99_ms,
            f.cpu_ms_per_audio_s,
            f.cpu_share * 100.0,
            f.rss as f64 / 1e6
        );
        for (reason, count) in &f.failures {
            println!("           {count} ended {reason}");
        }
        figures.push(f);
    }
    let picture = root.join("docs/scale-ramp.svg");
    std::fs::write(&picture, orpheus_e2e::scale::ramp_svg(&figures)).map_err(|e| e.to_string())?;
    println!("  the ramp drawn in {}", picture.display());
    Ok(())
}

/// What a WebSocket listener's Opus costs (`opus`): `sessions` listeners as in the ramp,
/// `seconds` asking for PCM, then as many for Opus (which the encoder Worker codes, behind its
/// service binding), in turn, twice, on one relay: workerd's CPU (both Workers') per second of
/// audio, and the bytes on the link per second of audio.
pub fn opus(root: &Path, sessions: usize, seconds: u64) -> TestResult {
    let (fixture, relay) = load_relay(root)?;
    println!(
        "WebSocket listeners, {sessions} sessions speaking replies one after another, {seconds} s per encoding, in turn, twice"
    );
    println!("  encoding   done  failed   audio s   bytes per audio s   late p99   workerd CPU/audio s   CPU share");
    for round in 0..2u64 {
        for (k, encoding) in [AudioEncoding::Pcm, AudioEncoding::Opus]
            .into_iter()
            .enumerate()
        {
            let seed = 0x0905 + round * 2 + k as u64;
            let f = load_step(&fixture, &relay, (sessions, seconds), seed, encoding)?;
            println!(
                "  {:<9} {:5} {:7} {:9.0} {:19.0} {:7.1} ms {:15.1} ms {:10.0}%",
                encoding.as_str(),
                f.done,
                f.failed,
                f.audio_s,
                f.bytes_per_audio_s,
                f.late_p99_ms,
                f.cpu_ms_per_audio_s,
                f.cpu_share * 100.0
            );
            for (reason, count) in &f.failures {
                println!("           {count} ended {reason}");
            }
        }
    }
    Ok(())
}

/// Characters each session of a burst speaks.
const BURST_CHARS: usize = 200;

/// Direct requests that measure the upstream's own time to first byte before a burst.
const BURST_UPSTREAM_RUNS: usize = 5;

/// The burst (`burst`): `sessions` sessions connecting and speaking [`BURST_CHARS`] characters
/// each within one second, straight to workerd, beside the upstream's own time to first byte
/// for the relay's first request (the text's first segment), measured alone once the burst is
/// over.
pub fn burst(root: &Path, sessions: usize) -> TestResult {
    let (fixture, relay) = load_relay(root)?;
    let text = text_of(BURST_CHARS);
    let (first_segment, upstream, burst) = fixture.runtime.block_on(async {
        let burst = orpheus_e2e::scale::run_burst(&relay, sessions, &text, 0xB0257).await?;
        // The relay's first request of each message: the segment the text begins with.
        let first_segment = fixture
            .upstream
            .inputs()
            .into_iter()
            .find(|input| text.starts_with(input.as_str()))
            .ok_or("no request began with the text")?;
        let mut upstream = Vec::new();
        for _ in 0..BURST_UPSTREAM_RUNS {
            upstream.push(
                crate::relay::upstream_first_byte(&fixture.upstream_url, &first_segment).await?,
            );
        }
        TestResult::Ok((first_segment, upstream, burst))
    })?;
    let (u50, _) = summary(upstream);
    let line = |name: &str, ms: &[f64]| {
        if ms.is_empty() {
            println!("  {name:<34} none");
        } else {
            let (p50, p99) = (percentile(ms, 50.0), percentile(ms, 99.0));
            println!("  {name:<34} p50 {p50:7.0} ms   p99 {p99:7.0} ms");
        }
    };
    println!(
        "burst: {sessions} sessions connecting and speaking {BURST_CHARS} characters each within one second, straight to workerd"
    );
    println!(
        "  upstream alone, first body byte    p50 {u50:7.0} ms   (the first segment, {} characters)",
        first_segment.chars().count()
    );
    line("connect to ready", &burst.connect_ms);
    line("speak to first audio", &burst.first_audio_ms);
    line("frame lateness at the listener", &burst.lateness_ms);
    println!("  messages done: {} of {}", burst.done, burst.sessions);
    for (reason, count) in &burst.failures {
        println!("           {count} ended {reason}");
    }
    Ok(())
}

/// What the HTTP endpoint's answers cost in each format (`transcode`): `sessions` clients asking
/// for replies one after another, `seconds` per format, PCM (written by the Worker) beside the
/// encoded formats (written by the encoder Worker), in turn on one relay, then in turn again.
pub fn transcode(root: &Path, sessions: usize, seconds: u64) -> TestResult {
    let (fixture, relay) = load_relay(root)?;
    println!(
        "the HTTP endpoint, {sessions} clients asking for replies one after another, {seconds} s per format, in turn, twice"
    );
    println!("  format   answered  failed   audio s   bytes per audio s   workerd CPU/audio s   CPU share");
    for round in 0..2 {
        for (k, format) in ["pcm", "mp3", "opus", "aac"].into_iter().enumerate() {
            let step = orpheus_e2e::scale::Step {
                sessions,
                duration: Duration::from_secs(seconds),
                seed: 0x7C0DE + (round * 4 + k) as u64,
                encoding: AudioEncoding::Pcm,
            };
            let f = fixture.runtime.block_on(orpheus_e2e::scale::run_http_step(
                &relay,
                &fixture.upstream,
                step,
                format,
            ))?;
            let failed: u64 = f.failures.values().sum();
            println!(
                "  {:<6} {:10} {:7} {:9.0} {:19.0} {:18.1} ms {:10.0}%",
                f.format,
                f.answered,
                failed,
                f.audio_s,
                f.bytes as f64 / f.audio_s,
                f.cpu_ms_per_audio_s,
                f.cpu_share * 100.0
            );
            for (why, count) in &f.failures {
                println!("           {count} failed: {why}");
            }
        }
    }
    Ok(())
}

/// Most workerd's memory may grow over the second half of the soak.
const SOAK_GROWTH_LIMIT: f64 = 0.05;

/// The soak (`soak`): `sessions` sessions speaking for `minutes` one-minute rounds on one relay
/// (each round the same sessions reconnect to their objects); prints workerd's memory after each
/// round, and fails if it grew more than [`SOAK_GROWTH_LIMIT`] over the second half.
pub fn soak(root: &Path, sessions: usize, minutes: usize) -> TestResult {
    let (fixture, relay) = load_relay(root)?;
    let idle = relay
        .workerd_rss()
        .ok_or("workerd's memory could not be read")?;
    println!(
        "soak: {sessions} sessions for {minutes} one-minute rounds; workerd idle {} MB",
        idle / 1_000_000
    );
    println!("  round   done  failed   late p99   workerd RSS");
    let (mut rss, mut messages) = (Vec::new(), Vec::new());
    for round in 0..minutes {
        let seed = 0x50A4 + round as u64;
        let f = load_step(&fixture, &relay, (sessions, 60), seed, AudioEncoding::Pcm)?;
        println!(
            "  {:5} {:6} {:7} {:7.1} ms {:10.0} MB",
            round + 1,
            f.done,
            f.failed,
            f.late_p99_ms,
            f.rss as f64 / 1e6
        );
        rss.push(f.rss as f64);
        messages.push((f.done + f.failed) as f64);
    }
    let half = minutes / 2;
    let (first, middle, last) = (rss[0], rss[half.max(1) - 1], rss[minutes - 1]);
    let growth = last / middle - 1.0;
    let later: f64 = messages[1..].iter().sum();
    println!(
        "  per session (first round, over idle): {:.2} MB; per message after the first round: {:.1} KB",
        (first - idle as f64) / sessions as f64 / 1e6,
        (last - first) / later.max(1.0) / 1e3
    );
    println!(
        "  growth over the second half: {:+.1}% (limit {:.0}%)",
        growth * 100.0,
        SOAK_GROWTH_LIMIT * 100.0
    );
    ensure!(
        growth <= SOAK_GROWTH_LIMIT,
        "workerd's memory grew {:.1}% over the soak's second half",
        growth * 100.0
    );
    Ok(())
}

/// How long the sessions speak before the profile starts: all connected, messages under way.
const PROFILE_WARM_S: u64 = 15;

/// Functions listed by the profile, by their own time and by their total.
const PROFILE_ROWS: usize = 25;

/// The CPU profile (`profile`): `sessions` speaking on one relay as in the ramp; once they are
/// under way, workerd is profiled for `seconds` through `wrangler dev`'s inspector. Prints the
/// functions it spent the most time in.
pub fn profile(root: &Path, sessions: usize, seconds: u64) -> TestResult {
    let (fixture, relay) = load_relay(root)?;
    let step = orpheus_e2e::scale::Step {
        sessions,
        duration: Duration::from_secs(PROFILE_WARM_S + seconds + 5),
        seed: 0x9E0F,
        encoding: AudioEncoding::Pcm,
    };
    let (figures, profile) = fixture.runtime.block_on(async {
        let recording = async {
            tokio::time::sleep(Duration::from_secs(PROFILE_WARM_S)).await;
            let duration = Duration::from_secs(seconds);
            orpheus_e2e::profile::record(relay.inspector_port, duration).await
        };
        tokio::join!(orpheus_e2e::scale::run_step(&relay, step), recording)
    });
    let (figures, profile) = (figures?, profile?);
    println!(
        "CPU profile of workerd, {sessions} sessions speaking, {seconds} s ({} samples); over the \
         whole step {:.1} ms of workerd CPU per second of audio, lateness p99 {:.1} ms",
        profile.samples, figures.cpu_ms_per_audio_s, figures.late_p99_ms
    );
    let lists = [
        ("by own time", &profile.own),
        ("by total time (with what they call)", &profile.total),
    ];
    for (order, list) in lists {
        println!("  {order}:\n    own   total  function");
        for (name, _) in list.iter().take(PROFILE_ROWS) {
            let (own, total) = profile.shares(name);
            println!("  {own:5.1}%  {total:5.1}%  {name}");
        }
    }
    Ok(())
}
