//! The deterministic test signal: a tone plus noise, both derived from the input text, so any
//! lost, repeated or reordered sample shows up in a sample-for-sample comparison.

/// Sample rate of everything this upstream produces, as Groq's Orpheus does.
pub const SAMPLE_RATE: u32 = 24_000;

/// FNV-1a, so the signal depends on every byte of the text.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Renders `samples_per_char` samples per character of `text`.
pub fn render_signal(text: &str, samples_per_char: usize) -> Vec<i16> {
    let seed = fnv1a(text) | 1;
    let frequency = 180.0 + (seed % 420) as f64;
    let step = std::f64::consts::TAU * frequency / f64::from(SAMPLE_RATE);
    let mut noise = seed;
    (0..text.chars().count() * samples_per_char)
        .map(|i| {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            let tone = (step * i as f64).sin() * 9000.0;
            (tone as i32 + (noise >> 54) as i32 - 512) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_text_dependent() {
        assert_eq!(render_signal("abc", 10), render_signal("abc", 10));
        assert_ne!(render_signal("abc", 10), render_signal("abd", 10));
        assert_eq!(render_signal("مرحبا", 3).len(), 15);
    }
}
