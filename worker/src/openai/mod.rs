//! The OpenAI-compatible speech endpoint, the pure part: reading and checking a request, the
//! API key check, OpenAI's error shape, and the [`Responder`] that turns a message's `start`,
//! audio and `end` into one streamed HTTP response; OpenAI's names for models and voices
//! ([`names`]) and its server-sent events ([`sse`]).
//!
//! `POST /v1/audio/speech` (and `/openai/v1/audio/speech`, the path Groq's SDKs use) takes
//! OpenAI's body `{model, voice, input, response_format, stream_format, sample_rate}` and
//! streams the speech as it is produced, whatever the length of `input` (up to
//! `max_text_chars`): the relay splits it into Groq's segments as for a `speak`. PCM and WAV at
//! Orpheus' rate are written here; every other format and rate by the encoder Worker. The
//! status is decided before any audio is sent, so a failure of the first segment is an honest
//! 4xx/5xx; a failure after audio has begun can only break the stream off (the client sees a
//! truncated body, never a silent gap).

pub mod names;
pub mod sse;

use std::collections::BTreeMap;

use orpheus_protocol::formats::streaming_wav_header;
use orpheus_protocol::{
    resolve_voice, EndReason, ErrorCode, Markup, Model, ResponseFormat, ServerMessage, WordTiming,
    SAMPLE_RATES,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::speech::{Lexicon, LexiconError};
use names::Names;

/// Largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The two paths the endpoint answers on.
pub const PATHS: [&str; 2] = ["/v1/audio/speech", "/openai/v1/audio/speech"];

/// The header that keeps a request from the segment cache: `x-orpheus-cache: off`.
pub const CACHE_HEADER: &str = "x-orpheus-cache";

/// A checked speech request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechRequest {
    /// The model.
    pub model: Model,
    /// The voice.
    pub voice: &'static str,
    /// The text, at most `max_text_chars`.
    pub input: String,
    /// The response's format and sample rate.
    pub format: ResponseFormat,
    pub sample_rate: u32,
    /// Whether the audio goes in OpenAI's server-sent events (`stream_format: "sse"`).
    pub sse: bool,
    /// Whether segments may come from the segment cache ([`CACHE_HEADER`]).
    pub cache: bool,
    /// How the input is read (`markup`, an extension: `markdown` or `plain`); `None`: Markdown.
    pub markup: Option<Markup>,
    /// Words said another way (`lexicon`, an extension).
    pub lexicon: Option<Lexicon>,
}

/// What kind of error, as OpenAI names it in `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The request is wrong: fix it.
    InvalidRequest,
    /// The key is missing or wrong.
    Authentication,
    /// A limit was reached: wait `retry-after`.
    RateLimit,
    /// The relay or the upstream failed: retry later.
    Api,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::RateLimit => "rate_limit_error",
            Self::Api => "api_error",
        }
    }
}

