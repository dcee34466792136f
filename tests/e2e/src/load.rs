//! Sessions that speak, stop, supersede and reconnect against a relay for a while, recording
//! everything into a [`History`]: the engine of the chaos scenarios and of the soak.
//!
//! Each session behaves like a careful client (the player does the same): it watches its socket
//! with pings, gives it up when nothing at all arrives for [`LIVENESS`] (a half-open link), and
//! reconnects with a fresh ticket and backoff. A session of protocol v1 settles every message
//! still waiting for its `end` as `interrupted` exactly once when the socket is lost; one of
//! protocol v2 reports its play cursor (it plays what it receives at once) and resumes those
//! messages on its next socket, settling them `interrupted` only if it cannot reconnect.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use orpheus_protocol::{AudioFrame, ServerMessage};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::open_socket_as;
use crate::history::{ConnId, Event, History};
use crate::{protocols_with, ticket, Socket, TestResult};
use orpheus_protocol::{SUBPROTOCOL, SUBPROTOCOL_V2};

/// Silence after which a session pings the relay.
pub const PING_AFTER: Duration = Duration::from_secs(2);
/// Silence after which a session gives its socket up as dead.
pub const LIVENESS: Duration = Duration::from_secs(6);
/// How long a session may wait for its messages' ends after the run's time is up.
pub const DRAIN: Duration = Duration::from_secs(60);
/// Protocol v2: how often a session reports its play cursor.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// What the sessions do, as shares of messages.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Stopped at a random moment.
    pub stop: f64,
    /// Superseded by the next message at a random moment.
    pub supersede: f64,
    /// The socket is dropped at a random moment, and the session reconnects.
    pub reconnect: f64,
    /// Text length range, in characters (whole sentences; one to three upstream segments).
    pub chars: (usize, usize),
    /// Upstream fault directives (groq-local's `[[fault:...]]`), one of which a message carries
    /// with probability `directive_share`.
    pub directives: Vec<&'static str>,
    /// Share of messages carrying a directive.
    pub directive_share: f64,
    /// Protocol v2: share of messages written in `append`s of 1 to 5 characters every 20 to
    /// 50 ms (no directive; every word carries the tag).
    pub written: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            stop: 0.2,
            supersede: 0.1,
            reconnect: 0.1,
            chars: (30, 240),
            directives: Vec::new(),
            directive_share: 0.0,
            written: 0.0,
        }
    }
}

/// Where the sessions connect and how they get in.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `ws://IP:PORT` of the relay (or of a proxy in front of it).
    pub base: String,
    /// The relay's `SESSION_SECRET`, to mint tickets as an app backend would.
    pub secret: String,
    /// The page origin the sessions claim.
    pub origin: String,
}

/// One run of sessions.
#[derive(Debug, Clone)]
pub struct Load {
    /// A short letter naming the run; message tags and session ids start with it.
    pub label: char,
    /// Sessions speaking at once.
    pub sessions: usize,
    /// How long they keep starting messages.
    pub duration: Duration,
    /// What they do.
    pub mix: Mix,
    /// Seeds every session's choices.
    pub seed: u64,
    /// Protocol v2: the sessions report their cursor and resume messages after a loss.
    pub resume: bool,
}

/// Runs `load` against `endpoint`, recording into `history`. Returns the number of messages
/// each session spoke.
pub async fn run(endpoint: &Endpoint, load: &Load, history: &Mutex<History>) -> TestResult<u64> {
    let deadline = Instant::now() + load.duration;
    let sessions =
        (0..load.sessions).map(|index| session(endpoint, load, index, history, deadline));
    let spoken = futures_util::future::join_all(sessions).await;
    spoken.into_iter().sum()
}

