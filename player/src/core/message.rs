//! A message from `speak` to its one completion: its phase on the way to the relay's `end`, its
//! stream in the engine, the reports that move its play cursor, and how it completes, exactly
//! once, when the end has come and the engine has played (or stopped) its last sample, or by
//! the safety timer. With protocol v2, its cursor reported to the relay, and its parking and
//! resuming across a lost socket.

use crate::prelude::*;

use orpheus_protocol::codec::{self, Metrics, RelayError};
use orpheus_protocol::EndReason;

use super::api::{
    Boundary, Command, Completion, ContextState, Effect, Progress, Report, ReportKind, Seconds,
    SpeakOptions, Word,
};
use super::link::Link;
use super::written::{char_count, TextEnd, Written};
use super::PlayerCore;

/// Where a message is on its way to completion. It only moves forward.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    /// Waiting for the session to be ready; this `speak` frame (of a text of `chars`
    /// characters) will be sent then.
    Unsent { frame: String, chars: usize },
    /// Sent (this frame); no `start` yet. `resumed` once a `resume` for it went out on a new
    /// socket: an answer that the relay does not know it means it never got the frame.
    Sent { frame: String, resumed: bool },
    /// Its audio flows in this stream at this rate.
    Streaming { stream: u32, rate: u32 },
    /// The relay's `end` arrived at `at`; the engine plays what it has.
    Ended {
        reason: EndReason,
        error: Option<RelayError>,
        at: Seconds,
    },
}

/// Where the message's stream is in the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Playback {
    /// Not begun (no audio yet, or none ever).
    NotBegun,
    /// Begun; not yet audible.
    Begun { stream: u32, rate: u32 },
    /// Audible.
    Playing { stream: u32, rate: u32 },
    /// Done with: drained, stopped, or replaced by a newer stream.
    Finished,
}

#[derive(Debug)]
pub(super) struct Message {
    pub(super) id: String,
    pub(super) phase: Phase,
    /// Protocol v2: text still being written (`speakStream`).
    pub(super) written: Option<Written>,
    pub(super) playback: Playback,
    /// Stopped or superseded by the app (which): it completes as that, even if the relay then
    /// reports `done`, since the listener did not hear it all.
    pub(super) retired: Option<EndReason>,
    pub(super) spoke_at: Seconds,
    /// When its first sample was rendered.
    pub(super) first_audio_at: Option<Seconds>,
    pub(super) samples: u64,
    pub(super) played: u64,
    /// When the engine last reported the play cursor moving on.
    pub(super) played_at: Seconds,
    pub(super) buffered: u64,
    pub(super) underruns: u32,
    /// Protocol v2: when its socket was lost (or the attempt that was to carry it failed);
    /// it waits to resume (or to be sent) on the next.
    pub(super) parked_at: Option<Seconds>,
    pub(super) heard_chars: Option<u64>,
    pub(super) metrics: Option<Metrics>,
    /// Protocol v2: where its stream's words are said, its stream's rate, and how many of the
    /// words the engine's cursor passed (their boundaries fired).
    pub(super) words: Vec<Word>,
    pub(super) rate: Option<u32>,
    pub(super) fired: usize,
}

impl Message {
    pub(super) fn stream(&self) -> Option<u32> {
        match self.playback {
            Playback::Begun { stream, .. } | Playback::Playing { stream, .. } => Some(stream),
            _ => None,
        }
    }

    /// Whether a sent message still waits for its relay `end`.
    pub(super) fn awaits_end(&self) -> bool {
        matches!(self.phase, Phase::Sent { .. } | Phase::Streaming { .. })
    }

    /// When the safety timer completes it if the engine never reports: after what is left of
    /// its audio (nothing, once stopped) and the safety margin.
    pub(super) fn safety_deadline(&self, safety: Seconds) -> Option<Seconds> {
        let Phase::Ended { at, .. } = self.phase else {
            return None;
        };
        match self.playback {
            Playback::NotBegun | Playback::Finished => None,
            Playback::Begun { rate, .. } | Playback::Playing { rate, .. } => {
                let left = match self.retired {
                    Some(_) => 0.0,
                    None => self.samples.saturating_sub(self.played) as f64 / f64::from(rate),
                };
                Some(at.max(self.played_at) + left + safety)
            }
        }
    }

