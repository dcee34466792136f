//! The Worker's front door: routes requests and refuses bad upgrades before any Durable Object
//! is touched.

use std::sync::atomic::{AtomicBool, Ordering};

use orpheus_protocol::ticket::{self, TicketClaims, TICKET_PROTOCOL_PREFIX};
use orpheus_protocol::{is_valid_session_id, Version, SUBPROTOCOL};
use worker::{event, Context, Env, Headers, Method, Request, RequestInit, Response, Result};

use crate::log::{self, LogLine};
use crate::settings::{Settings, SESSIONS_BINDING};
use crate::upgrade::{refuse_in_band, request_path, session_id_from_path, UrlParts, TICKET_HEADER};
use crate::{http_speech, openai};

/// Lifetime of tickets minted by the development endpoint.
const DEV_TICKET_TTL_S: u64 = 120;

static ANNOUNCED: AtomicBool = AtomicBool::new(false);

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn now_s() -> u64 {
    (worker::js_sys::Date::now() / 1000.0) as u64
}

/// Runs once per isolate: a panic then reports its message and location instead of a bare
/// "unreachable" trap.
#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let settings = Settings::from_env(&env);
    if !ANNOUNCED.swap(true, Ordering::Relaxed) {
        log::emit(
            None,
            &LogLine::new("orpheus-relay").word("admission", settings.policy.describe()),
        );
    }
    let path = request_path(&req);
    if openai::PATHS.contains(&path.as_str()) {
        return http_speech::serve(req, &env, &settings).await;
    }
    if req.method() != Method::Get {
        return Response::error("method not allowed", 405);
    }
    match path.as_str() {
        "/healthz" => Response::ok("ok"),
        "/_dev/ticket" if settings.policy.dev_mode && settings.policy.secret.is_some() => {
            dev_ticket(&req, &settings)
        }
        p if p.starts_with("/v1/sessions/") => session_socket(req, &env, &settings, p).await,
        _ => Response::error("not found", 404),
    }
}

async fn session_socket(
    req: Request,
    env: &Env,
    settings: &Settings,
    path: &str,
) -> Result<Response> {
    let Some(sid) = session_id_from_path(path) else {
        return Response::error(
            "invalid session id: use /v1/sessions/{1-64 of A-Z a-z 0-9 _ -}/ws",
            400,
        );
    };
    let upgrade = header(&req, "Upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Response::error("expected a WebSocket upgrade", 426);
    }
    let offered = header(&req, "Sec-WebSocket-Protocol").unwrap_or_default();
    let Some(version) = Version::negotiate(&offered) else {
        return Response::error(
            "the client must offer the subprotocol orpheus.v2 or orpheus.v1",
            400,
        );
    };
    let origin = header(&req, "Origin");
    let claims = match settings
        .policy
        .admit(&sid, origin.as_deref(), &offered, now_s())
    {
        Ok(claims) => claims,
        Err(refusal) => {
            let line = LogLine::new("refused")
                .num("status", refusal.status())
                .word("reason", refusal.reason());
            log::emit(None, &line);
            return refuse_in_band(version, refusal.status(), refusal.reason());
        }
    };
    let stub = env
        .durable_object(SESSIONS_BINDING)?
        .id_from_name(&sid)?
        .get_stub()?;
    stub.fetch_with_request(forwarded(&req, claims.as_ref())?)
        .await
}

/// The upgrade request as the Durable Object sees it: the client's headers, minus any ticket
/// header the client tried to supply, plus the verified ticket's id and expiry.
fn forwarded(req: &Request, claims: Option<&TicketClaims>) -> Result<Request> {
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if !name.eq_ignore_ascii_case(TICKET_HEADER) {
            headers.append(&name, &value)?;
        }
    }
    if let Some(claims) = claims {
        headers.set(TICKET_HEADER, &format!("{}:{}", claims.exp, claims.jti))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    Request::new_with_init(&req.inner().url(), &init)
}

/// Development only: mints a ticket for `?session=SID`, bound to the caller's origin.
fn dev_ticket(req: &Request, settings: &Settings) -> Result<Response> {
    let url = req.inner().url();
    let url = UrlParts::of(&url);
    // A valid session id needs no percent-decoding.
    let sid = url.param("session").map(str::to_owned);
    let Some(sid) = sid.filter(|s| is_valid_session_id(s)) else {
        return Response::error("use /_dev/ticket?session={session id}", 400);
    };
    let origin = header(req, "Origin").unwrap_or_else(|| url.origin.to_owned());
    let random = || (worker::js_sys::Math::random() * 2f64.powi(52)) as u64;
    let claims = TicketClaims {
        v: 1,
        sid,
        origin,
        exp: now_s() + DEV_TICKET_TTL_S,
        jti: format!("{:013x}{:013x}", random(), random()),
    };
    let secret = settings
        .policy
        .secret
        .as_deref()
        .expect("checked by the route");
    let ticket = ticket::mint(secret, &claims);
    Response::from_json(&serde_json::json!({
        "ticket": ticket,
        "protocols": [SUBPROTOCOL, format!("{TICKET_PROTOCOL_PREFIX}{ticket}")],
        "expires_at": claims.exp,
    }))
}
