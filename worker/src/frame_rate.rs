//! How many frames a client may send per second, and what happens beyond: excess frames are
//! dropped with a warning at most once a second, and a client sending more than twice the limit
//! within a second is a flood, to be closed.

use std::collections::VecDeque;

use crate::time::Millis;

/// Frames a client may send per second, and what happens beyond.
#[derive(Debug, Clone, Default)]
pub struct FrameRate {
    /// Arrival times of the frames of the last second, oldest first.
    recent: VecDeque<Millis>,
    /// When the client was last told it is over the limit.
    warned_at: Option<Millis>,
}

/// What to do with a client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict {
    /// Within the limit: handle it.
    Accept,
    /// Over the limit: drop it, telling the client once a second.
    Refuse {
        /// Whether to send the `rate_limited` error for this one.
        warn: bool,
    },
    /// More than twice the limit within a second: close the connection (1008).
    Flood,
}

impl FrameRate {
    /// Counts a frame arriving at `now` against `per_second`.
    pub fn check(&mut self, per_second: u32, now: Millis) -> FrameVerdict {
        while self.recent.front().is_some_and(|&at| at + 1000 <= now) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        let count = self.recent.len() as u64;
        let limit = u64::from(per_second);
        if count <= limit {
            FrameVerdict::Accept
        } else if count <= 2 * limit {
            let warn = self.warned_at.is_none_or(|at| at + 1000 <= now);
            if warn {
                self.warned_at = Some(now);
            }
            FrameVerdict::Refuse { warn }
        } else {
            FrameVerdict::Flood
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;

    #[test]
    fn frame_rate_refuses_then_closes() {
        let mut r = FrameRate::default();
        for i in 0..5 {
            assert_eq!(r.check(5, T0 + i), FrameVerdict::Accept);
        }
        assert_eq!(r.check(5, T0 + 10), FrameVerdict::Refuse { warn: true });
        assert_eq!(r.check(5, T0 + 11), FrameVerdict::Refuse { warn: false });
        for i in 0..3 {
            assert_eq!(
                r.check(5, T0 + 12 + i),
                FrameVerdict::Refuse { warn: false }
            );
        }
        assert_eq!(r.check(5, T0 + 20), FrameVerdict::Flood);
        let mut r = FrameRate::default();
        for i in 0..50 {
            assert_eq!(
                r.check(5, T0 + i * 200),
                FrameVerdict::Accept,
                "a steady 5/s is fine"
            );
        }
    }
}
