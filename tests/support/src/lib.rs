//! Helpers shared by every test crate, so that no test carries its own variant: one seeded
//! random generator, one WAV builder, and one way to split a text the way the relay does.

pub use fastrand::Rng;

/// A generator seeded with `seed`: the same seed draws the same sequence, so a failing run
/// replays.
pub fn rng(seed: u64) -> Rng {
    Rng::with_seed(seed)
}

/// The next piece of `chars` from `at` as a language model streams its reply: 1 to 5
/// characters, and the pause of 20 to 50 ms before the piece after it.
pub fn next_piece(chars: &[char], at: usize, rng: &mut Rng) -> (String, std::time::Duration) {
    let len = (1 + rng.usize(..5)).min(chars.len() - at);
    let pause = std::time::Duration::from_millis(20 + rng.u64(..31));
    (chars[at..at + len].iter().collect(), pause)
}

/// The segments the relay sends upstream for `text`, at its default lengths, read as
/// Markdown (the relay's default) with no lexicon.
#[cfg(feature = "relay")]
pub fn relay_segments(text: &str) -> Vec<String> {
    relay_segments_as(text, orpheus_protocol::Markup::Markdown)
}

/// The segments the relay sends upstream for `text` read as `markup`.
#[cfg(feature = "relay")]
pub fn relay_segments_as(text: &str, markup: orpheus_protocol::Markup) -> Vec<String> {
    use orpheus_worker::segment::{split, FIRST_SEGMENT_CHARS, SEGMENT_MAX_CHARS};
    use orpheus_worker::speech::{Lexicon, SpeechText};
    let speech = SpeechText::of(text, markup, Lexicon::default());
    split(speech.spoken(), SEGMENT_MAX_CHARS, FIRST_SEGMENT_CHARS)
}

/// Samples as PCM s16le bytes.
pub fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// The ways a WAV body can deviate from the canonical 44-byte header, as Groq's do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    /// LIST and fact chunks around `fmt `, and stale sizes: RIFF `0xFFFFFFFF`, data `0`.
    pub extra_chunks: bool,
}

/// A mono 16-bit PCM WAV body at `sample_rate` holding `pcm` (s16le bytes).
pub fn wav(sample_rate: u32, pcm: &[u8], quirks: Quirks) -> Vec<u8> {
    let data_len = pcm.len() as u32;
    let mut out = Vec::with_capacity(pcm.len() + 80);
    out.extend_from_slice(b"RIFF");
    let riff_len = if quirks.extra_chunks {
        u32::MAX
    } else {
        36 + data_len
    };
    out.extend_from_slice(&riff_len.to_le_bytes());
    out.extend_from_slice(b"WAVE");
    if quirks.extra_chunks {
        out.extend_from_slice(b"LIST\x0b\0\0\0INFOISFT\x01\x02\x03\0");
    }
    out.extend_from_slice(b"fmt \x10\0\0\0\x01\0\x01\0");
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(b"\x02\0\x10\0");
    if quirks.extra_chunks {
        out.extend_from_slice(b"fact\x04\0\0\0\0\0\0\0");
    }
    out.extend_from_slice(b"data");
    let data_field = if quirks.extra_chunks { 0 } else { data_len };
    out.extend_from_slice(&data_field.to_le_bytes());
    out.extend_from_slice(pcm);
    out
}

/// Replies in the style language models write (lists, nested emphasis, code spans and fences,
/// links, tables, headings, emoji, addresses), for the speech-text tests and benchmark.
pub fn markdown_replies() -> Vec<&'static str> {
    include_str!("../replies/replies.md")
        .split("\n=====\n")
        .map(str::trim_end)
        .collect()
}

/// Sentences as an assistant says them (plain sentences, numbers and dates, lists, long
/// clauses, short replies), one a line, for the word-timing tests and benchmark.
pub fn spoken_sentences() -> Vec<&'static str> {
    include_str!("../replies/sentences.txt").lines().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_header_is_44_bytes() {
        let body = wav(24_000, &[1, 2], Quirks::default());
        assert_eq!(body.len(), 46);
        assert_eq!(&body[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(body[24..28].try_into().unwrap()), 24_000);
        assert_eq!(&body[36..40], b"data");
    }

    #[test]
    fn the_same_seed_draws_the_same() {
        let (mut a, mut b) = (rng(7), rng(7));
        assert_eq!(a.u64(..), b.u64(..));
    }
}
