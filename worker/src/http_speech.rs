//! The OpenAI-compatible speech endpoint, the runtime part.
//!
//! Each request is served by the Worker invocation that received it, which owns the request's
//! upstream requests for exactly as long as the response streams: no Durable Object holds
//! them, so nothing outlives the response, and a key's many requests run side by side. The
//! message itself runs through the same [`Session`] core as a `speak` (segments, retries,
//! timeouts, WAV stripping), handed a typed request as a protocol v1 client's; the
//! [`Responder`] turns the messages and audio it emits into the HTTP response. The key's limits are checked first with the key's Durable Object
//! ([`crate::key_budget`]). When the client goes away, the response body is dropped, and with
//! it the job: its upstream requests are aborted.

use std::collections::VecDeque;

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future;
use futures_util::stream::{self, Stream, StreamExt};
use orpheus_protocol::{ResponseFormat, Version, WordTiming};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::{ByteStream, Env, Fetcher, Headers, Method, Request, RequestInit, Response, Result};

use crate::clock::{now, Timer};
use crate::key_budget;
use crate::log::{self, LogLine};
use crate::openai::{self, ApiError, Endpoint, Output, Responder, SpeechRequest};
use crate::segment_cache::SegmentCache;
use crate::session::{Config, Effect, Input, Session, Speak, Stored};
use crate::settings::{Settings, ENCODER_BINDING};
use crate::time::Millis;
use crate::upstream_fetch::UpstreamEvent;
use crate::upstreams::{Next, Target, Upstreams};

/// The one socket generation of the job's core.
const CLIENT: u32 = 1;

fn error_response(error: &ApiError) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if let Some(after) = error.retry_after_s {
        headers.set("retry-after", &after.to_string())?;
    }
    if error.status == 405 {
        headers.set("allow", "POST")?;
    }
    Ok(Response::ok(error.body())?
        .with_status(error.status)
        .with_headers(headers))
}

/// Serves `POST /v1/audio/speech` (or Groq's `/openai/v1/audio/speech`).
pub async fn serve(mut req: Request, env: &Env, settings: &Settings) -> Result<Response> {
    let received = now();
    let encoder = env.service(ENCODER_BINDING).ok();
    let checked = check(&mut req, env, settings, encoder.is_some()).await;
    let (request, line) = match checked {
        Ok(request) => request,
        Err(error) => {
            log::emit(
                None,
                &LogLine::new("http")
                    .num("status", error.status)
                    .word("code", error.code),
            );
            return error_response(&error);
        }
    };
    let (format, rate, sse) = (request.format, request.sample_rate, request.sse);
    let native = format.is_native(rate);
    let input_chars = request.input.chars().count() as u64;
    let cache = SegmentCache::from_env(env, settings.segment_cache_ttl_s);
    let wav = native && format == ResponseFormat::Wav;
    let mut job = Job::new(settings, request, cache, wav);
    // A job's first output is its head or its refusal.
    match job.next().await {
        Some(Output::Head { .. }) => {}
        Some(Output::Refuse(error)) => {
            log::emit(
                Some(&job.name),
                &line.num("status", error.status).word("code", error.code),
            );
            return error_response(&error);
        }
        _ => return error_response(&ApiError::UNAVAILABLE),
    }
    let name = job.name.clone();
    let first_head = job.first_head;
    // Word timings, for server-sent events, as the job tells them beside its audio.
    let told: Told = Rc::new(RefCell::new(Vec::new()));
    let pcm = audio_of(job.into_body(), told.clone());
    // The audio: the job's own PCM or WAV at Orpheus' rate, or what the encoder makes of it.
    let audio = match (native, encoder) {
        (true, _) => pcm.boxed_local(),
        (false, Some(encoder)) => match transcode(&encoder, pcm, format, rate).await {
            Ok(audio) => audio.boxed_local(),
            Err(_) => {
                let error = ApiError::ENCODER_UNAVAILABLE;
                log::emit(
                    Some(&name),
                    &line.num("status", error.status).word("code", error.code),
                );
                return error_response(&error);
            }
        },
        // Refused by `check`.
        (false, None) => return error_response(&ApiError::UNAVAILABLE),
    };
    log::emit(
        Some(&name),
        &line
            .num("status", 200u16)
            .num("first_audio_ms", now().saturating_sub(received)),
    );
    let headers = Headers::new();
    let content_type = if sse {
        openai::sse::CONTENT_TYPE
    } else {
        format.content_type()
    };
    headers.set("content-type", content_type)?;
    headers.set("x-sample-rate", &rate.to_string())?;
    headers.set("cache-control", "no-store")?;
    // What the first segment cost: a cache hit or the upstream's time to first byte.
    let first_segment = match first_head {
        Some((_, true)) => "cache;desc=hit".to_owned(),
        Some((at, false)) => format!(
            "cache;desc=miss, upstream;dur={}",
            at.saturating_sub(received)
        ),
        None => "cache;desc=miss".to_owned(),
    };
    headers.set(
        "server-timing",
        &format!(
            "{first_segment}, first-audio;dur={}",
            now().saturating_sub(received)
        ),
    )?;
    let body = if sse {
        // Each piece of audio an event, after the words told by then; the usage once it is
        // all out.
        let before = told.clone();
        let deltas = audio.map(move |piece| {
            piece.map(|bytes| {
                let mut events = words_events(&before);
                events.extend(openai::sse::delta(&bytes));
                events
            })
        });
        let done = stream::once(async move {
            let mut events = words_events(&told);
            events.extend(openai::sse::done(input_chars));
            Ok(events)
        });
        deltas.chain(done).boxed_local()
    } else {
        audio
    };
    Ok(Response::from_stream(body)?.with_headers(headers))
}

