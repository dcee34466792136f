//! The reliability scenarios (docs/reliability.md): chaos on the client leg, faults on the
//! upstream leg, the relay crashing mid-stream, and the soak. The e2e suite runs each in a short
//! form; `scripts/reliability` runs them at full length and prints their figures.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use orpheus_chaos::{ChaosStats, Faults, Proxy, REAL_TIME_BYTES_PER_S};

use crate::history::{History, Observed, Verdict};
use crate::load::{self, Endpoint, Load, Mix};
use crate::{ensure, Fixture, Relay, TestResult, TEST_ORIGIN, TEST_SECRET};

/// The seed the short runs use unless `ORPHEUS_CHAOS_SEED` names another: it makes the
/// client leg's first four connections meet a reset, a half-open link, a bandwidth limit and
/// sliced writes, so even a short run meets every fault. Full runs draw a fresh seed.
pub const CI_SEED: u64 = 0x14;

/// An upstream directive that streams audio in 100 ms pieces every 40 ms, as Groq does
/// (faster than real time, slower than at once).
pub const PACED: &str = "chunk=4800;gap_ms=40";

/// How long and how wide the scenarios run.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Sessions at once.
    pub sessions: usize,
    /// How long each chaos phase keeps starting messages.
    pub chaos: Duration,
    /// Crashes in the eviction scenario.
    pub crashes: usize,
}

impl Scale {
    /// What CI runs.
    pub const SHORT: Scale = Scale {
        sessions: 4,
        chaos: Duration::from_secs(20),
        crashes: 1,
    };
    /// What `scripts/reliability` runs.
    pub const FULL: Scale = Scale {
        sessions: 8,
        chaos: Duration::from_secs(120),
        crashes: 3,
    };
}

/// A relay dedicated to the reliability scenarios, with a chaos proxy on each leg:
/// clients → `client_proxy` → relay → `upstream_proxy` → the fixture's upstream.
pub struct Rig {
    /// The relay (development mode, so the browser page gets tickets; Rust clients mint their
    /// own with [`TEST_SECRET`]). Locked only to crash it or to read its log.
    pub relay: tokio::sync::Mutex<Relay>,
    /// The relay's `http://IP:PORT`; it keeps its port across crashes.
    pub relay_url: String,
    /// In front of the relay, for clients.
    pub client_proxy: Proxy,
    /// Between the relay and the upstream.
    pub upstream_proxy: Proxy,
    /// The run's seed.
    pub seed: u64,
}

/// One scenario's outcome.
pub struct Stage {
    /// What ran.
    pub name: &'static str,
    /// The history checker's findings.
    pub verdict: Verdict,
    /// How long the load ran, start to last end.
    pub took: Duration,
    /// The client leg's proxy counters during the stage.
    pub client_leg: ChaosStats,
    /// The upstream leg's proxy counters during the stage.
    pub upstream_leg: ChaosStats,
    /// Further figures, as `name=value` words.
    pub notes: Vec<String>,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let leg = |s: &ChaosStats| {
            format!(
                "conns={} resets={} half_open={} throttled={} sliced={} slow_close={}",
                s.accepted, s.resets, s.half_opens, s.throttled, s.sliced, s.slow_closes
            )
        };
        writeln!(f, "== {} ({:.1} s)", self.name, self.took.as_secs_f64())?;
        writeln!(f, "{}", self.verdict)?;
        writeln!(f, "client leg: {}", leg(&self.client_leg))?;
        write!(f, "upstream leg: {}", leg(&self.upstream_leg))?;
        if !self.notes.is_empty() {
            write!(f, "\n{}", self.notes.join(" "))?;
        }
        Ok(())
    }
}

fn delta(after: ChaosStats, before: ChaosStats) -> ChaosStats {
    ChaosStats {
        accepted: after.accepted - before.accepted,
        open: after.open,
        resets: after.resets - before.resets,
        half_opens: after.half_opens - before.half_opens,
        throttled: after.throttled - before.throttled,
        sliced: after.sliced - before.sliced,
        slow_closes: after.slow_closes - before.slow_closes,
        cuts: after.cuts - before.cuts,
        swallowed: after.swallowed - before.swallowed,
        bytes_to_initiator: after.bytes_to_initiator - before.bytes_to_initiator,
    }
}

