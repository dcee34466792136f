//! A protocol v2 listener: a client that plays at a chosen speed, its cursor never passing what
//! it received, and reports its cursor as the player does: as often as
//! [`orpheus_protocol::report_interval_ms`] says (every 250 ms, every 750 ms with a second or
//! more ahead), and every frame it receives while it has less than
//! [`orpheus_protocol::PROMPT_BELOW_MS`] beyond its cursor.

use std::time::{Duration, Instant};

use orpheus_protocol::{ServerMessage, WordTiming};

use crate::{ensure, Client, Fixture, Frame, TestResult};

const RATE: f64 = 24_000.0;

/// A client of protocol v2 that plays at `speed` times real time (its cursor never passing
/// what it received) and reports its cursor as the player does (see the module docs).
pub struct Listener {
    /// Its socket.
    pub client: Client,
    speed: f64,
    /// The PCM received (after a resume: up to the cursor, then what came since).
    pub pcm: Vec<u8>,
    /// The stream of the message, once started.
    pub stream: Option<u32>,
    /// The message sample the stream starts at: 0, or a stream's `resumed_at` (a restart).
    base: u64,
    cursor: f64,
    /// The cursor last reported.
    pub reported: u64,
    reported_at: Instant,
    clock: Instant,
    /// The most audio ever received beyond the cursor last reported.
    pub most_ahead: u64,
    /// When the first audio frame arrived.
    pub first_audio_at: Option<Instant>,
    /// The samples the first audio frame brought (they came before `first_audio_at`).
    pub first_frame_samples: u64,
    /// Whether it reports its cursor (protocol v2); a v1 listener only plays.
    reports: bool,
    /// Where the message's words are said (message samples), as the relay told them.
    pub words: Vec<orpheus_protocol::WordTiming>,
}

impl Listener {
    /// Connects to session `sid` of the main relay, offering protocol v2, to play at `speed`.
    pub async fn connect(fx: &Fixture, sid: &str, speed: f64) -> TestResult<Self> {
        let client = Client::connect_v2(fx, sid).await?;
        ensure!(
            matches!(
                &client.ready,
                ServerMessage::Ready {
                    protocol: 2,
                    flow: Some(_),
                    ..
                }
            ),
            "a v2 ready: {:?}",
            client.ready
        );
        Ok(Self::new(client, speed, true))
    }

    /// A protocol v1 listener, for comparison: it plays, and never reports.
    pub async fn connect_v1(fx: &Fixture, sid: &str, speed: f64) -> TestResult<Self> {
        Ok(Self::new(Client::connect(fx, sid).await?, speed, false))
    }

    /// A listener of protocol v2 (or v1) connected at `url`: a proxy in front of the relay.
    pub async fn connect_at(url: &str, sid: &str, speed: f64, v2: bool) -> TestResult<Self> {
        let client = Client::connect_at(url, sid, v2).await?;
        Ok(Self::new(client, speed, v2))
    }

    fn new(client: Client, speed: f64, reports: bool) -> Self {
        Self {
            client,
            speed,
            pcm: Vec::new(),
            stream: None,
            base: 0,
            cursor: 0.0,
            reported: 0,
            reported_at: Instant::now(),
            clock: Instant::now(),
            most_ahead: 0,
            first_audio_at: None,
            first_frame_samples: 0,
            reports,
            words: Vec::new(),
        }
    }

    /// Cuts its link (no closing handshake), reconnects to session `sid` and asks to resume
    /// message `id` at its cursor. It keeps what it has; what the relay sends again must be
    /// the same audio. Returns the cursor.
    pub async fn cut_and_resume(&mut self, fx: &Fixture, sid: &str, id: &str) -> TestResult<u64> {
        self.client.cut().await;
        self.client = Client::connect_v2(fx, sid).await?;
        self.resume(id).await
    }

    /// On a new socket, asks to resume message `id` at the cursor. Returns the cursor.
    pub async fn resume(&mut self, id: &str) -> TestResult<u64> {
        let stream = self.stream.ok_or("no stream to resume")?;
        let played = self.played();
        self.client
            .resume(id, Some(stream), played - self.base)
            .await?;
        Ok(played)
    }

    /// Samples of the message received.
    pub fn received(&self) -> u64 {
        self.pcm.len() as u64 / 2
    }

    /// Samples of the message played.
    pub fn played(&self) -> u64 {
        self.cursor as u64
    }

    /// Reports the cursor now.
    pub async fn report(&mut self) -> TestResult {
        self.report_as(false).await
    }

    /// Reports the cursor now (`on_receipt`: answering a frame just received).
    async fn report_as(&mut self, on_receipt: bool) -> TestResult {
        let (Some(stream), played) = (self.stream, self.played()) else {
            return Ok(());
        };
        if !self.reports {
            return Ok(());
        }
        // The relay counts in the stream, which may start past the message's beginning.
        let base = self.base;
        self.client
            .played(stream, played - base, self.received() - base, on_receipt)
            .await?;
        self.reported = played;
        self.reported_at = Instant::now();
        Ok(())
    }

    /// Speaks `text` as `id` and listens for `for_at_most`, which must pass before its `end`.
    pub async fn speak_and_listen(
        &mut self,
        id: &str,
        text: &str,
        for_at_most: Duration,
    ) -> TestResult {
        self.client.speak(id, text, None).await?;
        ensure!(
            self.listen(id, for_at_most).await?.is_none(),
            "{id} ended within {for_at_most:?}, while still speaking was expected"
        );
        Ok(())
    }

