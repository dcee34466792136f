//! What is said of what the app sent: the app's text read as Markdown (or as it is), with the
//! lexicon's words said its way, as a text of its own ([`SpeechText::spoken`]) that segments are
//! cut from, and a map from every character said back to the character of the app's text it
//! comes from ([`SpeechText::original`]), by which word timings and what was heard are told in
//! the app's own text.
//!
//! Text written in pieces is read exactly as the whole text is: each stage holds back what the
//! characters after it could still change (an open Markdown construct, a word that may still
//! grow), so the spoken text only ever grows, and a segment is never cut inside a construct that
//! is still open.

pub mod lexicon;
mod markdown;

use std::ops::Range;

use orpheus_protocol::Markup;

pub use lexicon::{Lexicon, LexiconError};
use markdown::Markdown;

/// One character said, and the character of the app's text it comes from.
pub type Said = (char, u32);

/// See the module docs.
#[derive(Debug, Clone)]
pub struct SpeechText {
    /// The Markdown reader, or `None` when the text is said as it is.
    markdown: Option<Markdown>,
    lexicon: Lexicon,
    /// Characters of the app's text staged so far (without Markdown: as they are).
    plain_read: usize,
    /// What the first stage said, and how much of it the lexicon took.
    staged: Vec<Said>,
    lexicon_read: usize,
    spoken: String,
    /// For each character of `spoken`, the character of the app's text it comes from.
    map: Vec<u32>,
}

impl SpeechText {
    /// Nothing read yet; the text will be read as `markup` says, with `lexicon`.
    pub fn new(markup: Markup, lexicon: Lexicon) -> Self {
        Self {
            markdown: (markup == Markup::Markdown).then(Markdown::default),
            lexicon,
            plain_read: 0,
            staged: Vec::new(),
            lexicon_read: 0,
            spoken: String::new(),
            map: Vec::new(),
        }
    }

    /// The text `text` at once, complete.
    pub fn of(text: &str, markup: Markup, lexicon: Lexicon) -> Self {
        let mut speech = Self::new(markup, lexicon);
        speech.read(text, true);
        speech
    }

    /// Reads on in `text`, the app's text so far (what was read before is its beginning);
    /// `complete`: no more comes, so nothing is held back.
    pub fn read(&mut self, text: &str, complete: bool) {
        let chars: Vec<char> = text.chars().collect();
        match self.markdown.as_mut() {
            Some(markdown) => markdown.read_on(&chars, complete, &mut self.staged),
            None => {
                let new = &chars[self.plain_read.min(chars.len())..];
                let at = self.plain_read as u32;
                self.staged
                    .extend(new.iter().enumerate().map(|(k, &c)| (c, at + k as u32)));
                self.plain_read = chars.len();
            }
        }
        // A word followed by white space is whole, even before the space is said.
        let whole = complete || self.markdown.as_ref().is_some_and(Markdown::breaks_after);
        let mut said = Vec::new();
        self.lexicon_read = self
            .lexicon
            .say(&self.staged, self.lexicon_read, whole, &mut said);
        for (c, from) in said {
            self.spoken.push(c);
            self.map.push(from);
        }
    }

    /// How the text is read.
    pub fn markup(&self) -> Markup {
        match self.markdown {
            Some(_) => Markup::Markdown,
            None => Markup::Plain,
        }
    }

    /// The words said another way.
    pub fn lexicon(&self) -> &Lexicon {
        &self.lexicon
    }

    /// What is said, so far.
    pub fn spoken(&self) -> &str {
        &self.spoken
    }

    /// What is said so far, followed by a space when the app's text already breaks there (the
    /// space is said before the next word): the text a segment may be cut from while more text
    /// may come, a cut needing the character after it known.
    pub fn spoken_with_break(&self) -> std::borrow::Cow<'_, str> {
        let lexicon_done = self.lexicon_read == self.staged.len();
        match &self.markdown {
            Some(markdown) if markdown.breaks_after() && lexicon_done => {
                std::borrow::Cow::Owned(format!("{} ", self.spoken))
            }
            _ => std::borrow::Cow::Borrowed(&self.spoken),
        }
    }

    /// How many characters are said, so far.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is said yet.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The characters of the app's text that `said` (characters of [`SpeechText::spoken`])
    /// come from: from the first's to just after the last's.
    pub fn original(&self, said: Range<usize>) -> Range<usize> {
        match (
            self.map.get(said.start),
            said.end.checked_sub(1).and_then(|e| self.map.get(e)),
        ) {
            (Some(&first), Some(&last)) if said.end > said.start => {
                first as usize..last as usize + 1
            }
            _ => {
                let at = self.map.get(said.start).map_or(0, |&m| m as usize);
                at..at
            }
        }
    }
}

#[cfg(test)]
mod tests;
