//! Orpheus Relay's browser player.
//!
//! The logic is pure Rust, tested on the host: [`pcm`] (PCM s16le to Float32), [`timeline`]
//! (placing chunks on the AudioContext clock) and [`core`] (message-scoped playback with
//! exactly-once completion). The browser glue only executes the core's effects.

pub mod core;
pub mod pcm;
pub mod timeline;
mod web;

pub use web::Player;