/// Word timings the job told and the response has not sent yet.
type Told = Rc<RefCell<Vec<WordTiming>>>;

/// The audio of the job's body; the word timings it tells go to `told` as they come.
fn audio_of(
    body: impl Stream<Item = Result<Output>>,
    told: Told,
) -> impl Stream<Item = Result<Vec<u8>>> {
    body.filter_map(move |piece| {
        future::ready(match piece {
            Ok(Output::Body(bytes)) => Some(Ok(bytes)),
            Ok(Output::Words(words)) => {
                told.borrow_mut().extend(words);
                None
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
    })
}

/// The `speech.audio.words` event of the words told and not sent yet (none: nothing).
fn words_events(told: &Told) -> Vec<u8> {
    let words = std::mem::take(&mut *told.borrow_mut());
    if words.is_empty() {
        return Vec::new();
    }
    openai::sse::words(&words, orpheus_protocol::NATIVE_RATE)
}

/// Sends `pcm` (Orpheus' own, at 24 kHz) through the encoder Worker as it comes, and returns
/// the audio it makes in `format` at `rate`, as it comes. The request body is the job's
/// stream: when the client goes away, the encoder's response is dropped, the request body
/// with it, and so the job and its upstream requests.
async fn transcode(
    encoder: &Fetcher,
    pcm: impl Stream<Item = Result<Vec<u8>>> + 'static,
    format: ResponseFormat,
    rate: u32,
) -> Result<ByteStream> {
    let chunks = pcm.map(|piece| {
        piece
            .map(|bytes| JsValue::from(Uint8Array::from(bytes.as_slice())))
            .map_err(|e| JsValue::from_str(&e.to_string()))
    });
    let body = wasm_streams::ReadableStream::from_stream(chunks).into_raw();
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let url = format!(
        "https://encoder.internal/encode?format={}&rate={rate}",
        format.as_str()
    );
    let mut response = encoder.fetch(url, Some(init)).await?;
    if response.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "the encoder answered {}",
            response.status_code()
        )));
    }
    response.stream()
}

/// Checks the request in the order a client can fix it: method, key, body, text; then the
/// key's limits. Returns the request and the start of its log line.
async fn check(
    req: &mut Request,
    env: &Env,
    settings: &Settings,
    encoder: bool,
) -> std::result::Result<(SpeechRequest, LogLine), ApiError> {
    if req.method() != Method::Post {
        return Err(ApiError::METHOD);
    }
    if settings.relay_api_keys.is_empty() {
        return Err(ApiError::NO_KEYS);
    }
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let key_object =
        openai::check_key(header("authorization").as_deref(), &settings.relay_api_keys)?;
    if !openai::is_json(header("content-type").as_deref()) {
        return Err(ApiError::CONTENT_TYPE);
    }
    let cache = !header(openai::CACHE_HEADER).is_some_and(|v| v.eq_ignore_ascii_case("off"));
    let declared = header("content-length").and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|l| l > openai::MAX_BODY_BYTES) {
        return Err(ApiError::BODY_TOO_LARGE);
    }
    let body = read_capped(req).await?;
    let endpoint = Endpoint {
        max_text_chars: settings.session.limits.max_text_chars as usize,
        names: &settings.names,
        encoder,
    };
    let mut request = openai::parse(&body, endpoint)?;
    request.cache = cache;

    let chars = request.input.chars().count() as u64;
    key_budget::ask(env, &key_object, chars).await?;
    let line = LogLine::new("http")
        .num("chars", chars)
        .word("voice", request.voice)
        .word("format", request.format.as_str())
        .num("rate", request.sample_rate)
        .word("stream", if request.sse { "sse" } else { "audio" });
    Ok((request, line))
}

