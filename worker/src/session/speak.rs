//! A message's text comes in: `speak` (checked, charged, and the message opened), and with
//! protocol v2 streaming text, `append` and `finish`.

use std::collections::BTreeMap;

use orpheus_protocol::{
    resolve_voice, AudioEncoding, EndError, EndReason, ErrorCode, Markup, Model, ServerMessage,
};

use super::api::Speak;
use super::message::{Identity, Message, TextInput};
use super::{Ending, Session};
use crate::log::LogLine;
use crate::segment;
use crate::speech::{Lexicon, SpeechText};

impl Session {
    /// Checks a `speak` without touching anything (`speech`: what would be said of it): the
    /// model and voice, or why it is refused.
    fn check_speak(
        &self,
        speak: &Speak,
        speech: &SpeechText,
    ) -> Result<(Model, &'static str), (ErrorCode, Option<u32>)> {
        // Text still to come may make it speakable: that is checked at `finish`.
        if !speak.more && !segment::is_speakable(speech.spoken()) {
            return Err((ErrorCode::EmptyText, None));
        }
        if speak.text.chars().count() > self.config.limits.max_text_chars as usize {
            return Err((ErrorCode::TextTooLong, None));
        }
        let resolved = resolve_voice(speak.voice.as_deref(), speak.model.as_deref())
            .map_err(|code| (code, None))?;
        if !self.config.upstream_configured {
            return Err((ErrorCode::NotConfigured, None));
        }
        if self.stored.is_none() {
            return Err((ErrorCode::RelayUnavailable, Some(1)));
        }
        Ok(resolved)
    }

    /// A `speak`: checked and charged, it ends the active message (`superseded`) and becomes
    /// the active one; refused, it gets its `end` and leaves the active message alone. Its text
    /// is read as it asks, else as the session does.
    pub(super) fn on_speak(&mut self, speak: Speak) {
        // Version 1 ignores `more`, an unknown field there.
        let more = speak.more && self.speaks_v2();
        let defaults = self.stored.as_ref();
        let markup = speak
            .markup
            .or(defaults.map(|d| d.markup))
            .unwrap_or_default();
        let lexicon = match &speak.lexicon {
            Some(lexicon) => lexicon.clone(),
            None => defaults.map(|d| d.lexicon.clone()).unwrap_or_default(),
        };
        let mut speech = SpeechText::new(markup, lexicon);
        speech.read(&speak.text, !more);
        let speak = Speak { more, ..speak };
        let (model, voice) = match self.check_speak(&speak, &speech) {
            Ok(resolved) => resolved,
            Err((code, retry_after)) => return self.reject(speak.id, code, retry_after),
        };
        let chars = speak.text.chars().count() as u64;
        let (now, limits) = (self.now, self.config.budget);
        let stored = self.stored.as_mut().expect("checked");
        if let Err(retry_after) = stored.budget.admit(&limits, chars, now) {
            return self.reject(speak.id, ErrorCode::RateLimited, Some(retry_after));
        }
        let stream = stored.take_stream();
        self.finish(EndReason::Superseded, None);
        let (spans, input) = if more {
            (Vec::new(), TextInput::Open { last_at: now })
        } else {
            let spans = segment::split_spans(
                speech.spoken(),
                self.config.limits.segment_chars as usize,
                self.config.first_segment_chars,
            );
            (spans, TextInput::Complete)
        };
        self.log(
            LogLine::new("speak")
                .id("id", &speak.id)
                .num("stream", stream)
                .num("chars", chars)
                .num("segments", spans.len() as u64)
                .word("voice", voice)
                .word("text", if more { "open" } else { "complete" })
                .word("markup", markup.as_str()),
        );
        let who = Identity {
            id: speak.id,
            stream,
            model,
            voice,
            cache: speak.cache,
            // Opus for a v2 client that asks for it, when the relay can code it.
            encoding: match speak.encoding {
                Some(AudioEncoding::Opus) if self.speaks_v2() && self.config.opus => {
                    AudioEncoding::Opus
                }
                _ => AudioEncoding::Pcm,
            },
        };
        let window = self.speaks_v2().then_some(self.config.flow_window_ms);
        self.message = Some(Message::new(
            who, speak.text, speech, spans, input, window, now,
        ));
        self.store(true);
        self.persist();
        self.request_more();
    }

