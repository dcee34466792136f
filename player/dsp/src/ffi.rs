//! The exports the worklet calls. The module is single-threaded (one AudioWorkletGlobalScope):
//! the one engine and its buffers live in statics, reached only through these functions.

use orpheus_wasm_statics::Global;

use crate::engine::Engine;

/// Largest frame the worklet may push in one piece (the relay sends at most 16 KiB of PCM).
const STAGING_BYTES: usize = 128 * 1024;

/// Largest render in one call (a render quantum is 128 frames).
const MAX_RENDER: usize = 1024;

/// Most word starts the worklet hands over in one call.
const WORD_STAGING: usize = 1024;

static ENGINE: Global<Engine> = Global::new(Engine::new());
static STAGING: Global<[u8; STAGING_BYTES]> = Global::new([0; STAGING_BYTES]);
static OUTPUT: Global<[f32; MAX_RENDER]> = Global::new([0.0; MAX_RENDER]);
static WORDS: Global<[u32; WORD_STAGING]> = Global::new([0; WORD_STAGING]);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// Sets the context's rate and the initial jitter allowance in milliseconds.
#[no_mangle]
pub extern "C" fn orpheus_configure(out_rate: u32, allowance_ms: f64) {
    ENGINE.get().configure(out_rate, allowance_ms / 1000.0);
}

/// Where the worklet copies a frame before [`orpheus_push`].
#[no_mangle]
pub extern "C" fn orpheus_staging() -> *mut u8 {
    STAGING.get().as_mut_ptr()
}

/// How large a frame the staging area takes.
#[no_mangle]
pub extern "C" fn orpheus_staging_bytes() -> u32 {
    STAGING_BYTES as u32
}

/// Pushes the `len` bytes staged; returns a [`crate::Push`] code.
#[no_mangle]
pub extern "C" fn orpheus_push(len: u32) -> u32 {
    let len = (len as usize).min(STAGING_BYTES);
    ENGINE.get().push(&STAGING.get()[..len]) as u32
}

#[no_mangle]
pub extern "C" fn orpheus_begin(stream: u32, rate: u32) {
    ENGINE.get().begin(stream, rate);
}

#[no_mangle]
pub extern "C" fn orpheus_end(stream: u32, total: f64) {
    ENGINE.get().end(stream, total as u64);
}

#[no_mangle]
pub extern "C" fn orpheus_stop(stream: u32) {
    ENGINE.get().stop(stream);
}

/// Where the worklet copies word starts before [`orpheus_words`].
#[no_mangle]
pub extern "C" fn orpheus_word_staging() -> *mut u32 {
    WORDS.get().as_mut_ptr()
}

/// How many word starts the staging area takes.
#[no_mangle]
pub extern "C" fn orpheus_word_staging_len() -> u32 {
    WORD_STAGING as u32
}

/// The `count` word starts staged are of `stream`.
#[no_mangle]
pub extern "C" fn orpheus_words(stream: u32, count: u32) {
    let count = (count as usize).min(WORD_STAGING);
    ENGINE.get().words(stream, &WORDS.get()[..count]);
}

/// Words of the current stream whose start the play cursor passed.
#[no_mangle]
pub extern "C" fn orpheus_words_passed() -> u32 {
    ENGINE.get().cursor().words
}

/// Renders `frames` (at most 1024) into the output area; returns the event bits.
#[no_mangle]
pub extern "C" fn orpheus_render(frames: u32) -> u32 {
    let frames = (frames as usize).min(MAX_RENDER);
    let engine = ENGINE.get();
    engine.render(&mut OUTPUT.get()[..frames]);
    engine.take_events()
}

/// Where [`orpheus_render`] wrote its samples.
#[no_mangle]
pub extern "C" fn orpheus_output() -> *const f32 {
    OUTPUT.get().as_ptr()
}

#[no_mangle]
pub extern "C" fn orpheus_stream() -> u32 {
    ENGINE.get().cursor().stream
}

#[no_mangle]
pub extern "C" fn orpheus_played() -> f64 {
    ENGINE.get().cursor().played as f64
}

#[no_mangle]
pub extern "C" fn orpheus_buffered() -> f64 {
    ENGINE.get().cursor().buffered as f64
}

#[no_mangle]
pub extern "C" fn orpheus_underruns() -> u32 {
    ENGINE.get().cursor().underruns
}

#[no_mangle]
pub extern "C" fn orpheus_allowance_ms() -> f64 {
    ENGINE.get().allowance() * 1000.0
}
