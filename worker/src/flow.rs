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
//! - **Pacing.** A client near the end of its audio reports every frame it receives (`on_receipt`).
//!   From those reports the relay learns the link's delivery rate (a packet train: from one
//!   reported arrival to one at least [`MIN_TRAIN_MS`] later, when the audio between had already
//!   gone out and waited behind; the second most over the last [`RATE_WINDOW_MS`], so that one
//!   sample hurried by a stall does not unpace a slow link) and its own round trip (from a send
//!   that found the link nearly empty). Until it has a rate, such a client gets at most
//!   [`MEASURING_MS`] in flight. A link slower than real time then gets in flight only what it
//!   delivers in a round trip plus [`QUEUE_MS`] (plus its own jitter) and a quarter more: the `end`
//!   answering a stop waits behind a few tens of milliseconds of audio, not seconds. A link whose
//!   jitter bunches its arrivals looks fast and keeps the window: pacing does not starve a
//!   listener. A paced link must measure a good eighth faster than real time to be unpaced.
//!   See [`Pace`].
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

/// The queue a paced link may hold beyond its own round trip, in milliseconds of link time.
const QUEUE_MS: u64 = 10;

/// What a paced link may have in flight beyond what it delivers in its round trip, in
/// quarters: a quarter more, so that the link is not left idle while a report is on its way
/// and each frame waits behind the last (a packet train that times the link).
const HEADROOM_QUARTERS: u64 = 5;

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

/// How long a delivery-rate sample counts.
const RATE_WINDOW_MS: u64 = 2000;

/// The smallest frame sent to a paced link, in milliseconds of the link's time (a frame of
/// audio time would take ever longer to pass on an ever slower link).
const MIN_PACED_FRAME_MS: u64 = 10;

/// The shortest packet train that times the link: the clock counts whole milliseconds, and a
/// link that delivers in bursts (a token bucket, a radio) would look faster over less.
const MIN_TRAIN_MS: u64 = 100;

/// How much faster than real time a paced link must measure to be unpaced, in eighths.
const UNPACE_ABOVE_EIGHTHS: u64 = 9;

/// Sends remembered for the pacer.
const MAX_MARKS: usize = 64;

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
    pacer: Pacer,
}

/// How much a link may have in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// By the round trip and the ack interval ([`FlowControl::in_flight_ms`]): a client that
    /// reports periodically (or has 500 ms or more ahead), or a link at least as fast as real
    /// time (one that was paced: [`UNPACE_ABOVE_EIGHTHS`] of it).
    Unpaced,
    /// [`MEASURING_MS`] in frames of a quarter of that, until two packet trains have timed the
    /// link: a client that reports on receipt is not sent more before its link is known.
    Measuring,
    /// [`QUIET_MS`], until a send that found the link empty has timed its round trip.
    Draining,
    /// What the link delivers in its own round trip (as a quiet send timed it, with the little
    /// time the link took to carry that) plus [`QUEUE_MS`] (plus its jitter beyond the pacer's
    /// own, on a jittery link), and a quarter more.
    Paced {
        /// Samples allowed in flight.
        in_flight: u64,
        /// The smallest frame: [`MIN_PACED_FRAME_MS`] of the link's time, in samples.
        frame: u64,
    },
}

/// One send, as the pacer remembers it.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// The stream sample after its last.
    end: u64,
    at: Millis,
    /// Whether it left at most [`QUIET_MS`] in flight: its round trip is the link's own (and
    /// a little time to carry it).
    quiet: bool,
    /// Whether audio was left unsent when it went out: it may wait behind the last.
    link_bound: bool,
    /// Whether it went out [`Pace::Paced`].
    paced: bool,
}

/// An arrival reported on receipt, from which the next arrivals are timed.
#[derive(Debug, Clone, Copy)]
struct Train {
    /// Stream samples received, and when the report came.
    received: u64,
    at: Millis,
    /// Whether audio after it had gone out, on a link that held audio back: it waited behind.
    behind: bool,
}

