//! Per-session spending limits: messages and characters per minute, characters per day.
//!
//! The budget belongs to the session, not to a connection: the Durable Object stores it, so
//! reconnecting or hibernating resets nothing. Windows slide: the minute window keeps every
//! accepted message's time exactly; the day window keeps characters in one-minute buckets.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::Millis;

const MINUTE_MS: Millis = 60_000;
const DAY_MINUTES: u64 = 24 * 60;

/// The limits, configurable per deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Accepted `speak`s in any 60 s.
    pub messages_per_minute: u32,
    /// Characters of accepted `speak`s in any 60 s.
    pub chars_per_minute: u64,
    /// Characters of accepted `speak`s in any 24 h (to the minute).
    pub chars_per_day: u64,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        Self {
            messages_per_minute: 30,
            chars_per_minute: 6_000,
            chars_per_day: 100_000,
        }
    }
}

/// What a session has spent recently. Serialisable for the Durable Object's storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeechBudget {
    /// (accepted at, characters) for the last minute, oldest first: one entry per message.
    minute: VecDeque<(Millis, u64)>,
    /// (appended at, characters) for the last minute, oldest first: text appended to open
    /// messages (protocol v2), which counts characters but not messages.
    #[serde(default)]
    appended: VecDeque<(Millis, u64)>,
    /// (minute index since the epoch, characters) for the last day, oldest first.
    day: VecDeque<(u64, u64)>,
}

fn seconds_until(at: Millis, now: Millis) -> u32 {
    (at.saturating_sub(now)).div_ceil(1000).max(1) as u32
}

impl SpeechBudget {
    fn prune(&mut self, now: Millis) {
        for window in [&mut self.minute, &mut self.appended] {
            while window.front().is_some_and(|&(at, _)| at + MINUTE_MS <= now) {
                window.pop_front();
            }
        }
        let this_minute = now / MINUTE_MS;
        while self
            .day
            .front()
            .is_some_and(|&(m, _)| m + DAY_MINUTES <= this_minute)
        {
            self.day.pop_front();
        }
    }

    /// When enough of `window` (oldest first, as (expires at, amount)) has expired for
    /// `used - expired + wanted <= limit`.
    fn free_at(
        window: impl Iterator<Item = (Millis, u64)>,
        used: u64,
        wanted: u64,
        limit: u64,
    ) -> Millis {
        let mut freed = 0;
        for (expires, amount) in window {
            freed += amount;
            if used - freed + wanted <= limit {
                return expires;
            }
        }
        Millis::MAX
    }

    /// Spends `chars` for a new message at `now`, or says in how many seconds it could be.
    pub fn admit(&mut self, limits: &BudgetLimits, chars: u64, now: Millis) -> Result<(), u32> {
        self.spend(limits, chars, now, true)?;
        self.minute.push_back((now, chars));
        Ok(())
    }

    /// Spends `chars` appended to a message already admitted, or says in how many seconds it
    /// could be. It counts against the character limits only.
    pub fn admit_more(
        &mut self,
        limits: &BudgetLimits,
        chars: u64,
        now: Millis,
    ) -> Result<(), u32> {
        self.spend(limits, chars, now, false)?;
        self.appended.push_back((now, chars));
        Ok(())
    }

    /// Gives back `chars` spent at or after `since` (the newest spending first): text that cost
    /// nothing after all, such as segments served from the segment cache. The messages still
    /// count.
    pub fn refund(&mut self, chars: u64, since: Millis) {
        let mut left = chars;
        for entry in self
            .minute
            .iter_mut()
            .rev()
            .chain(self.appended.iter_mut().rev())
            .filter(|(at, _)| *at >= since)
        {
            let take = left.min(entry.1);
            entry.1 -= take;
            left -= take;
        }
        let mut left = chars;
        let since_minute = since / MINUTE_MS;
        for bucket in self
            .day
            .iter_mut()
            .rev()
            .filter(|(m, _)| *m >= since_minute)
        {
            let take = left.min(bucket.1);
            bucket.1 -= take;
            left -= take;
        }
    }

