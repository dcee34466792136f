//! The pacer: what the relay learns of a link from reports on receipt (BBR's model,
//! simplified), and how much audio it then lets the link have in flight ([`Pace`]).
//!
//! A client near the end of its audio reports every frame it receives (`on_receipt`). From
//! those reports the pacer learns the link's delivery rate: a packet train, from one reported
//! arrival to one at least [`MIN_TRAIN_MS`] later, when the audio between had already gone out
//! and waited behind; the second most over the last [`RATE_WINDOW_MS`], so that one sample
//! hurried by a stall does not unpace a slow link. With the link's own round trip (from
//! [`RttEstimator`]), a link slower than real time then gets in flight only what it delivers in
//! that round trip plus [`QUEUE_MS`] (plus its jitter) and a quarter more. A link whose jitter
//! bunches its arrivals looks fast and is not paced: pacing does not starve a listener.

use std::collections::VecDeque;

use super::rtt::RttEstimator;
use super::{samples, FRAMES_IN_FLIGHT};
use crate::time::Millis;

/// The queue a paced link may hold beyond its own round trip, in milliseconds of link time.
const QUEUE_MS: u64 = 10;

/// What a paced link may have in flight beyond what it delivers in its round trip, in
/// quarters: a quarter more, so that the link is not left idle while a report is on its way
/// and each frame waits behind the last (a packet train that times the link).
const HEADROOM_QUARTERS: u64 = 5;

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

/// How much a link may have in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// By the round trip and the ack interval ([`super::FlowControl::in_flight_ms`]): a client
    /// that reports periodically (or has 500 ms or more ahead), or a link at least as fast as
    /// real time (one that was paced: [`UNPACE_ABOVE_EIGHTHS`] of it).
    Unpaced,
    /// [`super::MEASURING_MS`] in frames of a quarter of that, until two packet trains have timed the
    /// link: a client that reports on receipt is not sent more before its link is known.
    Measuring,
    /// [`super::QUIET_MS`], until a send that found the link empty has timed its round trip.
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

