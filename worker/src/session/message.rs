//! The active message: its text and how it is cut into segments, its segments in flight, what
//! went out of its stream, and (protocol v2) its flow and what was heard. Built in one place,
//! [`Message::new`], whether a `speak` opened it, a `resume` restarted it or the object woke
//! to find it in storage.

use std::collections::VecDeque;
use std::ops::Range;

use orpheus_protocol::{AudioEncoding, EndMetrics, Heard, Model, ServerMessage, WordTiming};

use super::api::Config;
use super::fetch::Segment;
use super::stored::MessageRecord;
use crate::flow::{self, FlowControl};
use crate::heard::{heard_by_words, heard_original, SegmentAudio};
use crate::segment;
use crate::speech::SpeechText;
use crate::time::Millis;
use crate::unplayed::Unplayed;

/// Whether a message's text is all there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextInput {
    /// It is complete.
    Complete,
    /// More may come in `append`s (protocol v2 `more`); the last text came at `last_at`.
    Open { last_at: Millis },
}

/// What names a message and what it asked for, apart from its text and its progress.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    /// The `speak` id.
    pub id: String,
    /// Its stream.
    pub stream: u32,
    pub model: Model,
    pub voice: &'static str,
    /// Whether segments may come from the segment cache.
    pub cache: bool,
    /// How its audio travels.
    pub encoding: AudioEncoding,
}

/// A v2 message's flow: the client's reports, and the audio it has not played yet.
#[derive(Debug)]
pub(super) struct Flow2 {
    pub control: FlowControl,
    pub unplayed: Unplayed,
    /// The most audio flow control held back at once, in samples.
    pub held_back_max: u64,
}

impl Flow2 {
    pub fn new(window_ms: Millis) -> Self {
        Self {
            control: FlowControl::new(window_ms),
            unplayed: Unplayed::new(),
            held_back_max: 0,
        }
    }
}

/// The active message.
#[derive(Debug)]
pub(super) struct Message {
    pub id: String,
    pub stream: u32,
    pub model: Model,
    pub voice: &'static str,
    pub encoding: AudioEncoding,
    /// The app's text, what is said of it, and the segments cut so far (as character ranges
    /// of what is said).
    pub text: String,
    pub speech: SpeechText,
    pub spans: Vec<Range<usize>>,
    /// The characters of what is said already cut into segments (or skipped as unspeakable).
    pub scanned: usize,
    pub input: TextInput,
    /// The index of the next segment to request, and of the first this stream requested.
    pub next_index: usize,
    pub first_index: usize,
    /// Requested segments in order; the front one is being relayed.
    pub segments: VecDeque<Segment>,
    /// The audio of each segment requested so far, by index (for the heard estimate).
    pub audio: Vec<SegmentAudio>,
    /// Where the stream's words are said, as far as known, and the stream sample up to which
    /// they are (the end of the last segment they were told for).
    pub words: Vec<WordTiming>,
    pub words_until: u64,
    /// How many of the last of `words` the client was not told yet.
    pub untold: usize,
    /// The announced sample rate: set when `start` went out with the first audio.
    pub sample_rate: Option<u32>,
    pub samples_sent: u64,
    pub samples_persisted: u64,
    /// Protocol v2: this stream restarts the message (after the object lost it) at this sample
    /// of the message, a segment boundary.
    pub resumed_at: Option<u64>,
    /// Protocol v2 flow control, and the audio not yet reported played.
    pub flow: Option<Flow2>,
    /// Protocol v2: the socket dropped; the message waits for a `resume` until then.
    pub parked_until: Option<Millis>,
    /// Upstream requests retried (at most one).
    pub retries: u32,
    /// Whether segments may come from the segment cache, and how many did.
    pub cache: bool,
    pub cache_hits: u32,
    /// When the `speak` was accepted.
    pub started_at: Millis,
    /// When the first segment's response head arrived.
    pub first_byte_at: Option<Millis>,
    /// When its first audio was sent.
    pub first_audio_at: Option<Millis>,
}

