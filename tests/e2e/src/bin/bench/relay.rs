//! `bench relay`: the overhead the relay adds (time from `speak` to the first audio frame
//! through the relay, against the upstream's own time to first byte fetched directly, p50 and
//! p99, and against a Worker that only forwards the request, in the same workerd set-up: the
//! floor that `wrangler dev` puts under any Worker), and time to first audio for 100 and for
//! 2,000 characters of text.

use std::time::{Duration, Instant};

use orpheus_e2e::{Client, Fixture, Frame, Relay, TestResult, TEST_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{summary, text_of, MS_PER_CHAR};

const OVERHEAD_RUNS: usize = 60;

const LENGTH_RUNS: usize = 8;

const FORMAT_RUNS: usize = 20;

const SHORT: &str = "Hello there, how are you doing today?";

/// Time from sending a speech request to the upstream at `upstream_url` (or to a Worker that
/// forwards it there) to its first body byte.
pub async fn upstream_first_byte(upstream_url: &str, input: &str) -> TestResult<f64> {
    first_body_byte(
        upstream_url,
        "/openai/v1/audio/speech",
        TEST_KEY,
        input,
        "wav",
    )
    .await
}

/// Time from sending a speech request in `format` to `base`'s `path` to its first body byte.
async fn first_body_byte(
    base: &str,
    path: &str,
    key: &str,
    input: &str,
    format: &str,
) -> TestResult<f64> {
    let host = base.trim_start_matches("http://");
    let body = serde_json::json!({
        "model": "canopylabs/orpheus-v1-english", "voice": "troy", "input": input, "response_format": format
    })
    .to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
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

pub async fn run(fx: &Fixture) -> TestResult {
    // Through wrangler's local proxy (a development-only hop that relays every frame), and
    // straight to the workerd that runs the Worker, as a deployed Worker is reached.
    let mut proxied = Client::connect(fx, "bench").await?;
    let straight_url = format!(
        "{}/v1/sessions/bench-straight/ws",
        fx.relay.worker_url()?.replacen("http", "ws", 1)
    );
    let mut straight = Client::connect_at(&straight_url, "bench-straight", false).await?;
    let floor = tokio::task::block_in_place(|| {
        let vars = [("UPSTREAM_URL".to_owned(), fx.upstream_url.clone())];
        Relay::start_configs(
            &fx.root,
            "floor",
            &["tests/e2e/floor/wrangler.toml"],
            &vars,
            &[],
        )
    })?;
    // It answers the upstream's own speech path, as the upstream does.
    let floor_url = floor.worker_url()?;
    // Warm up every path once (worker instantiation, connection set-up).
    upstream_first_byte(&fx.upstream_url, SHORT).await?;
    upstream_first_byte(&floor_url, SHORT).await?;
    relay_first_audio(&mut proxied, "warm", SHORT).await?;
    relay_first_audio(&mut straight, "warm", SHORT).await?;

    let (mut direct, mut relayed, mut unproxied) = (Vec::new(), Vec::new(), Vec::new());
    let mut forwarded = Vec::new();
    for i in 0..OVERHEAD_RUNS {
        direct.push(upstream_first_byte(&fx.upstream_url, SHORT).await?);
        forwarded.push(upstream_first_byte(&floor_url, SHORT).await?);
        relayed.push(relay_first_audio(&mut proxied, &format!("o{i}"), SHORT).await?);
        unproxied.push(relay_first_audio(&mut straight, &format!("s{i}"), SHORT).await?);
    }
    let (d50, d99) = summary(direct);
    let (f50, f99) = summary(forwarded);
    println!("time to first audio, {} chars, {OVERHEAD_RUNS} runs each, in turn (upstream at {MS_PER_CHAR} ms/char):", SHORT.len());
    println!("  upstream direct, first body byte   p50 {d50:7.1} ms   p99 {d99:7.1} ms");
    println!("  a forwarding Worker (the floor)    p50 {f50:7.1} ms   p99 {f99:7.1} ms   overhead p50 {:5.1} ms   p99 {:5.1} ms", f50 - d50, f99 - d99);
    for (path, times) in [
        ("through wrangler's proxy", relayed),
        ("straight to workerd", unproxied),
    ] {
        let (r50, r99) = summary(times);
        println!("  relay, {path:<25}   p50 {r50:7.1} ms   p99 {r99:7.1} ms   overhead p50 {:5.1} ms   p99 {:5.1} ms   beyond the floor p50 {:5.1} ms   p99 {:5.1} ms", r50 - d50, r99 - d99, r50 - f50, r99 - f99);
    }
    drop(floor);

    // The HTTP endpoint: the encoded formats' first bytes against WAV's, in turn.
    let formats = ["wav", "mp3", "opus", "aac"];
    let mut firsts: Vec<Vec<f64>> = vec![Vec::new(); formats.len()];
    for _ in 0..FORMAT_RUNS {
        for (k, format) in formats.iter().enumerate() {
            let key = orpheus_e2e::RELAY_API_KEYS[0];
            firsts[k].push(
                first_body_byte(fx.relay_url(), "/v1/audio/speech", key, SHORT, format).await?,
            );
        }
    }
    println!(
        "the HTTP endpoint, time to first body byte by format, {FORMAT_RUNS} runs each, in turn:"
    );
    let (w50, w99) = summary(firsts[0].clone());
    for (format, times) in formats.iter().zip(firsts) {
        let (p50, p99) = summary(times);
        println!(
            "  {format:<5}                              p50 {p50:7.1} ms   p99 {p99:7.1} ms   ({:+.1} / {:+.1} ms on wav)",
            p50 - w50,
            p99 - w99
        );
    }

    println!("time to first audio by text length, {LENGTH_RUNS} runs each:");
    for chars in [100, 2000] {
        let text = text_of(chars);
        let mut times = Vec::new();
        for i in 0..LENGTH_RUNS {
            times.push(relay_first_audio(&mut proxied, &format!("l{chars}-{i}"), &text).await?);
        }
        let (p50, p99) = summary(times);
        println!("  {chars:5} chars                        p50 {p50:7.1} ms   p99 {p99:7.1} ms");
    }
    Ok(())
}