    /// Protocol v2: speaks `text` as `id` while it is being written, listening all along: opens
    /// the message, appends the text in pieces of 1 to 5 characters every 20 to 50 ms (drawn
    /// from `seed`), then finishes it. Returns when each piece went out, with the number of
    /// characters sent by then. The message must not end while it is written.
    pub async fn write(
        &mut self,
        id: &str,
        text: &str,
        seed: u64,
    ) -> TestResult<Vec<(usize, Instant)>> {
        let chars: Vec<char> = text.chars().collect();
        let mut rng = orpheus_test_support::rng(seed);
        let mut sent = Vec::new();
        self.client.open(id, "", text).await?;
        let mut at = 0;
        while at < chars.len() {
            let (piece, pause) = orpheus_test_support::next_piece(&chars, at, &mut rng);
            self.client.append(id, &piece).await?;
            at += piece.chars().count();
            sent.push((at, Instant::now()));
            ensure!(
                self.listen(id, pause).await?.is_none(),
                "{id} ended while it was being written"
            );
        }
        self.client.finish(id).await?;
        Ok(sent)
    }

    /// Reports its cursor, stops `id` and waits up to `within` for the `end`: returns it, and
    /// the time from the stop to it.
    pub async fn stop_and_wait(
        &mut self,
        id: &str,
        within: Duration,
    ) -> TestResult<(ServerMessage, Duration)> {
        self.report().await?;
        let stopped = Instant::now();
        self.client.stop(id).await?;
        let end = self.until_end(id, within).await?;
        Ok((end, stopped.elapsed()))
    }

    /// Listens until the `end` of `id` (returned), which must come within `within`.
    pub async fn until_end(&mut self, id: &str, within: Duration) -> TestResult<ServerMessage> {
        self.listen(id, within)
            .await?
            .ok_or_else(|| format!("no end for {id} within {within:?}"))
    }

    /// Listens until the `end` of `id` (returned), or for `for_at_most` (then `None`).
    pub async fn listen(
        &mut self,
        id: &str,
        for_at_most: Duration,
    ) -> TestResult<Option<ServerMessage>> {
        let until = Instant::now() + for_at_most;
        while Instant::now() < until {
            let frame = match self.client.next(Duration::from_millis(20)).await {
                Ok(frame) => Some(frame),
                Err(e) if e.starts_with("no frame within") => None,
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            if self.stream.is_some() {
                let dt = now.duration_since(self.clock).as_secs_f64();
                self.cursor = (self.cursor + dt * self.speed * RATE).min(self.received() as f64);
            }
            self.clock = now;
            match frame {
                Some(Frame::Text(ServerMessage::Start {
                    stream, resumed_at, ..
                })) => {
                    // A restart begins a new stream at a segment boundary at or before the
                    // cursor: what the listener has from there on is heard again.
                    if let Some(at) = resumed_at {
                        self.base = at;
                        self.pcm.truncate(at as usize * 2);
                        self.cursor = self.cursor.min(at as f64);
                        self.reported = self.reported.min(at);
                        // Its words are told anew.
                        self.words.retain(|w| w.start < at);
                    }
                    self.stream = Some(stream)
                }
                Some(Frame::Text(end @ ServerMessage::End { .. })) => {
                    ensure!(
                        matches!(&end, ServerMessage::End { id: got, .. } if got == id),
                        "end of another message: {end:?}"
                    );
                    return Ok(Some(end));
                }
                Some(Frame::Audio { offset, pcm, .. }) => {
                    // After a resume the relay sends again from the cursor: the overlap must be
                    // the audio already here, and only what is new is kept (played once).
                    let (at, have) = ((self.base + u64::from(offset)) as usize * 2, self.pcm.len());
                    ensure!(
                        at <= have,
                        "a gap: audio at {offset}, {} received",
                        have / 2
                    );
                    let overlap = (have - at).min(pcm.len());
                    ensure!(
                        self.pcm[at..at + overlap] == pcm[..overlap],
                        "audio sent again at {offset} differs"
                    );
                    self.pcm.extend_from_slice(&pcm[overlap..]);
                    if self.first_audio_at.is_none() {
                        self.first_audio_at = Some(now);
                        self.first_frame_samples = self.received();
                    }
                    self.most_ahead = self.most_ahead.max(self.received() - self.reported);
                    let prompt_below = orpheus_protocol::PROMPT_BELOW_MS * RATE as u64 / 1000;
                    if self.received() - self.played() < prompt_below {
                        self.report_as(true).await?;
                    }
                }
                Some(Frame::Text(ServerMessage::Words { stream, words })) => {
                    ensure!(
                        Some(stream) == self.stream,
                        "words of stream {stream}, not ours"
                    );
                    // A restarted stream's words come in the new stream's samples.
                    let base = self.base;
                    self.words.extend(words.into_iter().map(|w| WordTiming {
                        start: w.start + base,
                        end: w.end + base,
                        ..w
                    }));
                }
                Some(Frame::Closed(code)) => return Err(format!("closed: {code:?}")),
                Some(other) => return Err(format!("unexpected {other:?}")),
                None => {}
            }
            let ahead = self.received() - self.played();
            let every = orpheus_protocol::report_interval_ms(ahead, RATE as u32);
            if self.reported_at.elapsed() >= Duration::from_millis(every) {
                self.report().await?;
            }
        }
        Ok(None)
    }
}
