//! Browser glue: executes the [`PlayerCore`]'s effects with a WebSocket and Web Audio.
//!
//! Ownership: the player owns its socket, its AudioContext, every source node with its
//! `onended` closure, and every pending `speak` promise; each is released exactly once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Array, ArrayBuffer, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AudioBufferSourceNode, AudioContext, AudioContextOptions, AudioContextState,
    AudioScheduledSourceNode, BinaryType, CloseEvent, GainNode, MessageEvent, WebSocket,
};

use crate::core::{Completion, Config, Effect, Input, PlayerCore, SourceId};

/// The sample rate the AudioContext runs at: Orpheus's. Sources play without per-chunk
/// resampling, and the browser converts the whole output to the device rate in one continuous
/// stream, so chunk seams stay click-free on a 48 kHz device.
const CONTEXT_RATE: f32 = 24_000.0;

struct Source {
    node: AudioBufferSourceNode,
    gain: GainNode,
    _on_ended: Closure<dyn FnMut()>,
}

struct Socket {
    ws: WebSocket,
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Socket {
    /// Closes the socket for good. Its handlers are detached first: the `close` event comes
    /// later, and must not call closures this drop releases.
    fn shut(self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// What a socket event does, given the player.
type SocketHandler = Box<dyn Fn(&Rc<Inner>, JsValue)>;

struct Audio {
    ctx: AudioContext,
    /// Every source flows through this node to the destination.
    output: GainNode,
    _on_state_change: Closure<dyn FnMut(JsValue)>,
}

struct Timer {
    handle: i32,
    _tick: Closure<dyn FnMut()>,
}

#[derive(Default)]
struct Inner {
    core: RefCell<Option<PlayerCore>>,
    url: String,
    tickets: Option<Function>,
    socket: RefCell<Option<Socket>>,
    generation: Cell<u32>,
    context: RefCell<Option<Audio>>,
    sources: RefCell<HashMap<SourceId, Source>>,
    /// Sources released while one of their callbacks may still be running: dropped later.
    graveyard: RefCell<Vec<Source>>,
    pending: RefCell<HashMap<String, Vec<Function>>>,
    on_state: RefCell<Option<Function>>,
    timer: RefCell<Option<Timer>>,
    next_message: Cell<u64>,
    closed: Cell<bool>,
}

/// Plays Orpheus Relay speech in the browser. See the package README for the API.
#[wasm_bindgen]
pub struct Player {
    inner: Rc<Inner>,
}

fn window() -> web_sys::Window {
    web_sys::window().expect("a window")
}

impl Inner {
    fn now(&self) -> f64 {
        self.context
            .borrow()
            .as_ref()
            .map_or(0.0, |a| a.ctx.current_time())
    }

    /// Feeds the core and executes its effects. Never holds a borrow while calling out to JS
    /// callbacks that could re-enter.
    fn drive(self: &Rc<Self>, input: Input<'_>) {
        self.graveyard.borrow_mut().clear();
        let now = self.now();
        let effects = {
            let mut core = self.core.borrow_mut();
            let Some(core) = core.as_mut() else {
                return;
            };
            core.handle(input, now);
            core.take_effects()
        };
        for effect in effects {
            self.execute(effect);
        }
        self.arm_timer();
    }

    fn execute(self: &Rc<Self>, effect: Effect) {
        match effect {
            Effect::Send(text) => {
                if let Some(socket) = self.socket.borrow().as_ref() {
                    let _ = socket.ws.send_with_str(&text);
                }
            }
            Effect::Schedule {
                source,
                samples,
                sample_rate,
                at,
            } => {
                if let Err(e) = self.schedule(source, &samples, sample_rate, at) {
                    web_sys::console::error_2(&"orpheus-player: cannot schedule audio".into(), &e);
                    // Let the core know the source will never play.
                    let me = self.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        me.drive(Input::SourceEnded(source))
                    });
                }
            }
            Effect::Silence { sources, at, ramp } => {
                for id in sources {
                    if let Some(s) = self.sources.borrow().get(&id) {
                        let gain = s.gain.gain();
                        let _ = gain.cancel_scheduled_values(at);
                        let _ = gain.set_value_at_time(gain.value(), at);
                        let _ = gain.linear_ramp_to_value_at_time(0.0, at + ramp);
                        let _ = AudioScheduledSourceNode::stop_with_when(&s.node, at + ramp);
                    }
                }
            }
            Effect::Release(ids) => {
                for id in ids {
                    if let Some(s) = self.sources.borrow_mut().remove(&id) {
                        AudioScheduledSourceNode::set_onended(&s.node, None);
                        let _ = s.node.disconnect();
                        let _ = s.gain.disconnect();
                        self.graveyard.borrow_mut().push(s);
                    }
                }
            }
            Effect::Complete(completion) => self.complete(completion),
            Effect::State { state, underruns } => {
                let callback = self.on_state.borrow().clone();
                if let Some(f) = callback {
                    let _ = f.call2(&JsValue::NULL, &state.as_str().into(), &underruns.into());
                }
            }
            Effect::Disconnect => {
                // Events of the dead socket are ignored from now on.
                self.generation.set(self.generation.get() + 1);
                let dead = self.socket.borrow_mut().take();
                if let Some(dead) = dead {
                    dead.shut();
                }
            }
            Effect::Reconnect { after_ms } => {
                let me = self.clone();
                let retry = Closure::once_into_js(move || me.connect());
                let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(
                    retry.unchecked_ref(),
                    after_ms.min(i32::MAX as u64) as i32,
                );
            }
        }
    }

    fn schedule(
        self: &Rc<Self>,
        source: SourceId,
        samples: &[f32],
        rate: u32,
        at: f64,
    ) -> Result<(), JsValue> {
        let context = self.context.borrow();
        let Audio { ctx, output, .. } = context.as_ref().ok_or("no AudioContext")?;
        let buffer = ctx.create_buffer(1, samples.len() as u32, rate as f32)?;
        buffer.copy_to_channel(samples, 0)?;
        let node = ctx.create_buffer_source()?;
        node.set_buffer(Some(&buffer));
        let gain = ctx.create_gain()?;
        node.connect_with_audio_node(&gain)?;
        gain.connect_with_audio_node(output)?;
        let me = Rc::downgrade(self);
        let on_ended = Closure::<dyn FnMut()>::new(move || {
            if let Some(me) = me.upgrade() {
                me.drive(Input::SourceEnded(source));
            }
        });
        AudioScheduledSourceNode::set_onended(&node, Some(on_ended.as_ref().unchecked_ref()));
        AudioScheduledSourceNode::start_with_when(&node, at)?;
        self.sources.borrow_mut().insert(
            source,
            Source {
                node,
                gain,
                _on_ended: on_ended,
            },
        );
        Ok(())
    }

    fn complete(&self, c: Completion) {
        let resolve = self
            .pending
            .borrow_mut()
            .get_mut(&c.id)
            .and_then(|waiting| (!waiting.is_empty()).then(|| waiting.remove(0)));
        let Some(resolve) = resolve else {
            return;
        };
        let result = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&result, &k.into(), &v);
        };
        set("id", c.id.as_str().into());
        set("reason", c.reason.as_str().into());
        set("samples", (c.samples as f64).into());
        set("underruns", c.underruns.into());
        set(
            "firstAudioSeconds",
            c.first_audio_s.map_or(JsValue::NULL, JsValue::from),
        );
        set("totalSeconds", c.total_s.into());
        if let Some(e) = &c.error {
            let error = Object::new();
            let _ = Reflect::set(&error, &"code".into(), &e.code.as_str().into());
            let _ = Reflect::set(&error, &"message".into(), &e.message.as_str().into());
            if let Some(s) = e.retry_after_s {
                let _ = Reflect::set(&error, &"retryAfterSeconds".into(), &s.into());
            }
            set("error", error.into());
        }
        let _ = resolve.call1(&JsValue::NULL, &result);
    }

    /// Keeps one timer armed for the core's next safety deadline.
    fn arm_timer(self: &Rc<Self>) {
        if let Some(timer) = self.timer.borrow_mut().take() {
            window().clear_timeout_with_handle(timer.handle);
        }
        let deadline = self
            .core
            .borrow()
            .as_ref()
            .and_then(PlayerCore::next_deadline);
        let Some(deadline) = deadline else {
            return;
        };
        let wait_ms = ((deadline - self.now()) * 1000.0).ceil().max(0.0) as i32 + 1;
        let me = Rc::downgrade(self);
        let tick = Closure::<dyn FnMut()>::new(move || {
            if let Some(me) = me.upgrade() {
                me.timer.borrow_mut().take();
                me.drive(Input::Tick);
            }
        });
        if let Ok(handle) = window().set_timeout_with_callback_and_timeout_and_arguments_0(
            tick.as_ref().unchecked_ref(),
            wait_ms,
        ) {
            *self.timer.borrow_mut() = Some(Timer {
                handle,
                _tick: tick,
            });
        }
    }

    /// Creates the AudioContext, or resumes it; call from a user gesture.
    fn unlock(self: &Rc<Self>) -> Result<(), JsValue> {
        if self.context.borrow().is_none() {
            let options = AudioContextOptions::new();
            options.set_sample_rate(CONTEXT_RATE);
            options.set_latency_hint(&"interactive".into());
            let ctx = AudioContext::new_with_context_options(&options)?;
            let output = ctx.create_gain()?;
            output.connect_with_audio_node(&ctx.destination())?;
            let me = Rc::downgrade(self);
            let on_change = Closure::<dyn FnMut(JsValue)>::new(move |_| {
                if let Some(me) = me.upgrade() {
                    me.report_context();
                }
            });
            ctx.set_onstatechange(Some(on_change.as_ref().unchecked_ref()));
            *self.context.borrow_mut() = Some(Audio {
                ctx,
                output,
                _on_state_change: on_change,
            });
        }
        let context = self.context.borrow();
        let ctx = &context.as_ref().expect("created above").ctx;
        if ctx.state() == AudioContextState::Suspended {
            // Resolves only after a user gesture; the state change is reported when it does.
            let _ = ctx.resume();
        }
        drop(context);
        self.report_context();
        Ok(())
    }

    fn report_context(self: &Rc<Self>) {
        let state = self
            .context
            .borrow()
            .as_ref()
            .map(|a| (a.ctx.state(), a.ctx.sample_rate()));
        if let Some((state, rate)) = state {
            let running = state == AudioContextState::Running;
            self.drive(Input::Context {
                running,
                sample_rate: f64::from(rate),
            });
        }
    }

    /// Opens a socket with fresh subprotocols (a new single-use ticket) from the app.
    fn connect(self: &Rc<Self>) {
        if self.closed.get() {
            return;
        }
        let me = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let protocols = match &me.tickets {
                Some(provider) => match provider.call0(&JsValue::NULL) {
                    Ok(value) => JsFuture::from(Promise::resolve(&value)).await,
                    Err(e) => Err(e),
                },
                None => Ok(Array::of1(&orpheus_protocol::SUBPROTOCOL.into()).into()),
            };
            let opened = protocols.and_then(|p| me.open_socket(&p));
            if opened.is_err() {
                me.drive(Input::Closed);
            }
        });
    }

    fn open_socket(self: &Rc<Self>, protocols: &JsValue) -> Result<(), JsValue> {
        let old = self.socket.borrow_mut().take();
        if let Some(old) = old {
            old.shut();
        }
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        let ws = WebSocket::new_with_str_sequence(&self.url, protocols)?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let handler = |f: SocketHandler| {
            let me = Rc::downgrade(self);
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                // Events of an older socket are ignored.
                if let Some(me) = me.upgrade().filter(|me| me.generation.get() == generation) {
                    f(&me, event);
                }
            })
        };
        let on_open = handler(Box::new(|me, _| me.drive(Input::Opened)));
        let on_message = handler(Box::new(|me, event| {
            let data = event.unchecked_into::<MessageEvent>().data();
            if let Some(text) = data.as_string() {
                me.drive(Input::Text(&text));
            } else if let Ok(buffer) = data.dyn_into::<ArrayBuffer>() {
                me.drive(Input::Binary(&Uint8Array::new(&buffer).to_vec()));
            }
        }));
        let on_close = handler(Box::new(|me, event| {
            let _ = event.dyn_into::<CloseEvent>();
            me.socket.borrow_mut().take();
            me.drive(Input::Closed);
        }));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        *self.socket.borrow_mut() = Some(Socket {
            ws,
            _handlers: vec![on_open, on_message, on_close],
        });
        Ok(())
    }
}

