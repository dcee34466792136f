//! The few control messages the player reads and writes, without serde: a small JSON reader for
//! the relay's messages and a writer for the player's own. (serde_json's machinery would be
//! most of the player's size.) The reader is checked against every example in
//! docs/protocol.md, and against the protocol crate's own parser.
//!
//! Numbers on the wire are whole numbers; the reader keeps the integer part of any number.

use orpheus_protocol::EndReason;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(Option<u64>),
    Str(String),
    Arr,
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Json::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn num(&self, key: &str) -> Option<u64> {
        match self.get(key) {
            Some(Json::Num(n)) => *n,
            _ => None,
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: u32,
}

/// Nesting the reader accepts (the relay's messages nest three deep).
const MAX_DEPTH: u32 = 16;

impl Reader<'_> {
    fn skip_space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_space();
        (self.bytes.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    fn literal(&mut self, word: &[u8], value: Json) -> Option<Json> {
        self.bytes[self.at..].starts_with(word).then(|| {
            self.at += word.len();
            value
        })
    }

    fn value(&mut self) -> Option<Json> {
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'{' => self.nested(|r| r.object()),
            b'[' => self.nested(|r| r.array()),
            b'"' => self.string().map(Json::Str),
            b't' => self.literal(b"true", Json::Bool(true)),
            b'f' => self.literal(b"false", Json::Bool(false)),
            b'n' => self.literal(b"null", Json::Null),
            b'-' | b'0'..=b'9' => Some(self.number()),
            _ => None,
        }
    }

    fn nested(&mut self, inner: impl FnOnce(&mut Self) -> Option<Json>) -> Option<Json> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let value = inner(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Option<Json> {
        self.at += 1;
        let mut fields = Vec::new();
        if self.eat(b'}').is_some() {
            return Some(Json::Obj(fields));
        }
        loop {
            self.skip_space();
            let key = self.string()?;
            self.eat(b':')?;
            fields.push((key, self.value()?));
            if self.eat(b',').is_none() {
                self.eat(b'}')?;
                return Some(Json::Obj(fields));
            }
        }
    }

    fn array(&mut self) -> Option<Json> {
        self.at += 1;
        if self.eat(b']').is_some() {
            return Some(Json::Arr);
        }
        loop {
            self.value()?;
            if self.eat(b',').is_none() {
                self.eat(b']')?;
                return Some(Json::Arr);
            }
        }
    }

    /// A whole number; a negative, fractional or too large one has no `u64` value.
    fn number(&mut self) -> Json {
        let mut value = Some(0u64);
        while let Some(&b) = self.bytes.get(self.at) {
            match b {
                b'0'..=b'9' => {
                    value = value
                        .and_then(|v| v.checked_mul(10))
                        .and_then(|v| v.checked_add(u64::from(b - b'0')));
                }
                b'-' | b'+' | b'.' | b'e' | b'E' => value = None,
                _ => break,
            }
            self.at += 1;
        }
        Json::Num(value)
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        self.at += 4;
        digits.iter().try_fold(0u32, |acc, &b| {
            let digit = (b as char).to_digit(16)?;
            Some(acc * 16 + digit)
        })
    }

    fn string(&mut self) -> Option<String> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let escape = *self.bytes.get(self.at)?;
                    self.at += 1;
                    let c = match escape {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => self.escaped_char()?,
                        other => other as char,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(byte),
            }
        }
    }

    /// The character of a `\u` escape (the `\u` read), joining a surrogate pair; a lone
    /// surrogate reads as U+FFFD, as the relay reads it.
    fn escaped_char(&mut self) -> Option<char> {
        let unit = self.hex4()?;
        if (0xD800..0xDC00).contains(&unit) && self.bytes[self.at..].starts_with(b"\\u") {
            let save = self.at;
            self.at += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                return char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00));
            }
            self.at = save;
        }
        Some(char::from_u32(unit).unwrap_or('\u{FFFD}'))
    }
}

fn parse_json(text: &str) -> Option<Json> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    let value = reader.value()?;
    reader.skip_space();
    (reader.at == text.len()).then_some(value)
}

/// The error an `end` or `error` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayError {
    /// The code's wire name (a newer relay may send codes this player does not know).
    pub code: String,
    /// The fixed text for the code.
    pub message: String,
    /// Seconds to wait before trying again, when given.
    pub retry_after_s: Option<u32>,
}

