//! The server: Groq's request validation, its answers, and fault injection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orpheus_test_support::{pcm_bytes, wav, Quirks};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::fault::Fault;
use crate::http::{chunk, read_request, response_head, Request};
use crate::signal::{render_signal, SAMPLE_RATE};
use crate::SPEECH_PATH;

/// Where the audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// The deterministic test signal, this many samples per character (1600 is about speech rate).
    Signal {
        /// Samples rendered per input character.
        samples_per_char: usize,
    },
    /// Real (robotic) speech from espeak-ng, resampled to 24 kHz.
    Espeak,
}

/// How the server behaves for a whole run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The API key requests must present as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// Where audio comes from.
    pub engine: Engine,
    /// Fault applied to requests that carry no directive of their own.
    pub fault: Fault,
    /// Simulated generation time per input character before the first byte (Groq: about 10).
    pub ms_per_char: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_key: "groq-local-key".to_owned(),
            engine: Engine::Signal {
                samples_per_char: 1600,
            },
            fault: Fault::default(),
            ms_per_char: 0,
        }
    }
}

/// Live counters, shared with whoever started the server.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    audio_responses: AtomicU64,
    error_responses: AtomicU64,
    completed_bodies: AtomicU64,
    cut_short: AtomicU64,
    open_connections: AtomicI64,
    inputs: Mutex<Vec<String>>,
    /// Inputs already failed by a `once` fault.
    failed_once: Mutex<std::collections::HashSet<String>>,
    /// For the last [`TRUTH_KEPT`] inputs espeak-ng spoke, in arrival order: where their
    /// words begin.
    word_truth: Mutex<std::collections::VecDeque<(String, Truth)>>,
}

/// How many inputs' word truths are kept (a long-running upstream does not grow).
const TRUTH_KEPT: usize = 10_000;

/// Where espeak-ng said each word of an input: the ground truth of the word-timing tests and
/// benchmark. It stays in this process: the relay, as with Groq, sees only the WAV.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    /// The voice asked for.
    pub voice: String,
    /// The audio's length, in samples at [`SAMPLE_RATE`].
    pub samples: usize,
    /// Each word: its first character in the input, its length in characters, and the
    /// sample (at [`SAMPLE_RATE`]) its audio begins at.
    pub words: Vec<(usize, usize, usize)>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Speech requests received (valid or not).
    pub requests: u64,
    /// Requests answered with audio (a 200 head was sent).
    pub audio_responses: u64,
    /// Requests answered with an error status.
    pub error_responses: u64,
    /// Audio bodies written to the end.
    pub completed_bodies: u64,
    /// Speech responses the client closed before they were written in full.
    pub cut_short: u64,
    /// TCP connections currently open.
    pub open_connections: i64,
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::SeqCst),
            audio_responses: self.audio_responses.load(Ordering::SeqCst),
            error_responses: self.error_responses.load(Ordering::SeqCst),
            completed_bodies: self.completed_bodies.load(Ordering::SeqCst),
            cut_short: self.cut_short.load(Ordering::SeqCst),
            open_connections: self.open_connections.load(Ordering::SeqCst),
        }
    }

    /// The `input` of every valid speech request so far, in arrival order.
    pub fn inputs(&self) -> Vec<String> {
        self.inputs.lock().expect("stats lock").clone()
    }

    /// Where espeak-ng said the words of each input it spoke, in arrival order.
    pub fn word_truth(&self) -> Vec<(String, Truth)> {
        let kept = self.word_truth.lock().expect("stats lock");
        kept.iter().cloned().collect()
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenConnection(Arc<Stats>);

impl OpenConnection {
    fn new(stats: Arc<Stats>) -> Self {
        stats.open_connections.fetch_add(1, Ordering::SeqCst);
        Self(stats)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Binds 127.0.0.1 on an ephemeral port and serves in the background.
pub async fn spawn(config: Config) -> std::io::Result<(SocketAddr, Arc<Stats>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(Stats::default());
    tokio::spawn(serve(listener, Arc::new(config), stats.clone()));
    Ok((addr, stats))
}

/// Serves connections from `listener` forever.
pub async fn serve(listener: TcpListener, config: Arc<Config>, stats: Arc<Stats>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (config, stats) = (config.clone(), stats.clone());
        tokio::spawn(async move {
            let _open = OpenConnection::new(stats.clone());
            let _ = handle(stream, &config, &stats).await;
        });
    }
}

/// The peer side of a connection: resolves when the client closes or resets it.
struct Peer {
    write: OwnedWriteHalf,
    closed: oneshot::Receiver<()>,
}

/// Why the response stopped early.
struct Gone;

impl Peer {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), Gone> {
        tokio::select! {
            written = async {
                self.write.write_all(bytes).await?;
                self.write.flush().await
            } => written.map_err(|_| Gone),
            _ = &mut self.closed => Err(Gone),
        }
    }

    /// Sleeps, unless the client goes away first.
    async fn wait(&mut self, ms: u64) -> Result<(), Gone> {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
            _ = &mut self.closed => Err(Gone),
        }
    }
}

