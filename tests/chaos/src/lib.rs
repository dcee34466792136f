//! `orpheus-chaos`: a seeded TCP chaos proxy for the reliability suite.
//!
//! It sits on either leg of the relay (browser to relay, relay to upstream) on 127.0.0.1 and
//! makes the network misbehave the way real ones do: latency with jitter, bandwidth below and
//! above real time for 24 kHz PCM, connections reset mid-stream, writes sliced into 1 to 7 byte
//! pieces, half-open connections (data and close both vanish) and slow closes.
//!
//! Each connection's fate is drawn when it is accepted, from the run's seed and the connection's
//! number ([`Faults::plan`]), so a failing run can be replayed with its seed (timing still varies
//! from run to run, so replay is faithful in what goes wrong, not always in when).

mod faults;
mod proxy;

pub use faults::{
    connection_rng, Faults, Plan, Strike, Trigger, HALF_OPEN_HOLD, REAL_TIME_BYTES_PER_S,
};
pub use proxy::{ChaosStats, Proxy};

/// The seed `ORPHEUS_CHAOS_SEED` names (decimal or 0x-hex), if set.
pub fn seed_from_env() -> Option<u64> {
    std::env::var("ORPHEUS_CHAOS_SEED")
        .ok()
        .and_then(|s| parse_seed(&s))
}

/// A fresh seed from the clock, for runs that explore.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Parses a seed written in decimal or as `0x` hex.
pub fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_parse_in_decimal_and_hex() {
        assert_eq!(super::parse_seed("42"), Some(42));
        assert_eq!(super::parse_seed("0x2a"), Some(42));
        assert_eq!(super::parse_seed("x"), None);
    }
}