/// Starts a chaos proxy in front of the server at `url` (`http://IP:PORT`).
async fn proxy_to(url: &str, seed: u64, faults: Faults) -> TestResult<Proxy> {
    let target = url
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| format!("{url}: {e}"))?;
    Proxy::start(target, seed, faults)
        .await
        .map_err(|e| format!("proxy to {url}: {e}"))
}

impl Rig {
    /// Starts both proxies and the relay on the fixture's upstream. Prints the seed.
    pub async fn start(fx: &Fixture, seed: u64) -> TestResult<Self> {
        println!("reliability seed={seed:#x} (replay: ORPHEUS_CHAOS_SEED={seed:#x})");
        let upstream_proxy = proxy_to(&fx.upstream_url, seed ^ 0x5EED, Faults::none()).await?;
        let via = format!("http://{}", upstream_proxy.addr());
        let relay = fx.extra_relay(
            "chaos",
            &[
                ("GROQ_BASE_URL", via.as_str()),
                ("ORPHEUS_DEV_MODE", "1"),
                // As in production: a half-open link is given up and resumed within it.
                ("TEXT_IDLE_MS", "15000"),
            ],
            Some(TEST_SECRET),
        )?;
        let client_proxy = proxy_to(&relay.url, seed, Faults::none()).await?;
        Ok(Self {
            relay_url: relay.url.clone(),
            relay: tokio::sync::Mutex::new(relay),
            client_proxy,
            upstream_proxy,
            seed,
        })
    }

    /// Where Rust clients connect: through the client proxy, or straight to the relay.
    pub fn endpoint(&self, through_proxy: bool) -> Endpoint {
        let base = if through_proxy {
            format!("ws://{}", self.client_proxy.addr())
        } else {
            self.relay_url.replacen("http", "ws", 1)
        };
        Endpoint {
            base,
            secret: TEST_SECRET.to_owned(),
            origin: TEST_ORIGIN.to_owned(),
        }
    }

    /// Runs `load` and checks its history: every promise, then zero upstream connections once
    /// the relay had time to notice every dead link (stall timeout plus the proxy's hold).
    pub async fn stage(
        &self,
        fx: &Fixture,
        name: &'static str,
        load: &Load,
        through_proxy: bool,
        during: impl std::future::Future<Output = TestResult<Vec<String>>>,
    ) -> TestResult<Stage> {
        let (client_before, upstream_before) =
            (self.client_proxy.stats(), self.upstream_proxy.stats());
        let history = Mutex::new(History::default());
        let started = Instant::now();
        let endpoint = self.endpoint(through_proxy);
        let (spoken, notes) = tokio::join!(load::run(&endpoint, load, &history), during);
        let took = started.elapsed();
        let history = history.into_inner().expect("history");
        let _ = fx.upstream_quiet(Duration::from_secs(15)).await;
        let inputs = fx.upstream.inputs();
        let verdict = history.verdict(&Observed {
            upstream_inputs: &inputs,
            upstream_open: fx.upstream.snapshot().open_connections,
            relay_log: &self.relay.lock().await.log(),
        });
        let log_path = Relay::log_dir(&fx.root).join(format!("history-{name}.log"));
        let _ = std::fs::write(&log_path, history.log().join("\n"));
        let stage = Stage {
            name,
            verdict,
            took,
            client_leg: delta(self.client_proxy.stats(), client_before),
            upstream_leg: delta(self.upstream_proxy.stats(), upstream_before),
            notes: notes?,
        };
        println!("{stage}");
        spoken.map_err(|e| format!("{name}: {e}"))?;
        stage
            .verdict
            .check()
            .map_err(|e| format!("{name} (history in {}): {e}", log_path.display()))?;
        Ok(stage)
    }
}

/// Nothing to do alongside a load.
async fn nothing() -> TestResult<Vec<String>> {
    Ok(Vec::new())
}

