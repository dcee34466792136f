//! End-to-end fixture: the real Worker in real workerd (`wrangler dev`), the local Groq-compatible
//! upstream in-process (so tests read its counters directly), and a WebSocket client that checks
//! the protocol's promises on every frame it receives.
//!
//! Run through `scripts/test`, which puts Node 22 and wrangler on PATH and builds the Worker.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use groq_local::{Config as UpstreamConfig, Engine, Stats};
use orpheus_protocol::ticket::{mint, TicketClaims, TICKET_PROTOCOL_PREFIX};
use orpheus_protocol::{AudioFrame, EndReason, ServerMessage, SUBPROTOCOL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod history;
pub mod load;
pub mod reliability;

/// A client WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket offering `protocols` (the `Sec-WebSocket-Protocol` value) from `origin`,
/// and checks the relay selected `orpheus.v1`. The caller reads `ready`.
pub async fn open_socket(url: &str, protocols: &str, origin: Option<&str>) -> TestResult<Socket> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let header = |v: &str| HeaderValue::from_str(v).map_err(|e| e.to_string());
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", header(protocols)?);
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", header(origin)?);
    }
    let (ws, response) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| format!("connect: {e}"))?;
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
    ensure!(
        protocol == Some(SUBPROTOCOL),
        "server selected {protocol:?}"
    );
    Ok(ws)
}

/// The API key the fixture gives both the upstream and the Worker.
pub const TEST_KEY: &str = "gsk_e2e_fake_key_0123456789";

/// Samples per character the upstream renders: realistic speech length.
pub const SAMPLES_PER_CHAR: usize = 1600;

/// Timeouts the Worker is started with, short so timeout tests stay quick.
pub const UPSTREAM_TIMEOUT_MS: u64 = 2500;

/// A result type for tests: any error fails the test with its message.
pub type TestResult<T = ()> = Result<T, String>;

/// Fails the test with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The secret shared by the test "backend" (this crate) and the relay.
pub const TEST_SECRET: &str = "e2e-session-secret-not-for-production";

/// The page origin the tests connect from; the relay allows it (and [`OTHER_ORIGIN`]).
pub const TEST_ORIGIN: &str = "http://app.e2e.test";

/// A second allowed origin, for tickets used from the wrong allowed page.
pub const OTHER_ORIGIN: &str = "http://other.e2e.test";

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `wrangler dev` running the Worker, killed (with workerd) on drop.
pub struct Relay {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Where its output goes.
    pub log_path: PathBuf,
    port: u16,
    command: Vec<String>,
    root: PathBuf,
    child: Child,
    _scratch: TempDir,
}

impl Relay {
    /// Starts `wrangler dev` from the repository root with these `[vars]` and secrets, and waits
    /// until it serves. `name` names its log file under `target/e2e/`.
    pub fn start(
        root: &Path,
        name: &str,
        vars: &[(String, String)],
        secrets: &[(String, String)],
    ) -> TestResult<Self> {
        let scratch = TempDir(
            std::env::temp_dir().join(format!("orpheus-e2e-{}-{name}", std::process::id())),
        );
        std::fs::create_dir_all(&scratch.0).map_err(|e| e.to_string())?;
        let env_file = scratch.0.join("secrets.env");
        let lines: String = secrets.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&env_file, lines).map_err(|e| e.to_string())?;
        let log_dir = Self::log_dir(root);
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let log_path = log_dir.join(format!("{name}.log"));
        File::create(&log_path).map_err(|e| e.to_string())?;

