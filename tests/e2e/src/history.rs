//! The history checker of the reliability suite.
//!
//! Clients record every operation (connect, speak, stop, losing the socket, resuming a message on
//! a new socket (protocol v2), resolving an unknown outcome) and every frame they receive into
//! one [`History`]. It checks each event as it comes,
//! keeping only what later checks need (audio is compared with the upstream's sample by sample on
//! arrival, not stored), and afterwards [`History::verdict`] adds what only the end of a run can
//! tell: ends that never came, the upstream's request counts, connections left open.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use orpheus_protocol::{AudioFrame, EndReason, ServerMessage};
use orpheus_test_support::relay_segments;

use crate::expected_pcm;

/// Identifies one connection: the session and the connection's number within it.
pub type ConnId = (String, u32);

/// One thing a client did or saw.
#[derive(Debug)]
pub enum Event<'a> {
    /// A socket opened (after `ready`).
    Connected,
    /// A `speak` was sent.
    Speak {
        /// Message id, unique in the run.
        id: &'a str,
        /// Its text.
        text: &'a str,
        /// Protocol v2: written in `append`s (every word carries the tag: segments are cut as
        /// the text grows, so the audio is checked against the requests the upstream got).
        written: bool,
    },
    /// A `stop` was sent.
    Stop {
        /// The message it targets.
        id: &'a str,
    },
    /// A JSON frame arrived.
    Text(&'a ServerMessage),
    /// An audio frame arrived.
    Audio(&'a AudioFrame<'a>),
    /// The socket died or the client dropped it (a reconnect).
    Lost,
    /// Protocol v2: on this (new) connection, the client asked to resume a message its lost
    /// socket left waiting, at `played` samples of `stream` (absent: no `start` had come).
    Resume {
        /// The message.
        id: &'a str,
        /// Its stream.
        stream: Option<u32>,
        /// The client's cursor: what it received and played, each sample once.
        played: u64,
    },
    /// Protocol v2: the relay answered a message resumed before its `start` with an `end`
    /// saying it does not know it (its `speak` was lost with the link); the client sent the
    /// `speak` again.
    Respeak {
        /// The message.
        id: &'a str,
    },
    /// The client settled a message whose `end` can never come now, as `interrupted`.
    ResolvedInterrupted {
        /// The message.
        id: &'a str,
    },
}

#[derive(Debug)]
struct Message {
    conn: ConnId,
    text: String,
    expected: Vec<u8>,
    sent: Instant,
    stream: Option<u32>,
    /// Bytes of PCM received so far.
    received: usize,
    first_audio: Option<Duration>,
    /// The first byte that differed from the upstream's audio.
    mismatch: Option<usize>,
    /// Ends received from the relay.
    ends: Vec<(EndReason, Option<String>, u64)>,
    resolved: u32,
    /// The connection was lost while the message was waiting for its end.
    lost_waiting: bool,
    /// Protocol v2: where a resume left it.
    resumed: Resumed,
    /// Protocol v2: resumed at least once (audio sent to a lost socket was never received).
    was_resumed: bool,
    /// Protocol v2: written in `append`s; its audio so far, checked at the verdict.
    written: Option<Vec<u8>>,
}

/// Protocol v2: what a resume made of a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Resumed {
    /// Not resumed, or resumed after its `start`.
    #[default]
    No,
    /// Resumed before its `start`.
    BeforeStart,
    /// Resumed before its `start`, and the relay does not know it.
    Unknown,
}

/// What one connection saw of its streams.
#[derive(Debug, Default)]
struct Stream {
    id: String,
    next_offset: u32,
    ended: bool,
}

/// Every operation and frame of a run, checked as it is recorded.
#[derive(Debug, Default)]
pub struct History {
    messages: HashMap<String, Message>,
    order: Vec<String>,
    streams: HashMap<(ConnId, u32), Stream>,
    lost: std::collections::HashSet<ConnId>,
    connects: u64,
    losses: u64,
    stops: u64,
    resumes: u64,
    respoken: u64,
    violations: Vec<String>,
    /// A compact line per event (no audio, no text), for reading a failed run.
    log: Vec<String>,
}

