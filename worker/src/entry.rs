//! The Worker's front door: routes requests and refuses bad upgrades before any Durable Object
//! is touched.

use std::sync::atomic::{AtomicBool, Ordering};

use orpheus_protocol::ticket::{self, TicketClaims, TICKET_PROTOCOL_PREFIX};
use orpheus_protocol::{is_valid_session_id, refusal_close_code, Version, SUBPROTOCOL};
use worker::{
    event, Context, Env, Headers, Method, Request, RequestInit, Response, Result, WebSocketPair,
};

use crate::log::{self, LogLine};
use crate::settings::{Settings, SESSIONS_BINDING};
use crate::{http_speech, openai};

/// Header carrying a verified ticket's `jti:exp` from the Worker to the Durable Object.
pub const TICKET_HEADER: &str = "x-orpheus-ticket";

/// Lifetime of tickets minted by the development endpoint.
const DEV_TICKET_TTL_S: u64 = 120;

static ANNOUNCED: AtomicBool = AtomicBool::new(false);

/// Extracts the session id from `/v1/sessions/{sid}/ws`, if the path has that shape and the id
/// is valid.
pub fn session_id_from_path(path: &str) -> Option<String> {
    let sid = path.strip_prefix("/v1/sessions/")?.strip_suffix("/ws")?;
    is_valid_session_id(sid).then(|| sid.to_owned())
}

/// The parts of an absolute URL as the runtime serialises a request's (already normalised):
/// `origin` (`scheme://authority`), `path` (at least `/`) and `query` (without `?`). Read from
/// the string rather than through `worker::Url`, whose parser and its Unicode tables would be a
/// tenth of the shipped Worker.
#[derive(Debug, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// `scheme://authority`.
    pub origin: &'a str,
    /// The path, `/` when empty.
    pub path: &'a str,
    /// The query, without its `?`; empty when none.
    pub query: &'a str,
}

impl<'a> UrlParts<'a> {
    /// Splits `url`.
    pub fn of(url: &'a str) -> Self {
        let url = url.split_once('#').map_or(url, |(before, _)| before);
        let authority = url.find("://").map_or(0, |at| at + 3);
        let path_at = url[authority..]
            .find(['/', '?'])
            .map_or(url.len(), |at| authority + at);
        let (path, query) = url[path_at..]
            .split_once('?')
            .unwrap_or((&url[path_at..], ""));
        Self {
            origin: &url[..path_at],
            path: if path.is_empty() { "/" } else { path },
            query,
        }
    }

    /// The value of query parameter `name`, as written (no percent-decoding).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }
}

/// The path of `req`'s URL.
pub fn request_path(req: &Request) -> String {
    UrlParts::of(&req.inner().url()).path.to_owned()
}

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

/// Refuses an upgrade the way a browser can see: completes it and closes at once with the
/// refusal's close code (4000 + `status`) and reason. (A browser learns nothing of a refused
/// upgrade's HTTP status, so a player could not tell a refusal from a network failure.)
pub fn refuse_in_band(version: Version, status: u16, reason: &str) -> Result<Response> {
    let pair = WebSocketPair::new()?;
    pair.server.accept()?;
    pair.server
        .close(Some(refusal_close_code(status)), Some(reason))?;
    let headers = Headers::new();
    headers.set("Sec-WebSocket-Protocol", version.subprotocol())?;
    Ok(Response::from_websocket(pair.client)?.with_headers(headers))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths() {
        assert_eq!(
            session_id_from_path("/v1/sessions/abc_1-2/ws").as_deref(),
            Some("abc_1-2")
        );
        assert_eq!(session_id_from_path("/v1/sessions//ws"), None);
        assert_eq!(session_id_from_path("/v1/sessions/a.b/ws"), None);
        assert_eq!(session_id_from_path("/v1/sessions/a/b/ws"), None);
        assert_eq!(session_id_from_path("/v1/sessions/abc"), None);
        let long = format!("/v1/sessions/{}/ws", "a".repeat(65));
        assert_eq!(session_id_from_path(&long), None);
    }

    #[test]
    fn url_parts() {
        let url = UrlParts::of("https://relay.example:8443/_dev/ticket?x=1&session=s-1#top");
        assert_eq!(url.origin, "https://relay.example:8443");
        assert_eq!(url.path, "/_dev/ticket");
        assert_eq!(url.param("session"), Some("s-1"));
        assert_eq!(url.param("x"), Some("1"));
        assert_eq!(url.param("sess"), None);
        let bare = UrlParts::of("http://127.0.0.1:8787?session=a");
        assert_eq!(
            (bare.origin, bare.path, bare.query),
            ("http://127.0.0.1:8787", "/", "session=a")
        );
        assert_eq!(
            UrlParts::of("http://h/v1/sessions/a/ws").path,
            "/v1/sessions/a/ws"
        );
    }
}
