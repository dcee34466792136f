//! The relay's encoder: a Worker of its own, reached only through the relay's service binding
//! (`ENCODER`), so that its codecs never weigh on the relay's Worker, which every WebSocket
//! session loads (docs/scaling.md).
//!
//! `POST /encode?format=mp3&rate=24000` with Orpheus' PCM (16-bit, 24 kHz, mono) as a streamed
//! body answers with the audio in that format and rate, streamed as it is made: each piece of
//! the request body goes out as soon as it makes a frame. `POST /packets` takes a WebSocket
//! listener's PCM frames and answers with its Opus frames, as [`packets`] says. The pure parts:
//! [`transcode`] (one response's audio), [`packets`], [`resample`], [`codecs`], [`g711`]; this
//! file is the adapter.

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
async fn fetch(mut req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    if req.method() == Method::Post && req.path() == PACKETS_PATH {
        return packets(req);
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
    let pcm = req.stream()?;
    // The request body's pieces, transcoded as they come; the encoder's tail at the end.
    let audio = stream::unfold(Some((pcm, transcoder)), |state| async move {
        let (mut pcm, mut transcoder) = state?;
        loop {
            match pcm.next().await {
                Some(Ok(piece)) => {
                    let out = transcoder.push(&piece);
                    if !out.is_empty() {
                        return Some((Ok(out), Some((pcm, transcoder))));
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None => return Some((Ok(transcoder.finish()), None)),
            }
        }
    });
    let headers = worker::Headers::new();
    headers.set("content-type", format.content_type())?;
    Ok(Response::from_stream(audio)?.with_headers(headers))
}

/// A listener's PCM frames in, its Opus frames out, each as soon as it is made.
fn packets(mut req: Request) -> Result<Response> {
    let Ok(packets) = Packets::new() else {
        return Response::error("no opus encoder", 500);
    };
    let records = req.stream()?;
    let frames = stream::unfold(Some((records, packets)), |state| async move {
        let (mut records, mut packets) = state?;
        loop {
            match records.next().await {
                Some(Ok(piece)) => match packets.push(&piece) {
                    Ok(out) if out.is_empty() => {}
                    Ok(out) => return Some((Ok(out), Some((records, packets)))),
                    Err(e) => {
                        let error = worker::Error::RustError(e.to_string());
                        return Some((Err(error), None));
                    }
                },
                Some(Err(e)) => return Some((Err(e), None)),
                None => return Some((Ok(packets.finish()), None)),
            }
        }
    });
    let headers = worker::Headers::new();
    headers.set("content-type", "application/octet-stream")?;
    Ok(Response::from_stream(frames)?.with_headers(headers))
}
