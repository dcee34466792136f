//! JSON control messages: what clients send and what the relay answers.

use crate::prelude::*;

use alloc::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AudioEncoding, EndReason, ErrorCode, Limits, Markup, Model, MAX_MESSAGE_ID_LEN};

/// A message from client to relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Speak `text`; ends any active message with reason `superseded` first.
    Speak {
        /// Client-chosen id, 1 to 64 characters, echoed in `start` and `end`.
        id: String,
        /// The text to speak.
        text: String,
        /// Voice name; defaults to the model's default voice.
        #[serde(skip_serializing_if = "Option::is_none")]
        voice: Option<String>,
        /// Model id; defaults to the voice's model, or English.
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// Protocol v2: more text follows in `append`s, until `finish`.
        #[serde(skip_serializing_if = "core::ops::Not::not")]
        more: bool,
        /// Whether a segment may be served from the relay's segment cache (the default); `false`
        /// asks the upstream for every segment.
        #[serde(skip_serializing_if = "is_true")]
        cache: bool,
        /// How the text is read (Markdown or as it is); absent: the session's choice.
        #[serde(skip_serializing_if = "Option::is_none")]
        markup: Option<Markup>,
        /// Protocol v2: how its audio travels; absent: PCM.
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<AudioEncoding>,
    },
    /// Protocol v2: the session's defaults for the messages that start after it. Each field
    /// given replaces the session's; the relay answers `configured`.
    Configure {
        /// How messages' text is read unless a `speak` says otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        markup: Option<Markup>,
        /// Whole words said another way (`{"Groq": "grok"}`); an empty map clears it.
        #[serde(skip_serializing_if = "Option::is_none")]
        lexicon: Option<BTreeMap<String, String>>,
    },
    /// Protocol v2: more text for message `id`, opened with `more`.
    Append {
        /// The message.
        id: String,
        /// The text to add.
        text: String,
        /// How many characters of the message's text come before `text`; absent: all the
        /// relay has. Text the relay already has is skipped, so an append can be sent again.
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<u64>,
    },
    /// Protocol v2: the text of message `id` is complete.
    Finish {
        /// The message.
        id: String,
    },
    /// Stop the message `id`, or the active message when `id` is absent.
    Stop {
        /// The message to stop.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Keep-alive; answered with `pong`.
    Ping,
    /// Protocol v2: how far the client has played the stream, and how much of it it received.
    Played {
        /// The stream.
        stream: u32,
        /// Samples played (the play cursor).
        played: u64,
        /// Samples received.
        received: u64,
        /// Whether this report answers a frame just received (the client has under
        /// [`crate::PROMPT_BELOW_MS`] beyond its cursor and reports every frame it receives);
        /// absent means `false`.
        on_receipt: bool,
    },
    /// Protocol v2: continue message `id`, whose socket dropped, from the play cursor.
    Resume {
        /// The message.
        id: String,
        /// Its stream; absent if the client never received its `start` (then `played` is 0).
        stream: Option<u32>,
        /// Samples played.
        played: u64,
    },
}

/// A client frame that is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The `speak` id when one could be read: the rejection is then an `end` for that id,
    /// otherwise an `error` frame.
    pub speak_id: Option<String>,
    /// What is wrong.
    pub code: ErrorCode,
}

impl ParseError {
    fn frame(code: ErrorCode) -> Self {
        Self {
            speak_id: None,
            code,
        }
    }
}

fn message_id(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|id| (1..=MAX_MESSAGE_ID_LEN).contains(&id.chars().count()))
}

fn is_true(value: &bool) -> bool {
    *value
}

/// An optional field naming one of a few kinds (`markup`, `encoding`): absent or null is
/// `None`, a name `from_name` knows is `Some`, anything else is an error.
fn named<T>(value: Option<&Value>, from_name: fn(&str) -> Option<T>) -> Result<Option<T>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => from_name(name).map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

/// An optional string field: absent or null is `None`, a string is `Some`, anything else is an error.
fn optional_string(value: Option<&Value>) -> Result<Option<String>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

