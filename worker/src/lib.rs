//! Orpheus Relay's Cloudflare Worker.
//!
//! One Durable Object per session ([`relay_object::RelaySession`]) owns the session's socket and
//! its upstream Groq requests. The logic lives in pure modules tested on the host:
//! [`session`] (the state machine), [`segment`] (text splitting), [`wav`] (RIFF stripping) and
//! [`upstream`] (Groq's request and error mapping). The rest is runtime glue.

pub mod admission;
pub mod budget;
pub mod log;
pub mod segment;
pub mod session;
pub mod upstream;
pub mod wav;

mod entry;
pub mod relay_object;
mod settings;
mod upstream_fetch;

pub use entry::session_id_from_path;
