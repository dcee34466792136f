//! `scripts/bench`: figures for the relay, measured in one run against the local upstream set to
//! Groq's pace (about 10 ms of generation per character before the first byte).
//!
//! 1. The overhead the relay adds: time from `speak` to the first audio frame through the relay,
//!    against the upstream's own time to first byte fetched directly, p50 and p99.
//! 2. Time to first audio for 100 and for 2,000 characters of text.

use std::path::Path;
use std::time::{Duration, Instant};

use groq_local::Config as UpstreamConfig;
use orpheus_e2e::{percentile, Client, Fixture, Frame, TestResult, TEST_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Groq generates about 100 characters per second.
const MS_PER_CHAR: u64 = 10;
const OVERHEAD_RUNS: usize = 60;
const LENGTH_RUNS: usize = 8;
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

const USAGE: &str = "usage: bench [relay|player]   (both when none is named)";

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
    let (relay, player) = match mode.as_deref() {
        None => (true, true),
        Some("relay") => (true, false),
        Some("player") => (false, true),
        Some(_) => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
        if player {
            player_figures().await?;
        }
        Ok::<(), String>(())
    });
    drop(fixture);
    if let Err(e) = result {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}
