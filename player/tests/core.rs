//! Scenario and randomized tests of the player core, on the host.

use std::collections::{BTreeMap, BTreeSet};

use orpheus_player::core::{Completion, Config, Effect, Input, PlayerCore, PlayerState, SourceId};
use orpheus_protocol::{AudioFrame, EndReason, ServerMessage};

const RATE: f64 = 24_000.0;

/// Plays the browser's part: records what is scheduled and when sources end.
struct Browser {
    core: PlayerCore,
    now: f64,
    sent: Vec<String>,
    /// Live sources: id -> (start, end).
    sources: BTreeMap<SourceId, (f64, f64)>,
    scheduled: Vec<(SourceId, f64, usize)>,
    completions: Vec<Completion>,
    states: Vec<PlayerState>,
    silenced: BTreeSet<SourceId>,
    reconnects: Vec<u64>,
    disconnects: usize,
}

impl Browser {
    fn new() -> Self {
        let mut b = Self {
            core: PlayerCore::new(Config::default()),
            now: 1.0,
            sent: vec![],
            sources: BTreeMap::new(),
            scheduled: vec![],
            completions: vec![],
            states: vec![],
            silenced: BTreeSet::new(),
            reconnects: vec![],
            disconnects: 0,
        };
        b.feed(Input::Context {
            running: true,
            sample_rate: RATE,
        });
        b.feed(Input::Opened);
        b
    }

    fn feed(&mut self, input: Input<'_>) {
        self.core.handle(input, self.now);
        for effect in self.core.take_effects() {
            match effect {
                Effect::Send(text) => self.sent.push(text),
                Effect::Schedule {
                    source,
                    samples,
                    sample_rate,
                    at,
                } => {
                    assert!(at >= self.now, "never scheduled in the past");
                    let end = at + samples.len() as f64 / f64::from(sample_rate);
                    self.sources.insert(source, (at, end));
                    self.scheduled.push((source, at, samples.len()));
                }
                Effect::Silence { sources, .. } => self.silenced.extend(sources),
                Effect::Release(sources) => {
                    for s in sources {
                        self.sources.remove(&s);
                    }
                }
                Effect::Complete(c) => {
                    assert!(
                        !self.completions.iter().any(|d| d.id == c.id),
                        "{} completed twice",
                        c.id
                    );
                    self.completions.push(c);
                }
                Effect::State { state, .. } => self.states.push(state),
                Effect::Reconnect { after_ms } => self.reconnects.push(after_ms),
                Effect::Disconnect => self.disconnects += 1,
            }
        }
    }

    fn server(&mut self, message: ServerMessage) {
        let json = message.to_json();
        self.feed(Input::Text(&json));
    }

    fn start(&mut self, id: &str, stream: u32) {
        self.server(ServerMessage::Start {
            id: id.into(),
            stream,
            sample_rate: 24_000,
            channels: 1,
            encoding: "pcm_s16le".into(),
        });
    }

    fn audio(&mut self, stream: u32, offset: u32, samples: usize) {
        let pcm: Vec<u8> = (0..samples)
            .flat_map(|i| (i as i16).to_le_bytes())
            .collect();
        let frame = AudioFrame {
            flags: 0,
            stream,
            offset,
            pcm: &pcm,
        }
        .encode();
        self.feed(Input::Binary(&frame));
    }

    fn end(&mut self, id: &str, stream: Option<u32>, reason: EndReason) {
        self.server(ServerMessage::End {
            id: id.into(),
            stream,
            reason,
            samples: 0,
            error: None,
        });
    }

    fn speak(&mut self, id: &str) {
        self.feed(Input::Speak {
            id: id.into(),
            text: "Hello.".into(),
            voice: None,
        });
    }

    /// Advances the clock, reporting `onended` for sources that finished (unless `lost`).
    fn advance(&mut self, seconds: f64, lost: bool) {
        self.now += seconds;
        let ended: Vec<SourceId> = self
            .sources
            .iter()
            .filter(|(id, (_, end))| *end <= self.now || (self.silenced.contains(id)))
            .map(|(id, _)| *id)
            .collect();
        if !lost {
            for id in ended {
                self.feed(Input::SourceEnded(id));
            }
        }
        self.feed(Input::Tick);
    }

    fn completion(&self, id: &str) -> &Completion {
        self.completions
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id} not completed"))
    }
}