impl ClientMessage {
    /// Parses one client text frame. Unknown fields are ignored; an unknown `type` is an error.
    /// A lone UTF-16 surrogate escape in a string reads as U+FFFD (see [`crate::surrogates`]).
    pub fn parse(frame: &str) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_str(frame)
            .or_else(
                |e| match crate::surrogates::replace_lone_surrogates(frame) {
                    Some(fixed) => serde_json::from_str(&fixed),
                    None => Err(e),
                },
            )
            .map_err(|_| ParseError::frame(ErrorCode::InvalidJson))?;
        let invalid = || ParseError::frame(ErrorCode::InvalidMessage);
        let object = value.as_object().ok_or_else(invalid)?;
        let kind = object
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(invalid)?;
        match kind {
            "speak" => {
                let id = message_id(object.get("id")).ok_or_else(invalid)?.to_owned();
                let rejected = |code| ParseError {
                    speak_id: Some(id.clone()),
                    code,
                };
                let text = match object.get("text") {
                    Some(Value::String(text)) => text.clone(),
                    _ => return Err(rejected(ErrorCode::InvalidMessage)),
                };
                let voice = optional_string(object.get("voice"))
                    .map_err(|_| rejected(ErrorCode::InvalidMessage))?;
                let model = optional_string(object.get("model"))
                    .map_err(|_| rejected(ErrorCode::InvalidMessage))?;
                let flag = |key: &str, absent: bool| match object.get(key) {
                    None | Some(Value::Null) => Ok(absent),
                    Some(Value::Bool(value)) => Ok(*value),
                    Some(_) => Err(rejected(ErrorCode::InvalidMessage)),
                };
                let markup = named(object.get("markup"), Markup::from_name)
                    .map_err(|_| rejected(ErrorCode::InvalidMessage))?;
                let encoding = named(object.get("encoding"), AudioEncoding::from_name)
                    .map_err(|_| rejected(ErrorCode::InvalidMessage))?;
                Ok(Self::Speak {
                    encoding,
                    more: flag("more", false)?,
                    cache: flag("cache", true)?,
                    id,
                    text,
                    voice,
                    model,
                    markup,
                })
            }
            "configure" => {
                let markup =
                    named(object.get("markup"), Markup::from_name).map_err(|_| invalid())?;
                let lexicon = match object.get("lexicon") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(entries)) => Some(
                        entries
                            .iter()
                            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                            .collect::<Option<BTreeMap<String, String>>>()
                            .ok_or_else(invalid)?,
                    ),
                    Some(_) => return Err(invalid()),
                };
                Ok(Self::Configure { markup, lexicon })
            }
            "append" => {
                let id = message_id(object.get("id")).ok_or_else(invalid)?.to_owned();
                let text = object
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(invalid)?
                    .to_owned();
                let at = match object.get("at") {
                    None | Some(Value::Null) => None,
                    Some(at) => Some(at.as_u64().ok_or_else(invalid)?),
                };
                Ok(Self::Append { id, text, at })
            }
            "finish" => {
                let id = message_id(object.get("id")).ok_or_else(invalid)?.to_owned();
                Ok(Self::Finish { id })
            }
            "stop" => {
                let id = match object.get("id") {
                    None | Some(Value::Null) => None,
                    some => Some(message_id(some).ok_or_else(invalid)?.to_owned()),
                };
                Ok(Self::Stop { id })
            }
            "ping" => Ok(Self::Ping),
            "played" => {
                let number =
                    |key: &str| object.get(key).and_then(Value::as_u64).ok_or_else(invalid);
                Ok(Self::Played {
                    stream: u32::try_from(number("stream")?).map_err(|_| invalid())?,
                    played: number("played")?,
                    received: number("received")?,
                    on_receipt: match object.get("on_receipt") {
                        None => false,
                        Some(value) => value.as_bool().ok_or_else(invalid)?,
                    },
                })
            }
            "resume" => {
                let id = message_id(object.get("id")).ok_or_else(invalid)?.to_owned();
                let number =
                    |key: &str| object.get(key).and_then(Value::as_u64).ok_or_else(invalid);
                let stream = match object.get("stream") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(u32::try_from(number("stream")?).map_err(|_| invalid())?),
                };
                Ok(Self::Resume {
                    id,
                    stream,
                    played: number("played")?,
                })
            }
            _ => Err(ParseError::frame(ErrorCode::UnknownType)),
        }
    }

    /// Serialises the message as a JSON text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client messages serialise")
    }
}

/// The error carried by an `end` with reason `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndError {
    /// What went wrong.
    pub code: ErrorCode,
    /// Fixed text for the code; never user or upstream text.
    pub message: String,
    /// Seconds to wait before retrying, for `rate_limited` and some `upstream_unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u32>,
}

impl EndError {
    /// An error with the code's fixed message.
    pub fn new(code: ErrorCode, retry_after_s: Option<u32>) -> Self {
        Self {
            code,
            message: code.message().to_owned(),
            retry_after_s,
        }
    }
}

