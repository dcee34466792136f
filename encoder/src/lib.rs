//! The relay's encoder: a Worker of its own, reached only through the relay's service binding
//! (`ENCODER`), so that its codecs never weigh on the relay's Worker, which every WebSocket
//! session loads (docs/scaling.md).
//!
//! `POST /encode?format=mp3&rate=24000` with Orpheus' PCM (16-bit, 24 kHz, mono) as a streamed
//! body answers with the audio in that format and rate, streamed as it is made: each piece of
//! the request body goes out as soon as it makes a frame. `POST /packets` takes a WebSocket
//! listener's PCM frames and answers with its Opus frames, as [`packets`] says. The pure parts:
//! [`transcode`] (one response's audio), [`packets`], [`resample`], [`codecs`], [`aac`],
//! [`g711`]; this file is the adapter.

pub mod aac;
pub mod codecs;
pub mod g711;
pub mod packets;
pub mod resample;
pub mod transcode;

use futures_util::stream::{self, StreamExt};
use orpheus_protocol::encoder_link::PACKETS_PATH;
use orpheus_protocol::ResponseFormat;
use worker::{event, Context, Env, Method, Request, Response, Result};

use packets::Packets;
use transcode::Transcoder;

/// The format and rate a request asks for, from its query.
fn asked(req: &Request) -> Option<(ResponseFormat, u32)> {
    let url = req.url().ok()?;
    let mut format = None;
    let mut rate = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "format" => format = ResponseFormat::from_name(&value),
            "rate" => rate = value.parse().ok(),
            _ => {}
        }
    }
    Some((format?, rate?))
}

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    if req.method() == Method::Post && req.path() == PACKETS_PATH {
        let Ok(packets) = Packets::new() else {
            return Response::error("no opus encoder", 500);
        };
        return answer(req, packets, "application/octet-stream");
    }
    if req.method() != Method::Post || req.path() != "/encode" {
        return Response::error("not found", 404);
    }
    let Some((format, rate)) = asked(&req) else {
        return Response::error("format and rate are required", 400);
    };
    let Ok(transcoder) = Transcoder::new(format, rate) else {
        return Response::error("that format at that rate is not written here", 400);
    };
    answer(req, transcoder, format.content_type())
}

/// What codes a request's body as it comes: one response's audio ([`Transcoder`]), or a
/// listener's Opus frames ([`Packets`]).
trait Coder {
    /// What a piece of the body makes, or why the body is not one it codes.
    fn code(&mut self, piece: &[u8]) -> std::result::Result<Vec<u8>, String>;
    /// The body ended: the rest.
    fn end(self) -> Vec<u8>;
}

impl Coder for Transcoder {
    fn code(&mut self, piece: &[u8]) -> std::result::Result<Vec<u8>, String> {
        Ok(self.push(piece))
    }

    fn end(self) -> Vec<u8> {
        self.finish()
    }
}

impl Coder for Packets {
    fn code(&mut self, piece: &[u8]) -> std::result::Result<Vec<u8>, String> {
        self.push(piece).map_err(|e| e.to_string())
    }

    fn end(self) -> Vec<u8> {
        self.finish()
    }
}

/// The answer to `req`: its body's pieces coded as they come, the coder's tail at the end.
fn answer(mut req: Request, coder: impl Coder + 'static, content_type: &str) -> Result<Response> {
    let body = req.stream()?;
    let coded = stream::unfold(Some((body, coder)), |state| async move {
        let (mut body, mut coder) = state?;
        loop {
            match body.next().await {
                Some(Ok(piece)) => match coder.code(&piece) {
                    Ok(out) if out.is_empty() => {}
                    Ok(out) => return Some((Ok(out), Some((body, coder)))),
                    Err(e) => return Some((Err(worker::Error::RustError(e)), None)),
                },
                Some(Err(e)) => return Some((Err(e), None)),
                None => return Some((Ok(coder.end()), None)),
            }
        }
    });
    let headers = worker::Headers::new();
    headers.set("content-type", content_type)?;
    Ok(Response::from_stream(coded)?.with_headers(headers))
}
