//! The playback engine that runs inside the AudioWorklet: one stream at a time, played at the
//! exact sample positions its frames' offsets dictate.
//!
//! - Frames are appended to a fixed ring of Int16 samples (no allocation, bounded memory); a
//!   frame that does not fit yet is refused with [`Push::Full`] and waits, still as Int16, in
//!   the worklet until the ring has room. Samples become Float32 only as they are rendered.
//! - The play cursor is the number of the stream's samples that have been rendered: the
//!   player's truth for progress, completion, and what the listener heard.
//! - Adaptive start: a stream starts once its first frame has waited one jitter allowance and
//!   at least one allowance of audio is buffered (at once if the whole stream is there). The
//!   allowance is small (see [`DEFAULT_ALLOWANCE_S`]). After an underrun it doubles, and when
//!   the late audio arrives it grows by as long as the stream waited for it (whichever is more),
//!   up to [`MAX_ALLOWANCE_S`]: one gap teaches the arrival's jitter, rather than one doubling a
//!   gap. It is the engine's, so a session's later messages start with what earlier ones taught.
//! - The engine never stops on an empty ring: it renders silence, counts one underrun per
//!   starvation, and resumes once an allowance of audio is buffered again, fading in over
//!   [`STOP_RAMP_S`] (a link that dropped and resumed goes on without a click).
//! - Stop fades out over [`STOP_RAMP_S`] and drops the rest; nothing of a stopped stream plays
//!   afterwards. A stream replaced while still audible decays from its last value over the same
//!   ramp, so no click.
//! - A stream at another rate than the context is resampled by cubic interpolation at a read
//!   position that runs on across frames; at the same rate samples are copied exactly.

use crate::resample::hermite;
use crate::words::Words;

/// Samples the ring holds: about 11 s at 24 kHz, 512 KiB.
pub const RING_SAMPLES: usize = 1 << 18;

/// Length of an audio frame's header (docs/protocol.md).
pub const FRAME_HEADER_LEN: usize = 12;

/// The frame header version this engine reads.
pub const FRAME_VERSION: u8 = 1;

/// The jitter allowance a new engine starts with.
pub const DEFAULT_ALLOWANCE_S: f64 = 0.02;

/// The largest the allowance grows to after underruns.
pub const MAX_ALLOWANCE_S: f64 = 0.4;

/// The fade applied when a stream is stopped or replaced.
pub const STOP_RAMP_S: f64 = 0.005;

/// How often a playing stream reports its cursor.
pub const PROGRESS_S: f64 = 0.25;

/// Below this much audio buffered, every frame received is reported
/// ([`event::RECEIVED`]): protocol v2's `PROMPT_BELOW_MS`, by which the relay paces a slow link.
pub const PROMPT_BELOW_S: f64 = 0.5;

/// Bits of [`Engine::take_events`].
pub mod event {
    /// The stream's first sample was rendered, at the start of this render.
    pub const STARTED: u32 = 1;
    /// A progress period passed while playing.
    pub const PROGRESS: u32 = 2;
    /// The stream ran dry: silence until enough audio is buffered again.
    pub const UNDERRUN: u32 = 4;
    /// The stream's last sample (per its end) was rendered.
    pub const DRAINED: u32 = 8;
    /// The stream was stopped and its fade is over.
    pub const STOPPED: u32 = 16;
    /// A frame arrived while less than [`super::PROMPT_BELOW_S`] was buffered.
    pub const RECEIVED: u32 = 32;
    /// The play cursor passed the start of a word (see [`crate::words`]).
    pub const WORD: u32 = 64;
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Push {
    /// Its new samples were appended.
    Accepted = 0,
    /// Of an older stream, after a stop, or already received: dropped.
    Ignored = 1,
    /// The ring has no room for it yet: push it again later.
    Full = 2,
    /// Not an audio frame this engine can read: dropped.
    Malformed = 3,
    /// Of a stream newer than any begun: hold it until that stream begins (frames and the
    /// `begin` reach the worklet by different routes, so a stream's first frames may come
    /// first).
    Ahead = 4,
}

/// Where the current stream stands. It moves forward only, except that playing and starving
/// alternate.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Not started: waiting for the first frame and the allowance.
    Waiting,
    /// Rendering samples.
    Playing,
    /// Ran dry while playing: silence until enough is buffered again.
    Starved,
    /// Rendering again after starving: fading in over `left` of `of` frames, then playing.
    Rising { left: u32, of: u32 },
    /// Stopped: fading out over `left` of `of` frames, then over.
    Fading { left: u32, of: u32 },
}

