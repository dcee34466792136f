//! Protocol v2 flow control: how much audio the relay may send to a client that reports its play
//! cursor, and when it asks the upstream for the next segment.
//!
//! - **Window.** Audio goes out at most [`FlowControl::window`] ahead of the client's last
//!   `played`: a slow reader holds at most the window in the relay and in the socket's queue.
//! - **In flight.** Audio sent but not yet reported received is capped too, at what the link
//!   needs to keep up: one and a half times its round trip (the smallest seen, so queueing never
//!   inflates it) plus an ack interval, and at least [`MIN_IN_FLIGHT_MS`]. On a link slower than
//!   real time little queues up ahead of an `end`.
//! - **Silence.** A client that has not reported for [`SILENCE_MS`] is taken to be playing in
//!   real time since its last report (a lost report, an engine that cannot report): flow
//!   control can delay audio, never stall a message for good.
//! - **Lead.** A later segment is requested only when the audio the relay has beyond the play
//!   cursor falls below what the upstream needs to produce it ([`lead_needed_ms`]): a stop then
//!   wastes at most the segment in progress.

use std::collections::VecDeque;

use crate::time::Millis;

/// The least audio allowed in flight.
pub const MIN_IN_FLIGHT_MS: u64 = 150;

/// Without a report for this long, the cursor is estimated from the clock.
pub const SILENCE_MS: u64 = 1000;

/// How often an estimated cursor is looked at again.
const ESTIMATE_EVERY_MS: u64 = 100;

/// How often a client reports its cursor while audio arrives (docs/protocol.md).
pub const ACK_INTERVAL_MS: u64 = 250;

/// Generation time assumed per character (Groq produces about 100 per second; this is slower,
/// to be safe).
const GENERATION_MS_PER_CHAR: u64 = 15;

/// Allowance on top of the generation time: the first byte's latency and its variance.
const LEAD_MARGIN_MS: u64 = 1500;

/// How much audio must be ahead of the play cursor when a segment of `chars` characters is
/// requested, so that it arrives before the audio runs out.
pub fn lead_needed_ms(chars: usize) -> Millis {
    chars as u64 * GENERATION_MS_PER_CHAR + LEAD_MARGIN_MS
}

/// Samples in `ms` at `rate`.
pub fn samples(ms: u64, rate: u32) -> u64 {
    ms * u64::from(rate) / 1000
}

/// Milliseconds of `samples` at `rate`.
pub fn millis(samples: u64, rate: u32) -> Millis {
    samples * 1000 / u64::from(rate.max(1))
}

/// What the client reported, and what the relay learned of the link from it.
#[derive(Debug, Clone)]
pub struct FlowControl {
    window_ms: Millis,
    /// The client's play cursor (stream samples).
    played: u64,
    /// Stream samples the client received.
    received: u64,
    /// When recent audio was sent: (end sample, time), oldest first.
    sent_marks: VecDeque<(u64, Millis)>,
    min_rtt: Option<Millis>,
    /// When the client last reported (or, before any report, when audio first went out).
    reported_at: Option<Millis>,
    /// Whether the client ever reported on this stream.
    ever_reported: bool,
}

impl FlowControl {
    /// Flow control with a window of `window_ms`, nothing played yet.
    pub fn new(window_ms: Millis) -> Self {
        Self {
            window_ms,
            played: 0,
            received: 0,
            sent_marks: VecDeque::new(),
            min_rtt: None,
            reported_at: None,
            ever_reported: false,
        }
    }

    /// The client's play cursor, as reported.
    pub fn played(&self) -> u64 {
        self.played
    }

    /// The play cursor to pace by at `now`: as reported, or after [`SILENCE_MS`] without a
    /// report, as if the client played in real time since its last one (never beyond `sent`).
    pub fn cursor(&self, now: Millis, rate: u32, sent: u64) -> u64 {
        match self.reported_at {
            Some(at) if now >= at + SILENCE_MS => {
                (self.played + samples(now - at, rate)).clamp(self.played, sent.max(self.played))
            }
            _ => self.played,
        }
    }

    /// Stream samples the client has at `now`: as reported, or at least the paced cursor.
    pub fn received_by(&self, now: Millis, rate: u32, sent: u64) -> u64 {
        self.received.max(self.cursor(now, rate, sent))
    }

    /// Whether the client has all of the first `end` samples at `now`. A client that reports
    /// must say so (a report can be lost with a dying link, an estimate would end the message
    /// before the client had it); one that never reported on this stream is taken to have
    /// what the clock says it played.
    pub fn delivered(&self, end: u64, now: Millis, rate: u32, sent: u64) -> bool {
        let received = if self.ever_reported {
            self.received
        } else {
            self.received_by(now, rate, sent)
        };
        received >= end
    }

    /// When the paced cursor next moves without a report: the time to look again.
    pub fn next_estimate(&self, now: Millis) -> Option<Millis> {
        let silent_from = self.reported_at? + SILENCE_MS;
        Some(if now < silent_from {
            silent_from
        } else {
            now + ESTIMATE_EVERY_MS
        })
    }

    /// Takes in a `played` report at `now`; reports that go backwards are ignored.
    pub fn on_ack(&mut self, played: u64, received: u64, now: Millis) {
        self.played = self.played.max(played);
        self.received = self.received.max(received).max(self.played);
        self.reported_at = Some(now);
        self.ever_reported = true;
        while let Some(&(end, at)) = self.sent_marks.front() {
            if end > self.received {
                break;
            }
            let rtt = now.saturating_sub(at);
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            self.sent_marks.pop_front();
        }
    }