impl Message {
    /// A message with `text` so far, `speech` what is said of it, cut into `spans` so far,
    /// that has sent nothing yet: its first segment to request is the first of `spans` (or the
    /// next cut). `window_ms`: its client reports its play cursor (protocol v2), and audio goes
    /// at most this far ahead.
    pub fn new(
        who: Identity,
        text: String,
        speech: SpeechText,
        spans: Vec<Range<usize>>,
        input: TextInput,
        window_ms: Option<Millis>,
        now: Millis,
    ) -> Self {
        Self {
            id: who.id,
            stream: who.stream,
            model: who.model,
            voice: who.voice,
            encoding: who.encoding,
            scanned: spans.last().map_or(0, |s| s.end),
            text,
            speech,
            spans,
            input,
            next_index: 0,
            first_index: 0,
            segments: VecDeque::new(),
            audio: Vec::new(),
            words: Vec::new(),
            words_until: 0,
            untold: 0,
            sample_rate: None,
            samples_sent: 0,
            samples_persisted: 0,
            resumed_at: None,
            flow: window_ms.map(Flow2::new),
            parked_until: None,
            retries: 0,
            cache: who.cache,
            cache_hits: 0,
            started_at: now,
            first_byte_at: None,
            first_audio_at: None,
        }
    }

    /// Its stream begins at segment `index` of the message, at message sample `at` (a
    /// restart): the segments before it were relayed whole, as `audio` says.
    pub fn starting_at(mut self, index: usize, at: u64, audio: Vec<SegmentAudio>) -> Self {
        self.next_index = index;
        self.first_index = index;
        self.audio = audio;
        self.resumed_at = Some(at);
        self
    }

    /// Its stream already carries the whole of its segments up to `audio.len()` (the object
    /// lost its memory while the message waited for text or for its client, the socket still
    /// open): it goes on from there, the client taken to have played what it was sent (the
    /// object hibernates only once its reports stopped). Its metrics count from now.
    pub fn continued(mut self, audio: Vec<SegmentAudio>, sample_rate: Option<u32>) -> Self {
        let sent: u64 = audio[self.first_index..].iter().map(|a| a.samples).sum();
        self.next_index = audio.len();
        self.audio = audio;
        self.sample_rate = sample_rate;
        self.samples_sent = sent;
        self.samples_persisted = sent;
        if let Some(flow) = self.flow.as_mut() {
            flow.control.rewind(sent);
            flow.unplayed.skip_to(sent);
        }
        if sent > 0 {
            // Its `start` went out with its first audio, before the object lost it.
            self.first_audio_at = Some(self.started_at);
        }
        self
    }

    /// The record a restarted object needs, as of `now`.
    pub fn record(&self, now: Millis) -> MessageRecord {
        MessageRecord {
            id: self.id.clone(),
            stream: self.stream,
            base: self.base(),
            text: self.text.clone(),
            model: self.model.id().to_owned(),
            voice: self.voice.to_owned(),
            segment_samples: self.whole_segments().map(|a| a.samples).collect(),
            spans: self.spans.clone(),
            open: self.is_open(),
            text_at: match self.input {
                TextInput::Open { last_at } => last_at,
                TextInput::Complete => 0,
            },
            sample_rate: self.sample_rate,
            no_cache: !self.cache,
            encoding: self.encoding,
            markup: self.speech.markup(),
            lexicon: self.speech.lexicon().clone(),
            alive_at: now,
        }
    }

    /// Whether `record` (the last one stored) still describes it, as far as a restart cares:
    /// compared without building a record, since this runs on every `played` report. A
    /// segment's samples never change once it is whole, so counting them is comparing them.
    pub fn recorded_in(&self, record: &MessageRecord) -> bool {
        record.segment_samples.len() == self.whole_segments().count()
            && record.spans.len() == self.spans.len()
            && record.open == self.is_open()
            && record.text.len() == self.text.len()
            && record.stream == self.stream
            && record.sample_rate == self.sample_rate
    }

    /// The segments relayed to their end, in order.
    fn whole_segments(&self) -> impl Iterator<Item = &SegmentAudio> {
        self.audio.iter().take_while(|a| a.complete)
    }