/// Client leg: 50-500 ms latency, about 10% of connections reset, sliced writes, half-open
/// links, throttling and slow closes while sessions speak, stop and reconnect. Then, with the
/// faults off, the same sessions must all work normally again.
pub async fn client_leg_chaos(rig: &Rig, fx: &Fixture, scale: Scale) -> TestResult<Vec<Stage>> {
    rig.client_proxy.set_faults(Faults::hostile());
    let chaos = Load {
        label: 'C',
        sessions: scale.sessions,
        duration: scale.chaos,
        mix: Mix {
            written: 0.5,
            ..Mix::default()
        },
        seed: rig.seed,
        resume: true,
    };
    let stage = rig
        .stage(fx, "client-leg chaos", &chaos, true, nothing())
        .await;
    rig.client_proxy.set_faults(Faults::none());
    let stage = stage?;
    let leg = stage.client_leg;
    ensure!(
        leg.resets > 0 && leg.sliced > 0 && leg.throttled > 0,
        "the chaos did not strike: {leg:?}"
    );
    // Protocol v2: every link comes back within the grace period, so a message whose socket
    // dropped resumes and finishes.
    ensure!(
        stage.verdict.losses > 0 && stage.verdict.resumes > 0,
        "the chaos should cut some links mid-message:\n{}",
        stage.verdict
    );
    ensure!(
        stage.verdict.done_rate().total_cmp(&0.99).is_ge(),
        "at least 99% of the messages that had to finish finished:\n{}",
        stage.verdict
    );
    // Written messages are held to the same rules (and their audio to the segments the upstream
    // was asked for); the done rate above counts them.
    ensure!(
        stage.verdict.written > 0,
        "some messages should have been written in appends:\n{}",
        stage.verdict
    );
    let recovery = rig
        .stage(
            fx,
            "client-leg recovery",
            &recovery_load(&chaos),
            true,
            nothing(),
        )
        .await?;
    all_done(&recovery)?;
    Ok(vec![stage, recovery])
}

/// The same sessions, calm: each says one message after another for a few seconds.
fn recovery_load(after: &Load) -> Load {
    Load {
        label: after.label.to_ascii_lowercase(),
        duration: Duration::from_secs(3),
        mix: Mix {
            stop: 0.0,
            supersede: 0.0,
            reconnect: 0.0,
            chars: (30, 120),
            ..Mix::default()
        },
        ..after.clone()
    }
}

fn all_done(stage: &Stage) -> TestResult {
    let v = &stage.verdict;
    ensure!(
        v.speaks >= 1 && v.ends.get("done") == Some(&v.speaks) && v.done_bit_exact == v.speaks,
        "{}: every message should end done and bit-exact:\n{v}",
        stage.name
    );
    Ok(())
}

/// Upstream leg under load: latency, drip-feeding below and above real time, resets and
/// half-open links at the proxy; resets after N bytes, stalls after the headers, slow drips and
/// 429/503 bursts from the upstream itself.
pub async fn upstream_leg_chaos(rig: &Rig, fx: &Fixture, scale: Scale) -> TestResult<Stage> {
    rig.upstream_proxy.set_faults(Faults {
        latency_ms: Some((20, 200)),
        throttle: 0.4,
        bandwidth_bps: (REAL_TIME_BYTES_PER_S * 3 / 4, REAL_TIME_BYTES_PER_S * 4),
        reset: 0.1,
        slice: 0.1,
        half_open: 0.05,
        slow_close: 0.2,
    });
    let load = Load {
        label: 'U',
        sessions: scale.sessions,
        duration: scale.chaos,
        mix: Mix {
            directives: vec![
                "status=429;retry_after=1;once",
                "status=503;retry_after=1",
                "reset_after=20000",
                "stall_after=0",
                "chunk=960;gap_ms=15",
            ],
            directive_share: 0.35,
            reconnect: 0.05,
            ..Mix::default()
        },
        seed: rig.seed ^ 0x0B,
        resume: false,
    };
    let stage = rig
        .stage(fx, "upstream-leg chaos", &load, false, nothing())
        .await;
    rig.upstream_proxy.set_faults(Faults::none());
    let stage = stage?;
    // Which fault ends which message depends on timing; two kinds at least must show.
    let errors = &stage.verdict.errors;
    let kinds = [
        "upstream_interrupted",
        "upstream_timeout",
        "upstream_unavailable",
    ]
    .iter()
    .filter(|code| errors.contains_key(**code))
    .count();
    ensure!(kinds >= 2, "too few kinds of upstream failure: {errors:?}");
    ensure!(
        stage.verdict.ends.get("done").is_some_and(|&n| n > 0) && stage.upstream_leg.resets > 0,
        "the upstream chaos should cut some and let others through:\n{stage}"
    );
    Ok(stage)
}

