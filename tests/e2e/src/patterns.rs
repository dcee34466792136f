//! The player benchmark's stand-in for the relay: one 10 s signal delivered in an arrival
//! pattern, to the player as the relay protocol (`/orpheus/v2/{pattern}`, version 2 when
//! offered, or `/orpheus/v1/{pattern}`, version 1 only: `ready`, then on `speak` a `start`,
//! audio frames and an `end`) and to other players as raw PCM chunks (`/raw/{pattern}`, after
//! the client sends `go`; then the text `end`). Every connection gets the same bytes at the
//! same times, so players are compared on equal terms.
//!
//! Patterns: `a`, 85 ms chunks at real-time pace; `b`, chunks of 1 to 12,000 bytes (odd counts
//! included), each sent at its stream time plus a uniform 0-60 ms delay, in order; `c`, 85 ms
//! chunks ten times faster than real time (10 s within 1 s).

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use orpheus_protocol::{
    AudioFrame, ClientMessage, EndReason, Flow, Limits, ServerMessage, SUBPROTOCOL, SUBPROTOCOL_V2,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Samples per second of the signal.
pub const RATE: u32 = 24_000;

/// The signal's length.
pub const SIGNAL_S: u32 = 10;

/// Bytes of one 85 ms chunk.
const CHUNK_85MS: usize = 4080;

/// The signal, as PCM s16le bytes.
pub fn signal() -> Vec<u8> {
    let samples = (RATE * SIGNAL_S) as usize;
    let text = "x".repeat(samples / 1600);
    orpheus_test_support::pcm_bytes(&groq_local::render_signal(&text, 1600))
}

/// When each byte range of the signal is sent, from the start, in `pattern`.
pub fn schedule(pattern: char, bytes: usize, seed: u64) -> Vec<(Duration, Range<usize>)> {
    let byte_time = |at: usize| Duration::from_secs_f64(at as f64 / f64::from(RATE * 2));
    let even = |pace: f64| {
        (0..bytes)
            .step_by(CHUNK_85MS)
            .map(|at| {
                let end = (at + CHUNK_85MS).min(bytes);
                (byte_time(at).div_f64(pace), at..end)
            })
            .collect()
    };
    match pattern {
        'a' => even(1.0),
        'c' => even(10.0),
        _ => {
            let mut rng = orpheus_test_support::rng(seed);
            let mut out = Vec::new();
            let (mut at, mut last) = (0, Duration::ZERO);
            while at < bytes {
                let end = (at + rng.usize(1..=12_000)).min(bytes);
                let due = byte_time(at) + Duration::from_millis(rng.u64(0..=60));
                last = last.max(due);
                out.push((last, at..end));
                at = end;
            }
            out
        }
    }
}

/// Starts the server on 127.0.0.1; it serves until the process ends.
pub async fn serve(seed: u64) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let pcm = Arc::new(signal());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let pcm = pcm.clone();
            tokio::spawn(async move {
                let _ = connection(stream, pcm, seed).await;
            });
        }
    });
    Ok(addr)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

// tungstenite's handshake callback returns its own (large) error type.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, pcm: Arc<Vec<u8>>, seed: u64) -> Result<(), String> {
    let (mut path, mut v2) = (String::new(), false);
    let ws =
        tokio_tungstenite::accept_hdr_async(stream, |request: &Request, mut response: Response| {
            path = request.uri().path().to_owned();
            let offered = request
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            // Version 2 when offered and not refused by the path (its reports are read and
            // ignored: the pattern sets the pace), else version 1.
            let v1_only = path.starts_with("/orpheus/v1/");
            let chosen = [SUBPROTOCOL_V2, SUBPROTOCOL]
                .into_iter()
                .filter(|&chosen| !(v1_only && chosen == SUBPROTOCOL_V2))
                .find(|&chosen| offered.split(',').any(|p| p.trim() == chosen));
            if let Some(chosen) = chosen {
                v2 = chosen == SUBPROTOCOL_V2;
                response
                    .headers_mut()
                    .insert("sec-websocket-protocol", HeaderValue::from_static(chosen));
            }
            Ok(response)
        })
        .await
        .map_err(|e| e.to_string())?;
    let pattern = path.chars().last().unwrap_or('a');
    let plan = schedule(pattern, pcm.len(), seed);
    if path.starts_with("/orpheus/") {
        as_relay(ws, &pcm, &plan, v2).await
    } else {
        raw(ws, &pcm, &plan).await
    }
}

