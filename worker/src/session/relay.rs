//! Relaying the active message's audio out: in segment order, with contiguous sample offsets,
//! `start` with the first frame; straight out for a v1 client, through the flow window and the
//! audio not yet played ([`crate::unplayed`]) for a v2 client, whose `played` reports open it.

use orpheus_protocol::{EndError, EndReason, ErrorCode, ServerMessage, LAST_IN_SEGMENT};

use super::api::{AudioOut, Effect};
use super::fetch::Phase;
use super::Session;
use crate::unplayed::Piece;

impl Session {
    /// A v2 client's play cursor: it frees the window and releases the audio played.
    pub(super) fn on_played(&mut self, stream: u32, played: u64, received: u64, on_receipt: bool) {
        let now = self.now;
        if !self.client_reports {
            self.client_reports = true;
            self.persist();
        }
        let Some(message) = self.message.as_mut().filter(|m| m.stream == stream) else {
            return;
        };
        let Some(flow) = message.flow.as_mut() else {
            return;
        };
        // Nothing beyond what was sent can have been received, let alone played.
        let sent = message.samples_sent;
        flow.control
            .on_ack(played.min(sent), received.min(sent), on_receipt, now);
        flow.unplayed.release(flow.control.played());
        self.store(false);
        self.relay();
    }

    /// Relays what the front segment has, in order, moving on to the next segment when it is
    /// done; ends the message on the first failed segment whose turn has come.
    pub(super) fn relay(&mut self) {
        loop {
            let Some(message) = self.message.as_mut() else {
                return;
            };
            let Some(front) = message.segments.front_mut() else {
                break;
            };
            if let Phase::Failed(error) = &front.phase {
                let error = error.clone();
                return self.finish(EndReason::Error, Some(error));
            }
            if !self.flush_front() {
                return;
            }
            if !self.next_segment() {
                break;
            }
        }
        // With flow control, audio already out of the segments may be waiting for the window.
        self.send_unplayed();
        self.tell_words();
        self.request_more();
    }

    /// Releases the front segment's PCM, holding back its last few milliseconds while more may
    /// follow so that its final frame can carry the flag. Without flow control it goes straight
    /// out; with it, into the unplayed audio, which goes out as far as the window allows.
    /// Returns false if the message ended.
    fn flush_front(&mut self) -> bool {
        let hold_back = self.config.hold_back_samples * 2;
        let message = self.message.as_mut().expect("a message to flush");
        let front = message.segments.front_mut().expect("a front segment");
        let complete = front.is_complete();
        let ready = front
            .pcm
            .len()
            .saturating_sub(if complete { 0 } else { hold_back });
        if ready > 0 {
            let rate = front.format.expect("PCM follows the format").sample_rate;
            if message
                .sample_rate
                .is_some_and(|announced| announced != rate)
            {
                let error = EndError::new(ErrorCode::UpstreamBadAudio, None);
                self.finish(EndReason::Error, Some(error));
                return false;
            }
            message.sample_rate = Some(rate);
            // Whole-slice moves: what is held back (a sample) stays, the rest goes.
            let held = front.pcm.split_off(ready);
            let pcm = std::mem::replace(&mut front.pcm, held);
            let last = complete && front.pcm.is_empty();
            front.flushed += (pcm.len() / 2) as u64;
            match message.flow.as_mut() {
                Some(flow) => flow.unplayed.push(&pcm, last),
                None => self.send_now(&pcm, last),
            }
        }
        self.send_unplayed();
        self.tell_words();
        true
    }

