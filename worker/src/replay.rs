//! Single use of tickets, decided by the session's Durable Object: the one place that sees every
//! connection to the session.
//!
//! The Worker admits a ticket until `exp + CLOCK_SKEW_S` by its own clock. The object refuses a
//! ticket that is past that by *its* clock, and forgets used ids only once they are past it by
//! the same clock: so whatever the two clocks say, a forgotten id can never be admitted again.

use std::collections::HashMap;

use orpheus_protocol::ticket::CLOCK_SKEW_S;
use serde::{Deserialize, Serialize};

/// Why the object refuses a ticket the Worker admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The ticket id was used before.
    AlreadyUsed,
    /// The ticket expired by the object's clock (the Worker's clock may lag).
    Expired,
}

impl ReplayError {
    /// The reason sent in the refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Self::AlreadyUsed => "ticket already used",
            Self::Expired => "expired ticket",
        }
    }

    /// A fixed word naming the refusal, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::AlreadyUsed => "ticket_already_used",
            Self::Expired => "ticket_expired",
        }
    }
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ReplayError {}

/// The ids of tickets used on this session, with their expiry (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UsedTickets(HashMap<String, u64>);

fn expired(exp: u64, now_s: u64) -> bool {
    exp + CLOCK_SKEW_S < now_s
}

impl UsedTickets {
    /// Records ticket `jti` expiring at `exp` as used at `now_s`, forgetting ids that expired.
    pub fn claim(&mut self, jti: &str, exp: u64, now_s: u64) -> Result<(), ReplayError> {
        self.0.retain(|_, &mut at| !expired(at, now_s));
        if expired(exp, now_s) {
            return Err(ReplayError::Expired);
        }
        if self.0.contains_key(jti) {
            return Err(ReplayError::AlreadyUsed);
        }
        self.0.insert(jti.to_owned(), exp);
        Ok(())
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXP: u64 = 1_800_000_000;

    #[test]
    fn a_ticket_is_used_once() {
        let mut used = UsedTickets::default();
        assert_eq!(used.claim("a", EXP, EXP - 60), Ok(()));
        assert_eq!(
            used.claim("a", EXP, EXP - 59),
            Err(ReplayError::AlreadyUsed)
        );
        assert_eq!(used.claim("b", EXP, EXP - 59), Ok(()));
    }

    #[test]
    fn an_id_is_forgotten_only_when_the_ticket_can_no_longer_pass() {
        let mut used = UsedTickets::default();
        used.claim("a", EXP, EXP).unwrap();
        // At the last second the Worker could still admit it, the id is still known.
        let last = EXP + CLOCK_SKEW_S;
        assert_eq!(used.claim("a", EXP, last), Err(ReplayError::AlreadyUsed));
        // A second later it is forgotten, and refused as expired by this same clock.
        assert_eq!(used.claim("a", EXP, last + 1), Err(ReplayError::Expired));
        assert!(used.is_empty(), "expired ids are pruned");
    }

    #[test]
    fn survives_storage_as_a_plain_map() {
        let mut used = UsedTickets::default();
        used.claim("a", EXP, EXP).unwrap();
        let json = serde_json::to_string(&used).unwrap();
        assert_eq!(json, format!(r#"{{"a":{EXP}}}"#));
        let mut back: UsedTickets = serde_json::from_str(&json).unwrap();
        assert_eq!(back.claim("a", EXP, EXP), Err(ReplayError::AlreadyUsed));
    }
}