    /// Takes in what the engine reported about the message's stream.
    pub(super) fn apply(&mut self, report: &Report, now: Seconds) {
        // A starved stream is still reported, its cursor standing: that is no progress, and
        // must not hold off the safety timer (audio lost for good would hang the message).
        if report.played != self.played {
            self.played_at = now;
        }
        self.played = report.played;
        self.buffered = report.buffered;
        self.underruns = report.underruns;
        self.playback = match (report.kind, self.playback) {
            (ReportKind::Drained | ReportKind::Stopped, _) => Playback::Finished,
            (ReportKind::Started, Playback::Begun { stream, rate }) => {
                self.first_audio_at = Some(report.at);
                Playback::Playing { stream, rate }
            }
            (_, playback) => playback,
        };
    }

    pub(super) fn complete_at(&self, now: Seconds, safety: Seconds) -> bool {
        matches!(self.phase, Phase::Ended { .. })
            && (matches!(self.playback, Playback::NotBegun | Playback::Finished)
                || self.safety_deadline(safety).is_some_and(|at| now >= at))
    }
}

/// The relay's error for a code the player finds itself. (Always inlined: with the code known,
/// only its own name and text are linked, not every code's.)
#[inline(always)]
pub(super) fn refused(code: orpheus_protocol::ErrorCode) -> RelayError {
    RelayError {
        code: code.as_str().to_owned(),
        message: code.message().to_owned(),
        retry_after_s: None,
    }
}

impl PlayerCore {
    /// When a parked message stops waiting for a resume (or, not sent yet, for a socket).
    pub(super) fn resume_deadline(&self) -> Option<Seconds> {
        let m = self.current.as_ref()?;
        let patience = match m.phase {
            Phase::Unsent { .. } => self.config.send_patience,
            _ => self.resume_grace? + self.config.resume_slack,
        };
        Some(m.parked_at? + patience)
    }

    /// Protocol v2: while the AudioContext does not run (and so the engine renders and reports
    /// nothing), when the play cursor, as the engine last reported it, is reported again: the
    /// client is alive, and the relay must not take its link for dead. (An engine that never
    /// reports while its context runs is not covered for: what it has is not known.)
    pub(super) fn keepalive_deadline(&self) -> Option<Seconds> {
        let idle_engine = self.context != ContextState::Running;
        (idle_engine && self.reportable().is_some())
            .then_some(self.acked_at + self.config.keepalive)
    }

    /// A parked message that waited too long ends `interrupted`, its audio stopped.
    pub(super) fn expire_parked(&mut self) {
        if self.resume_deadline().is_none_or(|at| self.now < at) {
            return;
        }
        let now = self.now;
        let m = self.current.as_mut().expect("a parked message");
        m.parked_at = None;
        m.phase = Phase::Ended {
            reason: EndReason::Interrupted,
            error: None,
            at: now,
        };
        if let Some(stream) = m.stream() {
            m.playback = Playback::Finished;
            self.effects.push(Effect::Engine(Command::Stop { stream }));
        }
    }

    /// Protocol v2: the current message and its stream, when its play cursor is reported: the
    /// session is ready, and the message's audio began and waits for its end.
    pub(super) fn reportable(&self) -> Option<(&Message, u32)> {
        if self.link != Link::Ready || self.resume_grace.is_none() {
            return None;
        }
        let m = self.current.as_ref().filter(|m| m.awaits_end())?;
        Some((m, m.stream()?))
    }

    /// Protocol v2: reports the current message's play cursor to the relay, at once before a
    /// stop and while the engine cannot (its context does not run); otherwise the worklet
    /// reports it through the socket's Worker.
    pub(super) fn ack(&mut self) {
        let Some((m, stream)) = self.reportable() else {
            return;
        };
        let frame = codec::played(stream, m.played, m.played + m.buffered, false);
        self.acked_at = self.now;
        self.effects.push(Effect::Send(frame));
    }