    /// Tells where the front segment's words are said, once its audio is all here and relayed
    /// (so where it begins in the stream is known): to a client of protocol v2 as soon as the
    /// stream's `start` went out, audio held back or not, so that each word's timing comes
    /// before the word is heard. Kept for what was heard.
    fn tell_words(&mut self) {
        let v2 = self.speaks_v2() || self.config.words_to_v1;
        let Some(message) = self.message.as_mut() else {
            return;
        };
        if let Some(front) = message.segments.front() {
            let ready = front.is_complete() && front.pcm.is_empty() && front.timings.is_some();
            if ready && !front.words_told {
                let end = match &message.flow {
                    Some(flow) => flow.unplayed.end(),
                    None => message.samples_sent,
                };
                let words = message.words_of(front, end - front.flushed);
                message.words_until = end;
                message.words.extend_from_slice(&words);
                message.untold += words.len();
                if let Some(front) = message.segments.front_mut() {
                    front.words_told = true;
                }
            }
        }
        if !v2 || message.untold == 0 || message.first_audio_at.is_none() {
            return;
        }
        let words = message.words[message.words.len() - message.untold..].to_vec();
        message.untold = 0;
        let stream = message.stream;
        self.send(ServerMessage::Words { stream, words });
    }

    /// Drops the front segment once all its audio is out, recording the progress. Returns
    /// whether it did.
    fn next_segment(&mut self) -> bool {
        let message = self.message.as_mut().expect("a message");
        let done = message
            .segments
            .front()
            .is_some_and(|s| s.is_complete() && s.pcm.is_empty());
        if !done {
            return false;
        }
        message.segments.pop_front();
        if message.samples_persisted != message.samples_sent {
            message.samples_persisted = message.samples_sent;
            self.persist();
        }
        true
    }

    /// Sends PCM of a message without flow control, in frames from the next sample on.
    fn send_now(&mut self, pcm: &[u8], last_in_segment: bool) {
        let max = self.config.max_frame_pcm_bytes & !1;
        let message = self.message.as_mut().expect("audio needs a message");
        let pieces = pcm.chunks(max).count();
        let mut offset = message.samples_sent;
        let pieces = pcm
            .chunks(max)
            .enumerate()
            .map(|(i, chunk)| {
                let piece = Piece {
                    offset,
                    flags: if last_in_segment && i + 1 == pieces {
                        LAST_IN_SEGMENT
                    } else {
                        0
                    },
                    pcm: chunk.to_vec(),
                };
                offset += (chunk.len() / 2) as u64;
                piece
            })
            .collect();
        message.samples_sent = offset;
        self.send_pieces(pieces);
    }

    /// Sends the unplayed audio of a v2 message as far as flow control allows: nothing while
    /// the message is parked.
    pub(super) fn send_unplayed(&mut self) {
        let max = self.config.max_frame_pcm_bytes & !1;
        let (now, serving) = (self.now, self.serving().is_some());
        let Some(message) = self.message.as_mut() else {
            return;
        };
        let (Some(rate), Some(flow)) = (message.sample_rate, message.flow.as_mut()) else {
            return;
        };
        let open = serving && message.parked_until.is_none();
        let allowed = if open {
            flow.control.allowance(flow.unplayed.cursor(), rate, now)
        } else {
            0
        };
        let max = match flow.control.paced_frame(rate, now) {
            Some(frame) => max.min(frame as usize * 2),
            None => max,
        };
        let pieces = flow.unplayed.take(allowed, max);
        let held = flow.unplayed.unsent();
        flow.held_back_max = flow.held_back_max.max(held);
        if pieces.is_empty() {
            return;
        }
        flow.control
            .on_sent(flow.unplayed.cursor(), held > 0, rate, now);
        message.samples_sent = message.samples_sent.max(flow.unplayed.cursor());
        self.send_pieces(pieces);
    }

    /// Sends audio frames of the active message, `start` first if none went out yet.
    fn send_pieces(&mut self, pieces: Vec<Piece>) {
        let now = self.now;
        let message = self.message.as_mut().expect("audio needs a message");
        let (stream, encoding) = (message.stream, message.encoding);
        let start = message
            .first_audio_at
            .is_none()
            .then(|| message.start_message())
            .flatten();
        message.first_audio_at.get_or_insert(now);
        if let Some(start) = start {
            self.send(start);
        }
        let Some(generation) = self.serving() else {
            return;
        };
        self.effects.extend(pieces.into_iter().map(|piece| {
            let audio = AudioOut {
                stream,
                encoding,
                piece,
            };
            Effect::Audio(generation, audio)
        }));
    }
}
