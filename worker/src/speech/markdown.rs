//! Markdown as a listener should hear it: the words, without the markup. A streaming reader:
//! fed the text so far, it says as much of it as is settled and holds back only what the next
//! characters could still change (`**` that may grow to `***`, a `[` that may open a link, a
//! line that may turn out to be a rule), so that text written in pieces is read exactly as the
//! whole text is. Each character it says carries the position of the character it comes from.
//!
//! What it does, by construct:
//! - emphasis and strike markers (`*`, `_`, `**`, `~~`), heading marks, quote marks, list
//!   bullets and numbers, rules, and the syntax of links and images are dropped; a heading, a
//!   list item and a table row end with a sentence stop, as a paragraph break does;
//! - a link or an image says its text, never its address; a bare address says its host
//!   (`example.com`); inline code says its text; fenced code blocks and HTML tags say nothing;
//!   a table row is read as a phrase, its cells joined by commas;
//! - emoji are not said; a bracketed vocal direction (`[cheerful]`) passes untouched, and so does
//!   anything that is not markup (`2 * 3`, `a < b`).

/// Longest construct held back while its end is awaited: past it, the opening is plain text.
const MAX_HELD: usize = 400;

/// What is held back, and why, never spans a line: the line's kind carries the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Nothing of the line was read yet.
    Start,
    /// Running text; a line break is a space.
    Text,
    /// A heading, a list item: it ends with a sentence stop.
    Sentence,
    /// Inside a fenced code block opened by `len` of `marker`: nothing is said.
    Fence { marker: char, len: usize },
}

/// One character said, and the character of the text it comes from.
pub type Said = (char, u32);

/// The reader, between two calls: where it stopped, and what the line it stopped in is.
#[derive(Debug, Clone)]
pub struct Markdown {
    /// Characters of the text read and settled.
    at: usize,
    line: Line,
    /// A space is due before the next character said (white space collapses), from here.
    space: Option<u32>,
    /// The last character said, if any.
    last: Option<char>,
}

/// Whether the reader can go on from a position, or must wait for more text.
enum Step {
    /// Read up to here.
    To(usize),
    /// What follows decides: wait.
    Wait,
}

impl Default for Markdown {
    fn default() -> Self {
        Self {
            at: 0,
            line: Line::Start,
            space: None,
            last: None,
        }
    }
}

pub(super) fn is_emoji(c: char) -> bool {
    matches!(u32::from(c),
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2300..=0x23FF | 0x2B00..=0x2BFF
        | 0xFE0F | 0x200D | 0x20E3 | 0xE0020..=0xE007F)
}

fn is_sentence_stop(c: char) -> bool {
    matches!(
        c,
        '.' | '!' | '?' | ':' | ';' | '…' | '。' | '؟' | '！' | '？'
    )
}

impl Markdown {
    /// Whether what was said so far ends at a word boundary already known (white space came
    /// after it, and is said before whatever is said next).
    pub fn breaks_after(&self) -> bool {
        self.space.is_some()
    }

    /// Reads `text` (all of it so far) from where the last call stopped, saying what is
    /// settled into `out`; `complete`: no more text comes, so nothing is held back.
    pub fn read_on(&mut self, text: &[char], complete: bool, out: &mut Vec<Said>) {
        while self.at < text.len() {
            let step = match self.line {
                Line::Start => self.line_start(text, complete, out),
                Line::Fence { marker, len } => self.fence_line(text, marker, len, complete),
                Line::Text | Line::Sentence => self.inline(text, complete, out),
            };
            match step {
                Step::To(at) => self.at = at,
                Step::Wait => return,
            }
        }
        if complete {
            self.end_line(out);
        }
    }

    fn say(&mut self, c: char, from: usize, out: &mut Vec<Said>) {
        if let Some(space) = self.space.take() {
            if self.last.is_some() {
                out.push((' ', space));
            }
        }
        out.push((c, from as u32));
        self.last = Some(c);
    }

    /// A stop at the end of a sentence that has none, so that it is read as one; what comes
    /// next is a word apart.
    fn stop(&mut self, at: usize, out: &mut Vec<Said>) {
        if self.last.is_some_and(|c| !is_sentence_stop(c)) {
            self.space = None;
            out.push(('.', at as u32));
            self.last = Some('.');
        }
        self.gap(at);
    }