        let port = free_port();
        let mut command: Vec<String> = [
            "dev",
            "--local",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--inspector-port",
            &free_port().to_string(),
            "--persist-to",
            &scratch.0.join("state").to_string_lossy(),
            "--env-file",
            &env_file.to_string_lossy(),
        ]
        .map(str::to_owned)
        .into();
        for (key, value) in vars {
            command.extend(["--var".to_owned(), format!("{key}:{value}")]);
        }
        let child = Self::spawn(root, &command, &log_path)?;
        let relay = Self {
            url: format!("http://127.0.0.1:{port}"),
            log_path,
            port,
            command,
            root: root.to_owned(),
            child,
            _scratch: scratch,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if healthy(port) {
                return Ok(relay);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "wrangler dev did not become ready; see {}",
            relay.log_path.display()
        ))
    }

    /// Runs wrangler in its own process group, appending to its log.
    fn spawn(root: &Path, command: &[String], log_path: &Path) -> TestResult<Child> {
        let log = File::options()
            .append(true)
            .open(log_path)
            .map_err(|e| e.to_string())?;
        let mut wrangler = Command::new("wrangler");
        wrangler
            .current_dir(root)
            .args(command)
            .env("CI", "true")
            .env("ORPHEUS_WASM_OPT", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut wrangler, 0);
        wrangler.spawn().map_err(|e| {
            format!(
                "cannot start wrangler ({e}); run the suite with scripts/test, which installs it"
            )
        })
    }

    /// Kills wrangler and workerd at once (SIGKILL: no clean shutdown, as in a crash) and starts
    /// them again on the same port with the same stored state; returns once it serves again.
    /// Everything in memory is lost: sockets, Durable Objects, upstream requests.
    pub async fn crash_and_restart(&mut self) -> TestResult<Duration> {
        let started = Instant::now();
        self.kill_group("-KILL");
        let _ = self.child.wait();
        self.child = Self::spawn(&self.root, &self.command, &self.log_path)?;
        while started.elapsed() < Duration::from_secs(180) {
            if healthy(self.port) {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "wrangler dev did not come back; see {}",
            self.log_path.display()
        ))
    }

    /// The resident memory of this relay's workerd process, in bytes.
    pub fn workerd_rss(&self) -> Option<u64> {
        let group = self.child.id().to_string();
        let output = Command::new("pgrep")
            .args(["-g", &group, "workerd"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok())
            .filter_map(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .max()
    }

    fn kill_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args([signal, "--", &group]).status();
    }

    /// Where relays write their logs.
    pub fn log_dir(root: &Path) -> PathBuf {
        root.join("target/e2e")
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The WebSocket URL of a session.
    pub fn session_url(&self, sid: &str) -> String {
        format!(
            "{}/v1/sessions/{sid}/ws",
            self.url.replacen("http", "ws", 1)
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // wrangler runs workerd as a child: end the whole process group.
        self.kill_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_group("-KILL");
        let _ = self.child.wait();
    }
}

fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

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
            ],
        )?;
        Ok(Self {
            runtime,
            upstream,
            upstream_url,
            relay,
            root: root.to_owned(),
            rig: tokio::sync::OnceCell::new(),
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
        ];
        defaults
            .iter()
            .filter(|(key, _)| !extra.iter().any(|(k, _)| k == key))
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Starts an extra relay on the same upstream with other security settings; it always has
    /// the upstream key, and `session_secret` if given.
    pub fn extra_relay(
        &self,
        name: &str,
        extra_vars: &[(&str, &str)],
        session_secret: Option<&str>,
    ) -> TestResult<Relay> {
        let mut secrets = vec![("GROQ_API_KEY".to_owned(), TEST_KEY.to_owned())];
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

/// Everything secret or private that went through the relay during a run, and every frame that
/// came back: the leak test checks none of the former appears in the latter or in any log.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Texts the clients asked to speak.
    pub texts: Vec<String>,
    /// Tickets minted or fetched.
    pub tickets: Vec<String>,
    /// Every JSON frame the relay sent.
    pub frames: Vec<String>,
}

/// The run's ledger.
pub static LEDGER: std::sync::Mutex<Ledger> = std::sync::Mutex::new(Ledger {
    texts: Vec::new(),
    tickets: Vec::new(),
    frames: Vec::new(),
});

/// Records a ticket obtained outside [`ticket`] (for instance from `/_dev/ticket`).
pub fn record_ticket(ticket: &str) {
    LEDGER
        .lock()
        .expect("ledger")
        .tickets
        .push(ticket.to_owned());
}

/// Mints a ticket as an app backend would, valid for `ttl_s` (negative: already expired).
pub fn ticket(secret: &str, sid: &str, origin: &str, ttl_s: i64) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = TicketClaims {
        v: 1,
        sid: sid.to_owned(),
        origin: origin.to_owned(),
        exp: now.saturating_add_signed(ttl_s),
        jti: format!(
            "e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    };
    let ticket = mint(secret.as_bytes(), &claims);
    record_ticket(&ticket);
    ticket
}

/// The subprotocols a browser offers with a ticket.
pub fn protocols_with(ticket: &str) -> String {
    format!("{SUBPROTOCOL}, {TICKET_PROTOCOL_PREFIX}{ticket}")
}

/// A plain HTTP GET (or upgrade attempt) returning the status and body.
pub async fn http_get(base: &str, path: &str) -> TestResult<(u16, String)> {
    http_request(base, path, &[]).await
}

/// An HTTP GET with extra headers, returning the status and body.
pub async fn http_request(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> TestResult<(u16, String)> {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// What the relay sent for one message.
#[derive(Debug, Default)]
pub struct Received {
    /// The `start` (sample rate and stream), if any.
    pub start: Option<ServerMessage>,
    /// All PCM bytes, in offset order (contiguity is checked on arrival).
    pub pcm: Vec<u8>,
    /// Audio frames received.
    pub frames: usize,
    /// Frames flagged last-in-segment.
    pub segment_ends: usize,
    /// The `end`.
    pub end: Option<ServerMessage>,
}

impl Received {
    /// The end's reason.
    pub fn reason(&self) -> Option<EndReason> {
        match &self.end {
            Some(ServerMessage::End { reason, .. }) => Some(*reason),
            _ => None,
        }
    }

    /// The end's error code name.
    pub fn error_code(&self) -> Option<String> {
        match &self.end {
            Some(ServerMessage::End { error: Some(e), .. }) => Some(e.code.as_str().to_owned()),
            _ => None,
        }
    }

    /// The stream number from `end` (or `start`).
    pub fn stream(&self) -> Option<u32> {
        match (&self.end, &self.start) {
            (
                Some(ServerMessage::End {
                    stream: Some(s), ..
                }),
                _,
            ) => Some(*s),
            (_, Some(ServerMessage::Start { stream, .. })) => Some(*stream),
            _ => None,
        }
    }
}

/// A frame from the relay.
#[derive(Debug)]
pub enum Frame {
    /// A JSON control message.
    Text(ServerMessage),
    /// An audio frame: stream, offset, flags, PCM.
    Audio {
        stream: u32,
        offset: u32,
        last: bool,
        pcm: Vec<u8>,
    },
    /// The socket closed, with this close code.
    Closed(Option<u16>),
}

/// A protocol client that checks, on every frame, that no audio arrives for a stream that has
/// ended or was never started, and that offsets are contiguous.
pub struct Client {
    ws: Socket,
    /// The `ready` message.
    pub ready: ServerMessage,
    current: Option<(u32, u32)>,
    ended: std::collections::HashSet<u32>,
}

impl Client {
    /// Connects to a session of the main relay with a fresh ticket, from the test origin.
    pub async fn connect(fixture: &Fixture, sid: &str) -> TestResult<Self> {
        let ticket = ticket(TEST_SECRET, sid, TEST_ORIGIN, 60);
        Self::connect_with(
            &fixture.session_url(sid),
            &protocols_with(&ticket),
            Some(TEST_ORIGIN),
        )
        .await
    }

    /// Connects offering `protocols` (the `Sec-WebSocket-Protocol` value) from `origin`, and
    /// reads `ready`.
    pub async fn connect_with(
        url: &str,
        protocols: &str,
        origin: Option<&str>,
    ) -> TestResult<Self> {
        let ws = open_socket(url, protocols, origin).await?;
        let mut client = Self {
            ws,
            ready: ServerMessage::Pong,
            current: None,
            ended: Default::default(),
        };
        match client.next(Duration::from_secs(10)).await? {
            Frame::Text(ready @ ServerMessage::Ready { .. }) => client.ready = ready,
            other => return Err(format!("expected ready, got {other:?}")),
        }
        Ok(client)
    }

    /// Sends a JSON text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> TestResult {
        self.ws
            .send(Message::text(text.into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> TestResult {
        self.ws
            .send(Message::binary(bytes))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends `speak`.
    pub async fn speak(&mut self, id: &str, text: &str, voice: Option<&str>) -> TestResult {
        LEDGER.lock().expect("ledger").texts.push(text.to_owned());
        let mut message = serde_json::json!({"type": "speak", "id": id, "text": text});
        if let Some(voice) = voice {
            message["voice"] = voice.into();
        }
        self.send_text(message.to_string()).await
    }

    /// Sends `stop` for `id`.
    pub async fn stop(&mut self, id: &str) -> TestResult {
        self.send_text(serde_json::json!({"type": "stop", "id": id}).to_string())
            .await
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The next frame, checked against the protocol's promises.
    pub async fn next(&mut self, within: Duration) -> TestResult<Frame> {
        loop {
            let message = match tokio::time::timeout(within, self.ws.next()).await {
                Err(_) => return Err(format!("no frame within {within:?}")),
                Ok(None) => return Ok(Frame::Closed(None)),
                Ok(Some(Err(e))) => return Err(format!("socket error: {e}")),
                Ok(Some(Ok(message))) => message,
            };
            return Ok(match message {
                Message::Text(text) => {
                    LEDGER.lock().expect("ledger").frames.push(text.to_string());
                    let parsed = ServerMessage::parse(&text)
                        .map_err(|e| format!("bad server JSON {text}: {e}"))?;
                    match &parsed {
                        ServerMessage::Start { stream, .. } => {
                            ensure!(
                                self.current.is_none(),
                                "start of {stream} while {:?} active",
                                self.current
                            );
                            ensure!(
                                !self.ended.contains(stream),
                                "start of ended stream {stream}"
                            );
                            self.current = Some((*stream, 0));
                        }
                        ServerMessage::End {
                            stream: Some(stream),
                            ..
                        } => {
                            ensure!(self.ended.insert(*stream), "second end for stream {stream}");
                            if self.current.is_some_and(|(s, _)| s == *stream) {
                                self.current = None;
                            }
                        }
                        _ => {}
                    }
                    Frame::Text(parsed)
                }
                Message::Binary(bytes) => {
                    let frame = AudioFrame::decode(&bytes).map_err(|e| e.to_string())?;
                    ensure!(
                        !self.ended.contains(&frame.stream),
                        "audio of stream {} after its end",
                        frame.stream
                    );
                    let Some((stream, next_offset)) = self.current.as_mut() else {
                        return Err(format!("audio of stream {} before its start", frame.stream));
                    };
                    ensure!(
                        frame.stream == *stream,
                        "audio of stream {} while {stream} is active",
                        frame.stream
                    );
                    ensure!(
                        frame.offset == *next_offset,
                        "offset {} but expected {next_offset}",
                        frame.offset
                    );
                    *next_offset += frame.samples();
                    Frame::Audio {
                        stream: frame.stream,
                        offset: frame.offset,
                        last: frame.is_last_in_segment(),
                        pcm: frame.pcm.to_vec(),
                    }
                }
                Message::Close(close) => Frame::Closed(close.map(|c| c.code.into())),
                _ => continue,
            });
        }
    }

    /// Collects frames until the `end` for `id`, failing on anything unexpected.
    pub async fn until_end(&mut self, id: &str, within: Duration) -> TestResult<Received> {
        let deadline = Instant::now() + within;
        let mut received = Received::default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left.max(Duration::from_millis(1))).await? {
                Frame::Text(ServerMessage::Start {
                    id: sid,
                    stream,
                    sample_rate,
                    channels,
                    encoding,
                }) => {
                    ensure!(sid == id, "start for {sid} while waiting for {id}");
                    received.start = Some(ServerMessage::Start {
                        id: sid,
                        stream,
                        sample_rate,
                        channels,
                        encoding,
                    });
                }
                Frame::Text(end @ ServerMessage::End { .. }) => {
                    let ServerMessage::End {
                        id: eid, samples, ..
                    } = &end
                    else {
                        unreachable!()
                    };
                    if eid != id {
                        return Err(format!("end for {eid} while waiting for {id}: {end:?}"));
                    }
                    ensure!(
                        *samples as usize == received.pcm.len() / 2,
                        "end says {samples} samples, got {}",
                        received.pcm.len() / 2
                    );
                    received.end = Some(end);
                    return Ok(received);
                }
                Frame::Text(other) => {
                    return Err(format!("unexpected {other:?} while waiting for {id}"))
                }
                Frame::Audio { pcm, last, .. } => {
                    received.frames += 1;
                    received.segment_ends += usize::from(last);
                    received.pcm.extend_from_slice(&pcm);
                }
                Frame::Closed(code) => {
                    return Err(format!("closed ({code:?}) while waiting for {id}"))
                }
            }
        }
    }

    /// Speaks and waits for the end.
    pub async fn say(&mut self, id: &str, text: &str, voice: Option<&str>) -> TestResult<Received> {
        self.speak(id, text, voice).await?;
        self.until_end(id, Duration::from_secs(60)).await
    }
}

/// The `p`th percentile of ascending `sorted` values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The PCM the upstream produces for `text` split the way the relay splits it.
pub fn expected_pcm(text: &str) -> Vec<u8> {
    use orpheus_worker::segment::{split, FIRST_SEGMENT_CHARS, SEGMENT_MAX_CHARS};
    split(text, SEGMENT_MAX_CHARS, FIRST_SEGMENT_CHARS)
        .iter()
        .flat_map(|segment| groq_local::render_signal(segment, SAMPLES_PER_CHAR))
        .flat_map(i16::to_le_bytes)
        .collect()
}

/// Checks relayed PCM against the upstream's, pointing at the first differing sample.
pub fn check_bit_exact(got: &[u8], text: &str) -> TestResult {
    let want = expected_pcm(text);
    if got == want.as_slice() {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(&want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "audio differs at byte {first}: got {} bytes, expected {}",
        got.len(),
        want.len()
    ))
}

/// Aligns captured playback with the source signal and returns (offset, largest difference).
pub fn compare_capture(captured: &[f32], text: &str) -> TestResult<(usize, f32)> {
    let expected: Vec<f32> = expected_pcm(text)
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    let probe = 64.min(expected.len());
    let offset = (0..captured.len().saturating_sub(expected.len()) + 1)
        .find(|&at| (0..probe).all(|k| (captured[at + k] - expected[k]).abs() <= 1e-6))
        .ok_or("the source signal's start was not found in the capture")?;
    let played = &captured[offset..offset + expected.len()];
    let worst = played
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    Ok((offset, worst))
}

/// Decodes the base64 Float32 samples of a browser capture.
pub fn decode_capture(report: &serde_json::Value) -> TestResult<Vec<f32>> {
    use base64::Engine;
    let b64 = report["samples"].as_str().ok_or("no samples")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Runs a browser script from `tests/browser/` with `args` and parses the JSON it prints; fails
/// if the page reported errors (`pageErrors`).
pub async fn run_browser_script(script: &str, args: &[&str]) -> TestResult<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/browser")
        .join(script);
    let output = tokio::process::Command::new("node")
        .arg(path)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("node: {e}"))?;
    ensure!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{script} printed no JSON: {e}"))?;
    let errors = &report["pageErrors"];
    ensure!(
        errors.as_array().is_none_or(|e| e.is_empty()),
        "{script}: page errors: {errors}"
    );
    Ok(report)
}