impl History {
    /// Records one event of connection `conn`.
    pub fn record(&mut self, conn: &ConnId, event: Event<'_>) {
        self.log
            .push(format!("{}#{} {}", conn.0, conn.1, describe(&event)));
        match event {
            Event::Connected => self.connects += 1,
            Event::Speak { id, text, written } => {
                if self.messages.contains_key(id) {
                    return self.note(format!("{id}: id reused"));
                }
                self.order.push(id.to_owned());
                self.messages.insert(
                    id.to_owned(),
                    Message {
                        conn: conn.clone(),
                        text: text.to_owned(),
                        expected: if written {
                            Vec::new()
                        } else {
                            expected_pcm(text)
                        },
                        sent: Instant::now(),
                        stream: None,
                        received: 0,
                        first_audio: None,
                        mismatch: None,
                        ends: Vec::new(),
                        resolved: 0,
                        lost_waiting: false,
                        resumed: Resumed::No,
                        was_resumed: false,
                        written: written.then(Vec::new),
                    },
                );
            }
            Event::Stop { .. } => self.stops += 1,
            Event::Text(message) => self.on_text(conn, message),
            Event::Audio(frame) => self.on_audio(conn, frame),
            Event::Lost => {
                self.losses += 1;
                self.lost.insert(conn.clone());
                for m in self.messages.values_mut() {
                    if &m.conn == conn && m.ends.is_empty() && m.resolved == 0 {
                        m.lost_waiting = true;
                    }
                }
            }
            Event::Resume { id, stream, played } => self.on_resume(conn, id, stream, played),
            Event::Respeak { id } => match self.messages.get_mut(id) {
                Some(m) if m.resumed == Resumed::Unknown && &m.conn == conn => {
                    m.resumed = Resumed::No;
                    self.respoken += 1;
                }
                _ => self.note(format!("{id}: spoken again, but the relay knew it")),
            },
            Event::ResolvedInterrupted { id } => match self.messages.get_mut(id) {
                Some(m) if m.lost_waiting => m.resolved += 1,
                Some(_) => self.note(format!(
                    "{id}: resolved as interrupted while its socket was alive"
                )),
                None => self.note(format!("{id}: resolved but never spoken")),
            },
        }
    }

    /// The message moves to the new connection; its audio continues from `played` (what the
    /// client keeps), in its stream, compared with the upstream's from there on.
    fn on_resume(&mut self, conn: &ConnId, id: &str, stream: Option<u32>, played: u64) {
        self.resumes += 1;
        let Some(m) = self.messages.get_mut(id) else {
            return self.note(format!("{id}: resumed but never spoken"));
        };
        if !m.lost_waiting {
            return self.note(format!("{id}: resumed while its socket was alive"));
        }
        m.lost_waiting = false;
        m.was_resumed = true;
        m.conn = conn.clone();
        m.received = m.received.min(played as usize * 2);
        if let Some(pcm) = m.written.as_mut() {
            pcm.truncate(m.received);
        }
        m.stream = stream;
        m.resumed = if stream.is_none() {
            Resumed::BeforeStart
        } else {
            Resumed::No
        };
        if let Some(stream) = stream {
            let next_offset = (m.received / 2) as u32;
            self.streams.insert(
                (conn.clone(), stream),
                Stream {
                    id: id.to_owned(),
                    next_offset,
                    ended: false,
                },
            );
        }
    }

    /// Records a broken promise the caller found itself (a malformed frame, for instance).
    pub fn note(&mut self, what: String) {
        self.violations.push(what);
    }