/// The stream being played.
#[derive(Debug, Clone)]
struct Stream {
    id: u32,
    /// Source samples per output frame.
    step: f64,
    /// Read position in the stream, in source samples.
    pos: f64,
    /// Samples received: the next frame's offset.
    received: u64,
    /// The stream's total length, once its end is known.
    total: Option<u64>,
    phase: Phase,
    underruns: u32,
    /// When (in output frames) its first frame arrived.
    first_frame_at: Option<u64>,
    /// When (in output frames) it last ran dry, and the allowance then, until the next frame
    /// arrives.
    starved: Option<(u64, f64)>,
    /// Output frames since the last progress report.
    since_progress: u64,
}

impl Stream {
    /// Samples rendered: the play cursor.
    fn played(&self) -> u64 {
        match self.total {
            Some(total) => (self.pos as u64).min(total),
            None => self.pos as u64,
        }
    }

    fn buffered(&self) -> u64 {
        self.received.saturating_sub(self.pos as u64)
    }
}

/// A stream that ended; its figures stay readable until the next stream begins.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Figures {
    id: u32,
    played: u64,
    underruns: u32,
}

#[derive(Debug, Clone)]
enum State {
    Idle,
    Live(Stream),
    Over(Figures),
}

/// A replaced stream's last output value, decaying to silence.
#[derive(Debug, Clone, Copy)]
struct Decay {
    value: f32,
    left: u32,
    of: u32,
}

/// The engine. See the module docs.
pub struct Engine {
    out_rate: u32,
    /// Output frames rendered since the engine was created.
    clock: u64,
    /// The jitter allowance, in seconds.
    allowance: f64,
    ring: [i16; RING_SAMPLES],
    state: State,
    decay: Option<Decay>,
    /// The last value rendered (for a decay).
    last: f32,
    events: u32,
    /// Where the words of the stream begin, and how many the cursor passed.
    words: Words,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

/// One Int16 sample as a Web Audio float, exactly as the relay's PCM means it.
pub fn to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32768.0
}

impl Engine {
    /// An idle engine, all zeros (so a static one costs the wasm module no bytes): it renders
    /// silence until [`Engine::configure`] gives it its rate and allowance.
    pub const fn new() -> Self {
        Self {
            out_rate: 0,
            clock: 0,
            allowance: 0.0,
            ring: [0; RING_SAMPLES],
            state: State::Idle,
            decay: None,
            last: 0.0,
            events: 0,
            words: Words::new(),
        }
    }

    /// Sets the output rate and the jitter allowance (seconds, clamped to the maximum).
    pub fn configure(&mut self, out_rate: u32, allowance_s: f64) {
        self.out_rate = out_rate.max(1);
        self.allowance = allowance_s.clamp(0.0, MAX_ALLOWANCE_S);
    }

    /// The current jitter allowance, in seconds.
    pub fn allowance(&self) -> f64 {
        self.allowance
    }

    fn frames(&self, seconds: f64) -> u64 {
        // (No `round` without std: the values are never negative.)
        (seconds * f64::from(self.out_rate) + 0.5) as u64
    }

