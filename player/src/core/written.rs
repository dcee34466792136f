//! Protocol v2: the text of a message the app is still writing (`speakStream`), and how much of
//! it the relay was sent: one `append` at most every interval, the `finish` once the app
//! finished it, everything again after a resume, and (for a relay of protocol v1) the whole
//! text in one `speak` once it is complete.

use crate::prelude::*;

use orpheus_protocol::codec::{self, SpeakOptions};

use super::api::{Effect, Seconds};
use super::link::Link;
use super::message::{Message, Phase};
use super::PlayerCore;

/// The Unicode scalar values of `text`, as the relay counts: every byte that does not continue
/// a character starts one. (`chars().count()` is a kilobyte of wasm.)
pub(super) fn char_count(text: &str) -> u64 {
    text.bytes().filter(|&b| b & 0xC0 != 0x80).count() as u64
}

/// Protocol v2: the text of a message the app is still writing, and how much of it the relay
/// was sent. (Counts are Unicode scalar values, as the relay counts.)
#[derive(Debug)]
pub(super) struct Written {
    /// All of the text so far.
    pub(super) text: String,
    /// Its length.
    pub(super) chars: u64,
    /// Characters the `speak` frame carried.
    pub(super) in_speak: u64,
    /// Characters sent on the current socket.
    pub(super) sent: u64,
    /// When an `append` last went out.
    pub(super) sent_at: Seconds,
    /// Where the text stands.
    pub(super) end: TextEnd,
    /// The `speak`'s options, for a relay of protocol v1, which is sent the whole text in one
    /// `speak` once it is complete.
    pub(super) options: SpeakOptions,
}

/// Whether the app finished a written message's text, and whether the relay was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextEnd {
    /// More may come.
    Open,
    /// Complete; `finish` not sent yet (on this socket).
    Finished,
    /// Complete, and `finish` sent.
    Told,
}

impl PlayerCore {
    /// When written text that the relay was not sent yet goes out.
    pub(super) fn append_deadline(&self) -> Option<Seconds> {
        let w = self.sendable_text()?;
        (w.sent < w.chars).then_some(w.sent_at + self.config.append_interval)
    }

    /// The current message's written text, when it can be sent now: the session is ready and
    /// the message's `speak` went out on this socket.
    pub(super) fn sendable_text(&self) -> Option<&Written> {
        let m = self.current.as_ref()?;
        let sent = matches!(m.phase, Phase::Sent { .. } | Phase::Streaming { .. });
        let ready = self.link == Link::Ready && m.parked_at.is_none() && sent;
        m.written.as_ref().filter(|_| ready)
    }

    /// Sends the current message's written text the relay does not have yet (at most one
    /// `append` per [`Config::append_interval`], unless the text is complete), then its
    /// `finish` once the app finished it.
    pub(super) fn send_text(&mut self) {
        if self.link == Link::Ready {
            // (Only the text of a message for a relay of protocol v1 waits unsent.)
            if let Some(mut m) = self.current.take() {
                self.send_unsent(&mut m);
                self.current = Some(m);
            }
        }
        if self.sendable_text().is_none() {
            return;
        }
        let (now, interval) = (self.now, self.config.append_interval);
        let m = self.current.as_mut().expect("sendable");
        let w = m.written.as_mut().expect("sendable");
        let due = w.end != TextEnd::Open || now >= w.sent_at + interval;
        if w.sent < w.chars && due {
            let rest: String = w.text.chars().skip(w.sent as usize).collect();
            self.effects
                .push(Effect::Send(codec::append(&m.id, &rest, w.sent)));
            w.sent = w.chars;
            w.sent_at = now;
        }
        if w.end == TextEnd::Finished && w.sent == w.chars {
            self.effects.push(Effect::Send(codec::finish(&m.id)));
            w.end = TextEnd::Told;
        }
    }

    /// The relay must be sent the written text again from `from` characters on (a resume:
    /// it skips what it has; a `speak` sent again: it has what the frame carries).
    pub(super) fn resend_text(m: &mut Message, from_speak: bool) {
        if let Some(w) = m.written.as_mut() {
            w.sent = if from_speak { w.in_speak } else { 0 };
            w.sent_at = f64::NEG_INFINITY;
            if w.end == TextEnd::Told {
                w.end = TextEnd::Finished;
            }
        }
    }

    /// The text of message `id`, while it is current and the app may still add to it.
    pub(super) fn written_open(&mut self, id: &str) -> Option<&mut Written> {
        let m = self.current.as_mut().filter(|m| m.id == id)?;
        m.written.as_mut().filter(|w| w.end == TextEnd::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::char_count;

    #[test]
    fn counts_characters_as_the_relay_does() {
        for text in ["", "plain", "é", "مرحبا", "😀 and 👍🏽", "a\u{0}b"] {
            assert_eq!(char_count(text), text.chars().count() as u64, "{text}");
        }
    }
}
