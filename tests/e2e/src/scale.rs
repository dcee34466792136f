//! The load benchmark's engine: many protocol v2 listeners on one relay, each speaking short
//! replies one after another, playing what arrives in real time as the player does, while the
//! relay's workerd is measured.
//!
//! A listener's clock is the player's: a frame that arrives after the audio before it has
//! finished playing starts late (an underrun the listener hears), and what follows is scheduled
//! after it. A frame's lateness is that wait; the figures report its percentiles over every
//! frame of every message.
//!
//! Two shapes of load: the ramp's steps ([`run_step`]), sessions speaking replies one after
//! another, and a burst ([`run_burst`]), sessions that all connect and speak in the same second.
//! And the same replies over the HTTP endpoint in one format ([`run_http_step`]), to set what an
//! encoded answer costs beside a PCM one.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use orpheus_protocol::{
    AudioEncoding, AudioFrame, EndReason, OpusFrame, ServerMessage, OPUS_FRAME_VERSION,
};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{self, Endpoint};
use crate::{
    http_exchange, percentile, Relay, Socket, TestResult, RELAY_API_KEYS, SAMPLES_PER_CHAR,
    TEST_ORIGIN, TEST_SECRET,
};

const RATE: f64 = 24_000.0;
/// How long a listener waits after the run's time for its last message to end.
const DRAIN: Duration = Duration::from_secs(60);
/// At most this many sessions connect at once.
const CONNECTING: usize = 25;

/// Sentences an agent might say; a reply is one to three of them.
const SENTENCES: [&str; 8] = [
    "Sure, I can help with that.",
    "The next train leaves at a quarter past three from platform nine.",
    "Your order has shipped and should arrive on Thursday.",
    "I have moved the meeting to tomorrow morning at ten.",
    "It looks like rain this afternoon, so take an umbrella.",
    "Is there anything else you would like me to check?",
    "The total comes to forty two dollars, including delivery.",
    "Let me look that up for you, it will only take a moment.",
];

/// Client `index`'s own random numbers in a run seeded `seed`.
fn client_rng(seed: u64, index: usize) -> orpheus_test_support::Rng {
    orpheus_test_support::rng(seed ^ ((index as u64 + 1) * 0x9E37_79B9))
}

/// A reply an agent might give: one to three of [`SENTENCES`].
fn reply(rng: &mut orpheus_test_support::Rng) -> String {
    let sentences: Vec<&str> = (0..rng.usize(1..=3))
        .map(|_| SENTENCES[rng.usize(..SENTENCES.len())])
        .collect();
    sentences.join(" ")
}

/// One step of the ramp.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Sessions connected and speaking.
    pub sessions: usize,
    /// How long they keep starting messages, once all are connected.
    pub duration: Duration,
    /// Seeds the texts and pauses.
    pub seed: u64,
    /// How the listeners ask for their audio (a WebSocket step; the HTTP one asks a format).
    pub encoding: AudioEncoding,
}

/// What one step measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Sessions in the step.
    pub sessions: usize,
    /// Messages that ended `done`.
    pub done: u64,
    /// Messages that ended otherwise, or not at all.
    pub failed: u64,
    /// How those messages ended (`reason` or `reason code`), with counts.
    pub failures: BTreeMap<String, u64>,
    /// Seconds of audio the listeners received.
    pub audio_s: f64,
    /// Frames received.
    pub frames: u64,
    /// Bytes of audio frames received per second of audio.
    pub bytes_per_audio_s: f64,
    /// Frame lateness against real-time playback: p50 and p99, in milliseconds.
    pub late_p50_ms: f64,
    /// See `late_p50_ms`.
    pub late_p99_ms: f64,
    /// workerd CPU time per second of audio relayed, in milliseconds.
    pub cpu_ms_per_audio_s: f64,
    /// Share of one core workerd used over the step.
    pub cpu_share: f64,
    /// workerd's resident memory at the end of the step, in bytes.
    pub rss: u64,
}

/// What one listener saw.
#[derive(Default)]
struct Tally {
    done: u64,
    failures: BTreeMap<String, u64>,
    samples: u64,
    /// Bytes of the audio frames.
    bytes: u64,
    lateness_ms: Vec<f64>,
    /// From each `speak` to its first audio frame.
    first_audio_ms: Vec<f64>,
}