    /// What comes next is a word apart (a space is said before it, if anything came before).
    fn gap(&mut self, at: usize) {
        if self.last.is_some() {
            self.space.get_or_insert(at as u32);
        }
    }

    fn end_line(&mut self, out: &mut Vec<Said>) {
        if self.line == Line::Sentence {
            self.stop(self.at.saturating_sub(1), out);
        }
    }

    /// A line's end at `at` (its `\n`): a heading, an item or a row ends a sentence; running
    /// text goes on after a space.
    fn line_end(&mut self, at: usize, out: &mut Vec<Said>) -> Step {
        if self.line == Line::Sentence {
            self.stop(at, out);
        }
        self.gap(at);
        self.line = Line::Start;
        Step::To(at + 1)
    }

    /// The line from `at` to its end (exclusive of the `\n`), or `None` if its end is not here
    /// yet and more text may come.
    fn whole_line(text: &[char], at: usize, complete: bool) -> Option<usize> {
        match text[at..].iter().position(|&c| c == '\n') {
            Some(n) => Some(at + n),
            None if complete => Some(text.len()),
            None => None,
        }
    }

    fn line_start(&mut self, text: &[char], complete: bool, out: &mut Vec<Said>) -> Step {
        let start = self.at;
        // Up to three spaces of indentation, and quote marks, are dropped.
        let mut i = start;
        while i < text.len() && text[i] == ' ' && i - start < 3 {
            i += 1;
        }
        while i < text.len() && text[i] == '>' {
            i += 1;
            if text.get(i) == Some(&' ') {
                i += 1;
            }
        }
        let Some(&c) = text.get(i) else {
            return if complete { Step::To(i) } else { Step::Wait };
        };
        match c {
            '\n' => {
                // A blank line ends a paragraph.
                self.stop(i, out);
                Step::To(i + 1)
            }
            '#' => {
                let hashes = text[i..].iter().take_while(|&&h| h == '#').count();
                match text.get(i + hashes) {
                    None if !complete => Step::Wait,
                    Some(' ' | '\n') | None if hashes <= 6 => {
                        self.paragraph_break(start, out);
                        self.line = Line::Sentence;
                        Step::To(skip_spaces(text, i + hashes))
                    }
                    _ => self.text_line(i),
                }
            }
            '`' | '~' => {
                let run = text[i..].iter().take_while(|&&m| m == c).count();
                if i + run == text.len() && !complete {
                    return Step::Wait;
                }
                if run < 3 {
                    return self.text_line(i);
                }
                // A fence: its opening line (with its info string) says nothing.
                let Some(end) = Self::whole_line(text, i, complete) else {
                    return Step::Wait;
                };
                self.paragraph_break(start, out);
                self.line = Line::Fence {
                    marker: c,
                    len: run,
                };
                Step::To((end + 1).min(text.len()))
            }
            '-' | '*' | '_' | '+' | '=' => self.marker_line(text, i, c, complete, out),
            '|' => self.table_row(text, i, complete, out),
            '0'..='9' => {
                let digits = text[i..].iter().take_while(|d| d.is_ascii_digit()).count();
                let after = i + digits;
                match (text.get(after), text.get(after + 1)) {
                    (None, _) | (Some('.' | ')'), None) if !complete => Step::Wait,
                    (Some('.' | ')'), Some(' ') | None) if digits <= 9 => {
                        self.list_item(start, out);
                        Step::To(skip_spaces(text, after + 1))
                    }
                    _ => self.text_line(i),
                }
            }
            _ => self.text_line(i),
        }
    }

    /// A line that begins with `-`, `*`, `_`, `+` or `=`: a rule or a setext underline (not
    /// said), a list item, or text.
    fn marker_line(
        &mut self,
        text: &[char],
        i: usize,
        c: char,
        complete: bool,
        out: &mut Vec<Said>,
    ) -> Step {
        let end = Self::whole_line(text, i, complete);
        let line = &text[i..end.unwrap_or(text.len())];
        let only_markers = line.iter().all(|&m| m == c || m == ' ' || m == '\t');
        let markers = line.iter().filter(|&&m| m == c).count();
        if only_markers {
            let Some(end) = end else {
                return Step::Wait;
            };
            if markers >= 3 || c == '=' {
                // A rule, or a heading's underline.
                self.stop(i, out);
                return Step::To((end + 1).min(text.len()));
            }
        }
        let bullet = matches!(c, '-' | '*' | '+') && text.get(i + 1) == Some(&' ');
        if bullet {
            let mut at = skip_spaces(text, i + 1);
            // A task list's box is not said.
            if let Some(boxed) = task_box(text, at) {
                at = skip_spaces(text, boxed);
            } else if text.get(at) == Some(&'[') && at + 3 > text.len() && !complete {
                return Step::Wait;
            }
            self.list_item(i, out);
            return Step::To(at);
        }
        self.text_line(i)
    }

