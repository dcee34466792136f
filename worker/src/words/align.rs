//! Words placed on a segment's loudness envelope: syllable nuclei (loud peaks) and the gaps
//! between them (pauses, closures, dips) are found in the audio; then one dynamic programme
//! chooses, for each word, the gap it starts at, so that each word holds about as many nuclei
//! as it has syllables, lasts about as long as its weight says, starts at a deep gap, and the
//! pauses fall where the punctuation asks for them.

use super::text::{Pause, Word};

/// How the envelope is smoothed for peaks and dips: this many frames on each side.
const SMOOTH_FRAMES: usize = 3;

/// Loud means at most this far below the segment's loud level (its 95th percentile).
const BELOW_LOUD_DB: f64 = 32.0;

/// Audio whose loud level is below this (in dB of a 16-bit sample's square, an amplitude of
/// about 10) holds nothing said.
const SILENCE_DB: f64 = 20.0;

/// A nucleus is the loudest frame this many frames on each side of it.
const PEAK_FRAMES: usize = 12;

/// Two nuclei are two only if the audio dips this much between them.
const PROMINENCE_DB: f64 = 3.0;

/// A run of quiet frames this long is a pause (60 ms).
const PAUSE_FRAMES: usize = 12;

/// The spread allowed around a word's expected length, in natural log units.
const DURATION_SIGMA: f64 = 0.6;

/// The spread allowed around a word's expected nuclei.
const SYLLABLE_SIGMA: f64 = 1.0;

/// What a dip's depth (in dB, at most 20) is worth as a word's start.
const DEPTH_WORTH: f64 = 0.06;

/// What a pause is worth as a start, and a closure's silence, in dB of depth.
const PAUSE_DEPTH: f64 = 30.0;
const CLOSURE_DEPTH: f64 = 20.0;

/// The cost of punctuation that asks for a pause where there is none, by its kind.
const MISSED_CLAUSE: f64 = 1.5;
const MISSED_SENTENCE: f64 = 3.0;

/// The cost of a pause after a word whose punctuation asks for none.
const UNASKED_PAUSE: f64 = 1.0;

/// The cost of a pause inside a word.
const PAUSE_IN_WORD: f64 = 4.0;

/// The most gaps between nuclei a word may span beyond its syllables (the search stays linear).
const SPAN_SLACK: usize = 6;

/// How far a word that opens softly starts past its gap, as a share of the way to its first
/// nucleus: the gap lies in the last sound of the word before. (Measured against espeak-ng's
/// word events, `scripts/bench words`: starts within 50 ms from 73% of words to 80%.)
const SOFT_ONSET_SHARE: f64 = 1.0 / 3.0;

/// Where a word may start.
#[derive(Debug, Clone, Copy)]
struct Gap {
    /// The frame a word starting here starts at.
    start: usize,
    /// The frame the word before it ends at.
    end: usize,
    /// How clearly it parts two words, in dB.
    depth: f64,
    pause: bool,
    /// Nuclei before it.
    nuclei: usize,
}

/// The frame each word starts at and the frame it ends at, for `words` said in `frames` (the
/// mean square of each frame); `None` when the audio holds nothing loud.
pub fn align(words: &[Word], frames: &[f32]) -> Option<Vec<(usize, usize)>> {
    let n = frames.len();
    if words.is_empty() || n == 0 {
        return None;
    }
    let db: Vec<f64> = (0..n)
        .map(|i| {
            let (a, b) = (
                i.saturating_sub(SMOOTH_FRAMES),
                (i + SMOOTH_FRAMES + 1).min(n),
            );
            let mean = frames[a..b].iter().map(|&e| f64::from(e)).sum::<f64>() / (b - a) as f64;
            10.0 * (mean + 1.0).log10()
        })
        .collect();
    let mut sorted = db.clone();
    let (_, &mut loud_level, _) =
        sorted.select_nth_unstable_by((n * 95 / 100).min(n - 1), f64::total_cmp);
    if loud_level < SILENCE_DB {
        return None;
    }
    let threshold = loud_level - BELOW_LOUD_DB;
    let loud: Vec<bool> = db.iter().map(|&d| d > threshold).collect();
    let first = loud.iter().position(|&l| l)?;
    let last = loud.iter().rposition(|&l| l)?;
    let nuclei = nuclei(&db, &loud, first, last);
    let gaps = gaps(&db, &loud, first, &nuclei);
    let mut placed = choose(words, &gaps, first, last + 1, nuclei.len());
    open_softly(words, &nuclei, &mut placed);
    Some(placed)
}