    pub(super) fn on_speak(&mut self, id: String, text: &str, options: SpeakOptions) {
        if let Some(old) = self.current.take() {
            self.retire(old, EndReason::Superseded);
        }
        let frame = codec::speak(&id, text, &options);
        let chars = char_count(text);
        let written = options.more.then(|| Written {
            text: text.to_owned(),
            chars,
            in_speak: chars,
            sent: chars,
            sent_at: f64::NEG_INFINITY,
            end: TextEnd::Open,
            options: options.clone(),
        });
        let mut message = Message {
            id,
            phase: Phase::Unsent {
                frame,
                chars: chars as usize,
            },
            written,
            playback: Playback::NotBegun,
            retired: None,
            spoke_at: self.now,
            first_audio_at: None,
            samples: 0,
            played: 0,
            played_at: 0.0,
            buffered: 0,
            underruns: 0,
            parked_at: None,
            heard_chars: None,
            metrics: None,
            words: Vec::new(),
            rate: None,
            fired: 0,
        };
        if self.link == Link::Closed {
            // Replaced, refused or shut down: nothing will carry it.
            message.phase = self.ended(EndReason::Interrupted, None);
        } else if self.link == Link::Ready {
            self.send_unsent(&mut message);
        }
        self.current = Some(message);
    }

    pub(super) fn ended(&self, reason: EndReason, error: Option<RelayError>) -> Phase {
        Phase::Ended {
            reason,
            error,
            at: self.now,
        }
    }

    /// What the relay would refuse with a code of its own, refused before sending.
    pub(super) fn refusal(&self, frame: &str, chars: usize) -> Option<RelayError> {
        use orpheus_protocol::ErrorCode;
        if chars > self.limits.max_text_chars as usize {
            Some(refused(ErrorCode::TextTooLong))
        } else if frame.len() > self.limits.max_frame_bytes as usize {
            Some(refused(ErrorCode::FrameTooLarge))
        } else {
            None
        }
    }

    /// Sends a message waiting for the session, unless the relay would refuse it: then it
    /// ends at once with the relay's code.
    pub(super) fn send_unsent(&mut self, m: &mut Message) {
        if !matches!(m.phase, Phase::Unsent { .. }) {
            return;
        }
        // It may have waited for a socket, but the relay never had it: nothing to resume.
        m.parked_at = None;
        // A relay of protocol v1 cannot take text in appends: it gets the whole text in one
        // `speak`, once the app has finished writing it.
        if let Some(w) = m.written.take_if(|_| self.resume_grace.is_none()) {
            if w.end == TextEnd::Open {
                m.written = Some(w);
                return;
            }
            let whole = SpeakOptions {
                more: false,
                ..w.options
            };
            let frame = codec::speak(&m.id, &w.text, &whole);
            let chars = w.chars as usize;
            m.phase = Phase::Unsent { frame, chars };
        }
        let Phase::Unsent { frame, chars } = &m.phase else {
            return;
        };
        if let Some(refusal) = self.refusal(frame, *chars) {
            m.phase = self.ended(EndReason::Error, Some(refusal));
            return;
        }
        if !self.watching() {
            self.heard();
        }
        let frame = frame.clone();
        self.effects.push(Effect::Send(frame.clone()));
        m.phase = Phase::Sent {
            frame,
            resumed: false,
        };
    }

    /// The app let go of a message: the relay and the engine are told; it completes when both
    /// have let go too.
    pub(super) fn retire(&mut self, mut m: Message, reason: EndReason) {
        let audible = matches!(
            m.playback,
            Playback::Begun { .. } | Playback::Playing { .. }
        );
        match &mut m.phase {
            Phase::Unsent { .. } => m.phase = self.ended(reason, None),
            // No socket to tell now: the next one will, and the message ends here.
            Phase::Sent { .. } | Phase::Streaming { .. } if m.parked_at.is_some() => {
                self.stop_on_ready = Some(m.id.clone());
                m.phase = self.ended(reason, None);
            }
            Phase::Sent { .. } | Phase::Streaming { .. } => {
                self.effects.push(Effect::Send(codec::stop(&m.id)));
            }
            // All of it arrived but not all of it played: the listener cut it short.
            Phase::Ended {
                reason: ended @ EndReason::Done,
                ..
            } if audible => *ended = reason,
            Phase::Ended { .. } => {}
        }
        if let Some(stream) = m.stream() {
            self.effects.push(Effect::Engine(Command::Stop { stream }));
        }
        m.retired = Some(reason);
        self.retiring.push(m);
    }