    fn list_item(&mut self, at: usize, out: &mut Vec<Said>) {
        self.paragraph_break(at, out);
        self.line = Line::Sentence;
    }

    /// A block that starts a new sentence: what came before it ends with a stop.
    fn paragraph_break(&mut self, at: usize, out: &mut Vec<Said>) {
        self.stop(at, out);
    }

    fn text_line(&mut self, i: usize) -> Step {
        self.line = Line::Text;
        Step::To(i)
    }

    /// A table row: read whole, its cells joined by commas; the delimiter row is not said.
    fn table_row(&mut self, text: &[char], i: usize, complete: bool, out: &mut Vec<Said>) -> Step {
        let Some(end) = Self::whole_line(text, i, complete) else {
            return Step::Wait;
        };
        let row = &text[i..end];
        let delimiter = row
            .iter()
            .all(|c| matches!(c, '|' | '-' | ':' | ' ' | '\t'));
        if !delimiter {
            self.paragraph_break(i, out);
            let mut cell_start = i + 1;
            let mut first = true;
            let mut at = i + 1;
            while at <= end {
                let at_end = at == end || (text[at] == '|' && text[at - 1] != '\\');
                if at_end {
                    let cell = trim_range(text, cell_start, at);
                    if !cell.is_empty() {
                        if !first {
                            self.space = None;
                            self.say(',', cell.start.saturating_sub(1), out);
                            self.space = Some(cell.start as u32);
                        }
                        first = false;
                        let mut inner = Markdown {
                            line: Line::Text,
                            at: cell.start,
                            ..self.clone()
                        };
                        let chars = &text[..cell.end];
                        inner.read_on(chars, true, out);
                        self.last = inner.last;
                        self.space = None;
                    }
                    cell_start = at + 1;
                }
                at += 1;
            }
            self.stop(end, out);
        }
        self.line = Line::Start;
        Step::To((end + 1).min(text.len()))
    }

    /// A line inside a fence: nothing is said; the closing fence ends it.
    fn fence_line(&mut self, text: &[char], marker: char, len: usize, complete: bool) -> Step {
        let Some(end) = Self::whole_line(text, self.at, complete) else {
            return Step::Wait;
        };
        let line = &text[self.at..end];
        let trimmed: Vec<char> = line.iter().copied().skip_while(|&c| c == ' ').collect();
        let run = trimmed.iter().take_while(|&&c| c == marker).count();
        if run >= len && trimmed[run..].iter().all(|c| c.is_whitespace()) {
            self.line = Line::Start;
        }
        Step::To((end + 1).min(text.len()))
    }

    /// Running text from `self.at`, to the end of its line or of what is settled.
    fn inline(&mut self, text: &[char], complete: bool, out: &mut Vec<Said>) -> Step {
        let mut i = self.at;
        while i < text.len() {
            let c = text[i];
            let next = text.get(i + 1).copied();
            let prev = i.checked_sub(1).map(|p| text[p]);
            // A `!` right after a word ends a sentence (so it is said at once); only one
            // after a space or a mark may open an image.
            let may_open_image = prev.is_none_or(|p| !p.is_alphanumeric());
            let step = match c {
                '\n' => return self.line_end(i, out),
                '\\' => match next {
                    None if !complete => Step::Wait,
                    Some(e) if e.is_ascii_punctuation() => {
                        self.say(e, i + 1, out);
                        Step::To(i + 2)
                    }
                    _ => {
                        self.say(c, i, out);
                        Step::To(i + 1)
                    }
                },
                '*' | '_' | '~' => self.markers(text, i, complete, out),
                '`' => Step::To(i + 1),
                '[' => self.bracket(text, i, false, complete, out),
                '!' if may_open_image && next == Some('[') => {
                    self.bracket(text, i + 1, true, complete, out)
                }
                '!' if may_open_image && next.is_none() && !complete => Step::Wait,
                '<' => self.angle(text, i, complete, out),
                c if c.is_whitespace() => {
                    if self.last.is_some() {
                        self.space.get_or_insert(i as u32);
                    }
                    Step::To(i + 1)
                }
                c if is_emoji(c) => Step::To(i + 1),
                _ if prev.is_none_or(|p| !p.is_alphanumeric()) && url_may_start(text, i) => {
                    self.url(text, i, complete, out)
                }
                c => {
                    self.say(c, i, out);
                    Step::To(i + 1)
                }
            };
            match step {
                Step::To(at) => {
                    i = at;
                    self.at = at;
                }
                Step::Wait => return Step::Wait,
            }
        }
        Step::To(i)
    }

