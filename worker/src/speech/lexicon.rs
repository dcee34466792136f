//! A lexicon: whole words said another way (`Groq` as `grok`, `SQL` as `sequel`). Words are
//! matched exactly, case included, as whole words of the text said; a word that may still
//! grow (the text goes on right after it) waits for the character after it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Said;

/// The most entries a lexicon holds.
pub const MAX_ENTRIES: usize = 200;

/// The longest word a lexicon replaces, in characters.
pub const MAX_WORD_CHARS: usize = 48;

/// The longest replacement, in characters.
pub const MAX_SAID_CHARS: usize = 128;

/// What is wrong with a lexicon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LexiconError {
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries,
    /// A word that is empty, longer than [`MAX_WORD_CHARS`], or not one word.
    NotAWord,
    /// A replacement that is empty, longer than [`MAX_SAID_CHARS`], or holds a line break or
    /// a control character.
    BadReplacement,
}

impl LexiconError {
    /// What is wrong, and so what to change.
    pub const fn message(self) -> &'static str {
        match self {
            Self::TooManyEntries => "a lexicon holds at most 200 entries",
            Self::NotAWord => "each lexicon key must be one word of 1 to 48 characters",
            Self::BadReplacement => {
                "each lexicon value must be 1 to 128 characters, with no line break or control character"
            }
        }
    }
}

impl fmt::Display for LexiconError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Whole words and how to say them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lexicon(BTreeMap<String, String>);

impl Lexicon {
    /// Checks `entries` against the limits.
    pub fn new(entries: BTreeMap<String, String>) -> Result<Self, LexiconError> {
        if entries.len() > MAX_ENTRIES {
            return Err(LexiconError::TooManyEntries);
        }
        for (word, said) in &entries {
            let chars: Vec<char> = word.chars().collect();
            let whole = chars.first().is_some_and(|c| c.is_alphanumeric())
                && word_end(&chars, 0, true) == Some(chars.len());
            if chars.is_empty() || chars.len() > MAX_WORD_CHARS || !whole {
                return Err(LexiconError::NotAWord);
            }
            let said_chars = said.chars().count();
            if said_chars == 0 || said_chars > MAX_SAID_CHARS || said.chars().any(char::is_control)
            {
                return Err(LexiconError::BadReplacement);
            }
        }
        Ok(Self(entries))
    }

    /// How many entries it has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Says `staged` (from `from` on) into `out` with its replacements; returns how far it got:
    /// a word at the end waits for the character after it, unless `complete` (or the lexicon
    /// is empty: then nothing waits).
    pub fn say(&self, staged: &[Said], from: usize, complete: bool, out: &mut Vec<Said>) -> usize {
        if self.is_empty() {
            out.extend_from_slice(&staged[from..]);
            return staged.len();
        }
        let chars: Vec<char> = staged.iter().map(|&(c, _)| c).collect();
        let mut i = from;
        while i < staged.len() {
            if !chars[i].is_alphanumeric() {
                out.push(staged[i]);
                i += 1;
                continue;
            }
            let Some(end) = word_end(&chars, i, complete) else {
                return i;
            };
            let word: String = chars[i..end].iter().collect();
            match self.0.get(&word) {
                Some(said) => spread(said, &staged[i..end], out),
                None => out.extend_from_slice(&staged[i..end]),
            }
            i = end;
        }
        i
    }
}

/// The end of the word that starts at `chars[at]` (a letter or a digit): letters and digits, joined inside by an
/// apostrophe, a hyphen, a dot or an underscore, and ending in any `+` or `#` (`C++`, `F#`).
/// `None` when what follows may still make it longer (more text may come unless `complete`).
fn word_end(chars: &[char], at: usize, complete: bool) -> Option<usize> {
    let mut i = at;
    loop {
        while i < chars.len() && chars[i].is_alphanumeric() {
            i += 1;
        }
        match chars.get(i) {
            Some('\'' | '’' | '-' | '.' | '_') => match chars.get(i + 1) {
                Some(c) if c.is_alphanumeric() => i += 1,
                None if !complete => return None,
                _ => break,
            },
            None if !complete => return None,
            _ => break,
        }
    }
    while i < chars.len() && matches!(chars[i], '+' | '#') {
        i += 1;
    }
    if i == chars.len() && !complete {
        return None;
    }
    Some(i)
}

/// `said` in place of the word `word`: its characters come from the word's, spread evenly, so
/// that the first comes from the word's first and the last from its last.
fn spread(said: &str, word: &[Said], out: &mut Vec<Said>) {
    let n = said.chars().count();
    for (k, c) in said.chars().enumerate() {
        let from = if n > 1 {
            k * (word.len() - 1) / (n - 1)
        } else {
            0
        };
        out.push((c, word[from].1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexicon(pairs: &[(&str, &str)]) -> Lexicon {
        let entries = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Lexicon::new(entries).unwrap()
    }

    fn staged(text: &str) -> Vec<Said> {
        text.chars()
            .enumerate()
            .map(|(i, c)| (c, i as u32))
            .collect()
    }

    fn said(out: &[Said]) -> String {
        out.iter().map(|&(c, _)| c).collect()
    }

    #[test]
    fn whole_words_are_replaced_and_mapped_to_the_word() {
        let lexicon = lexicon(&[("Groq", "grok"), ("SQL", "sequel"), ("C++", "C plus plus")]);
        let text = staged("Groq speaks SQL, Groqs and C++ too.");
        let mut out = Vec::new();
        assert_eq!(lexicon.say(&text, 0, true, &mut out), text.len());
        assert_eq!(said(&out), "grok speaks sequel, Groqs and C plus plus too.");
        // "sequel" comes from "SQL" (characters 12 to 14).
        let sequel: Vec<u32> = out[12..18].iter().map(|s| s.1).collect();
        assert_eq!((sequel[0], sequel[5]), (12, 14));
    }

    #[test]
    fn a_word_that_may_still_grow_waits() {
        let lexicon = lexicon(&[("SQL", "sequel")]);
        let mut out = Vec::new();
        let text = staged("I like SQL");
        assert_eq!(
            lexicon.say(&text, 0, false, &mut out),
            7,
            "SQL may become SQLite"
        );
        let text = staged("I like SQL.");
        out.clear();
        assert_eq!(
            lexicon.say(&text, 0, false, &mut out),
            7,
            "SQL. may become SQL.js"
        );
        let text = staged("I like SQL. ");
        out.clear();
        assert_eq!(lexicon.say(&text, 0, false, &mut out), text.len());
        assert_eq!(said(&out), "I like sequel. ");
    }

    #[test]
    fn limits_are_checked() {
        let one = |k: &str, v: &str| Lexicon::new([(k.to_owned(), v.to_owned())].into());
        assert_eq!(one("two words", "x"), Err(LexiconError::NotAWord));
        assert_eq!(one("", "x"), Err(LexiconError::NotAWord));
        assert_eq!(one(&"a".repeat(49), "x"), Err(LexiconError::NotAWord));
        assert_eq!(one("ok", ""), Err(LexiconError::BadReplacement));
        assert_eq!(one("ok", "a\nb"), Err(LexiconError::BadReplacement));
        assert_eq!(
            one("ok", &"b".repeat(129)),
            Err(LexiconError::BadReplacement)
        );
        assert!(one("Node.js", "node J S").is_ok());
        let many = (0..=MAX_ENTRIES)
            .map(|i| (format!("w{i}"), "x".to_owned()))
            .collect();
        assert_eq!(Lexicon::new(many), Err(LexiconError::TooManyEntries));
    }
}