async fn send(ws: &mut Ws, message: Message) -> Result<(), String> {
    ws.send(message).await.map_err(|e| e.to_string())
}

/// Raw PCM chunks, from the client's `go`.
async fn raw(mut ws: Ws, pcm: &[u8], plan: &[(Duration, Range<usize>)]) -> Result<(), String> {
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() {
            break;
        }
    }
    let start = Instant::now();
    for (due, range) in plan {
        tokio::time::sleep_until(start + *due).await;
        send(&mut ws, Message::binary(pcm[range.clone()].to_vec())).await?;
    }
    send(&mut ws, Message::text("end")).await
}

/// The relay protocol, version 1 or 2: audio frames of whole samples (an odd byte waits for
/// the next chunk).
async fn as_relay(
    mut ws: Ws,
    pcm: &[u8],
    plan: &[(Duration, Range<usize>)],
    v2: bool,
) -> Result<(), String> {
    let flow = v2.then_some(Flow {
        window_ms: 2_000,
        resume_grace_ms: 20_000,
    });
    let ready = ServerMessage::ready("bench", Limits::default(), flow).to_json();
    send(&mut ws, Message::text(ready)).await?;
    let id = loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                if let Ok(ClientMessage::Speak { id, .. }) = ClientMessage::parse(&text) {
                    break id;
                }
            }
            Some(Ok(_)) => {}
            _ => return Ok(()),
        }
    };
    let start_message = ServerMessage::Start {
        id: id.clone(),
        stream: 1,
        sample_rate: RATE,
        channels: 1,
        encoding: orpheus_protocol::AudioEncoding::Pcm,
        resumed_at: None,
    };
    send(&mut ws, Message::text(start_message.to_json())).await?;
    let start = Instant::now();
    let mut sent = 0usize;
    let mut reason = EndReason::Done;
    'chunks: for (due, range) in plan {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(start + *due) => break,
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => match ClientMessage::parse(&text) {
                        Ok(ClientMessage::Stop { .. }) => {
                            reason = EndReason::Stopped;
                            break 'chunks;
                        }
                        Ok(ClientMessage::Ping) => {
                            send(&mut ws, Message::text(ServerMessage::Pong.to_json())).await?;
                        }
                        _ => {}
                    },
                    Some(Ok(_)) => {}
                    _ => return Ok(()),
                },
            }
        }
        let whole = range.end & !1;
        if whole > sent {
            let frame = AudioFrame {
                flags: 0,
                stream: 1,
                offset: (sent / 2) as u32,
                pcm: &pcm[sent..whole],
            };
            send(&mut ws, Message::binary(frame.encode())).await?;
            sent = whole;
        }
    }
    let end = ServerMessage::End {
        id,
        stream: Some(1),
        reason,
        samples: (sent / 2) as u64,
        error: None,
        heard: None,
        metrics: None,
    };
    send(&mut ws, Message::text(end.to_json())).await?;
    // Hold the socket until the player is done with it.
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_cover_the_signal_in_order() {
        let bytes = signal().len();
        assert_eq!(bytes, (RATE * SIGNAL_S * 2) as usize);
        for pattern in ['a', 'b', 'c'] {
            let plan = schedule(pattern, bytes, 7);
            let mut at = 0;
            let mut last = Duration::ZERO;
            for (due, range) in &plan {
                assert_eq!(range.start, at, "{pattern}: contiguous");
                assert!(*due >= last, "{pattern}: in order");
                at = range.end;
                last = *due;
            }
            assert_eq!(at, bytes);
        }
        let a = schedule('a', bytes, 7);
        assert_eq!(a[1].0, Duration::from_millis(85));
        let c = schedule('c', bytes, 7);
        assert!(c.last().unwrap().0 < Duration::from_secs(1));
        let b = schedule('b', bytes, 7);
        assert!(b.iter().any(|(_, r)| r.len() % 2 == 1), "odd counts");
        let mut previous = Duration::ZERO;
        for (due, range) in &b {
            let stream_time = Duration::from_secs_f64(range.start as f64 / 48_000.0);
            assert!(*due >= stream_time, "never early");
            assert!(
                *due <= previous.max(stream_time + Duration::from_millis(60)),
                "at most 60 ms late, unless an earlier chunk held it back"
            );
            previous = *due;
        }
    }
}
