//! Splits text into upstream segments of at most Groq's 200 characters.
//!
//! Cuts prefer, in order: the end of a sentence, the end of a clause, a space, and only then a
//! hard cut, which falls only between extended grapheme clusters (never inside an emoji
//! sequence, nor between a letter and its combining marks such as Arabic diacritics). A
//! bracketed vocal direction like `[cheerful]` is never cut; a `[` that no `]` closes soon after
//! is an ordinary character. The first segment is kept shorter so the first audio arrives
//! sooner, unless it has no boundary at all in that length; the rest are packed as full as the
//! boundaries allow. Lengths count Unicode scalar values, as Groq does.
//!
//! Text that is still being written (protocol v2 `append`) is cut one segment at a time by
//! [`next_span`]: only where what follows is already known, so a later append can never turn a
//! cut into one inside a word, a number, a grapheme cluster or a vocal direction.

use std::ops::Range;

use crate::cluster;

/// Upstream limit on characters per request.
pub const SEGMENT_MAX_CHARS: usize = 200;

/// Target length of the first segment, so the first audio comes fast whatever the text's
/// length (the upstream's time to first byte grows with the segment).
pub const FIRST_SEGMENT_CHARS: usize = 50;

/// How many times longer than the one before a segment may be. The upstream generates about
/// 100 characters a second and speech runs at about 15, so while one segment plays, the next,
/// requested with it, is ready even at this ratio: a short first segment never leaves a gap.
pub const RAMP: usize = 4;

/// The longest a segment may be: `first` for the first one, then [`RAMP`] times the one
/// before, at most `max`.
pub fn segment_limit(previous: Option<usize>, max: usize, first: usize) -> usize {
    previous
        .map_or(first, |p| p.saturating_mul(RAMP))
        .clamp(1, max)
}

/// Longest bracketed vocal direction, brackets included; a longer `[...]` is ordinary text.
const MAX_DIRECTION_CHARS: usize = 40;

const SENTENCE_ENDS: &[char] = &['.', '!', '?', '…', '؟', '۔', '\n'];
const CLAUSE_ENDS: &[char] = &[',', ';', ':', '—', '–', '،', '؛'];
const CLOSERS: &[char] = &['"', '\'', '”', '’', ')', '»', ']'];

/// How good a place to cut is; higher is better. `None` marks a place that must not be cut:
/// inside a grapheme cluster or a vocal direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Boundary {
    None,
    Hard,
    Word,
    Clause,
    Sentence,
}

/// Whether `text` holds anything to speak: a letter, a digit, or a pictograph. Text of only
/// white space, punctuation, zero-width or format characters is refused like empty text.
pub fn is_speakable(text: &str) -> bool {
    text.chars().any(|c| {
        c.is_alphanumeric() || matches!(c, '\u{2600}'..='\u{27BF}' | '\u{1F000}'..='\u{1FAFF}')
    })
}

/// Splits `text` into trimmed, non-empty segments of at most `max_chars`, the first at most
/// `first_chars` where a boundary allows.
pub fn split(text: &str, max_chars: usize, first_chars: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    split_spans(text, max_chars, first_chars)
        .into_iter()
        .map(|span| chars[span].iter().collect())
        .collect()
}

/// The segments of [`split`] as ranges of `text`'s characters (Unicode scalar values).
pub fn split_spans(text: &str, max_chars: usize, first_chars: usize) -> Vec<Range<usize>> {
    let chars: Vec<char> = text.chars().collect();
    let boundaries = classify(&chars);
    let mut spans = Vec::new();
    let mut start = skip_space(&chars, 0);
    while start < chars.len() {
        let previous = spans.last().map(Range::len);
        let limit = segment_limit(previous, max_chars, first_chars);
        let end = short_cut(&chars, &boundaries, start, limit, max_chars);
        // Trimmed: `start` is past white space; a cut may land after some.
        let mut trimmed = end;
        while trimmed > start && chars[trimmed - 1].is_whitespace() {
            trimmed -= 1;
        }
        if trimmed > start {
            spans.push(start..trimmed);
        }
        start = skip_space(&chars, end);
    }
    spans
}

