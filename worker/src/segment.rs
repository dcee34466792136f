//! Splits text into upstream segments of at most Groq's 200 characters.
//!
//! Cuts prefer, in order: the end of a sentence, the end of a clause, a space, and only then a
//! hard cut (never between a letter and its combining marks, such as Arabic diacritics). A
//! bracketed vocal direction like `[cheerful]` is never cut. The first segment is kept shorter
//! so the first audio arrives sooner; the rest are packed as full as the boundaries allow.
//! Lengths count Unicode scalar values, as Groq does.

/// Upstream limit on characters per request.
pub const SEGMENT_MAX_CHARS: usize = 200;

/// Target length of the first segment, so the first audio comes fast.
pub const FIRST_SEGMENT_CHARS: usize = 100;

const SENTENCE_ENDS: &[char] = &['.', '!', '?', '…', '؟', '۔', '\n'];
const CLAUSE_ENDS: &[char] = &[',', ';', ':', '—', '–', '،', '؛'];
const CLOSERS: &[char] = &['"', '\'', '”', '’', ')', '»', ']'];

/// How good a place to cut is; higher is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Boundary {
    Hard,
    Word,
    Clause,
    Sentence,
}

/// Splits `text` into trimmed, non-empty segments of at most `max_chars`, the first at most
/// `first_chars` where a boundary allows.
pub fn split(text: &str, max_chars: usize, first_chars: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let boundaries = classify(&chars);
    let mut segments = Vec::new();
    let mut start = skip_space(&chars, 0);
    while start < chars.len() {
        let limit = if segments.is_empty() {
            first_chars.min(max_chars)
        } else {
            max_chars
        };
        let end = if chars.len() - start <= limit {
            chars.len()
        } else {
            best_cut(&chars, &boundaries, start, limit)
        };
        let segment: String = chars[start..end].iter().collect();
        let segment = segment.trim();
        if !segment.is_empty() {
            segments.push(segment.to_owned());
        }
        start = skip_space(&chars, end);
    }
    segments
}

fn skip_space(chars: &[char], mut at: usize) -> usize {
    while at < chars.len() && chars[at].is_whitespace() {
        at += 1;
    }
    at
}

/// `boundaries[i]` rates cutting just before `chars[i]`. Only a cut followed by white space (or
/// the end) and outside any `[...]` vocal direction is a real boundary.
fn classify(chars: &[char]) -> Vec<Boundary> {
    let mut out = vec![Boundary::Hard; chars.len() + 1];
    let mut depth = 0usize;
    for cut in 1..=chars.len() {
        match chars[cut - 1] {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        let at_space = chars.get(cut).is_none_or(|c| c.is_whitespace());
        if depth > 0 || !at_space {
            continue;
        }
        // Look through closing quotes and brackets to the punctuation they follow.
        let mut k = cut - 1;
        while k > 0 && CLOSERS.contains(&chars[k]) {
            k -= 1;
        }
        out[cut] = if SENTENCE_ENDS.contains(&chars[k]) || chars.get(cut) == Some(&'\n') {
            Boundary::Sentence
        } else if CLAUSE_ENDS.contains(&chars[k]) {
            Boundary::Clause
        } else {
            Boundary::Word
        };
    }
    out
}

fn is_combining(c: Option<char>) -> bool {
    matches!(
        c,
        Some(
            '\u{0300}'..='\u{036F}'
            | '\u{064B}'..='\u{065F}'
            | '\u{0670}'
            | '\u{06D6}'..='\u{06ED}'
            | '\u{200C}'
            | '\u{200D}',
        )
    )
}

/// The cut after `start` within `limit` characters at the best boundary available.
fn best_cut(chars: &[char], boundaries: &[Boundary], start: usize, limit: usize) -> usize {
    let window = start + 1..=start + limit;
    let best = window
        .clone()
        .rev()
        .map(|cut| (boundaries[cut], cut))
        .max_by_key(|&(kind, cut)| (kind, cut))
        .expect("window is not empty");
    match best {
        (Boundary::Hard, _) => window
            .rev()
            .find(|&cut| !is_combining(chars.get(cut).copied()))
            .unwrap_or(start + limit),
        (_, cut) => cut,
    }
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
    fn falls_back_to_clauses_then_words_then_hard_cuts() {
        let clauses = "one two three, ".repeat(30);
        assert!(split_default(&clauses).iter().all(|s| s.ends_with(',')));
        let words = "word ".repeat(100);
        assert!(split_default(&words).iter().all(|s| s.ends_with("word")));
        let blob = "x".repeat(450);
        let segments = split_default(&blob);
        assert_eq!(
            segments.iter().map(|s| s.len()).collect::<Vec<_>>(),
            vec![100, 200, 150]
        );
    }

    #[test]
    fn arabic_punctuation_and_diacritics() {
        let sentence = "مَرْحَبًا بِكُمْ فِي الْعَالَمِ، كَيْفَ حَالُكُمْ الْيَوْمَ؟ ";
        let text = sentence.repeat(12);
        let segments = split_default(&text);
        assert!(segments.len() > 1);
        assert!(segments.iter().all(|s| s.ends_with('؟')), "{segments:?}");
        let no_spaces = "بِكُمْ".repeat(80);
        for s in split_default(&no_spaces) {
            assert!(
                !is_combining(s.chars().next()),
                "a mark never starts a segment"
            );
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
    fn closing_quotes_follow_their_sentence() {
        let text = format!("{}\"Stop.\" {}", "a ".repeat(40), "b ".repeat(60));
        let segments = split_default(&text);
        assert!(segments[0].ends_with("\"Stop.\""), "{segments:?}");
    }

    #[test]
    fn random_texts_keep_every_character() {
        let alphabet: Vec<char> = "ab cd. ef, gh! [x y] مَر؟ ،\n".chars().collect();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..500 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 900) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            split_default(&text);
        }
    }
}