impl Tally {
    fn ended(&mut self, ended: Option<String>) {
        match ended {
            None => self.done += 1,
            Some(reason) => *self.failures.entry(reason).or_default() += 1,
        }
    }

    fn add(&mut self, other: Tally) {
        self.done += other.done;
        for (reason, count) in other.failures {
            *self.failures.entry(reason).or_default() += count;
        }
        self.samples += other.samples;
        self.bytes += other.bytes;
        self.lateness_ms.extend(other.lateness_ms);
        self.first_audio_ms.extend(other.first_audio_ms);
    }
}

/// Runs one step against `relay`: connects `step.sessions` listeners straight to the workerd
/// that runs the Worker ([`Relay::worker_url`]), lets them speak for `step.duration`, waits for
/// their last messages, and measures workerd over the speaking time.
pub async fn run_step(relay: &Relay, step: Step) -> TestResult<Figures> {
    let endpoint = endpoint(relay)?;
    let mut sockets = Vec::with_capacity(step.sessions);
    for batch in (0..step.sessions).collect::<Vec<_>>().chunks(CONNECTING) {
        let ids: Vec<String> = batch.iter().map(|&index| session_id(step, index)).collect();
        let opening = ids.iter().map(|sid| connect(&endpoint, sid));
        for socket in futures_util::future::join_all(opening).await {
            sockets.push(socket?);
        }
    }
    let (cpu_before, started) = (relay.workerd_cpu()?, Instant::now());
    let deadline = started + step.duration;
    let listeners = sockets
        .into_iter()
        .enumerate()
        .map(|(index, socket)| listen(socket, step, index, deadline));
    let tallies = futures_util::future::join_all(listeners).await;
    let (cpu_after, elapsed) = (relay.workerd_cpu()?, started.elapsed());
    let rss = relay
        .workerd_rss()
        .ok_or("workerd's memory could not be read")?;

    let mut total = Tally::default();
    for tally in tallies {
        total.add(tally?);
    }
    total.lateness_ms.sort_by(f64::total_cmp);
    let late = |p| {
        if total.lateness_ms.is_empty() {
            f64::NAN
        } else {
            percentile(&total.lateness_ms, p)
        }
    };
    let audio_s = total.samples as f64 / RATE;
    let cpu_ms = (cpu_after - cpu_before).as_secs_f64() * 1000.0;
    Ok(Figures {
        sessions: step.sessions,
        done: total.done,
        failed: total.failures.values().sum(),
        failures: total.failures,
        audio_s,
        frames: total.lateness_ms.len() as u64,
        bytes_per_audio_s: total.bytes as f64 / audio_s,
        late_p50_ms: late(50.0),
        late_p99_ms: late(99.0),
        cpu_ms_per_audio_s: cpu_ms / audio_s,
        cpu_share: cpu_ms / (elapsed.as_secs_f64() * 1000.0),
        rss,
    })
}

fn session_id(step: Step, index: usize) -> String {
    format!("scale-{}-{}-{index}", std::process::id(), step.sessions)
}

fn endpoint(relay: &Relay) -> TestResult<Endpoint> {
    Ok(Endpoint {
        base: relay.worker_url()?.replace("http://", "ws://"),
        secret: TEST_SECRET.to_owned(),
        origin: TEST_ORIGIN.to_owned(),
    })
}

/// Connects session `sid` (protocol v2) and waits for its `ready`.
async fn connect(endpoint: &Endpoint, sid: &str) -> TestResult<Socket> {
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut socket = load::connect(endpoint, sid, true, give_up).await?;
    // The `ready`.
    match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
        Ok(Some(Ok(Message::Text(_)))) => Ok(socket),
        other => Err(format!("{sid}: no ready: {other:?}")),
    }
}

/// A message being played.
struct Playing {
    stream: Option<u32>,
    received: u64,
    /// When the audio scheduled so far finishes playing; `None` before the first frame.
    plays_until: Option<Instant>,
    /// When the first frame arrived: the play cursor is the time since, capped by what arrived
    /// and held back by every underrun.
    started: Option<Instant>,
    /// Time lost to underruns so far.
    stalled: Duration,
}

impl Playing {
    fn new() -> Self {
        Self {
            stream: None,
            received: 0,
            plays_until: None,
            started: None,
            stalled: Duration::ZERO,
        }
    }

