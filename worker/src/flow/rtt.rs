//! One round-trip estimator for a link, fed by the reports that say a send arrived (quinn's
//! `RttEstimator` is the model): the smallest round trip of any send (which sizes an unpaced
//! link's audio in flight), the smallest of a quiet send (the link's own: it sizes a paced
//! link), and the smoothed round trip of paced sends with its mean deviation (the link's
//! jitter, RFC 6298).

use super::sends::Send;
use crate::time::Millis;

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RttEstimator {
    min: Option<Millis>,
    quiet_min: Option<Millis>,
    /// Smoothed round trip of paced sends, and its mean deviation.
    paced: Option<(Millis, Millis)>,
}

impl RttEstimator {
    /// Takes in `send`'s round trip, `rtt`, timed by a report (`on_receipt`: one that answered
    /// the frame's arrival at once; only such a report times the link's own round trip and its
    /// jitter, a periodic one may have waited up to an ack interval).
    pub fn on_ack(&mut self, rtt: Millis, send: &Send, on_receipt: bool) {
        self.min = Some(self.min.map_or(rtt, |m| m.min(rtt)));
        if !on_receipt {
            return;
        }
        if send.quiet {
            self.quiet_min = Some(self.quiet_min.map_or(rtt, |q| q.min(rtt)));
        }
        if send.paced {
            self.paced = Some(match self.paced {
                // (RFC 6298 starts the deviation at half the round trip; here it is learned,
                // so that a steady link is paced tightly from the start.)
                None => (rtt, 0),
                Some((smoothed, deviation)) => (
                    (7 * smoothed + rtt) / 8,
                    (3 * deviation + smoothed.abs_diff(rtt)) / 4,
                ),
            });
        }
    }

    /// The smallest round trip of any send.
    pub fn min(&self) -> Option<Millis> {
        self.min
    }

    /// The smallest round trip of a quiet send: the link's own.
    pub fn quiet_min(&self) -> Option<Millis> {
        self.quiet_min
    }

    /// The mean deviation of the paced round trips (0 before any).
    pub fn paced_deviation(&self) -> Millis {
        self.paced.map_or(0, |(_, deviation)| deviation)
    }

    #[cfg(test)]
    pub(super) fn with(quiet_min: Millis, paced: Option<(Millis, Millis)>) -> Self {
        Self {
            min: Some(quiet_min),
            quiet_min: Some(quiet_min),
            paced,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(quiet: bool, paced: bool) -> Send {
        Send {
            end: 0,
            at: 0,
            quiet,
            link_bound: false,
            paced,
        }
    }

    #[test]
    fn any_report_times_the_smallest_round_trip_and_only_one_on_receipt_the_links_own() {
        let mut rtt = RttEstimator::default();
        rtt.on_ack(80, &send(true, true), false);
        assert_eq!((rtt.min(), rtt.quiet_min()), (Some(80), None));
        rtt.on_ack(60, &send(false, false), true);
        assert_eq!((rtt.min(), rtt.quiet_min()), (Some(60), None));
        rtt.on_ack(70, &send(true, false), true);
        assert_eq!((rtt.min(), rtt.quiet_min()), (Some(60), Some(70)));
        assert_eq!(rtt.paced_deviation(), 0);
    }

    #[test]
    fn paced_round_trips_are_smoothed_and_their_deviation_learned() {
        let mut rtt = RttEstimator::default();
        rtt.on_ack(100, &send(false, true), true);
        assert_eq!(rtt.paced_deviation(), 0, "a steady start");
        rtt.on_ack(180, &send(false, true), true);
        assert_eq!(rtt.paced, Some((110, 20)));
    }
}