    /// Protocol v2: the session's defaults for the messages that start after this: how text is
    /// read, and the lexicon (checked against its limits: one out of them changes nothing).
    pub(super) fn on_configure(
        &mut self,
        markup: Option<Markup>,
        lexicon: Option<BTreeMap<String, String>>,
    ) {
        let lexicon = match lexicon.map(Lexicon::new).transpose() {
            Ok(lexicon) => lexicon,
            Err(error) => {
                return self.send(ServerMessage::Error {
                    code: ErrorCode::InvalidLexicon,
                    message: error.to_string(),
                    retry_after_s: None,
                })
            }
        };
        let Some(stored) = self.stored.as_mut() else {
            return self.send(ServerMessage::Error {
                code: ErrorCode::RelayUnavailable,
                message: ErrorCode::RelayUnavailable.message().to_owned(),
                retry_after_s: Some(1),
            });
        };
        if let Some(markup) = markup {
            stored.markup = markup;
        }
        if let Some(lexicon) = lexicon {
            stored.lexicon = lexicon;
        }
        let (markup, entries) = (stored.markup, stored.lexicon.len() as u32);
        self.log(
            LogLine::new("configure")
                .word("markup", markup.as_str())
                .num("lexicon", entries as u64),
        );
        let configured = ServerMessage::Configured {
            markup,
            lexicon: entries,
        };
        self.store(true);
        self.send(configured);
    }

    /// Ends a `speak` that was never accepted.
    pub(super) fn reject(&mut self, id: String, code: ErrorCode, retry_after_s: Option<u32>) {
        self.end(Ending {
            id,
            stream: None,
            reason: EndReason::Error,
            samples: 0,
            error: Some(EndError::new(code, retry_after_s)),
            timing: None,
            heard: None,
            metrics: None,
        });
    }

    /// Whether `id` names the active message and its text is still open.
    pub(super) fn open_message(&self, id: &str) -> bool {
        self.message
            .as_ref()
            .is_some_and(|m| m.id == id && m.is_open())
    }

    /// More text for an open message: what the relay has not got yet (from `at`) is added,
    /// counted against the limits, and cut into segments as boundaries appear.
    pub(super) fn on_append(&mut self, id: &str, text: &str, at: Option<u64>) {
        if !self.open_message(id) {
            return self.send(ServerMessage::error(ErrorCode::MessageNotOpen));
        }
        let message = self.message.as_mut().expect("checked open");
        let have = message.text.chars().count() as u64;
        let at = at.unwrap_or(have);
        if at > have {
            return self.send(ServerMessage::error(ErrorCode::TextGap));
        }
        let new: String = text.chars().skip((have - at) as usize).collect();
        let chars = new.chars().count() as u64;
        if have + chars > u64::from(self.config.limits.max_text_chars) {
            let error = EndError::new(ErrorCode::TextTooLong, None);
            return self.finish(EndReason::Error, Some(error));
        }
        let (now, limits) = (self.now, self.config.budget);
        if chars > 0 {
            let stored = self
                .stored
                .as_mut()
                .expect("a message runs on a known budget");
            if let Err(retry_after) = stored.budget.admit_more(&limits, chars, now) {
                let error = EndError::new(ErrorCode::RateLimited, Some(retry_after));
                return self.finish(EndReason::Error, Some(error));
            }
        }
        let message = self.message.as_mut().expect("checked open");
        message.text.push_str(&new);
        message.read_text(false);
        message.input = TextInput::Open { last_at: now };
        // The text so far is kept with the record: a socket that stays open while the object
        // hibernates between appends does not resume, and the object must still know it.
        self.store(false);
        self.relay();
    }

    /// The text of an open message is complete: the rest is cut and spoken. Finishing a
    /// message whose text is already complete changes nothing (a `finish` may be sent again
    /// after a resume); any other id is an error.
    pub(super) fn on_finish(&mut self, id: &str) {
        let Some(message) = self.message.as_mut().filter(|m| m.id == id) else {
            return self.send(ServerMessage::error(ErrorCode::MessageNotOpen));
        };
        if message.input == TextInput::Complete {
            return;
        }
        message.input = TextInput::Complete;
        message.read_text(true);
        if !segment::is_speakable(message.speech.spoken()) {
            let error = EndError::new(ErrorCode::EmptyText, None);
            return self.finish(EndReason::Error, Some(error));
        }
        message.cut_rest(&self.config, self.now);
        self.store(true);
        self.relay();
    }
}