/// The relay crashes mid-stream (wrangler and workerd killed, then started again on the same
/// port and stored state): clients see the close, settle their messages, reconnect, and go on.
pub async fn eviction(rig: &Rig, fx: &Fixture, scale: Scale) -> TestResult<Stage> {
    let load = Load {
        label: 'E',
        sessions: scale.sessions,
        duration: Duration::from_secs(8) + scale.chaos / 2,
        mix: Mix {
            stop: 0.1,
            supersede: 0.05,
            reconnect: 0.0,
            chars: (150, 240),
            // Paced at about two and a half times real time, so a crash finds streams in flight.
            directives: vec![PACED],
            directive_share: 1.0,
            written: 0.0,
        },
        seed: rig.seed ^ 0x0E,
        resume: false,
    };
    let crashes = scale.crashes;
    let gap = load.duration / (crashes as u32 + 1);
    let crash_loop = async {
        let mut notes = Vec::new();
        for _ in 0..crashes {
            tokio::time::sleep(gap).await;
            let down = rig.relay.lock().await.crash_and_restart().await?;
            notes.push(format!("restart_s={:.1}", down.as_secs_f64()));
        }
        Ok(notes)
    };
    let stage = rig.stage(fx, "eviction", &load, false, crash_loop).await?;
    ensure!(
        stage.verdict.unknown_resolved > 0,
        "a crash mid-stream should leave messages to settle as interrupted:\n{stage}"
    );
    let after = rig
        .stage(
            fx,
            "after eviction",
            &recovery_load(&load),
            false,
            nothing(),
        )
        .await?;
    all_done(&after)?;
    Ok(stage)
}

/// The soak: `sessions` sessions speaking (paced as Groq streams), stopping, superseding and
/// reconnecting for `duration`. Prints messages per minute, the exactly-once rate, time to first
/// audio, upstream connections left open, and workerd's memory before and after.
pub async fn soak(
    rig: &Rig,
    fx: &Fixture,
    sessions: usize,
    duration: Duration,
) -> TestResult<Stage> {
    let rss_mib = || async {
        let rss = rig.relay.lock().await.workerd_rss();
        rss.map_or("?".to_owned(), |b| format!("{:.1}", b as f64 / 1048576.0))
    };
    let before = rss_mib().await;
    let load = Load {
        label: 'S',
        sessions,
        duration,
        mix: Mix {
            directives: vec![PACED],
            directive_share: 1.0,
            ..Mix::default()
        },
        seed: rig.seed ^ 0x50,
        resume: false,
    };
    let mut stage = rig.stage(fx, "soak", &load, false, nothing()).await?;
    let after = rss_mib().await;
    let v = &stage.verdict;
    let ms = |p| {
        v.first_audio_ms(p)
            .map_or("-".to_owned(), |ms| format!("{ms:.0}"))
    };
    stage.notes = vec![
        format!("sessions={sessions}"),
        format!("minutes={:.1}", duration.as_secs_f64() / 60.0),
        format!(
            "messages_per_min={:.0}",
            v.speaks as f64 / (stage.took.as_secs_f64() / 60.0)
        ),
        format!("exactly_once={:.4}", v.exactly_once_rate()),
        format!(
            "first_audio_ms p50={} p95={} p99={}",
            ms(50.0),
            ms(95.0),
            ms(99.0)
        ),
        format!("upstream_open_after={}", v.upstream_open),
        format!("relay_rss_mib start={before} end={after}"),
    ];
    println!("soak: {}", stage.notes.join(" "));
    Ok(stage)
}

/// The player in headless Chromium with its socket through a proxy with latency, resets, sliced
/// writes, slow closes and the odd half-open link, and every connection cut every 7 s whatever
/// the draw. The player speaks protocol v2, so a cut link resumes: every message settles once,
/// `done` with all its samples played once each, or `stopped` when the page stopped it, never
/// `interrupted`; nothing is scheduled after a message ended (no stale audio after a
/// reconnect), and the live sources return to zero.
pub async fn browser_chaos(rig: &Rig, messages: usize) -> TestResult<String> {
    let faults = Faults {
        latency_ms: Some((50, 300)),
        reset: 0.35,
        slice: 0.3,
        half_open: 0.1,
        slow_close: 0.3,
        ..Faults::none()
    };
    let proxy = proxy_to(&rig.relay_url, rig.seed ^ 0xB0, faults).await?;
    let (settled, stats) = browser_through(rig, &proxy, messages, Some(CUT_EVERY)).await?;
    let summary = format!(
        "browser: messages={messages} settled={settled:?} stale_audio=0 \
         conns={} cuts={} resets={} half_open={} sliced={} slow_close={}",
        stats.accepted, stats.cuts, stats.resets, stats.half_opens, stats.sliced, stats.slow_closes
    );
    println!("{summary}");
    ensure!(
        stats.cuts + stats.resets + stats.half_opens > 0,
        "the chaos never cut the player's link: {summary}"
    );
    Ok(summary)
}