    /// A new stream at `rate` samples per second. A stream still audible is replaced by a short
    /// decay of its last value.
    pub fn begin(&mut self, id: u32, rate: u32) {
        if let State::Live(s) = &self.state {
            if matches!(
                s.phase,
                Phase::Playing | Phase::Rising { .. } | Phase::Fading { .. }
            ) {
                let of = self.frames(STOP_RAMP_S).max(1) as u32;
                self.decay = Some(Decay {
                    value: self.last,
                    left: of,
                    of,
                });
            }
        }
        self.words.begin(id);
        self.state = State::Live(Stream {
            id,
            step: f64::from(rate.max(1)) / f64::from(self.out_rate),
            pos: 0.0,
            received: 0,
            total: None,
            phase: Phase::Waiting,
            underruns: 0,
            first_frame_at: None,
            starved: None,
            since_progress: 0,
        });
    }

    /// Appends an audio frame (header and PCM, as the relay sent it).
    pub fn push(&mut self, frame: &[u8]) -> Push {
        if frame.len() < FRAME_HEADER_LEN + 2
            || frame[0] != FRAME_VERSION
            || !(frame.len() - FRAME_HEADER_LEN).is_multiple_of(2)
        {
            return Push::Malformed;
        }
        let word = |at: usize| {
            u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
        };
        let (id, offset) = (word(4), u64::from(word(8)));
        let pcm = &frame[FRAME_HEADER_LEN..];
        let clock = self.clock;
        let current = match &self.state {
            State::Idle => None,
            State::Live(s) => Some(s.id),
            State::Over(f) => Some(f.id),
        };
        if current.is_none_or(|current| id > current) {
            return Push::Ahead;
        }
        let State::Live(s) = &mut self.state else {
            return Push::Ignored;
        };
        let samples = (pcm.len() / 2) as u64;
        if s.id != id || matches!(s.phase, Phase::Fading { .. }) || offset > s.received {
            return Push::Ignored;
        }
        // Only what is new: a frame may overlap what was received (a resent frame).
        let skip = s.received - offset;
        if skip >= samples {
            return Push::Ignored;
        }
        let keep_from = (s.pos as u64).saturating_sub(1);
        let new = samples - skip;
        if s.received - keep_from + new > RING_SAMPLES as u64 {
            return Push::Full;
        }
        let mask = RING_SAMPLES - 1;
        for (k, pair) in pcm[skip as usize * 2..].chunks_exact(2).enumerate() {
            let at = (s.received as usize + k) & mask;
            self.ring[at] = i16::from_le_bytes([pair[0], pair[1]]);
        }
        s.received += new;
        s.first_frame_at.get_or_insert(clock);
        if let Some((at, allowance)) = s.starved.take() {
            // The allowance was short by as long as the stream waited for this frame.
            let waited = (clock - at) as f64 / f64::from(self.out_rate);
            self.allowance = self.allowance.max(allowance + waited).min(MAX_ALLOWANCE_S);
        }
        if (s.buffered() as f64) < PROMPT_BELOW_S * s.step * f64::from(self.out_rate) {
            self.events |= event::RECEIVED;
        }
        Push::Accepted
    }

    /// The relay ended the stream after `total` samples: it drains once they have played.
    pub fn end(&mut self, id: u32, total: u64) {
        if let State::Live(s) = &mut self.state {
            if s.id == id {
                s.total = Some(total);
            }
        }
    }

    /// Stops the stream: a short fade if it is audible, then nothing more of it.
    pub fn stop(&mut self, id: u32) {
        let of = self.frames(STOP_RAMP_S).max(1) as u32;
        let State::Live(s) = &mut self.state else {
            return;
        };
        if s.id != id {
            return;
        }
        match s.phase {
            Phase::Playing | Phase::Rising { .. } => s.phase = Phase::Fading { left: of, of },
            Phase::Waiting | Phase::Starved => self.finish(event::STOPPED),
            Phase::Fading { .. } => {}
        }
    }

    fn finish(&mut self, why: u32) {
        if let State::Live(s) = &self.state {
            self.state = State::Over(Figures {
                id: s.id,
                played: s.played(),
                underruns: s.underruns,
            });
            self.events |= why;
        }
    }

    /// The sample at stream index `i`, or silence past what was received.
    fn sample(&self, s: &Stream, i: i64) -> f32 {
        if i < 0 || i as u64 >= s.received {
            return 0.0;
        }
        to_f32(self.ring[i as usize & (RING_SAMPLES - 1)])
    }

