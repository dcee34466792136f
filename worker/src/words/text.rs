//! The words of a segment's text, as they will be said: where each is, how long it should
//! take relative to the others (its syllables, numbers read out in English), and the pause its
//! punctuation calls for. Bracketed vocal directions (`[cheerful]`) are not said.

use std::ops::Range;

/// The pause that follows a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// None: the next word follows on.
    None,
    /// A comma, a colon, a semicolon or a dash: a phrase break.
    Clause,
    /// A full stop, a question or an exclamation mark: a sentence end.
    Sentence,
}

/// One word of a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// Its characters in the segment's text.
    pub chars: Range<usize>,
    /// Its syllables, as said.
    pub syllables: f64,
    /// How long it takes, relative to the others.
    pub weight: f64,
    /// The pause after it.
    pub pause: Pause,
    /// Whether it is a word of the text (told to the client), or a symbol a voice reads out
    /// (`@`, `%`, the dot of an address), which takes time but is no word of the app's.
    pub told: bool,
    /// Whether it opens with a vowel or a glide (y, w, r): no closure or friction of its own
    /// parts it from the word before, so the dip before it lies in that word's last sound.
    pub opens_softly: bool,
}

/// Abbreviations whose full stop ends no sentence (lower case, without the stop).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "prof", "mt", "no",
];

/// Words said weakly (unstressed, reduced vowels), and how much of a syllable they count for.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "the", "to", "of", "and", "or", "in", "at", "is", "it", "as", "for", "by", "on",
];
const WEAK: f64 = 0.6;

/// The longest vocal direction, brackets included (as the relay's cutter has it).
const MAX_DIRECTION_CHARS: usize = 40;

/// The words of `text`, in order.
pub fn words_of(text: &str) -> Vec<Word> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            if let Some(close) = chars[i..]
                .iter()
                .take(MAX_DIRECTION_CHARS)
                .position(|&c| c == ']')
            {
                // A vocal direction: it sets the voice, and is not said.
                i += close + 1;
                continue;
            }
        }
        if !chars[i].is_alphanumeric() {
            if let Some(syllables) = symbol_syllables(&chars, i) {
                words.push(Word {
                    chars: i..i + 1,
                    syllables,
                    weight: weight(syllables, 3.0),
                    pause: Pause::None,
                    told: false,
                    opens_softly: false,
                });
            }
            i += 1;
            continue;
        }
        let start = i;
        i = word_end(&chars, i);
        let word: String = chars[start..i].iter().collect();
        let mut syllables = syllables(&word);
        // A function word is said weakly: its vowel often runs into its neighbour's.
        if FUNCTION_WORDS.contains(&word.to_ascii_lowercase().as_str()) {
            syllables *= WEAK;
        }
        words.push(Word {
            chars: start..i,
            syllables,
            weight: weight(syllables, (i - start) as f64),
            pause: pause_after(&chars, i, &word),
            told: true,
            opens_softly: chars[start].is_ascii_alphabetic()
                && "aeiouywr".contains(chars[start].to_ascii_lowercase()),
        });
    }
    words
}

/// How long a word of `syllables` and `letters` takes, relative to others.
fn weight(syllables: f64, letters: f64) -> f64 {
    0.12 + 0.55 * syllables + 0.035 * letters
}

/// The syllables a voice says for the symbol at `at`, if it says one: `@` "at", `%`
/// "percent", the dot of an address ("example dot com"), the slash or dash between two
/// words or numbers, and the like.
fn symbol_syllables(chars: &[char], at: usize) -> Option<f64> {
    let joined = |test: fn(char) -> bool| {
        at > 0
            && chars.get(at - 1).copied().is_some_and(test)
            && chars.get(at + 1).copied().is_some_and(test)
    };
    let syllables = match chars[at] {
        '@' | '+' | '&' | '#' | '×' => 1.0,
        '%' | '=' | '$' | '€' | '£' | '°' | '→' => 2.0,
        // Inside an address or a path: "dot", "slash".
        '.' | '/' if joined(char::is_alphabetic) => 1.0,
        // "3–5": "three to five".
        '–' | '-' if joined(|c| c.is_ascii_digit()) => 1.0,
        _ => return None,
    };
    Some(syllables)
}

/// The end of the word at `at`: letters and digits, joined inside by an apostrophe or a
/// hyphen, and a number's decimal point or thousands separator.
fn word_end(chars: &[char], at: usize) -> usize {
    let mut i = at;
    loop {
        while i < chars.len() && chars[i].is_alphanumeric() {
            i += 1;
        }
        let joins = match chars.get(i) {
            Some('\'' | '’' | '-') => true,
            Some('.' | ',') => chars[i - 1].is_ascii_digit(),
            _ => false,
        };
        if joins && chars.get(i + 1).is_some_and(|c| c.is_alphanumeric()) {
            i += 1;
        } else {
            return i;
        }
    }
}