/// Protocol v2: flow control and resume, announced in `ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The relay sends audio at most this far ahead of the last `played`.
    pub window_ms: u32,
    /// A message whose socket dropped waits this long for a `resume`.
    pub resume_grace_ms: u32,
}

/// Protocol v2: what the listener heard of a message, from the client's play cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heard {
    /// Samples played, as the client last reported.
    pub samples: u64,
    /// Characters of the message's text heard: the text's first `chars` Unicode scalar values.
    /// Segments played to their end count whole; within the segment in progress, a share
    /// proportional to its audio played, cut back to a word boundary: an estimate.
    pub chars: u64,
}

/// Protocol v2: how a message went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndMetrics {
    /// The upstream's time to first byte for the first segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<u64>,
    /// From `speak` to the first audio frame sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_audio_ms: Option<u64>,
    /// Upstream segments requested.
    pub segments: u32,
    /// Upstream requests retried.
    pub retries: u32,
    /// The most audio flow control held back at once, in milliseconds.
    pub held_back_ms: u64,
    /// Segments served from the relay's segment cache: no upstream request, no characters
    /// spent.
    #[serde(default)]
    pub cache_hits: u32,
}

/// A message from relay to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Sent once when the socket opens.
    Ready {
        /// The protocol version: 1, or 2 (see [`crate::Version`]).
        protocol: u32,
        /// The session id from the URL.
        session: String,
        /// What the relay accepts.
        limits: Limits,
        /// Model id to its voices.
        voices: BTreeMap<String, Vec<String>>,
        /// Protocol v2: flow control and resume.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow: Option<Flow>,
    },
    /// Precedes a message's first audio frame.
    Start {
        /// The `speak` id.
        id: String,
        /// Stream number carried by every audio frame of this message.
        stream: u32,
        /// Samples per second, read from the upstream audio.
        sample_rate: u32,
        /// Always 1.
        channels: u16,
        /// How its audio travels: `pcm_s16le`, or (protocol v2, when asked for) `opus`.
        encoding: AudioEncoding,
        /// Protocol v2: this stream restarts the message at this sample of the message (after
        /// the relay lost its state, the unplayed part restarts at a segment boundary).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed_at: Option<u64>,
    },
    /// Exactly one per `speak`; no frame of the stream follows it.
    End {
        /// The `speak` id.
        id: String,
        /// The stream number, when the message was accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<u32>,
        /// Why it ended.
        reason: EndReason,
        /// Samples sent for this message.
        samples: u64,
        /// Present when `reason` is `error`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<EndError>,
        /// Protocol v2: what the listener heard.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heard: Option<Heard>,
        /// Protocol v2: how the message went.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metrics: Option<EndMetrics>,
    },
    /// A frame that is not a valid message and has no `speak` id to answer to, or one sent
    /// faster than the session allows.
    Error {
        /// What was wrong.
        code: ErrorCode,
        /// Fixed text for the code.
        message: String,
        /// Seconds to wait, for `rate_limited`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u32>,
    },
    /// Answer to `ping`.
    Pong,
    /// Protocol v2: the session's defaults, as a `configure` left them.
    Configured {
        /// How messages' text is read unless a `speak` says otherwise.
        markup: Markup,
        /// How many words the session's lexicon holds.
        lexicon: u32,
    },
    /// Protocol v2: where words of a stream are said, as soon as the relay knows: each word's
    /// first and last sample (as frames count them) and the characters of the message's text
    /// it says. Words come in order, each once.
    Words {
        /// The stream.
        stream: u32,
        /// The words.
        words: Vec<WordTiming>,
    },
}

/// Protocol v2: where one word is said, and which characters of the message's text it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordTiming {
    /// The stream sample at which the word begins.
    pub start: u64,
    /// The stream sample after its last.
    pub end: u64,
    /// Its first character in the message's text (Unicode scalar values, from 0).
    pub from: u64,
    /// The character after its last.
    pub to: u64,
}

impl ServerMessage {
    /// The `ready` message for a session of protocol v1, or of v2 with `flow`.
    pub fn ready(session: &str, limits: Limits, flow: Option<Flow>) -> Self {
        let voices = Model::ALL
            .iter()
            .map(|m| {
                let names = m.voices().iter().map(|v| (*v).to_owned()).collect();
                (m.id().to_owned(), names)
            })
            .collect();
        let version = match flow {
            Some(_) => crate::Version::V2,
            None => crate::Version::V1,
        };
        Self::Ready {
            protocol: version.number(),
            session: session.to_owned(),
            limits,
            voices,
            flow,
        }
    }

