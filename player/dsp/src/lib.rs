//! The player's AudioWorklet engine, compiled to a small wasm module with no allocator and no
//! JavaScript glue: the worklet calls the C-style exports of [`ffi`] and copies frames into, and
//! rendered samples out of, the module's memory.
//!
//! The DSP is pure Rust tested on the host: [`engine`] (the stream, its ring and its play
//! cursor), [`resample`] (cubic interpolation for a context at another rate) and [`words`]
//! (the words whose start the cursor passed). The browser
//! wiring lives in `player/js/worklet.js`.

// The wasm module has no allocator and no std; on the host (tests) it is a plain std crate.
#![cfg_attr(target_arch = "wasm32", no_std)]

pub mod engine;
#[cfg(target_arch = "wasm32")]
mod ffi;
pub mod resample;
pub mod words;

pub use engine::{event, Cursor, Engine, Push};
pub use words::{Words, MAX_WORDS};
