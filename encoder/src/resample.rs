//! A band-limited resampler for a fixed rational ratio (24 kHz to any of the relay's rates), as
//! a stream: samples in, in pieces of any length; samples out as soon as they are determined.
//!
//! A polyphase windowed-sinc filter: one low-pass (Kaiser window, 80 dB) designed at the
//! common rate `in × up`, its passband to 0.45 of the lower rate and its stopband from 0.5 of
//! it, so that nothing above the output's Nyquist frequency folds back into the band (and, when
//! upsampling, no image of the input rises above its own); each output sample takes the taps of
//! its phase. Its delay (half the filter) is taken off the front, and its tail flushed at the
//! end, so `n` samples in make `round(n × out / in)` samples out, aligned with the input.

/// Stopband attenuation, in dB.
const ATTENUATION_DB: f64 = 80.0;

/// Passband edge and stopband edge, as shares of the lower of the two rates.
const PASS: f64 = 0.45;
const STOP: f64 = 0.5;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// The ratio out/in, reduced: `up` output phases for every `down` input samples.
    up: u64,
    down: u64,
    /// Taps per phase, and the filter: `taps[phase * per_phase + k]` weighs the input `k`
    /// samples before the one the output sample follows.
    per_phase: usize,
    taps: Vec<f32>,
    /// Recent input samples, the first being input number `base`; how many came in all.
    history: Vec<f32>,
    base: u64,
    consumed: u64,
    /// Output samples made so far, counted from the (delayed) start, and the delay to skip.
    made: u64,
    delay: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The zeroth-order modified Bessel function of the first kind (for the Kaiser window).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    for k in 1..50 {
        term *= (x / 2.0) / k as f64;
        sum += term * term;
        if term * term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl Resampler {
    /// A resampler from `from` to `to` samples a second (`None` when they are equal).
    pub fn new(from: u32, to: u32) -> Option<Self> {
        if from == to {
            return None;
        }
        let g = gcd(u64::from(from), u64::from(to));
        let (up, down) = (u64::from(to) / g, u64::from(from) / g);
        let lower = f64::from(from.min(to));
        let common = f64::from(from) * up as f64;
        // Kaiser's estimate of the length for the attenuation and the transition width; the
        // centre on a whole output sample, so that the delay taken off is exact.
        let transition = (STOP - PASS) * lower / common;
        let length = (ATTENUATION_DB - 7.95) / (14.36 * transition);
        let half = ((length / 2.0) / down as f64).ceil() as usize * down as usize;
        let n = 2 * half + 1;
        let per_phase = n.div_ceil(up as usize);
        let beta = 0.1102 * (ATTENUATION_DB - 8.7);
        let cutoff = (PASS + STOP) / 2.0 * lower / common;
        let norm = bessel_i0(beta);
        // Gain `up`: each output phase sums one in `up` of the upsampled filter.
        let filter: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64 - half as f64;
                let sinc = if t == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t)
                };
                let r = t / half as f64;
                let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / norm;
                sinc * window * up as f64
            })
            .collect();
        let mut taps = vec![0.0f32; per_phase * up as usize];
        for phase in 0..up as usize {
            for k in 0..per_phase {
                let i = phase + k * up as usize;
                taps[phase * per_phase + k] = filter.get(i).copied().unwrap_or(0.0) as f32;
            }
        }
        Some(Self {
            up,
            down,
            per_phase,
            taps,
            history: Vec::new(),
            base: 0,
            consumed: 0,
            made: 0,
            delay: (half / down as usize) as u64,
        })
    }

    /// Takes in `input`, and adds the output samples it determines to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        for &x in input {
            self.take(x, out);
        }
    }

    /// The end: flushes the filter's tail with silence so the last input samples come out, up
    /// to `round(n × out / in)` samples in all for `n` samples in.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let want = (self.consumed * self.up + self.down / 2) / self.down;
        let mut silence = 0;
        while self.made.saturating_sub(self.delay) < want && silence < 4 * self.per_phase {
            self.take(0.0, out);
            silence += 1;
        }
        let extra = self.made.saturating_sub(self.delay).saturating_sub(want) as usize;
        out.truncate(out.len().saturating_sub(extra));
    }

    fn take(&mut self, x: f32, out: &mut Vec<f32>) {
        self.history.push(x);
        self.consumed += 1;
        self.emit_ready(out);
        // Only the last `per_phase` samples are ever read again.
        if self.history.len() >= 4 * self.per_phase {
            let dropped = self.history.len() - self.per_phase;
            self.history.drain(..dropped);
            self.base += dropped as u64;
        }
    }

    /// Makes every output sample whose input has all arrived: output `m` (on the common
    /// grid at `m × down`) follows input `floor(m × down / up)`, `phase` steps past it.
    fn emit_ready(&mut self, out: &mut Vec<f32>) {
        loop {
            let at = self.made * self.down;
            let newest = at / self.up;
            if newest >= self.consumed {
                return;
            }
            let phase = (at % self.up) as usize;
            let taps = &self.taps[phase * self.per_phase..(phase + 1) * self.per_phase];
            let mut sum = 0.0f32;
            for (k, &t) in taps.iter().enumerate() {
                // Inputs before the first are silence.
                let Some(input) = newest.checked_sub(k as u64) else {
                    break;
                };
                sum += t * self.history[(input - self.base) as usize];
            }
            if self.made >= self.delay {
                out.push(sum);
            }
            self.made += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, seconds: f64) -> Vec<f32> {
        (0..(f64::from(rate) * seconds) as usize)
            .map(|i| {
                (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32 * 0.5
            })
            .collect()
    }

    fn resample(from: u32, to: u32, input: &[f32], piece: usize) -> Vec<f32> {
        let mut r = Resampler::new(from, to).unwrap();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            r.push(chunk, &mut out);
        }
        r.finish(&mut out);
        out
    }

    /// The RMS of `x` away from its ends (the filter's run-in and run-out).
    fn rms(x: &[f32]) -> f64 {
        let inner = &x[x.len() / 5..x.len() * 4 / 5];
        (inner
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            / inner.len() as f64)
            .sqrt()
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    const RATES: [u32; 6] = [8_000, 16_000, 22_050, 32_000, 44_100, 48_000];

    #[test]
    fn lengths_follow_the_ratio_in_pieces_of_any_size() {
        let input = tone(440.0, 24_000, 1.01);
        for to in RATES {
            let whole = resample(24_000, to, &input, input.len());
            let pieces = resample(24_000, to, &input, 317);
            assert_eq!(whole, pieces, "{to}");
            let want = (input.len() as u64 * u64::from(to) + 12_000) / 24_000;
            assert_eq!(whole.len() as u64, want, "{to}");
        }
    }

    #[test]
    fn the_passband_is_flat_and_in_time() {
        for to in RATES {
            let top = PASS * f64::from(to.min(24_000));
            for freq in [100.0, 1_000.0, top * 0.5, top] {
                let input = tone(freq, 24_000, 0.5);
                let out = resample(24_000, to, &input, 1000);
                let gain = db(rms(&out) / rms(&input));
                assert!(gain.abs() <= 0.5, "{to} Hz at {freq:.0} Hz: {gain:.2} dB");
                // In time: the output's tone has the input's phase where the two meet.
                let expected = tone(freq, to, 0.5);
                let inner = out.len() / 2;
                let err = (out[inner] - expected[inner]).abs();
                assert!(err < 0.02, "{to} Hz at {freq:.0} Hz: off by {err}");
            }
        }
    }

    #[test]
    fn nothing_folds_back_below_the_output_nyquist() {
        // Downsampling: tones above the output's Nyquist frequency are gone.
        for to in [8_000, 16_000, 22_050] {
            for share in [0.5f64, 0.6, 0.8, 0.95] {
                let freq = f64::from(to) * share.max(STOP);
                if freq >= 12_000.0 {
                    continue;
                }
                let input = tone(freq, 24_000, 0.5);
                let out = resample(24_000, to, &input, 1000);
                let level = db(rms(&out) / rms(&input));
                assert!(
                    level <= -60.0,
                    "{to} Hz, a {freq:.0} Hz tone: {level:.1} dB"
                );
            }
        }
    }

    #[test]
    fn upsampling_makes_no_images() {
        // A tone near the input's Nyquist frequency leaves nothing above it in the output.
        for to in [32_000, 44_100, 48_000] {
            let input = tone(10_000.0, 24_000, 0.5);
            let out = resample(24_000, to, &input, 1000);
            // Whatever is not the 10 kHz tone, by subtracting the ideal one.
            let ideal = tone(10_000.0, to, 0.5);
            let residue: Vec<f32> = out.iter().zip(&ideal).map(|(a, b)| a - b).collect();
            let level = db(rms(&residue) / rms(&input));
            assert!(level <= -60.0, "{to} Hz: {level:.1} dB beside the tone");
        }
    }
}