/// The player in headless Chromium whose first connection's handshake is lost (the proxy
/// swallows it: nothing answers, nothing closes, as on a half-open link) while its first
/// message waits: the player gives the attempt up, connects again, and the message plays
/// whole, `done`, in well under the browser's own handshake timeout (240 s in Chromium).
pub async fn browser_lost_handshake(rig: &Rig) -> TestResult<String> {
    let proxy = proxy_to(&rig.relay_url, rig.seed ^ 0xB1, Faults::none()).await?;
    proxy.swallow(1);
    let started = Instant::now();
    let (settled, stats) = browser_through(rig, &proxy, 2, None).await?;
    let took = started.elapsed();
    let summary = format!(
        "lost handshake: messages=2 settled={settled:?} conns={} swallowed={} in {:.1} s",
        stats.accepted,
        stats.swallowed,
        took.as_secs_f64()
    );
    println!("{summary}");
    ensure!(stats.swallowed == 1, "no handshake was lost: {summary}");
    ensure!(took < Duration::from_secs(60), "too slow: {summary}");
    Ok(summary)
}

/// A link a quarter of PCM's rate (96 kbit/s): a weak mobile link.
const SLOW_LINK_BYTES_PER_S: u64 = REAL_TIME_BYTES_PER_S / 4;

/// How long PCM is listened to on the slow link before it is stopped.
const PCM_LISTEN_MS: u64 = 12_000;