/// One session's whole life.
async fn session(
    endpoint: &Endpoint,
    load: &Load,
    index: usize,
    history: &Mutex<History>,
    deadline: Instant,
) -> TestResult<u64> {
    let sid = format!("{}-{}-{index}", load.label, std::process::id());
    let mut rng = orpheus_test_support::rng(
        load.seed ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D),
    );
    let mut spoken = 0u64;
    let mut conn_no = 0;
    // Protocol v2: messages a lost socket left waiting, to resume on the next one.
    let mut carried: BTreeMap<String, Waiting> = BTreeMap::new();
    while Instant::now() < deadline || !carried.is_empty() {
        let socket = match connect(endpoint, &sid, load.resume, deadline + DRAIN).await {
            Ok(socket) => socket,
            Err(e) => {
                let mut history = history.lock().expect("history");
                let conn = (sid.clone(), conn_no);
                for id in carried.keys() {
                    history.record(&conn, Event::ResolvedInterrupted { id });
                }
                return Err(e);
            }
        };
        conn_no += 1;
        let mut conn = Conn {
            id: (sid.clone(), conn_no),
            socket: Some(socket),
            pending: BTreeSet::new(),
            cursors: BTreeMap::new(),
            resume: load.resume,
            carried: BTreeMap::new(),
            history,
            last_frame: Instant::now(),
            last_ping: Instant::now(),
            last_report: Instant::now(),
        };
        conn.record(Event::Connected);
        conn.resume_all(std::mem::take(&mut carried)).await;
        conn.converse(load, index, &mut rng, &mut spoken, deadline)
            .await?;
        carried = std::mem::take(&mut conn.carried);
    }
    Ok(spoken)
}