/// What the relay learns of a link from reports on receipt (BBR's model, simplified).
#[derive(Debug, Clone, Default)]
struct Pacer {
    marks: VecDeque<Mark>,
    /// Received as of the last report.
    delivered: u64,
    /// The packet train being timed.
    train: Option<Train>,
    /// Delivery-rate samples (when, samples per second), oldest first.
    rates: VecDeque<(Millis, u64)>,
    /// The smallest round trip of a quiet send.
    quiet_rtt: Option<Millis>,
    /// Smoothed round trip of paced sends and its mean deviation (RFC 6298).
    paced_rtt: Option<(Millis, Millis)>,
    /// Whether the client ever reported on receipt.
    reports_on_receipt: bool,
    /// Samples beyond the cursor in its last report.
    ahead: u64,
    /// Whether the last send went out [`Pace::Paced`].
    paced: bool,
}

impl Pacer {
    /// The link's delivery rate at `now`: the second most measured over the last
    /// [`RATE_WINDOW_MS`] (the most, with only one), or the last measured (a link drained or
    /// not held up measures nothing new); not before two were (one alone may be a stall, not
    /// the link).
    fn rate(&self, now: Millis) -> Option<u64> {
        if self.rates.len() < 2 {
            return None;
        }
        // The two most: one sample made fast by a stall is not the link.
        let (mut most, mut second) = (None, None);
        for &(_, rate) in self
            .rates
            .iter()
            .filter(|&&(at, _)| now < at + RATE_WINDOW_MS)
        {
            if most.is_none_or(|m| rate > m) {
                second = most;
                most = Some(rate);
            } else if second.is_none_or(|s| rate > s) {
                second = Some(rate);
            }
        }
        second
            .or(most)
            .or_else(|| self.rates.back().map(|&(_, rate)| rate))
    }

    fn add_rate(&mut self, rate: u64, now: Millis) {
        self.rates.push_back((now, rate));
        while self.rates.len() > 2
            && self
                .rates
                .front()
                .is_some_and(|&(at, _)| at + RATE_WINDOW_MS <= now)
        {
            self.rates.pop_front();
        }
    }

    fn pace(&self, rate: u32, now: Millis) -> Pace {
        if !self.prompt(rate) {
            return Pace::Unpaced;
        }
        // Only a link slower than real time needs pacing: a faster one soon has half a second
        // ahead and reports periodically again. A paced link is unpaced only once clearly
        // faster: reports that a stall bunched hurry a rate, and an unpaced link may have half
        // a second in flight, which an `end` would wait behind.
        let faster_from = if self.paced {
            u64::from(rate) * UNPACE_ABOVE_EIGHTHS / 8
        } else {
            u64::from(rate)
        };
        let delivery = match self.rate(now) {
            None => return Pace::Measuring,
            Some(delivery) if delivery < faster_from => delivery,
            Some(_) => return Pace::Unpaced,
        };
        match self.quiet_rtt {
            None => Pace::Draining,
            Some(rtt) => Pace::Paced {
                in_flight: delivery * HEADROOM_QUARTERS * (rtt + QUEUE_MS + self.jitter(rtt))
                    / 4000,
                frame: (delivery * MIN_PACED_FRAME_MS / 1000).max(1),
            },
        }
    }

    /// The link's jitter, for a link of round trip `rtt`: the mean deviation of its paced round
    /// trips beyond what the pacer causes itself. The cap goes out in [`FRAMES_IN_FLIGHT`]
    /// frames ([`FlowControl::paced_frame`]), each waiting behind the one before it, so a
    /// frame's carrying time is in each paced round trip's deviation on a steady link too;
    /// counting it would grow the cap, the frames and so the deviation again, and the `end`
    /// answering a stop would wait behind all of it. A jittery link still gets the rest on top,
    /// or what it delivers in its smallest round trip would leave it idle much of the time.
    fn jitter(&self, rtt: Millis) -> Millis {
        let frame_ms = HEADROOM_QUARTERS * (rtt + QUEUE_MS) / 4 / FRAMES_IN_FLIGHT;
        self.paced_rtt
            .map_or(0, |(_, deviation)| deviation.saturating_sub(frame_ms))
    }