/// What the player reads from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The session is open; these are its limits.
    Ready {
        /// Longest text of one message, in characters.
        max_text_chars: u32,
        /// Largest client frame, in bytes.
        max_frame_bytes: u32,
        /// Protocol v2: how long the relay keeps a message whose socket dropped.
        resume_grace_ms: Option<u64>,
    },
    /// A message's audio begins.
    Start {
        /// The message id.
        id: String,
        /// The stream its frames carry.
        stream: u32,
        /// Samples per second.
        sample_rate: u32,
    },
    /// A message ended.
    End {
        /// The message id.
        id: String,
        /// Its stream, if it was accepted.
        stream: Option<u32>,
        /// Why.
        reason: EndReason,
        /// Samples sent for it.
        samples: u64,
        /// For reason `error`.
        error: Option<RelayError>,
        /// Protocol v2: characters of the text heard (an estimate).
        heard_chars: Option<u64>,
        /// Protocol v2: how the message went.
        metrics: Option<Metrics>,
    },
    /// A frame of the player's was not a valid message, or was sent too fast.
    Error(RelayError),
    /// The answer to a ping.
    Pong,
}

/// Protocol v2: how a message went, from its `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// The upstream's time to first byte for the first segment.
    pub first_byte_ms: Option<u64>,
    /// The relay's time to first audio.
    pub first_audio_ms: Option<u64>,
    /// Upstream segments requested.
    pub segments: u64,
    /// Upstream retries.
    pub retries: u64,
    /// The most audio flow control held back in the relay.
    pub held_back_ms: u64,
    /// Segments served from the relay's segment cache.
    pub cache_hits: u64,
}

fn metrics(value: &Json) -> Option<Metrics> {
    Some(Metrics {
        first_byte_ms: value.num("first_byte_ms"),
        first_audio_ms: value.num("first_audio_ms"),
        segments: value.num("segments")?,
        retries: value.num("retries")?,
        held_back_ms: value.num("held_back_ms")?,
        // (A relay without a segment cache does not send it.)
        cache_hits: value.num("cache_hits").unwrap_or(0),
    })
}

fn relay_error(value: &Json) -> Option<RelayError> {
    Some(RelayError {
        code: value.str("code")?.to_owned(),
        message: value.str("message").unwrap_or_default().to_owned(),
        retry_after_s: value
            .num("retry_after_s")
            .map(|n| n.min(u32::MAX as u64) as u32),
    })
}

fn small(n: u64) -> u32 {
    n.min(u64::from(u32::MAX)) as u32
}

impl Incoming {
    /// Reads a text frame from the relay; `None` for anything else (ignored, as the protocol
    /// may grow).
    pub fn parse(text: &str) -> Option<Self> {
        let json = parse_json(text)?;
        Some(match json.str("type")? {
            "ready" => {
                let limits = json.get("limits")?;
                Self::Ready {
                    max_text_chars: small(limits.num("max_text_chars")?),
                    max_frame_bytes: small(limits.num("max_frame_bytes")?),
                    resume_grace_ms: json.get("flow").and_then(|f| f.num("resume_grace_ms")),
                }
            }
            "start" => Self::Start {
                id: json.str("id")?.to_owned(),
                stream: small(json.num("stream")?),
                sample_rate: small(json.num("sample_rate")?),
            },
            "end" => Self::End {
                id: json.str("id")?.to_owned(),
                stream: json.num("stream").map(small),
                reason: EndReason::from_name(json.str("reason")?).unwrap_or(EndReason::Error),
                samples: json.num("samples")?,
                error: json.get("error").and_then(relay_error),
                heard_chars: json.get("heard").and_then(|h| h.num("chars")),
                metrics: json.get("metrics").and_then(metrics),
            },
            "error" => Self::Error(relay_error(&json)?),
            "pong" => Self::Pong,
            _ => return None,
        })
    }
}

/// Appends `text` as a JSON string.
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A small JSON object writer: strings, whole numbers and booleans.
#[derive(Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    fn key(&mut self, key: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        write_string(&mut self.out, key);
        self.out.push(':');
    }

    /// Adds a string field.
    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        write_string(&mut self.out, value);
        self
    }

    /// Adds a string field when there is a value.
    pub fn opt_str(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self,
        }
    }

    /// Adds a whole-number field.
    pub fn num(mut self, key: &str, mut value: u64) -> Self {
        self.key(key);
        // By hand: the formatting machinery would cost more than the rest of the writer.
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.out
            .push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
        self
    }

    /// Adds a whole-number field when there is a value.
    pub fn opt_num(self, key: &str, value: Option<u64>) -> Self {
        match value {
            Some(v) => self.num(key, v),
            None => self,
        }
    }

    /// Adds a boolean field.
    pub fn bool(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// Adds a field whose value is already JSON.
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.out.push_str(json);
        self
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

/// What a `speak` frame asks for beyond its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpeakOptions {
    /// The voice, if chosen.
    pub voice: Option<String>,
    /// The model, if chosen.
    pub model: Option<String>,
    /// Protocol v2: text will follow in `append`s.
    pub more: bool,
    /// `false` keeps the message out of the relay's segment cache.
    pub cache: bool,
}

