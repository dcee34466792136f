//! State behind a wasm module's exports. The player's two modules (the core on the page's main
//! thread, the engine in the AudioWorklet) each run on one thread, and no export of theirs
//! calls another: a static can then be borrowed mutably by whichever export runs, one at a
//! time. [`Global`] is that static, its reasoning written once.

#![no_std]

use core::cell::UnsafeCell;

/// A static that the exports of a single-threaded, non-reentrant wasm module borrow in turn.
pub struct Global<T>(UnsafeCell<T>);

// SAFETY: the module instance runs on one thread and never re-enters an export.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// The value, for the export that runs now.
    #[allow(clippy::mut_from_ref)]
    pub fn get(&self) -> &mut T {
        // SAFETY: single-threaded and non-reentrant (see the Sync impl): one borrow at a time.
        unsafe { &mut *self.0.get() }
    }
}
