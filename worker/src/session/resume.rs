//! Protocol v2: a message outlives its socket and the object's memory. Parking (the socket
//! went, or went silent), `resume` (the same stream from the play cursor, or the `end` that was
//! lost), restart (a new stream at a segment boundary, after the object lost the message), and
//! waking with the socket still open (the message goes on in its stream).

use orpheus_protocol::{resolve_voice, EndReason, ServerMessage, Version, CLOSE_LINK_SILENT};

use super::message::{Identity, Message, TextInput};
use super::stored::{ActiveRecord, EndedRecord, MessageRecord, ENDED_KEPT};
use super::{Ending, Session};
use crate::log::LogLine;

impl Session {
    /// Whether the active message waits for a `resume`.
    pub(super) fn parked(&self) -> bool {
        self.message
            .as_ref()
            .is_some_and(|m| m.parked_until.is_some())
    }

    /// Parks the active message of a v2 client whose socket is going (for a v2 successor, or
    /// none yet): it keeps its upstream requests and its unplayed audio, and waits for a
    /// `resume` for the grace period. Returns whether it did.
    pub(super) fn park(&mut self, successor: Option<Version>) -> bool {
        let v2 = self.speaks_v2() && successor.is_none_or(|v| v == Version::V2);
        let until = self.now + self.config.resume_grace_ms;
        let Some(message) = self.message.as_mut().filter(|m| v2 && m.flow.is_some()) else {
            return false;
        };
        message.parked_until = Some(until);
        let line = LogLine::new("park")
            .id("id", &message.id)
            .num("stream", message.stream)
            .num("grace_ms", self.config.resume_grace_ms);
        self.log(line);
        self.store(true);
        true
    }

    /// When the served client's link is taken for dead: it reports its cursor, the relay waits
    /// on it (audio held for the window, or sent and not reported received), and it has been
    /// silent for [`super::Config::dead_link_ms`].
    pub(super) fn dead_link_at(&self) -> Option<u64> {
        let message = self.message.as_ref()?;
        let flow = message.flow.as_ref()?;
        let waits = self.client_reports
            && self.serving().is_some()
            && message.parked_until.is_none()
            && !message.delivered(true, self.now);
        let silent_since = flow.control.reported_at()?;
        waits.then_some(silent_since + self.config.dead_link_ms())
    }

    /// A client that reports fell silent while the relay waited on it (a link dead half-open):
    /// its message is parked for a resume, and the socket closed as if it had gone.
    pub(super) fn give_up_silent_link(&mut self) {
        self.log(LogLine::new("link").word("verdict", "silent"));
        if !self.park(None) {
            self.finish(EndReason::Interrupted, None);
        }
        self.close(CLOSE_LINK_SILENT, "no reports");
    }

    /// A v2 client asks to continue message `id` from `played` samples into `stream` (or, if
    /// it never learned the stream, from the start): the parked message goes on from there;
    /// one the object lost restarts at a segment boundary; one that is gone ends
    /// `interrupted`.
    pub(super) fn on_resume(&mut self, id: String, stream: Option<u32>, played: u64) {
        let names = |m_id: &str, m_stream: u32| m_id == id && stream.is_none_or(|s| s == m_stream);
        if self
            .message
            .as_ref()
            .is_some_and(|m| names(&m.id, m.stream))
        {
            return self.continue_message(stream.is_none(), played);
        }
        let record = self
            .stored
            .as_ref()
            .and_then(|s| s.message.clone())
            .filter(|r| names(&r.id, r.stream));
        let grace = self.config.resume_grace_ms;
        match record {
            Some(record) if record.alive_at + grace >= self.now => self.restart(record, played),
            // Waited too long: it ends now, with what was heard.
            Some(record) => {
                let heard = record.heard(&self.config, played);
                self.log(
                    LogLine::new("resume")
                        .id("id", &id)
                        .word("result", "expired"),
                );
                self.stored.as_mut().expect("it held the record").message = None;
                self.end(Ending {
                    id,
                    stream: Some(record.stream),
                    reason: EndReason::Interrupted,
                    samples: played,
                    error: None,
                    timing: None,
                    heard: Some(heard),
                    metrics: None,
                });
                self.store(true);
            }
            None => self.answer_ended(id, stream, played),
        }
    }