    fn on_text(&mut self, conn: &ConnId, message: &ServerMessage) {
        match message {
            ServerMessage::Start { id, stream, .. } => {
                let key = (conn.clone(), *stream);
                if self.streams.contains_key(&key) {
                    return self.note(format!("{id}: stream {stream} started twice"));
                }
                match self.messages.get_mut(id) {
                    Some(m) if &m.conn == conn && m.stream.is_none() => m.stream = Some(*stream),
                    _ => return self.note(format!("{id}: start on the wrong connection")),
                }
                self.streams.insert(
                    key,
                    Stream {
                        id: id.clone(),
                        ..Stream::default()
                    },
                );
            }
            ServerMessage::End {
                id,
                stream,
                reason,
                samples,
                error,
                heard,
                ..
            } => {
                let Some(m) = self.messages.get_mut(id) else {
                    return self.note(format!("{id}: end of a message never spoken"));
                };
                if &m.conn != conn {
                    return self.note(format!("{id}: end on another connection"));
                }
                // The relay's answer to a resume of a message it never got: not an ending.
                let unknown = *reason == EndReason::Interrupted && heard.is_none();
                if m.resumed == Resumed::BeforeStart && unknown {
                    m.resumed = Resumed::Unknown;
                    return;
                }
                m.ends.push((
                    *reason,
                    error.as_ref().map(|e| e.code.as_str().to_owned()),
                    *samples,
                ));
                if let Some(stream) = stream {
                    if let Some(s) = self.streams.get_mut(&(conn.clone(), *stream)) {
                        s.ended = true;
                    }
                }
            }
            _ => {}
        }
    }

    fn on_audio(&mut self, conn: &ConnId, frame: &AudioFrame<'_>) {
        let Some(stream) = self.streams.get_mut(&(conn.clone(), frame.stream)) else {
            return self.note(format!("audio of stream {} before its start", frame.stream));
        };
        if stream.ended {
            let id = stream.id.clone();
            return self.note(format!("{id}: audio after its end"));
        }
        if frame.offset != stream.next_offset {
            let (id, want) = (stream.id.clone(), stream.next_offset);
            return self.note(format!("{id}: offset {} after {want}", frame.offset));
        }
        stream.next_offset += frame.samples();
        let m = self
            .messages
            .get_mut(&stream.id)
            .expect("started messages exist");
        m.first_audio.get_or_insert_with(|| m.sent.elapsed());
        let at = m.received;
        let want = m.expected.get(at..at + frame.pcm.len());
        if let Some(pcm) = m.written.as_mut() {
            pcm.extend_from_slice(frame.pcm);
        } else if m.mismatch.is_none() && want != Some(frame.pcm) {
            let first = want.map_or(0, |w| {
                w.iter().zip(frame.pcm).take_while(|(a, b)| a == b).count()
            });
            m.mismatch = Some(at + first);
        }
        m.received += frame.pcm.len();
    }

