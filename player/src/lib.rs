//! Orpheus Relay's browser player: the main-thread half.
//!
//! The logic is pure Rust, tested on the host: [`core`] (the state machine: the link, messages,
//! completion), reading and writing the control messages with the protocol crate's serde-free
//! codec (`orpheus_protocol::codec`). [`web`] is the face the JavaScript drives
//! (`player/js/index.js`, through the module's exports in `ffi` and their glue,
//! `player/js/core.js`). Audio never passes through here: it goes from the socket to the
//! AudioWorklet engine (the `orpheus-player-dsp` crate) as the relay sent it.

// No `std` in the wasm: its panic machinery and formatting were 2.9 KB of the gzipped module.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

/// What `std`'s prelude would give, taken from `alloc`.
mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::string::String;
    pub use alloc::vec::Vec;
}

pub mod core;
#[cfg(target_arch = "wasm32")]
mod ffi;
mod web;

pub use web::Core;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
// SAFETY: the module runs on the page's main thread only.
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

/// A panic is a bug: the module traps (`unreachable`), as it did with std's handler, without
/// formatting a message nobody reads.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &::core::panic::PanicInfo) -> ! {
    ::core::arch::wasm32::unreachable()
}