/// The request body, refused once it passes [`openai::MAX_BODY_BYTES`] (a body with no
/// length is read only that far).
async fn read_capped(req: &mut Request) -> std::result::Result<Vec<u8>, ApiError> {
    let mut body = req.stream().map_err(|_| ApiError::JSON)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.map_err(|_| ApiError::JSON)?);
        if bytes.len() > openai::MAX_BODY_BYTES {
            return Err(ApiError::BODY_TOO_LARGE);
        }
    }
    Ok(bytes)
}

/// One request's speech: the session core speaking the message, the responder, and the
/// upstream requests in flight, which the job owns (dropping it aborts them).
struct Job {
    /// The core's session name in logs (`http-` and a random number).
    name: String,
    core: Session,
    responder: Responder,
    upstreams: Upstreams,
    timer: Timer,
    out: VecDeque<Output>,
    /// When the first response head came, and whether from the segment cache.
    first_head: Option<(Millis, bool)>,
}

impl Job {
    /// The job of `request`; `wav`: its PCM goes out in a WAV container of its own.
    fn new(
        settings: &Settings,
        request: SpeechRequest,
        cache: Option<SegmentCache>,
        wav: bool,
    ) -> Self {
        // Server-sent events carry the word timings; plain audio has nowhere to put them.
        let config = Config {
            words_to_v1: request.sse,
            ..settings.session.clone()
        };
        let name = format!(
            "http-{:08x}",
            (worker::js_sys::Math::random() * f64::from(u32::MAX)) as u32
        );
        let core = Session::new(config, &name, Some(Stored::default()));
        let upstreams = Upstreams::new(Target {
            base_url: settings.base_url.clone(),
            api_key: settings.api_key.clone().unwrap_or_default(),
            cache,
        });
        let mut job = Self {
            name,
            core,
            responder: Responder::new(wav),
            upstreams,
            timer: Timer::default(),
            out: VecDeque::new(),
            first_head: None,
        };
        let speak = Speak {
            id: "speech".to_owned(),
            text: request.input,
            voice: Some(request.voice.to_owned()),
            model: Some(request.model.id().to_owned()),
            more: false,
            cache: request.cache,
            markup: request.markup,
            lexicon: request.lexicon,
            encoding: None,
        };
        job.drive(Input::Connected(CLIENT, Version::V1));
        job.drive(Input::Speak(CLIENT, speak));
        job
    }

    /// The next thing the response must do; `None` once it is over.
    async fn next(&mut self) -> Option<Output> {
        loop {
            if let Some(output) = self.out.pop_front() {
                return Some(output);
            }
            if self.responder.over() {
                return None;
            }
            let deadline = self.core.next_deadline();
            match self.upstreams.next(&mut self.timer, deadline).await {
                Next::Event(fetch, event) => {
                    if let UpstreamEvent::Head(status) = &event {
                        self.first_head.get_or_insert((now(), status.cached));
                    }
                    self.drive(event.input(fetch));
                }
                Next::Deadline => self.drive(Input::Tick),
                Next::Look => {}
            }
        }
    }

    /// The rest of the response, after its head: its audio and the word timings told beside
    /// it. The job is owned by the stream, so that dropping it (the client went away) aborts
    /// the upstream requests.
    fn into_body(self) -> impl Stream<Item = Result<Output>> {
        stream::unfold(Some(self), |job| async move {
            let mut job = job?;
            match job.next().await? {
                piece @ (Output::Body(_) | Output::Words(_)) => Some((Ok(piece), Some(job))),
                Output::BreakOff => Some((
                    Err(worker::Error::RustError("the speech broke off".into())),
                    None,
                )),
                Output::Finish | Output::Head { .. } | Output::Refuse(_) => None,
            }
        })
    }

    /// Feeds the core and executes its effects.
    fn drive(&mut self, input: Input<'_>) {
        self.core.handle(input, now());
        for effect in self.core.take_effects() {
            match effect {
                Effect::Send(_, message) => self.out.extend(self.responder.on_message(&message)),
                Effect::Audio(_, audio) => {
                    self.out.extend(self.responder.on_audio(audio.piece.pcm))
                }
                Effect::Fetch(request) => self.upstreams.start(&request),
                Effect::Abort(fetch) => self.upstreams.abort(fetch),
                Effect::Log(line) => log::emit(Some(&self.name), &line),
                // One response, no socket and no storage: the key's limits were spent already.
                Effect::Persist(..) | Effect::Store(..) | Effect::Close { .. } => {}
            }
        }
    }
}

impl Drop for Job {
    /// The response is over, or its client went away: the message ends (logged once) and
    /// every upstream request still held is aborted.
    fn drop(&mut self) {
        self.drive(Input::Disconnected(CLIENT));
        self.upstreams.abort_all();
    }
}