async fn handle(stream: TcpStream, config: &Config, stats: &Stats) -> Result<(), Gone> {
    stream.set_nodelay(true).ok();
    let (mut read, write) = stream.into_split();
    let request = match tokio::time::timeout(Duration::from_secs(30), read_request(&mut read)).await
    {
        Ok(Ok(Some(request))) => request,
        _ => return Ok(()),
    };
    let (closed_tx, closed) = oneshot::channel();
    tokio::spawn(async move {
        let mut sink = [0u8; 512];
        use tokio::io::AsyncReadExt;
        while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
        let _ = closed_tx.send(());
    });
    let mut peer = Peer { write, closed };
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", SPEECH_PATH) => {
            let served = speech(&mut peer, &request, config, stats).await;
            if served.is_err() {
                stats.cut_short.fetch_add(1, Ordering::SeqCst);
            }
            served
        }
        ("GET", "/_stats") => {
            let body = serde_json::to_vec(&stats.snapshot()).expect("stats serialise");
            let headers = [("content-type", "application/json".to_owned())];
            peer.write(&response_head(200, &headers, Some(body.len())))
                .await?;
            peer.write(&body).await
        }
        _ => {
            let message = format!(
                "Unknown request URL: {} {}. Please check the URL for typos.",
                request.method, request.path
            );
            let body = error_body(&message, "invalid_request_error", "unknown_url", 0);
            send_error(&mut peer, 404, &body, None).await
        }
    }
}

/// Rate-limit headers as Groq sends them on every response.
fn rate_limit_headers(remaining: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit-requests", "100".to_owned()),
        ("x-ratelimit-remaining-requests", remaining.to_string()),
        ("x-ratelimit-reset-requests", "14m24s".to_owned()),
        ("x-ratelimit-limit-tokens", "3600".to_owned()),
        ("x-ratelimit-remaining-tokens", "3400".to_owned()),
        ("x-ratelimit-reset-tokens", "7.66s".to_owned()),
    ]
}

/// A Groq error body, padded with `pad_kb` KiB of trailing white space.
fn error_body(message: &str, kind: &str, code: &str, pad_kb: usize) -> Vec<u8> {
    let mut body = json!({"error": {"message": message, "type": kind, "code": code}})
        .to_string()
        .into_bytes();
    body.resize(body.len() + pad_kb * 1024, b' ');
    body
}

async fn send_error(
    peer: &mut Peer,
    status: u16,
    body: &[u8],
    retry_after: Option<u32>,
) -> Result<(), Gone> {
    let mut headers = rate_limit_headers(0);
    headers.push(("content-type", "application/json".to_owned()));
    if let Some(seconds) = retry_after {
        headers.push(("retry-after", seconds.to_string()));
    }
    peer.write(&response_head(status, &headers, Some(body.len())))
        .await?;
    peer.write(body).await
}

/// Voices per model, as Groq serves them.
fn model_voices(model: &str) -> Option<&'static [&'static str]> {
    match model {
        "canopylabs/orpheus-v1-english" => {
            Some(&["autumn", "diana", "hannah", "austin", "daniel", "troy"])
        }
        "canopylabs/orpheus-arabic-saudi" => Some(&["fahad", "sultan", "lulwa", "noura"]),
        _ => None,
    }
}

