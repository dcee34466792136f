//! The sends the relay remembers until a report says they arrived: the one record from which
//! round trips are timed ([`super::rtt`]) and from which the pacer learns whether the audio
//! after an arrival waited behind it ([`super::pacer`]).

use std::collections::VecDeque;

use crate::time::Millis;

/// Sends remembered; past this many, the newest stands for the rest.
const MAX_SENDS: usize = 64;

/// One send.
#[derive(Debug, Clone, Copy)]
pub struct Send {
    /// The stream sample after its last.
    pub end: u64,
    pub at: Millis,
    /// Whether it left at most [`super::QUIET_MS`] in flight: its round trip is the link's
    /// own (and a little time to carry it).
    pub quiet: bool,
    /// Whether audio was left unsent when it went out: it may wait behind the last.
    pub link_bound: bool,
    /// Whether it went out [`super::Pace::Paced`].
    pub paced: bool,
}

/// Sends not yet reported received, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Sends {
    sends: VecDeque<Send>,
}

impl Sends {
    /// Remembers a send. Sends of one turn are one send to the link; past the most remembered,
    /// the newest stands for the rest (the oldest are the next to be timed).
    pub fn push(&mut self, send: Send) {
        let full = self.sends.len() >= MAX_SENDS;
        match self.sends.back_mut() {
            Some(last) if last.at == send.at || full => {
                last.end = send.end;
                last.quiet &= send.quiet;
                last.link_bound |= send.link_bound;
                last.paced &= send.paced;
            }
            _ => self.sends.push_back(send),
        }
    }

    /// Forgets the sends a report of `received` samples covers; returns the newest of them,
    /// whose round trip the report times.
    pub fn acked(&mut self, received: u64) -> Option<Send> {
        let mut newest = None;
        while self.sends.front().is_some_and(|s| s.end <= received) {
            newest = self.sends.pop_front();
        }
        newest
    }

    /// Whether the oldest send not yet received went out on a link that held audio back.
    pub fn next_is_link_bound(&self) -> bool {
        self.sends.front().is_some_and(|s| s.link_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(end: u64, at: Millis) -> Send {
        Send {
            end,
            at,
            quiet: true,
            link_bound: false,
            paced: false,
        }
    }

    #[test]
    fn sends_of_one_turn_are_one_and_a_report_times_the_newest_it_covers() {
        let mut sends = Sends::default();
        sends.push(send(100, 0));
        sends.push(Send {
            link_bound: true,
            ..send(200, 0)
        });
        sends.push(send(300, 10));
        sends.push(send(400, 20));
        let acked = sends.acked(300).expect("two sends covered");
        assert_eq!((acked.end, acked.at), (300, 10));
        assert!(!sends.next_is_link_bound());
        assert!(
            sends.acked(350).is_none(),
            "a send is covered whole or not at all"
        );
        assert_eq!(sends.acked(400).map(|s| s.at), Some(20));
    }

    #[test]
    fn past_the_most_remembered_the_newest_stands_for_the_rest() {
        let mut sends = Sends::default();
        for i in 0..MAX_SENDS as u64 + 10 {
            sends.push(send(i + 1, i));
        }
        assert_eq!(sends.sends.len(), MAX_SENDS);
        let last = sends.sends.back().expect("a send");
        assert_eq!(
            (last.end, last.at),
            (MAX_SENDS as u64 + 10, MAX_SENDS as u64 - 1)
        );
    }
}
