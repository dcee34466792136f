//! Protocol v2 against real workerd: a listener that reports its play cursor, a link that drops
//! mid-message and resumes, flow control holding a slow reader to the window, and what an
//! `end` says was heard.

use std::time::{Duration, Instant};

use orpheus_e2e::{check_bit_exact, ensure, Client, Fixture, Frame, TestResult};
use orpheus_protocol::{EndReason, ServerMessage};

use crate::texts::english;

const RATE: f64 = 24_000.0;
const WINDOW_SAMPLES: u64 = 48_000;

/// A client of protocol v2 that plays at `speed` times real time (its cursor never passing
/// what it received) and reports its cursor every 250 ms, as the player does.
struct Listener {
    client: Client,
    speed: f64,
    pcm: Vec<u8>,
    stream: Option<u32>,
    cursor: f64,
    /// The cursor last reported, and when.
    reported: u64,
    reported_at: Instant,
    clock: Instant,
    /// The most audio ever received beyond the cursor last reported.
    most_ahead: u64,
}

impl Listener {
    async fn connect(fx: &Fixture, sid: &str, speed: f64) -> TestResult<Self> {
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
        Ok(Self {
            client,
            speed,
            pcm: Vec::new(),
            stream: None,
            cursor: 0.0,
            reported: 0,
            reported_at: Instant::now(),
            clock: Instant::now(),
            most_ahead: 0,
        })
    }

    fn received(&self) -> u64 {
        self.pcm.len() as u64 / 2
    }

    fn played(&self) -> u64 {
        self.cursor as u64
    }

    async fn report(&mut self) -> TestResult {
        let (Some(stream), played) = (self.stream, self.played()) else {
            return Ok(());
        };
        self.client.played(stream, played, self.received()).await?;
        self.reported = played;
        self.reported_at = Instant::now();
        Ok(())
    }

    /// Listens until the `end` of `id` (returned), or for `for_at_most` (then `None`).
    async fn listen(
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
                Some(Frame::Text(ServerMessage::Start { stream, .. })) => {
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
                    ensure!(offset as u64 == self.received(), "audio at {offset}");
                    self.pcm.extend_from_slice(&pcm);
                    self.most_ahead = self.most_ahead.max(self.received() - self.reported);
                }
                Some(Frame::Closed(code)) => return Err(format!("closed: {code:?}")),
                Some(other) => return Err(format!("unexpected {other:?}")),
                None => {}
            }
            if self.reported_at.elapsed() >= Duration::from_millis(250) {
                self.report().await?;
            }
        }
        Ok(None)
    }
}

fn heard_of(end: &ServerMessage) -> TestResult<(EndReason, u64, u64)> {
    match end {
        ServerMessage::End {
            reason,
            heard: Some(heard),
            metrics: Some(_),
            ..
        } => Ok((*reason, heard.samples, heard.chars)),
        other => Err(format!("a v2 end has heard and metrics: {other:?}")),
    }
}

/// A link cut mid-message: the listener reconnects, resumes at its cursor, and hears the rest,
/// each sample once, ending `done`.
pub async fn v2_resume_after_a_dropped_link(fx: &Fixture) -> TestResult {
    let text = english(160);
    let mut listener = Listener::connect(fx, "v2-resume", 2.0).await?;
    listener.client.speak("m", &text, None).await?;
    ensure!(
        listener
            .listen("m", Duration::from_millis(1500))
            .await?
            .is_none(),
        "still speaking when the link drops"
    );
    let stream = listener.stream.ok_or("no start")?;
    let played = listener.played();
    ensure!(played > 0, "something played before the drop");
    // The link dies without a closing handshake.
    drop(std::mem::replace(
        &mut listener.client,
        Client::connect_v2(fx, "v2-resume").await?,
    ));
    listener.pcm.truncate(played as usize * 2);
    listener.client.resume("m", stream, played).await?;
    let end = listener
        .listen("m", Duration::from_secs(60))
        .await?
        .ok_or("no end after the resume")?;
    let (reason, _, chars) = heard_of(&end)?;
    ensure!(
        reason == EndReason::Done,
        "resumed message ended {reason:?}"
    );
    ensure!(
        chars == text.chars().count() as u64,
        "done: all heard ({chars})"
    );
    check_bit_exact(&listener.pcm, &text)?;
    println!("resumed at sample {played} of stream {stream}: done, bit-exact");
    Ok(())
}

/// A listener at half speed: the relay never runs more than the window ahead of its reports;
/// a stop gets its `end` within a round trip, and the `end` says what was heard.
pub async fn v2_flow_control_and_heard_text(fx: &Fixture) -> TestResult {
    let text = english(400);
    let mut listener = Listener::connect(fx, "v2-flow", 0.5).await?;
    listener.client.speak("m", &text, None).await?;
    ensure!(
        listener
            .listen("m", Duration::from_secs(6))
            .await?
            .is_none(),
        "a half-speed listener is still listening"
    );
    // Allowance for the frame in flight when a report arrives.
    ensure!(
        listener.most_ahead <= WINDOW_SAMPLES + 8_192,
        "received {} samples beyond the last report",
        listener.most_ahead
    );
    listener.report().await?;
    let stopped_at = Instant::now();
    listener.client.stop("m").await?;
    let end = listener
        .listen("m", Duration::from_secs(10))
        .await?
        .ok_or("no end after stop")?;
    let stop_to_end = stopped_at.elapsed();
    let (reason, samples, chars) = heard_of(&end)?;
    ensure!(reason == EndReason::Stopped, "ended {reason:?}");
    ensure!(
        samples == listener.reported,
        "heard {samples}, reported {}",
        listener.reported
    );
    let heard: String = text.chars().take(chars as usize).collect();
    let rest = &text[heard.len()..];
    ensure!(
        chars > 0 && rest.starts_with(' ') && !heard.ends_with(' '),
        "heard text ends on a word: {heard:?} | {rest:?}"
    );
    println!(
        "half speed: most ahead {} ms; stop to end {} ms; heard {chars} of {} chars",
        listener.most_ahead * 1000 / 24_000,
        stop_to_end.as_millis(),
        text.chars().count()
    );
    ensure!(
        stop_to_end < Duration::from_secs(1),
        "stop to end {stop_to_end:?}"
    );
    Ok(())
}
