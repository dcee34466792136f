//! `groq-local`: a local stand-in for Groq's speech API, for development and tests.
//!
//! It serves `POST /openai/v1/audio/speech` as `shared/GROQ.md` describes: bearer auth, the JSON
//! body, the 200-character limit, the ten voices, a 24 kHz mono 16-bit WAV answer, and Groq's
//! error bodies and rate-limit headers. Audio is either a deterministic signal derived from the
//! input text (tests compare relayed audio with it sample for sample) or espeak-ng speech (for a
//! person trying the demo, and for the word-timing tests and benchmark, which read where
//! espeak-ng said each word: [`Stats::word_truth`]).
//!
//! Faults are chosen per run ([`Config::fault`]) or per request, by a directive inside the input
//! text such as `[[fault:status=429;retry_after=3]]` (see [`Fault`]). The server counts the
//! requests it served and the connections still open ([`Stats`]).

pub mod espeak;
mod fault;
mod http;
mod server;
mod signal;

pub use fault::Fault;
pub use server::{serve, spawn, Config, Engine, Stats, StatsSnapshot, Truth};
pub use signal::{render_signal, SAMPLE_RATE};

/// The speech endpoint path.
pub const SPEECH_PATH: &str = "/openai/v1/audio/speech";