    /// Whether the next output sample can be rendered from what was received.
    fn ready(s: &Stream) -> bool {
        let at = s.pos as u64;
        match s.total {
            Some(total) if at >= total => false,
            // Past the last sample, interpolation reads silence.
            Some(total) if s.received >= total => true,
            _ if s.step == 1.0 => at < s.received,
            _ => at + 2 < s.received,
        }
    }

    /// Whether a waiting or starved stream may (re)start.
    fn may_start(&self, s: &Stream) -> bool {
        if s.total.is_some_and(|total| s.received >= total) {
            return true;
        }
        let enough = s.buffered() as f64 >= self.allowance * f64::from(self.out_rate) * s.step;
        match s.phase {
            Phase::Waiting => {
                let waited = s
                    .first_frame_at
                    .is_some_and(|at| self.clock - at >= self.frames(self.allowance));
                waited && enough
            }
            _ => enough,
        }
    }

    /// Renders the next `out.len()` output frames.
    pub fn render(&mut self, out: &mut [f32]) {
        let progress_every = self.frames(PROGRESS_S).max(1);
        let ramp = self.frames(STOP_RAMP_S).max(1) as u32;
        if let State::Live(s) = &self.state {
            if matches!(s.phase, Phase::Waiting | Phase::Starved) && self.may_start(s) {
                let first = s.phase == Phase::Waiting;
                if let State::Live(s) = &mut self.state {
                    // The first start is exact; after silence, a short fade-in.
                    s.phase = if first {
                        Phase::Playing
                    } else {
                        Phase::Rising {
                            left: ramp,
                            of: ramp,
                        }
                    };
                }
                if first {
                    self.events |= event::STARTED;
                }
            }
        }
        for slot in out.iter_mut() {
            let mut value = self.next_sample(progress_every);
            if let Some(decay) = &mut self.decay {
                decay.left -= 1;
                value += decay.value * decay.left as f32 / decay.of as f32;
                if decay.left == 0 {
                    self.decay = None;
                }
            }
            *slot = value;
        }
        self.clock += out.len() as u64;
        let cursor = self.cursor();
        if self.words.pass(cursor.stream, cursor.played) {
            self.events |= event::WORD;
        }
    }

    /// Where more words of stream `id` begin (stream samples, in order).
    pub fn words(&mut self, id: u32, starts: &[u32]) {
        self.words.add(id, starts);
        let cursor = self.cursor();
        if self.words.pass(cursor.stream, cursor.played) {
            self.events |= event::WORD;
        }
    }

    fn next_sample(&mut self, progress_every: u64) -> f32 {
        let State::Live(s) = &self.state else {
            return 0.0;
        };
        match s.phase {
            Phase::Waiting | Phase::Starved => return 0.0,
            Phase::Playing | Phase::Rising { .. } | Phase::Fading { .. } => {}
        }
        if s.total.is_some_and(|total| s.pos as u64 >= total) {
            let fading = matches!(s.phase, Phase::Fading { .. });
            self.finish(if fading {
                event::STOPPED
            } else {
                event::DRAINED
            });
            return 0.0;
        }
        if !Self::ready(s) {
            if let Phase::Fading { .. } = s.phase {
                self.finish(event::STOPPED);
                return 0.0;
            }
            let (clock, allowance) = (self.clock, self.allowance);
            self.allowance = (allowance * 2.0).clamp(0.005, MAX_ALLOWANCE_S);
            if let State::Live(s) = &mut self.state {
                s.phase = Phase::Starved;
                s.underruns += 1;
                s.starved = Some((clock, allowance));
            }
            self.events |= event::UNDERRUN;
            return 0.0;
        }
        let value = if s.step == 1.0 {
            self.sample(s, s.pos as i64)
        } else {
            let i = s.pos as i64;
            let frac = (s.pos - i as f64) as f32;
            hermite(
                self.sample(s, i - 1),
                self.sample(s, i),
                self.sample(s, i + 1),
                self.sample(s, i + 2),
                frac,
            )
        };
        let State::Live(s) = &mut self.state else {
            unreachable!("checked above");
        };
        s.pos += s.step;
        s.since_progress += 1;
        if s.since_progress >= progress_every {
            s.since_progress = 0;
            self.events |= event::PROGRESS;
        }
        let value = match &mut s.phase {
            Phase::Rising { left, of } => {
                let gain = 1.0 - *left as f32 / *of as f32;
                *left -= 1;
                if *left == 0 {
                    s.phase = Phase::Playing;
                }
                value * gain
            }
            Phase::Fading { left, of } => {
                let gain = *left as f32 / *of as f32;
                *left -= 1;
                if *left == 0 {
                    self.finish(event::STOPPED);
                }
                value * gain
            }
            _ => value,
        };
        self.last = value;
        value
    }

