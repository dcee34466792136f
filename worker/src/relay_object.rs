//! The Durable Object: one per session id, the single owner of that session's socket and of its
//! upstream requests. It is a thin adapter: it feeds the [`Session`] core and executes the
//! effects the core returns.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::stream::{LocalBoxStream, SelectAll, StreamExt};
use orpheus_protocol::ticket::CLOCK_SKEW_S;
use orpheus_protocol::{PING_FRAME, PONG_FRAME, SUBPROTOCOL};
use worker::{
    durable_object, AbortController, DurableObject, Env, Headers, Request, Response, Result, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

use crate::budget::SpeechBudget;
use crate::entry::{session_id_from_path, TICKET_HEADER};
use crate::log::{self, LogLine};
use crate::session::{Attachment, Effect, FetchId, FetchRequest, Input, Millis, Session};
use crate::settings::Settings;
use crate::upstream_fetch::{self, UpstreamEvent};

/// Storage key of the ids of tickets already used on this session.
const USED_TICKETS_KEY: &str = "used_tickets";

/// Storage key of the session's spending budget.
const BUDGET_KEY: &str = "budget";

fn now() -> Millis {
    worker::js_sys::Date::now() as Millis
}

/// The socket the core currently speaks to, and the core itself.
struct Connection {
    socket: WebSocket,
    session: Session,
}

/// The per-session Durable Object.
#[durable_object]
pub struct RelaySession {
    state: State,
    settings: Settings,
    connection: RefCell<Option<Connection>>,
    /// Abort handles of upstream requests in flight, owned here so any handler can abort them.
    aborts: RefCell<HashMap<FetchId, AbortController>>,
    /// The session's budget: the authoritative copy, loaded from storage before any event and
    /// saved after every change, so reconnecting or eviction resets nothing.
    budget: Rc<RefCell<SpeechBudget>>,
}

impl DurableObject for RelaySession {
    fn new(state: State, env: Env) -> Self {
        if let Ok(pair) = WebSocketRequestResponsePair::new(PING_FRAME, PONG_FRAME) {
            state.set_websocket_auto_response(&pair);
        }
        let budget = Rc::new(RefCell::new(SpeechBudget::default()));
        let (slot, storage) = (budget.clone(), state.storage());
        // The runtime holds every event until this has run; the future itself need not be awaited.
        let _loaded = state.block_concurrency_while(async move {
            if let Ok(Some(saved)) = storage.get::<SpeechBudget>(BUDGET_KEY).await {
                *slot.borrow_mut() = saved;
            }
            Ok(())
        });
        // Shows in the log when the object is (re-)created, e.g. on waking from hibernation.
        log::emit(None, &LogLine::new("object").word("event", "constructed"));
        Self {
            state,
            settings: Settings::from_env(&env),
            connection: RefCell::new(None),
            aborts: RefCell::new(HashMap::new()),
            budget,
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let Some(session_id) = session_id_from_path(&req.path()) else {
            return Response::error("invalid session id", 400);
        };
        let upgrade = LogLine::new("upgrade");
        if let Some(ticket) = req.headers().get(TICKET_HEADER)? {
            if !self.claim_ticket(&ticket).await? {
                log::emit(
                    Some(&session_id),
                    &upgrade
                        .word("result", "refused")
                        .word("reason", "ticket_already_used"),
                );
                return Response::error("ticket already used", 401);
            }
        }
        log::emit(Some(&session_id), &upgrade.word("result", "accepted"));
        // A new connection takes over only after the old one released everything it owned.
        let mut next_stream = 1;
        for old in self.state.get_websockets() {
            if let Some((stream, _)) = self.with_session(&old, |s| {
                s.handle(Input::Replaced, now());
                s.next_stream()
            }) {
                next_stream = next_stream.max(stream);
            }
        }
        self.connection.replace(None);

        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        let budget = self.budget.borrow().clone();
        let session = Session::open(
            self.settings.session.clone(),
            &session_id,
            next_stream,
            budget,
        );
        self.connection.replace(Some(Connection {
            socket: pair.server.clone(),
            session,
        }));
        self.with_session(&pair.server, |_| ());
        let headers = Headers::new();
        headers.set("Sec-WebSocket-Protocol", SUBPROTOCOL)?;
        Ok(Response::from_websocket(pair.client)?.with_headers(headers))
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let at = now();
        let fetches = match &message {
            WebSocketIncomingMessage::String(text) => {
                self.drive(&ws, |s| s.handle(Input::Text(text), at))
            }
            WebSocketIncomingMessage::Binary(bytes) => {
                self.drive(&ws, |s| s.handle(Input::Binary(bytes.len()), at))
            }
        };
        self.pump(&ws, fetches).await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        self.drive(&ws, |s| s.handle(Input::Disconnected, now()));
        // Complete the closing handshake; the socket may already be closed.
        let _ = ws.close(Some(1000), Some("closed"));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.drive(&ws, |s| s.handle(Input::Disconnected, now()));
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        Response::ok("no alarms are used")
    }
}

impl RelaySession {
    /// Records a verified ticket (`exp:jti`) as used; false if it was used before. Entries are
    /// kept until the ticket expires, after which the Worker refuses it anyway.
    async fn claim_ticket(&self, ticket: &str) -> Result<bool> {
        let (exp, jti) = ticket.split_once(':').unwrap_or(("0", ticket));
        let exp: u64 = exp.parse().unwrap_or(0);
        let storage = self.state.storage();
        let mut used: HashMap<String, u64> =
            storage.get(USED_TICKETS_KEY).await?.unwrap_or_default();
        let now_s = now() / 1000;
        used.retain(|_, expires| *expires + CLOCK_SKEW_S >= now_s);
        if used.contains_key(jti) {
            return Ok(false);
        }
        used.insert(jti.to_owned(), exp);
        storage.put(USED_TICKETS_KEY, &used).await?;
        Ok(true)
    }

    /// Runs `f` on the session of `ws`, executes the effects it produced, and returns what `f`
    /// returned with the upstream requests to start. The in-memory session is used when `ws` is
    /// the current socket; otherwise (after hibernation or a restart) it is restored from the
    /// socket's attachment. Returns `None` for a socket that was already closed or replaced.
    fn with_session<T>(
        &self,
        ws: &WebSocket,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Option<(T, Vec<FetchRequest>)> {
        let mut slot = self.connection.borrow_mut();
        if slot.as_ref().is_none_or(|c| &c.socket != ws) {
            let attachment = ws.deserialize_attachment::<Attachment>().ok().flatten()?;
            if attachment.closed {
                return None;
            }
            let budget = self.budget.borrow().clone();
            let session = Session::restore(self.settings.session.clone(), attachment, budget);
            *slot = Some(Connection {
                socket: ws.clone(),
                session,
            });
        }
        let connection = slot.as_mut().expect("set above");
        let out = f(&mut connection.session);
        let effects = connection.session.take_effects();
        let session_id = connection.session.session_id().to_owned();
        // Never hold the borrow while effects run: aborting may re-enter this object.
        drop(slot);
        Some((out, self.execute(ws, &session_id, effects)))
    }

    /// Feeds an input and returns the upstream requests it started.
    fn drive(&self, ws: &WebSocket, f: impl FnOnce(&mut Session)) -> Vec<FetchRequest> {
        self.with_session(ws, f)
            .map(|(_, started)| started)
            .unwrap_or_default()
    }

    /// Executes effects in order; returns the upstream requests to start.
    fn execute(&self, ws: &WebSocket, session_id: &str, effects: Vec<Effect>) -> Vec<FetchRequest> {
        let mut started = Vec::new();
        for effect in effects {
            match effect {
                Effect::SendText(text) => {
                    let _ = ws.send_with_str(text);
                }
                Effect::SendBinary(bytes) => {
                    let _ = ws.send_with_bytes(bytes);
                }
                Effect::Fetch(request) => started.push(request),
                Effect::Abort(fetch) => {
                    if let Some(controller) = self.aborts.borrow_mut().remove(&fetch) {
                        controller.abort();
                    }
                }
                Effect::Persist(attachment) => {
                    let _ = ws.serialize_attachment(attachment);
                }
                Effect::SaveBudget(budget) => {
                    *self.budget.borrow_mut() = budget.clone();
                    let storage = self.state.storage();
                    worker::wasm_bindgen_futures::spawn_local(async move {
                        let _ = storage.put(BUDGET_KEY, budget).await;
                    });
                }
                Effect::Close { code, reason } => {
                    let _ = ws.close(Some(code), Some(reason));
                }
                Effect::Log(line) => log::emit(Some(session_id), &line),
            }
        }
        started
    }

    fn start(&self, request: FetchRequest) -> LocalBoxStream<'static, (FetchId, UpstreamEvent)> {
        let controller = AbortController::default();
        let signal = controller.signal();
        self.aborts.borrow_mut().insert(request.fetch, controller);
        let key = self.settings.api_key.as_deref().unwrap_or_default();
        upstream_fetch::events(
            request.fetch,
            &self.settings.base_url,
            key,
            &request.body,
            signal,
        )
    }

    fn active_stream(&self) -> Option<u32> {
        self.connection
            .borrow()
            .as_ref()
            .and_then(|c| c.session.active_stream())
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.connection
            .borrow()
            .as_ref()
            .and_then(|c| c.session.next_deadline())
    }

    /// Relays one message's upstream requests until the message is no longer active. Runs
    /// inside the handler that started the message, which keeps the object awake meanwhile.
    /// Dropping the remaining requests when it returns cancels their bodies.
    async fn pump(&self, ws: &WebSocket, first: Vec<FetchRequest>) {
        let Some(stream) = first.first().map(|r| r.stream) else {
            return;
        };
        let mut inflight = SelectAll::new();
        for request in first {
            inflight.push(self.start(request));
        }
        while self.active_stream() == Some(stream) {
            let wait = self.next_deadline().map_or(Duration::from_secs(1), |d| {
                Duration::from_millis(d.saturating_sub(now()) + 1)
            });
            let input = if inflight.is_empty() {
                worker::Delay::from(wait).await;
                None
            } else {
                match select(inflight.next(), worker::Delay::from(wait)).await {
                    Either::Left((event, _)) => event,
                    Either::Right(_) => None,
                }
            };
            let started = match input {
                Some((fetch, event)) => {
                    if event.is_final() {
                        self.aborts.borrow_mut().remove(&fetch);
                    }
                    let at = now();
                    self.drive(ws, |s| match &event {
                        UpstreamEvent::Head(status) => {
                            s.handle(Input::UpstreamHead(fetch, status.clone()), at)
                        }
                        UpstreamEvent::Body(bytes) => {
                            s.handle(Input::UpstreamBody(fetch, bytes), at)
                        }
                        UpstreamEvent::End => s.handle(Input::UpstreamEnd(fetch), at),
                        UpstreamEvent::Failed => s.handle(Input::UpstreamFailed(fetch), at),
                    })
                }
                None => self.drive(ws, |s| s.handle(Input::Tick, now())),
            };
            for request in started {
                inflight.push(self.start(request));
            }
        }
    }
}
