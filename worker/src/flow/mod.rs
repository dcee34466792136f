//! Protocol v2 flow control: how much audio the relay may send to a client that reports its play
//! cursor, and when it asks the upstream for the next segment. This file holds the window and
//! the play cursor; beside it, [`sends`] (the sends not yet reported received), [`rtt`] (the
//! link's round trips) and [`pacer`] (a slow link's delivery rate, and what it may have in
//! flight).
//!
//! - **Window.** Audio goes out at most [`FlowControl::window`] ahead of the client's last
//!   `played`: a slow reader holds at most the window in the relay and in the socket's queue.
//! - **In flight.** Audio sent but not yet reported received is capped too, at what the link
//!   needs to keep up: one and a half times its round trip (the smallest seen, so queueing never
//!   inflates it) plus the time to the client's next report (it reports less often with plenty
//!   ahead: [`orpheus_protocol::report_interval_ms`]), and at least [`MIN_IN_FLIGHT_MS`]. On a
//!   link slower than real time little queues up ahead of an `end`.
//! - **Silence.** A client that has not reported for [`SILENCE_MS`] is taken to be playing in
//!   real time since its last report (a lost report, an engine that cannot report): flow
//!   control can delay audio, never stall a message for good.
//! - **Pacing.** A client near the end of its audio reports every frame it receives
//!   (`on_receipt`); from those reports the [`pacer`] learns a link slower than real time and
//!   keeps in flight only what it delivers in a round trip, and a little more: the `end`
//!   answering a stop waits behind a few tens of milliseconds of audio, not seconds. Until it
//!   has a rate, such a client gets at most [`MEASURING_MS`] in flight. See [`Pace`].
//! - **Lead.** A later segment is requested only when the audio the relay has beyond the play
//!   cursor falls below what the upstream needs to produce it ([`lead_needed_ms`]): a stop then
//!   wastes at most the segment in progress.

mod pacer;
mod rtt;
mod sends;
#[cfg(test)]
mod simulation;

pub use pacer::Pace;

use pacer::Pacer;
use rtt::RttEstimator;
use sends::{Send, Sends};

use crate::time::Millis;

/// The least audio allowed in flight.
pub const MIN_IN_FLIGHT_MS: u64 = 150;

/// Without a report for this long, the cursor is estimated from the clock.
pub const SILENCE_MS: u64 = 1000;

/// How often an estimated cursor is looked at again.
const ESTIMATE_EVERY_MS: u64 = 100;

/// How many frames a paced or measuring link's allowance in flight is sent in: a frame is a
/// fraction of it, so that the link never waits for a report.
const FRAMES_IN_FLIGHT: u64 = 4;

/// A send that leaves at most this much audio in flight times the link's own round trip (and
/// the time to carry so little); until one has, a paced link keeps no more than this in
/// flight, so that its queue drains.
const QUIET_MS: u64 = 10;

/// What a client that reports on receipt may have in flight before its link is timed: what
/// goes out before any report.
const MEASURING_MS: u64 = 375;

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
    /// Sends not yet reported received.
    sends: Sends,
    rtt: RttEstimator,
    /// When the client last reported (or, before any report, when audio first went out).
    reported_at: Option<Millis>,
    /// Whether the client ever reported on this stream.
    ever_reported: bool,
    pacer: Pacer,
}

impl FlowControl {
    /// Flow control with a window of `window_ms`, nothing played yet.
    pub fn new(window_ms: Millis) -> Self {
        Self {
            window_ms,
            played: 0,
            received: 0,
            sends: Sends::default(),
            rtt: RttEstimator::default(),
            reported_at: None,
            ever_reported: false,
            pacer: Pacer::default(),
        }
    }

    /// The client's play cursor, as reported.
    pub fn played(&self) -> u64 {
        self.played
    }