/// The player's `speak` frame.
pub fn speak(id: &str, text: &str, options: &SpeakOptions) -> String {
    let mut writer = Writer::default()
        .str("type", "speak")
        .str("id", id)
        .str("text", text)
        .opt_str("voice", options.voice.as_deref())
        .opt_str("model", options.model.as_deref());
    if options.more {
        writer = writer.bool("more", true);
    }
    if !options.cache {
        writer = writer.bool("cache", false);
    }
    writer.finish()
}

/// Protocol v2: `text` for message `id`, after its first `at` characters.
pub fn append(id: &str, text: &str, at: u64) -> String {
    Writer::default()
        .str("type", "append")
        .str("id", id)
        .str("text", text)
        .num("at", at)
        .finish()
}

/// Protocol v2: the text of message `id` is complete.
pub fn finish(id: &str) -> String {
    Writer::default()
        .str("type", "finish")
        .str("id", id)
        .finish()
}

/// The player's `stop` frame for message `id`.
pub fn stop(id: &str) -> String {
    Writer::default().str("type", "stop").str("id", id).finish()
}

/// Protocol v2: the play cursor of `stream`, and how much of it arrived.
pub fn played(stream: u32, played: u64, received: u64, on_receipt: bool) -> String {
    let writer = Writer::default()
        .str("type", "played")
        .num("stream", u64::from(stream))
        .num("played", played)
        .num("received", received);
    // Absent means false: the periodic report stays as it was.
    if on_receipt {
        writer.bool("on_receipt", true).finish()
    } else {
        writer.finish()
    }
}

