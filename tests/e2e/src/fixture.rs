//! The shared fixture: the local upstream in-process (so tests read its counters directly) and
//! a production-like relay, plus extra relays with other settings where a test needs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use groq_local::{Config as UpstreamConfig, Engine, Stats};

use crate::process::Relay;
use crate::{
    ensure, reliability, TestResult, GROQ_MS_PER_CHAR, OTHER_ORIGIN, SAMPLES_PER_CHAR, TEST_KEY,
    TEST_ORIGIN, TEST_SECRET, UPSTREAM_TIMEOUT_MS,
};

/// The speed of [`Fixture::slow_link`], against real time.
pub const SLOW_LINK_SPEED: f64 = 0.75;

/// A running relay and upstream, shared by every test of one run.
pub struct Fixture {
    /// The tokio runtime the upstream and the clients run on.
    pub runtime: tokio::runtime::Runtime,
    /// The upstream's live counters.
    pub upstream: Arc<Stats>,
    /// `http://IP:PORT` of the upstream.
    pub upstream_url: String,
    /// The relay, configured as in production: tickets required, origins allow-listed.
    pub relay: Relay,
    /// The repository root.
    pub root: PathBuf,
    /// The reliability scenarios' relay and proxies, started when first needed.
    rig: tokio::sync::OnceCell<reliability::Rig>,
    /// The word timings' relay and upstream, started when first needed.
    voiced: tokio::sync::OnceCell<Voiced>,
}

/// A relay whose upstream speaks with espeak-ng at Groq's pace, and so knows where it said each
/// word (see [`crate::words`]): for the word-timing tests and benchmark. Its relay runs in
/// development mode (its `/_dev/ticket` serves the demo page) with the tests' secret.
pub struct Voiced {
    /// The upstream's live counters and word truths.
    pub upstream: Arc<Stats>,
    /// The relay.
    pub relay: Relay,
}

impl Fixture {
    /// The upstream configuration the tests use: the deterministic signal, no generation delay.
    pub fn test_upstream() -> UpstreamConfig {
        UpstreamConfig {
            api_key: TEST_KEY.to_owned(),
            engine: Engine::Signal {
                samples_per_char: SAMPLES_PER_CHAR,
            },
            ..UpstreamConfig::default()
        }
    }