/// An error answer: status, OpenAI's `{"error": {...}}` body, and `retry-after`. Its text is
/// fixed per error: nothing the client sent and nothing the upstream said is echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `error.type`.
    pub kind: ErrorType,
    /// `error.code`.
    pub code: &'static str,
    /// `error.message`.
    pub message: &'static str,
    /// `error.param`: the body field at fault, if one is.
    pub param: Option<&'static str>,
    /// Seconds to wait, sent as `retry-after`.
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    const fn new(status: u16, kind: ErrorType, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            kind,
            code,
            message,
            param: None,
            retry_after_s: None,
        }
    }

    const fn invalid(code: &'static str, message: &'static str, param: &'static str) -> Self {
        Self {
            param: Some(param),
            ..Self::new(400, ErrorType::InvalidRequest, code, message)
        }
    }

    /// A method other than POST.
    pub const METHOD: Self = Self::new(
        405,
        ErrorType::InvalidRequest,
        "method_not_allowed",
        "use POST",
    );

    /// No `Authorization: Bearer` key, or not one of the relay's.
    pub const KEY: Self = Self::new(
        401,
        ErrorType::Authentication,
        "invalid_api_key",
        "missing or invalid API key; send Authorization: Bearer <key>",
    );

    /// A body over [`MAX_BODY_BYTES`].
    pub const BODY_TOO_LARGE: Self = Self::new(
        413,
        ErrorType::InvalidRequest,
        "body_too_large",
        "the request body exceeds 64 KiB",
    );

    /// A content type other than JSON.
    pub const CONTENT_TYPE: Self = Self::new(
        415,
        ErrorType::InvalidRequest,
        "unsupported_media_type",
        "send the request body as application/json",
    );

    /// The body is not a JSON object.
    pub const JSON: Self = Self::new(
        400,
        ErrorType::InvalidRequest,
        "invalid_json",
        "the request body is not a JSON object",
    );

    /// The relay has no API keys configured: the endpoint is off.
    pub const NO_KEYS: Self = Self::new(
        503,
        ErrorType::Api,
        "not_configured",
        "this relay has no API keys configured (RELAY_API_KEYS)",
    );

    /// The per-key limits could not be checked (storage unavailable).
    pub const UNAVAILABLE: Self = Self::new(
        503,
        ErrorType::Api,
        "relay_unavailable",
        "the relay cannot check this key's limits right now; retry shortly",
    );

    /// The encoder Worker did not take the audio.
    pub const ENCODER_UNAVAILABLE: Self = Self {
        retry_after_s: Some(1),
        ..Self::new(
            503,
            ErrorType::Api,
            "encoder_unavailable",
            "the relay's encoder is not answering; retry shortly, or ask for wav or pcm",
        )
    };

    /// The per-key limits were reached.
    pub fn rate_limited(retry_after_s: u32) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                429,
                ErrorType::RateLimit,
                "rate_limit_exceeded",
                ErrorCode::RateLimited.message(),
            )
        }
    }

    /// The answer for a message that ended with `code` before any audio: the relay's own code,
    /// at the HTTP status that says what to do about it.
    pub fn from_code(code: ErrorCode, retry_after_s: Option<u32>) -> Self {
        use ErrorType::*;
        let (status, kind, param) = match code {
            ErrorCode::EmptyText | ErrorCode::TextTooLong => (400, InvalidRequest, Some("input")),
            ErrorCode::UnknownVoice | ErrorCode::VoiceModelMismatch => {
                (400, InvalidRequest, Some("voice"))
            }
            ErrorCode::UnknownModel => (400, InvalidRequest, Some("model")),
            ErrorCode::RateLimited => (429, RateLimit, None),
            ErrorCode::UpstreamTimeout => (504, Api, None),
            ErrorCode::NotConfigured
            | ErrorCode::RelayUnavailable
            | ErrorCode::UpstreamUnavailable => (503, Api, None),
            _ => (502, Api, None),
        };
        Self {
            status,
            kind,
            code: code.as_str(),
            message: code.message(),
            param,
            retry_after_s: retry_after_s.or((status == 429 || status == 503).then_some(1)),
        }
    }

    /// OpenAI's error body.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind.as_str(),
                "param": self.param,
                "code": self.code,
            }
        })
        .to_string()
    }
}

/// What a request is checked against: the relay's limit on text, the names it takes for
/// models and voices, and whether it has an encoder (without one: WAV and PCM at Orpheus'
/// rate only, WAV by default).
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    pub max_text_chars: usize,
    pub names: &'a Names,
    pub encoder: bool,
}

