//! Lone UTF-16 surrogates in JSON string escapes.
//!
//! `{"text":"cut \ud83d here"}` is valid JSON grammar, and JavaScript's `JSON.stringify` writes
//! exactly this for a string cut in the middle of an emoji (a `slice`, or an LLM token stream
//! cut mid-character). Such an escape names no Unicode scalar value, so strict parsers refuse
//! the whole frame. The relay reads each lone surrogate as U+FFFD, the replacement character, as
//! a browser's own UTF-8 encoder does when it sends such a string unescaped.

use crate::prelude::*;

/// The JSON escape of U+FFFD.
const REPLACEMENT_ESCAPE: &[u8] = b"\\uFFFD";

/// Reads the code unit of a `\uXXXX` escape whose four hex digits start at `at`.
fn code_unit(bytes: &[u8], at: usize) -> Option<u16> {
    let hex = core::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

fn is_high(unit: u16) -> bool {
    (0xD800..=0xDBFF).contains(&unit)
}

fn is_low(unit: u16) -> bool {
    (0xDC00..=0xDFFF).contains(&unit)
}

/// `frame` with every lone surrogate escape replaced by `\uFFFD`, or `None` when it has none
/// (paired escapes, escaped backslashes and text outside strings are left alone).
pub fn replace_lone_surrogates(frame: &str) -> Option<String> {
    let bytes = frame.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut replaced = false;
    let mut in_string = false;
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if !in_string {
            in_string = byte == b'"';
            out.push(byte);
            at += 1;
            continue;
        }
        match byte {
            b'"' => {
                in_string = false;
                out.push(byte);
                at += 1;
            }
            b'\\' if bytes.get(at + 1) == Some(&b'u') => {
                let Some(unit) = code_unit(bytes, at + 2) else {
                    // Malformed: leave it for the parser to refuse.
                    out.extend_from_slice(&bytes[at..at + 2]);
                    at += 2;
                    continue;
                };
                let paired_low = bytes.get(at + 6..at + 8) == Some(b"\\u")
                    && code_unit(bytes, at + 8).is_some_and(is_low);
                if is_high(unit) && paired_low {
                    out.extend_from_slice(&bytes[at..at + 12]);
                    at += 12;
                } else if is_high(unit) || is_low(unit) {
                    out.extend_from_slice(REPLACEMENT_ESCAPE);
                    replaced = true;
                    at += 6;
                } else {
                    out.extend_from_slice(&bytes[at..at + 6]);
                    at += 6;
                }
            }
            b'\\' => {
                // Any other escape, `\\` and `\"` included: copy it whole.
                let end = (at + 2).min(bytes.len());
                out.extend_from_slice(&bytes[at..end]);
                at = end;
            }
            _ => {
                out.push(byte);
                at += 1;
            }
        }
    }
    // Only ASCII escapes were replaced by ASCII escapes, so the bytes are still UTF-8.
    replaced.then(|| String::from_utf8(out).expect("still UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(frame: &str) -> String {
        let fixed = replace_lone_surrogates(frame).unwrap_or_else(|| frame.to_owned());
        let value: serde_json::Value = serde_json::from_str(&fixed).expect("parses once fixed");
        value["t"].as_str().expect("a string").to_owned()
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        assert_eq!(text_of(r#"{"t":"cut \ud83d here"}"#), "cut \u{FFFD} here");
        assert_eq!(text_of(r#"{"t":"\ude00 low first"}"#), "\u{FFFD} low first");
        assert_eq!(text_of(r#"{"t":"end \uD83D"}"#), "end \u{FFFD}");
        assert_eq!(
            text_of(r#"{"t":"two \ud83d\ud83d"}"#),
            "two \u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn pairs_and_other_escapes_are_left_alone() {
        assert_eq!(replace_lone_surrogates(r#"{"t":"\ud83d\ude00 ok"}"#), None);
        assert_eq!(
            replace_lone_surrogates(r#"{"t":"\\ud83d is text","u":"\u00e9"}"#),
            None
        );
        assert_eq!(replace_lone_surrogates(r#"{"t":"plain \"q\" é"}"#), None);
        assert_eq!(text_of(r#"{"t":"\ud83d\ude00 \ud83d"}"#), "😀 \u{FFFD}");
    }

    #[test]
    fn malformed_escapes_are_left_for_the_parser() {
        assert_eq!(replace_lone_surrogates(r#"{"t":"\uZZ"}"#), None);
        assert_eq!(replace_lone_surrogates(r#"{"t":"\u"#), None);
    }
}