#[test]
fn second_message_plays_gaplessly_and_both_complete_once() {
    let mut b = Browser::new();
    for (k, id) in ["m1", "m2"].iter().enumerate() {
        let stream = k as u32 + 1;
        b.speak(id);
        assert_eq!(b.core.state(), PlayerState::Buffering);
        b.start(id, stream);
        let first = b.scheduled.len();
        b.audio(stream, 0, 2400);
        b.audio(stream, 2400, 1201);
        b.audio(stream, 3601, 7);
        assert_eq!(b.core.state(), PlayerState::Speaking);
        let chunks = &b.scheduled[first..];
        assert_eq!(chunks.len(), 3, "message {id} has audio");
        for pair in chunks.windows(2) {
            let (_, at, len) = pair[0];
            assert!(
                (pair[1].1 - (at + len as f64 / RATE)).abs() < 1e-12,
                "no gap, no overlap"
            );
        }
        assert!(
            (chunks[0].1 - (b.now + 0.1)).abs() < 1.0 / RATE,
            "a fresh timeline one lead ahead"
        );
        b.end(id, Some(stream), EndReason::Done);
        assert!(b.completions.len() == k, "not complete while sources play");
        b.advance(1.0, false);
        let c = b.completion(id);
        assert_eq!(
            (c.reason, c.samples, c.underruns),
            (EndReason::Done, 3608, 0)
        );
        assert_eq!(b.core.live_sources(), 0);
        assert_eq!(b.core.state(), PlayerState::Idle);
    }
}

#[test]
fn a_new_message_drops_the_old_stream_and_silences_its_sources() {
    let mut b = Browser::new();
    b.speak("old");
    b.start("old", 1);
    b.audio(1, 0, 4800);
    b.speak("new");
    assert_eq!(b.silenced.len(), 1, "the old message's source is silenced");
    let before = b.scheduled.len();
    b.audio(1, 4800, 4800);
    assert_eq!(
        b.scheduled.len(),
        before,
        "frames of the old stream are dropped"
    );
    b.end("old", Some(1), EndReason::Superseded);
    b.start("new", 2);
    b.audio(2, 0, 100);
    assert_eq!(b.scheduled.len(), before + 1);
    b.advance(0.05, false);
    assert_eq!(b.completion("old").reason, EndReason::Superseded);
    b.end("new", Some(2), EndReason::Done);
    b.advance(1.0, false);
    assert_eq!(b.completion("new").reason, EndReason::Done);
    assert!(b.sent.iter().filter(|s| s.contains("\"speak\"")).count() == 2);
}

#[test]
fn stop_is_authoritative() {
    let mut b = Browser::new();
    b.speak("m");
    b.start("m", 1);
    b.audio(1, 0, 2400);
    b.feed(Input::Stop);
    assert!(b.sent.last().unwrap().contains("\"stop\""));
    assert_eq!(b.silenced.len(), 1);
    assert_eq!(b.core.state(), PlayerState::Idle, "stopped: idle at once");
    let before = b.scheduled.len();
    b.audio(1, 2400, 2400);
    assert_eq!(
        b.scheduled.len(),
        before,
        "nothing of a stopped message is scheduled"
    );
    b.advance(0.01, false);
    assert!(
        b.completions.is_empty(),
        "completion waits for the relay's end"
    );
    b.end("m", Some(1), EndReason::Stopped);
    assert_eq!(b.completion("m").reason, EndReason::Stopped);
    assert_eq!(b.core.live_sources(), 0);
}

#[test]
fn a_stop_that_crosses_the_relays_done_is_still_stopped() {
    // The relay finished before the stop reached it; the player had dropped the audio.
    let mut b = Browser::new();
    b.speak("m");
    b.feed(Input::Stop);
    b.start("m", 1);
    b.audio(1, 0, 2400);
    b.end("m", Some(1), EndReason::Done);
    let c = b.completion("m");
    assert_eq!((c.reason, c.samples), (EndReason::Stopped, 0));
    assert!(b.scheduled.is_empty());
}

#[test]
fn stopping_a_fully_delivered_message_mid_playback_is_stopped_not_done() {
    let mut b = Browser::new();
    b.speak("m");
    b.start("m", 1);
    b.audio(1, 0, 48_000); // two seconds, delivered at once
    b.end("m", Some(1), EndReason::Done);
    b.advance(0.5, false);
    b.feed(Input::Stop);
    b.advance(0.05, false);
    assert_eq!(b.completion("m").reason, EndReason::Stopped);
    // The same for a new message cutting in.
    b.speak("a");
    b.start("a", 2);
    b.audio(2, 0, 48_000);
    b.end("a", Some(2), EndReason::Done);
    b.speak("b");
    b.advance(0.05, false);
    assert_eq!(b.completion("a").reason, EndReason::Superseded);
}

