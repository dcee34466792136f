//! Protocol v2: Opus on its way out. A stream whose `start` says `opus` has its PCM frames
//! posted to the encoder Worker (through its service binding) as the core sends them, and the
//! Opus frames that come back go to the stream's socket in order (the encoder makes them:
//! encoder/src/packets.rs). The I/O is the runtime's streams, in a few lines of JavaScript
//! (`opus_pipe.js`) rather than the async machinery the Worker's size budget has no room for.
//! The Durable Object owns one pipe at a time, for one stream on one socket: the next stream
//! or socket, the stream's `end` or its socket's close releases it (again and again changes
//! nothing), and nothing of a released pipe reaches a socket afterwards. An encoder that fails
//! closes the socket (1011, logged) as a dropped link would: the client resumes from its play
//! cursor, on a pipe of its own.

use std::cell::RefCell;

use orpheus_protocol::encoder_link::put_record;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::prelude::*;
use worker::{Fetcher, WebSocket};

use crate::log::{self, LogLine};
use crate::session::{AudioOut, Generation};

#[wasm_bindgen(module = "/src/opus_pipe.js")]
extern "C" {
    type OpusPipe;
    #[wasm_bindgen(constructor)]
    fn new(encoder: &JsValue, ws: &JsValue, failure: &str) -> OpusPipe;
    #[wasm_bindgen(method)]
    fn write(this: &OpusPipe, frame: &Uint8Array);
    #[wasm_bindgen(method)]
    fn close(this: &OpusPipe);
}

/// See the module docs.
#[derive(Default)]
pub struct OpusOut {
    /// The pipe, with the socket and the stream it serves.
    pipe: RefCell<Option<(Generation, u32, OpusPipe)>>,
}

impl OpusOut {
    /// Sends `audio` of socket `generation` (`ws`) through its stream's pipe, opened if need be.
    pub fn send(
        &self,
        encoder: &Fetcher,
        session: &str,
        (generation, ws): (Generation, &WebSocket),
        audio: &AudioOut,
    ) {
        let mut pipe = self.pipe.borrow_mut();
        if !matches!(&*pipe, Some((g, s, _)) if (*g, *s) == (generation, audio.stream)) {
            if let Some((_, _, old)) = pipe.take() {
                old.close();
            }
            // Logged if the encoder fails (formatted here: typed fields only, as every line).
            let line = LogLine::new("opus").word("encoder", "failed");
            let failure = log::format(Some(session), &line.num("stream", audio.stream));
            let opened = OpusPipe::new(encoder.as_ref(), ws.as_ref(), &failure);
            *pipe = Some((generation, audio.stream, opened));
        }
        if let Some((_, _, open)) = &*pipe {
            let mut record = Vec::new();
            put_record(&mut record, &audio.encode());
            open.write(&Uint8Array::from(record.as_slice()));
        }
    }

    /// Releases the pipe of `stream`, which ended.
    pub fn end_stream(&self, stream: u32) {
        self.release_if(|_, s| s == stream);
    }

    /// Releases the pipe of socket `generation`, which is closing.
    pub fn close_socket(&self, generation: Generation) {
        self.release_if(|g, _| g == generation);
    }

    fn release_if(&self, mine: impl Fn(Generation, u32) -> bool) {
        let mut pipe = self.pipe.borrow_mut();
        if matches!(&*pipe, Some((g, s, _)) if mine(*g, *s)) {
            if let Some((_, _, old)) = pipe.take() {
                old.close();
            }
        }
    }
}