    /// Schedules a frame of `samples` arriving `now`; returns how late it is.
    fn schedule(&mut self, samples: u32, now: Instant) -> Duration {
        let late = match self.plays_until {
            Some(until) if now > until => now - until,
            _ => Duration::ZERO,
        };
        self.stalled += late;
        self.started.get_or_insert(now);
        let from = self.plays_until.map_or(now, |until| until.max(now));
        self.plays_until = Some(from + Duration::from_secs_f64(f64::from(samples) / RATE));
        self.received += u64::from(samples);
        late
    }

    fn played(&self, now: Instant) -> u64 {
        let Some(started) = self.started else {
            return 0;
        };
        let playing = now.duration_since(started).saturating_sub(self.stalled);
        ((playing.as_secs_f64() * RATE) as u64).min(self.received)
    }
}

/// One listener: speaks replies until `deadline`, each after the last one ended and a pause.
async fn listen(
    mut socket: Socket,
    step: Step,
    index: usize,
    deadline: Instant,
) -> TestResult<Tally> {
    let sid = session_id(step, index);
    let mut rng = client_rng(step.seed, index);
    let mut tally = Tally::default();
    // Sessions start at different moments, as users do.
    tokio::time::sleep(Duration::from_millis(rng.u64(0..2000))).await;
    let mut number = 0;
    while Instant::now() < deadline {
        number += 1;
        let id = format!("m{number}");
        let mut speak = serde_json::json!({"type": "speak", "id": id, "text": reply(&mut rng)});
        if step.encoding == AudioEncoding::Opus {
            speak["encoding"] = "opus".into();
        }
        send(&mut socket, speak.to_string()).await?;
        let ended = play(&mut socket, &mut tally, Instant::now(), deadline + DRAIN).await;
        tally.ended(ended.map_err(|e| format!("{sid}: {e}"))?);
        tokio::time::sleep(Duration::from_millis(rng.u64(300..1500))).await;
    }
    let _ = socket.close(None).await;
    Ok(tally)
}

/// The stream samples an audio frame carries, PCM or Opus (taken as heard when they arrive:
/// the load measures the relay, not a decoder).
fn samples_of(bytes: &[u8]) -> TestResult<u32> {
    if bytes.first() == Some(&OPUS_FRAME_VERSION) {
        return Ok(OpusFrame::decode(bytes).map_err(|e| e.to_string())?.samples);
    }
    Ok(AudioFrame::decode(bytes)
        .map_err(|e| e.to_string())?
        .samples())
}

async fn send(socket: &mut Socket, text: String) -> TestResult {
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|e| e.to_string())
}

/// Plays one message, asked for at `sent`, to its `end`, reporting the cursor; `None` if it
/// ended `done`, else how it ended.
async fn play(
    socket: &mut Socket,
    tally: &mut Tally,
    sent: Instant,
    give_up: Instant,
) -> TestResult<Option<String>> {
    let mut playing = Playing::new();
    let mut report_at = Instant::now();
    let too_late = tokio::time::sleep_until(give_up);
    tokio::pin!(too_late);
    loop {
        tokio::select! {
            frame = socket.next() => {
                let now = Instant::now();
                match frame {
                    Some(Ok(Message::Binary(bytes))) => {
                        let samples = samples_of(&bytes)?;
                        if playing.started.is_none() {
                            tally.first_audio_ms.push((now - sent).as_secs_f64() * 1000.0);
                        }
                        let late = playing.schedule(samples, now);
                        tally.samples += u64::from(samples);
                        tally.bytes += bytes.len() as u64;
                        tally.lateness_ms.push(late.as_secs_f64() * 1000.0);
                    }
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(ServerMessage::Start { stream, .. }) => playing.stream = Some(stream),
                        Ok(ServerMessage::End { reason: EndReason::Done, .. }) => return Ok(None),
                        Ok(ServerMessage::End { reason, error, .. }) => {
                            let code = error.map(|e| format!(" {}", e.code.as_str()));
                            return Ok(Some(format!("{}{}", reason.as_str(), code.unwrap_or_default())));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(format!("unreadable: {e:?}")),
                    },
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("the relay closed the socket".into()),
                }
            }
            _ = tokio::time::sleep_until(report_at) => {
                // As often as the player reports: less often with plenty ahead.
                let played = playing.played(Instant::now());
                let every = orpheus_protocol::report_interval_ms(playing.received - played, RATE as u32);
                report_at += Duration::from_millis(every);
                if let Some(stream) = playing.stream {
                    let report = serde_json::json!({
                        "type": "played", "stream": stream, "played": played,
                        "received": playing.received,
                    });
                    send(socket, report.to_string()).await?;
                }
            }
            _ = &mut too_late => return Ok(Some("never".into())),
        }
    }
}