#[test]
fn completes_when_onended_never_fires() {
    let mut b = Browser::new();
    b.speak("m");
    b.start("m", 1);
    b.audio(1, 0, 24_000); // one second
    b.end("m", Some(1), EndReason::Done);
    let due = b.core.next_deadline().unwrap();
    assert!(
        (due - (b.now + 0.1 + 1.0 + 0.5)).abs() < 1e-6,
        "scheduled end plus the safety time"
    );
    b.advance(1.2, true);
    assert!(b.completions.is_empty(), "not before the safety timer");
    b.advance(0.5, true);
    assert_eq!(b.completion("m").reason, EndReason::Done);
    assert!(b.sources.is_empty(), "sources released anyway");
    assert_eq!(b.core.live_sources(), 0);
}

#[test]
fn socket_loss_interrupts_once_and_reconnects_with_backoff() {
    let mut b = Browser::new();
    b.speak("m");
    b.start("m", 1);
    b.audio(1, 0, 2400);
    b.feed(Input::Closed);
    assert_eq!(b.completion("m").reason, EndReason::Interrupted);
    assert_eq!(b.core.live_sources(), 0);
    b.end("m", Some(1), EndReason::Done);
    assert_eq!(b.completions.len(), 1, "a late end changes nothing");
    b.feed(Input::Closed);
    b.feed(Input::Closed);
    assert_eq!(b.reconnects, vec![250, 500, 1000]);
    assert_eq!(b.core.state(), PlayerState::Error);
    b.feed(Input::Opened);
    assert_eq!(b.core.state(), PlayerState::Idle);
    let before = b.scheduled.len();
    b.audio(1, 2400, 100);
    assert_eq!(b.scheduled.len(), before, "no stale audio after reconnect");
}

