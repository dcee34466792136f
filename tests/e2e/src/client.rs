//! The protocol client: a WebSocket that checks the protocol's promises on every frame it
//! receives, and a plain HTTP request for refused upgrades.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use orpheus_protocol::{AudioFrame, EndReason, ServerMessage, SUBPROTOCOL, SUBPROTOCOL_V2};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::fixture::Fixture;
use crate::tickets::{protocols_with, ticket, LEDGER};
use crate::{ensure, TestResult, TEST_ORIGIN, TEST_SECRET};

/// A client WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket offering `protocols` (the `Sec-WebSocket-Protocol` value) from `origin`,
/// and checks the relay selected `orpheus.v1`. The caller reads `ready`.
pub async fn open_socket(url: &str, protocols: &str, origin: Option<&str>) -> TestResult<Socket> {
    open_socket_as(url, protocols, origin, SUBPROTOCOL).await
}

/// Like [`open_socket`], checking the relay selected `selected`.
pub async fn open_socket_as(
    url: &str,
    protocols: &str,
    origin: Option<&str>,
    selected: &str,
) -> TestResult<Socket> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let header = |v: &str| HeaderValue::from_str(v).map_err(|e| e.to_string());
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", header(protocols)?);
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", header(origin)?);
    }
    let (ws, response) = tokio::time::timeout(
        Duration::from_secs(10),
        // Without Nagle's algorithm, as browsers open their sockets: with it, a `stop` sent
        // just after a report waits for that report's acknowledgement, tens of milliseconds.
        tokio_tungstenite::connect_async_with_config(request, None, true),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| format!("connect: {e}"))?;
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok());
    ensure!(protocol == Some(selected), "server selected {protocol:?}");
    Ok(ws)
}

/// A plain HTTP GET (or upgrade attempt) returning the status and body.
pub async fn http_get(base: &str, path: &str) -> TestResult<(u16, String)> {
    http_request(base, path, &[]).await
}