/// What a burst measured.
#[derive(Debug, Clone)]
pub struct Burst {
    /// Sessions in the burst.
    pub sessions: usize,
    /// Messages that ended `done`.
    pub done: u64,
    /// Sessions that did not (a message's `reason` or `reason code`, or why it never spoke).
    pub failures: BTreeMap<String, u64>,
    /// From a session's start to its `ready`, in milliseconds, sorted.
    pub connect_ms: Vec<f64>,
    /// From a session's `speak` to its first audio frame, in milliseconds, sorted.
    pub first_audio_ms: Vec<f64>,
    /// Every frame's lateness against real-time playback, in milliseconds, sorted.
    pub lateness_ms: Vec<f64>,
}

/// A burst on `relay`: `sessions` sessions, straight to the workerd that runs the Worker, each
/// starting at a random moment of the same second, connect (protocol v2) and speak `text` once,
/// played in real time to its end. Nothing paces them: that is the burst.
pub async fn run_burst(relay: &Relay, sessions: usize, text: &str, seed: u64) -> TestResult<Burst> {
    let endpoint = endpoint(relay)?;
    let runs = (0..sessions).map(|index| burst_session(&endpoint, sessions, index, text, seed));
    let mut total = Tally::default();
    let mut connect_ms = Vec::new();
    for (connected, tally) in futures_util::future::join_all(runs).await {
        connect_ms.extend(connected);
        total.add(tally);
    }
    let sorted = |mut ms: Vec<f64>| {
        ms.sort_by(f64::total_cmp);
        ms
    };
    Ok(Burst {
        sessions,
        done: total.done,
        failures: total.failures,
        connect_ms: sorted(connect_ms),
        first_audio_ms: sorted(total.first_audio_ms),
        lateness_ms: sorted(total.lateness_ms),
    })
}

/// One session of a burst: how long it took to connect (if it did), and what it heard.
async fn burst_session(
    endpoint: &Endpoint,
    sessions: usize,
    index: usize,
    text: &str,
    seed: u64,
) -> (Option<f64>, Tally) {
    let mut rng = client_rng(seed, index);
    let mut tally = Tally::default();
    tokio::time::sleep(Duration::from_millis(rng.u64(0..1000))).await;
    let started = Instant::now();
    let sid = format!("burst-{}-{sessions}-{index}", std::process::id());
    let mut socket = match connect(endpoint, &sid).await {
        Ok(socket) => socket,
        Err(e) => {
            tally.ended(Some(format!("not connected: {e}")));
            return (None, tally);
        }
    };
    let connected = started.elapsed().as_secs_f64() * 1000.0;
    let speak = serde_json::json!({"type": "speak", "id": "m1", "text": text});
    let ended = match send(&mut socket, speak.to_string()).await {
        Ok(()) => {
            let sent = Instant::now();
            play(&mut socket, &mut tally, sent, sent + DRAIN).await
        }
        Err(e) => Err(e),
    };
    tally.ended(ended.unwrap_or_else(|e| Some(format!("lost: {e}"))));
    let _ = socket.close(None).await;
    (Some(connected), tally)
}

/// What one HTTP step measured.
#[derive(Debug, Clone)]
pub struct HttpFigures {
    /// The `response_format` asked for.
    pub format: String,
    /// Answers read whole with status 200.
    pub answered: u64,
    /// Requests that got another status or no answer (with counts).
    pub failures: BTreeMap<String, u64>,
    /// Seconds of audio the upstream made for the step's requests.
    pub audio_s: f64,
    /// Bytes of the answers' bodies.
    pub bytes: u64,
    /// workerd CPU time per second of audio, in milliseconds.
    pub cpu_ms_per_audio_s: f64,
    /// Share of one core workerd used over the step.
    pub cpu_share: f64,
}

