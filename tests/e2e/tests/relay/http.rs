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

/// A request for `input` in WAV (checked bit for bit against the upstream's PCM).
fn speech_body(input: &str) -> Vec<u8> {
    serde_json::json!({"model": MODEL, "voice": "troy", "input": input, "response_format": "wav"})
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
    client_run(&format!("{name} ({format})"), command).await
}

/// `text` in the file `name` of the clients' work directory, for a client to read; noted in
/// the ledger of what no log may show.
fn text_for_clients(fx: &Fixture, text: &str, name: &str) -> TestResult<PathBuf> {
    orpheus_e2e::LEDGER
        .lock()
        .expect("ledger")
        .texts
        .push(text.to_owned());
    let path = work_dir(fx)?.join(name);
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    Ok(path)
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
    let text_file = text_for_clients(fx, &text, "text.txt")?;
    let dir = work_dir(fx)?;
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
    let text = "**Groq** reads [the docs](https://example.com/docs) aloud.";
    let text_file = text_for_clients(fx, text, "markdown.txt")?;
    let out = work_dir(fx)?.join("markdown.wav");
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

/// The expected PCM of `text` as samples.
fn samples_of(pcm: &[u8]) -> Vec<i16> {
    pcm.chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// An AAC stream decoded, without the encoder's priming it starts with: 1,024 samples that
/// ADTS has no field to mark (ffmpeg's own AAC encoder gives the same), dropped as a player
/// that knows AAC's delay drops them, once they are seen to be there (the audio lines up with
/// `want` after them, not before).
fn unprimed(mut decoded: Vec<i16>, want: &[i16]) -> TestResult<Vec<i16>> {
    const AAC_PRIMING: usize = 1_024;
    ensure!(
        decoded.len() > AAC_PRIMING,
        "aac: {} samples",
        decoded.len()
    );
    let (_, in_place) = orpheus_e2e::aligned_correlation(want, &decoded, 0);
    let (_, primed) = orpheus_e2e::aligned_correlation(want, &decoded[AAC_PRIMING..], 0);
    ensure!(
        primed > in_place + 0.5,
        "aac: not 1,024 samples of priming first ({primed:.3} after them, {in_place:.3} in place)"
    );
    decoded.drain(..AAC_PRIMING);
    Ok(decoded)
}

/// A decoded response against the upstream's audio for its text: its duration within 50 ms,
/// and, aligned, a correlation of at least `at_least`.
fn close_to(what: &str, decoded: &[i16], want: &[i16], rate: u32, at_least: f64) -> TestResult {
    let ms = |n: usize| n as f64 * 1000.0 / f64::from(rate);
    let off = (ms(decoded.len()) - ms(want.len())).abs();
    ensure!(
        off <= 50.0,
        "{what}: {:.0} ms of audio against {:.0} ms",
        ms(decoded.len()),
        ms(want.len())
    );
    // Up to 100 ms apart: a decoder that keeps an MP3 encoder's delay is that far behind.
    let (lag, correlation) = orpheus_e2e::aligned_correlation(want, decoded, rate as usize / 10);
    ensure!(
        correlation >= at_least,
        "{what}: correlation {correlation:.4} at a lag of {lag} samples"
    );
    println!(
        "{what}: {:.0} ms off in length, correlation {correlation:.4} at a lag of {lag}",
        off
    );
    Ok(())
}

/// The events of a server-sent events answer: the audio of its deltas, the words of its
/// `speech.audio.words` events, and its `speech.audio.done`, which must come once, last.
fn sse_events(body: &[u8]) -> TestResult<(Vec<u8>, Vec<Value>, Value)> {
    use base64::Engine;
    let text = String::from_utf8_lossy(body);
    let (mut audio, mut words, mut done) = (Vec::new(), Vec::new(), None);
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        ensure!(
            done.is_none(),
            "an event after speech.audio.done: {event:?}"
        );
        let json = event
            .strip_prefix("data: ")
            .ok_or_else(|| format!("not a data event: {event:?}"))?;
        let event: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        match event["type"].as_str() {
            Some("speech.audio.delta") => audio.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(event["audio"].as_str().unwrap_or_default())
                    .map_err(|e| e.to_string())?,
            ),
            Some("speech.audio.words") => {
                words.extend(event["words"].as_array().cloned().unwrap_or_default())
            }
            Some("speech.audio.done") => done = Some(event),
            other => return Err(format!("an event of type {other:?}")),
        }
    }
    Ok((audio, words, done.ok_or("no speech.audio.done")?))
}

