//! Texts the tests speak.

use std::time::Duration;

pub const LONG: Duration = Duration::from_secs(60);

pub fn english(chars: usize) -> String {
    let sentence = "The relay keeps every stream in order, and every message ends exactly once. ";
    let mut text = sentence.repeat(chars / sentence.len() + 1);
    text.truncate(
        text.char_indices()
            .nth(chars)
            .map_or(text.len(), |(i, _)| i),
    );
    text
}

pub fn arabic(chars: usize) -> String {
    let sentence = "مَرْحَبًا بِكُمْ فِي الْمُرَحِّلِ، كُلُّ رِسَالَةٍ تَنْتَهِي مَرَّةً وَاحِدَةً فَقَطْ. ";
    sentence.chars().cycle().take(chars).collect()
}

/// A text whose first segment the upstream drips and then stalls without closing: only the
/// relay releasing the request can close that upstream connection.
pub fn slow_text() -> String {
    format!(
        "[[fault:chunk=4000;gap_ms=3;stall_after=160000]] {}",
        english(300)
    )
}
