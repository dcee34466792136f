//! OpenAI's server-sent events for speech (`stream_format: "sse"`): the audio, in the
//! response's format, in `speech.audio.delta` events (base64) as it is made, then one
//! `speech.audio.done` with the usage. LiveKit's and OpenAI's clients read exactly these.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

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
        let e = parsed(&done(12));
        assert_eq!(e["type"], "speech.audio.done");
        assert_eq!(e["usage"]["input_tokens"], 12);
        assert_eq!(e["usage"]["total_tokens"], 12);
    }
}