/// Every format the endpoint writes, read back by a real decoder (ffmpeg): the OpenAI SDK with
/// no `response_format` gets MP3, as from OpenAI; Opus, AAC, FLAC (bit-exact at 24 kHz), MP3 in
/// server-sent events with the word timings beside it, G.711 at 8 kHz, WAV at every rate, MP3
/// at 48 kHz and AAC at 16 kHz. Each answer's first bytes come before the message's last
/// segment is even asked for (they stream).
pub async fn http_formats(fx: &Fixture) -> TestResult {
    let text = english(600);
    let text_file = text_for_clients(fx, &text, "formats.txt")?;
    let want = samples_of(&orpheus_e2e::expected_pcm(&text));
    let dir = work_dir(fx)?;
    let out = dir.join("default.mp3");
    let run = run_sdk(
        "openai",
        fx.relay_url(),
        &text_file.to_string_lossy(),
        &out,
        "default",
        None,
    )
    .await?;
    let mp3 = std::fs::read(&out).map_err(|e| e.to_string())?;
    ensure!(
        String::from_utf8_lossy(&run.stdout).trim() == "24000",
        "x-sample-rate {:?}",
        String::from_utf8_lossy(&run.stdout)
    );
    let decoded = orpheus_e2e::ffmpeg_decode(&mp3, &["-f", "mp3"], 24_000).await?;
    close_to("the SDK's default (mp3)", &decoded, &want, 24_000, 0.95)?;

    let body = |format: &str, rate: Option<u32>| {
        let mut json = serde_json::json!({"model": MODEL, "voice": "troy", "input": text, "response_format": format});
        if let Some(rate) = rate {
            json["sample_rate"] = rate.into();
        }
        json.to_string().into_bytes()
    };
    for (format, input) in [
        ("opus", &["-f", "ogg"][..]),
        ("aac", &["-f", "aac"][..]),
        ("flac", &["-f", "flac"][..]),
    ] {
        let answer = post(fx.relay_url(), RELAY_API_KEYS[0], &body(format, None)).await?;
        ensure!(answer.status == 200, "{format}: {}", answer.status);
        let mut decoded = orpheus_e2e::ffmpeg_decode(&answer.body, input, 24_000).await?;
        if format == "aac" {
            decoded = unprimed(decoded, &want)?;
        }
        if format == "flac" {
            ensure!(
                decoded == want,
                "flac is not the upstream's audio bit for bit"
            );
            println!("flac: bit-exact, {} samples", decoded.len());
        } else {
            close_to(format, &decoded, &want, 24_000, 0.95)?;
        }
    }
    // Server-sent events: the MP3 in deltas, every word of the input told in order beside it,
    // the usage at the end.
    let mut sse = serde_json::json!({"model": "tts-1", "voice": "alloy", "input": text});
    sse["stream_format"] = "sse".into();
    let answer = post(
        fx.relay_url(),
        RELAY_API_KEYS[0],
        sse.to_string().as_bytes(),
    )
    .await?;
    ensure!(
        answer.status == 200 && answer.header("content-type") == Some("text/event-stream"),
        "sse: {} {:?}",
        answer.status,
        answer.header("content-type")
    );
    let (mp3, words, done) = sse_events(&answer.body)?;
    ensure!(
        done["usage"]["input_tokens"] == text.chars().count(),
        "sse: usage {done}"
    );
    let decoded = orpheus_e2e::ffmpeg_decode(&mp3, &["-f", "mp3"], 24_000).await?;
    close_to("mp3 in server-sent events", &decoded, &want, 24_000, 0.95)?;
    let said: Vec<String> = words
        .iter()
        .map(|w| {
            let (at, len) = (
                w["char_index"].as_u64().unwrap_or(0),
                w["char_length"].as_u64().unwrap_or(0),
            );
            text.chars().skip(at as usize).take(len as usize).collect()
        })
        .collect();
    let expected: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    ensure!(said == expected, "sse words: {said:?}");
    let starts: Vec<f64> = words.iter().filter_map(|w| w["start"].as_f64()).collect();
    ensure!(
        starts.windows(2).all(|p| p[0] <= p[1])
            && starts
                .last()
                .is_some_and(|&s| s * 24_000.0 < want.len() as f64),
        "sse word starts out of order or past the audio: {starts:?}"
    );
    println!("sse: {} words told beside the audio", words.len());

    // At another rate, against the upstream's audio resampled by ffmpeg.
    for (format, rate, input) in [
        (
            "mulaw",
            8_000,
            &["-f", "mulaw", "-ar", "8000", "-ac", "1"][..],
        ),
        (
            "alaw",
            8_000,
            &["-f", "alaw", "-ar", "8000", "-ac", "1"][..],
        ),
        ("wav", 16_000, &["-f", "wav"][..]),
        ("wav", 22_050, &["-f", "wav"][..]),
        ("wav", 44_100, &["-f", "wav"][..]),
        ("mp3", 48_000, &["-f", "mp3"][..]),
        ("aac", 16_000, &["-f", "aac"][..]),
    ] {
        let rate_asked = (!format.ends_with("law")).then_some(rate);
        let answer = post(fx.relay_url(), RELAY_API_KEYS[0], &body(format, rate_asked)).await?;
        ensure!(
            answer.status == 200 && answer.header("x-sample-rate") == Some(&rate.to_string()),
            "{format} at {rate}: {} {:?}",
            answer.status,
            answer.header("x-sample-rate")
        );
        let mut decoded = orpheus_e2e::ffmpeg_decode(&answer.body, input, rate).await?;
        let raw: Vec<u8> = want.iter().flat_map(|s| s.to_le_bytes()).collect();
        let reference =
            orpheus_e2e::ffmpeg_decode(&raw, &["-f", "s16le", "-ar", "24000", "-ac", "1"], rate)
                .await?;
        if format == "aac" {
            decoded = unprimed(decoded, &reference)?;
        }
        close_to(
            &format!("{format} at {rate} Hz"),
            &decoded,
            &reference,
            rate,
            0.95,
        )?;
    }
    Ok(())
}