/// Runs one HTTP step against `relay` (with the upstream whose record is `upstream`): `sessions`
/// clients, straight to the workerd that runs the Worker, each asking `POST /v1/audio/speech`
/// for replies in `format` one after another for `step.duration` (the segment cache off, so
/// every segment is asked of the upstream), reading each answer whole. workerd is measured until
/// the last answer is in; the audio is what the upstream made for the step's requests.
pub async fn run_http_step(
    relay: &Relay,
    upstream: &groq_local::Stats,
    step: Step,
    format: &str,
) -> TestResult<HttpFigures> {
    let base = relay.worker_url()?;
    let said_before = upstream.inputs().len();
    let (cpu_before, started) = (relay.workerd_cpu()?, Instant::now());
    let deadline = started + step.duration;
    let clients = (0..step.sessions).map(|index| ask(&base, step, index, format, deadline));
    let mut figures = HttpFigures {
        format: format.to_owned(),
        answered: 0,
        failures: BTreeMap::new(),
        audio_s: 0.0,
        bytes: 0,
        cpu_ms_per_audio_s: f64::NAN,
        cpu_share: 0.0,
    };
    for (answered, bytes, failures) in futures_util::future::join_all(clients).await {
        figures.answered += answered;
        figures.bytes += bytes;
        for (why, count) in failures {
            *figures.failures.entry(why).or_default() += count;
        }
    }
    let (cpu_after, elapsed) = (relay.workerd_cpu()?, started.elapsed());
    let chars: usize = upstream.inputs()[said_before..]
        .iter()
        .map(|input| input.chars().count())
        .sum();
    figures.audio_s = (chars * SAMPLES_PER_CHAR) as f64 / RATE;
    let cpu_ms = (cpu_after - cpu_before).as_secs_f64() * 1000.0;
    figures.cpu_ms_per_audio_s = cpu_ms / figures.audio_s;
    figures.cpu_share = cpu_ms / (elapsed.as_secs_f64() * 1000.0);
    Ok(figures)
}

/// One HTTP client of a step: how many answers it read whole, their bytes, and its failures.
async fn ask(
    base: &str,
    step: Step,
    index: usize,
    format: &str,
    deadline: Instant,
) -> (u64, u64, BTreeMap<String, u64>) {
    let mut rng = client_rng(step.seed, index);
    let (mut answered, mut bytes, mut failures) = (0, 0, BTreeMap::new());
    let auth = format!("Bearer {}", RELAY_API_KEYS[0]);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("x-orpheus-cache", "off"),
    ];
    tokio::time::sleep(Duration::from_millis(rng.u64(0..2000))).await;
    while Instant::now() < deadline {
        let body = serde_json::json!({
            "model": "canopylabs/orpheus-v1-english", "voice": "troy",
            "input": reply(&mut rng), "response_format": format,
        })
        .to_string();
        match http_exchange(base, "POST", "/v1/audio/speech", &headers, body.as_bytes()).await {
            Ok(answer) if answer.status == 200 => {
                answered += 1;
                bytes += answer.body.len() as u64;
            }
            Ok(answer) => {
                *failures
                    .entry(format!("status {}", answer.status))
                    .or_default() += 1
            }
            Err(e) => *failures.entry(e).or_default() += 1,
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(300..1500))).await;
    }
    (answered, bytes, failures)
}