/// Validates a speech request like Groq; on success returns (model, voice, input).
fn validate(
    request: &Request,
    config: &Config,
) -> Result<(String, String, String), (u16, String, &'static str)> {
    let expected = format!("Bearer {}", config.api_key);
    if request.header("authorization") != Some(expected.as_str()) {
        return Err((401, "Invalid API Key".to_owned(), "invalid_api_key"));
    }
    let body: Value = serde_json::from_slice(&request.body).map_err(|_| {
        (
            400,
            "We could not parse the JSON body of your request.".to_owned(),
            "invalid_request",
        )
    })?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let missing = |name: &str| {
        (
            400,
            format!("'{name}' : property '{name}' is missing"),
            "invalid_request",
        )
    };
    let model = field("model").ok_or_else(|| missing("model"))?;
    let voice = field("voice").ok_or_else(|| missing("voice"))?;
    let input = field("input").ok_or_else(|| missing("input"))?;
    let voices = model_voices(&model).ok_or_else(|| {
        (
            404,
            format!("The model `{model}` does not exist or you do not have access to it."),
            "model_not_found",
        )
    })?;
    if !voices.contains(&voice.as_str()) {
        return Err((
            400,
            format!("voice must be one of [{}]", voices.join(" ")),
            "invalid_request",
        ));
    }
    if input.is_empty() || input.chars().count() > 200 {
        return Err((
            400,
            "input must be between 1 and 200 characters".to_owned(),
            "invalid_request",
        ));
    }
    if body.get("response_format").is_some_and(|f| f != "wav") {
        return Err((
            400,
            "response_format must be one of [wav]".to_owned(),
            "invalid_request",
        ));
    }
    Ok((model, voice, input))
}

async fn speech(
    peer: &mut Peer,
    request: &Request,
    config: &Config,
    stats: &Stats,
) -> Result<(), Gone> {
    let served = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let (model, voice, input) = match validate(request, config) {
        Ok(valid) => valid,
        Err((status, message, code)) => {
            stats.error_responses.fetch_add(1, Ordering::SeqCst);
            let body = error_body(&message, "invalid_request_error", code, 0);
            return send_error(peer, status, &body, None).await;
        }
    };
    stats.inputs.lock().expect("stats lock").push(input.clone());
    let fault = match Fault::from_input(&input) {
        Some(Ok(fault)) => fault,
        Some(Err(_)) | None => config.fault.clone(),
    };
    peer.wait(fault.delay_ms + config.ms_per_char * input.chars().count() as u64)
        .await?;
    if fault.stall_head {
        // Hold the connection open without answering, until the client gives up (bounded).
        return peer.wait(300_000).await;
    }
    let status = fault.status.filter(|_| {
        !fault.once
            || stats
                .failed_once
                .lock()
                .expect("stats lock")
                .insert(input.clone())
    });
    if let Some(status) = status {
        stats.error_responses.fetch_add(1, Ordering::SeqCst);
        let (kind, default_code, message) = match status {
            429 => ("requests", "rate_limit_exceeded", format!("Rate limit reached for model `{model}` in organization `org_01localsecret` service tier `on_demand` on requests per minute (RPM): Limit 10, Used 10, Requested 1. Please try again in {}s.", fault.retry_after.unwrap_or(6))),
            400 => ("invalid_request_error", "invalid_request", format!("The model `{model}` requires terms acceptance. Please have the org admin of org_01localsecret accept the terms.")),
            401 => ("invalid_request_error", "invalid_api_key", "Invalid API Key".to_owned()),
            _ => ("internal_server_error", "service_unavailable", "Service Unavailable for org_01localsecret".to_owned()),
        };
        let code = fault.code.as_deref().unwrap_or(default_code);
        let body = error_body(&message, kind, code, fault.pad_error_kb);
        return send_error(peer, status, &body, fault.retry_after).await;
    }
    let pcm = match &config.engine {
        Engine::Signal { samples_per_char } => render_signal(&input, *samples_per_char),
        Engine::Espeak => {
            let text = unsaid_blanked(&input);
            match espeak_speech(&text, &voice).await {
                Some((pcm, truth)) => {
                    let mut kept = stats.word_truth.lock().expect("stats lock");
                    if kept.len() == TRUTH_KEPT {
                        kept.pop_front();
                    }
                    kept.push_back((input.clone(), truth));
                    pcm
                }
                None => render_signal(&input, 1600),
            }
        }
    };
    let quirks = Quirks {
        extra_chunks: fault.extra_chunks,
    };
    let body = wav(SAMPLE_RATE, &pcm_bytes(&pcm), quirks);
    let mut headers = rate_limit_headers(100u64.saturating_sub(served));
    headers.push(("content-type", "audio/wav".to_owned()));
    let status = fault.ok_status.unwrap_or(200);
    if status == 204 {
        return peer.write(&response_head(204, &headers, None)).await;
    }
    peer.write(&response_head(status, &headers, None)).await?;
    stats.audio_responses.fetch_add(1, Ordering::SeqCst);
    let mut at = 0;
    if fault.split_header {
        for end in [3, 9, 20, 37] {
            peer.write(&chunk(&body[at..end])).await?;
            peer.wait(5).await?;
            at = end;
        }
    }
    let piece = fault.chunk.unwrap_or(16 * 1024);
    // Deterministic per input, so a failing run can be replayed.
    let mut jitter = input.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    while at < body.len() {
        let mut end = (at + piece).min(body.len());
        if let Some(limit) = fault.reset_after.filter(|&n| n < end) {
            peer.write(&chunk(&body[at..limit.max(at)])).await?;
            // SO_LINGER 0 turns the close into a TCP reset (and never blocks on drop).
            let _ = socket2::SockRef::from(peer.write.as_ref()).set_linger(Some(Duration::ZERO));
            return Err(Gone);
        }
        if let Some(limit) = fault.stall_after.filter(|&n| n < end) {
            end = limit.max(at);
            if end > at {
                peer.write(&chunk(&body[at..end])).await?;
            }
            return peer.wait(300_000).await;
        }
        peer.write(&chunk(&body[at..end])).await?;
        at = end;
        if (fault.gap_ms > 0 || fault.jitter_ms > 0) && at < body.len() {
            jitter = jitter
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let extra = if fault.jitter_ms > 0 {
                (jitter >> 33) % (fault.jitter_ms + 1)
            } else {
                0
            };
            peer.wait(fault.gap_ms + extra).await?;
        }
    }
    peer.write(&chunk(&[])).await?;
    stats.completed_bodies.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// `input` as espeak-ng should say it: a fault directive and Orpheus' vocal directions
/// (`[cheerful]`, which set the voice and are not read) turned to spaces, so that the word
/// truth's character positions are still the input's.
fn unsaid_blanked(input: &str) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        let close = (chars[i] == '[')
            .then(|| chars[i..].iter().take(64).position(|&c| c == ']'))
            .flatten();
        match close {
            Some(len) => {
                // A fault directive closes with "]]".
                let end = if chars.get(i + 1) == Some(&'[') {
                    i + len + 2
                } else {
                    i + len + 1
                };
                let end = end.min(chars.len());
                out[i..end].iter_mut().for_each(|c| *c = ' ');
                i = end;
            }
            None => i += 1,
        }
    }
    out.into_iter().collect()
}