/// Connects with a fresh ticket each attempt, backing off from 100 ms to 2 s, until `give_up`.
pub async fn connect(
    endpoint: &Endpoint,
    sid: &str,
    v2: bool,
    give_up: Instant,
) -> TestResult<Socket> {
    let url = format!("{}/v1/sessions/{sid}/ws", endpoint.base);
    let mut backoff = Duration::from_millis(100);
    let version = if v2 { SUBPROTOCOL_V2 } else { SUBPROTOCOL };
    loop {
        let ticket = ticket(&endpoint.secret, sid, &endpoint.origin, 60);
        let protocols = format!("{version}, {}", protocols_with(&ticket));
        let attempt = open_socket_as(&url, &protocols, Some(&endpoint.origin), version).await;
        match attempt {
            Ok(socket) => return Ok(socket),
            Err(e) if Instant::now() + backoff > give_up => {
                return Err(format!("{sid}: could not connect until the deadline: {e}"))
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Why reading stopped.
enum Outcome {
    /// The wait ended normally.
    Waited,
    /// The socket is gone (and the loss recorded).
    Lost,
}

/// Protocol v2: a message waiting for its `end`.
#[derive(Debug, Clone)]
struct Waiting {
    /// Its stream, once started.
    stream: Option<u32>,
    /// Samples of it received (and so played: the session plays what it receives at once).
    played: u64,
    /// Its text, to send again if the relay never got it.
    text: String,
    /// Resumed before its `start`: an answer that the relay does not know it means its
    /// `speak` was lost with the link.
    resumed_unstarted: bool,
    /// Written in `append`s: after a resume all of its text goes again (the relay keeps
    /// what it lacks), and `finish`.
    written: bool,
}

/// One connection of a session.
struct Conn<'h> {
    id: ConnId,
    socket: Option<Socket>,
    /// Messages sent (or resumed) on this connection still waiting for their end.
    pending: BTreeSet<String>,
    /// Protocol v2: where each pending message stands.
    cursors: BTreeMap<String, Waiting>,
    /// Protocol v2.
    resume: bool,
    /// Protocol v2: what was pending when the socket was lost, to resume on the next one.
    carried: BTreeMap<String, Waiting>,
    history: &'h Mutex<History>,
    last_frame: Instant,
    last_ping: Instant,
    last_report: Instant,
}

impl Conn<'_> {
    fn record(&self, event: Event<'_>) {
        self.history
            .lock()
            .expect("history")
            .record(&self.id, event);
    }

    /// Protocol v2: asks the relay to resume each message a lost socket left waiting.
    async fn resume_all(&mut self, carried: BTreeMap<String, Waiting>) {
        for (id, mut waiting) in carried {
            let (stream, played) = (waiting.stream, waiting.played);
            self.record(Event::Resume {
                id: &id,
                stream,
                played,
            });
            let frame = serde_json::json!({
                "type": "resume", "id": id, "stream": stream, "played": played,
            });
            waiting.resumed_unstarted = stream.is_none();
            let rest = waiting.written.then(|| waiting.text.clone());
            self.pending.insert(id.clone());
            self.cursors.insert(id.clone(), waiting);
            self.send(frame.to_string()).await;
            if let Some(text) = rest {
                self.send(append(&id, &text, 0)).await;
                self.send(serde_json::json!({"type": "finish", "id": id}).to_string())
                    .await;
            }
        }
    }

    /// Protocol v2: the relay answered the resume of a message it never got: the `speak` goes
    /// again. Returns whether that is what the `end` meant.
    async fn respeak_if_unknown(&mut self, end: &ServerMessage) -> bool {
        let ServerMessage::End {
            id,
            reason: orpheus_protocol::EndReason::Interrupted,
            heard: None,
            ..
        } = end
        else {
            return false;
        };
        let Some(waiting) = self.cursors.get_mut(id).filter(|w| w.resumed_unstarted) else {
            return false;
        };
        waiting.resumed_unstarted = false;
        // A written message goes again whole: its text is all known by now.
        let speak = serde_json::json!({"type": "speak", "id": id, "text": waiting.text});
        self.record(Event::Respeak { id });
        self.send(speak.to_string()).await;
        true
    }

    /// Protocol v2: reports the cursor of every pending message that has a stream.
    async fn report(&mut self) {
        self.last_report = Instant::now();
        let frames: Vec<String> = self
            .cursors
            .values()
            .filter_map(|w| {
                let (stream, played) = (w.stream?, w.played);
                let frame = serde_json::json!({
                    "type": "played", "stream": stream, "played": played, "received": played,
                });
                Some(frame.to_string())
            })
            .collect();
        for frame in frames {
            self.send(frame).await;
        }
    }

    /// Speaks, stops, supersedes and reconnects until the deadline, then waits for every end.
    async fn converse(
        &mut self,
        load: &Load,
        index: usize,
        rng: &mut orpheus_test_support::Rng,
        spoken: &mut u64,
        deadline: Instant,
    ) -> TestResult {
        while Instant::now() < deadline {
            let id = self.speak(load, index, rng, spoken).await;
            if self.socket.is_none() {
                return Ok(());
            }
            let pause = Duration::from_millis(rng.u64(0..1500));
            let roll = rng.f64();
            let mix = &load.mix;
            if roll < mix.stop + mix.supersede + mix.reconnect {
                if let Outcome::Lost = self.read_for(pause).await {
                    return Ok(());
                }
                if roll < mix.stop {
                    self.send(serde_json::json!({"type": "stop", "id": id}).to_string())
                        .await;
                    self.record(Event::Stop { id: &id });
                } else if roll < mix.stop + mix.supersede {
                    continue;
                } else {
                    self.lose();
                    return Ok(());
                }
            }
            if let Outcome::Lost = self.drain(Instant::now() + DRAIN).await? {
                return Ok(());
            }
        }
        self.drain(Instant::now() + DRAIN).await.map(|_| ())
    }

    /// Sends a new message; returns its id.
    async fn speak(
        &mut self,
        load: &Load,
        index: usize,
        rng: &mut orpheus_test_support::Rng,
        spoken: &mut u64,
    ) -> String {
        *spoken += 1;
        let tag = format!("{}{index:03}x{:05}", load.label, *spoken);
        let written = self.resume && rng.f64() < load.mix.written;
        let directive =
            (!written && !load.mix.directives.is_empty() && rng.f64() < load.mix.directive_share)
                .then(|| load.mix.directives[rng.usize(..load.mix.directives.len())]);
        let chars = rng.usize(load.mix.chars.0..=load.mix.chars.1);
        let text = if written {
            written_text(&tag, chars)
        } else {
            message_text(&tag, directive, chars)
        };
        let speak = if written {
            serde_json::json!({"type": "speak", "id": tag, "text": "", "more": true})
        } else {
            serde_json::json!({"type": "speak", "id": tag, "text": text})
        };
        crate::LEDGER
            .lock()
            .expect("ledger")
            .texts
            .push(text.clone());
        self.record(Event::Speak {
            id: &tag,
            text: &text,
            written,
        });
        self.pending.insert(tag.clone());
        if self.resume {
            let waiting = Waiting {
                stream: None,
                played: 0,
                text: text.clone(),
                resumed_unstarted: false,
                written,
            };
            self.cursors.insert(tag.clone(), waiting);
        }
        self.send(speak.to_string()).await;
        if written {
            self.write(&tag, &text, rng).await;
        }
        tag
    }

    /// Protocol v2: writes `text` into message `id` in pieces of 1 to 5 characters, 20 to 50
    /// ms apart (reading meanwhile), then finishes it. A socket lost on the way leaves the rest
    /// to the resume.
    async fn write(&mut self, id: &str, text: &str, rng: &mut orpheus_test_support::Rng) {
        let chars: Vec<char> = text.chars().collect();
        let mut at = 0;
        while at < chars.len() {
            let (piece, pause) = orpheus_test_support::next_piece(&chars, at, rng);
            self.send(append(id, &piece, at)).await;
            at += piece.chars().count();
            if let Outcome::Lost = self.read_for(pause).await {
                return;
            }
        }
        self.send(serde_json::json!({"type": "finish", "id": id}).to_string())
            .await;
    }

    /// Sends a text frame; a failure is a lost socket.
    async fn send(&mut self, text: String) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        if socket.send(Message::text(text)).await.is_err() {
            self.lose();
        }
    }

    /// Gives the socket up: every message still waiting is settled `interrupted`, once (v1),
    /// or carried over to be resumed on the next socket (v2).
    fn lose(&mut self) {
        if self.socket.take().is_none() {
            return;
        }
        self.record(Event::Lost);
        let pending = std::mem::take(&mut self.pending);
        if self.resume {
            for id in pending {
                if let Some(waiting) = self.cursors.remove(&id) {
                    self.carried.insert(id, waiting);
                }
            }
            return;
        }
        for id in pending {
            self.record(Event::ResolvedInterrupted { id: &id });
        }
    }

    /// Reads frames until every message on this connection has ended, or `until`.
    async fn drain(&mut self, until: Instant) -> TestResult<Outcome> {
        while !self.pending.is_empty() {
            if Instant::now() >= until {
                return Err(format!(
                    "{}#{}: {:?} still without an end after {DRAIN:?} (a stuck stream)",
                    self.id.0, self.id.1, self.pending
                ));
            }
            if let Outcome::Lost = self.read_for(Duration::from_millis(200)).await {
                return Ok(Outcome::Lost);
            }
        }
        Ok(Outcome::Waited)
    }

    /// Reads and records frames for `span`, pinging during silence and giving up a silent socket.
    async fn read_for(&mut self, span: Duration) -> Outcome {
        let until = Instant::now() + span;
        loop {
            let Some(socket) = self.socket.as_mut() else {
                return Outcome::Lost;
            };
            let now = Instant::now();
            if now >= until {
                return Outcome::Waited;
            }
            if self.resume && now.duration_since(self.last_report) >= REPORT_EVERY {
                self.report().await;
                continue;
            }
            if now.duration_since(self.last_frame) >= LIVENESS {
                self.lose();
                return Outcome::Lost;
            }
            if now.duration_since(self.last_frame) >= PING_AFTER
                && now.duration_since(self.last_ping) >= PING_AFTER
            {
                self.last_ping = now;
                self.send(r#"{"type":"ping"}"#.to_owned()).await;
                continue;
            }
            let mut wake = until
                .min(self.last_frame + LIVENESS)
                .min(self.last_ping.max(self.last_frame) + PING_AFTER);
            if self.resume {
                wake = wake.min(self.last_report + REPORT_EVERY);
            }
            let message = match tokio::time::timeout_at(
                wake.max(now + Duration::from_millis(1)),
                socket.next(),
            )
            .await
            {
                Err(_) => continue,
                Ok(Some(Ok(message))) => message,
                Ok(None | Some(Err(_))) => {
                    self.lose();
                    return Outcome::Lost;
                }
            };
            self.last_frame = Instant::now();
            match message {
                Message::Text(text) => {
                    crate::LEDGER
                        .lock()
                        .expect("ledger")
                        .frames
                        .push(text.to_string());
                    let Ok(parsed) = ServerMessage::parse(&text) else {
                        self.history
                            .lock()
                            .expect("history")
                            .note(format!("bad JSON from the relay: {text}"));
                        continue;
                    };
                    self.record(Event::Text(&parsed));
                    let respoken = self.respeak_if_unknown(&parsed).await;
                    match &parsed {
                        ServerMessage::End { id, .. } if !respoken => {
                            self.pending.remove(id);
                            self.cursors.remove(id);
                        }
                        ServerMessage::Start { id, stream, .. } => {
                            if let Some(waiting) = self.cursors.get_mut(id) {
                                waiting.stream = Some(*stream);
                                waiting.played = 0;
                                waiting.resumed_unstarted = false;
                            }
                        }
                        _ => {}
                    }
                }
                Message::Binary(bytes) => match AudioFrame::decode(&bytes) {
                    Ok(frame) => {
                        self.record(Event::Audio(&frame));
                        let end = u64::from(frame.offset) + u64::from(frame.samples());
                        for waiting in self.cursors.values_mut() {
                            if waiting.stream == Some(frame.stream) {
                                waiting.played = end;
                            }
                        }
                    }
                    Err(e) => self
                        .history
                        .lock()
                        .expect("history")
                        .note(format!("bad audio frame: {e}")),
                },
                Message::Close(_) => {
                    self.lose();
                    return Outcome::Lost;
                }
                _ => {}
            }
        }
    }
}

/// Protocol v2: an `append` of `text` to message `id`, after its first `at` characters.
fn append(id: &str, text: &str, at: usize) -> String {
    serde_json::json!({"type": "append", "id": id, "text": text, "at": at}).to_string()
}

/// A written message's text: sentences of words that each carry the tag (the first word is
/// the tag itself), so every segment names its message wherever the text is cut.
pub fn written_text(tag: &str, chars: usize) -> String {
    const WORDS: [&str; 6] = ["says", "then", "adds", "more", "words", "here"];
    let mut text = tag.to_owned();
    let mut n = 0;
    while n == 0 || text.chars().count() < chars {
        let word = WORDS[n % WORDS.len()];
        n += 1;
        let end = match n % 7 {
            0 => ".",
            3 => ",",
            _ => "",
        };
        text.push_str(&format!(" {tag}{word}{end}"));
    }
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// A message's text: whole sentences, each starting with its tag (so every upstream segment
/// names its message), the first one carrying `directive` if any. The directive and its tag
/// fit the first segment (50 characters), and the tag follows it again, so wherever the first
/// segment ends, what comes after names the message too.
pub fn message_text(tag: &str, directive: Option<&str>, chars: usize) -> String {
    let mut text = match directive {
        Some(d) => format!("{tag} [[fault:{d}]] {tag}."),
        None => format!("{tag} opens the message."),
    };
    let mut n = 1;
    while text.chars().count() < chars {
        n += 1;
        text.push_str(&format!(" {tag} adds sentence {n}, with a clause."));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::message_tag;

    #[test]
    fn every_word_of_a_written_message_names_it() {
        for chars in [10, 99, 240] {
            let text = written_text("C001x00008", chars);
            assert_eq!(message_tag(&text), "C001x00008");
            assert!(text.split_whitespace().all(|w| w.contains("C001x00008")));
            assert!(text.chars().count() >= chars && text.ends_with('.'));
        }
    }

    #[test]
    fn every_segment_names_its_message() {
        for chars in [10, 99, 150, 240, 400] {
            for directive in [
                None,
                Some("chunk=960;gap_ms=15"),
                Some("status=429;retry_after=1;once"),
            ] {
                let text = message_text("C001x00007", directive, chars);
                assert_eq!(message_tag(&text), "C001x00007");
                let segments = orpheus_test_support::relay_segments(&text);
                for segment in &segments {
                    assert!(segment.contains("C001x00007"), "{segment:?}");
                }
                if directive.is_some() {
                    assert!(
                        segments[0].contains("[[fault:"),
                        "the first request: {segments:?}"
                    );
                }
            }
        }
    }
}