/// How the text a segment is cut from may still grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEnd {
    /// No more text follows: cut as [`split_spans`] does.
    Complete,
    /// More text may follow at once: cut only at a boundary already known.
    Open,
    /// More text may follow, but none came for a while: a word boundary will do.
    Paused,
}

/// Shortest later segment cut at a clause (rather than waiting for a sentence) while more text
/// may follow.
const MIN_CLAUSE_SEGMENT_CHARS: usize = 40;

/// Abbreviations whose full stop does not end a sentence (lower case, without the stop).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "prof", "no", "e.g", "i.e", "mt",
    "inc", "ltd", "co", "fig", "approx",
];

/// The next segment of `text` from character `from` on, or `None` to wait for more text; its
/// length is bounded by [`segment_limit`] after the `previous` one (`None` for a message's
/// first segment, which is cut at the first sentence). While the text is [`TextEnd::Open`], a cut needs the character after it (white
/// space) already known, except after `!`, `?` or a full stop that plainly ends a sentence;
/// a later segment waits for a sentence end, or a clause end past
/// [`MIN_CLAUSE_SEGMENT_CHARS`], unless `max_chars` are waiting; a vocal direction whose `]`
/// may still come is never cut.
pub fn next_span(
    text: &str,
    from: usize,
    previous: Option<usize>,
    max_chars: usize,
    first_chars: usize,
    end: TextEnd,
) -> Option<Range<usize>> {
    let first = previous.is_none();
    let chars: Vec<char> = text.chars().collect();
    let start = skip_space(&chars, from);
    if start >= chars.len() {
        return None;
    }
    let tail: String = chars[start..].iter().collect();
    let limit = segment_limit(previous, max_chars, first_chars);
    let shift = |span: Range<usize>| start + span.start..start + span.end;
    if end == TextEnd::Complete {
        return split_spans(&tail, max_chars, limit)
            .into_iter()
            .next()
            .map(shift);
    }
    let tail_chars: Vec<char> = tail.chars().collect();
    let len = tail_chars.len();
    let mut boundaries = classify(&tail_chars);
    boundaries[len] = match end {
        _ if ends_a_sentence(&tail_chars) => Boundary::Sentence,
        TextEnd::Paused if !tail_chars[len - 1].is_alphanumeric() => boundaries[len],
        _ => Boundary::None,
    };
    // A `[` that its `]` may still close: nothing after it is a place to cut.
    if let Some(open) = tail_chars.iter().rposition(|&c| c == '[') {
        if !tail_chars[open..].contains(&']') && len - open < MAX_DIRECTION_CHARS {
            boundaries[open + 1..].fill(Boundary::None);
        }
    }
    let cut_at = pick_open_cut(&tail_chars, &boundaries, first, limit, max_chars, end)?;
    let mut trimmed = cut_at;
    while trimmed > 0 && tail_chars[trimmed - 1].is_whitespace() {
        trimmed -= 1;
    }
    (trimmed > 0).then(|| shift(0..trimmed))
}

/// Where to cut text that may still grow (see [`next_span`]), or `None` to wait.
fn pick_open_cut(
    chars: &[char],
    boundaries: &[Boundary],
    first: bool,
    limit: usize,
    max: usize,
    end: TextEnd,
) -> Option<usize> {
    let len = chars.len();
    if first {
        // First audio comes from the first sentence, however short.
        if let Some(at) = (1..=len.min(limit)).find(|&at| boundaries[at] == Boundary::Sentence) {
            return Some(at);
        }
    }
    if len > max {
        return Some(short_cut(chars, boundaries, 0, limit, max));
    }
    if len > limit {
        let short = cut(chars, boundaries, 0, limit);
        if boundaries[short] >= Boundary::Word {
            return Some(short);
        }
        return (limit + 1..=len).find(|&at| boundaries[at] >= Boundary::Word);
    }
    // `max_by_key` keeps the last of equals: the latest cut of the best kind.
    let best = (1..=len).max_by_key(|&at| boundaries[at])?;
    match boundaries[best] {
        Boundary::Sentence => Some(best),
        Boundary::Clause if best >= MIN_CLAUSE_SEGMENT_CHARS => Some(best),
        Boundary::Clause | Boundary::Word if end == TextEnd::Paused => Some(best),
        _ => None,
    }
}