    fn on_sent(&mut self, mark: Mark) {
        self.paced = mark.paced;
        let full = self.marks.len() >= MAX_MARKS;
        match self.marks.back_mut() {
            // Sends of one turn are one send to the link; past the most remembered, the
            // newest stands for the rest (the oldest are the next to be timed).
            Some(last) if last.at == mark.at || full => {
                last.end = mark.end;
                last.quiet &= mark.quiet;
                last.link_bound |= mark.link_bound;
                last.paced &= mark.paced;
            }
            _ => self.marks.push_back(mark),
        }
    }

    /// Whether the client reports every frame it receives: it does so, and its last report had
    /// less than [`orpheus_protocol::PROMPT_BELOW_MS`] beyond the cursor (between frames it
    /// still reports periodically, without `on_receipt`).
    fn prompt(&self, rate: u32) -> bool {
        self.reports_on_receipt && self.ahead < samples(orpheus_protocol::PROMPT_BELOW_MS, rate)
    }

    /// Takes in a report of `received`, `ahead` of the cursor, at `now`; only one on receipt
    /// times the link.
    fn on_report(&mut self, received: u64, ahead: u64, now: Millis, on_receipt: bool) {
        self.reports_on_receipt |= on_receipt;
        self.ahead = ahead;
        let mut newest = None;
        while self.marks.front().is_some_and(|m| m.end <= received) {
            newest = self.marks.pop_front();
        }
        if let (Some(mark), true) = (newest, on_receipt) {
            let rtt = now.saturating_sub(mark.at);
            if mark.quiet {
                self.quiet_rtt = Some(self.quiet_rtt.map_or(rtt, |q| q.min(rtt)));
            }
            if mark.paced {
                self.paced_rtt = Some(match self.paced_rtt {
                    // (RFC 6298 starts the deviation at half the round trip; here it is
                    // learned, so that a steady link is paced tightly from the start.)
                    None => (rtt, 0),
                    Some((srtt, deviation)) => (
                        (7 * srtt + rtt) / 8,
                        (3 * deviation + srtt.abs_diff(rtt)) / 4,
                    ),
                });
            }
        }
        // A packet train: audio that had gone out when an arrival was reported, on a link that
        // held audio back, waited behind it, so the time from that arrival to a later one is
        // the time the link took to carry what came between. (A link that is not the
        // bottleneck shows arrivals closer together than its speed, bunched by its jitter: a
        // rate measured so is seldom too low, often too high, and only a link slower than real
        // time is paced. Timing a whole round trip instead would measure what the relay let
        // through: on a jittery link too little, and less at every turn.)
        if received <= self.delivered {
            return;
        }
        self.delivered = received;
        match self.train {
            Some(train) if on_receipt && now < train.at + MIN_TRAIN_MS => {}
            Some(train) if on_receipt && train.behind => {
                self.add_rate((received - train.received) * 1000 / (now - train.at), now);
                self.start_train(received, now);
            }
            _ if on_receipt => self.start_train(received, now),
            // Only a report on receipt times an arrival.
            _ => self.train = None,
        }
    }

    /// Starts a packet train at an arrival of `received` reported at `now`.
    fn start_train(&mut self, received: u64, now: Millis) {
        self.train = Some(Train {
            received,
            at: now,
            behind: self.marks.front().is_some_and(|m| m.link_bound),
        });
    }
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
        let ahead = self.received - self.played;
        self.pacer.on_report(self.received, ahead, now, on_receipt);
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

    /// Notes that audio up to stream sample `end` went out at `now`, at `rate`; `held`: audio
    /// was left unsent.
    pub fn on_sent(&mut self, end: u64, held: bool, rate: u32, now: Millis) {
        self.reported_at.get_or_insert(now);
        let pace = self.pace(rate, now);
        self.pacer.on_sent(Mark {
            end,
            at: now,
            quiet: end.saturating_sub(self.received) <= samples(QUIET_MS, rate),
            link_bound: held && pace != Pace::Draining,
            paced: matches!(pace, Pace::Paced { .. }),
        });
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
        self.pacer = Pacer::default();
    }

