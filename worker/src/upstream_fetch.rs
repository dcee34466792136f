//! Runs one upstream request as a stream of events for the session core.

use futures_util::stream::{self, LocalBoxStream, StreamExt};
use worker::wasm_bindgen::JsValue;
use worker::{AbortSignal, ByteStream, Fetch, Headers, Method, Request, RequestInit};

use crate::session::FetchId;
use crate::upstream::{self, UpstreamStatus, MAX_ERROR_BODY_BYTES};

/// What happened to an upstream request.
pub enum UpstreamEvent {
    /// The response head (for errors, with what was read of the body).
    Head(UpstreamStatus),
    /// Body bytes.
    Body(Vec<u8>),
    /// The body ended (or the request was aborted, which the core tells apart).
    End,
    /// The request or its body failed.
    Failed,
}

impl UpstreamEvent {
    /// Whether the request is over after this event, so its abort handle can be released.
    pub fn is_final(&self) -> bool {
        match self {
            Self::Head(status) => status.status != 200,
            Self::Body(_) => false,
            Self::End | Self::Failed => true,
        }
    }
}

enum Step {
    Request(Request, AbortSignal),
    Body(ByteStream),
    Done,
}

fn build_request(base_url: &str, api_key: &str, body: &str) -> worker::Result<Request> {
    let headers = Headers::new();
    headers.set("Authorization", &format!("Bearer {api_key}"))?;
    headers.set("Content-Type", "application/json")?;
    headers.set("Accept", "audio/wav")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(body)));
    Request::new_with_init(&format!("{base_url}{}", upstream::SPEECH_PATH), &init)
}

/// Starts the request lazily when first polled; every request yields a final `End` or `Failed`.
pub fn events(
    fetch: FetchId,
    base_url: &str,
    api_key: &str,
    body: &str,
    signal: AbortSignal,
) -> LocalBoxStream<'static, (FetchId, UpstreamEvent)> {
    let first = match build_request(base_url, api_key, body) {
        Ok(request) => Step::Request(request, signal),
        Err(_) => return stream::iter([(fetch, UpstreamEvent::Failed)]).boxed_local(),
    };
    stream::unfold(first, move |step| async move {
        match step {
            Step::Request(request, signal) => {
                let Ok(mut response) = Fetch::Request(request).send_with_signal(&signal).await
                else {
                    return Some((UpstreamEvent::Failed, Step::Done));
                };
                let status = response.status_code();
                if status == 200 {
                    return Some(match response.stream() {
                        Ok(body) => (
                            UpstreamEvent::Head(UpstreamStatus {
                                status,
                                ..Default::default()
                            }),
                            Step::Body(body),
                        ),
                        Err(_) => (UpstreamEvent::Failed, Step::Done),
                    });
                }
                let retry_after_s = response
                    .headers()
                    .get("retry-after")
                    .ok()
                    .flatten()
                    .and_then(|v| upstream::parse_retry_after(&v));
                let text = response.text().await.unwrap_or_default();
                let error_code = text
                    .get(..MAX_ERROR_BODY_BYTES.min(text.len()))
                    .and_then(upstream::error_code);
                Some((
                    UpstreamEvent::Head(UpstreamStatus {
                        status,
                        retry_after_s,
                        error_code,
                    }),
                    Step::Done,
                ))
            }
            Step::Body(mut body) => Some(match body.next().await {
                Some(Ok(bytes)) => (UpstreamEvent::Body(bytes), Step::Body(body)),
                Some(Err(_)) => (UpstreamEvent::Failed, Step::Done),
                None => (UpstreamEvent::End, Step::Done),
            }),
            Step::Done => None,
        }
    })
    .map(move |event| (fetch, event))
    .boxed_local()
}
