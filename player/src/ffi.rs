//! The exports `player/js/core.js` calls: one per method of [`Core`], on a core named by its
//! handle. Strings cross through two buffers: the caller writes a call's strings one after
//! another into the input (sized by [`orpheus_input`]) and passes each one's length in bytes
//! (-1 for none), before the call's numbers; an answer is left in the output, its length
//! returned. The module runs on the page's main thread and no export re-enters another: the
//! cores and the buffers live in statics ([`Global`]), reached only through these functions.

use orpheus_wasm_statics::Global;

use crate::prelude::*;
use crate::web::Core;

/// The cores, a handle being an index; a freed core leaves its slot empty for the next.
static CORES: Global<Vec<Option<Core>>> = Global::new(Vec::new());
static INPUT: Global<Vec<u8>> = Global::new(Vec::new());
static OUTPUT: Global<String> = Global::new(String::new());

fn core(handle: u32) -> &'static mut Core {
    match CORES.get().get_mut(handle as usize) {
        Some(Some(core)) => core,
        // A freed or unknown handle is the glue's bug: trap, as a panic does.
        _ => core::arch::wasm32::unreachable(),
    }
}

/// Leaves `answer` in the output; its length.
fn answer(answer: String) -> u32 {
    let output = OUTPUT.get();
    *output = answer;
    output.len() as u32
}

/// A call's strings, read off the input in the order they were written.
struct Strings<'a>(&'a str);

impl<'a> Strings<'a> {
    fn of_input() -> Self {
        // Written by the glue's TextEncoder, and so UTF-8; an input that is not reads empty.
        Self(core::str::from_utf8(INPUT.get()).unwrap_or_default())
    }

    /// The next string, `len` bytes, or none for a negative length.
    fn next(&mut self, len: i32) -> Option<&'a str> {
        let len = usize::try_from(len).ok()?;
        let (string, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(string)
    }

    fn next_or_empty(&mut self, len: i32) -> &'a str {
        self.next(len).unwrap_or_default()
    }
}

/// Room for the next call's strings, `len` bytes in all: where to write them.
#[no_mangle]
pub extern "C" fn orpheus_input(len: u32) -> *mut u8 {
    let input = INPUT.get();
    input.clear();
    input.resize(len as usize, 0);
    input.as_mut_ptr()
}

/// Where the last answer is.
#[no_mangle]
pub extern "C" fn orpheus_output() -> *const u8 {
    OUTPUT.get().as_ptr()
}

/// A new core (see [`Core::new`]); its handle.
#[no_mangle]
pub extern "C" fn orpheus_new(seed: f64) -> u32 {
    let cores = CORES.get();
    let core = Some(Core::new(seed));
    match cores.iter().position(Option::is_none) {
        Some(free) => {
            cores[free] = core;
            free as u32
        }
        None => {
            cores.push(core);
            (cores.len() - 1) as u32
        }
    }
}

/// Frees a core. Idempotent: a handle already freed stays free.
#[no_mangle]
pub extern "C" fn orpheus_free(handle: u32) {
    if let Some(slot) = CORES.get().get_mut(handle as usize) {
        *slot = None;
    }
}

#[no_mangle]
pub extern "C" fn orpheus_connect(handle: u32, now: f64) -> u32 {
    answer(core(handle).connect(now))
}

#[no_mangle]
pub extern "C" fn orpheus_retry(handle: u32, now: f64) -> u32 {
    answer(core(handle).retry(now))
}

#[no_mangle]
pub extern "C" fn orpheus_opened(handle: u32, now: f64) -> u32 {
    answer(core(handle).opened(now))
}

#[no_mangle]
pub extern "C" fn orpheus_text(handle: u32, text: i32, now: f64) -> u32 {
    let text = Strings::of_input().next_or_empty(text);
    answer(core(handle).text(text, now))
}

#[no_mangle]
pub extern "C" fn orpheus_heard(handle: u32, now: f64) {
    core(handle).heard(now);
}

#[no_mangle]
pub extern "C" fn orpheus_closed(handle: u32, reason: i32, code: u32, now: f64) -> u32 {
    let reason = Strings::of_input().next_or_empty(reason);
    answer(core(handle).closed(code as u16, reason, now))
}

/// `flags`: 1 `more`, 2 `cache`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn orpheus_speak(
    handle: u32,
    id: i32,
    text: i32,
    voice: i32,
    model: i32,
    markup: i32,
    encoding: i32,
    flags: u32,
    now: f64,
) -> u32 {
    let mut s = Strings::of_input();
    let (id, text) = (s.next_or_empty(id), s.next_or_empty(text));
    let (voice, model) = (s.next(voice), s.next(model));
    let (markup, encoding) = (s.next(markup), s.next(encoding));
    let (more, cache) = (flags & 1 != 0, flags & 2 != 0);
    answer(core(handle).speak(id, text, voice, model, more, cache, markup, encoding, now))
}

#[no_mangle]
pub extern "C" fn orpheus_append(handle: u32, id: i32, text: i32, now: f64) -> u32 {
    let mut s = Strings::of_input();
    let (id, text) = (s.next_or_empty(id), s.next_or_empty(text));
    answer(core(handle).append(id, text, now))
}

#[no_mangle]
pub extern "C" fn orpheus_finish(handle: u32, id: i32, now: f64) -> u32 {
    let id = Strings::of_input().next_or_empty(id);
    answer(core(handle).finish(id, now))
}

#[no_mangle]
pub extern "C" fn orpheus_configure(handle: u32, markup: i32, lexicon: i32, now: f64) -> u32 {
    let mut s = Strings::of_input();
    let (markup, lexicon) = (s.next(markup), s.next(lexicon));
    answer(core(handle).configure(markup, lexicon, now))
}

#[no_mangle]
pub extern "C" fn orpheus_stop(handle: u32, now: f64) -> u32 {
    answer(core(handle).stop(now))
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn orpheus_engine(
    handle: u32,
    events: u32,
    stream: u32,
    played: f64,
    buffered: f64,
    underruns: u32,
    at: f64,
    words: u32,
    now: f64,
) -> u32 {
    let core = core(handle);
    answer(core.engine(events, stream, played, buffered, underruns, at, words, now))
}

#[no_mangle]
pub extern "C" fn orpheus_tick(handle: u32, now: f64) -> u32 {
    answer(core(handle).tick(now))
}

#[no_mangle]
pub extern "C" fn orpheus_context(handle: u32, state: i32, now: f64) -> u32 {
    let state = Strings::of_input().next_or_empty(state);
    answer(core(handle).context(state, now))
}

#[no_mangle]
pub extern "C" fn orpheus_shutdown(handle: u32, now: f64) -> u32 {
    answer(core(handle).shutdown(now))
}

#[no_mangle]
pub extern "C" fn orpheus_progress(handle: u32) -> u32 {
    answer(core(handle).progress())
}

#[no_mangle]
pub extern "C" fn orpheus_next_deadline(handle: u32) -> f64 {
    core(handle).next_deadline()
}

#[no_mangle]
pub extern "C" fn orpheus_state(handle: u32) -> u32 {
    answer(core(handle).state().to_owned())
}