    /// The compact event log, one line per event.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Every speak's text, in order (for the leak check's ledger).
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|id| self.messages[id].text.as_str())
    }

    /// Ends the run: checks every message against what the client saw, what the upstream
    /// received and what the relay logged.
    pub fn verdict(&self, observed: &Observed<'_>) -> Verdict {
        let mut v = Verdict {
            violations: self.violations.clone(),
            connects: self.connects,
            losses: self.losses,
            stops: self.stops,
            resumes: self.resumes,
            respoken: self.respoken,
            upstream_open: observed.upstream_open,
            ..Verdict::default()
        };
        let mut relay_ends: HashMap<&str, u32> = HashMap::new();
        for line in observed.relay_log.lines().filter(|l| l.starts_with("end ")) {
            if let Some(id) = line.split(' ').find_map(|f| f.strip_prefix("id=")) {
                *relay_ends.entry(id).or_default() += 1;
            }
        }
        for id in &self.order {
            let m = &self.messages[id];
            v.speaks += 1;
            let tag = message_tag(&m.text);
            let requested: Vec<String> = observed
                .upstream_inputs
                .iter()
                .filter(|i| i.contains(tag))
                .cloned()
                .collect();
            // A written message: the audio is the upstream's for the segments it was cut
            // into, which must tile the start of its text, each part once. (Requests in flight
            // together reach the upstream in any order.)
            let written_expected = m.written.as_ref().map(|pcm| {
                let ordered = tile(&m.text, &requested).unwrap_or_else(|| {
                    v.violations.push(format!(
                        "{id}: its segments are not its text in order, once: {requested:?}"
                    ));
                    requested.clone()
                });
                let expected = crate::pcm_of_segments(&ordered);
                let first = pcm
                    .iter()
                    .zip(&expected)
                    .take_while(|(a, b)| a == b)
                    .count();
                (expected, (first < pcm.len()).then_some(first))
            });
            v.written += u64::from(m.written.is_some());
            let (expected, mismatch) = match &written_expected {
                Some((expected, mismatch)) => (expected, *mismatch),
                None => (&m.expected, m.mismatch),
            };
            match (m.ends.len() as u32 + m.resolved, m.resolved) {
                (1, 1) => v.unknown_resolved += 1,
                (1, _) => {}
                (0, _) => {
                    v.missing += 1;
                    v.violations.push(format!("{id}: no end and not resolved"));
                }
                (n, _) => {
                    v.duplicated += 1;
                    v.violations.push(format!(
                        "{id}: {n} ends ({:?}, resolved {})",
                        m.ends, m.resolved
                    ));
                }
            }
            if let Some((reason, code, samples)) = m.ends.first() {
                *v.ends.entry(reason.as_str().to_owned()).or_default() += 1;
                if let Some(code) = code {
                    *v.errors.entry(code.clone()).or_default() += 1;
                }
                // After a resume, audio sent to the lost socket counts in the `end` but never
                // arrived; a `done` is still checked whole below.
                let lost = m.was_resumed && *samples as usize * 2 >= m.received;
                if *samples as usize * 2 != m.received && !lost {
                    v.violations.push(format!(
                        "{id}: end says {samples} samples, got {}",
                        m.received / 2
                    ));
                }
                if *reason == EndReason::Done {
                    if let Some(at) =
                        mismatch.or((m.received != expected.len()).then_some(m.received))
                    {
                        v.not_bit_exact += 1;
                        v.violations.push(format!(
                            "{id}: done, but audio differs from the upstream's at byte {at} ({} of {} bytes)",
                            m.received,
                            expected.len()
                        ));
                    }
                    v.done_bit_exact += u64::from(mismatch.is_none());
                    v.written_done += u64::from(m.written.is_some() && mismatch.is_none());
                }
            }
            if mismatch.is_some() && m.ends.first().is_none_or(|e| e.0 != EndReason::Done) {
                // A prefix of the right audio is fine for a message cut short; wrong audio is not.
                v.violations
                    .push(format!("{id}: audio differs from the upstream's"));
            }
            if let Some(ttfa) = m.first_audio {
                v.first_audio.push(ttfa);
            }
            if let Some(&n) = relay_ends.get(id.as_str()).filter(|&&n| n > 1) {
                v.relay_duplicated += 1;
                v.violations
                    .push(format!("{id}: the relay logged {n} ends"));
            }
            let requests = requested.len() as u64;
            let segments = relay_segments(&m.text).len() as u64;
            v.upstream_requests += requests;
            if m.written.is_none() && requests > segments + 1 {
                v.over_request_budget += 1;
                v.violations.push(format!(
                    "{id}: {requests} upstream requests for {segments} segments"
                ));
            }
        }
        if observed.upstream_open != 0 {
            v.violations.push(format!(
                "{} upstream connection(s) open after the run",
                observed.upstream_open
            ));
        }
        v
    }
}

/// What the rest of the system saw of a run, for [`History::verdict`].
#[derive(Debug, Default)]
pub struct Observed<'a> {
    /// The upstream's input of every request it received; each segment of a run's message
    /// carries the message's tag.
    pub upstream_inputs: &'a [String],
    /// Upstream connections open after the run.
    pub upstream_open: i64,
    /// The relay's log: each `end` line names a message once.
    pub relay_log: &'a str,
}