/// Real clients, unchanged but for their base URL and key: LiveKit Agents' OpenAI TTS plugin
/// (`synthesize` used standalone, no LiveKit server) with its defaults (gpt-4o-mini-tts, voice
/// ash, mp3 in server-sent events) and with wav; Pipecat's OpenAI TTS service (`run_tts` used
/// standalone, no pipeline) with its defaults (gpt-4o-mini-tts, voice alloy, pcm); the AI SDK's
/// `generateSpeech` with its OpenAI provider (tts-1, alloy); and docs/http.md's
/// `curl ... -o speech.mp3`. What each decodes (with its own decoder, or ffmpeg) is the
/// upstream's speech.
pub async fn http_clients(fx: &Fixture) -> TestResult {
    let text = english(400);
    let text_file = text_for_clients(fx, &text, "clients.txt")?;
    let want = samples_of(&orpheus_e2e::expected_pcm(&text));
    let dir = work_dir(fx)?;
    let text_arg = text_file.to_string_lossy().into_owned();
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let python_client = |what: String, script: &'static str, out: PathBuf, format: Option<&str>| {
        let mut command = tokio::process::Command::new(
            PathBuf::from(std::env::var("ORPHEUS_PYTHON_ENV").unwrap_or_default())
                .join("bin/python"),
        );
        command.arg(sdk.join(script)).args([
            fx.relay_url(),
            RELAY_API_KEYS[0],
            &text_arg,
            &out.to_string_lossy(),
        ]);
        command.args(format);
        speaks_pcm_at_24k(what, command, out, &want)
    };
    for format in [None, Some("wav")] {
        let what = format!(
            "LiveKit's plugin ({})",
            format.unwrap_or("its defaults: mp3, sse")
        );
        let out = dir.join(format!("livekit-{}.pcm", format.unwrap_or("default")));
        python_client(what, "livekit_tts.py", out, format).await?;
    }
    let what = "Pipecat's OpenAI TTS service (its defaults: alloy, pcm)".to_owned();
    python_client(what, "pipecat_tts.py", dir.join("pipecat.pcm"), None).await?;

    let out = dir.join("ai-sdk.audio");
    let mut command = tokio::process::Command::new("node");
    command.arg(sdk.join("ai_sdk_speech.mjs")).args([
        fx.relay_url(),
        RELAY_API_KEYS[0],
        &text_arg,
        &out.to_string_lossy(),
    ]);
    let run = client_run("the AI SDK's generateSpeech", command).await?;
    let media = String::from_utf8_lossy(&run.stdout).trim().to_owned();
    ensure!(media == "audio/mpeg", "the AI SDK got {media:?}");
    let audio = std::fs::read(&out).map_err(|e| e.to_string())?;
    let decoded = orpheus_e2e::ffmpeg_decode(&audio, &["-f", "mp3"], 24_000).await?;
    close_to(
        "the AI SDK's generateSpeech (mp3)",
        &decoded,
        &want,
        24_000,
        0.95,
    )?;

    // docs/http.md's curl, to a file named as OpenAI's quickstart names it.
    let out = dir.join("speech.mp3");
    let body = serde_json::json!({"model": "gpt-4o-mini-tts", "voice": "coral", "input": text})
        .to_string();
    let mut command = tokio::process::Command::new("curl");
    command.args([
        "-sS",
        "--fail",
        &format!("{}/v1/audio/speech", fx.relay_url()),
        "-H",
        &format!("Authorization: Bearer {}", RELAY_API_KEYS[0]),
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        "-o",
        &out.to_string_lossy(),
    ]);
    client_run("curl", command).await?;
    let audio = std::fs::read(&out).map_err(|e| e.to_string())?;
    let decoded = orpheus_e2e::ffmpeg_decode(&audio, &["-f", "mp3"], 24_000).await?;
    close_to("curl -o speech.mp3", &decoded, &want, 24_000, 0.95)
}