    /// Asks the relay to continue the parked message where the engine is; a session that
    /// cannot (protocol v1) ends it `interrupted`.
    pub(super) fn resume_parked(&mut self) {
        let v2 = self.resume_grace.is_some();
        let Some(m) = self.current.as_mut().filter(|m| m.parked_at.is_some()) else {
            return;
        };
        m.parked_at = None;
        if v2 {
            if let Phase::Sent { resumed, .. } = &mut m.phase {
                *resumed = true;
            }
            let frame = codec::resume(&m.id, m.stream(), m.played);
            self.effects.push(Effect::Send(frame));
            // Appends may have been lost with the link: the relay takes what it lacks.
            Self::resend_text(m, false);
            return;
        }
        m.phase = Phase::Ended {
            reason: EndReason::Interrupted,
            error: None,
            at: self.now,
        };
        if let Some(stream) = m.stream() {
            m.playback = Playback::Finished;
            self.effects.push(Effect::Engine(Command::Stop { stream }));
        }
    }

    pub(super) fn on_start(&mut self, id: &str, stream: u32, rate: u32) {
        // A new stream for a streaming message: the relay restarted it after a resume.
        let Some(m) = self.current.as_mut().filter(|m| {
            m.id == id
                && match m.phase {
                    Phase::Sent { .. } => true,
                    Phase::Streaming { stream: old, .. } => stream > old,
                    _ => false,
                }
        }) else {
            return;
        };
        m.phase = Phase::Streaming { stream, rate };
        m.playback = Playback::Begun { stream, rate };
        // A restarted stream's words are told anew.
        m.rate = Some(rate);
        m.words.clear();
        m.fired = 0;
        // The engine plays one stream: whatever it played before is done with.
        for old in &mut self.retiring {
            old.playback = match old.playback {
                Playback::NotBegun => Playback::NotBegun,
                _ => Playback::Finished,
            };
        }
        let reports = self.resume_grace.is_some();
        self.effects.push(Effect::Engine(Command::Begin {
            stream,
            rate,
            reports,
        }));
    }

    pub(super) fn on_end(
        &mut self,
        id: &str,
        reason: EndReason,
        samples: u64,
        error: Option<RelayError>,
        heard_chars: Option<u64>,
        metrics: Option<Metrics>,
    ) {
        let now = self.now;
        // The first message with this id still waiting: a retiring one was spoken earlier.
        let Some(m) = self
            .retiring
            .iter_mut()
            .chain(self.current.iter_mut())
            .find(|m| m.id == id && m.awaits_end())
        else {
            return;
        };
        // The relay does not know a message resumed before its `start`: the `speak` was lost
        // with the link. It goes again.
        if let Phase::Sent {
            frame,
            resumed: resumed @ true,
        } = &mut m.phase
        {
            if reason == EndReason::Interrupted && heard_chars.is_none() {
                *resumed = false;
                self.effects.push(Effect::Send(frame.clone()));
                Self::resend_text(m, true);
                return;
            }
        }
        m.samples = samples;
        m.heard_chars = heard_chars;
        m.metrics = metrics;
        // The player stopped it itself (a stop, or a newer speak): its own reason is the truth.
        let reason = match m.retired {
            Some(retired) if matches!(reason, EndReason::Done | EndReason::Stopped) => retired,
            _ => reason,
        };
        m.phase = Phase::Ended {
            reason,
            error,
            at: now,
        };
        if let Some(stream) = m.stream() {
            self.effects
                .push(Effect::Engine(Command::End { stream, samples }));
        }
    }

    /// An `error` frame answers a frame of the player's that the relay could not read; if a
    /// `speak` awaits its first answer, that was it: it ends with the error.
    pub(super) fn on_error(&mut self, error: RelayError) {
        let unreadable = [
            "frame_too_large",
            "invalid_json",
            "invalid_message",
            "unknown_type",
        ];
        if !unreadable.contains(&error.code.as_str()) {
            return;
        }
        let unanswered = |m: &&mut Message| matches!(m.phase, Phase::Sent { .. });
        if let Some(m) = self.current.as_mut().filter(unanswered) {
            self.effects.push(Effect::Send(codec::stop(&m.id)));
            m.phase = Phase::Ended {
                reason: EndReason::Error,
                error: Some(error),
                at: self.now,
            };
        }
    }