    /// Stream samples the client reported received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// When the client last reported (or, before any report, when audio first went out).
    pub fn reported_at(&self) -> Option<Millis> {
        self.reported_at
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
    /// (on this stream, or on any stream of its session: `reports`) must say so (a report can
    /// be lost with a dying link, an estimate would end the message before the client had it);
    /// one that never reported is taken to have what the clock says it played.
    pub fn delivered(&self, end: u64, reports: bool, now: Millis, rate: u32, sent: u64) -> bool {
        let received = if self.ever_reported || reports {
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

    /// Takes in a `played` report at `now` (`on_receipt`: it answers a frame just received);
    /// reports that go backwards are ignored.
    pub fn on_ack(&mut self, played: u64, received: u64, on_receipt: bool, now: Millis) {
        self.played = self.played.max(played);
        self.received = self.received.max(received).max(self.played);
        if let Some(send) = self.sends.acked(self.received) {
            self.rtt
                .on_ack(now.saturating_sub(send.at), &send, on_receipt);
        }
        let ahead = self.received - self.played;
        let behind = self.sends.next_is_link_bound();
        self.pacer
            .on_report(self.received, ahead, now, on_receipt, behind);
        self.reported_at = Some(now);
        self.ever_reported = true;
    }

    /// Notes that audio up to stream sample `end` went out at `now`, at `rate`; `held`: audio
    /// was left unsent.
    pub fn on_sent(&mut self, end: u64, held: bool, rate: u32, now: Millis) {
        self.reported_at.get_or_insert(now);
        let pace = self.pace(rate, now);
        let paced = matches!(pace, Pace::Paced { .. });
        self.pacer.on_sent(paced);
        self.sends.push(Send {
            end,
            at: now,
            quiet: end.saturating_sub(self.received) <= samples(QUIET_MS, rate),
            link_bound: held && pace != Pace::Draining,
            paced,
        });
    }

    /// Starts over from `played` (a resume): everything after it is sent again.
    pub fn rewind(&mut self, played: u64) {
        self.played = played;
        self.received = played;
        self.sends = Sends::default();
        self.reported_at = None;
        self.pacer = Pacer::default();
    }

    /// How much the link may have in flight at `now`, at `rate`.
    pub fn pace(&self, rate: u32, now: Millis) -> Pace {
        self.pacer.pace(rate, now, &self.rtt)
    }

    /// The largest frame for a paced link (what may be in flight, in [`FRAMES_IN_FLIGHT`]
    /// frames), in samples.
    pub fn paced_frame(&self, rate: u32, now: Millis) -> Option<u64> {
        match self.pace(rate, now) {
            Pace::Paced { in_flight, frame } => Some((in_flight / FRAMES_IN_FLIGHT).max(frame)),
            Pace::Measuring => Some(samples(MEASURING_MS, rate) / FRAMES_IN_FLIGHT),
            Pace::Unpaced | Pace::Draining => None,
        }
    }

    /// The audio allowed in flight at `rate`, in milliseconds.
    pub fn in_flight_ms(&self, rate: u32) -> Millis {
        let rtt = self.rtt.min().unwrap_or(0);
        let next_report = orpheus_protocol::report_interval_ms(self.received - self.played, rate);
        MIN_IN_FLIGHT_MS.max((rtt + next_report) * 3 / 2)
    }

    /// The stream samples the window and the link allow out at `now`, `sent` having gone out.
    fn limits(&self, sent: u64, rate: u32, now: Millis) -> (u64, u64) {
        let by_window = self.cursor(now, rate, sent) + samples(self.window_ms, rate);
        let in_flight = match self.pace(rate, now) {
            Pace::Unpaced => samples(self.in_flight_ms(rate), rate),
            Pace::Measuring => samples(MEASURING_MS, rate),
            Pace::Draining => samples(QUIET_MS, rate),
            Pace::Paced { in_flight, .. } => in_flight,
        };
        (by_window, self.received_by(now, rate, sent) + in_flight)
    }

    /// How many more samples may go out at `now`, `sent` having gone out, at `rate`.
    /// A paced link gets whole frames ([`FlowControl::paced_frame`]) while audio is in flight.
    pub fn allowance(&self, sent: u64, rate: u32, now: Millis) -> u64 {
        let (by_window, by_flight) = self.limits(sent, rate, now);
        let allowed = by_window.min(by_flight).saturating_sub(sent);
        match self.paced_frame(rate, now) {
            Some(frame) if allowed < frame && sent > self.received_by(now, rate, sent) => 0,
            _ => allowed,
        }
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
        flow.on_sent(96_000, false, RATE, 1_000);
        flow.on_ack(0, 96_000, false, 1_010);
        assert_eq!(flow.allowance(0, RATE, 1_010), samples(2000, RATE));
        assert_eq!(
            flow.allowance(48_000, RATE, 1_010),
            samples(2000, RATE) - 48_000
        );
        flow.on_ack(24_000, 96_000, false, 2_000);
        assert_eq!(flow.allowance(48_000, RATE, 2_000), 72_000 - 48_000);
    }

    #[test]
    fn a_client_with_plenty_ahead_may_have_a_report_interval_more_in_flight() {
        use orpheus_protocol::{REPORT_INTERVAL_MS, SPARSE_REPORT_INTERVAL_MS};
        let mut flow = FlowControl::new(2000);
        flow.on_sent(4_800, false, RATE, 0);
        flow.on_ack(0, 4_800, false, 100);
        assert_eq!(flow.in_flight_ms(RATE), (100 + REPORT_INTERVAL_MS) * 3 / 2);
        // 1.3 s ahead: its next report is further off.
        flow.on_sent(36_000, false, RATE, 200);
        flow.on_ack(4_800, 36_000, false, 300);
        let sparse = (100 + SPARSE_REPORT_INTERVAL_MS) * 3 / 2;
        assert_eq!(flow.in_flight_ms(RATE), sparse);
    }

    #[test]
    fn in_flight_follows_the_smallest_round_trip() {
        let mut flow = FlowControl::new(2000);
        flow.on_sent(4_800, false, RATE, 0);
        flow.on_ack(0, 4_800, false, 400);
        flow.on_sent(9_600, false, RATE, 1_000);
        flow.on_ack(0, 9_600, false, 1_100);
        let every = orpheus_protocol::REPORT_INTERVAL_MS;
        assert_eq!(flow.in_flight_ms(RATE), (100 + every) * 3 / 2);
        // A queue building up later does not inflate it.
        flow.on_sent(14_400, false, RATE, 2_000);
        flow.on_ack(0, 14_400, false, 3_000);
        assert_eq!(flow.in_flight_ms(RATE), (100 + every) * 3 / 2);
    }

    #[test]
    fn reports_never_go_backwards_and_a_rewind_starts_over() {
        let mut flow = FlowControl::new(2000);
        flow.on_ack(10_000, 20_000, false, 0);
        flow.on_ack(5_000, 8_000, false, 1);
        assert_eq!(flow.played(), 10_000);
        flow.rewind(9_000);
        assert_eq!(flow.played(), 9_000);
        assert_eq!(
            flow.allowance(9_000, RATE, 0),
            samples(MIN_IN_FLIGHT_MS.max(375), RATE)
        );
    }

    #[test]
    fn packet_trains_time_a_link_and_one_alone_does_not() {
        let mut flow = FlowControl::new(2000);
        // Half a second goes out at once; the client reports each 100 ms that arrives, every
        // 200 ms: a link at half real time.
        flow.on_sent(12_000, true, RATE, 0);
        flow.on_ack(0, 2_400, true, 250);
        assert_eq!(flow.pace(RATE, 250), Pace::Measuring);
        assert_eq!(
            flow.paced_frame(RATE, 250),
            Some(samples(MEASURING_MS, RATE) / 4)
        );
        flow.on_ack(2_400, 4_800, true, 450);
        assert_eq!(flow.pacer.rate(450), None, "one train may be a stall");
        flow.on_ack(4_800, 7_200, true, 650);
        assert_eq!(flow.pacer.rate(650), Some(12_000));
        // No quiet send timed the round trip yet: what is queued drains first.
        assert_eq!(flow.pace(RATE, 650), Pace::Draining);
        // A report that is not on receipt times nothing, and ends the train.
        flow.on_ack(7_200, 9_600, false, 850);
        flow.on_ack(9_600, 12_000, true, 1_050);
        assert_eq!(flow.pacer.rate_samples(), 2);
    }

    #[test]
    fn audio_sent_after_an_arrival_does_not_time_the_link() {
        let mut flow = FlowControl::new(2000);
        // Each frame goes out only once the last arrived: the gaps are the relay's own.
        for i in 0..5u64 {
            flow.on_sent(2_400 * (i + 1), true, RATE, 300 * i);
            flow.on_ack(2_400 * i, 2_400 * (i + 1), true, 300 * i + 200);
        }
        assert_eq!(flow.pacer.rate(1_500), None);
    }

    #[test]
    fn a_silent_client_is_paced_by_the_clock() {
        let mut flow = FlowControl::new(2000);
        flow.on_sent(9_000, false, RATE, 10_000);
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
        flow.on_ack(6_000, 9_000, false, 11_050);
        assert_eq!(flow.cursor(11_500, RATE, 96_000), 6_000);
    }

    #[test]
    fn delivery_is_reported_once_the_client_reports_at_all() {
        let mut silent = FlowControl::new(2000);
        silent.on_sent(24_000, false, RATE, 0);
        assert!(!silent.delivered(24_000, false, 500, RATE, 24_000));
        assert!(
            silent.delivered(24_000, false, 2_000, RATE, 24_000),
            "by the clock"
        );
        assert!(
            !silent.delivered(24_000, true, 60_000, RATE, 24_000),
            "never by the clock for a client that reports on other streams"
        );
        let mut reporting = FlowControl::new(2000);
        reporting.on_sent(24_000, false, RATE, 0);
        reporting.on_ack(1_000, 2_000, false, 100);
        assert!(
            !reporting.delivered(24_000, false, 60_000, RATE, 24_000),
            "never by the clock once it reported"
        );
        reporting.on_ack(2_000, 24_000, false, 60_000);
        assert!(reporting.delivered(24_000, false, 60_000, RATE, 24_000));
    }

    #[test]
    fn longer_segments_need_more_lead() {
        assert!(lead_needed_ms(200) > lead_needed_ms(50));
        assert_eq!(lead_needed_ms(0), LEAD_MARGIN_MS);
        assert_eq!(millis(samples(1234, RATE), RATE), 1234);
    }
}