    /// An `error` frame with the code's fixed message.
    pub fn error(code: ErrorCode) -> Self {
        Self::Error {
            code,
            message: code.message().to_owned(),
            retry_after_s: None,
        }
    }

    /// Serialises the message as a JSON text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages serialise")
    }

    /// Parses a server text frame (for clients).
    pub fn parse(frame: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(frame: &str) -> ParseError {
        ClientMessage::parse(frame).unwrap_err()
    }

    #[test]
    fn parses_speak_with_defaults_and_unknown_fields() {
        let m = ClientMessage::parse(r#"{"type":"speak","id":"m1","text":"hi","extra":1}"#);
        assert_eq!(
            m,
            Ok(ClientMessage::Speak {
                id: "m1".into(),
                text: "hi".into(),
                voice: None,
                model: None,
                more: false,
                cache: true,
                markup: None,
                encoding: None,
            })
        );
        let round = ClientMessage::parse(&m.unwrap().to_json()).unwrap();
        assert!(matches!(round, ClientMessage::Speak { .. }));
    }

    #[test]
    fn parses_stop_and_ping() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"stop"}"#),
            Ok(ClientMessage::Stop { id: None })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"stop","id":"a"}"#),
            Ok(ClientMessage::Stop {
                id: Some("a".into())
            })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping)
        );
    }

    #[test]
    fn frame_level_errors_have_no_id() {
        assert_eq!(err("{nope").code, ErrorCode::InvalidJson);
        assert_eq!(err("[1]").code, ErrorCode::InvalidMessage);
        assert_eq!(err(r#"{"id":"x"}"#).code, ErrorCode::InvalidMessage);
        assert_eq!(err(r#"{"type":"dance"}"#).code, ErrorCode::UnknownType);
        let long_id = format!(r#"{{"type":"speak","id":"{}","text":"x"}}"#, "i".repeat(65));
        assert_eq!(err(&long_id), ParseError::frame(ErrorCode::InvalidMessage));
        assert_eq!(err(r#"{"type":"speak","id":"","text":"x"}"#).speak_id, None);
        assert_eq!(err(r#"{"type":"stop","id":5}"#).speak_id, None);
    }

    #[test]
    fn a_lone_surrogate_is_a_replacement_character() {
        let m = ClientMessage::parse(r#"{"type":"speak","id":"m1","text":"cut \ud83d here"}"#);
        assert_eq!(
            m,
            Ok(ClientMessage::Speak {
                id: "m1".into(),
                text: "cut \u{FFFD} here".into(),
                voice: None,
                model: None,
                more: false,
                cache: true,
                markup: None,
                encoding: None,
            })
        );
    }

    #[test]
    fn speak_errors_carry_the_id() {
        let e = err(r#"{"type":"speak","id":"m","text":7}"#);
        assert_eq!(e.speak_id.as_deref(), Some("m"));
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        let e = err(r#"{"type":"speak","id":"m","text":"x","voice":3}"#);
        assert_eq!(e.speak_id.as_deref(), Some("m"));
        let e = err(r#"{"type":"speak","id":"m","text":"x","encoding":"mp3"}"#);
        assert_eq!(e.speak_id.as_deref(), Some("m"));
    }

    #[test]
    fn a_speak_may_ask_for_opus() {
        let m = ClientMessage::parse(r#"{"type":"speak","id":"m","text":"x","encoding":"opus"}"#);
        assert!(matches!(
            m,
            Ok(ClientMessage::Speak {
                encoding: Some(AudioEncoding::Opus),
                ..
            })
        ));
        let pcm = r#"{"type":"speak","id":"m","text":"x","encoding":"pcm_s16le"}"#;
        assert!(matches!(
            ClientMessage::parse(pcm),
            Ok(ClientMessage::Speak {
                encoding: Some(AudioEncoding::Pcm),
                ..
            })
        ));
    }

    #[test]
    fn server_messages_match_the_spec() {
        let end = ServerMessage::End {
            id: "m".into(),
            stream: None,
            reason: EndReason::Error,
            samples: 0,
            error: Some(EndError::new(ErrorCode::RateLimited, Some(3))),
            heard: None,
            metrics: None,
        };
        let json: Value = serde_json::from_str(&end.to_json()).unwrap();
        assert_eq!(json["type"], "end");
        assert_eq!(json["reason"], "error");
        assert_eq!(json["error"]["code"], "rate_limited");
        assert_eq!(json["error"]["retry_after_s"], 3);
        assert!(json.get("stream").is_none());
        assert_eq!(ServerMessage::parse(&end.to_json()).unwrap(), end);

        let ready: Value =
            serde_json::from_str(&ServerMessage::ready("s1", Limits::default(), None).to_json())
                .unwrap();
        assert!(ready.get("flow").is_none(), "v1 is unchanged");
        assert_eq!(ready["protocol"], 1);
        assert_eq!(ready["limits"]["segment_chars"], 200);
        assert_eq!(
            ready["voices"]["canopylabs/orpheus-arabic-saudi"][0],
            "fahad"
        );
        assert_eq!(ServerMessage::Pong.to_json(), r#"{"type":"pong"}"#);
    }

    #[test]
    fn version_2_messages() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"played","stream":3,"played":2400,"received":4800}"#),
            Ok(ClientMessage::Played {
                stream: 3,
                played: 2400,
                received: 4800,
                on_receipt: false
            })
        );
        assert_eq!(
            ClientMessage::parse(
                r#"{"type":"played","stream":3,"played":2400,"received":4800,"on_receipt":true}"#
            ),
            Ok(ClientMessage::Played {
                stream: 3,
                played: 2400,
                received: 4800,
                on_receipt: true
            })
        );
        assert!(ClientMessage::parse(
            r#"{"type":"played","stream":3,"played":2400,"received":4800,"on_receipt":1}"#
        )
        .is_err());
        assert_eq!(
            ClientMessage::parse(r#"{"type":"resume","id":"m","stream":3,"played":2400}"#),
            Ok(ClientMessage::Resume {
                id: "m".into(),
                stream: Some(3),
                played: 2400
            })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"resume","id":"m","played":0}"#),
            Ok(ClientMessage::Resume {
                id: "m".into(),
                stream: None,
                played: 0
            })
        );
        for bad in [
            r#"{"type":"played","stream":3}"#,
            r#"{"type":"played","stream":-1,"played":0,"received":0}"#,
            r#"{"type":"resume","stream":3,"played":0}"#,
            r#"{"type":"append","id":"m"}"#,
            r#"{"type":"append","id":"m","text":"x","at":-1}"#,
            r#"{"type":"finish"}"#,
        ] {
            assert_eq!(err(bad).code, ErrorCode::InvalidMessage, "{bad}");
        }
        assert_eq!(
            ClientMessage::parse(r#"{"type":"speak","id":"m","text":"","more":true}"#),
            Ok(ClientMessage::Speak {
                id: "m".into(),
                text: String::new(),
                voice: None,
                model: None,
                more: true,
                cache: true,
                markup: None,
                encoding: None,
            })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"append","id":"m","text":" there","at":5}"#),
            Ok(ClientMessage::Append {
                id: "m".into(),
                text: " there".into(),
                at: Some(5)
            })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"append","id":"m","text":"x"}"#),
            Ok(ClientMessage::Append {
                id: "m".into(),
                text: "x".into(),
                at: None
            })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"finish","id":"m"}"#),
            Ok(ClientMessage::Finish { id: "m".into() })
        );
        assert!(matches!(
            ClientMessage::parse(r#"{"type":"speak","id":"m","text":"x","cache":false}"#),
            Ok(ClientMessage::Speak { cache: false, .. })
        ));
        let e = err(r#"{"type":"speak","id":"m","text":"x","more":"yes"}"#);
        assert_eq!(e.speak_id.as_deref(), Some("m"));
        let appended = ClientMessage::Append {
            id: "m".into(),
            text: "x".into(),
            at: None,
        };
        assert_eq!(ClientMessage::parse(&appended.to_json()), Ok(appended));
        let flow = Flow {
            window_ms: 2000,
            resume_grace_ms: 20_000,
        };
        let ready: Value = serde_json::from_str(
            &ServerMessage::ready("s1", Limits::default(), Some(flow)).to_json(),
        )
        .unwrap();
        assert_eq!(ready["protocol"], 2);
        assert_eq!(ready["flow"]["window_ms"], 2000);
        let end = ServerMessage::End {
            id: "m".into(),
            stream: Some(1),
            reason: EndReason::Stopped,
            samples: 48_000,
            error: None,
            heard: Some(Heard {
                samples: 24_000,
                chars: 17,
            }),
            metrics: Some(EndMetrics {
                first_byte_ms: Some(400),
                first_audio_ms: Some(410),
                segments: 2,
                retries: 0,
                held_back_ms: 1500,
                cache_hits: 1,
            }),
        };
        let json: Value = serde_json::from_str(&end.to_json()).unwrap();
        assert_eq!(json["heard"]["chars"], 17);
        assert_eq!(json["metrics"]["held_back_ms"], 1500);
        assert_eq!(ServerMessage::parse(&end.to_json()).unwrap(), end);
    }
}
