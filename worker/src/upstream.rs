//! Groq's speech API, the pure part: the request body and what each answer means for the client.
//!
//! The upstream's own error text never reaches a client (it may name the organisation); only
//! the status, the `retry-after` header and the machine-readable `error.code` are read.

use orpheus_protocol::{EndError, ErrorCode, Model};
use serde::Serialize;

/// The speech endpoint, relative to the upstream base URL.
pub const SPEECH_PATH: &str = "/openai/v1/audio/speech";

/// Most of an error body the relay reads to find `error.code`; the rest is never read.
pub const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

/// The wait assumed when a 429 or 503 carries no `retry-after`.
pub const DEFAULT_RETRY_AFTER_S: u32 = 1;

/// What the relay learned from an upstream response's head (and, for errors, its body).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamStatus {
    /// HTTP status.
    pub status: u16,
    /// The `retry-after` header in whole seconds, rounded up.
    pub retry_after_s: Option<u32>,
    /// `error.code` from a JSON error body.
    pub error_code: Option<String>,
    /// The answer came from the segment cache: no upstream request was made.
    pub cached: bool,
}

#[derive(Serialize)]
struct SpeechRequest<'a> {
    model: &'a str,
    input: &'a str,
    voice: &'a str,
    response_format: &'a str,
}

/// Groq's JSON request body for one segment.
pub fn request_body(model: Model, voice: &str, input: &str) -> String {
    serde_json::to_string(&SpeechRequest {
        model: model.id(),
        input,
        voice,
        response_format: "wav",
    })
    .expect("request serialises")
}

/// Parses `retry-after` as seconds (integer or decimal); HTTP dates are not used by Groq.
/// A fraction of a second counts as a whole one; at most a day. Parsed by hand: a float parser
/// would ship its tables for this one header.
pub fn parse_retry_after(value: &str) -> Option<u32> {
    const DAY: u64 = 86_400;
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    // Leading zeros aside, more than six digits is more than a day.
    let whole = whole.trim_start_matches('0');
    let seconds = if whole.len() > 6 {
        DAY
    } else {
        whole.parse().unwrap_or(0)
    };
    let round_up = u64::from(fraction.bytes().any(|b| b != b'0'));
    Some((seconds + round_up).min(DAY) as u32)
}

/// Reads `error.code` from a Groq error body, ignoring everything else in it.
pub fn error_code(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value["error"]["code"].as_str().map(str::to_owned)
}

/// Maps a response status to success or to the error the client gets.
pub fn classify(status: &UpstreamStatus) -> Result<(), EndError> {
    let code = match status.status {
        200..=299 => return Ok(()),
        429 => ErrorCode::RateLimited,
        401 | 403 => ErrorCode::UpstreamAuth,
        400 if status.error_code.as_deref() == Some("model_terms_required") => {
            ErrorCode::TermsRequired
        }
        400..=499 if status.status != 498 => ErrorCode::UpstreamRejected,
        _ => ErrorCode::UpstreamUnavailable,
    };
    let retry_after = match (status.status, code) {
        // "Try again later" always says when: the header's time, or the default.
        (429 | 503, _) => Some(status.retry_after_s.unwrap_or(DEFAULT_RETRY_AFTER_S)),
        (_, ErrorCode::UpstreamUnavailable) => status.retry_after_s,
        _ => None,
    };
    Err(EndError::new(code, retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(status: u16, error_code: Option<&str>) -> ErrorCode {
        classify(&UpstreamStatus {
            status,
            retry_after_s: Some(7),
            error_code: error_code.map(str::to_owned),
            ..Default::default()
        })
        .unwrap_err()
        .code
    }

    #[test]
    fn statuses_map_to_actionable_codes() {
        assert!(classify(&UpstreamStatus {
            status: 200,
            ..Default::default()
        })
        .is_ok());
        assert_eq!(code_of(429, None), ErrorCode::RateLimited);
        assert_eq!(code_of(401, None), ErrorCode::UpstreamAuth);
        assert_eq!(code_of(403, None), ErrorCode::UpstreamAuth);
        assert_eq!(
            code_of(400, Some("model_terms_required")),
            ErrorCode::TermsRequired
        );
        assert_eq!(code_of(400, None), ErrorCode::UpstreamRejected);
        assert_eq!(code_of(413, None), ErrorCode::UpstreamRejected);
        assert_eq!(code_of(422, None), ErrorCode::UpstreamRejected);
        assert_eq!(code_of(498, None), ErrorCode::UpstreamUnavailable);
        assert_eq!(code_of(500, None), ErrorCode::UpstreamUnavailable);
        assert_eq!(code_of(503, None), ErrorCode::UpstreamUnavailable);
    }

    #[test]
    fn retry_after_only_where_it_helps() {
        let e = classify(&UpstreamStatus {
            status: 429,
            retry_after_s: Some(3),
            error_code: None,
            ..Default::default()
        });
        assert_eq!(e.unwrap_err().retry_after_s, Some(3));
        let e = classify(&UpstreamStatus {
            status: 401,
            retry_after_s: Some(3),
            error_code: None,
            ..Default::default()
        });
        assert_eq!(e.unwrap_err().retry_after_s, None);
        for status in [429, 503] {
            let e = classify(&UpstreamStatus {
                status,
                retry_after_s: None,
                error_code: None,
                ..Default::default()
            });
            assert_eq!(
                e.unwrap_err().retry_after_s,
                Some(DEFAULT_RETRY_AFTER_S),
                "{status} without retry-after still says when"
            );
        }
        let e = classify(&UpstreamStatus {
            status: 500,
            retry_after_s: None,
            error_code: None,
            ..Default::default()
        });
        assert_eq!(e.unwrap_err().retry_after_s, None);
        assert_eq!(parse_retry_after("2"), Some(2));
        assert_eq!(parse_retry_after(" 7.66 "), Some(8));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(".5"), Some(1));
        assert_eq!(parse_retry_after("3.000"), Some(3));
        assert_eq!(parse_retry_after("0"), Some(0));
        assert_eq!(parse_retry_after("0000090000"), Some(86_400));
        assert_eq!(parse_retry_after("99999999999999999999"), Some(86_400));
        assert_eq!(parse_retry_after("."), None);
        assert_eq!(parse_retry_after("1e3"), None);
    }

    #[test]
    fn error_code_ignores_the_message() {
        let body = r#"{"error":{"message":"org_123 must accept terms","type":"invalid_request_error","code":"model_terms_required"}}"#;
        assert_eq!(error_code(body).as_deref(), Some("model_terms_required"));
        assert_eq!(error_code("<html>"), None);
    }

    #[test]
    fn body_has_exactly_the_documented_fields() {
        let body: serde_json::Value =
            serde_json::from_str(&request_body(Model::ArabicSaudi, "noura", "مرحبا \"x\""))
                .unwrap();
        assert_eq!(body["model"], "canopylabs/orpheus-arabic-saudi");
        assert_eq!(body["voice"], "noura");
        assert_eq!(body["input"], "مرحبا \"x\"");
        assert_eq!(body["response_format"], "wav");
        assert_eq!(body.as_object().unwrap().len(), 4);
    }
}
