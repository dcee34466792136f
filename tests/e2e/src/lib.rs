//! End-to-end fixture: the real Worker in real workerd (`wrangler dev`), the local Groq-compatible
//! upstream in-process (so tests read its counters directly), and a WebSocket client that checks
//! the protocol's promises on every frame it receives.
//!
//! Run through `scripts/test`, which puts Node 22 and wrangler on PATH and builds the Worker.
//! Modules: [`process`] (wrangler), [`fixture`] (the shared relays and upstream), [`tickets`]
//! (minting and the leak ledger), [`client`] (the protocol client), [`audio`] (comparisons),
//! [`browser`] (Chromium scripts), [`words`] (the word timings' ground truth), and the
//! reliability suite ([`history`], [`load`],
//! [`reliability`]).

pub mod audio;
pub mod browser;
pub mod client;
pub mod fixture;
pub mod history;
pub mod listener;
pub mod load;
pub mod patterns;
pub mod process;
pub mod profile;
pub mod reliability;
pub mod scale;
pub mod tickets;
pub mod words;

pub use audio::{
    aligned_correlation, check_bit_exact, compare_capture, compare_playback, decode_capture,
    expected_pcm, expected_playback, ffmpeg_decode, loudest_between, pcm_of_segments, playback_of,
};
pub use browser::{run_browser_script, SampleApp};
pub use client::{
    http_exchange, http_get, http_request, open_socket, refusal, Client, Frame, HttpAnswer,
    Received, Socket,
};
pub use fixture::{Fixture, Voiced, SLOW_LINK_SPEED};
pub use listener::Listener;
pub use process::Relay;
pub use tickets::{protocols_with, record_ticket, ticket, Ledger, LEDGER};

/// The API key the fixture gives both the upstream and the Worker.
pub const TEST_KEY: &str = "gsk_e2e_fake_key_0123456789";

/// The keys of the main relay's OpenAI-compatible endpoint (`RELAY_API_KEYS`); each has limits
/// of its own.
pub const RELAY_API_KEYS: [&str; 2] = ["orpheus-e2e-http-key-one", "orpheus-e2e-http-key-two"];

/// Groq's pace: about 10 ms of generation per character before the first byte (100
/// characters a second).
pub const GROQ_MS_PER_CHAR: u64 = 10;

/// Samples per character the upstream renders: realistic speech length.
pub const SAMPLES_PER_CHAR: usize = 1600;

/// An agent's reply, for writing in pieces (protocol v2 streaming text): a short first sentence,
/// then the traps of cutting text that is still growing (a decimal, an abbreviation, a vocal
/// direction).
pub const AGENT_REPLY: &str = "Sure, I can help with that. The next train leaves at 3.15 from \
    platform nine, and Dr. Lee will meet you there. [cheerful] Have a lovely trip, and say hello \
    to everyone for me! Is there anything else you need today?";

/// The first sentence of [`AGENT_REPLY`].
pub const AGENT_REPLY_FIRST: &str = "Sure, I can help with that.";

/// Timeouts the Worker is started with, short so timeout tests stay quick.
pub const UPSTREAM_TIMEOUT_MS: u64 = 2500;

/// A result type for tests: any error fails the test with its message.
pub type TestResult<T = ()> = Result<T, String>;

/// Fails the test with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// The secret shared by the test "backend" (this crate) and the relay.
pub const TEST_SECRET: &str = "e2e-session-secret-not-for-production";

/// The page origin the tests connect from; the relay allows it (and [`OTHER_ORIGIN`]).
pub const TEST_ORIGIN: &str = "http://app.e2e.test";

/// A second allowed origin, for tickets used from the wrong allowed page.
pub const OTHER_ORIGIN: &str = "http://other.e2e.test";

/// The `p`th percentile of ascending `sorted` values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