    /// Notes that audio up to stream sample `end` went out at `now`.
    pub fn on_sent(&mut self, end: u64, now: Millis) {
        self.reported_at.get_or_insert(now);
        match self.sent_marks.back_mut() {
            // One mark per 50 ms is plenty to measure a round trip.
            Some((last_end, at)) if now < *at + 50 => *last_end = end,
            _ => self.sent_marks.push_back((end, now)),
        }
    }

    /// Starts over from `played` (a resume): everything after it is sent again.
    pub fn rewind(&mut self, played: u64) {
        self.played = played;
        self.received = played;
        self.sent_marks.clear();
        self.reported_at = None;
    }

    /// The audio allowed in flight, in milliseconds.
    pub fn in_flight_ms(&self) -> Millis {
        let rtt = self.min_rtt.unwrap_or(0);
        MIN_IN_FLIGHT_MS.max((rtt + ACK_INTERVAL_MS) * 3 / 2)
    }

    /// How many more samples may go out at `now`, `sent` having gone out, at `rate`.
    pub fn allowance(&self, sent: u64, rate: u32, now: Millis) -> u64 {
        let by_window = self.cursor(now, rate, sent) + samples(self.window_ms, rate);
        let by_flight = self.received_by(now, rate, sent) + samples(self.in_flight_ms(), rate);
        by_window.min(by_flight).saturating_sub(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 24_000;

    #[test]
    fn the_window_bounds_what_is_ahead_of_the_cursor() {
        let mut flow = FlowControl::new(2000);
        // Nothing reported yet: only what may be in flight goes out.
        assert_eq!(
            flow.allowance(0, RATE, 0),
            samples(MIN_IN_FLIGHT_MS.max(375), RATE)
        );
        // A fast link: everything received as soon as sent; the window binds.
        flow.on_sent(96_000, 1_000);
        flow.on_ack(0, 96_000, 1_010);
        assert_eq!(flow.allowance(0, RATE, 1_010), samples(2000, RATE));
        assert_eq!(
            flow.allowance(48_000, RATE, 1_010),
            samples(2000, RATE) - 48_000
        );
        flow.on_ack(24_000, 96_000, 2_000);
        assert_eq!(flow.allowance(48_000, RATE, 2_000), 72_000 - 48_000);
    }

    #[test]
    fn in_flight_follows_the_smallest_round_trip() {
        let mut flow = FlowControl::new(2000);
        flow.on_sent(4_800, 0);
        flow.on_ack(0, 4_800, 400);
        flow.on_sent(9_600, 1_000);
        flow.on_ack(0, 9_600, 1_100);
        assert_eq!(flow.in_flight_ms(), (100 + ACK_INTERVAL_MS) * 3 / 2);
        // A queue building up later does not inflate it.
        flow.on_sent(14_400, 2_000);
        flow.on_ack(0, 14_400, 3_000);
        assert_eq!(flow.in_flight_ms(), (100 + ACK_INTERVAL_MS) * 3 / 2);
    }

    #[test]
    fn reports_never_go_backwards_and_a_rewind_starts_over() {
        let mut flow = FlowControl::new(2000);
        flow.on_ack(10_000, 20_000, 0);
        flow.on_ack(5_000, 8_000, 1);
        assert_eq!(flow.played(), 10_000);
        flow.rewind(9_000);
        assert_eq!(flow.played(), 9_000);
        assert_eq!(
            flow.allowance(9_000, RATE, 0),
            samples(MIN_IN_FLIGHT_MS.max(375), RATE)
        );
    }

    #[test]
    fn a_silent_client_is_paced_by_the_clock() {
        let mut flow = FlowControl::new(2000);
        flow.on_sent(9_000, 10_000);
        assert_eq!(
            flow.cursor(10_900, RATE, 9_000),
            0,
            "a short silence: as reported"
        );
        assert_eq!(flow.next_estimate(10_900), Some(11_000));
        // After a second of silence, real time since the first audio.
        assert_eq!(flow.cursor(11_000, RATE, 96_000), 24_000);
        assert_eq!(flow.received_by(11_000, RATE, 96_000), 24_000);
        assert_eq!(
            flow.cursor(11_000, RATE, 9_000),
            9_000,
            "never beyond what was sent"
        );
        assert_eq!(flow.next_estimate(11_000), Some(11_100));
        // A report puts the clock back.
        flow.on_ack(6_000, 9_000, 11_050);
        assert_eq!(flow.cursor(11_500, RATE, 96_000), 6_000);
    }

    #[test]
    fn delivery_is_reported_once_the_client_reports_at_all() {
        let mut silent = FlowControl::new(2000);
        silent.on_sent(24_000, 0);
        assert!(!silent.delivered(24_000, 500, RATE, 24_000));
        assert!(
            silent.delivered(24_000, 2_000, RATE, 24_000),
            "by the clock"
        );
        let mut reporting = FlowControl::new(2000);
        reporting.on_sent(24_000, 0);
        reporting.on_ack(1_000, 2_000, 100);
        assert!(
            !reporting.delivered(24_000, 60_000, RATE, 24_000),
            "never by the clock once it reported"
        );
        reporting.on_ack(2_000, 24_000, 60_000);
        assert!(reporting.delivered(24_000, 60_000, RATE, 24_000));
    }

    #[test]
    fn longer_segments_need_more_lead() {
        assert!(lead_needed_ms(200) > lead_needed_ms(50));
        assert_eq!(lead_needed_ms(0), LEAD_MARGIN_MS);
        assert_eq!(millis(samples(1234, RATE), RATE), 1234);
    }
}
