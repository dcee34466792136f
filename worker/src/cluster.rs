//! Where a hard cut may fall: between user-perceived characters (extended grapheme clusters),
//! by the rules of Unicode's UAX #29 that matter for the text the voices speak, without its
//! tables (a twentieth of the shipped Worker).
//!
//! Kept together: a character and the combining marks after it (Latin, Greek, Cyrillic, Hebrew,
//! Arabic and Syriac marks, Devanagari signs, and the general combining blocks), variation
//! selectors, emoji skin tones and tags, anything joined by a zero-width joiner, pairs of
//! regional indicators (flags), and CR LF. Marks of other scripts outside these ranges may be
//! split, and only by a hard cut, which happens only in a run of text with no white space
//! longer than a segment.

/// Ranges of characters that extend the one before them.
const EXTENDERS: [(u32, u32); 30] = [
    (0x0300, 0x036F),
    (0x0483, 0x0489),
    (0x0591, 0x05BD),
    (0x05BF, 0x05BF),
    (0x05C1, 0x05C2),
    (0x05C4, 0x05C5),
    (0x05C7, 0x05C7),
    (0x0610, 0x061A),
    (0x064B, 0x065F),
    (0x0670, 0x0670),
    (0x06D6, 0x06DC),
    (0x06DF, 0x06E4),
    (0x06E7, 0x06E8),
    (0x06EA, 0x06ED),
    (0x0711, 0x0711),
    (0x0730, 0x074A),
    (0x0898, 0x089F),
    (0x08CA, 0x08E1),
    (0x08E3, 0x0903),
    (0x093A, 0x094F),
    (0x0951, 0x0957),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x200C, 0x200D),
    (0x20D0, 0x20FF),
    (0xFE00, 0xFE0F),
    (0xFE20, 0xFE2F),
    (0x1F3FB, 0x1F3FF),
    (0xE0020, 0xE007F),
    (0xE0100, 0xE01EF),
];

const ZWJ: char = '\u{200D}';

fn extends(c: char) -> bool {
    let c = u32::from(c);
    EXTENDERS
        .iter()
        .any(|&(low, high)| (low..=high).contains(&c))
}

fn regional_indicator(c: char) -> bool {
    ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
}

/// Whether a cluster starts at `chars[at]` (true at 0 and at the end).
pub fn starts_at(chars: &[char], at: usize) -> bool {
    let (Some(&before), Some(&here)) =
        (at.checked_sub(1).and_then(|i| chars.get(i)), chars.get(at))
    else {
        return true;
    };
    if (before == '\r' && here == '\n') || extends(here) || before == ZWJ {
        return false;
    }
    if regional_indicator(before) && regional_indicator(here) {
        // Flags pair up from the start of a run of indicators.
        let run = chars[..at]
            .iter()
            .rev()
            .take_while(|&&c| regional_indicator(c))
            .count();
        return run % 2 == 0;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters(text: &str) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut out: Vec<String> = Vec::new();
        for (at, c) in chars.iter().enumerate() {
            if starts_at(&chars, at) {
                out.push(String::new());
            }
            out.last_mut().expect("a cluster starts at 0").push(*c);
        }
        out
    }

    #[test]
    fn sequences_stay_whole() {
        let family = "👨\u{200D}👩\u{200D}👧\u{200D}👦";
        assert_eq!(clusters(&format!("a{family}b")), ["a", family, "b"]);
        assert_eq!(clusters("🇸🇦🇬🇧🇺"), ["🇸🇦", "🇬🇧", "🇺"]);
        assert_eq!(clusters("👍🏽!"), ["👍🏽", "!"]);
        assert_eq!(clusters("❤\u{FE0F}x"), ["❤\u{FE0F}", "x"]);
        assert_eq!(clusters("e\u{301}\r\n"), ["e\u{301}", "\r\n"]);
        // Arabic with its vowel marks: three letters, each with its mark.
        assert_eq!(clusters("كَتَبَ"), ["كَ", "تَ", "بَ"]);
    }

    #[test]
    fn plain_text_is_one_character_each() {
        assert_eq!(clusters("ab c"), ["a", "b", " ", "c"]);
        let chars: Vec<char> = "ab".chars().collect();
        assert!(starts_at(&chars, 0) && starts_at(&chars, 2));
    }
}
