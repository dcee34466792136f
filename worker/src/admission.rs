//! Who may open a session socket: decided in the Worker, before any upgrade and before any
//! Durable Object is touched. Pure logic; the Worker feeds it the request's facts.
//!
//! Secure by default: without `SESSION_SECRET` every connection is refused, unless local
//! development mode is explicitly on. With a secret, every connection needs a valid ticket
//! (see [`orpheus_protocol::ticket`]) for this session and origin. The origin must be in
//! `ALLOWED_ORIGINS`; with no list configured only development mode admits any origin.
//! Single use of a ticket is checked afterwards by the session's Durable Object.

use orpheus_protocol::ticket::{self, TicketClaims, TicketError};

/// The relay's admission policy, read from its environment.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `SESSION_SECRET`, shared with the app's backend.
    pub secret: Option<Vec<u8>>,
    /// `ORPHEUS_DEV_MODE=1`: local development only.
    pub dev_mode: bool,
    /// `ALLOWED_ORIGINS`: exact origins, comma separated.
    pub allowed_origins: Vec<String>,
}

/// Why a connection was refused; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No secret and no development mode: the operator must configure the relay.
    NotConfigured,
    /// The `Origin` is missing or not allowed.
    OriginNotAllowed,
    /// No `orpheus.ticket.` subprotocol was offered.
    MissingTicket,
    /// The ticket is malformed, forged, expired or too long-lived.
    BadTicket(TicketError),
    /// The ticket is for another session.
    WrongSession,
    /// The ticket is for another origin.
    WrongOrigin,
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Self::NotConfigured => 503,
            Self::OriginNotAllowed => 403,
            _ => 401,
        }
    }

    /// The reason sent in the response body and logged (never the ticket itself).
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotConfigured => "relay not configured: SESSION_SECRET is not set",
            Self::OriginNotAllowed => "origin not allowed",
            Self::MissingTicket => "missing ticket",
            Self::BadTicket(e) => e.as_str(),
            Self::WrongSession => "ticket is for another session",
            Self::WrongOrigin => "ticket is for another origin",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status())
    }
}

impl std::error::Error for Refusal {}

impl Policy {
    /// Parses `ALLOWED_ORIGINS` (comma separated, exact matches, surrounding spaces ignored).
    pub fn parse_origins(list: &str) -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A line for the log when the Worker starts serving, saying how it admits connections.
    pub fn describe(&self) -> &'static str {
        match (&self.secret, self.dev_mode) {
            (None, false) => "SESSION_SECRET is not set: refusing every connection (set it, or ORPHEUS_DEV_MODE=1 for local development)",
            (None, true) => "LOCAL DEVELOPMENT MODE without SESSION_SECRET: connections need no ticket",
            (Some(_), true) => "LOCAL DEVELOPMENT MODE: tickets required; /_dev/ticket mints them",
            (Some(_), false) => "tickets required",
        }
    }

    /// Decides whether a session upgrade may proceed. On success returns the ticket's claims
    /// (none in development mode without a secret), whose single use the caller enforces.
    pub fn admit(
        &self,
        session: &str,
        origin: Option<&str>,
        offered_protocols: &str,
        now_s: u64,
    ) -> Result<Option<TicketClaims>, Refusal> {
        if self.secret.is_none() && !self.dev_mode {
            return Err(Refusal::NotConfigured);
        }
        let listed =
            origin.is_some_and(|o| self.allowed_origins.iter().any(|allowed| allowed == o));
        let any_origin = self.dev_mode && self.allowed_origins.is_empty();
        if !(listed || any_origin) {
            return Err(Refusal::OriginNotAllowed);
        }
        let Some(secret) = &self.secret else {
            return Ok(None);
        };
        let ticket = ticket::from_subprotocols(offered_protocols).ok_or(Refusal::MissingTicket)?;
        let claims = ticket::verify(secret, ticket, now_s).map_err(Refusal::BadTicket)?;
        if claims.sid != session {
            return Err(Refusal::WrongSession);
        }
        if claims.origin != origin.unwrap_or_default() {
            return Err(Refusal::WrongOrigin);
        }
        Ok(Some(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orpheus_protocol::ticket::{mint, TICKET_PROTOCOL_PREFIX};

    const NOW: u64 = 1_800_000_000;
    const ORIGIN: &str = "https://app.example";

    fn production() -> Policy {
        Policy {
            secret: Some(b"s3cret".to_vec()),
            dev_mode: false,
            allowed_origins: vec![ORIGIN.to_owned()],
        }
    }

    fn offered(sid: &str, origin: &str, exp: u64) -> String {
        let claims = TicketClaims {
            v: 1,
            sid: sid.into(),
            origin: origin.into(),
            exp,
            jti: "j".into(),
        };
        format!(
            "orpheus.v1, {TICKET_PROTOCOL_PREFIX}{}",
            mint(b"s3cret", &claims)
        )
    }

    #[test]
    fn production_needs_origin_and_a_matching_ticket() {
        let p = production();
        let good = offered("abc", ORIGIN, NOW + 60);
        assert_eq!(
            p.admit("abc", Some(ORIGIN), &good, NOW)
                .unwrap()
                .unwrap()
                .jti,
            "j"
        );
        assert_eq!(
            p.admit("abc", Some("https://evil.example"), &good, NOW),
            Err(Refusal::OriginNotAllowed)
        );
        assert_eq!(
            p.admit("abc", None, &good, NOW),
            Err(Refusal::OriginNotAllowed)
        );
        assert_eq!(
            p.admit("abc", Some(ORIGIN), "orpheus.v1", NOW),
            Err(Refusal::MissingTicket)
        );
        assert_eq!(
            p.admit("xyz", Some(ORIGIN), &good, NOW),
            Err(Refusal::WrongSession)
        );
        let other_origin = Policy {
            allowed_origins: vec![ORIGIN.into(), "https://b.example".into()],
            ..production()
        };
        assert_eq!(
            other_origin.admit("abc", Some("https://b.example"), &good, NOW),
            Err(Refusal::WrongOrigin)
        );
        assert_eq!(
            p.admit("abc", Some(ORIGIN), &offered("abc", ORIGIN, NOW - 100), NOW),
            Err(Refusal::BadTicket(TicketError::Expired))
        );
        assert!(matches!(
            p.admit("abc", Some(ORIGIN), "orpheus.v1, orpheus.ticket.zzz", NOW),
            Err(Refusal::BadTicket(_))
        ));
    }

    #[test]
    fn secure_by_default() {
        let bare = Policy::default();
        assert_eq!(
            bare.admit("abc", Some(ORIGIN), "orpheus.v1", NOW),
            Err(Refusal::NotConfigured)
        );
        assert_eq!(Refusal::NotConfigured.status(), 503);
        let dev = Policy {
            dev_mode: true,
            ..Policy::default()
        };
        assert_eq!(
            dev.admit("abc", None, "orpheus.v1", NOW),
            Ok(None),
            "dev mode without secret"
        );
        let dev_with_secret = Policy {
            dev_mode: true,
            allowed_origins: vec![],
            ..production()
        };
        assert_eq!(
            dev_with_secret.admit("abc", None, "orpheus.v1", NOW),
            Err(Refusal::MissingTicket)
        );
    }

    #[test]
    fn origin_list_parsing() {
        assert_eq!(
            Policy::parse_origins(" https://a.example , https://b.example,,"),
            vec!["https://a.example", "https://b.example"]
        );
    }
}
