//! Where the words of the stream being played begin (stream samples, as the relay told them),
//! and how many of them the play cursor has passed: a word's boundary is reported when its
//! first sample is rendered, never from a timer.

/// The most words a stream's boundaries are kept for (a 4,000-character message has about a
/// thousand); past them, no boundary is reported.
pub const MAX_WORDS: usize = 4096;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Words {
    stream: u32,
    starts: [u32; MAX_WORDS],
    count: usize,
    passed: usize,
}

impl Words {
    /// None yet, for no stream.
    pub const fn new() -> Self {
        Self {
            stream: 0,
            starts: [0; MAX_WORDS],
            count: 0,
            passed: 0,
        }
    }

    /// A new stream: its words are yet to come.
    pub fn begin(&mut self, stream: u32) {
        self.stream = stream;
        self.count = 0;
        self.passed = 0;
    }

    /// More words of `stream` (the current one; another's are dropped), in order, each
    /// starting at or after the one before.
    pub fn add(&mut self, stream: u32, starts: &[u32]) {
        if stream != self.stream {
            return;
        }
        for &start in starts {
            let after_last = self.count == 0 || start >= self.starts[self.count - 1];
            if self.count < MAX_WORDS && after_last {
                self.starts[self.count] = start;
                self.count += 1;
            }
        }
    }

    /// The play cursor of `stream` is at `played`: whether it passed a word's start since the
    /// last call.
    pub fn pass(&mut self, stream: u32, played: u64) -> bool {
        if stream != self.stream {
            return false;
        }
        let before = self.passed;
        while self.passed < self.count && u64::from(self.starts[self.passed]) <= played {
            self.passed += 1;
        }
        self.passed > before
    }

    /// How many words of the stream the cursor has passed.
    pub fn passed(&self) -> u32 {
        self.passed as u32
    }
}

impl Default for Words {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_passed_as_the_cursor_reaches_their_start() {
        let mut words = Words::new();
        words.begin(3);
        words.add(3, &[0, 4_800, 9_600]);
        words.add(2, &[100]);
        assert!(words.pass(3, 0));
        assert_eq!(words.passed(), 1);
        assert!(!words.pass(3, 4_799));
        assert!(words.pass(3, 20_000));
        assert_eq!(words.passed(), 3);
        words.add(3, &[24_000, 1_000]);
        assert!(!words.pass(3, 23_999), "a start out of order is dropped");
        assert!(words.pass(3, 24_000));
        assert_eq!(words.passed(), 4);
        words.begin(4);
        assert_eq!(words.passed(), 0);
        assert!(
            !words.pass(3, 30_000),
            "another stream's cursor passes nothing"
        );
    }
}
