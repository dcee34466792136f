//! Orpheus Relay's Cloudflare Worker.
//!
//! One Durable Object per session ([`relay_object::RelaySession`]) owns the session's socket and
//! its upstream Groq requests. The logic lives in pure modules tested on the host:
//! [`session`] (the state machine), [`segment`] (text splitting), [`wav`] (RIFF stripping),
//! [`cluster`] (where a hard cut may fall), [`upstream`] (Groq's request and error mapping), [`admission`] (who may connect),
//! [`replay`] (single-use tickets), [`budget`] and [`frame_rate`] (limits), [`flow`],
//! [`unplayed`] and [`heard`] (protocol v2: flow control, resume, what was heard), [`openai`]
//! (the OpenAI-compatible speech endpoint's requests, errors and responses) and [`log`] (the one
//! logging choke point). The rest is runtime glue, among it the HTTP endpoint's, an API key's
//! limits and the segment cache (Workers KV).

pub mod admission;
pub mod budget;
pub mod cluster;
pub mod flow;
pub mod frame_rate;
pub mod heard;
pub mod log;
pub mod openai;
pub mod replay;
pub mod segment;
pub mod session;
pub mod speech;
pub mod time;
pub mod unplayed;
pub mod upstream;
pub mod wav;
pub mod words;

mod clock;
mod entry;
mod http_speech;
mod key_budget;
mod opus_out;
pub mod relay_object;
mod segment_cache;
mod settings;
mod upgrade;
mod upstream_fetch;
mod upstreams;

pub use upgrade::session_id_from_path;
