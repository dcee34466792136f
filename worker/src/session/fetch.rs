//! The segments of the active message on their way from the upstream: when each is requested,
//! the phases of its request ([`Phase`]), its one retry, its deadlines, and the WAV stripped
//! from its body.

use std::ops::Range;

use orpheus_protocol::{EndError, EndReason, ErrorCode};

use super::api::{Config, Effect, FetchId, FetchRequest};
use super::message::TextInput;
use super::Session;
use crate::heard::SegmentAudio;
use crate::log::LogLine;
use crate::time::Millis;
use crate::upstream::{self, UpstreamStatus};
use crate::wav::{Format, WavError, WavReader};
use crate::words::{Envelope, Timing};

/// Where one upstream request of a segment stands. It only moves forward, except that a
/// refused first attempt may wait for its one retry.
#[derive(Debug)]
pub(super) enum Phase {
    /// Requested; the response head has not arrived. The runtime holds the request.
    Awaiting { fetch: FetchId, deadline: Millis },
    /// Refused with 429/503; the message's one retry starts at this time.
    Retrying { at: Millis },
    /// Answered 2xx; the body streams. The runtime holds the request.
    Streaming {
        fetch: FetchId,
        /// When the body stalls out.
        stall_at: Millis,
        wav: WavReader,
    },
    /// The body ended; any PCM left waits for its turn.
    Complete,
    /// The request failed; reported when the segment's turn comes.
    Failed(EndError),
}

/// One segment of the active message, from its request until its audio is sent.
#[derive(Debug)]
pub(super) struct Segment {
    /// Index within the message.
    pub index: u32,
    /// What it says: characters of what the message says.
    pub span: Range<usize>,
    /// Its audio's loudness over time, taken in as it arrives, and the word timings estimated
    /// from it once all of it is here.
    envelope: Option<Envelope>,
    pub timings: Option<Vec<Timing>>,
    /// Samples of it relayed (sent, or handed to the unplayed audio) so far.
    pub flushed: u64,
    /// Whether its word timings were told.
    pub words_told: bool,
    /// Groq's JSON request body, kept for the one allowed retry.
    body: String,
    /// Its characters (given back to the budget when the cache answers).
    chars: u64,
    /// When its current request started.
    requested_at: Millis,
    /// PCM received and not yet sent.
    pub pcm: Vec<u8>,
    /// PCM bytes received in all.
    received: u64,
    /// The audio format, once read.
    pub format: Option<Format>,
    pub phase: Phase,
}

impl Segment {
    /// Asks the runtime for this segment's audio as `fetch`, in `stream` (`cache`: the answer
    /// may come from the segment cache): the first request and its retry alike.
    fn request(&self, fetch: FetchId, stream: u32, cache: bool) -> Effect {
        Effect::Fetch(FetchRequest {
            fetch,
            stream,
            segment: self.index,
            body: self.body.clone(),
            cache,
        })
    }

    /// Its audio's loudness envelope, once its audio began.
    pub fn envelope(&self) -> Option<&Envelope> {
        self.envelope.as_ref()
    }

    /// The request the runtime holds for this segment, if any.
    pub fn held(&self) -> Option<FetchId> {
        match self.phase {
            Phase::Awaiting { fetch, .. } | Phase::Streaming { fetch, .. } => Some(fetch),
            _ => None,
        }
    }

    /// Whether its audio is all here.
    pub fn is_complete(&self) -> bool {
        matches!(self.phase, Phase::Complete)
    }

    /// When the segment's next deadline fires, if it has one.
    pub fn deadline(&self, config: &Config) -> Option<Millis> {
        match &self.phase {
            Phase::Awaiting { deadline, .. } => Some(*deadline),
            Phase::Retrying { at } => Some(*at),
            Phase::Streaming { stall_at, .. } => {
                // However steadily it drips, a body must keep up with real time once the
                // first-byte and stall allowances are spent.
                let rate = self
                    .format
                    .map_or(24_000, |f| u64::from(f.sample_rate.max(1)));
                let audio_ms = self.received / 2 * 1000 / rate;
                let cap = self.requested_at
                    + config.first_byte_timeout_ms
                    + config.stall_timeout_ms
                    + audio_ms;
                Some((*stall_at).min(cap))
            }
            Phase::Complete | Phase::Failed(_) => None,
        }
    }
}