/// Reads and checks a request body (already known to be JSON and at most
/// [`MAX_BODY_BYTES`]). Unknown fields are ignored; options the relay cannot honour are refused.
pub fn parse(body: &[u8], endpoint: Endpoint<'_>) -> Result<SpeechRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| ApiError::JSON)?;
    let object = value.as_object().ok_or(ApiError::JSON)?;
    let string = |key: &'static str| match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::invalid(
            "invalid_type",
            "a field has the wrong type",
            key,
        )),
    };
    let input = string("input")?.ok_or(ApiError::invalid(
        "missing_input",
        "input is required",
        "input",
    ))?;
    let model = string("model")?.ok_or(ApiError::invalid(
        "missing_model",
        "model is required",
        "model",
    ))?;
    let voice = string("voice")?.ok_or(ApiError::invalid(
        "missing_voice",
        "voice is required",
        "voice",
    ))?;
    let unsupported_format = ApiError::invalid(
        "unsupported_response_format",
        "response_format must be one of mp3, opus, aac, flac, wav, pcm, mulaw, alaw",
        "response_format",
    );
    let format = match string("response_format")? {
        None if endpoint.encoder => ResponseFormat::Mp3,
        None => ResponseFormat::Wav,
        Some(name) => ResponseFormat::from_name(name).ok_or(unsupported_format)?,
    };
    match object.get("speed") {
        None | Some(Value::Null) => {}
        Some(speed) if speed.as_f64() == Some(1.0) => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "unsupported_speed",
                "speed is not supported (Orpheus speaks at one speed); leave it out or send 1.0",
                "speed",
            ))
        }
    }
    let sse = match string("stream_format")? {
        None | Some("audio") => false,
        Some("sse") => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "unsupported_stream_format",
                "stream_format must be audio or sse",
                "stream_format",
            ))
        }
    };
    let unsupported_rate = ApiError::invalid(
        "unsupported_sample_rate",
        "sample_rate must be one of 8000, 16000, 22050, 24000, 32000, 44100, 48000 (opus: 8000, \
         16000, 24000, 48000)",
        "sample_rate",
    );
    let sample_rate = match object.get("sample_rate") {
        None | Some(Value::Null) => format.default_rate(),
        Some(rate) => match rate.as_u64().and_then(|r| u32::try_from(r).ok()) {
            Some(rate) if SAMPLE_RATES.contains(&rate) && format.carries(rate) => rate,
            _ => return Err(unsupported_rate),
        },
    };
    if !endpoint.encoder && !format.is_native(sample_rate) {
        return Err(ApiError::invalid(
            "unsupported_response_format",
            "this relay has no encoder: only wav and pcm at 24000 Hz",
            "response_format",
        ));
    }
    if object.get("instructions").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid(
            "unsupported_instructions",
            "instructions are not supported; use vocal directions such as [cheerful] in input",
            "instructions",
        ));
    }
    let markup = match string("markup")? {
        None => None,
        Some(name) => Some(Markup::from_name(name).ok_or(ApiError::invalid(
            "invalid_markup",
            "markup must be markdown or plain",
            "markup",
        ))?),
    };
    let invalid_lexicon = ApiError::invalid(
        "invalid_lexicon",
        ErrorCode::InvalidLexicon.message(),
        "lexicon",
    );
    let lexicon = match object.get("lexicon") {
        None | Some(Value::Null) => None,
        Some(Value::Object(entries)) => {
            let entries: Option<BTreeMap<String, String>> = entries
                .iter()
                .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect();
            let entries = entries.ok_or(invalid_lexicon.clone())?;
            let limit =
                |e: LexiconError| ApiError::invalid("invalid_lexicon", e.message(), "lexicon");
            Some(Lexicon::new(entries).map_err(limit)?)
        }
        Some(_) => return Err(invalid_lexicon),
    };
    let (model, voice) = resolve_voice(
        Some(endpoint.names.voice(voice)),
        Some(endpoint.names.model(model)),
    )
    .map_err(|code| ApiError::from_code(code, None))?;
    let speech = crate::speech::SpeechText::of(
        input,
        markup.unwrap_or_default(),
        lexicon.clone().unwrap_or_default(),
    );
    if !crate::segment::is_speakable(speech.spoken()) {
        return Err(ApiError::from_code(ErrorCode::EmptyText, None));
    }
    if input.chars().count() > endpoint.max_text_chars {
        return Err(ApiError::from_code(ErrorCode::TextTooLong, None));
    }
    Ok(SpeechRequest {
        model,
        voice,
        input: input.to_owned(),
        format,
        sample_rate,
        sse,
        cache: true,
        markup,
        lexicon,
    })
}

/// Whether a `content-type` is JSON (any parameters, such as a charset, aside).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"))
}

/// The relay's API keys, from `RELAY_API_KEYS` (comma or white space separated), as digests.
pub fn key_digests(keys: &str) -> Vec<[u8; 32]> {
    keys.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|k| !k.is_empty())
        .map(|k| Sha256::digest(k.as_bytes()).into())
        .collect()
}