/// `segments` in the order that makes them the start of `text` (white space aside), each used
/// once, or `None` if no order does.
fn tile(text: &str, segments: &[String]) -> Option<Vec<String>> {
    fn squash(t: &str) -> String {
        t.chars().filter(|c| !c.is_whitespace()).collect()
    }
    fn search(rest: &str, left: &mut Vec<String>, out: &mut Vec<String>) -> bool {
        if left.is_empty() {
            return true;
        }
        for i in 0..left.len() {
            if !rest.starts_with(&squash(&left[i])) {
                continue;
            }
            let segment = left.remove(i);
            let after = &rest[squash(&segment).len()..];
            out.push(segment);
            if search(after, left, out) {
                return true;
            }
            left.insert(i, out.pop().expect("pushed"));
        }
        false
    }
    let mut out = Vec::new();
    search(&squash(text), &mut segments.to_vec(), &mut out).then_some(out)
}

/// The tag a reliability message carries in every sentence: its first word.
pub fn message_tag(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("")
}

fn describe(event: &Event<'_>) -> String {
    match event {
        Event::Connected => "connected".into(),
        Event::Speak { id, text, written } => format!(
            "{} {id} ({} chars)",
            if *written { "write" } else { "speak" },
            text.chars().count()
        ),
        Event::Stop { id } => format!("stop {id}"),
        Event::Text(ServerMessage::Start { id, stream, .. }) => {
            format!("start {id} stream={stream}")
        }
        Event::Text(ServerMessage::End {
            id,
            reason,
            samples,
            error,
            ..
        }) => format!(
            "end {id} {} samples={samples}{}",
            reason.as_str(),
            error
                .as_ref()
                .map_or(String::new(), |e| format!(" {}", e.code.as_str()))
        ),
        Event::Text(other) => format!("{other:?}"),
        Event::Audio(f) => format!(
            "audio stream={} offset={} samples={}",
            f.stream,
            f.offset,
            f.samples()
        ),
        Event::Lost => "lost".into(),
        Event::Resume { id, stream, played } => {
            format!("resume {id} stream={stream:?} played={played}")
        }
        Event::Respeak { id } => format!("speak {id} again"),
        Event::ResolvedInterrupted { id } => format!("resolved {id} interrupted"),
    }
}

/// The checker's findings, printed as counts.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Messages spoken.
    pub speaks: u64,
    /// Of them, written in `append`s (protocol v2), and of those, how many ended `done`.
    pub written: u64,
    /// Written messages that ended `done`, their audio bit-exact.
    pub written_done: u64,
    /// Ends received, by reason (the first end of each message).
    pub ends: BTreeMap<String, u64>,
    /// Error codes of those ends.
    pub errors: BTreeMap<String, u64>,
    /// Messages whose socket died before their end, resolved as interrupted by the client.
    pub unknown_resolved: u64,
    /// Messages with more than one end.
    pub duplicated: u64,
    /// Messages with no end and no resolution.
    pub missing: u64,
    /// Messages the relay logged more than one end for.
    pub relay_duplicated: u64,
    /// Messages that ended `done` with audio identical to the upstream's.
    pub done_bit_exact: u64,
    /// Messages that ended `done` with different audio.
    pub not_bit_exact: u64,
    /// Upstream requests attributed to the run's messages.
    pub upstream_requests: u64,
    /// Messages with more upstream requests than segments plus one retry.
    pub over_request_budget: u64,
    /// Upstream connections open after the run.
    pub upstream_open: i64,
    /// Connections opened, lost, and stops sent.
    pub connects: u64,
    /// Connections lost (or dropped for a reconnect).
    pub losses: u64,
    /// `stop`s sent.
    pub stops: u64,
    /// Protocol v2: messages the clients asked to resume on a new socket.
    pub resumes: u64,
    /// Protocol v2: messages whose `speak` was lost with the link, sent again.
    pub respoken: u64,
    /// Time from `speak` to the first audio frame, for messages that had audio.
    pub first_audio: Vec<Duration>,
    /// Every broken promise, in words.
    pub violations: Vec<String>,
}

