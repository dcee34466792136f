//! Runs one upstream request as a stream of events for the session core, answered from the
//! segment cache when it can be.

use futures_util::stream::{self, LocalBoxStream, StreamExt};
use wasm_bindgen::prelude::wasm_bindgen;
use web_sys::{
    ReadableStreamByobReader, ReadableStreamGetReaderOptions, ReadableStreamReadResult,
    ReadableStreamReaderMode,
};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{AbortSignal, Fetch, Headers, Method, Request, RequestInit, ResponseBody};

use crate::clock::now;
use crate::segment_cache::{self, SegmentCache};
use crate::session::{FetchId, Input};
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
    /// The event as the session core's input, for request `fetch`.
    pub fn input(&self, fetch: FetchId) -> Input<'_> {
        match self {
            Self::Head(status) => Input::UpstreamHead(fetch, status.clone()),
            Self::Body(bytes) => Input::UpstreamBody(fetch, bytes),
            Self::End => Input::UpstreamEnd(fetch),
            Self::Failed => Input::UpstreamFailed(fetch),
        }
    }

    /// Whether the request is over after this event, so its abort handle can be released.
    pub fn is_final(&self) -> bool {
        match self {
            Self::Head(status) => !(200..300).contains(&status.status),
            Self::Body(_) => false,
            Self::End | Self::Failed => true,
        }
    }
}

/// Most bytes one body read takes.
const READ_BYTES: u32 = 64 * 1024;

#[wasm_bindgen]
extern "C" {
    /// A readable stream, for the one call web-sys binds as infallible.
    #[wasm_bindgen(js_name = ReadableStream)]
    type BodyStream;

    /// `getReader({mode: "byob"})`, which throws for a stream that is not a byte stream.
    #[wasm_bindgen(method, catch, js_name = getReader)]
    fn byob_reader(
        this: &BodyStream,
        options: &ReadableStreamGetReaderOptions,
    ) -> Result<ReadableStreamByobReader, JsValue>;
}

/// A response body, read through a BYOB reader in pieces as large as the runtime has ready
/// (workerd's default reader hands out 4 KiB chunks, and each read costs a promise and a
/// wake-up), one read always ahead: the first is asked for with the head, and each next one as
/// soon as a piece is taken, so the runtime fills it while the core handles the head or the
/// piece before (the first audio leaves sooner). A fetched body is always a byte stream; one
/// that is not reads as failed.
struct Body {
    reader: Option<ReadableStreamByobReader>,
    /// The read in flight.
    ahead: Option<JsFuture>,
}

impl Body {
    /// The body of `response`, its first read asked for; `None` when it has none.
    fn of(response: &worker::Response) -> Option<Self> {
        let ResponseBody::Stream(raw) = response.body() else {
            return None;
        };
        let options = ReadableStreamGetReaderOptions::new();
        options.set_mode(ReadableStreamReaderMode::Byob);
        let reader = raw.unchecked_ref::<BodyStream>().byob_reader(&options).ok();
        let mut body = Self {
            reader,
            ahead: None,
        };
        body.read_into(Uint8Array::new_with_length(READ_BYTES));
        Some(body)
    }

    /// Asks for the next piece, into `view` (the read takes its buffer over).
    fn read_into(&mut self, view: Uint8Array) {
        if let Some(reader) = &self.reader {
            self.ahead = Some(JsFuture::from(reader.read_with_array_buffer_view(&view)));
        }
    }

    /// The next piece; `None` at the end, `Some(Err)` if the body failed.
    async fn next(&mut self) -> Option<Result<Vec<u8>, ()>> {
        // No read in flight: the body is not a byte stream (after the end nothing asks again).
        let Some(read) = self.ahead.take() else {
            return Some(Err(()));
        };
        let read = match read.await {
            Ok(read) => read.unchecked_into::<ReadableStreamReadResult>(),
            Err(_) => return Some(Err(())),
        };
        if read.get_done().unwrap_or(false) {
            return None;
        }
        let filled = read.get_value().unchecked_into::<Uint8Array>();
        let piece = filled.to_vec();
        // The piece is copied out: the next read may fill all of its buffer again.
        self.read_into(Uint8Array::new(&filled.buffer()));
        Some(Ok(piece))
    }
}

impl Drop for Body {
    /// Like a dropped default reader's stream: an unread rest of the body is cancelled.
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            let _ = reader.cancel();
        }
    }
}