/// Moves the start of each word that opens softly (but the first) a share of the way to the
/// nucleus after it, never past its own end.
fn open_softly(words: &[Word], nuclei: &[usize], placed: &mut [(usize, usize)]) {
    for (word, (start, end)) in words.iter().zip(placed.iter_mut()).skip(1) {
        if !word.opens_softly {
            continue;
        }
        // The nuclei are in order.
        let Some(&nucleus) = nuclei.get(nuclei.partition_point(|&q| q <= *start)) else {
            continue;
        };
        let moved = *start + ((nucleus - *start) as f64 * SOFT_ONSET_SHARE) as usize;
        *start = moved.min(end.saturating_sub(1)).max(*start);
    }
}

/// Syllable nuclei: loud frames that are the loudest around them and stand out of the dip
/// towards the nucleus before.
fn nuclei(db: &[f64], loud: &[bool], first: usize, last: usize) -> Vec<usize> {
    let n = db.len();
    let mut kept: Vec<usize> = Vec::new();
    for f in first..=last {
        let (a, b) = (f.saturating_sub(PEAK_FRAMES), (f + PEAK_FRAMES + 1).min(n));
        if !loud[f] || db[a..b].iter().any(|&v| v > db[f]) {
            continue;
        }
        if let Some(&q) = kept.last() {
            if f - q < PEAK_FRAMES {
                continue;
            }
            let dip = db[q..=f].iter().copied().fold(f64::MAX, f64::min);
            if db[q].min(db[f]) - dip < PROMINENCE_DB {
                // The louder of the two stands.
                if db[f] > db[q] {
                    kept.pop();
                    kept.push(f);
                }
                continue;
            }
        }
        kept.push(f);
    }
    kept
}

/// Where words may start: the start of speech, then one place in each gap between nuclei: a
/// pause or a closure's silence (a word starts where it ends), or the dip's lowest point.
fn gaps(db: &[f64], loud: &[bool], first: usize, nuclei: &[usize]) -> Vec<Gap> {
    let mut gaps = vec![Gap {
        start: first,
        end: first,
        depth: 0.0,
        pause: false,
        nuclei: 0,
    }];
    for (i, pair) in nuclei.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        let quiet_first = (a..b).find(|&f| !loud[f]);
        let quiet_last = (a..b).rev().find(|&f| !loud[f]);
        let quiet = (a..b).filter(|&f| !loud[f]).count();
        let gap = match (quiet_first, quiet_last) {
            (Some(q0), Some(q1)) if quiet >= PAUSE_FRAMES => Gap {
                start: q1,
                end: q0,
                depth: PAUSE_DEPTH,
                pause: true,
                nuclei: i + 1,
            },
            (Some(_), Some(q1)) => Gap {
                start: q1,
                end: q1,
                depth: CLOSURE_DEPTH,
                pause: false,
                nuclei: i + 1,
            },
            _ => {
                let (low_at, low) =
                    (a..b)
                        .map(|f| (f, db[f]))
                        .fold((a, f64::MAX), |m, x| if x.1 < m.1 { x } else { m });
                Gap {
                    start: low_at,
                    end: low_at,
                    depth: (db[a] - low).min(db[b] - low).min(20.0),
                    pause: false,
                    nuclei: i + 1,
                }
            }
        };
        gaps.push(gap);
    }
    gaps
}