fn pause_after(chars: &[char], at: usize, word: &str) -> Pause {
    let abbreviation = ABBREVIATIONS.contains(&word.to_ascii_lowercase().as_str());
    let mut pause = Pause::None;
    for &c in chars[at..].iter().take_while(|c| !c.is_alphanumeric()) {
        match c {
            '.' if abbreviation => {}
            // Inside an address ("example.com"): no stop.
            '.' if chars.get(at + 1).is_some_and(|c| c.is_alphanumeric()) => {}
            '.' | '!' | '?' | '…' | '\n' => pause = Pause::Sentence,
            ',' | ';' | ':' | '—' | '–' if pause == Pause::None => pause = Pause::Clause,
            '[' => break,
            _ => {}
        }
    }
    pause
}

/// Syllables of a whole number read in English.
fn number_syllables(n: u64) -> f64 {
    const UNITS: [f64; 20] = [
        2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 3.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0,
        2.0, 2.0,
    ];
    const TENS: [f64; 10] = [0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 2.0, 2.0];
    fn below_thousand(n: u64) -> f64 {
        let (hundreds, rest) = (n / 100, n % 100);
        let mut s = 0.0;
        if hundreds > 0 {
            // "… hundred"
            s += UNITS[hundreds as usize] + 2.0;
        }
        if rest >= 20 {
            s += TENS[(rest / 10) as usize];
            if rest % 10 > 0 {
                s += UNITS[(rest % 10) as usize];
            }
        } else if rest > 0 || hundreds == 0 {
            s += UNITS[rest as usize];
        }
        s
    }
    // Years are read in pairs ("nineteen sixty-nine").
    if (1100..2000).contains(&n) && !n.is_multiple_of(100) || (2010..2100).contains(&n) {
        return below_thousand(n / 100) + below_thousand(n % 100);
    }
    let mut s = 0.0;
    let mut n = n;
    // (billion, million, thousand)
    for (scale, name) in [(1_000_000_000, 3.0), (1_000_000, 2.0), (1_000, 2.0)] {
        if n >= scale {
            s += below_thousand((n / scale).min(999)) + name;
            n %= scale;
        }
    }
    if n > 0 || s == 0.0 {
        s += below_thousand(n);
    }
    s
}

