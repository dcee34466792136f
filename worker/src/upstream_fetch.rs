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
            Self::Head(status) => !(200..300).contains(&status.status),
            Self::Body(_) => false,
            Self::End | Self::Failed => true,
        }
    }
}

enum Step {
    Request(Request, AbortSignal),
    Body(ByteStream),
    /// A success with no body at all (a 204): it ends at once.
    NoBody,
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

/// Reads at most [`MAX_ERROR_BODY_BYTES`] of an error body; the rest is cancelled unread when
/// the stream is dropped.
async fn read_capped(response: &mut worker::Response) -> Vec<u8> {
    let mut head = Vec::new();
    let Ok(mut body) = response.stream() else {
        return head;
    };
    while head.len() < MAX_ERROR_BODY_BYTES {
        match body.next().await {
            Some(Ok(bytes)) => head.extend_from_slice(&bytes),
            _ => break,
        }
    }
    head.truncate(MAX_ERROR_BODY_BYTES);
    head
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
                if (200..300).contains(&status) {
                    let head = UpstreamEvent::Head(UpstreamStatus {
                        status,
                        ..Default::default()
                    });
                    return Some(match response.stream() {
                        Ok(body) => (head, Step::Body(body)),
                        Err(_) => (head, Step::NoBody),
                    });
                }
                let retry_after_s = response
                    .headers()
                    .get("retry-after")
                    .ok()
                    .flatten()
                    .and_then(|v| upstream::parse_retry_after(&v));
                let head = read_capped(&mut response).await;
                let error_code = std::str::from_utf8(&head)
                    .ok()
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
            Step::NoBody => Some((UpstreamEvent::End, Step::Done)),
            Step::Done => None,
        }
    })
    .map(move |event| (fetch, event))
    .boxed_local()
}