/// An arrival reported on receipt, from which the next arrivals are timed.
#[derive(Debug, Clone, Copy)]
struct Train {
    /// Stream samples received, and when the report came.
    received: u64,
    at: Millis,
    /// Whether audio after it had gone out, on a link that held audio back: it waited behind.
    behind: bool,
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    /// Received as of the last report.
    delivered: u64,
    /// The packet train being timed.
    train: Option<Train>,
    /// Delivery-rate samples (when, samples per second), oldest first.
    rates: VecDeque<(Millis, u64)>,
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
    pub(super) fn rate(&self, now: Millis) -> Option<u64> {
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

    /// How many delivery-rate samples it holds.
    #[cfg(test)]
    pub(super) fn rate_samples(&self) -> usize {
        self.rates.len()
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

    /// How much the link may have in flight at `now`, for a stream at `rate`, its round trips
    /// as `rtt` has them.
    pub fn pace(&self, rate: u32, now: Millis, rtt: &RttEstimator) -> Pace {
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
        match rtt.quiet_min() {
            None => Pace::Draining,
            Some(own) => Pace::Paced {
                in_flight: delivery
                    * HEADROOM_QUARTERS
                    * (own + QUEUE_MS + jitter(own, rtt.paced_deviation()))
                    / 4000,
                frame: (delivery * MIN_PACED_FRAME_MS / 1000).max(1),
            },
        }
    }

    /// Notes whether the send that went out was paced.
    pub fn on_sent(&mut self, paced: bool) {
        self.paced = paced;
    }

    /// Whether the client reports every frame it receives: it does so, and its last report had
    /// less than [`orpheus_protocol::PROMPT_BELOW_MS`] beyond the cursor (between frames it
    /// still reports periodically, without `on_receipt`).
    fn prompt(&self, rate: u32) -> bool {
        self.reports_on_receipt && self.ahead < samples(orpheus_protocol::PROMPT_BELOW_MS, rate)
    }

    /// Takes in a report of `received`, `ahead` of the cursor, at `now`; only one on receipt
    /// times the link. `behind`: the audio sent after this arrival went out on a link that held
    /// audio back.
    pub fn on_report(
        &mut self,
        received: u64,
        ahead: u64,
        now: Millis,
        on_receipt: bool,
        behind: bool,
    ) {
        self.reports_on_receipt |= on_receipt;
        self.ahead = ahead;
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
        let start = Train {
            received,
            at: now,
            behind,
        };
        match self.train {
            Some(train) if on_receipt && now < train.at + MIN_TRAIN_MS => {}
            Some(train) if on_receipt && train.behind => {
                self.add_rate((received - train.received) * 1000 / (now - train.at), now);
                self.train = Some(start);
            }
            _ if on_receipt => self.train = Some(start),
            // Only a report on receipt times an arrival.
            _ => self.train = None,
        }
    }
}

/// A link's jitter, for a link of round trip `own`, from the mean `deviation` of its paced round
/// trips: the part beyond what the pacer causes itself. The cap goes out in
/// [`FRAMES_IN_FLIGHT`] frames ([`super::FlowControl::paced_frame`]), each waiting behind the
/// one before it, so a frame's carrying time is in each paced round trip's deviation on a
/// steady link too; counting it would grow the cap, the frames and so the deviation again, and
/// the `end` answering a stop would wait behind all of it. A jittery link still gets the rest
/// on top, or what it delivers in its smallest round trip would leave it idle much of the time.
fn jitter(own: Millis, deviation: Millis) -> Millis {
    let frame_ms = HEADROOM_QUARTERS * (own + QUEUE_MS) / 4 / FRAMES_IN_FLIGHT;
    deviation.saturating_sub(frame_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 24_000;

    fn prompt_pacer(paced: bool) -> Pacer {
        Pacer {
            reports_on_receipt: true,
            paced,
            ..Pacer::default()
        }
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
        let mut pacer = prompt_pacer(true);
        let rtt = RttEstimator::with(50, None);
        // Reports a stall bunched: two trains just faster than real time.
        pacer.add_rate(25_000, 0);
        pacer.add_rate(25_000, 100);
        assert!(matches!(pacer.pace(RATE, 200, &rtt), Pace::Paced { .. }));
        pacer.paced = false;
        assert_eq!(
            pacer.pace(RATE, 200, &rtt),
            Pace::Unpaced,
            "not paced: as fast as real time"
        );
        pacer.paced = true;
        pacer.add_rate(28_000, 300);
        pacer.add_rate(28_000, 400);
        assert_eq!(pacer.pace(RATE, 500, &rtt), Pace::Unpaced);
    }

    #[test]
    fn the_pacer_does_not_count_its_own_frames_as_jitter() {
        // A 50 ms link, a quarter more: 75 ms of the link's time in flight, frames of ~18 ms.
        let mut pacer = prompt_pacer(true);
        pacer.add_rate(18_000, 0);
        pacer.add_rate(18_000, 100);
        let steady = Pace::Paced {
            in_flight: 18_000 * 75 / 1000,
            frame: 180,
        };
        let rtt = RttEstimator::with(50, Some((70, 18)));
        assert_eq!(pacer.pace(RATE, 200, &rtt), steady);
        // A jittery link's deviation beyond a frame's carrying time is on top.
        let jittery = Pace::Paced {
            in_flight: 18_000 * 5 * (60 + 40) / 4000,
            frame: 180,
        };
        let rtt = RttEstimator::with(50, Some((70, 58)));
        assert_eq!(pacer.pace(RATE, 200, &rtt), jittery);
    }

    #[test]
    fn a_link_not_yet_timed_is_measured_then_drained() {
        let mut pacer = prompt_pacer(false);
        let untimed = RttEstimator::default();
        assert_eq!(pacer.pace(RATE, 0, &untimed), Pace::Measuring);
        pacer.add_rate(12_000, 0);
        pacer.add_rate(12_000, 100);
        assert_eq!(
            pacer.pace(RATE, 200, &untimed),
            Pace::Draining,
            "timed, but no quiet send has timed its round trip yet"
        );
    }
}