/// Checks an `Authorization` header against the keys' digests, in constant time for any
/// key of any length (digests are compared, every one of them). Returns the name of the key's
/// Durable Object, which holds its limits: a digest prefix, never the key.
pub fn check_key(authorization: Option<&str>, keys: &[[u8; 32]]) -> Result<String, ApiError> {
    let given = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(ApiError::KEY)?;
    let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    let matched = keys.iter().fold(false, |found, key| {
        let diff = key.iter().zip(&digest).fold(0u8, |d, (a, b)| d | (a ^ b));
        found | (diff == 0)
    });
    if !matched {
        return Err(ApiError::KEY);
    }
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("key:{hex}"))
}

/// What the response must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Answer 200 with this format and rate; the body follows.
    Head {
        /// The stream's sample rate.
        sample_rate: u32,
    },
    /// Answer with this error (nothing was sent yet).
    Refuse(ApiError),
    /// Body bytes.
    Body(Vec<u8>),
    /// Where words of the audio so far are said (for server-sent events).
    Words(Vec<WordTiming>),
    /// The body is complete.
    Finish,
    /// The body must break off: the speech failed after it began.
    BreakOff,
}

/// Where the response stands. It only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No answer yet: waiting for the message's `start` or `end`.
    Waiting,
    /// 200 sent; the body streams.
    Streaming,
    /// Finished, refused or broken off.
    Over,
}

/// Turns what the session core emits for one message (its `start`, its audio and its `end`, as
/// a protocol v1 client would get them) into one HTTP response.
#[derive(Debug)]
pub struct Responder {
    /// Whether the PCM goes out in a WAV container of its own (else as it is, to the client or
    /// to the encoder).
    wav: bool,
    stage: Stage,
}

impl Responder {
    /// A responder, before anything was answered; `wav`: the PCM in a WAV container.
    pub fn new(wav: bool) -> Self {
        Self {
            wav,
            stage: Stage::Waiting,
        }
    }

    /// Whether the response is over.
    pub fn over(&self) -> bool {
        self.stage == Stage::Over
    }