    /// Whether more text may still come.
    pub fn is_open(&self) -> bool {
        matches!(self.input, TextInput::Open { .. })
    }

    /// Samples the relay has of the stream beyond the client's play cursor at `now`: sent, to
    /// be sent, and waiting in the segments.
    pub fn ahead(&self, now: Millis) -> u64 {
        let waiting: usize = self.segments.iter().map(|s| s.pcm.len() / 2).sum();
        let rate = self.rate();
        let held = self.flow.as_ref().map_or(0, |f| {
            let cursor = f.control.cursor(now, rate, self.samples_sent);
            f.unplayed.end().saturating_sub(cursor)
        });
        held + waiting as u64
    }

    /// The stream's sample rate, or Orpheus's before it is known.
    pub fn rate(&self) -> u32 {
        self.sample_rate.unwrap_or(24_000)
    }

    /// With flow control: whether the client has all the audio there is (as far as the relay
    /// can tell at `now`; `reports`: the session's client reports its cursor).
    pub fn delivered(&self, reports: bool, now: Millis) -> bool {
        self.flow.as_ref().is_none_or(|f| {
            let end = f.unplayed.end();
            f.unplayed.unsent() == 0
                && f.control
                    .delivered(end, reports, now, self.rate(), self.samples_sent)
        })
    }

    /// With flow control: whether the client's play cursor, as the clock moves it for a
    /// client that fell silent, can change what the relay does at `now` (`reports`: the
    /// session's client reports its cursor): audio is not delivered yet, or a segment waits
    /// for the audio ahead to run low.
    pub fn moves_with_cursor(&self, reports: bool, now: Millis) -> bool {
        let more_to_request = self.next_index < self.spans.len()
            || (self.is_open() && segment::is_speakable(self.unscanned()));
        !self.delivered(reports, now) || more_to_request
    }

    /// What is said and not cut into segments yet.
    fn unscanned(&self) -> &str {
        let spoken = self.speech.spoken();
        spoken
            .char_indices()
            .nth(self.scanned)
            .map_or("", |(at, _)| &spoken[at..])
    }

    /// The stream's `start`, once its sample rate is known.
    pub fn start_message(&self) -> Option<ServerMessage> {
        Some(ServerMessage::Start {
            id: self.id.clone(),
            stream: self.stream,
            sample_rate: self.sample_rate?,
            channels: 1,
            encoding: self.encoding,
            resumed_at: self.resumed_at,
        })
    }

    /// The message's first sample in this stream.
    pub fn base(&self) -> u64 {
        self.resumed_at.unwrap_or(0)
    }

    /// What the listener heard, from the last play cursor reported (protocol v2): by word
    /// timings where they are known, else by segment lengths.
    pub fn heard(&self) -> Option<Heard> {
        let flow = self.flow.as_ref()?;
        let played = flow.control.played();
        let samples = self.base() + played;
        let by_words = (played < self.words_until)
            .then(|| heard_by_words(&self.text, &self.words, played))
            .flatten();
        let chars = by_words.unwrap_or_else(|| {
            heard_original(&self.text, &self.speech, &self.spans, &self.audio, samples)
        });
        Some(Heard { samples, chars })
    }

    /// All of the message, as heard once the client plays out what it has (protocol v2).
    pub fn heard_all(&self) -> Option<Heard> {
        self.flow.as_ref()?;
        Some(Heard {
            samples: self.base() + self.samples_sent,
            chars: self.text.chars().count() as u64,
        })
    }

    /// How the message went (protocol v2).
    pub fn metrics(&self) -> Option<EndMetrics> {
        let flow = self.flow.as_ref()?;
        let rate = self.rate();
        let since_start = |at: Option<Millis>| at.map(|at| at.saturating_sub(self.started_at));
        Some(EndMetrics {
            first_byte_ms: since_start(self.first_byte_at),
            first_audio_ms: since_start(self.first_audio_at),
            segments: (self.next_index - self.first_index) as u32,
            retries: self.retries,
            held_back_ms: flow::millis(flow.held_back_max, rate),
            cache_hits: self.cache_hits,
        })
    }