    /// Answers a `resume` of a message that is neither active nor restartable: one that ended
    /// (its `end` was lost with the link) gets the same `end` again, which is not a second
    /// ending and is not logged as one; one the relay does not know (it never got the `speak`,
    /// or forgot it long ago) gets `end` `interrupted` without `heard`.
    fn answer_ended(&mut self, id: String, stream: Option<u32>, played: u64) {
        let ended = self.stored.as_ref().and_then(|s| {
            s.ended
                .iter()
                .find(|e| e.id == id && stream.is_none_or(|s| s == e.stream))
                .cloned()
        });
        let line = LogLine::new("resume").id("id", &id);
        let answer = match ended {
            Some(ended) => {
                self.log(
                    line.word("result", "ended")
                        .word("reason", ended.reason.as_str()),
                );
                ServerMessage::End {
                    id,
                    stream: Some(ended.stream),
                    reason: ended.reason,
                    samples: ended.samples,
                    error: ended.error,
                    heard: Some(ended.heard),
                    metrics: None,
                }
            }
            None => {
                self.log(line.word("result", "unknown"));
                ServerMessage::End {
                    id,
                    stream,
                    reason: EndReason::Interrupted,
                    samples: played,
                    error: None,
                    heard: None,
                    metrics: None,
                }
            }
        };
        self.send(answer);
    }

    /// Remembers how a v2 message ended (one that has a stream and what was heard), for a
    /// `resume` that comes after.
    pub(super) fn record_ending(&mut self, ending: &Ending) {
        let (Some(stream), Some(heard)) = (ending.stream, ending.heard) else {
            return;
        };
        let at = self.now;
        let Some(stored) = self.stored.as_mut() else {
            return;
        };
        stored.ended.retain(|e| e.id != ending.id);
        if stored.ended.len() >= ENDED_KEPT {
            stored.ended.pop_front();
        }
        stored.ended.push_back(EndedRecord {
            id: ending.id.clone(),
            stream,
            reason: ending.reason,
            error: ending.error.clone(),
            samples: ending.samples,
            heard,
            at,
        });
    }

    /// Continues the active message from `played`: everything held from there on goes out
    /// again (`start` first, if the client never saw it), then the rest as it comes.
    fn continue_message(&mut self, restate_start: bool, played: u64) {
        let now = self.now;
        let message = self.message.as_mut().expect("a message to continue");
        message.parked_until = None;
        if let TextInput::Open { last_at } = &mut message.input {
            // The idle time starts again: the client could not append while its link was down.
            *last_at = now;
        }
        let Some(flow) = message.flow.as_mut() else {
            return;
        };
        let played = if restate_start {
            0
        } else {
            played.min(message.samples_sent)
        };
        flow.control.rewind(played);
        flow.unplayed.rewind(played);
        let line = LogLine::new("resume")
            .id("id", &message.id)
            .num("stream", message.stream)
            .num("played", played);
        // (A `start` not sent yet goes out with the first audio.)
        if restate_start && message.first_audio_at.is_some() {
            if let Some(start) = message.start_message() {
                self.send(start);
            }
        }
        self.log(line);
        self.store(true);
        self.relay();
    }

    /// The message a stored record names, as a new message of stream `stream` whose text
    /// (open again from now, if it was open) and segments are the record's.
    fn message_of(&self, record: MessageRecord, stream: u32) -> Option<Message> {
        let (model, voice) = resolve_voice(Some(&record.voice), Some(&record.model)).ok()?;
        let speech = record.speech();
        let spans = record.spans(&self.config, &speech);
        let input = if record.open {
            TextInput::Open {
                last_at: record.text_at,
            }
        } else {
            TextInput::Complete
        };
        let who = Identity {
            id: record.id,
            stream,
            model,
            voice,
            cache: !record.no_cache,
            encoding: record.encoding,
        };
        let window = Some(self.config.flow_window_ms);
        Some(Message::new(
            who,
            record.text,
            speech,
            spans,
            input,
            window,
            self.now,
        ))
    }