#[test]
fn a_speak_while_reconnecting_is_sent_once_the_socket_opens() {
    let mut b = Browser::new();
    b.feed(Input::Closed);
    let sent = b.sent.len();
    b.speak("m");
    assert_eq!(b.sent.len(), sent, "nothing is sent on a closed socket");
    b.feed(Input::Opened);
    assert_eq!(b.sent.len(), sent + 1);
    assert!(b.sent.last().unwrap().contains(r#""id":"m""#));
    b.start("m", 1);
    b.audio(1, 0, 2400);
    b.end("m", Some(1), EndReason::Done);
    b.advance(1.0, false);
    assert_eq!(b.completion("m").reason, EndReason::Done);
}

#[test]
fn a_speak_whose_connection_attempt_fails_is_interrupted_once() {
    let mut b = Browser::new();
    b.feed(Input::Closed);
    b.speak("m");
    b.feed(Input::Closed);
    assert_eq!(b.completion("m").reason, EndReason::Interrupted);
    b.feed(Input::Opened);
    assert!(
        !b.sent.iter().any(|s| s.contains(r#""id":"m""#)),
        "never sent late"
    );
}

#[test]
fn an_unsent_speak_stopped_or_superseded_ends_at_once_without_a_frame() {
    let mut b = Browser::new();
    b.feed(Input::Closed);
    let sent = b.sent.len();
    b.speak("a");
    b.speak("b");
    assert_eq!(b.completion("a").reason, EndReason::Superseded);
    b.feed(Input::Stop);
    assert_eq!(b.completion("b").reason, EndReason::Stopped);
    b.feed(Input::Opened);
    assert_eq!(b.sent.len(), sent, "the relay never hears of either");
    assert_eq!(b.core.state(), PlayerState::Idle);
}

#[test]
fn a_silent_link_is_pinged_then_given_up() {
    let mut b = Browser::new();
    b.speak("m");
    b.start("m", 1);
    b.audio(1, 0, 2400);
    let sent = b.sent.len();
    // Pongs keep a quiet link alive.
    for _ in 0..5 {
        b.advance(3.0, false);
        assert_eq!(b.sent.last().unwrap(), r#"{"type":"ping"}"#);
        b.server(ServerMessage::Pong);
    }
    assert_eq!(b.sent.len(), sent + 5);
    assert_eq!(b.disconnects, 0);
    // Half-open: nothing comes back.
    b.advance(3.0, false);
    b.advance(3.0, false);
    assert_eq!(b.disconnects, 0);
    b.advance(3.0, false);
    assert_eq!(b.disconnects, 1);
    assert_eq!(b.completion("m").reason, EndReason::Interrupted);
    assert_eq!(b.core.live_sources(), 0);
    assert_eq!(b.reconnects.len(), 1);
    // Idle: no pings.
    b.feed(Input::Opened);
    let sent = b.sent.len();
    b.advance(30.0, false);
    assert_eq!(b.sent.len(), sent);
}

#[test]
fn suspended_context_reports_blocked_by_autoplay() {
    let mut b = Browser::new();
    b.feed(Input::Context {
        running: false,
        sample_rate: RATE,
    });
    b.speak("m");
    b.start("m", 1);
    b.audio(1, 0, 100);
    assert_eq!(
        b.core.state(),
        PlayerState::BlockedByAutoplay,
        "not 'speaking' into a suspended context"
    );
    b.feed(Input::Context {
        running: true,
        sample_rate: RATE,
    });
    assert_eq!(b.core.state(), PlayerState::Speaking);
}

#[test]
fn rejected_speak_completes_with_its_error() {
    let mut b = Browser::new();
    b.speak("m");
    b.server(ServerMessage::End {
        id: "m".into(),
        stream: None,
        reason: EndReason::Error,
        samples: 0,
        error: Some(orpheus_protocol::EndError::new(
            orpheus_protocol::ErrorCode::EmptyText,
            None,
        )),
    });
    let c = b.completion("m");
    assert_eq!(
        c.error.as_ref().unwrap().code,
        orpheus_protocol::ErrorCode::EmptyText
    );
    assert_eq!(b.core.state(), PlayerState::Idle);
}

#[test]
fn late_chunks_count_as_underruns_in_state_and_completion() {
    let mut b = Browser::new();
    b.speak("m");
    b.start("m", 1);
    b.audio(1, 0, 240); // 10 ms
    b.now += 0.5; // the next chunk is half a second late
    b.audio(1, 240, 240);
    assert!(b.states.contains(&PlayerState::Speaking));
    b.end("m", Some(1), EndReason::Done);
    b.advance(1.0, false);
    assert_eq!(b.completion("m").underruns, 1);
}

#[test]
fn randomized_sequences_complete_every_message_exactly_once() {
    let mut seed = 0x0DDB_1A5E_5BAD_5EEDu64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..2000 {
        let mut b = Browser::new();
        let mut spoken: Vec<(String, u32)> = vec![];
        let mut offsets: BTreeMap<u32, u32> = BTreeMap::new();
        let mut ended: BTreeSet<u32> = BTreeSet::new();
        for step in 0..40 {
            match next(9) {
                0 => {
                    let id = format!("m{step}");
                    b.speak(&id);
                    spoken.push((id, spoken.len() as u32 + 1));
                }
                1 => b.feed(Input::Stop),
                2..=4 => {
                    if let Some((id, stream)) = spoken
                        .iter()
                        .rev()
                        .find(|(_, s)| !ended.contains(s))
                        .cloned()
                    {
                        let offset = offsets.entry(stream).or_insert_with(|| {
                            b.start(&id, stream);
                            0
                        });
                        let n = 1 + next(3000) as u32;
                        let at = *offset;
                        *offset += n;
                        b.audio(stream, at, n as usize);
                    }
                }
                5 => {
                    let open: Vec<_> = spoken
                        .iter()
                        .filter(|(_, s)| !ended.contains(s))
                        .cloned()
                        .collect();
                    if let Some((id, stream)) = open.first() {
                        ended.insert(*stream);
                        b.end(id, Some(*stream), EndReason::Done);
                    }
                }
                6 => b.advance(next(1000) as f64 / 1000.0, next(4) == 0),
                7 if next(10) == 0 => {
                    b.feed(Input::Closed);
                    b.feed(Input::Opened);
                    ended.extend(spoken.iter().map(|(_, s)| *s));
                }
                _ => b.advance(0.01, false),
            }
        }
        // The relay ends everything still open, then time runs out.
        for (id, stream) in spoken
            .iter()
            .filter(|(_, s)| !ended.contains(s))
            .cloned()
            .collect::<Vec<_>>()
        {
            b.end(&id, Some(stream), EndReason::Stopped);
        }
        b.advance(30.0, false);
        assert_eq!(
            b.completions.len(),
            spoken.len(),
            "every message completes exactly once"
        );
        assert_eq!(b.core.live_sources(), 0, "no source left live");
        assert!(b.sources.is_empty(), "every source released");
    }
}