    /// Starts the upstream and a production-like relay from the repository root.
    pub fn start(root: &Path, upstream: UpstreamConfig) -> TestResult<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // Logs of earlier runs would confuse the leak check.
        let _ = std::fs::remove_dir_all(Relay::log_dir(root));
        let api_key = upstream.api_key.clone();
        let (upstream_addr, upstream) = runtime
            .block_on(groq_local::spawn(upstream))
            .map_err(|e| format!("upstream: {e}"))?;
        let upstream_url = format!("http://{upstream_addr}");
        let origins = format!("{TEST_ORIGIN},{OTHER_ORIGIN}");
        let vars = [("ALLOWED_ORIGINS", origins.as_str())];
        let relay = Relay::start(
            root,
            "relay",
            &Self::relay_vars(&upstream_url, &vars),
            &[
                ("GROQ_API_KEY".to_owned(), api_key),
                ("SESSION_SECRET".to_owned(), TEST_SECRET.to_owned()),
                ("RELAY_API_KEYS".to_owned(), crate::RELAY_API_KEYS.join(",")),
            ],
        )?;
        Ok(Self {
            runtime,
            upstream,
            upstream_url,
            relay,
            root: root.to_owned(),
            rig: tokio::sync::OnceCell::new(),
            voiced: tokio::sync::OnceCell::new(),
        })
    }

    /// The reliability rig, started on first use with the seed `ORPHEUS_CHAOS_SEED` names, or
    /// [`reliability::CI_SEED`].
    pub async fn rig(&self) -> TestResult<&reliability::Rig> {
        let seed = orpheus_chaos::seed_from_env().unwrap_or(reliability::CI_SEED);
        self.rig
            .get_or_try_init(|| reliability::Rig::start(self, seed))
            .await
    }

    /// The word timings' relay and upstream (see [`Voiced`]), started on first use.
    pub async fn voiced(&self) -> TestResult<&Voiced> {
        self.voiced
            .get_or_try_init(|| async {
                let config = UpstreamConfig {
                    engine: Engine::Espeak,
                    ms_per_char: GROQ_MS_PER_CHAR,
                    ..Self::test_upstream()
                };
                let (addr, upstream) = groq_local::spawn(config)
                    .await
                    .map_err(|e| format!("voiced upstream: {e}"))?;
                let vars =
                    Self::relay_vars(&format!("http://{addr}"), &[("ORPHEUS_DEV_MODE", "1")]);
                let secrets = [
                    ("GROQ_API_KEY".to_owned(), TEST_KEY.to_owned()),
                    ("SESSION_SECRET".to_owned(), TEST_SECRET.to_owned()),
                ];
                // Starting wrangler blocks for seconds: off the runtime's async threads.
                let relay = tokio::task::block_in_place(|| {
                    Relay::start(&self.root, "voiced", &vars, &secrets)
                })?;
                Ok(Voiced { upstream, relay })
            })
            .await
    }

    /// `[vars]` pointing a relay at this fixture's upstream with short timeouts, plus `extra`.
    /// Limits are generous (the load tests send hundreds of messages a minute on one session)
    /// unless `extra` sets its own; a key in `extra` replaces the default.
    fn relay_vars(upstream_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let timeout = UPSTREAM_TIMEOUT_MS.to_string();
        let defaults = [
            ("GROQ_BASE_URL", upstream_url),
            ("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", timeout.as_str()),
            ("UPSTREAM_STALL_TIMEOUT_MS", timeout.as_str()),
            ("LIMIT_MESSAGES_PER_MINUTE", "100000"),
            ("LIMIT_CHARS_PER_MINUTE", "100000000"),
            ("LIMIT_CHARS_PER_DAY", "100000000"),
            ("LIMIT_FRAMES_PER_SECOND", "1000"),
            // A message left open ends within the test's patience.
            ("TEXT_IDLE_MS", "2000"),
            // Tests count upstream requests for texts they repeat: the segment cache is tested
            // on a relay of its own.
            ("SEGMENT_CACHE_TTL_S", "0"),
        ];
        defaults
            .iter()
            .filter(|(key, _)| !extra.iter().any(|(k, _)| k == key))
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Starts an extra relay on the same upstream with other security settings; it always has
    /// the upstream key and the HTTP endpoint's keys, and `session_secret` if given.
    pub fn extra_relay(
        &self,
        name: &str,
        extra_vars: &[(&str, &str)],
        session_secret: Option<&str>,
    ) -> TestResult<Relay> {
        let mut secrets = vec![
            ("GROQ_API_KEY".to_owned(), TEST_KEY.to_owned()),
            ("RELAY_API_KEYS".to_owned(), crate::RELAY_API_KEYS.join(",")),
        ];
        secrets.extend(session_secret.map(|s| ("SESSION_SECRET".to_owned(), s.to_owned())));
        Relay::start(
            &self.root,
            name,
            &Self::relay_vars(&self.upstream_url, extra_vars),
            &secrets,
        )
    }

    /// Every relay log of this run: (file name, contents).
    pub fn all_logs(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(Relay::log_dir(&self.root)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The main relay's base URL.
    pub fn relay_url(&self) -> &str {
        &self.relay.url
    }

    /// The WebSocket URL of a session on the main relay.
    pub fn session_url(&self, sid: &str) -> String {
        self.relay.session_url(sid)
    }

    /// A proxy in front of the main relay that makes its link slower than real time:
    /// [`SLOW_LINK_SPEED`] of 24 kHz PCM each way, 25 ms each way. Its URL is
    /// `ws://{addr}/v1/sessions/{sid}/ws`.
    pub async fn slow_link(&self) -> TestResult<orpheus_chaos::Proxy> {
        let slow = (orpheus_chaos::REAL_TIME_BYTES_PER_S as f64 * SLOW_LINK_SPEED) as u64;
        self.proxy(orpheus_chaos::Faults {
            latency_ms: Some((25, 25)),
            throttle: 1.0,
            bandwidth_bps: (slow, slow),
            ..orpheus_chaos::Faults::none()
        })
        .await
    }

    /// A chaos proxy in front of the main relay with `faults`. Its URL is
    /// `ws://{addr}/v1/sessions/{sid}/ws`.
    pub async fn proxy(&self, faults: orpheus_chaos::Faults) -> TestResult<orpheus_chaos::Proxy> {
        let target = self
            .relay_url()
            .trim_start_matches("http://")
            .parse()
            .map_err(|e| format!("{e}"))?;
        orpheus_chaos::Proxy::start(target, 0x510, faults)
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits until the upstream has no open connection (the relay released everything).
    pub async fn upstream_quiet(&self, within: Duration) -> TestResult {
        let deadline = Instant::now() + within;
        loop {
            let open = self.upstream.snapshot().open_connections;
            if open == 0 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{open} upstream connection(s) still open after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
