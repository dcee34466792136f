//! What can go wrong, and the seeded draw that decides what goes wrong on each connection.

use std::time::Duration;

/// Real-time PCM for the relay's audio: 24 kHz, 16-bit, mono.
pub const REAL_TIME_BYTES_PER_S: u64 = 48_000;

/// The faults a proxy injects. Shares are probabilities per connection, drawn when it is
/// accepted; a connection keeps its draw for life, so changing the faults affects new connections
/// only.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Every chunk is delayed by a time drawn from this range, in milliseconds; order is kept.
    pub latency_ms: Option<(u64, u64)>,
    /// Share of connections limited to a bandwidth drawn from [`Faults::bandwidth_bps`].
    pub throttle: f64,
    /// Bandwidth range in bytes per second, for throttled connections.
    pub bandwidth_bps: (u64, u64),
    /// Share of connections reset (TCP RST both ways) at a random point.
    pub reset: f64,
    /// Share of connections whose writes are sliced into 1 to 7 byte pieces.
    pub slice: f64,
    /// Share of connections that go half-open at a random point: from then on no data and no
    /// close passes either way, until the connecting side gives up (see [`HALF_OPEN_HOLD`]).
    pub half_open: f64,
    /// Share of connections whose close (FIN) is passed on late.
    pub slow_close: f64,
}

/// How long after the connecting side gave up a half-open connection's other side is closed:
/// the far end's own timeout, in a network that swallowed the close.
pub const HALF_OPEN_HOLD: Duration = Duration::from_secs(2);

impl Faults {
    /// No faults: a transparent proxy.
    pub fn none() -> Self {
        Self {
            latency_ms: None,
            throttle: 0.0,
            bandwidth_bps: (REAL_TIME_BYTES_PER_S, REAL_TIME_BYTES_PER_S),
            reset: 0.0,
            slice: 0.0,
            half_open: 0.0,
            slow_close: 0.0,
        }
    }

    /// Everything at once, at the strengths a bad mobile network shows: 50-500 ms latency, 10%
    /// resets, bandwidth from below to above real time for 24 kHz PCM, sliced writes, half-open
    /// connections and slow closes.
    pub fn hostile() -> Self {
        Self {
            latency_ms: Some((50, 500)),
            throttle: 0.3,
            bandwidth_bps: (REAL_TIME_BYTES_PER_S * 3 / 4, REAL_TIME_BYTES_PER_S * 2),
            reset: 0.1,
            slice: 0.2,
            half_open: 0.05,
            slow_close: 0.3,
        }
    }

    /// Draws the fate of one connection.
    pub fn plan(&self, rng: &mut fastrand::Rng) -> Plan {
        let mut chance = |share: f64| share > 0.0 && rng.f64() < share;
        let (throttled, reset, sliced, half_open, slow_close) = (
            chance(self.throttle),
            chance(self.reset),
            chance(self.slice),
            chance(self.half_open),
            chance(self.slow_close),
        );
        let (low, high) = self.bandwidth_bps;
        Plan {
            latency_ms: self.latency_ms,
            bandwidth_bps: throttled.then(|| rng.u64(low..=high.max(low))),
            reset: reset.then(|| Trigger::draw(rng)),
            // A connection is reset or goes half-open, not both.
            half_open: (half_open && !reset).then(|| Trigger::draw(rng)),
            sliced,
            close_delay: if slow_close {
                Duration::from_millis(rng.u64(200..=1500))
            } else {
                Duration::ZERO
            },
        }
    }
}

/// When a fault strikes: after this many bytes have passed (both ways together) or this much
/// time, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    /// Bytes forwarded before it strikes.
    pub after_bytes: u64,
    /// Time after accepting before it strikes.
    pub after: Duration,
}

impl Trigger {
    fn draw(rng: &mut fastrand::Rng) -> Self {
        Self {
            after_bytes: rng.u64(0..256 * 1024),
            after: Duration::from_millis(rng.u64(50..4000)),
        }
    }
}

/// The fate of one connection, drawn by [`Faults::plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Per-chunk latency range, in milliseconds.
    pub latency_ms: Option<(u64, u64)>,
    /// Bandwidth limit each way, bytes per second.
    pub bandwidth_bps: Option<u64>,
    /// When to reset the connection.
    pub reset: Option<Trigger>,
    /// When to go half-open.
    pub half_open: Option<Trigger>,
    /// Whether writes are sliced into 1 to 7 byte pieces.
    pub sliced: bool,
    /// How long a close waits before it is passed on.
    pub close_delay: Duration,
}

impl Plan {
    /// The fault that strikes this connection, if any.
    pub fn trigger(&self) -> Option<(Strike, Trigger)> {
        self.reset
            .map(|t| (Strike::Reset, t))
            .or(self.half_open.map(|t| (Strike::HalfOpen, t)))
    }
}

/// What happens when a connection's trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    /// Both sides get a TCP RST.
    Reset,
    /// Data stops both ways, and no close passes.
    HalfOpen,
}

/// The random source of connection number `index` of a run with `seed`: the same seed draws the
/// same faults for the same connections.
pub fn connection_rng(seed: u64, index: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_faults_draw_a_clean_plan() {
        let mut rng = connection_rng(1, 0);
        let plan = Faults::none().plan(&mut rng);
        assert_eq!(plan.latency_ms, None);
        assert_eq!(plan.bandwidth_bps, None);
        assert_eq!(plan.trigger(), None);
        assert!(!plan.sliced);
        assert_eq!(plan.close_delay, Duration::ZERO);
    }

    #[test]
    fn the_same_seed_draws_the_same_plans() {
        let draw = |seed| {
            (0..50)
                .map(|i| Faults::hostile().plan(&mut connection_rng(seed, i)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn shares_are_honoured_over_many_connections() {
        let n = 10_000;
        let plans: Vec<Plan> = (0..n)
            .map(|i| Faults::hostile().plan(&mut connection_rng(42, i)))
            .collect();
        let share =
            |f: &dyn Fn(&Plan) -> bool| plans.iter().filter(|p| f(p)).count() as f64 / n as f64;
        let resets = share(&|p| p.reset.is_some());
        assert!((0.08..0.12).contains(&resets), "resets {resets}");
        let throttled = share(&|p| p.bandwidth_bps.is_some());
        assert!((0.27..0.33).contains(&throttled), "throttled {throttled}");
        assert!(plans
            .iter()
            .all(|p| p.reset.is_none() || p.half_open.is_none()));
        let below_real_time =
            share(&|p| p.bandwidth_bps.is_some_and(|b| b < REAL_TIME_BYTES_PER_S));
        let above_real_time =
            share(&|p| p.bandwidth_bps.is_some_and(|b| b > REAL_TIME_BYTES_PER_S));
        assert!(below_real_time > 0.02 && above_real_time > 0.1);
    }
}
