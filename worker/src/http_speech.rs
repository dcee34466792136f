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

use futures_util::stream::{self, StreamExt};
use orpheus_protocol::Version;
use worker::{Env, Headers, Method, Request, Response, Result};

use crate::clock::{now, Timer};
use crate::key_budget;
use crate::log::{self, LogLine};
use crate::openai::{self, ApiError, AudioFormat, Output, Responder, SpeechRequest};
use crate::segment_cache::SegmentCache;
use crate::session::{Effect, Input, Session, Speak, Stored};
use crate::settings::Settings;
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
    let checked = check(&mut req, env, settings).await;
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
    let format = request.format;
    let cache = SegmentCache::from_env(env, settings.segment_cache_ttl_s);
    let mut job = Job::new(settings, request, cache);
    // A job's first output is its head or its refusal.
    let sample_rate = match job.next().await {
        Some(Output::Head { sample_rate }) => sample_rate,
        Some(Output::Refuse(error)) => {
            log::emit(
                Some(&job.name),
                &line.num("status", error.status).word("code", error.code),
            );
            return error_response(&error);
        }
        _ => return error_response(&ApiError::UNAVAILABLE),
    };
    log::emit(
        Some(&job.name),
        &line
            .num("status", 200u16)
            .num("first_audio_ms", now().saturating_sub(received)),
    );
    let headers = Headers::new();
    headers.set("content-type", format.content_type())?;
    headers.set("x-sample-rate", &sample_rate.to_string())?;
    headers.set("cache-control", "no-store")?;
    // What the first segment cost: a cache hit or the upstream's time to first byte.
    let first_segment = match job.first_head {
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
    let body = stream::unfold(Some(job), |job| async move {
        let mut job = job?;
        match job.next().await? {
            Output::Body(bytes) => Some((Ok(bytes), Some(job))),
            Output::BreakOff => Some((
                Err(worker::Error::RustError("the speech broke off".into())),
                None,
            )),
            Output::Finish | Output::Head { .. } | Output::Refuse(_) => None,
        }
    });
    Ok(Response::from_stream(body)?.with_headers(headers))
}

/// Checks the request in the order a client can fix it: method, key, body, text; then the
/// key's limits. Returns the request and the start of its log line.
async fn check(
    req: &mut Request,
    env: &Env,
    settings: &Settings,
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
    let mut request = openai::parse(&body, settings.session.limits.max_text_chars as usize)?;
    request.cache = cache;

    let chars = request.input.chars().count() as u64;
    key_budget::ask(env, &key_object, chars).await?;
    let line = LogLine::new("http")
        .num("chars", chars)
        .word("voice", request.voice)
        .word(
            "format",
            match request.format {
                AudioFormat::Wav => "wav",
                AudioFormat::Pcm => "pcm",
            },
        );
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
    fn new(settings: &Settings, request: SpeechRequest, cache: Option<SegmentCache>) -> Self {
        let name = format!(
            "http-{:08x}",
            (worker::js_sys::Math::random() * f64::from(u32::MAX)) as u32
        );
        let core = Session::new(settings.session.clone(), &name, Some(Stored::default()));
        let upstreams = Upstreams::new(Target {
            base_url: settings.base_url.clone(),
            api_key: settings.api_key.clone().unwrap_or_default(),
            cache,
        });
        let mut job = Self {
            name,
            core,
            responder: Responder::new(request.format),
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