/// Runs a client that writes the PCM it decoded to `out` and prints its sample rate: the rate
/// must be 24 kHz and the audio the upstream's.
async fn speaks_pcm_at_24k(
    what: String,
    command: tokio::process::Command,
    out: PathBuf,
    want: &[i16],
) -> TestResult {
    let run = client_run(&what, command).await?;
    ensure!(
        String::from_utf8_lossy(&run.stdout).trim() == "24000",
        "{what}: rate {:?}",
        String::from_utf8_lossy(&run.stdout)
    );
    let decoded = samples_of(&std::fs::read(&out).map_err(|e| e.to_string())?);
    close_to(&what, &decoded, want, 24_000, 0.95)
}

/// Runs a client to its end (at most 120 s), which must succeed.
async fn client_run(
    what: &str,
    mut command: tokio::process::Command,
) -> TestResult<std::process::Output> {
    let run = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .map_err(|_| format!("{what} took over 120 s"))?
        .map_err(|e| format!("{what}: {e}"))?;
    ensure!(
        run.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(run)
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
            json(serde_json::json!({"model": MODEL, "voice": "bob", "input": "Hello."})),
            400,
            "unknown_voice",
        ),
        (
            "unknown model",
            json(serde_json::json!({"model": "tts-2", "voice": "troy", "input": "Hello."})),
            400,
            "unknown_model",
        ),
        (
            "a format nobody serves",
            json(
                serde_json::json!({"model": MODEL, "voice": "troy", "input": "Hi.", "response_format": "m4a"}),
            ),
            400,
            "unsupported_response_format",
        ),
        (
            "a rate opus cannot carry",
            json(
                serde_json::json!({"model": MODEL, "voice": "troy", "input": "Hi.", "response_format": "opus", "sample_rate": 44100}),
            ),
            400,
            "unsupported_sample_rate",
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
    // MP3 (the default) passes through the encoder Worker; WAV does not.
    for format in ["mp3", "wav"] {
        leave_mid_stream(fx, format)
            .await
            .map_err(|e| format!("{format}: {e}"))?;
    }
    Ok(())
}

/// A client of the endpoint that leaves once `format` audio is flowing: the upstream must be
/// left with nothing open.
async fn leave_mid_stream(fx: &Fixture, format: &str) -> TestResult {
    let host = fx.relay_url().trim_start_matches("http://").to_owned();
    // The upstream drips the first segment slowly, so the answer is mid-stream when the client
    // leaves.
    let text = format!("[[fault:chunk=4800;gap_ms=100]] {}", english(1500));
    let body = serde_json::json!({"model": MODEL, "voice": "troy", "input": text, "response_format": format})
        .to_string()
        .into_bytes();
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
