//! JSON control messages: what clients send and what the relay answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{EndReason, ErrorCode, Model, MAX_MESSAGE_ID_LEN};

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
    },
    /// Stop the message `id`, or the active message when `id` is absent.
    Stop {
        /// The message to stop.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Keep-alive; answered with `pong`.
    Ping,
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
                Ok(Self::Speak {
                    id,
                    text,
                    voice,
                    model,
                })
            }
            "stop" => {
                let id = match object.get("id") {
                    None | Some(Value::Null) => None,
                    some => Some(message_id(some).ok_or_else(invalid)?.to_owned()),
                };
                Ok(Self::Stop { id })
            }
            "ping" => Ok(Self::Ping),
            _ => Err(ParseError::frame(ErrorCode::UnknownType)),
        }
    }

    /// Serialises the message as a JSON text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client messages serialise")
    }
}

/// Limits announced in `ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest `text` of one `speak`, in Unicode scalar values.
    pub max_text_chars: u32,
    /// Largest client text frame, in bytes.
    pub max_frame_bytes: u32,
    /// Longest text sent to the upstream in one request (Groq's limit).
    pub segment_chars: u32,
    /// Longest message id, in characters.
    pub max_id_chars: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text_chars: 4000,
            max_frame_bytes: 32 * 1024,
            segment_chars: 200,
            max_id_chars: MAX_MESSAGE_ID_LEN as u32,
        }
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

/// A message from relay to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Sent once when the socket opens.
    Ready {
        /// [`crate::PROTOCOL_VERSION`].
        protocol: u32,
        /// The session id from the URL.
        session: String,
        /// What the relay accepts.
        limits: Limits,
        /// Model id to its voices.
        voices: BTreeMap<String, Vec<String>>,
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
        /// Always `pcm_s16le`.
        encoding: String,
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
}

impl ServerMessage {
    /// The `ready` message for a session.
    pub fn ready(session: &str, limits: Limits) -> Self {
        let voices = Model::ALL
            .iter()
            .map(|m| {
                let names = m.voices().iter().map(|v| (*v).to_owned()).collect();
                (m.id().to_owned(), names)
            })
            .collect();
        Self::Ready {
            protocol: crate::PROTOCOL_VERSION,
            session: session.to_owned(),
            limits,
            voices,
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
                model: None
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
                model: None
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
    }

    #[test]
    fn server_messages_match_the_spec() {
        let end = ServerMessage::End {
            id: "m".into(),
            stream: None,
            reason: EndReason::Error,
            samples: 0,
            error: Some(EndError::new(ErrorCode::RateLimited, Some(3))),
        };
        let json: Value = serde_json::from_str(&end.to_json()).unwrap();
        assert_eq!(json["type"], "end");
        assert_eq!(json["reason"], "error");
        assert_eq!(json["error"]["code"], "rate_limited");
        assert_eq!(json["error"]["retry_after_s"], 3);
        assert!(json.get("stream").is_none());
        assert_eq!(ServerMessage::parse(&end.to_json()).unwrap(), end);

        let ready: Value =
            serde_json::from_str(&ServerMessage::ready("s1", Limits::default()).to_json()).unwrap();
        assert_eq!(ready["protocol"], 1);
        assert_eq!(ready["limits"]["segment_chars"], 200);
        assert_eq!(
            ready["voices"]["canopylabs/orpheus-arabic-saudi"][0],
            "fahad"
        );
        assert_eq!(ServerMessage::Pong.to_json(), r#"{"type":"pong"}"#);
    }
}