impl Verdict {
    /// Messages that ended exactly once, as a share of all.
    /// Of the messages that had to run to their end (not stopped, superseded or failed), the
    /// share that ended `done`; the others were cut off (`interrupted`, or settled so by the
    /// client when their socket died).
    pub fn done_rate(&self) -> f64 {
        let done = self.ends.get("done").copied().unwrap_or(0);
        let cut = self.ends.get("interrupted").copied().unwrap_or(0) + self.unknown_resolved;
        if done + cut == 0 {
            return 1.0;
        }
        done as f64 / (done + cut) as f64
    }

    pub fn exactly_once_rate(&self) -> f64 {
        if self.speaks == 0 {
            return 1.0;
        }
        (self.speaks - self.duplicated - self.missing) as f64 / self.speaks as f64
    }

    /// The `p`th percentile of time to first audio, in milliseconds.
    pub fn first_audio_ms(&self, p: f64) -> Option<f64> {
        let mut ms: Vec<f64> = self
            .first_audio
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        ms.sort_by(f64::total_cmp);
        (!ms.is_empty()).then(|| crate::percentile(&ms, p))
    }

    /// Fails with every violation unless there are none.
    pub fn check(&self) -> crate::TestResult {
        if self.violations.is_empty() {
            return Ok(());
        }
        let shown: Vec<_> = self.violations.iter().take(20).cloned().collect();
        Err(format!(
            "{} violation(s):\n  {}\n{self}",
            self.violations.len(),
            shown.join("\n  ")
        ))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |p| {
            self.first_audio_ms(p)
                .map_or("-".to_owned(), |v| format!("{v:.0}"))
        };
        writeln!(
            f,
            "speaks={} written={} written_done={} ends={:?} errors={:?}",
            self.speaks, self.written, self.written_done, self.ends, self.errors
        )?;
        writeln!(
            f,
            "exactly_once={:.4} duplicated={} relay_duplicated={} missing={} unknown_resolved_interrupted={}",
            self.exactly_once_rate(),
            self.duplicated,
            self.relay_duplicated,
            self.missing,
            self.unknown_resolved
        )?;
        writeln!(
            f,
            "done_bit_exact={} not_bit_exact={} violations={}",
            self.done_bit_exact,
            self.not_bit_exact,
            self.violations.len()
        )?;
        writeln!(
            f,
            "upstream_requests={} over_budget={} upstream_open_after={}",
            self.upstream_requests, self.over_request_budget, self.upstream_open
        )?;
        write!(
            f,
            "connects={} losses={} resumes={} respoken={} done_rate={:.4} stops={} first_audio_ms p50={} p95={} p99={}",
            self.connects,
            self.losses,
            self.resumes,
            self.respoken,
            self.done_rate(),
            self.stops,
            ms(50.0),
            ms(95.0),
            ms(99.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "T001x00001 says hello.";

    fn conn(n: u32) -> ConnId {
        ("s".to_owned(), n)
    }

    fn start(id: &str, stream: u32) -> ServerMessage {
        ServerMessage::Start {
            id: id.to_owned(),
            stream,
            sample_rate: 24_000,
            channels: 1,
            encoding: orpheus_protocol::AudioEncoding::Pcm,
            resumed_at: None,
        }
    }

    fn end(id: &str, stream: u32, reason: EndReason, samples: u64) -> ServerMessage {
        ServerMessage::End {
            id: id.to_owned(),
            stream: Some(stream),
            reason,
            samples,
            error: None,
            heard: None,
            metrics: None,
        }
    }

    /// Speaks TEXT as `id` on connection 1, and its stream 1 starts.
    fn started(h: &mut History, id: &str) {
        h.record(
            &conn(1),
            Event::Speak {
                id,
                text: TEXT,
                written: false,
            },
        );
        h.record(&conn(1), Event::Text(&start(id, 1)));
    }

    /// Speaks TEXT as `id` on connection 1 and delivers its whole audio in two frames.
    fn spoken(h: &mut History, id: &str) -> Vec<u8> {
        let pcm = expected_pcm(TEXT);
        started(h, id);
        let half = pcm.len() / 4 * 2;
        for (offset, part) in [(0, &pcm[..half]), (half / 2, &pcm[half..])] {
            let frame = AudioFrame {
                flags: 0,
                stream: 1,
                offset: offset as u32,
                pcm: part,
            };
            h.record(&conn(1), Event::Audio(&frame));
        }
        pcm
    }

    #[test]
    fn a_resumed_message_is_followed_to_its_new_connection() {
        let mut h = History::default();
        let pcm = expected_pcm(TEXT);
        let samples = pcm.len() as u64 / 2;
        started(&mut h, "a");
        let quarter = pcm.len() / 8 * 2;
        let first = AudioFrame {
            flags: 0,
            stream: 1,
            offset: 0,
            pcm: &pcm[..quarter],
        };
        h.record(&conn(1), Event::Audio(&first));
        h.record(&conn(1), Event::Lost);
        // Resumed at the cursor: the relay sends from there, on the new connection.
        let played = quarter as u64 / 2;
        h.record(
            &conn(2),
            Event::Resume {
                id: "a",
                stream: Some(1),
                played,
            },
        );
        let rest = AudioFrame {
            flags: 0,
            stream: 1,
            offset: played as u32,
            pcm: &pcm[quarter..],
        };
        h.record(&conn(2), Event::Audio(&rest));
        h.record(
            &conn(2),
            Event::Text(&end("a", 1, EndReason::Done, samples)),
        );
        let inputs = vec![TEXT.to_owned()];
        let v = h.verdict(&Observed {
            upstream_inputs: &inputs,
            ..Observed::default()
        });
        v.check().unwrap();
        assert_eq!((v.done_bit_exact, v.resumes, v.unknown_resolved), (1, 1, 0));
        assert_eq!(v.done_rate(), 1.0);
    }

    #[test]
    fn a_clean_message_passes() {
        let mut h = History::default();
        let pcm = spoken(&mut h, "a");
        h.record(
            &conn(1),
            Event::Text(&end("a", 1, EndReason::Done, pcm.len() as u64 / 2)),
        );
        let inputs = vec![TEXT.to_owned()];
        let v = h.verdict(&Observed {
            upstream_inputs: &inputs,
            ..Observed::default()
        });
        v.check().unwrap();
        assert_eq!((v.speaks, v.done_bit_exact, v.upstream_requests), (1, 1, 1));
        assert_eq!(v.exactly_once_rate(), 1.0);
    }

    #[test]
    fn duplicated_missing_and_late_audio_are_caught() {
        let mut h = History::default();
        let pcm = spoken(&mut h, "a");
        let samples = pcm.len() as u64 / 2;
        h.record(
            &conn(1),
            Event::Text(&end("a", 1, EndReason::Done, samples)),
        );
        h.record(
            &conn(1),
            Event::Text(&end("a", 1, EndReason::Done, samples)),
        );
        let late = AudioFrame {
            flags: 0,
            stream: 1,
            offset: samples as u32,
            pcm: &[0, 0],
        };
        h.record(&conn(1), Event::Audio(&late));
        h.record(
            &conn(1),
            Event::Speak {
                id: "b",
                text: TEXT,
                written: false,
            },
        );
        let v = h.verdict(&Observed::default());
        assert_eq!((v.duplicated, v.missing), (1, 1));
        assert!(
            v.violations
                .iter()
                .any(|e| e.contains("audio after its end")),
            "{v}"
        );
        assert!(v.check().is_err());
    }

    #[test]
    fn unknown_outcomes_resolve_once_and_only_after_the_socket_died() {
        let mut h = History::default();
        h.record(
            &conn(1),
            Event::Speak {
                id: "a",
                text: TEXT,
                written: false,
            },
        );
        h.record(&conn(1), Event::ResolvedInterrupted { id: "a" });
        assert!(
            h.verdict(&Observed::default()).violations[0].contains("while its socket was alive")
        );

        let mut h = History::default();
        h.record(
            &conn(1),
            Event::Speak {
                id: "a",
                text: TEXT,
                written: false,
            },
        );
        h.record(&conn(1), Event::Lost);
        h.record(&conn(1), Event::ResolvedInterrupted { id: "a" });
        let v = h.verdict(&Observed::default());
        v.check().unwrap();
        assert_eq!(v.unknown_resolved, 1);
        h.record(&conn(1), Event::ResolvedInterrupted { id: "a" });
        assert_eq!(h.verdict(&Observed::default()).duplicated, 1);
    }

    #[test]
    fn wrong_audio_offsets_and_request_counts_are_caught() {
        let mut h = History::default();
        started(&mut h, "a");
        let frame = AudioFrame {
            flags: 0,
            stream: 1,
            offset: 0,
            pcm: &[1, 2, 3, 4],
        };
        h.record(&conn(1), Event::Audio(&frame));
        h.record(&conn(1), Event::Audio(&frame));
        h.record(&conn(1), Event::Text(&end("a", 1, EndReason::Done, 2)));
        let inputs = vec![TEXT.to_owned(); 3];
        let log = "speak session=1 id=a\nend session=1 id=a reason=done\nend session=1 id=a reason=done\n";
        let v = h.verdict(&Observed {
            upstream_inputs: &inputs,
            upstream_open: 1,
            relay_log: log,
        });
        assert_eq!(v.relay_duplicated, 1);
        assert_eq!((v.not_bit_exact, v.over_request_budget), (1, 1));
        assert!(
            v.violations.iter().any(|e| e.contains("offset 0 after 2")),
            "{v}"
        );
        assert!(v
            .violations
            .iter()
            .any(|e| e.contains("upstream connection(s) open")));
    }

    #[test]
    fn tags_are_the_first_word() {
        assert_eq!(message_tag("T001x00002 says hi."), "T001x00002");
        assert_eq!(
            message_tag("T001x00003 [[fault:status=429]] says hi."),
            "T001x00003"
        );
    }

    #[test]
    fn a_written_message_is_checked_against_the_segments_the_upstream_got() {
        const WRITTEN: &str = "W001x00001 W001x00001a. W001x00001b W001x00001c.";
        let segments = vec![
            "W001x00001 W001x00001a.".to_owned(),
            "W001x00001b W001x00001c.".to_owned(),
        ];
        let pcm = crate::pcm_of_segments(&segments);
        let run = |audio: &[u8], inputs: &[String]| {
            let mut h = History::default();
            h.record(
                &conn(1),
                Event::Speak {
                    id: "w",
                    text: WRITTEN,
                    written: true,
                },
            );
            h.record(&conn(1), Event::Text(&start("w", 1)));
            let frame = AudioFrame {
                flags: 0,
                stream: 1,
                offset: 0,
                pcm: audio,
            };
            h.record(&conn(1), Event::Audio(&frame));
            let samples = audio.len() as u64 / 2;
            h.record(
                &conn(1),
                Event::Text(&end("w", 1, EndReason::Done, samples)),
            );
            h.verdict(&Observed {
                upstream_inputs: inputs,
                ..Observed::default()
            })
        };
        run(&pcm, &segments).check().unwrap();
        let mut wrong = pcm.clone();
        wrong[100] ^= 1;
        assert_eq!(run(&wrong, &segments).not_bit_exact, 1);
        let twice = [
            segments[0].clone(),
            segments[0].clone(),
            segments[1].clone(),
        ];
        let v = run(&crate::pcm_of_segments(&twice), &twice);
        assert!(
            v.violations.iter().any(|e| e.contains("in order, once")),
            "{v}"
        );
    }
}