    /// A control message of the message.
    pub fn on_message(&mut self, message: &ServerMessage) -> Vec<Output> {
        match (self.stage, message) {
            (Stage::Waiting, ServerMessage::Start { sample_rate, .. }) => {
                self.stage = Stage::Streaming;
                let mut out = vec![Output::Head {
                    sample_rate: *sample_rate,
                }];
                if self.wav {
                    out.push(Output::Body(streaming_wav_header(*sample_rate)));
                }
                out
            }
            (Stage::Waiting, ServerMessage::End { reason, error, .. }) => {
                self.stage = Stage::Over;
                let refusal = match error {
                    Some(e) => ApiError::from_code(e.code, e.retry_after_s),
                    // Ended without audio and without an error (an empty `data` chunk).
                    None if *reason == EndReason::Done => {
                        ApiError::from_code(ErrorCode::UpstreamBadAudio, None)
                    }
                    None => ApiError::from_code(ErrorCode::UpstreamInterrupted, None),
                };
                vec![Output::Refuse(refusal)]
            }
            (Stage::Streaming, ServerMessage::End { reason, .. }) => {
                self.stage = Stage::Over;
                vec![if *reason == EndReason::Done {
                    Output::Finish
                } else {
                    Output::BreakOff
                }]
            }
            (Stage::Streaming, ServerMessage::Words { words, .. }) => {
                vec![Output::Words(words.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// PCM of the message, in order.
    pub fn on_audio(&mut self, pcm: Vec<u8>) -> Vec<Output> {
        match self.stage {
            Stage::Streaming => vec![Output::Body(pcm)],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orpheus_protocol::EndError;

    fn parsed(body: &str) -> Result<SpeechRequest, ApiError> {
        parsed_by(body, true)
    }

    /// As a relay with (or without) its encoder parses it.
    fn parsed_by(body: &str, encoder: bool) -> Result<SpeechRequest, ApiError> {
        let names = Names::default();
        let endpoint = Endpoint {
            max_text_chars: 4000,
            names: &names,
            encoder,
        };
        parse(body.as_bytes(), endpoint)
    }

    #[test]
    fn reads_openai_and_groq_bodies() {
        let r = parsed(
            r#"{"model":"canopylabs/orpheus-v1-english","voice":"troy","input":"Hi!","response_format":"wav","stream_format":"audio","speed":1.0}"#,
        )
        .unwrap();
        assert_eq!(
            (r.model, r.voice, r.format, r.sample_rate, r.sse),
            (Model::English, "troy", ResponseFormat::Wav, 24_000, false)
        );
        let r = parsed(
            r#"{"model":"canopylabs/orpheus-arabic-saudi","voice":"noura","input":"مرحبا","response_format":"pcm"}"#,
        )
        .unwrap();
        assert_eq!(r.format, ResponseFormat::Pcm);
    }

    #[test]
    fn reads_what_openai_clients_send_by_default() {
        // OpenAI's quickstart: no format (mp3), OpenAI's model and voice names.
        let r = parsed(r#"{"model":"gpt-4o-mini-tts","voice":"ash","input":"Hi!"}"#).unwrap();
        assert_eq!(
            (r.model, r.voice, r.format, r.sample_rate, r.sse),
            (Model::English, "troy", ResponseFormat::Mp3, 24_000, false)
        );
        // LiveKit's plugin: server-sent events.
        let r = parsed(
            r#"{"model":"tts-1","voice":"nova","input":"Hi!","response_format":"mp3","stream_format":"sse","speed":1.0}"#,
        )
        .unwrap();
        assert_eq!((r.voice, r.sse), ("hannah", true));
        // Telephony: G.711 at 8 kHz by default; any listed rate for the others.
        let r =
            parsed(r#"{"model":"tts-1","voice":"alloy","input":"Hi","response_format":"mulaw"}"#)
                .unwrap();
        assert_eq!((r.format, r.sample_rate), (ResponseFormat::Mulaw, 8_000));
        let r = parsed(
            r#"{"model":"tts-1","voice":"alloy","input":"Hi","response_format":"wav","sample_rate":44100}"#,
        )
        .unwrap();
        assert_eq!((r.format, r.sample_rate), (ResponseFormat::Wav, 44_100));
        // Without an encoder: WAV by default, as before.
        let r = parsed_by(r#"{"model":"tts-1","voice":"alloy","input":"Hi"}"#, false).unwrap();
        assert_eq!(r.format, ResponseFormat::Wav);
        let e = parsed_by(
            r#"{"model":"tts-1","voice":"alloy","input":"Hi","response_format":"mp3"}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, "unsupported_response_format");
    }

    #[test]
    fn refuses_what_it_cannot_do_with_the_field_at_fault() {
        let cases = [
            ("[1]", 400, "invalid_json", None),
            ("{", 400, "invalid_json", None),
            (
                r#"{"model":"canopylabs/orpheus-v1-english","voice":"troy"}"#,
                400,
                "missing_input",
                Some("input"),
            ),
            (
                r#"{"model":"canopylabs/orpheus-v1-english","voice":"troy","input":7}"#,
                400,
                "invalid_type",
                Some("input"),
            ),
            (
                r#"{"model":"canopylabs/orpheus-v1-english","voice":"bob","input":"x"}"#,
                400,
                "unknown_voice",
                Some("voice"),
            ),
            (
                r#"{"model":"tts-2","voice":"troy","input":"x"}"#,
                400,
                "unknown_model",
                Some("model"),
            ),
            (
                r#"{"model":"canopylabs/orpheus-v1-english","voice":"troy","input":"  "}"#,
                400,
                "empty_text",
                Some("input"),
            ),
            (
                r#"{"model":"canopylabs/orpheus-v1-english","voice":"troy","input":"x","speed":1.5}"#,
                400,
                "unsupported_speed",
                Some("speed"),
            ),
            (
                r#"{"model":"canopylabs/orpheus-v1-english","voice":"troy","input":"x","response_format":"m4a"}"#,
                400,
                "unsupported_response_format",
                Some("response_format"),
            ),
            (
                r#"{"model":"canopylabs/orpheus-v1-english","voice":"troy","input":"x","stream_format":"chunks"}"#,
                400,
                "unsupported_stream_format",
                Some("stream_format"),
            ),
            (
                r#"{"model":"canopylabs/orpheus-v1-english","voice":"troy","input":"x","sample_rate":11025}"#,
                400,
                "unsupported_sample_rate",
                Some("sample_rate"),
            ),
            (
                r#"{"model":"canopylabs/orpheus-v1-english","voice":"troy","input":"x","response_format":"opus","sample_rate":44100}"#,
                400,
                "unsupported_sample_rate",
                Some("sample_rate"),
            ),
        ];
        for (body, status, code, param) in cases {
            let e = parsed(body).unwrap_err();
            assert_eq!((e.status, e.code, e.param), (status, code, param), "{body}");
            let json: Value = serde_json::from_str(&e.body()).unwrap();
            assert_eq!(json["error"]["code"], code);
            assert!(json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
        let long = format!(
            r#"{{"model":"canopylabs/orpheus-v1-english","voice":"troy","input":"{}"}}"#,
            "a".repeat(4001)
        );
        assert_eq!(parsed(&long).unwrap_err().code, "text_too_long");
    }

    #[test]
    fn keys_are_checked_by_digest_and_named_by_a_prefix_of_it() {
        let keys = key_digests("alpha-key, beta-key\ngamma");
        assert_eq!(keys.len(), 3);
        let name = check_key(Some("Bearer beta-key"), &keys).unwrap();
        assert!(name.starts_with("key:") && !name.contains("beta"), "{name}");
        assert_eq!(check_key(Some("Bearer gamma"), &keys).unwrap().len(), 28);
        for bad in [
            None,
            Some("beta-key"),
            Some("Bearer "),
            Some("Bearer beta"),
            Some("Basic x"),
        ] {
            assert_eq!(check_key(bad, &keys), Err(ApiError::KEY), "{bad:?}");
        }
        assert_eq!(check_key(Some("Bearer x"), &[]), Err(ApiError::KEY));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(!is_json(Some("text/plain")) && !is_json(None));
    }

    #[test]
    fn errors_before_audio_are_statuses_and_after_it_a_broken_body() {
        let start = ServerMessage::Start {
            id: "h".into(),
            stream: 1,
            sample_rate: 24_000,
            channels: 1,
            encoding: orpheus_protocol::AudioEncoding::Pcm,
            resumed_at: None,
        };
        let end = |reason, error: Option<EndError>| ServerMessage::End {
            id: "h".into(),
            stream: Some(1),
            reason,
            samples: 0,
            error,
            heard: None,
            metrics: None,
        };
        let mut r = Responder::new(true);
        let refused = r.on_message(&end(
            EndReason::Error,
            Some(EndError::new(ErrorCode::RateLimited, Some(7))),
        ));
        assert!(
            matches!(&refused[..], [Output::Refuse(e)] if e.status == 429 && e.retry_after_s == Some(7))
        );
        assert!(r.over());

        let mut r = Responder::new(true);
        let head = r.on_message(&start);
        assert_eq!(
            head[0],
            Output::Head {
                sample_rate: 24_000
            }
        );
        assert_eq!(head[1], Output::Body(streaming_wav_header(24_000)));
        let pcm = vec![1, 2, 3, 4];
        assert_eq!(r.on_audio(pcm.clone()), vec![Output::Body(pcm.clone())]);
        let over = r.on_message(&end(
            EndReason::Error,
            Some(EndError::new(ErrorCode::UpstreamInterrupted, None)),
        ));
        assert_eq!(over, vec![Output::BreakOff]);
        assert!(r.on_audio(pcm).is_empty(), "nothing after the end");

        let mut r = Responder::new(false);
        assert_eq!(
            r.on_message(&start),
            vec![Output::Head {
                sample_rate: 24_000
            }]
        );
        assert_eq!(
            r.on_message(&end(EndReason::Done, None)),
            vec![Output::Finish]
        );

        for (code, status) in [
            (ErrorCode::UpstreamTimeout, 504),
            (ErrorCode::UpstreamUnavailable, 503),
            (ErrorCode::UpstreamAuth, 502),
            (ErrorCode::UpstreamBadAudio, 502),
        ] {
            assert_eq!(ApiError::from_code(code, None).status, status, "{code:?}");
        }
    }

    #[test]
    fn the_streaming_header_is_a_wav_header() {
        let h = streaming_wav_header(24_000);
        assert_eq!(h.len(), 44);
        let mut reader = crate::wav::WavReader::new();
        let mut pcm = Vec::new();
        reader.push(&h, &mut pcm).unwrap();
        reader.push(&[5, 6], &mut pcm).unwrap();
        assert_eq!(reader.format().map(|f| f.sample_rate), Some(24_000));
        assert_eq!(pcm, vec![5, 6]);
    }
}