/// Syllables of a word as it is said: numbers read out, letters by English spelling rules
/// (vowel groups, a silent final e, silent -es and -ed endings).
pub fn syllables(word: &str) -> f64 {
    let lower: Vec<char> = word.to_ascii_lowercase().chars().collect();
    if lower.iter().any(char::is_ascii_digit) {
        let grouped = lower.contains(&',');
        let digits: String = lower
            .iter()
            .filter(|c| c.is_ascii_digit() || **c == '.')
            .collect();
        let (whole, fraction) = digits.split_once('.').unwrap_or((&digits, ""));
        let whole = match whole.parse::<u64>() {
            // "1,250" is read as a number, never as a year.
            Ok(n) if grouped && (1100..2100).contains(&n) => number_syllables(n % 1000) + 3.0,
            Ok(n) => number_syllables(n),
            Err(_) => 2.0 * whole.len() as f64,
        };
        // "point" and each digit after it.
        let fraction = if fraction.is_empty() {
            0.0
        } else {
            1.0 + fraction.len() as f64 * 1.1
        };
        // An ordinal's suffix ("3rd") changes the word more than its length.
        let letters = lower.iter().filter(|c| c.is_alphabetic()).count();
        return whole + fraction + if letters > 2 { 1.0 } else { 0.0 };
    }
    let vowel = |c: char| "aeiouy".contains(c);
    // Spelled out letter by letter: a short word in capitals ("API", "GB") or one with no vowel
    // ("npm", but not an abbreviation read as its word, "Dr"); each letter a syllable, but
    // "double-you".
    let capitals = (2..=5).contains(&lower.len()) && word.chars().all(|c| c.is_ascii_uppercase());
    let text: String = lower.iter().collect();
    let unsayable = word.chars().all(|c| c.is_ascii_alphabetic())
        && !lower.iter().any(|&c| vowel(c))
        && !ABBREVIATIONS.contains(&text.as_str());
    if capitals || unsayable {
        return lower
            .iter()
            .map(|&c| if c == 'w' { 3.0 } else { 1.0 })
            .sum();
    }
    let len = lower.len();
    let mut count = 0i32;
    let mut previous = false;
    for (i, &c) in lower.iter().enumerate() {
        // A y before a vowel at the start of a word is a consonant.
        let is_vowel = vowel(c) && !(c == 'y' && i == 0);
        if is_vowel && !previous {
            count += 1;
        }
        previous = is_vowel;
    }
    let ends = |suffix: &str| text.ends_with(suffix);
    let before = |back: usize| {
        if len > back {
            lower[len - 1 - back]
        } else {
            ' '
        }
    };
    // A silent final e, but not in a consonant-le ending ("table").
    let consonant_le = ends("le") && !vowel(before(2));
    if len > 2 && ends("e") && !vowel(before(1)) && !consonant_le {
        count -= 1;
    }
    // "-es" and "-ed" endings are silent unless the stem ends in a sibilant (or in t, d).
    if len > 3
        && ends("es")
        && !vowel(before(2))
        && !"sxzh".contains(before(2))
        && !ends("ces")
        && !ends("ges")
    {
        count -= 1;
    }
    if len > 3 && ends("ed") && !vowel(before(2)) && !"td".contains(before(2)) {
        count -= 1;
    }
    // "-n't" is a syllable of its own ("didn't").
    if ends("n't") {
        count += 1;
    }
    f64::from(count.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_their_syllables_and_the_pauses_after_them() {
        let text = "[cheerful] Dr. Lee left at 3.15, didn't he? Yes: twice.";
        let words = words_of(text);
        let said: Vec<String> = words
            .iter()
            .map(|w| {
                text.chars()
                    .skip(w.chars.start)
                    .take(w.chars.len())
                    .collect()
            })
            .collect();
        assert_eq!(
            said,
            ["Dr", "Lee", "left", "at", "3.15", "didn't", "he", "Yes", "twice"]
        );
        let pauses: Vec<Pause> = words.iter().map(|w| w.pause).collect();
        use Pause::*;
        assert_eq!(
            pauses,
            [None, None, None, None, Clause, None, Sentence, Clause, Sentence]
        );
        let syllables: Vec<f64> = words.iter().map(|w| w.syllables).collect();
        assert_eq!(
            syllables,
            [1.0, 1.0, 1.0, WEAK, 4.2, 2.0, 1.0, 1.0, 1.0],
            "\"at\" is weak"
        );
    }

    #[test]
    fn symbols_a_voice_reads_take_time_but_are_no_words() {
        let text = "Mail support@example.com, 81% done.";
        let words = words_of(text);
        let shown: Vec<(String, bool)> = words
            .iter()
            .map(|w| {
                let said = text
                    .chars()
                    .skip(w.chars.start)
                    .take(w.chars.len())
                    .collect();
                (said, w.told)
            })
            .collect();
        let expected = [
            ("Mail", true),
            ("support", true),
            ("@", false),
            ("example", true),
            (".", false),
            ("com", true),
            ("81", true),
            ("%", false),
            ("done", true),
        ];
        let expected: Vec<(String, bool)> = expected
            .iter()
            .map(|(w, t)| ((*w).to_owned(), *t))
            .collect();
        assert_eq!(shown, expected);
        // The dot of the address is no full stop; the comma after it is a phrase break.
        assert_eq!(words[3].pause, Pause::None);
        assert_eq!(words[5].pause, Pause::Clause);
    }

    #[test]
    fn numbers_are_counted_as_they_are_read() {
        assert_eq!(syllables("1969"), 5.0, "nineteen sixty-nine");
        assert_eq!(syllables("600"), 3.0, "six hundred");
        assert_eq!(syllables("1,250"), 8.0, "one thousand two hundred fifty");
        assert_eq!(syllables("24"), 3.0, "twenty-four");
        assert_eq!(syllables("seven"), 2.0);
        assert_eq!(syllables("table"), 2.0);
        assert_eq!(syllables("strikes"), 1.0);
        assert_eq!(syllables("skipped"), 1.0);
        assert_eq!(syllables("rejected"), 3.0);
    }

    #[test]
    fn abbreviations_are_counted_as_spelled() {
        assert_eq!(syllables("API"), 3.0, "ay pee eye");
        assert_eq!(syllables("npm"), 3.0, "en pee em");
        assert_eq!(syllables("WWW"), 9.0);
        assert_eq!(syllables("GB"), 2.0);
        assert_eq!(syllables("Groq"), 1.0, "a word, not capitals");
        assert_eq!(syllables("OK"), 2.0, "oh kay");
    }

    #[test]
    fn words_opening_with_a_vowel_or_a_glide_open_softly() {
        let softly: Vec<bool> = words_of("Take an apple, you were right 3 times.")
            .iter()
            .map(|w| w.opens_softly)
            .collect();
        assert_eq!(softly, [false, true, true, true, true, true, false, false]);
    }
}
