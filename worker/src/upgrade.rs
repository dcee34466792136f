//! What the Worker's router and a session's Durable Object both know of a session upgrade: the
//! request's path and the session id in it, the header that carries a verified ticket from one
//! to the other, and the refusal a browser can read.

use orpheus_protocol::{is_valid_session_id, refusal_close_code, Version};
use worker::{Headers, Request, Response, Result, WebSocketPair};

/// Header carrying a verified ticket's `jti:exp` from the Worker to the Durable Object.
pub const TICKET_HEADER: &str = "x-orpheus-ticket";

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
