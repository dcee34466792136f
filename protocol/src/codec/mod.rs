//! The control messages without serde, for a client that must stay small (the player): a reader
//! of the relay's messages ([`Incoming`]) and a writer of a client's own ([`speak`],
//! [`append`], [`finish`], [`stop`], [`played`], [`resume`]). serde_json's machinery would be
//! most of the player's size. The reader is checked against every example in
//! docs/protocol.md, and against this crate's serde types.
//!
//! Numbers on the wire are whole numbers; the reader keeps the integer part of any number.

use crate::prelude::*;

mod json;

use crate::EndReason;
pub use json::{numbers, Writer};
use json::{parse_json, Json};

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
    /// Protocol v2: the session's defaults after a `configure`.
    Configured {
        /// How text is read (`markdown` or `plain`).
        markup: String,
        /// Words in the session's lexicon.
        lexicon: u64,
    },
    /// Protocol v2: where words of a stream are said.
    Words {
        /// The stream.
        stream: u32,
        /// Each word: its first sample and the sample after its last (in the stream), its
        /// first character in the message's text and the character after its last.
        words: Vec<Word>,
    },
}

/// Protocol v2: where a word is said, and which characters of the text it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    /// The stream sample it begins at.
    pub start: u64,
    /// The stream sample after its last.
    pub end: u64,
    /// Its first character in the message's text.
    pub from: u64,
    /// The character after its last.
    pub to: u64,
}

fn word(value: &Json) -> Option<Word> {
    Some(Word {
        start: value.num("start")?,
        end: value.num("end")?,
        from: value.num("from")?,
        to: value.num("to")?,
    })
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
            "configured" => Self::Configured {
                markup: json.str("markup")?.to_owned(),
                lexicon: json.num("lexicon")?,
            },
            "words" => Self::Words {
                stream: small(json.num("stream")?),
                words: json
                    .items("words")?
                    .iter()
                    .map(word)
                    .collect::<Option<Vec<Word>>>()?,
            },
            _ => return None,
        })
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
    /// How the text is read (`markdown` or `plain`); `None`: the session's choice.
    pub markup: Option<String>,
    /// Protocol v2: how its audio travels (`opus`); `None`: PCM.
    pub encoding: Option<String>,
}

/// The player's `speak` frame.
pub fn speak(id: &str, text: &str, options: &SpeakOptions) -> String {
    let mut writer = Writer::default()
        .str("type", "speak")
        .str("id", id)
        .str("text", text)
        .opt_str("voice", options.voice.as_deref())
        .opt_str("model", options.model.as_deref())
        .opt_str("markup", options.markup.as_deref())
        .opt_str("encoding", options.encoding.as_deref());
    if options.more {
        writer = writer.bool("more", true);
    }
    if !options.cache {
        writer = writer.bool("cache", false);
    }
    writer.finish()
}

/// Protocol v2: the session's defaults: how text is read, and a lexicon (word, said as).
pub fn configure(markup: Option<&str>, lexicon: Option<&[(String, String)]>) -> String {
    let writer = Writer::default()
        .str("type", "configure")
        .opt_str("markup", markup);
    match lexicon {
        Some(entries) => {
            let map = entries
                .iter()
                .fold(Writer::default(), |w, (word, said)| w.str(word, said))
                .finish();
            writer.raw("lexicon", &map).finish()
        }
        None => writer.finish(),
    }
}

/// The entries of a JSON object whose values are all strings (a lexicon as an app writes it),
/// in order; `None` for anything else.
pub fn string_map(text: &str) -> Option<Vec<(String, String)>> {
    match parse_json(text)? {
        Json::Obj(fields) => fields
            .into_iter()
            .map(|(key, value)| match value {
                Json::Str(value) => Some((key, value)),
                _ => None,
            })
            .collect(),
        _ => None,
    }
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

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;
    use crate::{ClientMessage, ServerMessage};

    /// Every JSON line of a code block in docs/protocol.md that is a server message.
    fn protocol_examples() -> Vec<String> {
        let doc = include_str!("../../../docs/protocol.md");
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
                    examples.push(core::mem::take(&mut current));
                }
            }
        }
        examples
    }

    /// What the serde parser makes of a server message, in the terms the player reads.
    fn projected(message: ServerMessage) -> Option<Incoming> {
        let error = |e: crate::EndError| RelayError {
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
            ServerMessage::Configured { markup, lexicon } => Incoming::Configured {
                markup: markup.as_str().to_owned(),
                lexicon: u64::from(lexicon),
            },
            ServerMessage::Words { stream, words } => Incoming::Words {
                stream,
                words: words
                    .into_iter()
                    .map(|w| Word {
                        start: w.start,
                        end: w.end,
                        from: w.from,
                        to: w.to,
                    })
                    .collect(),
            },
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
            error: Some(crate::EndError::new(crate::ErrorCode::RateLimited, Some(3))),
            heard: Some(crate::Heard {
                samples: 24_000,
                chars: 12,
            }),
            metrics: Some(crate::EndMetrics {
                first_byte_ms: Some(300),
                first_audio_ms: None,
                segments: 2,
                retries: 1,
                held_back_ms: 1500,
                cache_hits: 1,
            }),
        };
        assert_eq!(Incoming::parse(&end.to_json()), projected(end));
        let ready = ServerMessage::ready("s", crate::Limits::default(), None);
        assert_eq!(Incoming::parse(&ready.to_json()), projected(ready));
        let flow = crate::Flow {
            window_ms: 2000,
            resume_grace_ms: 20_000,
        };
        let ready = ServerMessage::ready("s", crate::Limits::default(), Some(flow));
        assert_eq!(Incoming::parse(&ready.to_json()), projected(ready));
    }

    #[test]
    fn string_maps() {
        let map = string_map(r#"{"Groq":"grok","SQL":"se\"quel"}"#).unwrap();
        assert_eq!(
            map,
            [
                ("Groq".into(), "grok".into()),
                ("SQL".into(), "se\"quel".into())
            ]
        );
        assert_eq!(string_map("{}"), Some(Vec::new()));
        for not in [r#"{"a":1}"#, r#"["a","b"]"#, "", r#""a""#] {
            assert_eq!(string_map(not), None, "{not}");
        }
        let lexicon = configure(None, Some(&map));
        assert_eq!(
            lexicon,
            r#"{"type":"configure","lexicon":{"Groq":"grok","SQL":"se\"quel"}}"#
        );
    }

    #[test]
    fn escapes_and_surrogates() {
        let pair =
            r#"{"type":"start","id":"\ud83d\ude00 \u00e9\t","stream":1,"sample_rate":24000}"#;
        assert!(
            matches!(Incoming::parse(pair), Some(Incoming::Start { id, .. }) if id == "😀 é\t")
        );
        let plain = r#"{"type":"start","id":"a\/b\"c\\d مرحبا","stream":1,"sample_rate":24000}"#;
        assert!(
            matches!(Incoming::parse(plain), Some(Incoming::Start { id, .. }) if id == "a/b\"c\\d مرحبا")
        );
        // An escape JSON does not have is refused, also before a character of several bytes.
        for bad in [r#""x\q""#, "\"x\\é\""] {
            let text = format!(r#"{{"type":"start","id":{bad},"stream":1,"sample_rate":24000}}"#);
            assert_eq!(Incoming::parse(&text), None, "{text}");
        }
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
                markup: None,
                encoding: None,
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