/// Protocol v2: continue message `id` from `played` samples into `stream` (absent: its
/// `start` never came).
pub fn resume(id: &str, stream: Option<u32>, played: u64) -> String {
    Writer::default()
        .str("type", "resume")
        .str("id", id)
        .opt_num("stream", stream.map(u64::from))
        .num("played", played)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orpheus_protocol::{ClientMessage, ServerMessage};

    /// Every JSON line of a code block in docs/protocol.md that is a server message.
    fn protocol_examples() -> Vec<String> {
        let doc = include_str!("../../docs/protocol.md");
        let mut examples = Vec::new();
        let mut in_json = false;
        let mut current = String::new();
        for line in doc.lines() {
            if line.starts_with("```json") {
                in_json = true;
                continue;
            }
            if line.starts_with("```") {
                in_json = false;
                continue;
            }
            if in_json {
                current.push_str(line);
                if parse_json(&current).is_some() {
                    examples.push(std::mem::take(&mut current));
                }
            }
        }
        examples
    }

    /// What the serde parser makes of a server message, in the terms the player reads.
    fn projected(message: ServerMessage) -> Option<Incoming> {
        let error = |e: orpheus_protocol::EndError| RelayError {
            code: e.code.as_str().to_owned(),
            message: e.message,
            retry_after_s: e.retry_after_s,
        };
        Some(match message {
            ServerMessage::Ready { limits, flow, .. } => Incoming::Ready {
                max_text_chars: limits.max_text_chars,
                max_frame_bytes: limits.max_frame_bytes,
                resume_grace_ms: flow.map(|f| u64::from(f.resume_grace_ms)),
            },
            ServerMessage::Start {
                id,
                stream,
                sample_rate,
                ..
            } => Incoming::Start {
                id,
                stream,
                sample_rate,
            },
            ServerMessage::End {
                id,
                stream,
                reason,
                samples,
                error: e,
                heard,
                metrics: m,
            } => Incoming::End {
                id,
                stream,
                reason,
                samples,
                error: e.map(error),
                heard_chars: heard.map(|h| h.chars),
                metrics: m.map(|m| Metrics {
                    first_byte_ms: m.first_byte_ms,
                    first_audio_ms: m.first_audio_ms,
                    segments: u64::from(m.segments),
                    retries: u64::from(m.retries),
                    held_back_ms: m.held_back_ms,
                    cache_hits: u64::from(m.cache_hits),
                }),
            },
            ServerMessage::Error {
                code,
                message,
                retry_after_s,
            } => Incoming::Error(RelayError {
                code: code.as_str().to_owned(),
                message,
                retry_after_s,
            }),
            ServerMessage::Pong => Incoming::Pong,
        })
    }

    #[test]
    fn reads_every_server_example_of_the_protocol_as_serde_does() {
        let examples = protocol_examples();
        let mut server = 0;
        for example in &examples {
            match ServerMessage::parse(example) {
                Ok(message) => {
                    server += 1;
                    assert_eq!(Incoming::parse(example), projected(message), "{example}");
                }
                // A client message, or an elided one ("…"): the light reader must not invent one.
                Err(_) => assert!(
                    ClientMessage::parse(example).is_ok()
                        || example.contains('…')
                        || Incoming::parse(example).is_none(),
                    "{example}"
                ),
            }
        }
        assert!(server >= 6, "only {server} server examples found");
    }

    #[test]
    fn reads_what_the_relay_writes() {
        let end = ServerMessage::End {
            id: "m \"1\" é\n😀".into(),
            stream: Some(7),
            reason: EndReason::Error,
            samples: 48_000,
            error: Some(orpheus_protocol::EndError::new(
                orpheus_protocol::ErrorCode::RateLimited,
                Some(3),
            )),
            heard: Some(orpheus_protocol::Heard {
                samples: 24_000,
                chars: 12,
            }),
            metrics: Some(orpheus_protocol::EndMetrics {
                first_byte_ms: Some(300),
                first_audio_ms: None,
                segments: 2,
                retries: 1,
                held_back_ms: 1500,
                cache_hits: 1,
            }),
        };
        assert_eq!(Incoming::parse(&end.to_json()), projected(end));
        let ready = ServerMessage::ready("s", orpheus_protocol::Limits::default(), None);
        assert_eq!(Incoming::parse(&ready.to_json()), projected(ready));
        let flow = orpheus_protocol::Flow {
            window_ms: 2000,
            resume_grace_ms: 20_000,
        };
        let ready = ServerMessage::ready("s", orpheus_protocol::Limits::default(), Some(flow));
        assert_eq!(Incoming::parse(&ready.to_json()), projected(ready));
    }

    #[test]
    fn escapes_and_surrogates() {
        let pair =
            r#"{"type":"start","id":"\ud83d\ude00 \u00e9\t","stream":1,"sample_rate":24000}"#;
        assert!(
            matches!(Incoming::parse(pair), Some(Incoming::Start { id, .. }) if id == "😀 é\t")
        );
        let lone = r#"{"type":"start","id":"x\ud83d","stream":1,"sample_rate":24000}"#;
        assert!(
            matches!(Incoming::parse(lone), Some(Incoming::Start { id, .. }) if id == "x\u{FFFD}")
        );
    }

    #[test]
    fn refuses_what_is_not_a_message() {
        for text in [
            "",
            "{",
            r#"{"type":"start"}"#,
            r#"{"type":"teleport"}"#,
            r#"{"type":"end","id":"m","reason":"done","samples":-1}"#,
            r#"{"type":"end","id":"m","reason":"done","samples":1.5}"#,
            r#"{"type":"end","id":"m","reason":"done","samples":99999999999999999999}"#,
            r#"{"type":"pong"} trailing"#,
            &"[".repeat(100),
        ] {
            assert_eq!(Incoming::parse(text), None, "{text}");
        }
    }

    #[test]
    fn writes_frames_the_relay_reads() {
        let text = "Quote \" backslash \\ newline \n bell \u{7} emoji 😀 arabic مرحبا";
        let options = SpeakOptions {
            voice: Some("troy".into()),
            cache: true,
            ..SpeakOptions::default()
        };
        let frame = speak("m1", text, &options);
        assert_eq!(
            ClientMessage::parse(&frame),
            Ok(ClientMessage::Speak {
                id: "m1".into(),
                text: text.into(),
                voice: Some("troy".into()),
                model: None,
                more: false,
                cache: true,
            })
        );
        let streamed = SpeakOptions {
            more: true,
            cache: false,
            ..SpeakOptions::default()
        };
        assert!(matches!(
            ClientMessage::parse(&speak("m1", "", &streamed)),
            Ok(ClientMessage::Speak {
                more: true,
                cache: false,
                ..
            })
        ));
        assert_eq!(
            ClientMessage::parse(&append("m1", text, 12)),
            Ok(ClientMessage::Append {
                id: "m1".into(),
                text: text.into(),
                at: Some(12),
            })
        );
        assert_eq!(
            ClientMessage::parse(&finish("m1")),
            Ok(ClientMessage::Finish { id: "m1".into() })
        );
        assert_eq!(
            ClientMessage::parse(&stop("m1")),
            Ok(ClientMessage::Stop {
                id: Some("m1".into())
            })
        );
        let mixed = Writer::default()
            .num("n", 42)
            .bool("b", false)
            .raw("r", "[1]")
            .finish();
        assert_eq!(mixed, r#"{"n":42,"b":false,"r":[1]}"#);
        assert_eq!(Writer::default().finish(), "{}");
    }
}
