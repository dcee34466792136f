//! Protocol v2: the audio of a stream the client has not reported played yet.
//!
//! Audio enters in stream order as the segments release it ([`Unplayed::push`]) and leaves the
//! front when the client reports it played ([`Unplayed::release`]). A send cursor moves through
//! it: frames go out up to what flow control allows ([`Unplayed::take`]), and a `resume` moves
//! the cursor back to the client's play cursor ([`Unplayed::rewind`]) so that the rest goes out
//! again, each frame at its own sample offset. Segment ends are remembered, so a frame sent
//! again still carries the `LAST_IN_SEGMENT` flag where the first one did. A stream that goes
//! on after the object lost what it held starts again empty at its next sample
//! ([`Unplayed::skip_to`]).

use std::collections::VecDeque;

use orpheus_protocol::LAST_IN_SEGMENT;

/// One frame's worth of audio to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The stream sample of its first sample.
    pub offset: u64,
    /// Frame flags ([`LAST_IN_SEGMENT`] or 0).
    pub flags: u8,
    /// PCM16 little-endian.
    pub pcm: Vec<u8>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Unplayed {
    /// PCM from stream sample `start` on.
    pcm: VecDeque<u8>,
    start: u64,
    /// The next stream sample to send.
    cursor: u64,
    /// Stream samples at which a segment ends, ascending, all after `start`.
    segment_ends: VecDeque<u64>,
}

impl Unplayed {
    /// Nothing held; the stream starts at sample 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing held, and the stream continues from sample `at` (everything before it was
    /// sent and played).
    pub fn skip_to(&mut self, at: u64) {
        *self = Self {
            start: at,
            cursor: at,
            ..Self::default()
        };
    }

    /// The stream sample after the last one held.
    pub fn end(&self) -> u64 {
        self.start + (self.pcm.len() / 2) as u64
    }

    /// The next stream sample to send.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Samples held and not sent (since the last rewind).
    pub fn unsent(&self) -> u64 {
        self.end() - self.cursor
    }

    /// Bytes held.
    pub fn held_bytes(&self) -> usize {
        self.pcm.len()
    }

    /// Appends audio released by the segment being relayed; `ends_segment` when it is that
    /// segment's last.
    pub fn push(&mut self, pcm: &[u8], ends_segment: bool) {
        debug_assert!(pcm.len().is_multiple_of(2), "whole samples");
        self.pcm.extend(pcm);
        if ends_segment {
            self.segment_ends.push_back(self.end());
        }
    }

    /// Forgets the audio before stream sample `played` (the client played it). Never moves the
    /// send cursor back, nor past what is held.
    pub fn release(&mut self, played: u64) {
        let to = played.min(self.cursor).max(self.start);
        let bytes = ((to - self.start) * 2) as usize;
        self.pcm.drain(..bytes);
        self.start = to;
        while self.segment_ends.front().is_some_and(|&end| end <= to) {
            self.segment_ends.pop_front();
        }
    }

    /// Moves the send cursor back to `played` (a resume): everything held from there on goes
    /// out again. Audio already released cannot be sent again, so the cursor stops at the
    /// start of what is held.
    pub fn rewind(&mut self, played: u64) {
        self.release(played);
        self.cursor = played.clamp(self.start, self.cursor);
    }

    /// Takes up to `allowed` samples from the send cursor, in pieces of at most
    /// `max_piece_bytes`, cut at segment ends (whose pieces carry [`LAST_IN_SEGMENT`]).
    pub fn take(&mut self, allowed: u64, max_piece_bytes: usize) -> Vec<Piece> {
        let max_piece = (max_piece_bytes / 2).max(1) as u64;
        let until = (self.cursor + allowed).min(self.end());
        let mut pieces = Vec::new();
        while self.cursor < until {
            let segment_end = self.segment_ends.iter().copied().find(|&e| e > self.cursor);
            let stop = until
                .min(self.cursor + max_piece)
                .min(segment_end.unwrap_or(u64::MAX));
            let from = ((self.cursor - self.start) * 2) as usize;
            let to = ((stop - self.start) * 2) as usize;
            pieces.push(Piece {
                offset: self.cursor,
                flags: if segment_end == Some(stop) {
                    LAST_IN_SEGMENT
                } else {
                    0
                },
                pcm: self.pcm.make_contiguous()[from..to].to_vec(),
            });
            self.cursor = stop;
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(range: std::ops::Range<u16>) -> Vec<u8> {
        range.flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn sends_in_order_cut_at_segment_ends_and_frame_size() {
        let mut unplayed = Unplayed::new();
        unplayed.push(&samples(0..10), true);
        unplayed.push(&samples(10..16), false);
        let pieces = unplayed.take(100, 8);
        let shape: Vec<(u64, u8, usize)> = pieces
            .iter()
            .map(|p| (p.offset, p.flags, p.pcm.len() / 2))
            .collect();
        assert_eq!(
            shape,
            [
                (0, 0, 4),
                (4, 0, 4),
                (8, LAST_IN_SEGMENT, 2),
                (10, 0, 4),
                (14, 0, 2)
            ]
        );
        let all: Vec<u8> = pieces.into_iter().flat_map(|p| p.pcm).collect();
        assert_eq!(all, samples(0..16));
        assert_eq!(unplayed.unsent(), 0);
    }

    #[test]
    fn sends_no_more_than_allowed() {
        let mut unplayed = Unplayed::new();
        unplayed.push(&samples(0..10), false);
        let pieces = unplayed.take(3, 1024);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].pcm, samples(0..3));
        assert_eq!((unplayed.cursor(), unplayed.unsent()), (3, 7));
        assert!(unplayed.take(0, 1024).is_empty());
    }

    #[test]
    fn a_rewind_sends_the_unplayed_part_again_with_its_flags() {
        let mut unplayed = Unplayed::new();
        unplayed.push(&samples(0..6), true);
        unplayed.push(&samples(6..12), false);
        unplayed.take(12, 1024);
        unplayed.release(4);
        assert_eq!(unplayed.held_bytes(), 16);
        unplayed.rewind(5);
        let pieces = unplayed.take(100, 1024);
        assert_eq!(pieces[0].offset, 5);
        assert_eq!(pieces[0].pcm, samples(5..6));
        assert_eq!(pieces[0].flags, LAST_IN_SEGMENT);
        assert_eq!(pieces[1].pcm, samples(6..12));
    }

    #[test]
    fn released_audio_is_gone_and_the_cursor_never_jumps_ahead() {
        let mut unplayed = Unplayed::new();
        unplayed.push(&samples(0..10), false);
        unplayed.take(4, 1024);
        // A report beyond what was sent releases only what was sent.
        unplayed.release(9);
        assert_eq!((unplayed.end(), unplayed.cursor()), (10, 4));
        // A resume before what was released restarts at what is held.
        unplayed.rewind(1);
        assert_eq!(unplayed.cursor(), 4);
        assert_eq!(unplayed.take(100, 1024)[0].pcm, samples(4..10));
    }

    #[test]
    fn a_stream_that_goes_on_after_a_skip_keeps_its_offsets() {
        let mut unplayed = Unplayed::new();
        unplayed.push(&samples(0..4), true);
        unplayed.skip_to(1_000);
        assert_eq!(
            (unplayed.end(), unplayed.cursor(), unplayed.unsent()),
            (1_000, 1_000, 0)
        );
        unplayed.push(&samples(0..3), true);
        let pieces = unplayed.take(100, 1024);
        assert_eq!(pieces.len(), 1);
        assert_eq!(
            (pieces[0].offset, pieces[0].flags),
            (1_000, LAST_IN_SEGMENT)
        );
    }
}