/// Whether text that may still grow already plainly ends a sentence: `!`, `?` and their kin,
/// or a full stop after a word that is not an abbreviation, a number or an initial (where more
/// text could still turn it into `3.14` or `...`).
fn ends_a_sentence(chars: &[char]) -> bool {
    let Some((&last, before)) = chars.split_last() else {
        return false;
    };
    if matches!(last, '!' | '?' | '؟' | '۔') {
        return true;
    }
    if last != '.' {
        return false;
    }
    let word = word_before(chars, before.len());
    word.chars().count() >= 2
        && word.chars().all(char::is_alphabetic)
        && !ABBREVIATIONS.contains(&word.as_str())
}

/// The word just before `chars[at]`, with ASCII letters in lower case (enough to compare with
/// the abbreviations; Unicode's case tables would cost the shipped Worker 10 KB).
fn word_before(chars: &[char], at: usize) -> String {
    let start = chars[..at]
        .iter()
        .rposition(|c| c.is_whitespace())
        .map_or(0, |space| space + 1);
    chars[start..at]
        .iter()
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Whether the full stop at `chars[at]` ends an abbreviation such as "Dr." rather than a
/// sentence.
fn abbreviation_before(chars: &[char], at: usize) -> bool {
    chars[at] == '.' && ABBREVIATIONS.contains(&word_before(chars, at).as_str())
}

fn skip_space(chars: &[char], mut at: usize) -> usize {
    while at < chars.len() && chars[at].is_whitespace() {
        at += 1;
    }
    at
}

/// For each `[` that opens a vocal direction, the index of the `]` closing it.
fn directions(chars: &[char]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        if chars[at] == '[' {
            let window = &chars[at + 1..chars.len().min(at + MAX_DIRECTION_CHARS)];
            if let Some(len) = window.iter().position(|&c| c == ']' || c == '[') {
                if window[len] == ']' {
                    found.push((at, at + 1 + len));
                    at += len + 2;
                    continue;
                }
            }
        }
        at += 1;
    }
    found
}

/// `boundaries[i]` rates cutting just before `chars[i]`. Only a cut followed by white space (or
/// the end) and outside any vocal direction is better than a hard cut.
fn classify(chars: &[char]) -> Vec<Boundary> {
    let mut out = vec![Boundary::None; chars.len() + 1];
    // Hard cuts only between grapheme clusters.
    for (at, boundary) in out.iter_mut().enumerate() {
        if cluster::starts_at(chars, at) {
            *boundary = Boundary::Hard;
        }
    }
    for (open, close) in directions(chars) {
        out[open + 1..=close].fill(Boundary::None);
    }
    for (cut, boundary) in out.iter_mut().enumerate().skip(1) {
        let at_space = chars.get(cut).is_none_or(|c| c.is_whitespace());
        if *boundary == Boundary::None || !at_space {
            continue;
        }
        // Look through closing quotes and brackets to the punctuation they follow.
        let mut k = cut - 1;
        while k > 0 && CLOSERS.contains(&chars[k]) {
            k -= 1;
        }
        let full_stop = SENTENCE_ENDS.contains(&chars[k]) && !abbreviation_before(chars, k);
        *boundary = if full_stop || chars.get(cut) == Some(&'\n') {
            Boundary::Sentence
        } else if CLAUSE_ENDS.contains(&chars[k]) {
            Boundary::Clause
        } else {
            Boundary::Word
        };
    }
    out
}