/// The player in headless Chromium on a link of a quarter of PCM's rate (the chaos proxy
/// throttling it): a 1,000-character message with Opus (the player's default where the browser
/// decodes it) plays to `done`, every sample, with no underrun, and sounds like the upstream's
/// audio (correlation at least 0.95); the same text as PCM on the same link falls behind.
/// Returns the figures side by side: bytes on the link per second of audio, and how each played.
pub async fn browser_slow_link(rig: &Rig, text: &str) -> TestResult<String> {
    let slow = Faults {
        throttle: 1.0,
        bandwidth_bps: (SLOW_LINK_BYTES_PER_S, SLOW_LINK_BYTES_PER_S),
        ..Faults::none()
    };
    let opus_link = proxy_to(&rig.relay_url, rig.seed ^ 0xB2, slow.clone()).await?;
    let pcm_link = proxy_to(&rig.relay_url, rig.seed ^ 0xB3, slow).await?;
    let args = [
        rig.relay_url.clone(),
        format!("ws://{}", opus_link.addr()),
        format!("ws://{}", pcm_link.addr()),
        text.to_owned(),
        PCM_LISTEN_MS.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = crate::run_browser_script("slow.mjs", &args).await?;
    let (opus, pcm) = (&report["opus"]["result"], &report["pcm"]["result"]);
    let want = crate::expected_pcm(text);
    let per_audio_second = |bytes: u64, samples: &serde_json::Value| {
        bytes as f64 / (samples.as_f64().unwrap_or(0.0) / 24_000.0).max(1e-9)
    };
    let opus_rate = per_audio_second(opus_link.stats().bytes_to_initiator, &opus["samples"]);
    let pcm_rate = per_audio_second(pcm_link.stats().bytes_to_initiator, &pcm["samples"]);
    let listened_s = PCM_LISTEN_MS as f64 / 1000.0;
    let pcm_played_s = pcm["played"].as_f64().unwrap_or(0.0) / 24_000.0;

    // What the listener heard of the Opus message, against the upstream's audio: aligned on
    // where the sound first swells in each, then within less than half a period of the test
    // signal's tones either way (they repeat every 40 samples or more).
    let rate = report["opus"]["rate"].as_u64().unwrap_or(0);
    ensure!(rate == 24_000, "the context ran at {rate} Hz");
    let heard: Vec<i16> = crate::decode_capture(&report["opus"])?
        .iter()
        .map(|&v| (v * 32_768.0).clamp(-32_768.0, 32_767.0) as i16)
        .collect();
    let reference: Vec<i16> = want
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let onset = |s: &[i16]| s.iter().position(|v| v.unsigned_abs() > 3_000).unwrap_or(0);
    let (heard_from, reference_from) = (onset(&heard), onset(&reference));
    let heard = &heard[heard_from.saturating_sub(reference_from)..];
    let (lag, correlation) = crate::aligned_correlation(&reference, heard, 16);

    let summary = format!(
        "slow link ({} kbit/s): opus {} after {:.0} ms, {} of {} samples played, underruns {}, \
         {:.0} B per s of audio, correlation {correlation:.4} (lag {lag}) | pcm: {:.1} s played \
         in {listened_s:.0} s, underruns {}, {:.0} B per s of audio",
        SLOW_LINK_BYTES_PER_S * 8 / 1000,
        opus["reason"],
        opus["firstAudioSeconds"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        opus["played"],
        want.len() / 2,
        opus["underruns"],
        opus_rate,
        pcm_played_s,
        pcm["underruns"],
        pcm_rate,
    );
    println!("{summary}");
    ensure!(
        opus["reason"] == "done"
            && opus["samples"].as_u64() == Some(want.len() as u64 / 2)
            && opus["played"].as_u64() == Some(want.len() as u64 / 2),
        "opus did not play every sample to done: {summary}"
    );
    ensure!(opus["underruns"] == 0, "opus ran dry: {summary}");
    let (sounds_alike, compressed) = (
        correlation >= 0.95,
        opus_rate < (SLOW_LINK_BYTES_PER_S / 2) as f64,
    );
    ensure!(
        sounds_alike,
        "opus does not sound like the source: {summary}"
    );
    ensure!(compressed, "the message did not travel as Opus: {summary}");
    let fell_behind = pcm["underruns"].as_u64().unwrap_or(0) > 0 && pcm_played_s < listened_s / 2.0;
    ensure!(
        fell_behind,
        "PCM kept up on a link a quarter of its rate: {summary}"
    );
    Ok(summary)
}

/// Every connection through the browser's proxy is cut this often, whatever its draw (a
/// network change).
const CUT_EVERY: Duration = Duration::from_secs(7);

/// Runs `messages` messages of the player in headless Chromium with its socket through
/// `proxy` (every connection cut every `cut_every`, if given) and checks every message
/// settled `done` with all its samples played (or `stopped` when the page stopped it), that
/// nothing played after a message settled, and that the player was idle at the end. Returns
/// how the messages settled and the proxy's counters.
async fn browser_through(
    rig: &Rig,
    proxy: &Proxy,
    messages: usize,
    cut_every: Option<Duration>,
) -> TestResult<(std::collections::BTreeMap<String, u32>, ChaosStats)> {
    let texts: Vec<String> = (0..messages)
        .map(|i| load::message_text(&format!("B{i:03}x00000"), None, 40 + i * 37 % 60))
        .collect();
    let args = [
        rig.relay_url.clone(),
        format!("ws://{}", proxy.addr()),
        serde_json::to_string(&texts).map_err(|e| e.to_string())?,
        (rig.seed % 100_000).to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let browser = crate::run_browser_script("chaos.mjs", &args);
    tokio::pin!(browser);
    let report = loop {
        let cut = async {
            match cut_every {
                Some(every) => tokio::time::sleep(every).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            report = &mut browser => break report?,
            _ = cut => proxy.cut_all(),
        }
    };
    let results = report["results"].as_array().ok_or("no results")?;
    ensure!(results.len() == messages, "{} results", results.len());
    let mut settled = std::collections::BTreeMap::<String, u32>::new();
    for (i, (r, text)) in results.iter().zip(&texts).enumerate() {
        let reason = r["reason"].as_str().unwrap_or("?");
        *settled.entry(reason.to_owned()).or_default() += 1;
        let allowed = match r["stopped"].as_bool() {
            Some(true) => ["done", "stopped"].contains(&reason),
            _ => reason == "done",
        };
        ensure!(allowed, "message {i} settled {reason}: {r}");
        if reason == "done" {
            let want = crate::expected_pcm(text).len() as u64 / 2;
            ensure!(
                r["samples"].as_u64() == Some(want) && r["played"].as_u64() == Some(want),
                "message {i}: {r}, want {want} samples sent and played"
            );
        }
        let window = &report["quiet"][i];
        let rate = report["rate"].as_f64().unwrap_or(24_000.0);
        let (from, to) = (
            window[0].as_f64().unwrap_or(0.0),
            window[1].as_f64().unwrap_or(0.0),
        );
        let stale = crate::loudest_between(&report["tap"], rate, from, to)?;
        ensure!(
            stale == 0.0,
            "message {i}: audio played after it settled ({stale}): {r}"
        );
    }
    ensure!(
        report["idle"] == "idle",
        "after the run: {}",
        report["idle"]
    );
    Ok((settled, proxy.stats()))
}
