//! What the listener heard of a message's text, from its play cursor (protocol v2).
//!
//! With word timings (see [`crate::words`]), the words whose start the cursor passed were
//! heard: the heard text ends on a word that was really being said ([`heard_by_words`]). Where
//! no timing is known yet (the segment playing is still arriving), it is estimated by segment
//! lengths: segments whose audio played to the end are heard whole; within the segment in
//! progress, the share of its characters equal to the share of its audio played, cut back to
//! the last word boundary ([`heard_chars`]; the audio of a segment still arriving is estimated
//! from the characters per sample of the segments before it). Either way the count is of the
//! app's own text, with the marks that close the last word heard (`**`, a full stop).

use std::ops::Range;

use orpheus_protocol::WordTiming;

use crate::speech::SpeechText;

/// The audio of one requested segment, as far as the relay has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentAudio {
    /// Samples received for it.
    pub samples: u64,
    /// Whether its body ended (so `samples` is its length).
    pub complete: bool,
}

/// The characters of the app's text heard up to its character `to` (exclusive), with the
/// marks right after it that close the word (a full stop, a closing `**` or `)`).
pub fn with_closing_marks(original: &str, to: usize) -> u64 {
    let closing = original
        .chars()
        .skip(to)
        .take_while(|c| !c.is_whitespace() && !c.is_alphanumeric())
        .count();
    (to + closing) as u64
}

/// What was heard by word timings: the app's text up to the end of the last word whose start
/// (a stream sample) `played` reached, or `None` if it reached none.
pub fn heard_by_words(original: &str, words: &[WordTiming], played: u64) -> Option<u64> {
    let word = words.iter().take_while(|w| w.start <= played).last()?;
    Some(with_closing_marks(original, word.to as usize))
}

/// What was heard by segment lengths ([`heard_chars`] on what is said), in the app's text.
pub fn heard_original(
    original: &str,
    speech: &SpeechText,
    spans: &[Range<usize>],
    audio: &[SegmentAudio],
    played: u64,
) -> u64 {
    let said = heard_chars(speech.spoken(), spans, audio, played) as usize;
    if said == 0 {
        return 0;
    }
    with_closing_marks(original, speech.original(said - 1..said).end)
}

/// How many characters of `text` (Unicode scalar values) were heard when `played` samples of
/// the message had played. `spans` are the segments' character ranges in `text`; `audio` the
/// audio of the segments requested so far, in order.
pub fn heard_chars(text: &str, spans: &[Range<usize>], audio: &[SegmentAudio], played: u64) -> u64 {
    let chars: Vec<char> = text.chars().collect();
    let complete: Vec<(usize, u64)> = spans
        .iter()
        .zip(audio)
        .filter(|(_, a)| a.complete)
        .map(|(span, a)| (span.len(), a.samples))
        .collect();
    let (known_chars, known_samples) = complete
        .iter()
        .fold((0, 0), |(c, s), (chars, samples)| (c + chars, s + samples));
    let mut heard = 0;
    let mut start = 0u64;
    for (span, a) in spans.iter().zip(audio) {
        let length = if a.complete || known_chars == 0 {
            a.samples
        } else {
            // Still arriving: at least what came, else as long as its characters suggest.
            a.samples
                .max(span.len() as u64 * known_samples / known_chars as u64)
        };
        if played >= start + length && a.complete {
            heard = span.end;
            start += length;
            continue;
        }
        if length == 0 || played <= start {
            break;
        }
        let share = (played - start) as f64 / length as f64;
        let cut = span.start + ((span.len() as f64) * share.min(1.0)) as usize;
        // Back to the end of the last whole word before the cut.
        let word_end = (span.start..=cut)
            .rev()
            .find(|&at| {
                at == span.start
                    || (chars[at - 1].is_alphanumeric()
                        && chars.get(at).is_none_or(|c| !c.is_alphanumeric()))
            })
            .unwrap_or(span.start);
        if word_end > span.start {
            // A word's trailing punctuation ("again.", "dog,") belongs to it.
            let tail = chars[word_end..span.end.max(word_end)]
                .iter()
                .take_while(|c| !c.is_whitespace() && !c.is_alphanumeric())
                .count();
            heard = word_end + tail;
        }
        break;
    }
    heard as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "First sentence here. Second one follows now.";

    fn spans() -> Vec<Range<usize>> {
        vec![0..20, 21..44]
    }

    fn done(samples: u64) -> SegmentAudio {
        SegmentAudio {
            samples,
            complete: true,
        }
    }

    #[test]
    fn whole_segments_and_a_word_boundary_within_the_next() {
        let audio = [done(2000), done(2300)];
        assert_eq!(heard_chars(TEXT, &spans(), &audio, 0), 0);
        assert_eq!(
            heard_chars(TEXT, &spans(), &audio, 2000),
            20,
            "the first sentence"
        );
        // 40% into the second segment: 9 of its 23 characters ("Second on"), back to a word.
        let heard = heard_chars(TEXT, &spans(), &audio, 2000 + 920) as usize;
        let text: String = TEXT.chars().take(heard).collect();
        assert_eq!(text, "First sentence here. Second");
        assert_eq!(heard_chars(TEXT, &spans(), &audio, 10_000), 44, "all of it");
    }

    #[test]
    fn inside_the_first_word_nothing_of_the_segment_counts() {
        let audio = [done(2000), done(2300)];
        let heard = heard_chars(TEXT, &spans(), &audio, 100);
        assert_eq!(heard, 0);
    }

    #[test]
    fn a_segment_still_arriving_is_estimated_from_the_others() {
        // The second segment has 500 samples so far, but its 23 characters suggest 2300.
        let audio = [
            done(2000),
            SegmentAudio {
                samples: 500,
                complete: false,
            },
        ];
        let heard = heard_chars(TEXT, &spans(), &audio, 2000 + 460) as usize;
        let text: String = TEXT.chars().take(heard).collect();
        assert_eq!(text, "First sentence here.", "20% in: not a whole word yet");
    }

    #[test]
    fn every_estimate_is_a_prefix_ending_on_a_word() {
        let audio = [done(2000), done(2300)];
        let chars: Vec<char> = TEXT.chars().collect();
        let mut last = 0;
        for played in (0..=4300).step_by(37) {
            let heard = heard_chars(TEXT, &spans(), &audio, played) as usize;
            assert!(heard >= last, "never goes back");
            last = heard;
            assert!(heard == 0 || !chars[heard - 1].is_whitespace());
            assert!(
                heard == 0 || heard == chars.len() || chars[heard].is_whitespace(),
                "{played}: {heard}"
            );
        }
    }
}