    /// What is said in `span`, a range of characters of what is said.
    pub fn span_text(&self, span: &Range<usize>) -> String {
        self.speech
            .spoken()
            .chars()
            .skip(span.start)
            .take(span.len())
            .collect()
    }

    /// Estimates where the words of segment `index` (whose audio is all here) are said.
    pub fn estimate_words(&mut self, index: usize) {
        let Some(position) = self.segments.iter().position(|s| s.index as usize == index) else {
            return;
        };
        let text = self.span_text(&self.segments[position].span);
        let segment = &mut self.segments[position];
        segment.timings = Some(match segment.envelope() {
            Some(envelope) => crate::words::estimate(&text, envelope),
            None => Vec::new(),
        });
    }

    /// The word timings of segment `segment` (told once its audio is all here), in the
    /// stream and in the app's text, its first sample being the stream's `offset`.
    pub fn words_of(&self, segment: &Segment, offset: u64) -> Vec<WordTiming> {
        let timings = segment.timings.as_deref().unwrap_or_default();
        timings
            .iter()
            .map(|t| {
                let said = segment.span.start + t.chars.start..segment.span.start + t.chars.end;
                let original = self.speech.original(said);
                WordTiming {
                    start: offset + t.start,
                    end: offset + t.end,
                    from: original.start as u64,
                    to: original.end as u64,
                }
            })
            .collect()
    }

    /// Takes in the app's text as it is now (`complete`: no more comes).
    pub fn read_text(&mut self, complete: bool) {
        self.speech.read(&self.text, complete);
    }

    /// The next segment to cut from the text not yet scanned, or `None` to wait for text (or
    /// when there is none left). Unspeakable pieces (punctuation alone) are skipped.
    pub fn next_cut(&mut self, config: &Config, now: Millis) -> Option<Range<usize>> {
        let end = match self.input {
            TextInput::Complete => segment::TextEnd::Complete,
            // A parked message cannot get text: its pause says nothing about the writer.
            TextInput::Open { last_at }
                if self.parked_until.is_none() && now >= last_at + config.text_flush_ms =>
            {
                segment::TextEnd::Paused
            }
            TextInput::Open { .. } => segment::TextEnd::Open,
        };
        // While more may come, a cut needs the character after it: a break already known
        // counts as one.
        let spoken = self.speech.spoken_with_break();
        loop {
            let span = segment::next_span(
                &spoken,
                self.scanned,
                self.spans.last().map(Range::len),
                config.limits.segment_chars as usize,
                config.first_segment_chars,
                end,
            )?;
            let text: String = spoken.chars().skip(span.start).take(span.len()).collect();
            if segment::is_speakable(&text) {
                return Some(span);
            }
            self.scanned = span.end;
        }
    }

    /// Cuts every segment left of a text that is complete (it cuts the same whenever it is cut),
    /// so that requesting them needs no further scan of the text.
    pub fn cut_rest(&mut self, config: &Config, now: Millis) {
        debug_assert_eq!(self.input, TextInput::Complete);
        while let Some(span) = self.next_cut(config, now) {
            self.scanned = span.end;
            self.spans.push(span);
        }
    }

    /// When text still being written may next be cut at a word boundary, if that is to come.
    pub fn flush_at(&self, config: &Config, now: Millis) -> Option<Millis> {
        let TextInput::Open { last_at } = self.input else {
            return None;
        };
        if self.parked_until.is_some() {
            return None;
        }
        let at = last_at + config.text_flush_ms;
        let unscanned = self.speech.len() > self.scanned;
        (at > now && unscanned).then_some(at)
    }

    /// When text still being written has waited too long for more.
    pub fn idle_at(&self, config: &Config) -> Option<Millis> {
        match self.input {
            TextInput::Open { last_at } if self.parked_until.is_none() => {
                Some(last_at + config.text_idle_ms)
            }
            _ => None,
        }
    }

    /// Whether the audio ahead at `now` is too little to wait any longer for a segment of
    /// `chars`.
    pub fn needs_lead(&self, chars: usize, now: Millis) -> bool {
        flow::millis(self.ahead(now), self.rate()) < flow::lead_needed_ms(chars)
    }
}