    pub(super) fn on_report(&mut self, report: Report) {
        let now = self.now;
        // Words first: the report that completes the message may pass its last word.
        self.fire_boundaries(&report);
        if let Some(m) = self
            .current
            .iter_mut()
            .chain(self.retiring.iter_mut())
            .find(|m| m.stream() == Some(report.stream))
        {
            m.apply(&report, now);
        }
    }

    /// How far the current message has played, once its audio has begun.
    pub fn progress(&self) -> Option<Progress> {
        let m = self.current.as_ref()?;
        let (Playback::Begun { rate, .. } | Playback::Playing { rate, .. }) = m.playback else {
            return None;
        };
        Some(Progress {
            id: m.id.clone(),
            played: m.played,
            buffered: m.buffered,
            sample_rate: rate,
            underruns: m.underruns,
        })
    }

    /// The socket is gone: every message still waiting for its `end` never gets it and ends
    /// with `reason`, its audio stopped. Messages whose `end` came keep playing (when
    /// `keep_ended`): the engine has all of their audio.
    pub(super) fn lose_messages(&mut self, reason: EndReason, keep_ended: bool) {
        let now = self.now;
        let mut lost = Vec::new();
        for m in self.current.iter_mut().chain(self.retiring.iter_mut()) {
            let keep = keep_ended && matches!(m.phase, Phase::Ended { .. });
            if keep {
                continue;
            }
            if let Some(stream) = m.stream() {
                lost.push(Command::Stop { stream });
                m.playback = Playback::Finished;
            }
            if !matches!(m.phase, Phase::Ended { .. }) {
                m.phase = Phase::Ended {
                    reason: m.retired.unwrap_or(reason),
                    error: None,
                    at: now,
                };
            } else {
                m.playback = Playback::Finished;
            }
        }
        self.effects.extend(lost.into_iter().map(Effect::Engine));
    }

    pub(super) fn complete(&mut self, m: Message) {
        if let Some(stream) = m.stream() {
            // The safety timer fired: the engine never reported; make sure it lets go.
            self.effects.push(Effect::Engine(Command::Stop { stream }));
        }
        let Phase::Ended { reason, error, .. } = m.phase else {
            unreachable!("only ended messages complete");
        };
        self.effects.push(Effect::Complete(Completion {
            id: m.id,
            reason,
            error,
            samples: m.samples,
            played: m.played,
            underruns: m.underruns,
            first_audio_s: m.first_audio_at.map(|at| at - m.spoke_at),
            total_s: self.now - m.spoke_at,
            heard_chars: m.heard_chars,
            metrics: m.metrics,
            started_at: m.first_audio_at,
            words: m.words,
            rate: m.rate,
        }));
    }

    /// Protocol v2: where words of `stream` are said: kept with its message, and handed to the
    /// engine, which reports when its cursor passes each one's start.
    pub(super) fn on_words(&mut self, stream: u32, words: Vec<Word>) {
        let Some(m) = self
            .current
            .iter_mut()
            .find(|m| m.stream() == Some(stream) && m.retired.is_none())
        else {
            return;
        };
        let starts = words.iter().map(|w| w.start).collect();
        m.words.extend(words);
        self.effects
            .push(Effect::Engine(Command::Words { stream, starts }));
    }

    /// Fires a boundary for each word of the current message whose start the engine's cursor
    /// passed since the last report, none once it was stopped.
    fn fire_boundaries(&mut self, report: &Report) {
        let (stream, passed) = (report.stream, report.words);
        let Some(m) = self
            .current
            .as_mut()
            .filter(|m| m.stream() == Some(stream) && m.retired.is_none())
        else {
            return;
        };
        let rate = u64::from(m.rate.unwrap_or(24_000).max(1));
        let upto = (passed as usize).min(m.words.len());
        for word in &m.words[m.fired.min(upto)..upto] {
            self.effects.push(Effect::Boundary(Boundary {
                id: m.id.clone(),
                char_index: word.from,
                char_length: word.to.saturating_sub(word.from),
                elapsed_ms: word.start * 1000 / rate,
                rendered_at: report.at,
            }));
        }
        m.fired = m.fired.max(upto);
    }
}