#[wasm_bindgen]
impl Player {
    /// A player for the session WebSocket `url`. `tickets` is called before every connection
    /// and returns (a promise of) the subprotocols to offer, e.g.
    /// `["orpheus.v1", "orpheus.ticket." + ticket]`: tickets are single-use, so a reconnect
    /// needs a fresh one. Without it only `orpheus.v1` is offered.
    #[wasm_bindgen(constructor)]
    pub fn new(url: String, tickets: Option<Function>) -> Player {
        let inner = Rc::new(Inner {
            url,
            tickets,
            ..Inner::default()
        });
        *inner.core.borrow_mut() = Some(PlayerCore::new(Config::default()));
        Player { inner }
    }

    /// Opens the connection (and reopens it with backoff whenever it drops).
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Creates or resumes the AudioContext. Call it from a user gesture (a click); `speak`
    /// calls it too.
    pub fn unlock(&self) -> Result<(), JsValue> {
        self.inner.unlock()
    }

    /// Speaks `text` (optionally in `voice`). The promise settles once, when the message has
    /// completely finished playing, with `{id, reason, samples, underruns, firstAudioSeconds,
    /// totalSeconds, error?}`; `reason` is one of done, stopped, superseded, replaced, error,
    /// interrupted. A new `speak` stops the previous message.
    pub fn speak(&self, text: String, voice: Option<String>) -> Promise {
        let _ = self.inner.unlock();
        let n = self.inner.next_message.get() + 1;
        self.inner.next_message.set(n);
        let id = format!("m{n}");
        let inner = self.inner.clone();
        let promise = Promise::new(&mut |resolve, _reject| {
            inner
                .pending
                .borrow_mut()
                .entry(id.clone())
                .or_default()
                .push(resolve);
        });
        self.inner.drive(Input::Speak { id, text, voice });
        promise
    }

