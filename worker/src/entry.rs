//! The Worker's front door: routes requests and refuses bad upgrades before any Durable Object
//! is touched.

use orpheus_protocol::{is_valid_session_id, SUBPROTOCOL};
use worker::{event, Context, Env, Method, Request, Response, Result};

/// The Durable Object namespace binding (wrangler.toml).
const SESSIONS_BINDING: &str = "SESSIONS";

/// Extracts the session id from `/v1/sessions/{sid}/ws`, if the path has that shape and the id
/// is valid.
pub fn session_id_from_path(path: &str) -> Option<String> {
    let sid = path.strip_prefix("/v1/sessions/")?.strip_suffix("/ws")?;
    is_valid_session_id(sid).then(|| sid.to_owned())
}

fn offers_subprotocol(req: &Request) -> bool {
    let offered = req
        .headers()
        .get("Sec-WebSocket-Protocol")
        .ok()
        .flatten()
        .unwrap_or_default();
    offered.split(',').any(|p| p.trim() == SUBPROTOCOL)
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let path = req.path();
    if req.method() != Method::Get {
        return Response::error("method not allowed", 405);
    }
    match path.as_str() {
        "/" => Response::from_html(crate::INFO_PAGE),
        "/healthz" => Response::ok("ok"),
        p if p.starts_with("/v1/sessions/") => {
            let Some(sid) = session_id_from_path(p) else {
                return Response::error(
                    "invalid session id: use /v1/sessions/{1-64 of A-Z a-z 0-9 _ -}/ws",
                    400,
                );
            };
            let upgrade = req
                .headers()
                .get("Upgrade")
                .ok()
                .flatten()
                .unwrap_or_default();
            if !upgrade.eq_ignore_ascii_case("websocket") {
                return Response::error("expected a WebSocket upgrade", 426);
            }
            if !offers_subprotocol(&req) {
                return Response::error("the client must offer the subprotocol orpheus.v1", 400);
            }
            let stub = env
                .durable_object(SESSIONS_BINDING)?
                .id_from_name(&sid)?
                .get_stub()?;
            stub.fetch_with_request(req).await
        }
        _ => Response::error("not found", 404),
    }
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
}