impl Session {
    /// Keeps `1 + prefetch` requests in flight while segments remain and none has failed; with
    /// flow control (v2), a segment after the first two waits until the audio ahead of the play
    /// cursor is less than what the upstream needs to produce it. Text still being written is
    /// cut only when a segment is due, so it is as full as the text allows. Ends the message
    /// `done` once its text is complete and every segment was relayed.
    pub(super) fn request_more(&mut self) {
        let now = self.now;
        let config = &self.config;
        let Some(message) = self.message.as_mut() else {
            return;
        };
        let failed = message
            .segments
            .iter()
            .any(|s| matches!(s.phase, Phase::Failed(_)));
        let cut_before = message.spans.len();
        while !failed && message.segments.len() <= config.prefetch {
            // Paced: one segment at a time, and only once the audio ahead runs low.
            let paced = message.flow.is_some() && message.next_index >= message.first_index + 2;
            if paced && !message.segments.is_empty() {
                break;
            }
            // A complete text has all its segments cut already; text still being written is
            // cut as its segments are due.
            let span = match message.spans.get(message.next_index) {
                Some(span) => span.clone(),
                None if message.is_open() => match message.next_cut(config, now) {
                    Some(span) => span,
                    None => break,
                },
                None => break,
            };
            if paced && !message.needs_lead(span.len(), now) {
                break;
            }
            if message.next_index == message.spans.len() {
                message.scanned = span.end;
                message.spans.push(span.clone());
            }
            let text = message.span_text(&span);
            let fetch = self.next_fetch;
            self.next_fetch += 1;
            let segment = Segment {
                index: message.next_index as u32,
                span: span.clone(),
                envelope: None,
                timings: None,
                flushed: 0,
                words_told: false,
                body: upstream::request_body(message.model, message.voice, &text),
                chars: span.len() as u64,
                requested_at: now,
                pcm: Vec::new(),
                received: 0,
                format: None,
                phase: Phase::Awaiting {
                    fetch,
                    deadline: now + config.first_byte_timeout_ms,
                },
            };
            message.next_index += 1;
            message.audio.push(SegmentAudio {
                samples: 0,
                complete: false,
            });
            self.effects
                .push(segment.request(fetch, message.stream, message.cache));
            message.segments.push_back(segment);
        }
        // With flow control, `done` waits until the client has everything: a link that drops
        // before then can still resume the message.
        let exhausted =
            message.input == TextInput::Complete && message.next_index >= message.spans.len();
        let cut_more = message.spans.len() != cut_before;
        if message.segments.is_empty() && exhausted && message.delivered(self.client_reports, now) {
            return self.finish(EndReason::Done, None);
        }
        if cut_more {
            self.store(false);
        }
    }

    /// The segment whose request the runtime holds as `fetch`.
    fn segment_mut(&mut self, fetch: FetchId) -> Option<&mut Segment> {
        let message = self.message.as_mut()?;
        message
            .segments
            .iter_mut()
            .find(|s| s.held() == Some(fetch))
    }

    /// Marks a segment failed, aborting its request if the runtime still holds it.
    fn fail(&mut self, fetch: FetchId, error: EndError, runtime_holds_it: bool) {
        if let Some(segment) = self.segment_mut(fetch) {
            segment.phase = Phase::Failed(error);
            if runtime_holds_it {
                self.effects.push(Effect::Abort(fetch));
            }
        }
    }

    pub(super) fn on_head(&mut self, fetch: FetchId, status: UpstreamStatus) {
        let (now, stall) = (self.now, self.config.stall_timeout_ms);
        if self.segment_mut(fetch).is_none() {
            return;
        }
        if let Some(message) = self.message.as_mut() {
            message.first_byte_at.get_or_insert(now);
        }
        if status.cached {
            // Served from the segment cache: no upstream request, so no characters spent.
            let chars = self.segment_mut(fetch).map_or(0, |s| s.chars);
            let message = self.message.as_mut().expect("it holds the segment");
            message.cache_hits += 1;
            let since = message.started_at;
            if let Some(stored) = self.stored.as_mut() {
                stored.budget.refund(chars, since);
            }
        }
        if (200..300).contains(&status.status) {
            let segment = self.segment_mut(fetch).expect("checked above");
            segment.phase = Phase::Streaming {
                fetch,
                stall_at: now + stall,
                wav: WavReader::new(),
            };
            return;
        }
        if self.retry_later(fetch, &status) {
            return;
        }
        let error = upstream::classify(&status).expect_err("not 2xx");
        self.log(
            LogLine::new("upstream")
                .num("status", status.status)
                .word("code", error.code.as_str()),
        );
        // The runtime has already read what it reads of an error body, and let go.
        self.fail(fetch, error, false);
        self.relay();
    }

