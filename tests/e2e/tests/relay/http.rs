//! The OpenAI-compatible speech endpoint against real workerd: the official `openai` and
//! `groq` Python packages and the `openai` npm package stream a long text to a file, bit-exact;
//! every bad input gets its status and OpenAI's error shape with no upstream request; a client
//! that goes away mid-response leaves no upstream connection open; limits hold per key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orpheus_e2e::{
    check_bit_exact, ensure, http_exchange, Fixture, HttpAnswer, Relay, TestResult, RELAY_API_KEYS,
};
use orpheus_worker::wav::WavReader;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::texts::english;

const PATH: &str = "/v1/audio/speech";
const MODEL: &str = "canopylabs/orpheus-v1-english";

fn speech_body(input: &str) -> Vec<u8> {
    serde_json::json!({"model": MODEL, "voice": "troy", "input": input})
        .to_string()
        .into_bytes()
}

/// POSTs `body` to the endpoint of `base` with `key` and a JSON content type.
async fn post(base: &str, key: &str, body: &[u8]) -> TestResult<HttpAnswer> {
    let auth = format!("Bearer {key}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    http_exchange(base, "POST", PATH, &headers, body).await
}

/// The PCM of a WAV byte stream, walked chunk by chunk as the relay walks Groq's, and its rate.
fn wav_pcm(bytes: &[u8]) -> TestResult<(u32, Vec<u8>)> {
    let mut reader = WavReader::new();
    let mut pcm = Vec::new();
    reader
        .push(bytes, &mut pcm)
        .map_err(|e| format!("not a WAV stream: {e:?}"))?;
    let rate = reader.format().ok_or("no fmt chunk")?.sample_rate;
    Ok((rate, pcm))
}

/// An error answer: its status, OpenAI's error shape, and its `error.code`.
fn check_error(answer: &HttpAnswer, status: u16, code: &str) -> TestResult {
    let body: Value = serde_json::from_slice(&answer.body).map_err(|_| {
        format!(
            "{code}: not JSON: {:?}",
            String::from_utf8_lossy(&answer.body)
        )
    })?;
    let error = &body["error"];
    ensure!(
        answer.status == status
            && error["code"] == code
            && error["message"].as_str().is_some_and(|m| !m.is_empty())
            && error["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("_error"))
            && answer.header("content-type") == Some("application/json"),
        "{code}: expected {status}, got {} {body}",
        answer.status
    );
    Ok(())
}

/// Runs SDK `name` (`openai` or `groq` in Python, `openai-npm` in Node) to stream the text of
/// `text_file` from `base` to `out` in `format`, with `extra_body` (Python only) if given.
async fn run_sdk(
    name: &str,
    base: &str,
    text_file: &str,
    out: &Path,
    format: &str,
    extra_body: Option<&str>,
) -> TestResult<std::process::Output> {
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let mut command = if name == "openai-npm" {
        let mut c = tokio::process::Command::new("node");
        c.arg(sdk.join("speech.mjs"));
        c
    } else {
        let python = PathBuf::from(std::env::var("ORPHEUS_PYTHON_ENV").unwrap_or_default())
            .join("bin/python");
        let mut c = tokio::process::Command::new(python);
        c.arg(sdk.join("speech.py")).arg(name);
        c
    };
    let out = out.to_string_lossy().into_owned();
    command.args([base, RELAY_API_KEYS[0], text_file, &out, format]);
    command.args(extra_body);
    let run = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .map_err(|_| format!("{name} took over 120 s"))?
        .map_err(|e| format!("{name}: {e}"))?;
    ensure!(
        run.status.success(),
        "{name} ({format}) failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(run)
}

fn work_dir(fx: &Fixture) -> TestResult<PathBuf> {
    let dir = Relay::log_dir(&fx.root).join("sdk");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The three official SDKs, their base URL pointed at the relay, stream a 2,000-character text
/// to a file: a valid WAV (or raw PCM at the rate in `x-sample-rate`) whose samples are the
/// upstream's for the text's segments, in order.
pub async fn http_sdks(fx: &Fixture) -> TestResult {
    let text = english(2000);
    let dir = work_dir(fx)?;
    let text_file = dir.join("text.txt");
    std::fs::write(&text_file, &text).map_err(|e| e.to_string())?;
    orpheus_e2e::LEDGER
        .lock()
        .expect("ledger")
        .texts
        .push(text.clone());
    let base = fx.relay_url();
    let text_arg = text_file.to_string_lossy().into_owned();
    for (name, format) in [
        ("openai", "wav"),
        ("groq", "wav"),
        ("openai-npm", "wav"),
        ("openai", "pcm"),
    ] {
        let out = dir.join(format!("{name}.{format}"));
        let run = run_sdk(name, base, &text_arg, &out, format, None).await?;
        let rate_header = String::from_utf8_lossy(&run.stdout).trim().to_owned();
        let bytes = std::fs::read(&out).map_err(|e| e.to_string())?;
        let (rate, pcm) = if format == "wav" {
            wav_pcm(&bytes)?
        } else {
            (rate_header.parse().unwrap_or(0), bytes)
        };
        ensure!(
            rate == groq_local::SAMPLE_RATE && rate_header == rate.to_string(),
            "{name} ({format}): rate {rate}, x-sample-rate {rate_header:?}"
        );
        check_bit_exact(&pcm, &text).map_err(|e| format!("{name} ({format}): {e}"))?;
        println!("{name} ({format}): {} samples, bit-exact", pcm.len() / 2);
    }
    fx.upstream_quiet(Duration::from_secs(5)).await
}

/// The relay's text options as extra body fields: the OpenAI SDK's `extra_body` carries a
/// lexicon (the reply read as Markdown, the default), a raw request asks for `plain`; the
/// upstream is asked for what should be said. A lexicon over its limits is refused with the
/// limit it broke, before the upstream.
pub async fn http_text_options(fx: &Fixture) -> TestResult {
    let dir = work_dir(fx)?;
    let text = "**Groq** reads [the docs](https://example.com/docs) aloud.";
    let text_file = dir.join("markdown.txt");
    std::fs::write(&text_file, text).map_err(|e| e.to_string())?;
    orpheus_e2e::LEDGER
        .lock()
        .expect("ledger")
        .texts
        .push(text.to_owned());
    let out = dir.join("markdown.wav");
    let extra = r#"{"lexicon": {"Groq": "grok"}}"#;
    run_sdk(
        "openai",
        fx.relay_url(),
        &text_file.to_string_lossy(),
        &out,
        "wav",
        Some(extra),
    )
    .await?;
    let asked = fx.upstream.inputs();
    ensure!(
        asked.last().map(String::as_str) == Some("grok reads the docs aloud."),
        "the upstream was asked for {:?}",
        asked.last()
    );
    let plain = serde_json::json!({
        "model": MODEL, "voice": "troy", "input": "**as is**", "markup": "plain",
    });
    let answer = post(
        fx.relay_url(),
        RELAY_API_KEYS[0],
        plain.to_string().as_bytes(),
    )
    .await?;
    ensure!(answer.status == 200, "plain: {}", answer.status);
    let asked = fx.upstream.inputs();
    ensure!(
        asked.last().map(String::as_str) == Some("**as is**"),
        "plain text was said as {:?}",
        asked.last()
    );
    let before = fx.upstream.snapshot().requests;
    let long_word = serde_json::json!({
        "model": MODEL, "voice": "troy", "input": "Hi.", "lexicon": {"x".repeat(49): "y"},
    });
    let answer = post(
        fx.relay_url(),
        RELAY_API_KEYS[0],
        long_word.to_string().as_bytes(),
    )
    .await?;
    check_error(&answer, 400, "invalid_lexicon")?;
    ensure!(
        String::from_utf8_lossy(&answer.body).contains("1 to 48 characters"),
        "the limit broken is said: {}",
        String::from_utf8_lossy(&answer.body)
    );
    ensure!(
        fx.upstream.snapshot().requests == before,
        "a refused request reached the upstream"
    );
    Ok(())
}

/// Every bad request gets its status and OpenAI's error shape, reaches no upstream, and leaves
/// nothing open.
pub async fn http_bad_input(fx: &Fixture) -> TestResult {
    let base = fx.relay_url();
    let key = RELAY_API_KEYS[0];
    let before = fx.upstream.snapshot().requests;
    let json = |value: Value| value.to_string().into_bytes();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("wrong key", speech_body("Hello."), 401, "invalid_api_key"),
        (
            "unknown voice",
            json(serde_json::json!({"model": MODEL, "voice": "alloy", "input": "Hello."})),
            400,
            "unknown_voice",
        ),
        (
            "unknown model",
            json(serde_json::json!({"model": "tts-1", "voice": "troy", "input": "Hello."})),
            400,
            "unknown_model",
        ),
        ("empty input", speech_body("   "), 400, "empty_text"),
        (
            "input over the limit",
            speech_body(&english(4001)),
            400,
            "text_too_long",
        ),
        (
            "body over 64 KiB",
            speech_body(&"a".repeat(70_000)),
            413,
            "body_too_large",
        ),
        ("invalid JSON", b"{\"model\":".to_vec(), 400, "invalid_json"),
        (
            "speed",
            json(
                serde_json::json!({"model": MODEL, "voice": "troy", "input": "Hi.", "speed": 2.0}),
            ),
            400,
            "unsupported_speed",
        ),
    ];
    for (what, body, status, code) in cases {
        let key = if what == "wrong key" {
            "not-a-key"
        } else {
            key
        };
        let answer = post(base, key, &body).await?;
        check_error(&answer, status, code).map_err(|e| format!("{what}: {e}"))?;
    }
    let answer = http_exchange(
        base,
        "POST",
        PATH,
        &[("Content-Type", "application/json")],
        &speech_body("Hi."),
    )
    .await?;
    check_error(&answer, 401, "invalid_api_key").map_err(|e| format!("no key: {e}"))?;
    let auth = format!("Bearer {key}");
    let answer = http_exchange(
        base,
        "POST",
        PATH,
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        &speech_body("Hi."),
    )
    .await?;
    check_error(&answer, 415, "unsupported_media_type")?;
    let answer = http_exchange(base, "GET", PATH, &[("Authorization", &auth)], &[]).await?;
    check_error(&answer, 405, "method_not_allowed")?;
    ensure!(answer.header("allow") == Some("POST"), "405 without allow");
    ensure!(
        fx.upstream.snapshot().requests == before,
        "a refused request reached the upstream"
    );
    // Groq's own path works too, and a good request after all that is served.
    let answer = http_exchange(
        base,
        "POST",
        "/openai/v1/audio/speech",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &speech_body("Still here."),
    )
    .await?;
    ensure!(answer.status == 200, "Groq's path: {}", answer.status);
    let (_, pcm) = wav_pcm(&answer.body)?;
    check_bit_exact(&pcm, "Still here.")?;
    fx.upstream_quiet(Duration::from_secs(5)).await
}

/// The upstream failing before any audio: the status that says what to do (502 for a refused
/// key, 503 with `retry-after` for "unavailable", 504 for a timeout, 429 with `retry-after`
/// for Groq's own rate limit), OpenAI's shape, and nothing of the upstream's error body.
pub async fn http_upstream_errors(fx: &Fixture) -> TestResult {
    let cases = [
        ("status=401", 502, "upstream_auth", None),
        (
            "status=503;retry_after=9",
            503,
            "upstream_unavailable",
            Some(9),
        ),
        ("status=429;retry_after=7", 429, "rate_limited", Some(7)),
        ("stall_after=0", 504, "upstream_timeout", None),
    ];
    for (i, (fault, status, code, retry_after)) in cases.into_iter().enumerate() {
        let text = format!("HTTP fault {i} [[fault:{fault}]] here.");
        let answer = post(fx.relay_url(), RELAY_API_KEYS[0], &speech_body(&text)).await?;
        check_error(&answer, status, code).map_err(|e| format!("{fault}: {e}"))?;
        let got = answer
            .header("retry-after")
            .and_then(|r| r.parse::<u32>().ok());
        ensure!(
            retry_after.is_none_or(|want| got == Some(want)),
            "{fault}: retry-after {got:?}"
        );
        let body = String::from_utf8_lossy(&answer.body);
        ensure!(
            !body.contains("org_01localsecret"),
            "{fault}: the upstream's body leaked: {body}"
        );
    }
    fx.upstream_quiet(Duration::from_secs(5)).await
}

/// A client that reads the start of a long answer and goes away: every upstream request of it
/// is aborted.
pub async fn http_disconnect(fx: &Fixture) -> TestResult {
    let host = fx.relay_url().trim_start_matches("http://").to_owned();
    // The upstream drips the first segment slowly, so the answer is mid-stream when the client
    // leaves.
    let text = format!("[[fault:chunk=4800;gap_ms=100]] {}", english(1500));
    let body = speech_body(&text);
    let mut stream = tokio::net::TcpStream::connect(&host)
        .await
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        RELAY_API_KEYS[1],
        body.len()
    );
    stream
        .write_all(&[head.as_bytes(), &body].concat())
        .await
        .map_err(|e| e.to_string())?;
    let mut got = vec![0u8; 64 * 1024];
    let mut read = 0;
    while read < 20_000 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut got[read..]))
            .await
            .map_err(|_| "no audio within 10 s")?
            .map_err(|e| e.to_string())?;
        ensure!(n > 0, "the answer ended before the client left");
        read += n;
    }
    ensure!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got[..64])
    );
    let open = fx.upstream.snapshot().open_connections;
    ensure!(
        open > 0,
        "no upstream request was in flight when the client left"
    );
    drop(stream);
    fx.upstream_quiet(Duration::from_secs(5))
        .await
        .map_err(|e| format!("after the client left: {e}"))
}

/// On a relay whose day allows 150 characters: one key spends them, its next request is
/// refused (429, `retry-after` about a day) with no upstream request; another key is not.
pub async fn per_key_limits(fx: &Fixture, relay: &Relay) -> TestResult {
    let requests = || fx.upstream.snapshot().requests;
    let text = english(75);
    for _ in 0..2 {
        let answer = post(&relay.url, RELAY_API_KEYS[0], &speech_body(&text)).await?;
        ensure!(answer.status == 200, "within the limit: {}", answer.status);
    }
    let before = requests();
    let answer = post(&relay.url, RELAY_API_KEYS[0], &speech_body("One more.")).await?;
    check_error(&answer, 429, "rate_limit_exceeded")?;
    let retry: u32 = answer
        .header("retry-after")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    ensure!(retry > 86_000, "a day's limit waits about a day: {retry}");
    ensure!(
        requests() == before,
        "a refused request reached the upstream"
    );
    let answer = post(&relay.url, RELAY_API_KEYS[1], &speech_body(&text)).await?;
    ensure!(
        answer.status == 200,
        "another key has its own limits: {}",
        answer.status
    );
    Ok(())
}