    /// A run of `*`, `_` or `~` at `i`: emphasis and strike markers are not said; a `_`
    /// inside a word is a space; anything else (`2 * 3`, a single `~`) is said.
    fn markers(&mut self, text: &[char], i: usize, complete: bool, out: &mut Vec<Said>) -> Step {
        let c = text[i];
        let run = text[i..].iter().take_while(|&&m| m == c).count();
        let after = text.get(i + run).copied();
        if after.is_none() && !complete {
            return Step::Wait;
        }
        let before = i.checked_sub(1).map(|p| text[p]);
        let space = |ch: Option<char>| ch.is_none_or(char::is_whitespace);
        let word = |ch: Option<char>| ch.is_some_and(char::is_alphanumeric);
        let opens = !space(after);
        let closes = !space(before);
        match c {
            '~' if run == 1 => {
                self.say(c, i, out);
            }
            '_' if word(before) && word(after) => {
                self.space.get_or_insert(i as u32);
            }
            _ if opens || closes => {}
            _ => {
                for k in 0..run {
                    self.say(c, i + k, out);
                }
            }
        }
        Step::To(i + run)
    }

    /// A `[` at `i` (of an image, when `image`): a link says its text, a reference link its
    /// text, a task box nothing; anything else, a vocal direction among them, is said as it is.
    fn bracket(
        &mut self,
        text: &[char],
        i: usize,
        image: bool,
        complete: bool,
        out: &mut Vec<Said>,
    ) -> Step {
        let Some(close) = matching(text, i, '[', ']') else {
            return self.unresolved(text, i, image, complete, out);
        };
        // A target that may still close on this line is waited for.
        let may_close = !complete && no_line_end(text, close + 1) && text.len() - i < MAX_HELD;
        let target = match text.get(close + 1) {
            None if !complete => return Step::Wait,
            Some('(') => match matching(text, close + 1, '(', ')') {
                None if may_close => return Step::Wait,
                end => end,
            },
            Some('[') => match matching(text, close + 1, '[', ']') {
                None if may_close => return Step::Wait,
                end => end,
            },
            _ => None,
        };
        match target {
            Some(end) => {
                // The link's text, read as text.
                let mut inner = Markdown {
                    line: Line::Text,
                    at: i + 1,
                    ..self.clone()
                };
                inner.read_on(&text[..close], true, out);
                self.last = inner.last;
                self.space = inner.space;
                Step::To(end + 1)
            }
            None => {
                if image {
                    self.say('!', i - 1, out);
                }
                for (k, &c) in text[i..=close].iter().enumerate() {
                    self.say(c, i + k, out);
                }
                Step::To(close + 1)
            }
        }
    }

    /// A `[` (or `(`) whose close has not come: wait while it may still come on this line and
    /// within [`MAX_HELD`]; else it is plain text.
    fn unresolved(
        &mut self,
        text: &[char],
        i: usize,
        image: bool,
        complete: bool,
        out: &mut Vec<Said>,
    ) -> Step {
        if !complete && no_line_end(text, i) && text.len() - i < MAX_HELD {
            return Step::Wait;
        }
        if image {
            self.say('!', i - 1, out);
        }
        self.say(text[i], i, out);
        Step::To(i + 1)
    }