/// The ramp as a picture: frame lateness (p50, p99, on a log scale from 1 ms) and workerd CPU per
/// second of audio against the number of sessions, as an SVG document.
pub fn ramp_svg(ramp: &[Figures]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 60.0;
    const TOP: f64 = 30.0;
    /// Room on the right for the last step's label.
    const RIGHT: f64 = 60.0;
    let x = |i: usize| LEFT + (W - LEFT - RIGHT) * i as f64 / (ramp.len().max(2) - 1) as f64;
    let axes = |top: f64, title: &str| {
        format!(
            "<text x=\"{LEFT}\" y=\"{}\" font-weight=\"bold\">{title}</text>\n\
             <line x1=\"{LEFT}\" y1=\"{top}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"#888\"/>\n\
             <line x1=\"{LEFT}\" y1=\"{1}\" x2=\"{}\" y2=\"{1}\" stroke=\"#888\"/>\n",
            top - 8.0,
            top + H,
            W - RIGHT,
        )
    };
    let tick = |y: f64, label: &str, colour: &str, dashed: bool| {
        format!(
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"{colour}\" \
             stroke-opacity=\"0.4\"{}/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" \
             fill=\"{colour}\">{label}</text>\n",
            W - RIGHT,
            if dashed {
                " stroke-dasharray=\"4 4\""
            } else {
                ""
            },
            LEFT - 6.0,
            y + 4.0
        )
    };
    let line = |row: usize, top: f64, name: &str, colour: &str, ys: Vec<Option<f64>>| {
        let points: Vec<String> = ys
            .iter()
            .enumerate()
            .filter_map(|(i, y)| y.map(|y| format!("{:.1},{y:.1}", x(i))))
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n",
            points.join(" "),
            LEFT + 10.0,
            top + 16.0 + 16.0 * row as f64
        )
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n",
        2.0 * H + 3.0 * TOP + 30.0
    );

    // Lateness: log10 from 1 ms (0 ms is drawn at 1 ms) to the next power of ten above the worst.
    let worst = ramp
        .iter()
        .map(|f| f.late_p99_ms)
        .filter(|v| v.is_finite())
        .fold(100.0f64, f64::max);
    let decades = worst.log10().ceil().max(2.0);
    let late_y = |ms: f64| TOP + H - H * ms.max(1.0).log10() / decades;
    svg += &axes(
        TOP,
        "Frame lateness at the listener (ms, log scale; 0 drawn at 1)",
    );
    for decade in 0..=decades as i32 {
        let ms = 10f64.powi(decade);
        svg += &tick(late_y(ms), &format!("{ms}"), "#888", false);
    }
    svg += &tick(late_y(50.0), "50", "#c00", true);
    let late = |f: fn(&Figures) -> f64| -> Vec<Option<f64>> {
        ramp.iter()
            .map(|r| Some(f(r)).filter(|v| v.is_finite()).map(late_y))
            .collect()
    };
    svg += &line(0, TOP, "p99", "#c60", late(|f| f.late_p99_ms));
    svg += &line(1, TOP, "p50", "#06c", late(|f| f.late_p50_ms));

    // CPU: linear from 0.
    let top = 2.0 * TOP + H;
    let most = ramp
        .iter()
        .map(|f| f.cpu_ms_per_audio_s)
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        * 1.1;
    let cpu_y = |ms: f64| top + H - H * ms / most;
    svg += &axes(top, "workerd CPU per second of audio relayed (ms)");
    for step in 0..=4 {
        let ms = most * f64::from(step) / 4.0;
        svg += &tick(cpu_y(ms), &format!("{ms:.0}"), "#888", false);
    }
    let cpu = ramp
        .iter()
        .map(|f| {
            Some(f.cpu_ms_per_audio_s)
                .filter(|v| v.is_finite())
                .map(cpu_y)
        })
        .collect();
    svg += &line(0, top, "CPU", "#093", cpu);

    for (i, figures) in ramp.iter().enumerate() {
        let failed = if figures.failed > 0 {
            format!(" ({} failed)", figures.failed)
        } else {
            String::new()
        };
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}{failed}</text>\n",
            x(i),
            2.0 * H + 2.0 * TOP + 16.0,
            figures.sessions
        );
    }
    svg += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">sessions speaking on one workerd \
         (messages that did not end done)</text>\n</svg>\n",
        W / 2.0,
        2.0 * H + 2.0 * TOP + 34.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(sessions: usize, late_p99_ms: f64, cpu: f64, failed: u64) -> Figures {
        Figures {
            sessions,
            done: 10,
            failed,
            failures: BTreeMap::new(),
            audio_s: 60.0,
            frames: 100,
            bytes_per_audio_s: 48_000.0,
            late_p50_ms: 0.0,
            late_p99_ms,
            cpu_ms_per_audio_s: cpu,
            cpu_share: 0.5,
            rss: 1 << 28,
        }
    }

    #[test]
    fn the_ramp_draws_each_step_and_the_target() {
        let ramp = [
            figures(50, 0.0, 11.0, 0),
            figures(400, 737.0, 6.6, 0),
            figures(800, f64::NAN, 70.0, 1600),
        ];
        let svg = ramp_svg(&ramp);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3, "p99, p50 and CPU");
        // The unmeasured lateness at 800 leaves its point out, not the step.
        let p99 = svg
            .lines()
            .find(|l| l.contains("#c60") && l.contains("polyline"));
        assert_eq!(p99.map(|l| l.matches(',').count()), Some(2));
        assert!(svg.contains(">50<"), "the 50 ms target");
        assert!(svg.contains(">800 (1600 failed)<") && svg.contains(">50<"));
        // Log scale: 0 ms sits on the axis (1 ms), 737 ms below the top decade (1000 ms).
        assert!(svg.contains(">1000<") && !svg.contains(">10000<"));
    }
}
