//! The wire protocol between the Orpheus Relay worker and its clients, versions 1 and 2.
//!
//! This crate is the executable form of `docs/protocol.md`, and the one owner of its schema:
//! the constants, the error codes, the binary audio frame header, the voice catalogue and the
//! session-id rule; with the `serde` feature (the default), the JSON control messages as serde
//! types ([`messages`]) and connection tickets ([`ticket`]); and, without serde, the codec a
//! small client needs ([`codec`]: a reader of the relay's messages and a writer of its own),
//! which the player ships. The worker, the player and the tests all speak exactly the same
//! protocol.

// No `std`: the player's wasm then carries neither std's panic machinery nor its formatting.
#![no_std]

#[cfg_attr(any(feature = "serde", test), macro_use)]
extern crate alloc;
#[cfg(any(feature = "serde", test))]
extern crate std;

/// What `std`'s prelude would give, taken from `alloc`.
mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::string::String;
    pub use alloc::vec::Vec;
}

pub mod codec;
pub mod codes;
pub mod encoder_link;
mod encoding;
pub mod formats;
pub mod frame;
mod limits;
mod markup;
#[cfg(feature = "serde")]
pub mod messages;
#[cfg(feature = "serde")]
pub mod surrogates;
#[cfg(feature = "serde")]
pub mod ticket;
pub mod voices;

pub use codes::{EndReason, ErrorCode};
pub use encoding::AudioEncoding;
pub use formats::{ResponseFormat, NATIVE_RATE, SAMPLE_RATES};
pub use frame::{
    AudioFrame, FrameError, OpusFrame, FRAME_HEADER_LEN, FRAME_VERSION, LAST_IN_SEGMENT,
    OPUS_FRAME_VERSION, OPUS_HEADER_LEN, RUN_END, RUN_START,
};
pub use limits::Limits;
pub use markup::Markup;
#[cfg(feature = "serde")]
pub use messages::{
    ClientMessage, EndError, EndMetrics, Flow, Heard, ParseError, ServerMessage, WordTiming,
};
pub use voices::{resolve as resolve_voice, Model, DEFAULT_MODEL};

/// The WebSocket subprotocol of protocol version 1.
pub const SUBPROTOCOL: &str = "orpheus.v1";

/// The WebSocket subprotocol of protocol version 2: version 1 plus the play cursor (`played`),
/// flow control, `resume` after a dropped link, and what was heard in every `end`.
pub const SUBPROTOCOL_V2: &str = "orpheus.v2";

/// Protocol v2: a client with less audio than this beyond its play cursor reports every frame
/// it receives (`played` with `on_receipt`), so that the relay can pace a slow link.
pub const PROMPT_BELOW_MS: u64 = 500;

/// Protocol v2: how often a client reports its play cursor while a message plays.
pub const REPORT_INTERVAL_MS: u64 = 250;

/// Protocol v2: a client with at least this much audio beyond its play cursor reports only
/// every [`SPARSE_REPORT_INTERVAL_MS`]: it needs no quicker top-up, and every report wakes the
/// relay.
pub const PLENTY_MS: u64 = 1000;

/// Protocol v2: how often a client with [`PLENTY_MS`] beyond its cursor reports it. Shorter
/// than the relay's silence (1 s, after which it estimates the cursor from the clock), and
/// short enough that the window (2 s) tops such a client up before it runs low.
pub const SPARSE_REPORT_INTERVAL_MS: u64 = 750;

/// Protocol v2: how long a client waits between two reports of its play cursor, with `ahead`
/// samples at `rate` beyond it.
pub const fn report_interval_ms(ahead: u64, rate: u32) -> u64 {
    if ahead * 1000 >= PLENTY_MS * rate as u64 {
        SPARSE_REPORT_INTERVAL_MS
    } else {
        REPORT_INTERVAL_MS
    }
}

/// A protocol version, negotiated by subprotocol at connect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Version {
    /// `orpheus.v1`.
    #[default]
    V1,
    /// `orpheus.v2`.
    V2,
}

impl Version {
    /// The highest version among the offered subprotocols (`Sec-WebSocket-Protocol`), if any.
    pub fn negotiate(offered: &str) -> Option<Version> {
        let offered: alloc::vec::Vec<&str> = offered.split(',').map(str::trim).collect();
        [Version::V2, Version::V1]
            .into_iter()
            .find(|v| offered.contains(&v.subprotocol()))
    }

    /// The version's subprotocol.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Version::V1 => SUBPROTOCOL,
            Version::V2 => SUBPROTOCOL_V2,
        }
    }

    /// The number carried in `ready`.
    pub fn number(self) -> u32 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// Close code sent to a socket that another connection to the same session replaced.
pub const CLOSE_REPLACED: u16 = 4000;

/// Protocol v2: close code for a socket whose client stopped reporting its play cursor while
/// the relay waited on it (a link dead half-open). Its message is parked: reconnect and resume.
pub const CLOSE_LINK_SILENT: u16 = 4008;

/// Close code for a client that keeps flooding the relay with frames.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// The close code of a refused connection: 4000 plus the HTTP status of the refusal (4401 for
/// a ticket, 4403 for an origin, 4503 for an unconfigured relay). Browsers cannot read the
/// status of a refused upgrade, so the relay completes it and closes at once with this code.
pub const fn refusal_close_code(status: u16) -> u16 {
    4000 + status
}

/// Whether a close code says the relay refused the connection (see [`refusal_close_code`]).
pub const fn is_refusal(code: u16) -> bool {
    code >= 4400 && code < 4600
}

/// The exact ping frame the runtime answers without waking a hibernated session; clients use
/// it to check a link is alive.
pub const PING_FRAME: &str = r#"{"type":"ping"}"#;

/// The runtime's answer to [`PING_FRAME`].
pub const PONG_FRAME: &str = r#"{"type":"pong"}"#;

/// The longest session id, in characters.
pub const MAX_SESSION_ID_LEN: usize = 64;

/// The longest message id, in characters.
pub const MAX_MESSAGE_ID_LEN: usize = 64;

/// Returns whether `sid` is a valid session id: 1 to 64 characters of `[A-Za-z0-9_-]`.
pub fn is_valid_session_id(sid: &str) -> bool {
    (1..=MAX_SESSION_ID_LEN).contains(&sid.len())
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_reports_less_often_from_a_second_ahead() {
        assert_eq!(report_interval_ms(23_999, 24_000), REPORT_INTERVAL_MS);
        assert_eq!(
            report_interval_ms(24_000, 24_000),
            SPARSE_REPORT_INTERVAL_MS
        );
        assert_eq!(report_interval_ms(47_999, 48_000), REPORT_INTERVAL_MS);
    }

    #[test]
    fn the_highest_offered_version_wins() {
        assert_eq!(
            Version::negotiate("orpheus.v1, orpheus.v2, orpheus.ticket.x"),
            Some(Version::V2)
        );
        assert_eq!(Version::negotiate("orpheus.v1"), Some(Version::V1));
        assert_eq!(Version::negotiate("orpheus.v3, chat"), None);
        assert_eq!(Version::negotiate(""), None);
    }

    #[test]
    fn session_ids() {
        assert!(is_valid_session_id("a"));
        assert!(is_valid_session_id("Abc_09-x"));
        assert!(is_valid_session_id(&"x".repeat(64)));
        assert!(!is_valid_session_id(""));
        assert!(!is_valid_session_id(&"x".repeat(65)));
        assert!(!is_valid_session_id("a b"));
        assert!(!is_valid_session_id("a/b"));
        assert!(!is_valid_session_id("é"));
        assert!(!is_valid_session_id("a.b"));
    }
}
