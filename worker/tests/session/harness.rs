//! Drives a session as the Durable Object would, and checks on every effect what its clients
//! would see: one start per stream, audio only for the started stream with contiguous offsets,
//! one end per stream, nothing to a closed socket, aborts only of live requests.

use std::collections::{BTreeMap, HashMap};

use orpheus_protocol::{
    AudioEncoding, AudioFrame, ClientMessage, EndReason, ErrorCode, ServerMessage, Version,
    WordTiming,
};
use orpheus_test_support::{pcm_bytes, wav, Quirks};
use orpheus_worker::session::{
    Attachment, Config, Durability, Effect, FetchId, Generation, Input, Session, Stored,
};
use orpheus_worker::upstream::UpstreamStatus;

/// A deterministic WAV body for a fetch: header then `samples` samples derived from `seed`.
/// Returns the body and its PCM.
pub fn wav_body(seed: u64, samples: usize) -> (Vec<u8>, Vec<u8>) {
    let pcm: Vec<i16> = (0..samples)
        .map(|i| (seed as i64 * 31 + i as i64 * 7) as i16)
        .collect();
    let pcm = pcm_bytes(&pcm);
    (wav(24_000, &pcm, Quirks::default()), pcm)
}

/// A 200 response head.
pub fn ok() -> UpstreamStatus {
    status(200, None)
}

/// A response head with this status and `retry-after`.
pub fn status(status: u16, retry_after_s: Option<u32>) -> UpstreamStatus {
    UpstreamStatus {
        status,
        retry_after_s,
        ..Default::default()
    }
}

/// A text of `sentences` sentences, several segments long.
pub fn long_text(sentences: usize) -> String {
    "The quick brown fox jumps over the lazy dog again and again. ".repeat(sentences)
}

pub struct Harness {
    pub session: Session,
    pub now: u64,
    /// The socket the test's client speaks through.
    pub socket: Generation,
    /// The protocol version the next socket connects with.
    pub version: Version,
    /// Fetches started and not yet aborted or finished: id -> stream.
    pub open_fetches: HashMap<FetchId, u32>,
    /// Per stream, the latest fetch of each segment (a retry replaces the failed one).
    pub fetch_order: BTreeMap<u32, BTreeMap<u32, FetchId>>,
    /// Every fetch started, in order.
    pub started: Vec<FetchId>,
    /// The PCM each fetch delivered in full.
    pub delivered: HashMap<FetchId, Vec<u8>>,
    /// The text each fetch asked the upstream to speak.
    pub inputs: HashMap<FetchId, String>,
    /// Fetches that may be answered from the segment cache.
    pub cacheable: Vec<FetchId>,
    /// Every text frame sent, to any socket, in order.
    pub texts: Vec<ServerMessage>,
    /// The text frames each socket received.
    pub sent_to: BTreeMap<Generation, Vec<ServerMessage>>,
    pub audio: BTreeMap<u32, Vec<u8>>,
    /// How each stream's audio was to travel, as its frames said.
    pub encodings: BTreeMap<u32, AudioEncoding>,
    /// Close codes, per socket.
    pub closed: BTreeMap<Generation, u16>,
    /// The latest attachment of each socket.
    pub attachments: BTreeMap<Generation, Attachment>,
    /// The latest stored state.
    pub stored: Option<Stored>,
    /// How durably each write of it was asked for, in order.
    pub writes: Vec<Durability>,
    /// How each stream ended: (id, reason, samples).
    ended_streams: HashMap<u32, (String, EndReason, u64)>,
    current_stream: Option<u32>,
    /// Protocol v2: the play cursor last reported, per stream.
    reported: HashMap<u32, u64>,
    /// How many objects the session had before this one (each hands out fetch ids anew).
    objects_gone: u64,
}

impl Harness {
    /// A session whose stored state is new, with its first socket connected.
    pub fn new(config: Config) -> Self {
        Self::with_stored(config, Some(Stored::default()))
    }

