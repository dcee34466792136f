//! Flow control on a link simulated by the millisecond: a bandwidth, a delay each way, jitter
//! and bursts as the chaos proxy makes them, and a client that plays and reports as the player
//! does. What a stop waits behind, and how busy the link is kept, on links fast and slow,
//! steady and jittery.

use std::collections::VecDeque;

use super::*;

const RATE: u32 = 24_000;

/// A link from the relay to a client, simulated by the millisecond: a bandwidth, a delay
/// each way (plus, optionally, jitter each way that keeps frames and reports in order, as
/// the chaos proxy's does), and a client that plays in real time and reports as the player
/// does (on receipt while under [`orpheus_protocol::PROMPT_BELOW_MS`] ahead, else as often as
/// [`orpheus_protocol::report_interval_ms`] says; or only that often). The relay always has
/// audio to send.
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
    /// Milliseconds the client had nothing to play, after the first three seconds.
    dry_ms: u64,
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
        let (mut reported_at, mut most_queued_ms, mut dry_ms) = (0, 0f64, 0);
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
                if now > warm && played + 1.0 > received as f64 {
                    dry_ms += 1;
                }
                played = (played + f64::from(RATE) / 1000.0).min(received as f64);
                let every = orpheus_protocol::report_interval_ms(received - played as u64, RATE);
                if report.is_none() && now >= reported_at + every {
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
            dry_ms,
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
    // Playing in real time from its first frame, it never ran dry, though it reports only
    // every 750 ms once it has a second ahead.
    assert!(run.received >= samples(20_000, RATE), "{run:?}");
    assert_eq!(run.dry_ms, 0, "{run:?}");
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
    assert_eq!(unpaced.dry_ms, 0, "{unpaced:?}");
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
