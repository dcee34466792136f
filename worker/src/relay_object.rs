//! The Durable Object: one per session id, the single owner of that session's sockets and of its
//! upstream requests. It is a thin adapter: it feeds the [`Session`] core and executes the
//! effects the core returns.
//!
//! Sockets are named by generation (stored in each socket's attachment). The object serves the
//! socket the core serves; when it wakes from hibernation with no core in memory, it rebuilds
//! the core from the open socket of the highest generation and closes any other, so a stale
//! socket can never take the session over.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use orpheus_protocol::{
    AudioEncoding, ServerMessage, Version, CLOSE_REPLACED, PING_FRAME, PONG_FRAME,
};
use worker::js_sys;
use worker::wasm_bindgen::prelude::*;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::DurableObjectStorage;
use worker::{
    durable_object, DurableObject, Env, Fetcher, Headers, Request, Response, Result, ScheduledTime,
    State, WebSocket, WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

use crate::budget::SpeechBudget;
use crate::clock::{now, Timer};
use crate::key_budget;
use crate::log::{self, LogLine};
use crate::opus_out::OpusOut;
use crate::replay::UsedTickets;
use crate::segment_cache::SegmentCache;
use crate::session::{
    serving_after_wake, Attachment, Durability, Effect, Generation, Input, Session, Stored,
};
use crate::settings::{Settings, ENCODER_BINDING};
use crate::time::Millis;
use crate::upgrade::{refuse_in_band, request_path, session_id_from_path, TICKET_HEADER};
use crate::upstreams::{Next, Target, Upstreams};

/// A deadline further away than this is left to the object's alarm once no upstream request
/// runs, so that the object can hibernate meanwhile; a nearer one keeps its pump waiting.
const ALARM_BEYOND_MS: Millis = 2_000;

/// Storage key of the ids of tickets already used on this session.
const USED_TICKETS_KEY: &str = "used_tickets";

/// Storage key of the session's [`Stored`] state.
const STORED_KEY: &str = "session";

/// The stored state as read at construction.
enum Load {
    /// Not read yet (the runtime holds events until it is).
    Pending,
    /// Read: the stored state, or the default for a new session.
    Read(Box<Stored>),
    /// The read failed: the core starts without it and refuses new messages until a retry
    /// succeeds.
    Failed,
}

#[wasm_bindgen]
extern "C" {
    /// The object's storage, seen for `put` with options (workers-rs's `put` takes none).
    type StorageWithOptions;

    #[wasm_bindgen(method, catch, js_name = put)]
    fn put_with_options(
        this: &StorageWithOptions,
        key: &str,
        value: JsValue,
        options: &JsValue,
    ) -> std::result::Result<js_sys::Promise, JsValue>;
}

/// Writes the session's state; an [`Durability::Unconfirmed`] write does not hold the
/// object's later frames back until the runtime confirms it (`allowUnconfirmed`).
async fn put_stored(
    storage: Result<DurableObjectStorage, JsValue>,
    stored: &Stored,
    durability: Durability,
) -> std::result::Result<(), JsValue> {
    let value = serde_wasm_bindgen::to_value(stored)?;
    let options = js_sys::Object::new();
    let unconfirmed = durability == Durability::Unconfirmed;
    js_sys::Reflect::set(&options, &"allowUnconfirmed".into(), &unconfirmed.into())?;
    let storage: StorageWithOptions = storage?.unchecked_into();
    let put = storage.put_with_options(STORED_KEY, value, &options)?;
    JsFuture::from(put).await.map(|_| ())
}

async fn read_stored(storage: &worker::Storage) -> Option<Stored> {
    match storage.get::<Stored>(STORED_KEY).await {
        Ok(stored) => Some(stored.unwrap_or_default()),
        Err(_) => None,
    }
}

/// Why the object refused an upgrade the Worker admitted.
#[derive(Clone, Copy)]
struct TicketRefusal {
    status: u16,
    /// The response body.
    text: &'static str,
    /// The word logged.
    name: &'static str,
}

/// The per-session Durable Object.
#[durable_object]
pub struct RelaySession {
    state: State,
    settings: Settings,
    /// The session core; `None` until a socket is served by this instance.
    core: RefCell<Option<Session>>,
    /// The sockets this instance knows, by generation.
    sockets: RefCell<Vec<(Generation, WebSocket)>>,
    /// The generation the next accepted socket gets.
    next_generation: Cell<Generation>,
    /// The upstream requests of the session, owned here so that any handler can start or
    /// abort them; one handler at a time waits on them (the pump).
    upstreams: Upstreams,
    /// Whether a handler runs the pump.
    pumping: Cell<bool>,
    /// The alarm time this instance last set.
    alarm_at: Cell<Option<Millis>>,
    loaded: Rc<RefCell<Load>>,
    /// For an API key's object: the key's budget, once read.
    key_budget: RefCell<Option<SpeechBudget>>,
    /// The encoder Worker, if bound, and the Opus pipe of the stream that asked for it.
    encoder: Option<Fetcher>,
    opus: OpusOut,
}

impl DurableObject for RelaySession {
    fn new(state: State, env: Env) -> Self {
        if let Ok(pair) = WebSocketRequestResponsePair::new(PING_FRAME, PONG_FRAME) {
            state.set_websocket_auto_response(&pair);
        }
        let loaded = Rc::new(RefCell::new(Load::Pending));
        let (slot, storage) = (loaded.clone(), state.storage());
        // The runtime holds every event until this has run; the future itself need not be awaited.
        let _loaded = state.block_concurrency_while(async move {
            *slot.borrow_mut() = match read_stored(&storage).await {
                Some(stored) => Load::Read(Box::new(stored)),
                None => Load::Failed,
            };
            Ok(())
        });
        // Shows in the log when the object is (re-)created, e.g. on waking from hibernation.
        log::emit(None, &LogLine::new("object").word("event", "constructed"));
        let settings = Settings::from_env(&env);
        let upstreams = Upstreams::new(Target {
            base_url: settings.base_url.clone(),
            api_key: settings.api_key.clone().unwrap_or_default(),
            cache: SegmentCache::from_env(&env, settings.segment_cache_ttl_s),
        });
        Self {
            state,
            settings,
            core: RefCell::new(None),
            sockets: RefCell::new(Vec::new()),
            next_generation: Cell::new(1),
            upstreams,
            pumping: Cell::new(false),
            alarm_at: Cell::new(None),
            loaded,
            key_budget: RefCell::new(None),
            encoder: env.service(ENCODER_BINDING).ok(),
            opus: OpusOut::default(),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        if request_path(&req) == key_budget::ADMIT_PATH {
            let limits = &self.settings.session.budget;
            let storage = self.state.storage();
            return key_budget::answer(&storage, &self.key_budget, limits, req, now()).await;
        }
        let Some(session_id) = session_id_from_path(&request_path(&req)) else {
            return Response::error("invalid session id", 400);
        };
        let offered = req
            .headers()
            .get("Sec-WebSocket-Protocol")?
            .unwrap_or_default();
        // The Worker admitted only an upgrade that offers a version it speaks.
        let version = Version::negotiate(&offered).unwrap_or_default();
        let upgrade = LogLine::new("upgrade");
        if let Some(ticket) = req.headers().get(TICKET_HEADER)? {
            if let Err(refusal) = self.claim_ticket(&ticket).await {
                log::emit(
                    Some(&session_id),
                    &upgrade
                        .word("result", "refused")
                        .word("reason", refusal.name),
                );
                return refuse_in_band(version, refusal.status, refusal.text);
            }
        }
        log::emit(Some(&session_id), &upgrade.word("result", "accepted"));
        self.wake();
        if self.core.borrow().is_none() {
            let stored = self.take_loaded();
            let session = Session::new(self.settings.session.clone(), &session_id, stored);
            self.core.replace(Some(session));
        }
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        let generation = self.next_generation.get();
        self.next_generation.set(generation + 1);
        self.sockets
            .borrow_mut()
            .push((generation, pair.server.clone()));
        // The session releases the socket it served before it serves the new one.
        self.drive(Input::Connected(generation, version));
        self.settle().await;
        let headers = Headers::new();
        headers.set("Sec-WebSocket-Protocol", version.subprotocol())?;
        Ok(Response::from_websocket(pair.client)?.with_headers(headers))
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let Some(generation) = self.generation_of(&ws) else {
            return Ok(());
        };
        self.reload_stored().await;
        match &message {
            WebSocketIncomingMessage::String(text) => self.drive(Input::Text(generation, text)),
            WebSocketIncomingMessage::Binary(_) => self.drive(Input::Binary(generation)),
        }
        self.pump().await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        self.socket_gone(&ws);
        // Complete the closing handshake; the socket may already be closed.
        let _ = ws.close(Some(1000), Some("closed"));
        self.pump().await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.socket_gone(&ws);
        self.pump().await;
        Ok(())
    }

    /// A deadline of the core's that came while nothing kept the object awake: the core,
    /// woken from its socket's attachment and its stored state if the object lost it, is
    /// ticked, and runs on as from any other event.
    async fn alarm(&self) -> Result<Response> {
        self.alarm_at.set(None);
        self.wake();
        self.drive(Input::Tick);
        self.pump().await;
        Response::ok("ticked")
    }
}

impl RelaySession {
    /// Records a verified ticket (`exp:jti`) as used; refuses a replay, or one expired by this
    /// object's clock.
    async fn claim_ticket(&self, ticket: &str) -> std::result::Result<(), TicketRefusal> {
        let (exp, jti) = ticket.split_once(':').unwrap_or(("0", ticket));
        let exp: u64 = exp.parse().unwrap_or(0);
        let storage = self.state.storage();
        let unavailable = TicketRefusal {
            status: 503,
            text: "session storage unavailable",
            name: "storage_unavailable",
        };
        let mut used: UsedTickets = storage
            .get(USED_TICKETS_KEY)
            .await
            .map_err(|_| unavailable)?
            .unwrap_or_default();
        used.claim(jti, exp, now() / 1000)
            .map_err(|e| TicketRefusal {
                status: 401,
                text: e.reason(),
                name: e.name(),
            })?;
        storage
            .put(USED_TICKETS_KEY, &used)
            .await
            .map_err(|_| unavailable)
    }

    /// The stored state read at construction, for a new core.
    fn take_loaded(&self) -> Option<Stored> {
        match &*self.loaded.borrow() {
            Load::Read(stored) => Some(stored.as_ref().clone()),
            Load::Pending | Load::Failed => None,
        }
    }

    /// If the core could not read the stored state, tries again; a success is fed to it.
    async fn reload_stored(&self) {
        let needed = self
            .core
            .borrow()
            .as_ref()
            .is_some_and(Session::needs_stored);
        if !needed {
            return;
        }
        if let Some(stored) = read_stored(&self.state.storage()).await {
            self.drive(Input::Loaded(Box::new(stored)));
        }
    }

    /// After hibernation or a restart, rebuilds the core from the sockets' attachments: the
    /// open socket of the highest generation is served again, every other one is closed.
    fn wake(&self) {
        if self.core.borrow().is_some() {
            return;
        }
        let mut open: Vec<(Attachment, WebSocket)> = Vec::new();
        let mut sockets = self.sockets.borrow_mut();
        sockets.clear();
        for ws in self.state.get_websockets() {
            let Ok(Some(attachment)) = ws.deserialize_attachment::<Attachment>() else {
                let _ = ws.close(Some(1011), Some("unknown socket"));
                continue;
            };
            let generation = attachment.generation;
            self.next_generation
                .set(self.next_generation.get().max(generation + 1));
            sockets.push((generation, ws.clone()));
            if !attachment.closed {
                open.push((attachment, ws));
            }
        }
        drop(sockets);
        let Some(serving) = serving_after_wake(open.iter().map(|(a, _)| a)) else {
            return;
        };
        let mut current = None;
        for (mut attachment, ws) in open {
            if attachment.generation == serving {
                current = Some(attachment);
                continue;
            }
            attachment.closed = true;
            attachment.active = None;
            if let Err(e) = ws.serialize_attachment(&attachment) {
                self.persist_failed(&attachment.session, e);
            }
            let _ = ws.close(Some(CLOSE_REPLACED), Some("replaced"));
        }
        let current = current.expect("the serving socket is among the open ones");
        let stored = self.take_loaded();
        let session = Session::restore(self.settings.session.clone(), current, stored, now());
        self.core.replace(Some(session));
    }

    /// The generation of a socket event's socket, waking the core if needed; `None` for a
    /// socket this object never gave one.
    fn generation_of(&self, ws: &WebSocket) -> Option<Generation> {
        self.wake();
        let known = self
            .sockets
            .borrow()
            .iter()
            .find(|(_, s)| s == ws)
            .map(|(g, _)| *g);
        known.or_else(|| {
            ws.deserialize_attachment::<Attachment>()
                .ok()
                .flatten()
                .map(|a| a.generation)
        })
    }

    /// A socket closed or failed: the core lets it go, and so does this object.
    fn socket_gone(&self, ws: &WebSocket) {
        if let Some(generation) = self.generation_of(ws) {
            self.drive(Input::Disconnected(generation));
            self.sockets.borrow_mut().retain(|(g, _)| *g != generation);
        }
    }

    fn socket(&self, generation: Generation) -> Option<WebSocket> {
        self.sockets
            .borrow()
            .iter()
            .find(|(g, _)| *g == generation)
            .map(|(_, ws)| ws.clone())
    }

    /// Feeds an input to the core and executes the effects. Does nothing when there is no core
    /// (no socket served).
    fn drive(&self, input: Input<'_>) {
        let (effects, session_id) = {
            let mut core = self.core.borrow_mut();
            let Some(core) = core.as_mut() else {
                return;
            };
            core.handle(input, now());
            (core.take_effects(), core.session_id().to_owned())
        };
        // The borrow is released: aborting may re-enter this object.
        self.execute(&session_id, effects);
    }

    fn persist_failed(&self, session_id: &str, _error: worker::Error) {
        log::emit(
            Some(session_id),
            &LogLine::new("storage").word("attachment", "failed"),
        );
    }

    /// Executes effects in order: messages and frames are encoded here, as they leave.
    fn execute(&self, session_id: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(to, message) => {
                    if let ServerMessage::End {
                        stream: Some(stream),
                        ..
                    } = &message
                    {
                        self.opus.end_stream(*stream);
                    }
                    if let Some(ws) = self.socket(to) {
                        let _ = ws.send_with_str(message.to_json());
                    }
                }
                Effect::Audio(to, audio) => match (self.socket(to), &self.encoder) {
                    (Some(ws), Some(encoder)) if audio.encoding == AudioEncoding::Opus => {
                        self.opus.send(encoder, session_id, (to, &ws), &audio);
                    }
                    (Some(ws), _) => {
                        let _ = ws.send_with_bytes(audio.encode());
                    }
                    (None, _) => {}
                },
                Effect::Fetch(request) => self.upstreams.start(&request),
                Effect::Abort(fetch) => self.upstreams.abort(fetch),
                Effect::Persist(on, attachment) => {
                    if let Some(ws) = self.socket(on) {
                        if let Err(e) = ws.serialize_attachment(attachment) {
                            self.persist_failed(session_id, e);
                        }
                    }
                }
                Effect::Store(stored, durability) => {
                    let storage = self.state.as_raw().storage();
                    let session_id = session_id.to_owned();
                    worker::wasm_bindgen_futures::spawn_local(async move {
                        if put_stored(storage, &stored, durability).await.is_err() {
                            let line = LogLine::new("storage").word("write", "failed");
                            log::emit(Some(&session_id), &line);
                        }
                    });
                }
                Effect::Close {
                    socket,
                    code,
                    reason,
                } => {
                    self.opus.close_socket(socket);
                    if let Some(ws) = self.socket(socket) {
                        let _ = ws.close(Some(code), Some(reason));
                    }
                }
                Effect::Log(line) => log::emit(Some(session_id), &line),
            }
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.core.borrow().as_ref().and_then(Session::next_deadline)
    }

    /// Serves the core's upstream requests and deadlines. If another handler already does,
    /// this returns at once (a request started here wakes that one). Otherwise this handler
    /// becomes the pump: it relays the requests' events to the core and ticks it at its
    /// deadlines, for as long as a request runs or the next deadline is near (running inside a
    /// handler keeps the object awake meanwhile); then it leaves a far deadline to the alarm.
    async fn pump(&self) {
        if self.pumping.replace(true) {
            // The core may have a nearer deadline now.
            self.upstreams.wake();
            return;
        }
        // This handler's own timer: a runtime timer wakes the task that armed it.
        let mut timer = Timer::default();
        loop {
            let deadline = self.next_deadline();
            let near = deadline.is_some_and(|at| at <= now() + ALARM_BEYOND_MS);
            if !self.upstreams.in_flight() && !near {
                break;
            }
            match self.upstreams.next(&mut timer, deadline).await {
                Next::Event(fetch, event) => self.drive(event.input(fetch)),
                Next::Deadline => self.drive(Input::Tick),
                Next::Look => {}
            }
        }
        self.upstreams.clear();
        self.pumping.set(false);
        self.settle().await;
    }

    /// Leaves the core's next deadline, if any, to the object's alarm, which wakes the object
    /// (from hibernation, or after an eviction) to tick the core then. An alarm already set for
    /// that time is left as it is; one set for a later time fires early, and finds nothing due.
    /// Awaited by the handler, which must not end before the alarm is set.
    async fn settle(&self) {
        let Some(at) = self.next_deadline() else {
            return;
        };
        if self.pumping.get() || self.alarm_at.get() == Some(at) {
            return;
        }
        self.alarm_at.set(Some(at));
        // (An `i64` would be an offset from now: the alarm is at a time.)
        let time = ScheduledTime::new(js_sys::Date::new(&(at as f64).into()));
        if self.state.storage().set_alarm(time).await.is_err() {
            self.alarm_at.set(None);
            let session = self
                .core
                .borrow()
                .as_ref()
                .map(|c| c.session_id().to_owned());
            let line = LogLine::new("storage").word("alarm", "failed");
            log::emit(session.as_deref(), &line);
        }
    }
}
