//! `scripts/bench`: figures for the relay, measured in one run against the local upstream set to
//! Groq's pace (about 10 ms of generation per character before the first byte).
//!
//! 1. The overhead the relay adds: time from `speak` to the first audio frame through the relay,
//!    against the upstream's own time to first byte fetched directly, p50 and p99.
//! 2. Time to first audio for 100 and for 2,000 characters of text.
//! 3. (`listener`) Protocol v2 against v1 in the same run: upstream audio requested per stopped
//!    message against audio played, stop to `end` (also on a link slower than real time), audio
//!    held for a half-speed reader, and the silence a listener hears at a resume.
//! 4. (`written`) A reply written in small pieces (protocol v2 streaming text): first audio after
//!    its first sentence's last character, against the same sentence sent as a whole `speak`.
//!
//! Run only when named, each taking minutes (docs/scaling.md): `scale`, the load ramp (frame
//! lateness, CPU per second of audio and memory of one workerd for growing numbers of
//! sessions), `soak`, workerd's memory over a long run at a fixed number of sessions, and
//! `profile`, a CPU profile of workerd under load, summed up by function.

use std::path::Path;
use std::time::{Duration, Instant};

use groq_local::Config as UpstreamConfig;
use orpheus_e2e::{
    ensure, percentile, Client, Fixture, Frame, Listener, TestResult, AGENT_REPLY,
    AGENT_REPLY_FIRST, SAMPLES_PER_CHAR, SLOW_LINK_SPEED, TEST_KEY,
};
use orpheus_protocol::ServerMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Groq generates about 100 characters per second.
const MS_PER_CHAR: u64 = 10;
const OVERHEAD_RUNS: usize = 60;
const LENGTH_RUNS: usize = 8;
const SLOW_STOP_RUNS: usize = 40;
const SHORT: &str = "Hello there, how are you doing today?";

fn summary(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 50.0), percentile(&ms, 99.0))
}

