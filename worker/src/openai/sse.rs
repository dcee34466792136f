//! OpenAI's server-sent events for speech (`stream_format: "sse"`): the audio, in the
//! response's format, in `speech.audio.delta` events (base64) as it is made, then one
//! `speech.audio.done` with the usage. LiveKit's and OpenAI's clients read exactly these; the
//! word timings ride along as `speech.audio.words` events, which they skip.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use orpheus_protocol::WordTiming;

/// The response's `content-type`.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// One event: `data: <json>` and a blank line.
fn event(json: &str) -> Vec<u8> {
    format!("data: {json}\n\n").into_bytes()
}

/// A piece of the audio.
pub fn delta(audio: &[u8]) -> Vec<u8> {
    let audio = STANDARD.encode(audio);
    event(&format!(
        r#"{{"type":"speech.audio.delta","audio":"{audio}"}}"#
    ))
}

/// Where words are said, an event of its own (clients that do not know it skip it): each
/// word's start and end in seconds of the audio, and its characters in `input` (Unicode scalar
/// values), counted from the stream's samples at `rate`.
pub fn words(words: &[WordTiming], rate: u32) -> Vec<u8> {
    let seconds = |samples: u64| samples as f64 / f64::from(rate.max(1));
    let list: Vec<String> = words
        .iter()
        .map(|w| {
            format!(
                r#"{{"start":{:.3},"end":{:.3},"char_index":{},"char_length":{}}}"#,
                seconds(w.start),
                seconds(w.end),
                w.from,
                w.to.saturating_sub(w.from)
            )
        })
        .collect();
    event(&format!(
        r#"{{"type":"speech.audio.words","words":[{}]}}"#,
        list.join(",")
    ))
}

/// The end, with the usage: the input's characters as its tokens (Orpheus is billed by the
/// character), no output tokens.
pub fn done(input_chars: u64) -> Vec<u8> {
    event(&format!(
        r#"{{"type":"speech.audio.done","usage":{{"input_tokens":{input_chars},"output_tokens":0,"total_tokens":{input_chars}}}}}"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(bytes).unwrap();
        let json = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn events_as_openai_sends_them() {
        let d = parsed(&delta(&[0, 1, 2, 255]));
        assert_eq!(d["type"], "speech.audio.delta");
        assert_eq!(
            STANDARD.decode(d["audio"].as_str().unwrap()).unwrap(),
            [0, 1, 2, 255]
        );
        let w = parsed(&words(
            &[WordTiming {
                start: 1_200,
                end: 12_000,
                from: 2,
                to: 7,
            }],
            24_000,
        ));
        assert_eq!(w["type"], "speech.audio.words");
        assert_eq!(w["words"][0]["start"], 0.05);
        assert_eq!(w["words"][0]["end"], 0.5);
        assert_eq!(
            (
                w["words"][0]["char_index"].as_u64(),
                w["words"][0]["char_length"].as_u64()
            ),
            (Some(2), Some(5))
        );
        let e = parsed(&done(12));
        assert_eq!(e["type"], "speech.audio.done");
        assert_eq!(e["usage"]["input_tokens"], 12);
        assert_eq!(e["usage"]["total_tokens"], 12);
    }
}
