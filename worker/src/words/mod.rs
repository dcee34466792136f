//! Word timings: where each word of a segment is said in the segment's audio. Groq returns
//! only audio, so the relay estimates them from what it has: the segment's exact sample range
//! (it knows where each segment starts and ends in the stream), the segment's text, and the
//! audio's loudness over time ([`Envelope`], taken in as the audio arrives).
//!
//! The method ([`align`]): syllable nuclei are the envelope's loud peaks; between two nuclei
//! lies one place a word may start (the end of a pause, the end of a stop consonant's
//! silence, or the lowest point of the dip). A dynamic programme picks, for each word in order,
//! the place it starts at, so that the nuclei a word holds match its syllables (counted from
//! its spelling, numbers read out, a short word in capitals or one without a vowel spelled
//! letter by letter, a function word such as "the" counted weak, symbols a voice reads such
//! as "@" or the dot of an address counted as unseen words), its length matches its share of
//! the segment (by syllables and letters), words start at deep dips, and pauses fall after
//! commas and full stops. A word that opens with a vowel or a glide then starts a third of the
//! way from its dip to its first nucleus: nothing of its own parts it from the word before, so
//! the dip lies in that word's last sound. Its limits: a word whose syllables are miscounted
//! (a foreign name, an abbreviation said letter by letter, a symbol read another way) shifts
//! its neighbours by about a syllable, and a voice that runs words together without dips is
//! placed by the lengths alone. Measured against espeak-ng's own word events: `scripts/bench
//! words`.

mod align;
mod envelope;
mod text;

use std::ops::Range;

pub use envelope::{Envelope, FRAME_MS};
pub use text::{syllables, words_of, Pause, Word};

/// Where a word is said in its segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Its characters in the segment's text.
    pub chars: Range<usize>,
    /// Its first sample in the segment, and the sample after its last.
    pub start: u64,
    pub end: u64,
}

/// The words of `text` (a segment's text) placed on `envelope` (its audio's).
pub fn estimate(text: &str, envelope: &Envelope) -> Vec<Timing> {
    let words = words_of(text);
    let frames = envelope.frames();
    let per_frame = envelope.frame_samples() as u64;
    // The last frame may be partial: no word runs past the audio.
    let samples = envelope.samples();
    let at = |frame: usize| (frame as u64 * per_frame).min(samples);
    match align::align(&words, &frames) {
        Some(placed) => words
            .into_iter()
            .zip(placed)
            .filter(|(word, _)| word.told)
            .map(|(word, (start, end))| Timing {
                chars: word.chars,
                start: at(start),
                end: at(end).max(at(start)),
            })
            .collect(),
        // Nothing loud: the words share the segment by their characters.
        None => baseline(text, samples),
    }
}

/// The constant-rate estimate, the baseline the estimate is measured against: each word's
/// share of the segment's `samples` in proportion to its characters.
pub fn baseline(text: &str, samples: u64) -> Vec<Timing> {
    let total = text.chars().count().max(1) as u64;
    words_of(text)
        .into_iter()
        .filter(|w| w.told)
        .map(|w| Timing {
            start: w.chars.start as u64 * samples / total,
            end: w.chars.end as u64 * samples / total,
            chars: w.chars,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tone burst per syllable (`syllables[k]` for word `k`), 180 ms each with 40 ms dips,
    /// and `pause_ms` of silence after the words whose index is in `pauses`.
    fn speech(syllables: &[usize], pauses: &[usize], pause_ms: usize) -> (Vec<u8>, Vec<u64>) {
        let rate = 24_000usize;
        let mut pcm: Vec<i16> = Vec::new();
        let mut starts = Vec::new();
        for (k, &n) in syllables.iter().enumerate() {
            starts.push(pcm.len() as u64);
            for _ in 0..n {
                for i in 0..rate * 180 / 1000 {
                    let t = i as f64 / rate as f64;
                    pcm.push(((t * 2.0 * std::f64::consts::PI * 220.0).sin() * 8000.0) as i16);
                }
                pcm.extend(std::iter::repeat_n(0, rate * 40 / 1000));
            }
            if pauses.contains(&k) {
                pcm.extend(std::iter::repeat_n(0, rate * pause_ms / 1000));
            }
        }
        (pcm.iter().flat_map(|s| s.to_le_bytes()).collect(), starts)
    }

    #[test]
    fn words_start_where_their_syllables_do() {
        let text = "Hello there, wonderful people of the world.";
        let counts = [2, 1, 3, 2, 1, 1, 1];
        let (pcm, starts) = speech(&counts, &[1], 300);
        let mut envelope = Envelope::new(24_000);
        for piece in pcm.chunks(4097) {
            envelope.push(piece);
        }
        let timings = estimate(text, &envelope);
        assert_eq!(timings.len(), 7);
        for (t, &truth) in timings.iter().zip(&starts) {
            let error_ms = t.start.abs_diff(truth) * 1000 / 24_000;
            assert!(error_ms <= 30, "{t:?} against {truth}: {error_ms} ms");
        }
        let base = baseline(text, pcm.len() as u64 / 2);
        let base_error: u64 = base
            .iter()
            .zip(&starts)
            .map(|(b, &truth)| b.start.abs_diff(truth))
            .sum();
        let error: u64 = timings
            .iter()
            .zip(&starts)
            .map(|(t, &truth)| t.start.abs_diff(truth))
            .sum();
        assert!(
            error * 3 < base_error,
            "{error} against the baseline's {base_error}"
        );
    }

    #[test]
    fn silence_and_no_words_give_the_baseline_or_nothing() {
        let mut envelope = Envelope::new(24_000);
        envelope.push(&vec![0; 48_000]);
        let timings = estimate("Two words.", &envelope);
        assert_eq!(timings, baseline("Two words.", 24_000));
        assert!(estimate("...", &envelope).is_empty());
    }
}