/// An HTTP GET with extra headers, returning the status and body.
pub async fn http_request(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> TestResult<(u16, String)> {
    let answer = http_exchange(base, "GET", path, headers, &[]).await?;
    Ok((
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    ))
}

/// An HTTP answer: status, headers (names in lower case) and the body, de-chunked.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (closed after it), read to its end (at most 60 s).
pub async fn http_exchange(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TestResult<HttpAnswer> {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response)).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no head in {:?}", String::from_utf8_lossy(&response)))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no status in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let raw = &response[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body; a body that breaks off before its last chunk is an error.
fn dechunk(mut raw: &[u8]) -> TestResult<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunked body broke off")?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        ensure!(raw.len() >= size + 2, "a chunked body broke off mid-chunk");
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Opens a session socket offering `protocols` from `origin`: `None` when the relay admits it
/// (`ready` arrives), else the close code it refused it with at once.
pub async fn refusal(url: &str, protocols: &str, origin: Option<&str>) -> TestResult<Option<u16>> {
    let mut ws = open_socket(url, protocols, origin).await?;
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .map_err(|_| "neither ready nor a close within 5 s".to_owned())?;
    match first {
        Some(Ok(Message::Text(_))) => Ok(None),
        Some(Ok(Message::Close(Some(frame)))) => Ok(Some(frame.code.into())),
        other => Err(format!("neither ready nor a refusal: {other:?}")),
    }
}

/// What the relay sent for one message.
#[derive(Debug, Default)]
pub struct Received {
    /// The `start` (sample rate and stream), if any.
    pub start: Option<ServerMessage>,
    /// All PCM bytes, in offset order (contiguity is checked on arrival).
    pub pcm: Vec<u8>,
    /// Audio frames received.
    pub frames: usize,
    /// Frames flagged last-in-segment.
    pub segment_ends: usize,
    /// The `end`.
    pub end: Option<ServerMessage>,
    /// Protocol v2: where its words are said, as the `words` frames told them.
    pub words: Vec<orpheus_protocol::WordTiming>,
}

impl Received {
    /// The end's reason.
    pub fn reason(&self) -> Option<EndReason> {
        match &self.end {
            Some(ServerMessage::End { reason, .. }) => Some(*reason),
            _ => None,
        }
    }

    /// The end's error code name.
    pub fn error_code(&self) -> Option<String> {
        match &self.end {
            Some(ServerMessage::End { error: Some(e), .. }) => Some(e.code.as_str().to_owned()),
            _ => None,
        }
    }

    /// The stream number from `end` (or `start`).
    pub fn stream(&self) -> Option<u32> {
        match (&self.end, &self.start) {
            (
                Some(ServerMessage::End {
                    stream: Some(s), ..
                }),
                _,
            ) => Some(*s),
            (_, Some(ServerMessage::Start { stream, .. })) => Some(*stream),
            _ => None,
        }
    }
}

/// A frame from the relay.
#[derive(Debug)]
pub enum Frame {
    /// A JSON control message.
    Text(ServerMessage),
    /// An audio frame: stream, offset, flags, PCM.
    Audio {
        stream: u32,
        offset: u32,
        last: bool,
        pcm: Vec<u8>,
    },
    /// The socket closed, with this close code.
    Closed(Option<u16>),
}

/// A protocol client that checks, on every frame, that no audio arrives for a stream that has
/// ended or was never started, and that offsets are contiguous.
pub struct Client {
    ws: Socket,
    /// The `ready` message.
    pub ready: ServerMessage,
    current: Option<(u32, u32)>,
    ended: std::collections::HashSet<u32>,
}

impl Client {
    /// Connects to a session of the main relay with a fresh ticket, from the test origin.
    pub async fn connect(fixture: &Fixture, sid: &str) -> TestResult<Self> {
        let ticket = ticket(TEST_SECRET, sid, TEST_ORIGIN, 60);
        Self::connect_with(
            &fixture.session_url(sid),
            &protocols_with(&ticket),
            Some(TEST_ORIGIN),
        )
        .await
    }

    /// Connects to a session of the main relay with a fresh ticket, offering protocol v2.
    pub async fn connect_v2(fixture: &Fixture, sid: &str) -> TestResult<Self> {
        Self::connect_at(&fixture.session_url(sid), sid, true).await
    }

    /// Connects to session `sid` at `url` (the main relay, or a proxy in front of it) with a
    /// fresh ticket, offering protocol v2 or only v1.
    pub async fn connect_at(url: &str, sid: &str, v2: bool) -> TestResult<Self> {
        let ticket = ticket(TEST_SECRET, sid, TEST_ORIGIN, 60);
        if !v2 {
            return Self::connect_with(url, &protocols_with(&ticket), Some(TEST_ORIGIN)).await;
        }
        let protocols = format!("{SUBPROTOCOL_V2}, {}", protocols_with(&ticket));
        let ws = open_socket_as(url, &protocols, Some(TEST_ORIGIN), SUBPROTOCOL_V2).await?;
        Self::read_ready(ws).await
    }

    /// Connects offering `protocols` (the `Sec-WebSocket-Protocol` value) from `origin`, and
    /// reads `ready`.
    pub async fn connect_with(
        url: &str,
        protocols: &str,
        origin: Option<&str>,
    ) -> TestResult<Self> {
        let ws = open_socket(url, protocols, origin).await?;
        Self::read_ready(ws).await
    }

    async fn read_ready(ws: Socket) -> TestResult<Self> {
        let mut client = Self {
            ws,
            ready: ServerMessage::Pong,
            current: None,
            ended: Default::default(),
        };
        match client.next(Duration::from_secs(10)).await? {
            Frame::Text(ready @ ServerMessage::Ready { .. }) => client.ready = ready,
            other => return Err(format!("expected ready, got {other:?}")),
        }
        Ok(client)
    }

    /// Sends a JSON text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> TestResult {
        self.ws
            .send(Message::text(text.into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> TestResult {
        self.ws
            .send(Message::binary(bytes))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends `speak`.
    pub async fn speak(&mut self, id: &str, text: &str, voice: Option<&str>) -> TestResult {
        LEDGER.lock().expect("ledger").texts.push(text.to_owned());
        let mut message = serde_json::json!({"type": "speak", "id": id, "text": text});
        if let Some(voice) = voice {
            message["voice"] = voice.into();
        }
        self.send_text(message.to_string()).await
    }

    /// Protocol v2: opens message `id` with the beginning of `whole`, its text to come in
    /// `append`s (the whole text goes into the leak ledger).
    pub async fn open(&mut self, id: &str, text: &str, whole: &str) -> TestResult {
        LEDGER.lock().expect("ledger").texts.push(whole.to_owned());
        let frame = serde_json::json!({"type": "speak", "id": id, "text": text, "more": true});
        self.send_text(frame.to_string()).await
    }

    /// Protocol v2: appends `text` to message `id`.
    pub async fn append(&mut self, id: &str, text: &str) -> TestResult {
        let frame = serde_json::json!({"type": "append", "id": id, "text": text});
        self.send_text(frame.to_string()).await
    }

    /// Protocol v2: the text of message `id` is complete.
    pub async fn finish(&mut self, id: &str) -> TestResult {
        self.send_text(serde_json::json!({"type": "finish", "id": id}).to_string())
            .await
    }

    /// Sends `stop` for `id`.
    pub async fn stop(&mut self, id: &str) -> TestResult {
        self.send_text(serde_json::json!({"type": "stop", "id": id}).to_string())
            .await
    }

    /// Protocol v2: reports the play cursor (`on_receipt`: answering a frame just received).
    pub async fn played(
        &mut self,
        stream: u32,
        played: u64,
        received: u64,
        on_receipt: bool,
    ) -> TestResult {
        let frame = serde_json::json!({
            "type": "played", "stream": stream, "played": played, "received": received,
            "on_receipt": on_receipt,
        });
        self.send_text(frame.to_string()).await
    }

    /// Protocol v2: asks to resume `id` at `played` samples of `stream`, whose audio then
    /// continues here from that offset; without a stream (its `start` never came), from the
    /// start, after a `start`.
    pub async fn resume(&mut self, id: &str, stream: Option<u32>, played: u64) -> TestResult {
        let mut frame = serde_json::json!({"type": "resume", "id": id, "played": played});
        if let Some(stream) = stream {
            self.current = Some((stream, played as u32));
            frame["stream"] = stream.into();
        }
        self.send_text(frame.to_string()).await
    }

    /// Cuts the link without a closing handshake (the TCP connection is shut down), as a
    /// network drop would.
    pub async fn cut(&mut self) {
        if let MaybeTlsStream::Plain(tcp) = self.ws.get_mut() {
            let _ = tcp.shutdown().await;
        }
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The next frame, checked against the protocol's promises.
    pub async fn next(&mut self, within: Duration) -> TestResult<Frame> {
        loop {
            let message = match tokio::time::timeout(within, self.ws.next()).await {
                Err(_) => return Err(format!("no frame within {within:?}")),
                Ok(None) => return Ok(Frame::Closed(None)),
                Ok(Some(Err(e))) => return Err(format!("socket error: {e}")),
                Ok(Some(Ok(message))) => message,
            };
            return Ok(match message {
                Message::Text(text) => {
                    LEDGER.lock().expect("ledger").frames.push(text.to_string());
                    let parsed = ServerMessage::parse(&text)
                        .map_err(|e| format!("bad server JSON {text}: {e}"))?;
                    match &parsed {
                        ServerMessage::Start {
                            stream, resumed_at, ..
                        } => {
                            // A restart after a resume replaces the stream the resume named.
                            let restart = resumed_at.is_some()
                                && self.current.is_some_and(|(s, _)| s < *stream);
                            ensure!(
                                self.current.is_none() || restart,
                                "start of {stream} while {:?} active",
                                self.current
                            );
                            ensure!(
                                !self.ended.contains(stream),
                                "start of ended stream {stream}"
                            );
                            self.current = Some((*stream, 0));
                        }
                        ServerMessage::End {
                            stream: Some(stream),
                            ..
                        } => {
                            ensure!(self.ended.insert(*stream), "second end for stream {stream}");
                            if self.current.is_some_and(|(s, _)| s == *stream) {
                                self.current = None;
                            }
                        }
                        _ => {}
                    }
                    Frame::Text(parsed)
                }
                Message::Binary(bytes) => {
                    let frame = AudioFrame::decode(&bytes).map_err(|e| e.to_string())?;
                    ensure!(
                        !self.ended.contains(&frame.stream),
                        "audio of stream {} after its end",
                        frame.stream
                    );
                    let Some((stream, next_offset)) = self.current.as_mut() else {
                        return Err(format!("audio of stream {} before its start", frame.stream));
                    };
                    ensure!(
                        frame.stream == *stream,
                        "audio of stream {} while {stream} is active",
                        frame.stream
                    );
                    ensure!(
                        frame.offset == *next_offset,
                        "offset {} but expected {next_offset}",
                        frame.offset
                    );
                    *next_offset += frame.samples();
                    Frame::Audio {
                        stream: frame.stream,
                        offset: frame.offset,
                        last: frame.is_last_in_segment(),
                        pcm: frame.pcm.to_vec(),
                    }
                }
                Message::Close(close) => Frame::Closed(close.map(|c| c.code.into())),
                _ => continue,
            });
        }
    }

    /// Collects frames until the `end` for `id`, failing on anything unexpected.
    pub async fn until_end(&mut self, id: &str, within: Duration) -> TestResult<Received> {
        let deadline = Instant::now() + within;
        let mut received = Received::default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left.max(Duration::from_millis(1))).await? {
                Frame::Text(ServerMessage::Start { id: sid, .. }) if sid != id => {
                    return Err(format!("start for {sid} while waiting for {id}"));
                }
                Frame::Text(start @ ServerMessage::Start { .. }) => received.start = Some(start),
                Frame::Text(ServerMessage::End { id: eid, .. }) if eid != id => {
                    return Err(format!("end for {eid} while waiting for {id}"));
                }
                Frame::Text(end @ ServerMessage::End { samples, .. }) => {
                    ensure!(
                        samples as usize == received.pcm.len() / 2,
                        "end says {samples} samples, got {}",
                        received.pcm.len() / 2
                    );
                    received.end = Some(end);
                    return Ok(received);
                }
                Frame::Text(ServerMessage::Words { words, .. }) => received.words.extend(words),
                Frame::Text(other) => {
                    return Err(format!("unexpected {other:?} while waiting for {id}"))
                }
                Frame::Audio { pcm, last, .. } => {
                    received.frames += 1;
                    received.segment_ends += usize::from(last);
                    received.pcm.extend_from_slice(&pcm);
                }
                Frame::Closed(code) => {
                    return Err(format!("closed ({code:?}) while waiting for {id}"))
                }
            }
        }
    }

    /// Speaks and waits for the end.
    pub async fn say(&mut self, id: &str, text: &str, voice: Option<&str>) -> TestResult<Received> {
        self.speak(id, text, voice).await?;
        self.until_end(id, Duration::from_secs(60)).await
    }
}