    /// Schedules the one retry a message may have: for 429 or 503, before any of its audio was
    /// sent, when `retry-after` (default 1 s) is short enough. The tick at the retry time starts
    /// a new request for the segment.
    fn retry_later(&mut self, fetch: FetchId, status: &UpstreamStatus) -> bool {
        let wait_s = status
            .retry_after_s
            .unwrap_or(upstream::DEFAULT_RETRY_AFTER_S);
        let (now, max_wait) = (self.now, self.config.max_retry_wait_s);
        let Some(message) = self.message.as_mut() else {
            return false;
        };
        let allowed = matches!(status.status, 429 | 503)
            && message.retries == 0
            && message.samples_sent == 0
            && wait_s <= max_wait;
        if !allowed {
            return false;
        }
        message.retries += 1;
        let segment = self.segment_mut(fetch).expect("a live fetch");
        // The error response is over, and the retry is not started yet: nothing to abort.
        segment.phase = Phase::Retrying {
            at: now + u64::from(wait_s) * 1000,
        };
        self.log(
            LogLine::new("upstream")
                .num("status", status.status)
                .num("retry_in_s", wait_s),
        );
        true
    }

    pub(super) fn on_body(&mut self, fetch: FetchId, bytes: &[u8]) {
        let deadline = self.now + self.config.stall_timeout_ms;
        let Some(segment) = self.segment_mut(fetch) else {
            return;
        };
        let Phase::Streaming { stall_at, wav, .. } = &mut segment.phase else {
            return;
        };
        *stall_at = deadline;
        let before = segment.pcm.len();
        let pushed = wav.push(bytes, &mut segment.pcm);
        segment.received += (segment.pcm.len() - before) as u64;
        segment.format = segment.format.or(wav.format());
        if let Some(format) = segment.format {
            segment
                .envelope
                .get_or_insert_with(|| Envelope::new(format.sample_rate))
                .push(&segment.pcm[before..]);
        }
        let (index, samples) = (segment.index as usize, segment.received / 2);
        if let Some(message) = self.message.as_mut() {
            message.audio[index].samples = samples;
        }
        if let Err(e) = pushed {
            self.bad_audio(fetch, e, true);
        }
        self.relay();
    }

    fn bad_audio(&mut self, fetch: FetchId, error: WavError, runtime_holds_it: bool) {
        self.log(LogLine::new("upstream").word("wav", error.name()));
        let error = EndError::new(ErrorCode::UpstreamBadAudio, None);
        self.fail(fetch, error, runtime_holds_it);
    }

    pub(super) fn on_upstream_end(&mut self, fetch: FetchId) {
        let Some(segment) = self.segment_mut(fetch) else {
            return;
        };
        let finished = match &segment.phase {
            Phase::Streaming { wav, .. } => wav.finish(),
            _ => Err(WavError::Truncated),
        };
        let index = segment.index as usize;
        match finished {
            Ok(()) => {
                segment.phase = Phase::Complete;
                let message = self.message.as_mut().expect("it holds the segment");
                message.audio[index].complete = true;
                message.estimate_words(index);
                self.store(false);
            }
            Err(e) => self.bad_audio(fetch, e, false),
        }
        self.relay();
    }

    pub(super) fn on_upstream_failed(&mut self, fetch: FetchId) {
        let Some(segment) = self.segment_mut(fetch) else {
            return;
        };
        let code = match segment.phase {
            Phase::Streaming { .. } => ErrorCode::UpstreamInterrupted,
            _ => ErrorCode::UpstreamUnavailable,
        };
        self.fail(fetch, EndError::new(code, None), false);
        self.relay();
    }

    /// Fires the segments' deadlines that have passed: a request out of time fails
    /// (`upstream_timeout`), a retry whose time has come starts.
    pub(super) fn segment_deadlines(&mut self) {
        let (now, first_byte) = (self.now, self.config.first_byte_timeout_ms);
        let Some(message) = self.message.as_ref() else {
            return;
        };
        let due: Vec<(usize, Option<FetchId>)> = message
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.deadline(&self.config).is_some_and(|at| at <= now))
            .map(|(i, s)| (i, s.held()))
            .collect();
        for (index, held) in due {
            match held {
                Some(fetch) => {
                    self.fail(fetch, EndError::new(ErrorCode::UpstreamTimeout, None), true)
                }
                None => {
                    let fetch = self.next_fetch;
                    self.next_fetch += 1;
                    let message = self.message.as_mut().expect("checked above");
                    let (stream, cache) = (message.stream, message.cache);
                    let segment = &mut message.segments[index];
                    segment.requested_at = now;
                    segment.phase = Phase::Awaiting {
                        fetch,
                        deadline: now + first_byte,
                    };
                    self.effects.push(segment.request(fetch, stream, cache));
                }
            }
        }
    }
}