    /// The events since the last call, as [`event`] bits.
    pub fn take_events(&mut self) -> u32 {
        core::mem::take(&mut self.events)
    }

    /// The current (or last) stream: its id, play cursor, samples buffered and underruns.
    pub fn cursor(&self) -> Cursor {
        match &self.state {
            State::Idle => Cursor::default(),
            State::Live(s) => Cursor {
                stream: s.id,
                played: s.played(),
                buffered: s.buffered(),
                underruns: s.underruns,
                words: self.words.passed(),
            },
            State::Over(f) => Cursor {
                stream: f.id,
                played: f.played,
                buffered: 0,
                underruns: f.underruns,
                words: self.words.passed(),
            },
        }
    }
}

/// Where a stream's playback stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The stream.
    pub stream: u32,
    /// Samples rendered.
    pub played: u64,
    /// Samples received and not yet rendered.
    pub buffered: u64,
    /// Times it ran dry.
    pub underruns: u32,
    /// Words whose start it passed.
    pub words: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use orpheus_protocol::AudioFrame;

    const RATE: u32 = 24_000;
    const QUANTUM: usize = 128;

    fn engine(out_rate: u32) -> Box<Engine> {
        let mut e = Box::new(Engine::new());
        e.configure(out_rate, DEFAULT_ALLOWANCE_S);
        e
    }

    fn frame(stream: u32, offset: u32, samples: &[i16]) -> Vec<u8> {
        let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        AudioFrame {
            flags: 0,
            stream,
            offset,
            pcm: &pcm,
        }
        .encode()
    }

    fn signal(n: usize, seed: u64) -> Vec<i16> {
        let mut rng = orpheus_test_support::rng(seed);
        (0..n).map(|_| rng.i16(..)).collect()
    }

    /// Renders `quanta` render quanta, returning the samples and the events of each.
    fn render(e: &mut Engine, quanta: usize) -> (Vec<f32>, Vec<u32>) {
        let (mut out, mut events) = (Vec::new(), Vec::new());
        for _ in 0..quanta {
            let mut q = [0.0f32; QUANTUM];
            e.render(&mut q);
            out.extend_from_slice(&q);
            events.push(e.take_events());
        }
        (out, events)
    }

    /// Pushes `samples` as frames of `size` samples.
    fn push_all(e: &mut Engine, stream: u32, samples: &[i16], size: usize) {
        for (k, piece) in samples.chunks(size).enumerate() {
            assert_eq!(
                e.push(&frame(stream, (k * size) as u32, piece)),
                Push::Accepted
            );
        }
    }

    #[test]
    fn same_rate_plays_every_sample_exactly_then_drains() {
        let mut e = engine(RATE);
        let source = signal(10_000, 1);
        e.begin(7, RATE);
        push_all(&mut e, 7, &source, 1001);
        e.end(7, source.len() as u64);
        let (out, events) = render(&mut e, 120);
        let start = out.iter().position(|&v| v != 0.0).unwrap();
        let played: Vec<f32> = out[start..start + source.len()].to_vec();
        let want: Vec<f32> = source.iter().map(|&s| to_f32(s)).collect();
        assert_eq!(played, want, "bit-exact");
        assert!(out[start + source.len()..].iter().all(|&v| v == 0.0));
        let all = events.iter().fold(0, |a, b| a | b);
        assert_eq!(
            all & (event::STARTED | event::DRAINED),
            event::STARTED | event::DRAINED
        );
        assert_eq!(
            events.iter().filter(|&&b| b & event::DRAINED != 0).count(),
            1
        );
        assert_eq!(e.cursor().played, source.len() as u64);
        assert_eq!(e.cursor().underruns, 0);
    }

    #[test]
    fn frames_are_reported_on_receipt_only_while_little_is_buffered() {
        assert_eq!(
            (PROMPT_BELOW_S * 1000.0) as u64,
            orpheus_protocol::PROMPT_BELOW_MS
        );
        let mut e = engine(48_000);
        e.begin(1, RATE);
        let source = signal(24_000, 9);
        // 100 ms frames at 24 kHz: the fifth leaves 500 ms buffered.
        for (k, piece) in source.chunks(2_400).take(5).enumerate() {
            assert_eq!(e.push(&frame(1, (k * 2_400) as u32, piece)), Push::Accepted);
            let received = e.take_events() & event::RECEIVED != 0;
            assert_eq!(received, k < 4, "frame {k}");
        }
        // Playing drains it below again.
        render(&mut e, 20);
        assert_eq!(
            e.push(&frame(1, 12_000, &source[12_000..12_100])),
            Push::Accepted
        );
        assert_eq!(e.take_events() & event::RECEIVED, event::RECEIVED);
    }

    #[test]
    fn a_stream_starts_one_allowance_after_its_first_frame() {
        let mut e = engine(RATE);
        e.begin(1, RATE);
        // Nothing arrived yet: silence, however long.
        let (out, events) = render(&mut e, 10);
        assert!(out.iter().all(|&v| v == 0.0));
        assert!(events.iter().all(|&b| b == 0));
        push_all(&mut e, 1, &signal(2040, 2), 2040);
        let allowance = (DEFAULT_ALLOWANCE_S * f64::from(RATE)) as usize;
        let waiting = allowance.div_ceil(QUANTUM);
        let (out, events) = render(&mut e, waiting);
        assert!(out.iter().all(|&v| v == 0.0), "the allowance is waited out");
        assert!(events.iter().all(|&b| b & event::STARTED == 0));
        let (out, events) = render(&mut e, 1);
        assert_ne!(out[0], 0.0, "then it plays from the quantum's first frame");
        assert_eq!(events[0] & event::STARTED, event::STARTED);
    }

    #[test]
    fn a_late_frame_teaches_the_allowance_how_late_it_was() {
        let mut e = engine(RATE);
        e.begin(1, RATE);
        let source = signal(4800, 9);
        push_all(&mut e, 1, &source[..1200], 1200);
        // Plays its 50 ms, runs dry, and the next frame comes 30 quanta (160 ms) later.
        let (_, events) = render(&mut e, 20);
        assert!(events.iter().any(|&b| b & event::UNDERRUN != 0));
        assert_eq!(e.allowance(), 2.0 * DEFAULT_ALLOWANCE_S, "doubled at once");
        // From the start of the quantum it ran dry in.
        let dry_for = events
            .iter()
            .rev()
            .take_while(|&&b| b & event::UNDERRUN == 0)
            .count()
            + 1
            + 30;
        render(&mut e, 30);
        e.push(&frame(1, 1200, &source[1200..]));
        let waited = (dry_for * QUANTUM) as f64 / f64::from(RATE);
        let grown = DEFAULT_ALLOWANCE_S + waited;
        assert!(
            (e.allowance() - grown).abs() < 1e-9,
            "{} against {grown}",
            e.allowance()
        );
        // Only the first frame after the gap teaches; the next ones arrive in time.
        e.push(&frame(1, 4800, &signal(10, 10)));
        assert!((e.allowance() - grown).abs() < 1e-9);
    }

    #[test]
    fn a_complete_stream_starts_without_waiting() {
        let mut e = engine(RATE);
        e.begin(1, RATE);
        push_all(&mut e, 1, &signal(300, 3), 300);
        e.end(1, 300);
        let (out, events) = render(&mut e, 1);
        assert_ne!(out[0], 0.0);
        assert_eq!(events[0] & event::STARTED, event::STARTED);
    }

    #[test]
    fn running_dry_renders_silence_counts_once_and_resumes_with_a_fade_in_and_a_larger_allowance() {
        let mut e = engine(RATE);
        let source = signal(4800, 4);
        e.begin(1, RATE);
        push_all(&mut e, 1, &source[..1200], 1200);
        let (first, events) = render(&mut e, 30);
        assert_eq!(
            events.iter().filter(|&&b| b & event::UNDERRUN != 0).count(),
            1
        );
        assert_eq!(e.cursor().underruns, 1, "one starvation, one underrun");
        assert_eq!(e.cursor().played, 1200);
        assert_eq!(e.allowance(), 2.0 * DEFAULT_ALLOWANCE_S);
        // A little more than nothing is not enough to resume: the allowance is 40 ms now.
        e.push(&frame(1, 1200, &source[1200..1400]));
        let (out, _) = render(&mut e, 4);
        assert!(out.iter().all(|&v| v == 0.0), "waits for the allowance");
        e.push(&frame(1, 1400, &source[1400..4800]));
        e.end(1, 4800);
        let (rest, _) = render(&mut e, 40);
        // The silence of the underrun aside, the output is the source, in order: exact, but
        // for a fade-in over the ramp where it resumed.
        let ramp = (STOP_RAMP_S * f64::from(RATE) + 0.5) as usize;
        let resumed = rest.iter().position(|&v| v != 0.0).expect("it resumed") - 1;
        let faded: Vec<f32> = (0..ramp)
            .map(|k| to_f32(source[1200 + k]) * (k as f32 / ramp as f32))
            .collect();
        let off = rest[resumed..resumed + ramp]
            .iter()
            .zip(&faded)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(off < 1e-6, "a fade-in ({off} off)");
        let exact: Vec<f32> = rest[resumed + ramp..]
            .iter()
            .copied()
            .filter(|v| *v != 0.0)
            .collect();
        let want: Vec<f32> = source[1200 + ramp..]
            .iter()
            .map(|&s| to_f32(s))
            .filter(|v| *v != 0.0)
            .collect();
        assert_eq!(exact, want);
        let before: Vec<f32> = first.iter().copied().filter(|v| *v != 0.0).collect();
        let source_before: Vec<f32> = source[..1200]
            .iter()
            .map(|&s| to_f32(s))
            .filter(|v| *v != 0.0)
            .collect();
        assert_eq!(before, source_before);
        assert_eq!(
            e.cursor().played,
            4800,
            "nothing lost: every sample played once"
        );
        assert_eq!(e.cursor().underruns, 1);
    }

    #[test]
    fn stop_fades_within_five_milliseconds_and_nothing_plays_after() {
        let mut e = engine(48_000);
        e.begin(3, 48_000);
        let loud = vec![i16::MAX; 48_000];
        push_all(&mut e, 3, &loud, 4800);
        render(&mut e, 10);
        e.stop(3);
        let (out, events) = render(&mut e, 10);
        let ramp = (STOP_RAMP_S * 48_000.0) as usize;
        let last_sound = out.iter().rposition(|&v| v != 0.0).unwrap();
        assert!(last_sound < ramp, "silent after {last_sound} frames");
        assert!(out[..ramp].windows(2).all(|w| w[1] <= w[0]), "a ramp down");
        assert!(events.iter().any(|&b| b & event::STOPPED != 0));
        assert_eq!(e.push(&frame(3, 48_000, &[1, 2])), Push::Ignored);
        let (after, _) = render(&mut e, 10);
        assert!(after.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn stale_duplicate_and_overlapping_frames() {
        let mut e = engine(RATE);
        e.begin(5, RATE);
        let source = signal(300, 5);
        assert_eq!(
            e.push(&frame(4, 0, &source[..100])),
            Push::Ignored,
            "old stream"
        );
        assert_eq!(e.push(&frame(5, 0, &source[..100])), Push::Accepted);
        assert_eq!(
            e.push(&frame(5, 0, &source[..100])),
            Push::Ignored,
            "repeated"
        );
        assert_eq!(
            e.push(&frame(5, 150, &source[150..200])),
            Push::Ignored,
            "a gap"
        );
        // Resent from 50: only 100..200 is new.
        assert_eq!(e.push(&frame(5, 50, &source[50..200])), Push::Accepted);
        assert_eq!(e.push(&frame(5, 200, &source[200..])), Push::Accepted);
        e.end(5, 300);
        let (out, _) = render(&mut e, 10);
        let want: Vec<f32> = source.iter().map(|&s| to_f32(s)).collect();
        assert_eq!(&out[..300], &want[..]);
        assert_eq!(e.push(&[2; 20]), Push::Malformed, "unknown version");
        assert_eq!(e.push(&[1; 13]), Push::Malformed, "too short");
    }

    #[test]
    fn frames_before_any_begin_are_ahead() {
        let mut e = engine(RATE);
        assert_eq!(e.push(&frame(1, 0, &[1, 2])), Push::Ahead);
        e.begin(1, RATE);
        assert_eq!(e.push(&frame(1, 0, &[1, 2])), Push::Accepted);
        e.stop(1);
        assert_eq!(e.push(&frame(1, 2, &[3])), Push::Ignored, "stopped");
        assert_eq!(e.push(&frame(2, 0, &[3])), Push::Ahead);
    }

    #[test]
    fn a_full_ring_refuses_until_played() {
        let mut e = engine(RATE);
        e.begin(1, RATE);
        let chunk = signal(16_384, 6);
        let mut offset = 0u32;
        while e.push(&frame(1, offset, &chunk)) == Push::Accepted {
            offset += chunk.len() as u32;
        }
        assert!(offset as usize <= RING_SAMPLES);
        assert!(offset as usize > RING_SAMPLES - chunk.len() - 1);
        assert_eq!(e.push(&frame(1, offset, &chunk)), Push::Full);
        render(&mut e, 200);
        assert_eq!(e.push(&frame(1, offset, &chunk)), Push::Accepted);
    }

    #[test]
    fn resampling_is_seamless_and_keeps_the_pitch() {
        let tone: Vec<i16> = (0..24_000)
            .map(|i| {
                ((i as f64 * 440.0 * std::f64::consts::TAU / 24_000.0).sin() * 20_000.0) as i16
            })
            .collect();
        let play = |piece: usize| {
            let mut e = engine(48_000);
            e.begin(1, RATE);
            push_all(&mut e, 1, &tone, piece);
            e.end(1, tone.len() as u64);
            render(&mut e, 800).0
        };
        let whole = play(24_000);
        assert_eq!(whole, play(1), "frame boundaries change nothing");
        assert_eq!(whole, play(333));
        let start = whole.iter().position(|&v| v != 0.0).unwrap();
        let body = &whole[start + 100..start + 47_900];
        let crossings = body
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        let seconds = body.len() as f64 / 48_000.0;
        let hz = crossings as f64 / seconds;
        assert!((hz - 440.0).abs() < 2.0, "{hz} Hz");
        let largest_step = body
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max);
        assert!(largest_step < 0.06, "smooth: {largest_step}");
    }

    #[test]
    fn replacing_an_audible_stream_decays_instead_of_clicking() {
        let mut e = engine(RATE);
        e.begin(1, RATE);
        push_all(&mut e, 1, &vec![i16::MAX; 24_000], 2400);
        let (before, _) = render(&mut e, 10);
        let last = *before.last().unwrap();
        e.begin(2, RATE);
        let (out, _) = render(&mut e, 2);
        assert!(
            out[0] < last && out[0] > 0.8 * last,
            "decays from where it was"
        );
        let ramp = (STOP_RAMP_S * f64::from(RATE)) as usize;
        assert!(out[ramp..].iter().all(|&v| v == 0.0));
        assert_eq!(e.cursor().stream, 2);
    }
}