/// The dynamic programme: for each word, the gap it starts at. `speech` runs from frame
/// `first` to `end`; `total_nuclei` were found in it.
fn choose(
    words: &[Word],
    gaps: &[Gap],
    first: usize,
    end: usize,
    total_nuclei: usize,
) -> Vec<(usize, usize)> {
    let (nw, m) = (words.len(), gaps.len());
    let paused: usize = gaps
        .iter()
        .filter(|g| g.pause)
        .map(|g| g.start + 1 - g.end)
        .sum();
    let speech = (end - first).saturating_sub(paused).max(1) as f64;
    let frames_per_weight = speech / words.iter().map(|w| w.weight).sum::<f64>();
    let total_syllables: f64 = words.iter().map(|w| w.syllables).sum();
    let nuclei_per_syllable = total_nuclei as f64 / total_syllables.max(1.0);
    // Pauses among the gaps up to each (exclusive), to cost the ones a word spans.
    let pauses_before: Vec<usize> = std::iter::once(0)
        .chain(gaps.iter().scan(0, |n, g| {
            *n += usize::from(g.pause);
            Some(*n)
        }))
        .collect();
    // What word `k` costs, starting at gap `i` and ending at frame `to`, holding `nuclei`.
    let span = |k: usize, i: usize, to: usize, nuclei: usize| -> f64 {
        let length = to.saturating_sub(gaps[i].start).max(1) as f64;
        let r = (length / (words[k].weight * frames_per_weight)).ln() / DURATION_SIGMA;
        let s = (nuclei as f64 - words[k].syllables * nuclei_per_syllable) / SYLLABLE_SIGMA;
        r * r + s * s
    };
    let inf = f64::INFINITY;
    let mut cost = vec![inf; nw * m];
    let mut back = vec![0usize; nw * m];
    cost[0] = 0.0;
    for k in 0..nw - 1 {
        let reach = words[k].syllables.ceil() as usize + SPAN_SLACK;
        for i in 0..m {
            let here = cost[k * m + i];
            if here == inf {
                continue;
            }
            for j in i + 1..m.min(i + 1 + reach) {
                let gap = &gaps[j];
                let mut add = span(k, i, gap.end, gap.nuclei - gaps[i].nuclei)
                    - DEPTH_WORTH * gap.depth
                    + (pauses_before[j] - pauses_before[i + 1]) as f64 * PAUSE_IN_WORD;
                add += match (words[k].pause, gap.pause) {
                    (Pause::Clause, false) => MISSED_CLAUSE,
                    (Pause::Sentence, false) => MISSED_SENTENCE,
                    (Pause::None, true) => UNASKED_PAUSE,
                    _ => 0.0,
                };
                let total = here + add;
                if total < cost[(k + 1) * m + j] {
                    cost[(k + 1) * m + j] = total;
                    back[(k + 1) * m + j] = i;
                }
            }
        }
    }
    let last_word = nw - 1;
    let (mut best, mut best_at) = (inf, 0);
    for i in 0..m {
        let here = cost[last_word * m + i];
        if here == inf {
            continue;
        }
        let total = here
            + span(last_word, i, end, total_nuclei - gaps[i].nuclei)
            + (pauses_before[m] - pauses_before[i + 1]) as f64 * PAUSE_IN_WORD;
        if total < best {
            (best, best_at) = (total, i);
        }
    }
    if best == inf {
        // More words than gaps: the words share the speech by their weights.
        let mut at = first as f64;
        return words
            .iter()
            .map(|w| {
                let start = at;
                at += w.weight * frames_per_weight;
                (start as usize, at as usize)
            })
            .collect();
    }
    let mut starts = vec![0; nw];
    let mut j = best_at;
    for k in (0..nw).rev() {
        starts[k] = j;
        if k > 0 {
            j = back[k * m + j];
        }
    }
    (0..nw)
        .map(|k| {
            let word_end = match starts.get(k + 1) {
                Some(&next) => gaps[next].end,
                None => end,
            };
            (gaps[starts[k]].start, word_end)
        })
        .collect()
}
