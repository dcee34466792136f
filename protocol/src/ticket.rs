//! Connection tickets: short-lived, single-use proof that the app's backend let this browser in.
//!
//! A ticket is `<payload>.<signature>`: the payload is the base64url (no padding) JSON
//! `{"v":1,"sid":…,"origin":…,"exp":…,"jti":…}`, the signature is base64url HMAC-SHA256 of the
//! payload text with the secret shared by the app's backend and the relay (`SESSION_SECRET`).
//! The browser presents it as the WebSocket subprotocol `orpheus.ticket.<ticket>` next to
//! `orpheus.v1`. Both alphabets are HTTP token characters, as subprotocols require.

use crate::prelude::*;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Subprotocol prefix that carries a ticket.
pub const TICKET_PROTOCOL_PREFIX: &str = "orpheus.ticket.";

/// Longest lifetime a ticket may have: one expiring further ahead is refused.
pub const MAX_TICKET_TTL_S: u64 = 300;

/// Clock difference tolerated between the minting backend and the relay.
pub const CLOCK_SKEW_S: u64 = 10;

/// What a ticket grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// Format version (1).
    pub v: u32,
    /// The session id the ticket is valid for.
    pub sid: String,
    /// The page origin the ticket is valid for (the WebSocket's `Origin` header).
    pub origin: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Unique ticket id; the relay refuses a second use.
    pub jti: String,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    /// Not `<payload>.<signature>` of base64url JSON with the expected fields.
    Malformed,
    /// The signature does not match: wrong secret or tampered payload.
    BadSignature,
    /// The expiry has passed.
    Expired,
    /// The expiry is further ahead than [`MAX_TICKET_TTL_S`] allows.
    TooLongLived,
}

impl TicketError {
    /// A short reason for logs and HTTP refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed ticket",
            Self::BadSignature => "bad ticket signature",
            Self::Expired => "expired ticket",
            Self::TooLongLived => "ticket lifetime exceeds the maximum",
        }
    }
}

impl core::fmt::Display for TicketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for TicketError {}

fn signature(secret: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac
}

/// Mints a ticket. `claims.exp` should be at most a few minutes ahead.
pub fn mint(secret: &[u8], claims: &TicketClaims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let tag = signature(secret, &payload).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks a ticket's signature (in constant time) and lifetime at `now` (Unix seconds).
/// The caller still checks the session, the origin, and single use.
pub fn verify(secret: &[u8], ticket: &str, now: u64) -> Result<TicketClaims, TicketError> {
    let (payload, tag) = ticket.split_once('.').ok_or(TicketError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TicketError::Malformed)?;
    signature(secret, payload)
        .verify_slice(&tag)
        .map_err(|_| TicketError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TicketError::Malformed)?;
    let claims: TicketClaims = serde_json::from_slice(&json).map_err(|_| TicketError::Malformed)?;
    if claims.v != 1 || claims.jti.is_empty() {
        return Err(TicketError::Malformed);
    }
    if claims.exp + CLOCK_SKEW_S < now {
        return Err(TicketError::Expired);
    }
    if claims.exp > now + MAX_TICKET_TTL_S + CLOCK_SKEW_S {
        return Err(TicketError::TooLongLived);
    }
    Ok(claims)
}

/// Finds the ticket among the offered subprotocols (`Sec-WebSocket-Protocol`).
pub fn from_subprotocols(offered: &str) -> Option<&str> {
    offered
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix(TICKET_PROTOCOL_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";
    const NOW: u64 = 1_800_000_000;

    fn claims() -> TicketClaims {
        TicketClaims {
            v: 1,
            sid: "abc".into(),
            origin: "https://app.example".into(),
            exp: NOW + 60,
            jti: "id-1".into(),
        }
    }

    #[test]
    fn round_trip_and_token_alphabet() {
        let ticket = mint(SECRET, &claims());
        assert!(ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(verify(SECRET, &ticket, NOW), Ok(claims()));
        let offered = format!("orpheus.v1, {TICKET_PROTOCOL_PREFIX}{ticket}");
        assert_eq!(from_subprotocols(&offered), Some(ticket.as_str()));
        assert_eq!(from_subprotocols("orpheus.v1"), None);
    }

    #[test]
    fn refusals() {
        let ticket = mint(SECRET, &claims());
        assert_eq!(
            verify(b"other", &ticket, NOW),
            Err(TicketError::BadSignature)
        );
        let (payload, tag) = ticket.split_once('.').unwrap();
        let mut forged = claims();
        forged.sid = "victim".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            verify(SECRET, &format!("{forged_payload}.{tag}"), NOW),
            Err(TicketError::BadSignature)
        );
        assert_eq!(verify(SECRET, payload, NOW), Err(TicketError::Malformed));
        assert_eq!(verify(SECRET, "x.y!", NOW), Err(TicketError::Malformed));
        assert_eq!(
            verify(SECRET, &ticket, NOW + 60 + CLOCK_SKEW_S),
            Ok(claims())
        );
        assert_eq!(
            verify(SECRET, &ticket, NOW + 61 + CLOCK_SKEW_S),
            Err(TicketError::Expired)
        );
        let long = TicketClaims {
            exp: NOW + MAX_TICKET_TTL_S + CLOCK_SKEW_S + 1,
            ..claims()
        };
        assert_eq!(
            verify(SECRET, &mint(SECRET, &long), NOW),
            Err(TicketError::TooLongLived)
        );
    }
}