    /// A session with this stored state (`None`: it could not be read), its first socket
    /// connected.
    pub fn with_stored(config: Config, stored: Option<Stored>) -> Self {
        Self::connected(config, stored, Version::V1)
    }

    /// A new session whose client speaks protocol v2.
    pub fn v2(config: Config) -> Self {
        Self::connected(config, Some(Stored::default()), Version::V2)
    }

    fn connected(config: Config, stored: Option<Stored>, version: Version) -> Self {
        let mut h = Self {
            session: Session::new(config, "s1", stored),
            now: 1_000,
            socket: 0,
            version,
            open_fetches: HashMap::new(),
            fetch_order: BTreeMap::new(),
            started: Vec::new(),
            delivered: HashMap::new(),
            inputs: HashMap::new(),
            cacheable: Vec::new(),
            texts: Vec::new(),
            sent_to: BTreeMap::new(),
            audio: BTreeMap::new(),
            encodings: BTreeMap::new(),
            closed: BTreeMap::new(),
            attachments: BTreeMap::new(),
            stored: None,
            writes: Vec::new(),
            ended_streams: HashMap::new(),
            current_stream: None,
            reported: HashMap::new(),
            objects_gone: 0,
        };
        h.connect();
        h
    }

    /// Connects a new socket, which replaces the one served; the client speaks through it now.
    pub fn connect(&mut self) -> Generation {
        self.socket += 1;
        let socket = self.socket;
        self.feed(Input::Connected(socket, self.version));
        let ready = self.sent_to[&socket].last().cloned();
        assert!(
            matches!(ready, Some(ServerMessage::Ready { .. })),
            "ready first"
        );
        self.texts
            .retain(|m| !matches!(m, ServerMessage::Ready { .. }));
        socket
    }

    pub fn feed(&mut self, input: Input<'_>) {
        // The runtime lets go of a request once its body ended, it failed, or (for a non-2xx
        // status) once it has read the error body.
        match &input {
            Input::UpstreamEnd(f) | Input::UpstreamFailed(f) => {
                self.open_fetches.remove(f);
            }
            Input::UpstreamHead(f, status) if !(200..300).contains(&status.status) => {
                self.open_fetches.remove(f);
            }
            _ => {}
        }
        self.session.handle(input, self.now);
        self.drain();
    }

    pub fn text(&mut self, frame: &str) {
        if let Ok(ClientMessage::Played { stream, played, .. }) = ClientMessage::parse(frame) {
            self.reported.insert(stream, played);
        }
        self.feed(Input::Text(self.socket, frame));
    }

    pub fn speak(&mut self, id: &str, text: &str) {
        let frame = serde_json::json!({"type": "speak", "id": id, "text": text}).to_string();
        self.text(&frame);
    }

    /// Protocol v2: opens message `id` with `text`, more to come.
    pub fn open(&mut self, id: &str, text: &str) {
        let frame = serde_json::json!({"type": "speak", "id": id, "text": text, "more": true});
        self.text(&frame.to_string());
    }

    /// Protocol v2: appends `text` to message `id`.
    pub fn append(&mut self, id: &str, text: &str) {
        let frame = serde_json::json!({"type": "append", "id": id, "text": text});
        self.text(&frame.to_string());
    }

    /// Protocol v2: the text of message `id` is complete.
    pub fn finish(&mut self, id: &str) {
        let frame = serde_json::json!({"type": "finish", "id": id});
        self.text(&frame.to_string());
    }

    /// Protocol v2: sets the session's defaults.
    pub fn configure(&mut self, configure: serde_json::Value) {
        let mut frame = configure;
        frame["type"] = "configure".into();
        self.text(&frame.to_string());
    }