    /// Stops the current message at once (a few milliseconds' fade); its promise settles with
    /// reason `stopped` when the relay confirms.
    pub fn stop(&self) {
        self.inner.drive(Input::Stop);
    }

    /// The current state: idle, connecting, buffering, speaking, blocked-by-autoplay, error.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.inner
            .core
            .borrow()
            .as_ref()
            .map_or("idle", |c| c.state().as_str())
            .to_owned()
    }

    /// Audio source nodes currently alive (0 when nothing plays).
    #[wasm_bindgen(getter, js_name = liveSources)]
    pub fn live_sources(&self) -> usize {
        self.inner.sources.borrow().len()
    }

    /// Calls `listener(state, underruns)` on every state change.
    #[wasm_bindgen(js_name = onStateChange)]
    pub fn on_state_change(&self, listener: Option<Function>) {
        *self.inner.on_state.borrow_mut() = listener;
    }

    /// The AudioContext, once created.
    #[wasm_bindgen(getter)]
    pub fn context(&self) -> Option<AudioContext> {
        self.inner.context.borrow().as_ref().map(|a| a.ctx.clone())
    }

    /// The node all speech flows through before the destination (to route, tap or visualise).
    #[wasm_bindgen(getter)]
    pub fn output(&self) -> Option<GainNode> {
        self.inner
            .context
            .borrow()
            .as_ref()
            .map(|a| a.output.clone())
    }

    /// Closes the socket and the AudioContext and releases everything. Idempotent.
    pub fn close(&self) {
        let inner = &self.inner;
        if inner.closed.replace(true) {
            return;
        }
        inner.generation.set(inner.generation.get() + 1);
        let socket = inner.socket.borrow_mut().take();
        if let Some(socket) = socket {
            socket.shut();
        }
        inner.drive(Input::Closed);
        if let Some(timer) = inner.timer.borrow_mut().take() {
            window().clear_timeout_with_handle(timer.handle);
        }
        // Handlers are detached before their closures are dropped: closing the context fires
        // `statechange` (and may end sources) later.
        for source in inner.sources.borrow_mut().drain().map(|(_, s)| s) {
            AudioScheduledSourceNode::set_onended(&source.node, None);
        }
        let audio = inner.context.borrow_mut().take();
        if let Some(audio) = audio {
            audio.ctx.set_onstatechange(None);
            let _ = audio.ctx.close();
        }
        inner.core.borrow_mut().take();
    }
}
