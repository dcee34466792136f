//! espeak-ng through its library (libespeak-ng), which reports where each word begins in the
//! audio it makes: the ground truth the word-timing tests and benchmark measure the relay's
//! estimates against. The truth stays in this process (see [`crate::Stats::word_truth`]): the
//! relay, as with Groq, only ever sees the WAV.

use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CString};
use std::sync::Mutex;

/// `espeak_EVENT` (speak_lib.h).
#[repr(C)]
struct Event {
    kind: c_int,
    unique_identifier: c_uint,
    text_position: c_int,
    length: c_int,
    audio_position: c_int,
    sample: c_int,
    user_data: *mut c_void,
    id: [u8; 8],
}

const EVENT_LIST_TERMINATED: c_int = 0;
const EVENT_WORD: c_int = 1;
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const POS_CHARACTER: c_int = 1;
const CHARS_UTF8: c_uint = 1;
const PARAMETER_RATE: c_int = 1;

type Callback = extern "C" fn(*mut c_short, c_int, *mut Event) -> c_int;

#[link(name = "espeak-ng")]
extern "C" {
    fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;
    fn espeak_SetSynthCallback(callback: Callback);
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_SetParameter(parameter: c_int, value: c_int, relative: c_int) -> c_int;
    fn espeak_Synth(
        text: *const c_void,
        size: usize,
        position: c_uint,
        position_type: c_int,
        end_position: c_uint,
        flags: c_uint,
        unique_identifier: *mut c_uint,
        user_data: *mut c_void,
    ) -> c_int;
    fn espeak_Synchronize() -> c_int;
}

/// Where a word begins in what espeak-ng said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordEvent {
    /// The word's first character in the text spoken (Unicode scalar values, from 0).
    pub char_at: usize,
    /// Its length in characters.
    pub chars: usize,
    /// Where its audio begins, in milliseconds from the start.
    pub audio_ms: u64,
}

/// What one synthesis made.
#[derive(Debug, Default)]
pub struct Spoken {
    /// The audio, at [`Spoken::rate`].
    pub pcm: Vec<i16>,
    /// Its sample rate.
    pub rate: u32,
    /// Every word, in order.
    pub words: Vec<WordEvent>,
}

/// The synthesis in progress: the library has one, and calls back into it.
static CURRENT: Mutex<Option<Spoken>> = Mutex::new(None);

/// One synthesis at a time, whatever thread asks: the library keeps global state.
static LIBRARY: Mutex<Option<u32>> = Mutex::new(None);

extern "C" fn collect(wav: *mut c_short, samples: c_int, events: *mut Event) -> c_int {
    let mut current = CURRENT.lock().expect("espeak state");
    let Some(spoken) = current.as_mut() else {
        return 0;
    };
    if !wav.is_null() && samples > 0 {
        // SAFETY: the library hands over `samples` samples at `wav` for this call.
        let pcm = unsafe { std::slice::from_raw_parts(wav, samples as usize) };
        spoken.pcm.extend_from_slice(pcm);
    }
    let mut at = events;
    // SAFETY: the event list is terminated by an event of type LIST_TERMINATED.
    while !at.is_null() && unsafe { (*at).kind } != EVENT_LIST_TERMINATED {
        let event = unsafe { &*at };
        if event.kind == EVENT_WORD {
            spoken.words.push(WordEvent {
                // The library counts from 1.
                char_at: (event.text_position.max(1) - 1) as usize,
                chars: event.length.max(0) as usize,
                audio_ms: event.audio_position.max(0) as u64,
            });
        }
        at = unsafe { at.add(1) };
    }
    0
}

/// Speaks `text` with espeak-ng voice `voice` (such as `en-us+m3`) at `words_per_minute`;
/// `None` if the library or the voice cannot be had.
pub fn speak(text: &str, voice: &str, words_per_minute: u32) -> Option<Spoken> {
    let mut library = LIBRARY.lock().ok()?;
    if library.is_none() {
        // SAFETY: plain calls into the C library, serialised by LIBRARY.
        let rate = unsafe { espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, std::ptr::null(), 0) };
        if rate <= 0 {
            return None;
        }
        unsafe { espeak_SetSynthCallback(collect) };
        *library = Some(rate as u32);
    }
    let rate = (*library)?;
    let voice = CString::new(voice).ok()?;
    let text = CString::new(text).ok()?;
    *CURRENT.lock().ok()? = Some(Spoken {
        rate,
        ..Spoken::default()
    });
    // SAFETY: serialised by LIBRARY; the text outlives the synchronous synthesis.
    let ok = unsafe {
        espeak_SetVoiceByName(voice.as_ptr()) == 0
            && espeak_SetParameter(PARAMETER_RATE, words_per_minute as c_int, 0) == 0
            && espeak_Synth(
                text.as_ptr().cast(),
                text.as_bytes().len() + 1,
                0,
                POS_CHARACTER,
                0,
                CHARS_UTF8,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ) == 0
            && espeak_Synchronize() == 0
    };
    let spoken = CURRENT.lock().ok()?.take()?;
    ok.then_some(spoken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_reported_where_its_audio_begins() {
        let text = "Hello there, brave new world.";
        let spoken = speak(text, "en-us+m3", 165).expect("espeak-ng");
        assert!(spoken.rate > 0 && spoken.pcm.len() > spoken.rate as usize / 2);
        let words: Vec<String> = spoken
            .words
            .iter()
            .map(|w| text.chars().skip(w.char_at).take(w.chars).collect())
            .collect();
        assert_eq!(words, ["Hello", "there", "brave", "new", "world"]);
        let starts: Vec<u64> = spoken.words.iter().map(|w| w.audio_ms).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        let length_ms = spoken.pcm.len() as u64 * 1000 / u64::from(spoken.rate);
        assert!(*starts.last().unwrap() < length_ms);
    }
}