    /// Restarts a message the object lost, from the segment boundary at or before `played`,
    /// in a new stream whose `start` says where in the message it begins.
    fn restart(&mut self, record: MessageRecord, played: u64) {
        let (index, at) = record.boundary_at_or_before(record.base + played);
        let audio = record.audio(index);
        let stored = self.stored.as_mut().expect("a record came from it");
        let stream = stored.take_stream();
        let Some(message) = self.message_of(record, stream) else {
            return;
        };
        let mut message = message.starting_at(index, at, audio);
        if let TextInput::Open { last_at } = &mut message.input {
            // Its writer could not append while the link was down.
            *last_at = self.now;
        }
        self.log(
            LogLine::new("restart")
                .id("id", &message.id)
                .num("stream", stream)
                .num("segment", index as u64)
                .num("at", at),
        );
        if message.input == TextInput::Complete {
            // (A record of a text written in appends holds only the segments cut so far.)
            message.cut_rest(&self.config, self.now);
        }
        self.message = Some(message);
        self.store(true);
        self.persist();
        self.request_more();
    }

    /// The object woke with no memory of the message its socket's attachment says is active.
    /// A v2 message whose every segment cut so far was relayed to its end (the object
    /// hibernated while it waited for text) goes on in the same stream; any other can no longer
    /// finish: it ends `interrupted`, once.
    pub(super) fn wake_with(&mut self, active: ActiveRecord) {
        let record = self
            .stored
            .as_ref()
            .and_then(|s| s.message.clone())
            .filter(|r| r.id == active.id && r.stream == active.stream);
        // (An object hibernates only once nothing moved for a while: with a client that
        // reports, the relay then waited on nothing, so all its audio went out and arrived.)
        let whole = record
            .as_ref()
            .is_some_and(|r| r.segment_samples.len() == r.spans.len());
        let message = record.filter(|_| whole && self.speaks_v2()).and_then(|r| {
            let (first, base) = r.boundary_at_or_before(r.base);
            let (before, all) = (r.audio(first), r.audio(r.segment_samples.len()));
            let (stream, rate) = (r.stream, r.sample_rate);
            let message = self.message_of(r, stream)?;
            let message = match base {
                0 => message,
                _ => message.starting_at(first, base, before),
            };
            Some(message.continued(all, rate))
        });
        match message {
            Some(mut message) => {
                if message.input == TextInput::Complete {
                    message.cut_rest(&self.config, self.now);
                }
                self.log(
                    LogLine::new("wake")
                        .id("id", &message.id)
                        .num("stream", message.stream)
                        .num("samples", message.samples_sent),
                );
                self.message = Some(message);
                self.relay();
            }
            None => {
                self.end(Ending {
                    id: active.id,
                    stream: Some(active.stream),
                    reason: EndReason::Interrupted,
                    samples: active.samples,
                    error: None,
                    timing: None,
                    heard: None,
                    metrics: None,
                });
                self.store(false);
                self.persist();
            }
        }
    }

    /// Forgets a stored message record older than the grace period: nobody can resume it.
    pub(super) fn forget_stale_record(&mut self) {
        let (now, grace) = (self.now, self.config.resume_grace_ms);
        let idle = self.message.is_none();
        let Some(stored) = self.stored.as_mut() else {
            return;
        };
        let before = (stored.message.is_some(), stored.ended.len());
        if idle
            && stored
                .message
                .as_ref()
                .is_some_and(|r| r.alive_at + grace < now)
        {
            stored.message = None;
        }
        stored.ended.retain(|e| e.at + grace >= now);
        if before != (stored.message.is_some(), stored.ended.len()) {
            self.store(true);
        }
    }
}