/// The best cut after `start` within `limit` characters: the best kind of boundary, the latest
/// of that kind; the whole rest when it fits.
fn cut(chars: &[char], boundaries: &[Boundary], start: usize, limit: usize) -> usize {
    if chars.len() - start <= limit {
        return chars.len();
    }
    // `max_by_key` keeps the last of equals: the latest cut of the best kind.
    let best = (start + 1..=start + limit)
        .max_by_key(|&at| boundaries[at])
        .expect("the window is not empty");
    if boundaries[best] == Boundary::None {
        // One grapheme cluster longer than the limit: cut it, as nothing else fits.
        start + limit
    } else {
        best
    }
}

/// A segment's cut within `limit` characters (see [`segment_limit`]), at a word boundary or
/// better; failing that, the whole rest if it fits in `max` (one request instead of two), else
/// the earliest such boundary within `max`; failing that, a hard cut within `limit`.
fn short_cut(
    chars: &[char],
    boundaries: &[Boundary],
    start: usize,
    limit: usize,
    max: usize,
) -> usize {
    let short = cut(chars, boundaries, start, limit);
    if short == chars.len() || boundaries[short] >= Boundary::Word {
        return short;
    }
    if chars.len() - start <= max {
        return chars.len();
    }
    (start + limit + 1..=start + max)
        .find(|&at| boundaries[at] >= Boundary::Word)
        .unwrap_or(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, segments: &[String]) {
        for s in segments {
            assert!(!s.is_empty());
            assert!(s.chars().count() <= SEGMENT_MAX_CHARS, "too long: {s:?}");
            assert_eq!(s.trim(), s);
        }
        let squash = |t: &str| t.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert_eq!(
            squash(&segments.concat()),
            squash(text),
            "nothing lost or reordered"
        );
    }

    fn split_default(text: &str) -> Vec<String> {
        let segments = split(text, SEGMENT_MAX_CHARS, FIRST_SEGMENT_CHARS);
        check(text, &segments);
        let spans = split_spans(text, SEGMENT_MAX_CHARS, FIRST_SEGMENT_CHARS);
        let chars: Vec<char> = text.chars().collect();
        for (span, segment) in spans.iter().zip(&segments) {
            let at: String = chars[span.clone()].iter().collect();
            assert_eq!(&at, segment, "spans name the segments");
        }
        assert!(spans.windows(2).all(|w| w[0].end <= w[1].start), "in order");
        segments
    }

    #[test]
    fn short_text_is_one_segment() {
        assert_eq!(split_default("  Hello there.  "), vec!["Hello there."]);
        assert!(split_default("   \n ").is_empty());
    }

    #[test]
    fn first_segment_is_short_and_ends_at_a_sentence() {
        let text = "Hi! This is the first sentence. ".to_owned()
            + &"Then a long one goes on and on. ".repeat(12);
        let segments = split_default(&text);
        assert!(segments[0].chars().count() <= FIRST_SEGMENT_CHARS);
        assert!(segments[0].ends_with('.'));
        assert!(
            segments[1].chars().count() > FIRST_SEGMENT_CHARS,
            "later segments are packed"
        );
        assert!(segments.iter().all(|s| s.ends_with('.')));
    }

    #[test]
    fn segments_ramp_up_from_a_short_first_one() {
        let text = "Sure. ".to_owned()
            + &"The answer goes on for a while, sentence after sentence. ".repeat(30);
        let lengths: Vec<usize> = split_default(&text)
            .iter()
            .map(|s| s.chars().count())
            .collect();
        assert_eq!(lengths[0], 5, "the first sentence, however short");
        for pair in lengths.windows(2) {
            assert!(pair[1] <= pair[0] * RAMP, "{lengths:?}");
        }
        assert!(
            lengths.iter().filter(|&&l| l > 150).count() > 5,
            "then full: {lengths:?}"
        );
        // First audio does not wait for the whole of a mid-length text.
        let mid = "A text of about a hundred characters, said in one go, with no sentence end in its first fifty.";
        assert!(split_default(mid)[0].chars().count() <= FIRST_SEGMENT_CHARS);
    }

    #[test]
    fn falls_back_to_clauses_then_words_then_hard_cuts() {
        let clauses = "one two three, ".repeat(30);
        assert!(split_default(&clauses).iter().all(|s| s.ends_with(',')));
        let words = "word ".repeat(100);
        assert!(split_default(&words).iter().all(|s| s.ends_with("word")));
        let blob = "x".repeat(450);
        let segments = split_default(&blob);
        assert_eq!(
            segments.iter().map(|s| s.len()).collect::<Vec<_>>(),
            vec![50, 200, 200]
        );
    }

    #[test]
    fn a_first_segment_without_a_boundary_in_its_short_length_reaches_for_one() {
        let url = format!("https://example.com/{}", "a".repeat(120));
        let text = format!(
            "{url} is where it lives. {}",
            "More words follow. ".repeat(20)
        );
        let segments = split_default(&text);
        assert_eq!(
            segments[0], url,
            "cut at the first space, not inside the URL"
        );
        let whole = format!("{} end", "z".repeat(150));
        assert_eq!(split_default(&whole), vec![whole.clone()], "it fits whole");
    }

    #[test]
    fn arabic_punctuation_and_diacritics() {
        let sentence = "مَرْحَبًا بِكُمْ فِي الْعَالَمِ، كَيْفَ حَالُكُمْ الْيَوْمَ؟ ";
        let text = sentence.repeat(12);
        let segments = split_default(&text);
        assert!(segments.len() > 1);
        assert!(
            segments
                .iter()
                .all(|s| s.ends_with('؟') || s.ends_with('،')),
            "{segments:?}"
        );
        assert!(
            segments[1..].iter().all(|s| s.ends_with('؟')),
            "{segments:?}"
        );
        let no_spaces = "بِكُمْ".repeat(80);
        for s in split_default(&no_spaces) {
            let first = s.chars().next().unwrap();
            assert!(
                !('\u{064B}'..='\u{065F}').contains(&first),
                "a mark never starts a segment"
            );
        }
    }

    #[test]
    fn hard_cuts_never_split_an_emoji_sequence() {
        let family = "👨\u{200D}👩\u{200D}👧\u{200D}👦";
        for sequence in [family, "🇸🇦", "👍🏽", "❤\u{FE0F}", "e\u{301}"] {
            for pad in 0..8 {
                let text = format!("{}{}", "x".repeat(pad), sequence.repeat(120));
                for s in split_default(&text) {
                    let body = s.trim_start_matches('x');
                    assert!(
                        body.is_empty() || body.len() % sequence.len() == 0,
                        "{sequence:?} split: {s:?}"
                    );
                    assert!(body.starts_with(sequence) || body.is_empty());
                }
            }
        }
    }

    #[test]
    fn vocal_directions_stay_whole() {
        let text = format!("{} [very cheerful] {}", "a ".repeat(45), "b ".repeat(80));
        for s in split_default(&text) {
            assert_eq!(s.matches('[').count(), s.matches(']').count(), "{s:?}");
        }
    }

    #[test]
    fn an_unclosed_bracket_is_ordinary_text() {
        let text = format!("Note [1 {}", "Sentence one is here. ".repeat(30));
        let segments = split_default(&text);
        assert!(
            segments.iter().all(|s| s.ends_with('.')),
            "sentence boundaries still count after a stray [: {segments:?}"
        );
    }

    #[test]
    fn closing_quotes_follow_their_sentence() {
        let text = format!("{}\"Stop.\" {}", "a ".repeat(20), "b ".repeat(60));
        let segments = split_default(&text);
        assert!(segments[0].ends_with("\"Stop.\""), "{segments:?}");
    }

    #[test]
    fn only_letters_digits_and_pictographs_are_speakable() {
        for text in ["Hi", "42", "مرحبا", "😀", "a."] {
            assert!(is_speakable(text), "{text:?}");
        }
        for text in [
            "",
            "   ",
            "...!?",
            "\u{200B}\u{200D}\u{FEFF}",
            "\u{FFFD}",
            "—,;",
        ] {
            assert!(!is_speakable(text), "{text:?}");
        }
    }

    /// Cuts `text` as it grows by `pieces`, taking every segment [`next_span`] offers before
    /// the next piece arrives, then the rest once it is complete.
    fn split_growing(text: &str, piece_len: usize) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut spans: Vec<Range<usize>> = Vec::new();
        // Takes every segment `next_span` offers of `so_far`, as the session would.
        let mut take_all = |so_far: &str, end: TextEnd| {
            let mut from = spans.last().map_or(0, |s| s.end);
            while let Some(span) = next_span(
                so_far,
                from,
                spans.last().map(Range::len),
                SEGMENT_MAX_CHARS,
                FIRST_SEGMENT_CHARS,
                end,
            ) {
                from = span.end;
                spans.push(span);
            }
        };
        let mut known = 0;
        while known < chars.len() {
            known = (known + piece_len).min(chars.len());
            let so_far: String = chars[..known].iter().collect();
            take_all(&so_far, TextEnd::Open);
        }
        take_all(text, TextEnd::Complete);
        let segments: Vec<String> = spans
            .iter()
            .map(|s| chars[s.clone()].iter().collect())
            .collect();
        check(text, &segments);
        segments
    }

    #[test]
    fn growing_text_is_cut_only_where_the_next_character_is_known() {
        let text = "Hello there! It costs 3.14 dollars, or so. Dr. Smith said [very cheerful] \
                    that it is fine. "
            .repeat(6);
        for piece in 1..6 {
            let segments = split_growing(&text, piece);
            assert_eq!(segments[0], "Hello there!", "the first sentence goes first");
            for s in &segments {
                assert!(!s.ends_with("3.") && !s.ends_with("Dr."), "{s:?}");
                assert_eq!(s.matches('[').count(), s.matches(']').count(), "{s:?}");
            }
            assert!(
                segments[1..]
                    .iter()
                    .all(|s| s.ends_with('.') || s.ends_with('!')),
                "later segments end at sentences: {segments:?}"
            );
        }
    }

    #[test]
    fn growing_text_without_sentences_is_cut_at_words_within_the_limit() {
        let text = "word ".repeat(120);
        for piece in [1, 3, 7] {
            let segments = split_growing(&text, piece);
            assert!(segments.iter().all(|s| s.ends_with("word")), "{segments:?}");
        }
        let text = "one two three, ".repeat(30);
        let segments = split_growing(&text, 2);
        assert!(segments.iter().all(|s| s.ends_with(',')), "{segments:?}");
    }

    #[test]
    fn open_text_waits_and_paused_text_settles_for_a_word() {
        let next = |text: &str, end| {
            next_span(
                text,
                0,
                Some(SEGMENT_MAX_CHARS),
                SEGMENT_MAX_CHARS,
                FIRST_SEGMENT_CHARS,
                end,
            )
        };
        assert_eq!(next("and then we", TextEnd::Open), None);
        assert_eq!(next("and then we", TextEnd::Paused), Some(0..8));
        assert_eq!(next("and then we ", TextEnd::Paused), Some(0..11));
        assert_eq!(next("It costs 3.", TextEnd::Open), None);
        assert_eq!(next("It is done.", TextEnd::Open), Some(0..11));
        assert_eq!(next("Wait for it [very", TextEnd::Paused), Some(0..11));
        assert_eq!(next("   ", TextEnd::Paused), None);
    }

    #[test]
    fn random_texts_keep_every_character() {
        let alphabet: Vec<char> = "ab cd. ef, gh! [x y] مَر؟ ،\n👍🏽\u{200D}[".chars().collect();
        let mut rng = orpheus_test_support::rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..500 {
            let len = rng.usize(..900);
            let text: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            split_default(&text);
            split_growing(&text, 1 + rng.usize(..6));
        }
    }
}
