//! Places a message's chunks back to back on the AudioContext clock.
//!
//! The first chunk starts one jitter lead after "now"; every later chunk starts exactly where the
//! previous one ends, counted in whole frames from a frame-aligned origin, so consecutive chunks
//! meet with zero samples of gap or overlap. A chunk that arrives too late to start where it
//! should is an underrun: it is counted (never hidden) and the timeline restarts one lead ahead.

/// Seconds on the AudioContext clock.
pub type Seconds = f64;

/// How far ahead of "now" a message's first chunk starts: absorbs network jitter up to 60 ms
/// with room for the main thread to schedule, yet keeps first audio fast.
pub const DEFAULT_LEAD: Seconds = 0.1;

/// A chunk must start at least this far in the future to be scheduled in time.
const MIN_AHEAD: Seconds = 0.005;

/// The timeline of one message.
#[derive(Debug, Clone)]
pub struct Timeline {
    sample_rate: f64,
    context_rate: f64,
    lead: Seconds,
    origin: Option<Seconds>,
    frames: u64,
    underruns: u32,
}

/// Where a chunk goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Start time on the context clock.
    pub start: Seconds,
    /// Whether the chunk came too late and the timeline restarted (a gap).
    pub underrun: bool,
}

impl Timeline {
    /// A fresh timeline for audio at `sample_rate`, played by a context running at
    /// `context_rate` (origins snap to its frame grid), with `lead` seconds of jitter buffer.
    pub fn new(sample_rate: u32, context_rate: f64, lead: Seconds) -> Self {
        Self {
            sample_rate: f64::from(sample_rate),
            context_rate,
            lead,
            origin: None,
            frames: 0,
            underruns: 0,
        }
    }

    fn anchor(&mut self, now: Seconds) {
        // The next whole frame at or after now + lead (tolerating floating-point noise).
        let at = ((now + self.lead) * self.context_rate - 1e-6).ceil() / self.context_rate;
        self.origin = Some(at);
        self.frames = 0;
    }

    /// Places a chunk of `frames` samples arriving at `now`.
    pub fn place(&mut self, now: Seconds, frames: u64) -> Placement {
        let mut underrun = false;
        match self.origin {
            None => self.anchor(now),
            Some(_) if self.next_start().is_some_and(|next| next < now + MIN_AHEAD) => {
                self.underruns += 1;
                underrun = true;
                self.anchor(now);
            }
            Some(_) => {}
        }
        let start = self.next_start().expect("anchored");
        self.frames += frames;
        Placement { start, underrun }
    }

    /// Where the next chunk would start.
    pub fn next_start(&self) -> Option<Seconds> {
        self.origin
            .map(|o| o + self.frames as f64 / self.sample_rate)
    }

    /// The audio's sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate as u32
    }

    /// Underruns so far.
    pub fn underruns(&self) -> u32 {
        self.underruns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_meet_exactly() {
        let mut t = Timeline::new(24_000, 24_000.0, DEFAULT_LEAD);
        let first = t.place(10.0, 2400);
        assert!((first.start - 10.1).abs() < 1e-9);
        assert_eq!(
            (first.start * 24_000.0).fract(),
            0.0,
            "origin is frame-aligned"
        );
        let mut now = 10.0;
        let mut expected = first.start + 0.1;
        for frames in [1200u64, 7, 4800, 1] {
            now += 0.01;
            let p = t.place(now, frames);
            assert!(
                (p.start - expected).abs() < 1e-12,
                "starts where the previous ended"
            );
            assert!(!p.underrun);
            expected = p.start + frames as f64 / 24_000.0;
        }
        assert_eq!(t.underruns(), 0);
    }

    #[test]
    fn snapping_ignores_floating_point_noise() {
        // 1.1 * 24000 is 26400.000000000004 in binary floating point: still frame 26400.
        let mut t = Timeline::new(24_000, 24_000.0, DEFAULT_LEAD);
        assert_eq!(t.place(1.0, 1).start, 26_400.0 / 24_000.0);
    }

    #[test]
    fn jitter_within_the_lead_is_absorbed() {
        // Real-time delivery: 20 ms chunks, each arriving up to 60 ms late.
        let mut t = Timeline::new(24_000, 48_000.0, DEFAULT_LEAD);
        for k in 0..500u64 {
            let jitter = [0.0, 0.06, 0.013, 0.047, 0.0][(k % 5) as usize];
            let p = t.place(k as f64 * 0.02 + jitter, 480);
            assert!(!p.underrun, "chunk {k}");
        }
        assert_eq!(t.underruns(), 0);
    }

    #[test]
    fn late_chunks_are_counted_underruns() {
        let mut t = Timeline::new(24_000, 24_000.0, DEFAULT_LEAD);
        t.place(0.0, 2400); // plays 0.1 .. 0.2
        let late = t.place(0.3, 2400);
        assert!(late.underrun);
        assert!((late.start - 0.4).abs() < 1e-9, "restarts one lead ahead");
        assert_eq!(t.underruns(), 1);
        assert!(!t.place(0.35, 10).underrun);
    }
}