/// The espeak-ng voice and speaking rate (words a minute) each Orpheus voice is stood in for
/// by: two genders, American and British English, rates from 145 to 190.
fn espeak_voice(voice: &str) -> (&'static str, u32) {
    match voice {
        "austin" => ("en-us+m1", 190),
        "daniel" => ("en+m3", 150),
        "autumn" => ("en-us+f3", 165),
        "diana" => ("en-us+f2", 185),
        "hannah" => ("en+f3", 145),
        "fahad" | "sultan" => ("ar+m3", 165),
        "lulwa" | "noura" => ("ar+f3", 165),
        _ => ("en-us+m3", 165),
    }
}

/// Speaks `text` with espeak-ng (its library, so that its word events come too) and resamples
/// it to 24 kHz.
async fn espeak_speech(text: &str, voice: &str) -> Option<(Vec<i16>, Truth)> {
    let (variant, rate) = espeak_voice(voice);
    let text = text.to_owned();
    let spoken = tokio::task::spawn_blocking(move || crate::espeak::speak(&text, variant, rate))
        .await
        .ok()??;
    let pcm = resample_linear(&spoken.pcm, spoken.rate, SAMPLE_RATE);
    let per_ms = SAMPLE_RATE as usize / 1000;
    let truth = Truth {
        voice: voice.to_owned(),
        samples: pcm.len(),
        words: spoken
            .words
            .iter()
            .map(|w| (w.char_at, w.chars, w.audio_ms as usize * per_ms))
            .collect(),
    };
    Some((pcm, truth))
}

fn resample_linear(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if input.is_empty() || from == to {
        return input.to_vec();
    }
    let len = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    (0..len)
        .map(|i| {
            let pos = i as f64 * f64::from(from) / f64::from(to);
            let k = pos as usize;
            let frac = pos - k as f64;
            let a = f64::from(input[k]);
            let b = f64::from(*input.get(k + 1).unwrap_or(&input[k]));
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn espeak_is_spared_the_directions_and_the_positions_stay_the_inputs() {
        let input = "a [[fault:stall_head]]b [cheerful] c [not closed";
        let said = unsaid_blanked(input);
        let blank = |n: usize| " ".repeat(n);
        assert_eq!(
            said,
            format!("a {}b {} c [not closed", blank(20), blank(10))
        );
        assert_eq!(said.chars().count(), input.chars().count());
    }
}