    /// A `<` at `i`: an HTML tag says nothing, an autolink its host; anything else is said.
    fn angle(&mut self, text: &[char], i: usize, complete: bool, out: &mut Vec<Said>) -> Step {
        let tag_like = |c: char| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?');
        match text.get(i + 1) {
            None if !complete => return Step::Wait,
            Some(&c) if tag_like(c) => {}
            _ => {
                self.say('<', i, out);
                return Step::To(i + 1);
            }
        }
        let close = text[i..]
            .iter()
            .take(MAX_HELD)
            .position(|&c| c == '>' || c == '\n');
        match close.map(|n| (i + n, text[i + n])) {
            Some((end, '>')) => {
                if url_may_start(text, i + 1) {
                    let host = host_of(&text[i + 1..end]);
                    self.say_range(text, i + 1 + host.start, i + 1 + host.end, out);
                }
                Step::To(end + 1)
            }
            None if !complete && text.len() - i < MAX_HELD => Step::Wait,
            _ => {
                self.say('<', i, out);
                Step::To(i + 1)
            }
        }
    }

    /// A bare address at `i` (`https://…`, `www.…`): its host is said, the rest is not.
    fn url(&mut self, text: &[char], i: usize, complete: bool, out: &mut Vec<Said>) -> Step {
        let end = text[i..]
            .iter()
            .position(|c| c.is_whitespace() || *c == '<')
            .map(|n| i + n);
        let end = match end {
            Some(end) => end,
            None if complete => text.len(),
            None => return Step::Wait,
        };
        let prefix: String = text[i..end]
            .iter()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let is_url = prefix.starts_with("http://")
            || prefix.starts_with("https://")
            || prefix.starts_with("www.");
        if !is_url {
            // Only began like one ("what", "http"): said as it is, one character on.
            self.say(text[i], i, out);
            return Step::To(i + 1);
        }
        // Punctuation that ends the sentence is not the address's.
        let mut url_end = end;
        while url_end > i
            && matches!(
                text[url_end - 1],
                '.' | ',' | ';' | ':' | '!' | '?' | ')' | '"' | '\''
            )
        {
            url_end -= 1;
        }
        let host = host_of(&text[i..url_end]);
        self.say_range(text, i + host.start, i + host.end, out);
        Step::To(url_end)
    }

    fn say_range(&mut self, text: &[char], from: usize, to: usize, out: &mut Vec<Said>) {
        for (k, &c) in text[from..to].iter().enumerate() {
            self.say(c, from + k, out);
        }
    }
}

/// Whether the characters from `i` may be, or may become, a bare address: `http://`,
/// `https://` or `www.`, case aside.
fn url_may_start(text: &[char], i: usize) -> bool {
    let rest: String = text[i..]
        .iter()
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    ["http://", "https://", "www."]
        .iter()
        .any(|p| p.starts_with(&rest) || rest.starts_with(p))
}

/// The host of an address (`https://www.example.com/path` → `example.com`), as a range of it.
fn host_of(url: &[char]) -> std::ops::Range<usize> {
    let s: String = url.iter().collect::<String>().to_ascii_lowercase();
    let mut start = s.find("://").map_or(0, |n| n + 3);
    if s[start..].starts_with("www.") {
        start += 4;
    }
    let start_chars = s[..start].chars().count();
    let end_chars = url[start_chars..]
        .iter()
        .position(|&c| matches!(c, '/' | '?' | '#' | ':'))
        .map_or(url.len(), |n| start_chars + n);
    start_chars..end_chars
}

/// The index of the `close` that matches the `open` at `i`, on the same line, within
/// [`MAX_HELD`].
fn matching(text: &[char], i: usize, open: char, close: char) -> Option<usize> {
    let mut depth = 0;
    for (n, &c) in text[i..].iter().enumerate().take(MAX_HELD) {
        if c == '\n' {
            return None;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(i + n);
            }
        }
    }
    None
}

/// Whether no line end comes after `i` in what is here.
fn no_line_end(text: &[char], i: usize) -> bool {
    !text[i..].contains(&'\n')
}

/// A task list's box (`[ ]`, `[x]`) at `at`: the index after it.
fn task_box(text: &[char], at: usize) -> Option<usize> {
    match text.get(at..at + 3)? {
        ['[', ' ' | 'x' | 'X', ']'] => Some(at + 3),
        _ => None,
    }
}

fn skip_spaces(text: &[char], mut at: usize) -> usize {
    while at < text.len() && text[at] == ' ' {
        at += 1;
    }
    at
}

fn trim_range(text: &[char], mut from: usize, mut to: usize) -> std::ops::Range<usize> {
    while from < to && text[from].is_whitespace() {
        from += 1;
    }
    while to > from && text[to - 1].is_whitespace() {
        to -= 1;
    }
    from..to
}