    /// How much the link may have in flight at `now`, at `rate`.
    pub fn pace(&self, rate: u32, now: Millis) -> Pace {
        self.pacer.pace(rate, now)
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

    /// The audio allowed in flight, in milliseconds.
    pub fn in_flight_ms(&self) -> Millis {
        let rtt = self.min_rtt.unwrap_or(0);
        MIN_IN_FLIGHT_MS.max((rtt + ACK_INTERVAL_MS) * 3 / 2)
    }

    /// The stream samples the window and the link allow out at `now`, `sent` having gone out.
    fn limits(&self, sent: u64, rate: u32, now: Millis) -> (u64, u64) {
        let by_window = self.cursor(now, rate, sent) + samples(self.window_ms, rate);
        let in_flight = match self.pace(rate, now) {
            Pace::Unpaced => samples(self.in_flight_ms(), rate),
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
    fn in_flight_follows_the_smallest_round_trip() {
        let mut flow = FlowControl::new(2000);
        flow.on_sent(4_800, false, RATE, 0);
        flow.on_ack(0, 4_800, false, 400);
        flow.on_sent(9_600, false, RATE, 1_000);
        flow.on_ack(0, 9_600, false, 1_100);
        assert_eq!(flow.in_flight_ms(), (100 + ACK_INTERVAL_MS) * 3 / 2);
        // A queue building up later does not inflate it.
        flow.on_sent(14_400, false, RATE, 2_000);
        flow.on_ack(0, 14_400, false, 3_000);
        assert_eq!(flow.in_flight_ms(), (100 + ACK_INTERVAL_MS) * 3 / 2);
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
        assert_eq!(flow.pacer.rates.len(), 2);
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

    /// A link from the relay to a client, simulated by the millisecond: a bandwidth, a delay
    /// each way (plus, optionally, jitter each way that keeps frames and reports in order, as
    /// the chaos proxy's does), and a client that plays in real time and reports as the player
    /// does (on receipt while under [`orpheus_protocol::PROMPT_BELOW_MS`] ahead, else every
    /// 250 ms; or only every 250 ms). The relay always has audio to send.
    struct Link {
        flow: FlowControl,
        bytes_per_ms: f64,
        delay: Millis,
        jitter: u64,
        /// How far ahead of its rate the link may deliver after a pause (the chaos proxy's
        /// throttle, like a token bucket, lets 20 ms through at once).
        burst_ms: f64,
        on_receipt: bool,
        /// When the measuring starts.
        warm: Millis,
    }

    /// What a run of a [`Link`] showed after its first three seconds.
    #[derive(Debug)]
    struct Run {
        /// The most link time queued ahead of a new frame: what an `end` would wait behind.
        most_queued_ms: f64,
        /// Audio received per second of link capacity, as a share.
        utilisation: f64,
        /// Samples received in all.
        received: u64,
    }

    impl Link {
        fn new(speed: f64, delay: Millis) -> Self {
            Self {
                flow: FlowControl::new(2000),
                bytes_per_ms: speed * 48.0,
                delay,
                jitter: 0,
                burst_ms: 0.0,
                on_receipt: true,
                warm: 3000,
            }
        }

        fn run(mut self, duration: Millis) -> Run {
            let mut rng = orpheus_test_support::rng(7);
            let (mut sent, mut received, mut played) = (0u64, 0u64, 0f64);
            let (mut link_free_at, mut train, mut last_report) = (0f64, 0f64, 0);
            let mut arrivals: VecDeque<(f64, u64)> = VecDeque::new();
            let mut reports: VecDeque<(Millis, u64, u64, bool)> = VecDeque::new();
            let (mut reported_at, mut most_queued_ms) = (0, 0f64);
            let warm = self.warm;
            let mut received_at_warm = 0;
            for now in 0..duration {
                while reports.front().is_some_and(|r| r.0 <= now) {
                    let (_, p, r, prompt) = reports.pop_front().unwrap();
                    self.flow.on_ack(p, r, prompt, now);
                }
                let mut report = None;
                while arrivals.front().is_some_and(|a| a.0 <= now as f64) {
                    received = arrivals.pop_front().unwrap().1;
                    let ahead = received - played as u64;
                    if self.on_receipt && ahead < samples(orpheus_protocol::PROMPT_BELOW_MS, RATE) {
                        report = Some(true);
                    }
                }
                if received > 0 {
                    played = (played + f64::from(RATE) / 1000.0).min(received as f64);
                    if report.is_none() && now >= reported_at + ACK_INTERVAL_MS {
                        report = Some(false);
                    }
                }
                if let Some(prompt) = report {
                    let jitter = if self.jitter > 0 {
                        rng.u64(0..self.jitter)
                    } else {
                        0
                    };
                    last_report = last_report.max(now + self.delay + jitter);
                    reports.push_back((last_report, played as u64, received, prompt));
                    reported_at = now;
                }
                if now == warm {
                    received_at_warm = received;
                }
                let allowed = self.flow.allowance(sent, RATE, now);
                let max_piece = self.flow.paced_frame(RATE, now).unwrap_or(8192);
                let until = sent + allowed;
                while sent < until {
                    let piece = max_piece.min(until - sent);
                    let start = link_free_at.max(now as f64);
                    if now > warm {
                        most_queued_ms = most_queued_ms.max(start - now as f64);
                    }
                    link_free_at = start + (piece * 2) as f64 / self.bytes_per_ms;
                    let jitter = if self.jitter > 0 {
                        rng.u64(0..self.jitter)
                    } else {
                        0
                    };
                    let out = (link_free_at - self.burst_ms).max(now as f64);
                    train = train.max(out + (self.delay + jitter) as f64);
                    sent += piece;
                    arrivals.push_back((train, sent));
                }
                if allowed > 0 {
                    self.flow.on_sent(sent, true, RATE, now);
                }
            }
            let capacity = self.bytes_per_ms * (duration - warm) as f64 / 2.0;
            Run {
                most_queued_ms,
                utilisation: (received - received_at_warm) as f64 / capacity,
                received,
            }
        }
    }

    #[test]
    fn a_slow_link_is_paced_and_kept_busy() {
        let run = Link::new(0.75, 25).run(20_000);
        assert!(run.most_queued_ms <= 50.0, "{run:?}");
        assert!(run.utilisation >= 0.9, "{run:?}");
        // Its first 375 ms of audio take 1.5 s to pass, and what went out while it was timed
        // some seconds more; then it is paced. A stop is still answered within a round trip
        // and 50 ms, and a link this slow keeps a little less busy for it.
        let mut link = Link::new(0.25, 25);
        link.warm = 10_000;
        let run = link.run(30_000);
        assert!(run.most_queued_ms <= 50.0, "{run:?}");
        assert!(run.utilisation >= 0.85, "{run:?}");
    }

    #[test]
    fn one_hurried_sample_does_not_unpace_a_slow_link() {
        let mut pacer = Pacer::default();
        for (at, rate) in [(0, 18_000), (300, 18_000), (600, 36_000), (900, 18_000)] {
            pacer.add_rate(rate, at);
        }
        assert_eq!(pacer.rate(1000), Some(18_000));
        // Two fast samples are the link's.
        pacer.add_rate(36_000, 1200);
        assert_eq!(pacer.rate(1300), Some(36_000));
    }

    #[test]
    fn a_paced_link_is_unpaced_only_once_clearly_faster() {
        let mut pacer = Pacer {
            reports_on_receipt: true,
            quiet_rtt: Some(50),
            paced: true,
            ..Pacer::default()
        };
        // Reports a stall bunched: two trains just faster than real time.
        pacer.add_rate(25_000, 0);
        pacer.add_rate(25_000, 100);
        assert!(matches!(pacer.pace(RATE, 200), Pace::Paced { .. }));
        pacer.paced = false;
        assert_eq!(
            pacer.pace(RATE, 200),
            Pace::Unpaced,
            "not paced: as fast as real time"
        );
        pacer.paced = true;
        pacer.add_rate(28_000, 300);
        pacer.add_rate(28_000, 400);
        assert_eq!(pacer.pace(RATE, 500), Pace::Unpaced);
    }

    #[test]
    fn the_pacer_does_not_count_its_own_frames_as_jitter() {
        // A 50 ms link, a quarter more: 75 ms of the link's time in flight, frames of ~18 ms.
        let mut pacer = Pacer {
            reports_on_receipt: true,
            quiet_rtt: Some(50),
            paced: true,
            paced_rtt: Some((70, 18)),
            ..Pacer::default()
        };
        pacer.add_rate(18_000, 0);
        pacer.add_rate(18_000, 100);
        let steady = Pace::Paced {
            in_flight: 18_000 * 75 / 1000,
            frame: 180,
        };
        assert_eq!(pacer.pace(RATE, 200), steady);
        // A jittery link's deviation beyond a frame's carrying time is on top.
        pacer.paced_rtt = Some((70, 58));
        let jittery = Pace::Paced {
            in_flight: 18_000 * 5 * (60 + 40) / 4000,
            frame: 180,
        };
        assert_eq!(pacer.pace(RATE, 200), jittery);
    }

    #[test]
    fn a_bursty_slow_link_is_paced() {
        let mut link = Link::new(0.75, 25);
        link.burst_ms = 20.0;
        let run = link.run(20_000);
        assert!(run.most_queued_ms <= 50.0, "{run:?}");
        assert!(run.utilisation >= 0.9, "{run:?}");
    }

    #[test]
    fn a_fast_link_keeps_the_listener_ahead() {
        let run = Link::new(4.0, 25).run(20_000);
        // Playing in real time from its first frame, it never ran dry.
        assert!(run.received >= samples(20_000, RATE), "{run:?}");
    }

    /// A link with `jitter` each way, run twice: with a client that reports on receipt, and
    /// with one that only reports periodically (never paced).
    fn jittery(speed: f64, jitter: u64) -> (Run, Run) {
        let mut paced = Link::new(speed, 50);
        paced.jitter = jitter;
        let mut unpaced = Link::new(speed, 50);
        unpaced.jitter = jitter;
        unpaced.on_receipt = false;
        (paced.run(20_000), unpaced.run(20_000))
    }

    #[test]
    fn a_jittery_slow_link_is_not_starved() {
        // Its jitter hides its speed (arrivals bunch): it keeps what the window allows.
        let (paced, unpaced) = jittery(0.75, 300);
        assert!(paced.utilisation >= 0.95, "{paced:?}");
        assert!(
            paced.utilisation >= unpaced.utilisation * 0.95,
            "{paced:?} {unpaced:?}"
        );
    }

    #[test]
    fn a_fast_jittery_link_keeps_the_listener_ahead() {
        let (paced, unpaced) = jittery(4.0, 250);
        assert!(paced.received >= samples(19_000, RATE), "{paced:?}");
        // (Less only by what the first round trips hold back while the link is timed, and by
        // the few stretches where its jitter made only one sample look fast.)
        assert!(
            paced.received as f64 >= unpaced.received as f64 * 0.95,
            "{paced:?} {unpaced:?}"
        );
    }

    #[test]
    fn a_client_that_reports_periodically_is_not_paced() {
        let mut link = Link::new(0.75, 25);
        link.on_receipt = false;
        let mut paced = link.flow.clone();
        let run = link.run(20_000);
        assert!(run.utilisation >= 0.9, "{run:?}");
        paced.on_ack(0, 0, false, 0);
        assert_eq!(paced.pace(RATE, 0), Pace::Unpaced);
    }
}