/// Time from sending a speech request straight to the upstream to its first body byte.
async fn upstream_first_byte(upstream_url: &str, input: &str) -> TestResult<f64> {
    let host = upstream_url.trim_start_matches("http://");
    let body = serde_json::json!({
        "model": "canopylabs/orpheus-v1-english", "voice": "troy", "input": input, "response_format": "wav"
    })
    .to_string();
    let request = format!(
        "POST /openai/v1/audio/speech HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TEST_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let mut stream = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("upstream closed before the body".into());
        }
        seen.extend_from_slice(&buf[..n]);
        if let Some(head_end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            // The first chunk-size line plus at least one body byte.
            if seen[head_end + 4..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .is_some_and(|at| seen.len() > head_end + 4 + at + 2)
            {
                return Ok(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
}

/// Time from sending `speak` to the first audio frame; then waits for the end.
async fn relay_first_audio(client: &mut Client, id: &str, text: &str) -> TestResult<f64> {
    let started = Instant::now();
    client.speak(id, text, None).await?;
    let mut first = None;
    loop {
        match client.next(Duration::from_secs(120)).await? {
            Frame::Audio { .. } if first.is_none() => {
                first = Some(started.elapsed().as_secs_f64() * 1000.0)
            }
            Frame::Text(orpheus_protocol::ServerMessage::End { .. }) => break,
            Frame::Closed(code) => return Err(format!("closed ({code:?})")),
            _ => {}
        }
    }
    first.ok_or_else(|| format!("{id}: no audio"))
}

fn text_of(chars: usize) -> String {
    "Streaming speech should start fast, however long the text is. "
        .chars()
        .cycle()
        .take(chars)
        .collect()
}

async fn run(fx: &Fixture) -> TestResult {
    let mut client = Client::connect(fx, "bench").await?;
    // Warm up both paths once (worker instantiation, connection set-up).
    upstream_first_byte(&fx.upstream_url, SHORT).await?;
    relay_first_audio(&mut client, "warm", SHORT).await?;

    let (mut direct, mut relayed) = (Vec::new(), Vec::new());
    for i in 0..OVERHEAD_RUNS {
        direct.push(upstream_first_byte(&fx.upstream_url, SHORT).await?);
        relayed.push(relay_first_audio(&mut client, &format!("o{i}"), SHORT).await?);
    }
    let (d50, d99) = summary(direct);
    let (r50, r99) = summary(relayed);
    println!("time to first audio, {} chars, {OVERHEAD_RUNS} runs each (upstream at {MS_PER_CHAR} ms/char):", SHORT.len());
    println!("  upstream direct, first body byte   p50 {d50:7.1} ms   p99 {d99:7.1} ms");
    println!("  through the relay, first audio     p50 {r50:7.1} ms   p99 {r99:7.1} ms");
    println!(
        "  overhead added by the relay        p50 {:7.1} ms   p99 {:7.1} ms",
        r50 - d50,
        r99 - d99
    );

    println!("time to first audio by text length, {LENGTH_RUNS} runs each:");
    for chars in [100, 2000] {
        let text = text_of(chars);
        let mut times = Vec::new();
        for i in 0..LENGTH_RUNS {
            times.push(relay_first_audio(&mut client, &format!("l{chars}-{i}"), &text).await?);
        }
        let (p50, p99) = summary(times);
        println!("  {chars:5} chars                        p50 {p50:7.1} ms   p99 {p99:7.1} ms");
    }
    Ok(())
}

const RATE: f64 = 24_000.0;
const STOP_RUNS: u64 = 5;
const RESUME_RUNS: usize = 3;

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

async fn listener(fx: &Fixture, v2: bool, sid: &str, speed: f64) -> TestResult<Listener> {
    if v2 {
        Listener::connect(fx, sid, speed).await
    } else {
        Listener::connect_v1(fx, sid, speed).await
    }
}

/// What a stop showed the listener.
struct Stopped {
    end: ServerMessage,
    /// From the stop to its `end`, in milliseconds.
    ms: f64,
    /// The audio that arrived between the stop and its `end` (it was on its way), in
    /// milliseconds.
    behind_ms: f64,
    /// Audio received per second from the first frame's arrival to the stop (what came after
    /// it), in samples: on a link slower than real time, how busy the relay kept it. None
    /// when no audio came before the stop.
    arrival_rate: Option<f64>,
}

/// Speaks `text` to `l`, listens for `for_at_most`, stops, and waits for the `end`.
async fn speak_and_stop(
    l: &mut Listener,
    text: &str,
    for_at_most: Duration,
) -> TestResult<Stopped> {
    l.speak_and_listen("m", text, for_at_most).await?;
    let before = l.received();
    let listened = l.first_audio_at.map(|first| first.elapsed().as_secs_f64());
    let (end, elapsed) = l.stop_and_wait("m", Duration::from_secs(60)).await?;
    Ok(Stopped {
        end,
        ms: elapsed.as_secs_f64() * 1000.0,
        behind_ms: (l.received() - before) as f64 * 1000.0 / RATE,
        arrival_rate: listened.map(|s| before.saturating_sub(l.first_frame_samples) as f64 / s),
    })
}

/// Protocol v2's figures, each against v1 in the same run.
async fn listener_figures(fx: &Fixture) -> TestResult {
    let seconds_of = |chars: usize| (chars * SAMPLES_PER_CHAR) as f64 / RATE;
    let text = text_of(2000);
    println!(
        "stopped messages: 2,000 characters ({:.0} s of audio) played in real time, stopped after 2-6 s, {STOP_RUNS} runs each:",
        seconds_of(2000)
    );
    for v2 in [false, true] {
        let (mut requested, mut played, mut ahead, mut stop_ms) = (vec![], vec![], vec![], vec![]);
        for run in 0..STOP_RUNS {
            let sid = format!("bench-stop-v{}-{run}", 1 + u8::from(v2));
            let mut l = listener(fx, v2, &sid, 1.0).await?;
            let before = fx.upstream.inputs().len();
            let listen = Duration::from_millis(2_000 + 1_000 * run);
            let ms = speak_and_stop(&mut l, &text, listen).await?.ms;
            // Requests the relay started just before the stop reach the upstream.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let chars: usize = fx.upstream.inputs()[before..]
                .iter()
                .map(|input| input.chars().count())
                .sum();
            requested.push(seconds_of(chars));
            played.push(l.played() as f64 / RATE);
            ahead.push(l.received().saturating_sub(l.played()) as f64 / RATE);
            stop_ms.push(ms);
            l.client.close().await;
        }
        println!(
            "  protocol v{}: upstream audio requested {:5.1} s per message for {:4.1} s played; \
             at the stop {:5.1} s received beyond the cursor; stop to end mean {:4.0} ms",
            1 + u8::from(v2),
            mean(&requested),
            mean(&played),
            mean(&ahead),
            mean(&stop_ms)
        );
    }

    println!(
        "stop on a link at 0.75x real time, 25 ms each way (a 50 ms round trip), 200 characters, stopped after 1.5-{:.1} s:",
        1.5 + 0.1 * (SLOW_STOP_RUNS - 1) as f64
    );
    let proxy = fx.slow_link().await?;
    for (v2, runs) in [(false, 1), (true, SLOW_STOP_RUNS)] {
        let (mut stop_ms, mut behind_ms, mut carried) = (vec![], vec![], vec![]);
        for run in 0..runs {
            let sid = format!("bench-slow-v{}-{run}", 1 + u8::from(v2));
            let url = format!("ws://{}/v1/sessions/{sid}/ws", proxy.addr());
            let mut l = Listener::connect_at(&url, &sid, 1.0, v2).await?;
            let listen = Duration::from_millis(1_500 + 100 * run as u64);
            let stopped = speak_and_stop(&mut l, &text_of(200), listen).await?;
            stop_ms.push(stopped.ms);
            behind_ms.push(stopped.behind_ms);
            carried.extend(stopped.arrival_rate.map(|r| r / (SLOW_LINK_SPEED * RATE)));
            l.client.close().await;
        }
        let most_behind = behind_ms.iter().copied().fold(0.0, f64::max);
        let mut each: Vec<u64> = stop_ms.iter().map(|&ms| ms as u64).collect();
        each.sort_unstable();
        let (p50, p99) = summary(stop_ms);
        println!(
            "  protocol v{}: stop to end p50 {p50:6.0} ms   p99 {p99:6.0} ms   ({runs} runs); \
             audio on its way at the stop mean {:5.0} ms, most {most_behind:5.0} ms",
            1 + u8::from(v2),
            mean(&behind_ms)
        );
        if v2 {
            println!("    each, in ms, fastest first: {each:?}");
            // (Paced links only: v1's one run sends frames of up to 16 KiB, a third of a
            // second each, too coarse to time this way.)
            println!(
                "    the link's rate carried from the first frame to the stop: mean {:.2} \
                 ({} stops with audio before them)",
                mean(&carried),
                carried.len()
            );
        }
    }

    let long = text_of(4000);
    println!("a 4,000-character message to a reader at half speed, stopped after 10 s:");
    for v2 in [false, true] {
        let sid = format!("bench-half-v{}", 1 + u8::from(v2));
        let mut l = listener(fx, v2, &sid, 0.5).await?;
        let stopped = speak_and_stop(&mut l, &long, Duration::from_secs(10)).await?;
        let held = match stopped.end {
            ServerMessage::End {
                metrics: Some(m), ..
            } => format!("{:.1} s", m.held_back_ms as f64 / 1000.0),
            _ => "not reported (v1 holds nothing back)".to_owned(),
        };
        println!(
            "  protocol v{}: most received beyond the cursor {:5.1} s; most held in the relay {held}",
            1 + u8::from(v2),
            l.most_ahead as f64 / RATE,
        );
        l.client.close().await;
    }

    println!("resume after a cut link, at 3 s into a 2,000-character message, {RESUME_RUNS} runs:");
    let (mut outages, mut silences) = (vec![], vec![]);
    for run in 0..RESUME_RUNS {
        let sid = format!("bench-resume-{run}");
        let mut l = Listener::connect(fx, &sid, 1.0).await?;
        l.speak_and_listen("m", &text, Duration::from_secs(3))
            .await?;
        let cut = Instant::now();
        let had = l.received();
        let buffered = had.saturating_sub(l.played()) as f64 / RATE;
        l.cut_and_resume(fx, &sid, "m").await?;
        while l.received() <= had {
            ensure!(
                cut.elapsed() < Duration::from_secs(20),
                "no audio after the resume"
            );
            l.listen("m", Duration::from_millis(5)).await?;
        }
        let outage = cut.elapsed().as_secs_f64();
        outages.push(outage * 1000.0);
        silences.push((outage - buffered).max(0.0) * 1000.0);
        l.client.stop("m").await?;
        l.listen("m", Duration::from_secs(10)).await?;
        l.client.close().await;
    }
    println!(
        "  from the cut to new audio mean {:.0} ms (reconnect, ticket, resume); silence heard beyond it mean {:.0} ms",
        mean(&outages),
        mean(&silences)
    );
    Ok(())
}

const WRITTEN_RUNS: usize = 8;

/// First audio of a reply written in pieces of 1 to 5 characters every 20 to 50 ms, counted
/// from the append that completed its first sentence, against that sentence as a whole `speak`
/// (from the `speak`), in milliseconds.
async fn written_figures(fx: &Fixture) -> TestResult {
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

/// The player's figures against two peers, in one headless Chromium run on the bench's pattern
/// server (`orpheus_e2e::patterns`), and the size of what the browser loads for it.
async fn player_figures() -> TestResult {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shipped = [
        "index.js",
        "orpheus_player.js",
        "orpheus_player_bg.wasm",
        "orpheus_player_dsp.wasm",
        "worklet.js",
        "socket.js",
    ];
    let mut total = 0;
    let mut parts = Vec::new();
    for file in shipped {
        let bytes = std::fs::read(root.join("player/pkg").join(file))
            .map_err(|e| format!("{file}: {e}"))?;
        let gz = gzipped_len(&bytes);
        total += gz;
        parts.push(format!("{file} {gz}"));
    }
    println!(
        "player package as shipped, gzipped: {total} bytes ({})",
        parts.join(", ")
    );

    let server = orpheus_e2e::patterns::serve(0xB0B)
        .await
        .map_err(|e| e.to_string())?;
    let ws = format!("ws://{server}");
    let root_text = root.to_string_lossy();
    let report = orpheus_e2e::run_browser_script("figures.mjs", &[&ws, &root_text]).await?;
    println!(
        "players in headless Chromium, the same {} s signal: (a) 85 ms chunks at real-time pace, \
         (b) 1-12,000 byte chunks at stream time + 0-60 ms, (c) all within 1 s",
        orpheus_e2e::patterns::SIGNAL_S
    );
    println!(
        "  {:<16} {:>3} {:>7} {:>5} {:>8} {:>9} {:>12}",
        "player", "", "rate", "gaps", "lost ms", "latency", "main ms/s"
    );
    for run in report["runs"].as_array().ok_or("no runs")? {
        let num = |k: &str| run[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "  {:<16} ({}) {:>7} {:>5} {:>8.1} {:>6.1} ms {:>12.2}",
            run["kind"].as_str().unwrap_or("?"),
            run["pattern"].as_str().unwrap_or("?"),
            num("rate"),
            num("gaps"),
            num("lostMs"),
            num("latencyMs"),
            num("busyMsPerAudioS"),
        );
    }
    for run in report["runs"].as_array().into_iter().flatten() {
        if run["kind"] == "orpheus-player" {
            let ms = |k: &str| run["busy"][k].as_f64().unwrap_or(f64::NAN);
            println!(
                "  orpheus-player ({}) main-thread ms in all: socket {:.1}, worklet reports {:.1}, timers {:.1}",
                run["pattern"].as_str().unwrap_or("?"),
                ms("socket"),
                ms("worklet"),
                ms("timers")
            );
        }
    }
    let stop = report["stop"]["stopToSilenceMs"]
        .as_f64()
        .unwrap_or(f64::NAN);
    println!("  orpheus-player stop to silence at the output: {stop:.1} ms");
    Ok(())
}

fn gzipped_len(bytes: &[u8]) -> usize {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-9c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("gzip input");
    child.wait_with_output().expect("gzip").stdout.len()
}

const USAGE: &str = "usage: bench [relay|listener|written|player]   (all when none is named)
       bench scale [SESSIONS,SESSIONS,...] [SECONDS]   (the load ramp; default 50,100,200,400,500,800 for 60 s each)
       bench soak [SESSIONS] [MINUTES]   (memory over a long run; default 100 sessions for 30 minutes)
       bench profile [SESSIONS] [SECONDS]   (where workerd's CPU goes; default 200 sessions, 20 s)";

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

/// One step of `sessions` speaking for `seconds` on `relay`.
fn load_step(
    fixture: &Fixture,
    relay: &orpheus_e2e::Relay,
    sessions: usize,
    seconds: u64,
    seed: u64,
) -> TestResult<orpheus_e2e::scale::Figures> {
    let step = orpheus_e2e::scale::Step {
        sessions,
        duration: Duration::from_secs(seconds),
        seed,
    };
    fixture
        .runtime
        .block_on(orpheus_e2e::scale::run_step(relay, step))
}

/// The load ramp (`scale`): one step of `seconds` for each number of sessions in `ramp`. Prints
/// each step's figures and draws the ramp into docs/scale-ramp.svg.
fn scale(root: &Path, ramp: &[usize], seconds: u64) -> TestResult {
    let (fixture, relay) = load_relay(root)?;
    println!("load ramp: sessions speaking one to three sentences each, one after another, {seconds} s per step");
    println!("  sessions   done  failed   audio s   frames   late p50   late p99   workerd CPU/audio s   CPU share   workerd RSS");
    let mut figures = Vec::new();
    for (i, &sessions) in ramp.iter().enumerate() {
        let f = load_step(&fixture, &relay, sessions, seconds, 0x5CA1E + i as u64)?;
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

/// Most workerd's memory may grow over the second half of the soak.
const SOAK_GROWTH_LIMIT: f64 = 0.05;

/// The soak (`soak`): `sessions` sessions speaking for `minutes` one-minute rounds on one relay
/// (each round the same sessions reconnect to their objects); prints workerd's memory after each
/// round, and fails if it grew more than [`SOAK_GROWTH_LIMIT`] over the second half.
fn soak(root: &Path, sessions: usize, minutes: usize) -> TestResult {
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
        let f = load_step(&fixture, &relay, sessions, 60, 0x50A4 + round as u64)?;
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
fn profile(root: &Path, sessions: usize, seconds: u64) -> TestResult {
    let (fixture, relay) = load_relay(root)?;
    let step = orpheus_e2e::scale::Step {
        sessions,
        duration: Duration::from_secs(PROFILE_WARM_S + seconds + 5),
        seed: 0x9E0F,
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

/// Prints how the bench is called and exits 2.
fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

/// Exits 0 if `result` is fine, else prints its failure and exits 1. (Each mode's fixture and
/// relays are dropped, and so stopped, before its result comes here.)
fn finish(result: TestResult) -> ! {
    if let Err(e) = result {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
    std::process::exit(0)
}

/// The `i`th command-line argument as a number, `default` when absent; `None` when it is not one.
fn number_arg<T: std::str::FromStr>(i: usize, default: T) -> Option<T> {
    std::env::args()
        .nth(i)
        .map_or(Some(default), |s| s.parse().ok())
}

fn main() {
    let mode = std::env::args().nth(1);
    if mode.as_deref() == Some("serve") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let addr = orpheus_e2e::patterns::serve(0xB0B).await.unwrap();
            println!("{addr}");
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        });
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if mode.as_deref() == Some("scale") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        let ramp: Option<Vec<usize>> = match args.first() {
            Some(list) => list.split(',').map(|n| n.parse().ok()).collect(),
            None => Some(vec![50, 100, 200, 400, 500, 800]),
        };
        let (Some(ramp), Some(seconds)) = (ramp, number_arg(3, 60)) else {
            usage()
        };
        finish(scale(&root, &ramp, seconds));
    }
    if mode.as_deref() == Some("profile") {
        let (Some(sessions), Some(seconds)) = (number_arg(2, 200), number_arg(3, 20)) else {
            usage()
        };
        finish(profile(&root, sessions, seconds));
    }
    if mode.as_deref() == Some("soak") {
        // The soak compares its second half with its first: at least two rounds.
        let (Some(sessions), Some(minutes @ 2..)) = (number_arg(2, 100), number_arg(3, 30)) else {
            usage()
        };
        finish(soak(&root, sessions, minutes));
    }
    let (relay, listen, write, player) = match mode.as_deref() {
        None => (true, true, true, true),
        Some("relay") => (true, false, false, false),
        Some("listener") => (false, true, false, false),
        Some("written") => (false, false, true, false),
        Some("player") => (false, false, false, true),
        Some(_) => usage(),
    };
    let upstream = UpstreamConfig {
        ms_per_char: MS_PER_CHAR,
        ..Fixture::test_upstream()
    };
    let fixture = match Fixture::start(&root, upstream) {
        Ok(fixture) => fixture,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
    let result = fixture.runtime.block_on(async {
        if relay {
            run(&fixture).await?;
        }
        if listen {
            listener_figures(&fixture).await?;
        }
        if write {
            written_figures(&fixture).await?;
        }
        if player {
            player_figures().await?;
        }
        Ok::<(), String>(())
    });
    drop(fixture);
    finish(result);
}