    /// Every word told for `stream`, in order.
    pub fn words_of(&self, stream: u32) -> Vec<WordTiming> {
        self.texts
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Words { stream: s, words } if *s == stream => Some(words.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The texts the upstream was asked to speak for `stream`, in segment order.
    pub fn inputs_of(&self, stream: u32) -> Vec<String> {
        self.fetches_of(stream)
            .iter()
            .map(|f| self.inputs[f].clone())
            .collect()
    }

    /// Every `error` frame's code, in order.
    pub fn errors(&self) -> Vec<ErrorCode> {
        self.texts
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Error { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }

    /// Executes effects as the runtime would, checking the client-visible invariants.
    pub fn drain(&mut self) {
        for effect in self.session.take_effects() {
            if let Effect::Send(to, _) | Effect::Audio(to, _) = &effect {
                assert!(
                    !self.closed.contains_key(to),
                    "nothing is sent after close: {effect:?}"
                );
                assert!(
                    self.attachments.get(to).is_none_or(|a| !a.closed),
                    "nothing is sent to a socket marked closed: {effect:?}"
                );
            }
            match effect {
                Effect::Send(to, message) => {
                    // As the client reads it: encoded, then parsed.
                    let message =
                        ServerMessage::parse(&message.to_json()).expect("valid server JSON");
                    self.check_text(&message);
                    self.sent_to.entry(to).or_default().push(message.clone());
                    self.texts.push(message);
                }
                Effect::Audio(_, audio) => {
                    let bytes = audio.encode();
                    let frame = AudioFrame::decode(&bytes).expect("valid frame");
                    assert_eq!(
                        Some(frame.stream),
                        self.current_stream,
                        "audio only for the started stream"
                    );
                    assert!(
                        !self.ended_streams.contains_key(&frame.stream),
                        "no audio after end"
                    );
                    let encoding = *self.encodings.entry(frame.stream).or_insert(audio.encoding);
                    assert_eq!(encoding, audio.encoding, "one encoding a stream");
                    let got = self.audio.entry(frame.stream).or_default();
                    assert_eq!(
                        frame.offset as usize,
                        got.len() / 2,
                        "offsets are contiguous"
                    );
                    got.extend_from_slice(frame.pcm);
                }
                Effect::Fetch(request) => {
                    assert!(
                        !self.started.contains(&request.fetch),
                        "fetch ids are never reused"
                    );
                    self.open_fetches.insert(request.fetch, request.stream);
                    self.fetch_order
                        .entry(request.stream)
                        .or_default()
                        .insert(request.segment, request.fetch);
                    self.started.push(request.fetch);
                    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
                    let input = body["input"].as_str().unwrap();
                    assert!(input.chars().count() <= 200);
                    self.inputs.insert(request.fetch, input.to_owned());
                    if request.cache {
                        self.cacheable.push(request.fetch);
                    }
                }
                Effect::Abort(fetch) => {
                    assert!(
                        self.open_fetches.remove(&fetch).is_some(),
                        "abort of a live fetch only"
                    );
                }
                Effect::Close { socket, code, .. } => {
                    assert!(
                        self.closed.insert(socket, code).is_none(),
                        "a socket is closed once"
                    );
                }
                Effect::Persist(on, attachment) => {
                    assert_eq!(on, attachment.generation, "a socket's own attachment");
                    assert!(serde_json::to_string(&attachment).unwrap().len() < 2048);
                    if let Some(old) = self.attachments.get(&on) {
                        assert!(!old.closed || attachment.closed, "closed stays closed");
                    }
                    self.attachments.insert(on, attachment);
                }
                Effect::Store(stored, durability) => {
                    if durability == Durability::Unconfirmed {
                        let before = self.stored.as_ref().expect("a confirmed write first");
                        assert!(
                            before.same_but_message(&stored),
                            "only a message record's refresh goes unconfirmed"
                        );
                    }
                    self.stored = Some(*stored);
                    self.writes.push(durability);
                }
                Effect::Log(line) => {
                    let text = orpheus_worker::log::format(Some("s1"), &line);
                    assert!(!text.contains("secret text"), "logs carry no text: {text}");
                }
            }
        }
    }

    fn check_text(&mut self, message: &ServerMessage) {
        match message {
            ServerMessage::Start { stream, .. } => {
                assert_eq!(self.current_stream, None, "one active stream at a time");
                self.current_stream = Some(*stream);
            }
            ServerMessage::End {
                stream: Some(stream),
                id,
                reason,
                samples,
                ..
            } => {
                let ending = (id.clone(), *reason, *samples);
                if let Some(first) = self.ended_streams.get(stream) {
                    // Only a resume whose `end` was lost gets it again: the same ending.
                    assert_eq!(first, &ending, "one ending per stream");
                    return;
                }
                self.ended_streams.insert(*stream, ending);
                if self.current_stream == Some(*stream) {
                    self.current_stream = None;
                }
            }
            ServerMessage::Words { stream, words } => {
                assert_eq!(
                    self.current_stream,
                    Some(*stream),
                    "words only for the started stream, before its end"
                );
                assert!(!words.is_empty(), "no empty words frame");
                assert!(self.version == Version::V2, "version 1 is told no words");
            }
            _ => {}
        }
    }

    /// Ends a response whose body was already fed in full.
    pub fn complete_rest(&mut self, fetch: FetchId, body: &[u8]) {
        let pcm_at = body.windows(4).position(|w| w == b"data").unwrap() + 8;
        self.delivered.insert(fetch, body[pcm_at..].to_vec());
        self.feed(Input::UpstreamEnd(fetch));
    }

    /// Delivers a complete upstream response for `fetch` in pieces of `piece` bytes.
    pub fn complete(&mut self, fetch: FetchId, samples: usize, piece: usize) {
        self.answer(fetch, ok(), samples, piece);
    }

    /// Delivers a complete answer for `fetch` with this head (a cached one, for instance).
    pub fn answer(&mut self, fetch: FetchId, head: UpstreamStatus, samples: usize, piece: usize) {
        let (body, pcm) = wav_body(fetch, samples);
        self.feed(Input::UpstreamHead(fetch, head));
        for chunk in body.chunks(piece) {
            self.feed(Input::UpstreamBody(fetch, chunk));
        }
        self.delivered.insert(fetch, pcm);
        self.feed(Input::UpstreamEnd(fetch));
    }

    /// Every `end` sent: (id, reason, error code).
    pub fn ends(&self) -> Vec<(String, EndReason, Option<ErrorCode>)> {
        self.texts
            .iter()
            .filter_map(|m| match m {
                ServerMessage::End {
                    id, reason, error, ..
                } => Some((id.clone(), *reason, error.as_ref().map(|e| e.code))),
                _ => None,
            })
            .collect()
    }

    /// The last `end` sent.
    pub fn last_end(&self) -> ServerMessage {
        self.texts
            .iter()
            .rev()
            .find(|m| matches!(m, ServerMessage::End { .. }))
            .cloned()
            .expect("an end")
    }

    pub fn expected_audio(&self, stream: u32) -> Vec<u8> {
        self.fetch_order[&stream]
            .values()
            .flat_map(|f| self.delivered[f].clone())
            .collect()
    }

    /// Protocol v2: the client reports its play cursor in `stream`, having received all that
    /// was sent.
    pub fn played(&mut self, stream: u32, played: u64) {
        let received = self.received(stream);
        let frame = serde_json::json!({
            "type": "played", "stream": stream, "played": played, "received": received,
        });
        self.text(&frame.to_string());
    }

    /// Samples of `stream` the client has.
    pub fn received(&self, stream: u32) -> u64 {
        self.audio.get(&stream).map_or(0, |a| a.len() as u64 / 2)
    }

    /// Protocol v2: asks, on the socket now served, to resume message `id` at `played`
    /// samples of `stream` (absent: the client never saw its `start`). The client dropped what
    /// it had not played.
    pub fn resume(&mut self, id: &str, stream: Option<u32>, played: u64) {
        match stream {
            Some(stream) => self
                .audio
                .entry(stream)
                .or_default()
                .truncate(played as usize * 2),
            // It never saw the `start`: it has none of the stream.
            None => {
                if let Some(stream) = self.current_stream.take() {
                    self.audio.remove(&stream);
                }
            }
        }
        let frame = serde_json::json!({
            "type": "resume", "id": id, "stream": stream, "played": played,
        });
        self.text(&frame.to_string());
    }

    /// Protocol v2: plays `stream` in real time, reporting every 250 ms and delivering each
    /// upstream request of it (`samples` long) when it starts, until the stream ends. Returns
    /// the most audio ever sent ahead of the cursor.
    pub fn play_to_end(&mut self, stream: u32, samples: usize) -> u64 {
        let mut most_ahead = 0;
        for _ in 0..10_000 {
            if self.ended_streams.contains_key(&stream) {
                return most_ahead;
            }
            self.deliver(stream, samples);
            self.now += 250;
            let played = self.received(stream).min(self.cursor(stream) + 6_000);
            self.played(stream, played);
            most_ahead = most_ahead.max(self.received(stream) - played);
        }
        panic!("stream {stream} never ended");
    }

    /// Completes every upstream request of `stream` in flight, each `samples` long.
    pub fn deliver(&mut self, stream: u32, samples: usize) {
        let waiting: Vec<FetchId> = self
            .fetches_of(stream)
            .into_iter()
            .filter(|f| !self.delivered.contains_key(f) && self.open_fetches.contains_key(f))
            .collect();
        for fetch in waiting {
            self.complete(fetch, samples, 4096);
        }
    }

    /// The last play cursor reported for `stream`.
    fn cursor(&self, stream: u32) -> u64 {
        self.reported.get(&stream).copied().unwrap_or(0)
    }

    /// The object loses its memory (eviction, a deploy): its sockets and upstream requests are
    /// gone, and a new session starts from what was stored.
    pub fn evict(&mut self, config: Config) {
        let stored = self.stored.clone();
        self.session = Session::new(config, "s1", stored);
        // Fetch ids name requests of one object: a new one starts over.
        self.open_fetches.clear();
        self.started.clear();
        self.delivered.clear();
        self.current_stream = None;
        self.closed.insert(self.socket, 1006);
    }

    /// The object hibernates and loses its memory, the socket staying open (the runtime keeps
    /// it, with its attachment): a new session wakes from the socket's attachment and what was
    /// stored. Nothing may be in flight: only an idle object hibernates.
    pub fn hibernate(&mut self, config: Config) {
        assert!(self.open_fetches.is_empty(), "an object hibernates idle");
        let attachment = self.attachments[&self.socket].clone();
        self.session = Session::restore(config, attachment, self.stored.clone(), self.now);
        self.archive_fetches();
        self.drain();
    }

    /// Fetch ids name requests of one object, and a new one starts over: the requests of the
    /// object gone keep their records under ids the new one never hands out.
    fn archive_fetches(&mut self) {
        let started = std::mem::take(&mut self.started);
        self.objects_gone += 1;
        let object = self.objects_gone;
        let archived = |fetch: FetchId| {
            if started.contains(&fetch) {
                fetch + (object << 40)
            } else {
                fetch
            }
        };
        for &fetch in &started {
            if let Some(pcm) = self.delivered.remove(&fetch) {
                self.delivered.insert(archived(fetch), pcm);
            }
            if let Some(input) = self.inputs.remove(&fetch) {
                self.inputs.insert(archived(fetch), input);
            }
        }
        for fetches in self.fetch_order.values_mut() {
            for fetch in fetches.values_mut() {
                *fetch = archived(*fetch);
            }
        }
        self.cacheable = self.cacheable.iter().map(|&f| archived(f)).collect();
    }

    /// Time passes until `until`, the core ticked at each of its deadlines on the way, as the
    /// runtime does (a timer while it is awake, the alarm while it hibernates).
    pub fn wait_until(&mut self, until: u64) {
        while let Some(at) = self.session.next_deadline().filter(|&at| at <= until) {
            self.now = self.now.max(at);
            self.feed(Input::Tick);
        }
        self.now = until;
    }

    /// The latest fetch of each segment of `stream`, in segment order.
    pub fn fetches_of(&self, stream: u32) -> Vec<FetchId> {
        self.fetch_order
            .get(&stream)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default()
    }
}