    /// Checks `chars` (and a message, when `message`) against the limits and adds the
    /// characters to the day; the caller records them in its minute window.
    fn spend(
        &mut self,
        limits: &BudgetLimits,
        chars: u64,
        now: Millis,
        message: bool,
    ) -> Result<(), u32> {
        self.prune(now);
        let day_chars: u64 = self.day.iter().map(|&(_, c)| c).sum();
        let mut minute_spent: Vec<(Millis, u64)> = self
            .minute
            .iter()
            .chain(&self.appended)
            .map(|&(at, c)| (at + MINUTE_MS, c))
            .collect();
        minute_spent.sort_unstable();
        let minute_chars: u64 = minute_spent.iter().map(|&(_, c)| c).sum();
        let minute_window = || minute_spent.iter().copied();
        let mut wait_until = now;
        if message && self.minute.len() as u64 >= u64::from(limits.messages_per_minute) {
            let count_window = self.minute.iter().map(|&(at, _)| (at + MINUTE_MS, 1));
            let used = self.minute.len() as u64;
            wait_until = wait_until.max(Self::free_at(
                count_window,
                used,
                1,
                u64::from(limits.messages_per_minute),
            ));
        }
        if minute_chars + chars > limits.chars_per_minute {
            wait_until = wait_until.max(Self::free_at(
                minute_window(),
                minute_chars,
                chars,
                limits.chars_per_minute,
            ));
        }
        if day_chars + chars > limits.chars_per_day {
            let day_window = self
                .day
                .iter()
                .map(|&(m, c)| ((m + DAY_MINUTES) * MINUTE_MS, c));
            wait_until = wait_until.max(Self::free_at(
                day_window,
                day_chars,
                chars,
                limits.chars_per_day,
            ));
        }
        if wait_until > now {
            // A message larger than a whole window can never pass; a day is the honest answer.
            return Err(if wait_until == Millis::MAX {
                86_400
            } else {
                seconds_until(wait_until, now)
            });
        }
        let this_minute = now / MINUTE_MS;
        match self.day.back_mut() {
            Some((m, c)) if *m == this_minute => *c += chars,
            _ => self.day.push_back((this_minute, chars)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BudgetLimits = BudgetLimits {
        messages_per_minute: 3,
        chars_per_minute: 100,
        chars_per_day: 250,
    };
    const T0: Millis = 1_800_000_000_000;

    #[test]
    fn messages_per_minute_exactly() {
        let mut b = SpeechBudget::default();
        for i in 0..3 {
            assert_eq!(b.admit(&LIMITS, 1, T0 + i * 1000), Ok(()));
        }
        assert_eq!(
            b.admit(&LIMITS, 1, T0 + 10_000),
            Err(50),
            "until the first one is a minute old"
        );
        assert_eq!(b.admit(&LIMITS, 1, T0 + 59_999), Err(1));
        assert_eq!(
            b.admit(&LIMITS, 1, T0 + 60_000),
            Ok(()),
            "the window has passed"
        );
    }

    #[test]
    fn chars_per_minute_exactly() {
        let mut b = SpeechBudget::default();
        assert_eq!(b.admit(&LIMITS, 60, T0), Ok(()));
        assert_eq!(
            b.admit(&LIMITS, 40, T0 + 5_000),
            Ok(()),
            "exactly at the limit passes"
        );
        assert_eq!(
            b.admit(&LIMITS, 1, T0 + 6_000),
            Err(54),
            "one over waits for the first to expire"
        );
        assert_eq!(b.admit(&LIMITS, 60, T0 + 60_000), Ok(()));
        assert_eq!(
            b.admit(&LIMITS, 101, T0 + 200_000),
            Err(86_400),
            "larger than any window"
        );
    }

    #[test]
    fn appended_text_counts_characters_but_not_messages() {
        let mut b = SpeechBudget::default();
        assert_eq!(b.admit(&LIMITS, 10, T0), Ok(()));
        for i in 0..9 {
            assert_eq!(
                b.admit_more(&LIMITS, 10, T0 + 100 * i),
                Ok(()),
                "append {i}"
            );
        }
        assert_eq!(
            b.admit_more(&LIMITS, 1, T0 + 2_000),
            Err(58),
            "the minute's 100 characters are spent, appends included"
        );
        assert_eq!(b.admit(&LIMITS, 0, T0 + 3_000), Ok(()), "a second message");
        assert_eq!(b.admit(&LIMITS, 0, T0 + 3_000), Ok(()), "and a third");
        assert!(
            b.admit(&LIMITS, 0, T0 + 3_000).is_err(),
            "appends were not messages"
        );
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<SpeechBudget>(&text).unwrap(), b);
        let before: SpeechBudget =
            serde_json::from_str(r#"{"minute":[[1800000000000,5]],"day":[[30000000,5]]}"#).unwrap();
        assert_eq!(
            before.appended.len(),
            0,
            "a budget stored before appends still reads"
        );
    }

    #[test]
    fn a_refund_gives_characters_back_but_the_message_still_counts() {
        let mut b = SpeechBudget::default();
        assert_eq!(b.admit(&LIMITS, 100, T0), Ok(()));
        assert!(
            b.admit(&LIMITS, 1, T0 + 1_000).is_err(),
            "the minute is spent"
        );
        b.refund(60, T0);
        b.refund(60, T0);
        assert_eq!(
            b.admit(&LIMITS, 100, T0 + 2_000),
            Ok(()),
            "all 100 came back, no more"
        );
        assert!(b.admit(&LIMITS, 1, T0 + 3_000).is_err());
        assert_eq!(b.admit(&LIMITS, 0, T0 + 4_000), Ok(()), "the third message");
        assert!(
            b.admit(&LIMITS, 0, T0 + 5_000).is_err(),
            "the refund gave characters back, not messages"
        );
    }

    #[test]
    fn chars_per_day_exactly() {
        let mut b = SpeechBudget::default();
        for minute in 0..2 {
            assert_eq!(b.admit(&LIMITS, 100, T0 + minute * MINUTE_MS), Ok(()));
        }
        assert_eq!(
            b.admit(&LIMITS, 50, T0 + 3 * MINUTE_MS),
            Ok(()),
            "250 in a day"
        );
        let refused = b.admit(&LIMITS, 1, T0 + 4 * MINUTE_MS).unwrap_err();
        assert!((86_100..=86_400).contains(&refused), "{refused}");
        let next_day = T0 + DAY_MINUTES * MINUTE_MS + MINUTE_MS;
        assert_eq!(b.admit(&LIMITS, 100, next_day), Ok(()));
    }

    #[test]
    fn survives_serialisation() {
        let mut b = SpeechBudget::default();
        b.admit(&LIMITS, 100, T0).unwrap();
        let mut back: SpeechBudget =
            serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(back.admit(&LIMITS, 1, T0 + 1000), Err(59));
    }
}