enum Step {
    /// Ask the segment cache first; on a miss, send the request and keep its answer.
    Lookup(Box<Lookup>),
    Request(Request, AbortSignal, Option<Keep>),
    Body(Body, Option<Keep>),
    /// A whole answer from the cache, then its end.
    Cached(Vec<u8>),
    /// A success with no body at all (a 204), or a cached answer sent: it ends at once.
    NoBody,
    Done,
}

struct Lookup {
    cache: SegmentCache,
    key: String,
    request: Request,
    signal: AbortSignal,
}

/// An answer being read, to keep in the cache once it ended well.
struct Keep {
    cache: SegmentCache,
    key: String,
    wav: Vec<u8>,
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
async fn read_capped(response: &worker::Response) -> Vec<u8> {
    let mut head = Vec::new();
    let Some(mut body) = Body::of(response) else {
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

/// Sends the request: its head, and what comes next.
async fn send(request: Request, signal: AbortSignal, keep: Option<Keep>) -> (UpstreamEvent, Step) {
    let Ok(response) = Fetch::Request(request).send_with_signal(&signal).await else {
        return (UpstreamEvent::Failed, Step::Done);
    };
    let status = response.status_code();
    if (200..300).contains(&status) {
        let head = UpstreamEvent::Head(UpstreamStatus {
            status,
            ..Default::default()
        });
        return match Body::of(&response) {
            Some(body) => (head, Step::Body(body, keep)),
            None => (head, Step::NoBody),
        };
    }
    let retry_after_s = response
        .headers()
        .get("retry-after")
        .ok()
        .flatten()
        .and_then(|v| upstream::parse_retry_after(&v));
    let head = read_capped(&response).await;
    let error_code = std::str::from_utf8(&head)
        .ok()
        .and_then(upstream::error_code);
    let head = UpstreamEvent::Head(UpstreamStatus {
        status,
        retry_after_s,
        error_code,
        cached: false,
    });
    (head, Step::Done)
}

/// Starts the request lazily when first polled; every request yields a final `End` or `Failed`.
/// With a `cache`, a fresh answer kept for the same body is served instead (its head says
/// `cached`), and an answer that ends well is kept.
pub fn events(
    fetch: FetchId,
    base_url: &str,
    api_key: &str,
    body: &str,
    signal: AbortSignal,
    cache: Option<SegmentCache>,
) -> LocalBoxStream<'static, (FetchId, UpstreamEvent)> {
    let request = match build_request(base_url, api_key, body) {
        Ok(request) => request,
        Err(_) => return stream::iter([(fetch, UpstreamEvent::Failed)]).boxed_local(),
    };
    let first = match cache {
        Some(cache) => Step::Lookup(Box::new(Lookup {
            key: segment_cache::key(body),
            cache,
            request,
            signal,
        })),
        None => Step::Request(request, signal, None),
    };
    stream::unfold(first, move |step| async move {
        match step {
            Step::Lookup(lookup) => {
                let Lookup {
                    cache,
                    key,
                    request,
                    signal,
                } = *lookup;
                if let Some(wav) = cache.get(&key, now()).await {
                    let head = UpstreamEvent::Head(UpstreamStatus {
                        status: 200,
                        cached: true,
                        ..Default::default()
                    });
                    return Some((head, Step::Cached(wav)));
                }
                let keep = Keep {
                    cache,
                    key,
                    wav: Vec::new(),
                };
                Some(send(request, signal, Some(keep)).await)
            }
            Step::Request(request, signal, keep) => Some(send(request, signal, keep).await),
            Step::Cached(wav) => Some((UpstreamEvent::Body(wav), Step::NoBody)),
            Step::Body(mut body, mut keep) => Some(match body.next().await {
                Some(Ok(bytes)) => {
                    if let Some(k) = keep.as_mut() {
                        k.wav.extend_from_slice(&bytes);
                    }
                    let keep = keep.filter(|k| segment_cache::keeps(k.wav.len()));
                    (UpstreamEvent::Body(bytes), Step::Body(body, keep))
                }
                Some(Err(_)) => (UpstreamEvent::Failed, Step::Done),
                None => {
                    if let Some(k) = keep {
                        k.cache.put(&k.key, &k.wav, now()).await;
                    }
                    (UpstreamEvent::End, Step::Done)
                }
            }),
            Step::NoBody => Some((UpstreamEvent::End, Step::Done)),
            Step::Done => None,
        }
    })
    .map(move |event| (fetch, event))
    .boxed_local()
}
