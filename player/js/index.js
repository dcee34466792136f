// orpheus-player: plays Orpheus Relay speech in the browser.
//
// This file is the browser wiring only. The decisions (the link, messages, exactly-once
// completion) are made by the Rust core (orpheus_player.wasm, player/src/core/, through
// core.js); the audio is played by the Rust engine in an AudioWorklet
// (orpheus_player_dsp.wasm + worklet.js).
// The socket lives in a dedicated Worker (socket.js), which hands audio frames straight to the
// worklet: the page's main thread never touches audio. Assets are found with
// new URL(..., import.meta.url), which bundlers follow.

import { Core } from "./core.js";

const DSP_URL = new URL("./orpheus_player_dsp.wasm", import.meta.url);
const WORKLET_URL = new URL("./worklet.js", import.meta.url);
const SOCKET_URL = new URL("./socket.js", import.meta.url);

async function compileDsp() {
  const response = await fetch(DSP_URL);
  if (!response.ok) throw new Error(`orpheus-player: ${DSP_URL} answered ${response.status}`);
  return WebAssembly.compile(await response.arrayBuffer());
}

/** The AudioContext: at the stream's rate if the browser allows it (no resampling at all),
 * else at the device's rate (the engine resamples). */
function createContext(sampleRate) {
  try {
    return new AudioContext({ sampleRate, latencyHint: "interactive" });
  } catch {
    return new AudioContext({ latencyHint: "interactive" });
  }
}

export class OrpheusPlayer extends EventTarget {
  #url;
  #protocols;
  #core;
  #ctx;
  #output;
  #node = null;
  #ready; // resolves once the worklet runs
  #early = []; // engine messages posted before the worklet ran
  #socket; // the Worker that owns the WebSocket
  #generation = 0;
  #pending = new Map();
  // Boundaries waiting for their word to reach the output: { id, timer, fire }.
  #outputSoon = new Set();
  #nextId = 0;
  #tick = 0;
  #deadline = NaN;
  #retry = 0;
  #closed = false;
  #progressListeners = 0;
  #configuring = []; // configure() calls waiting for the relay's answer
  #encoding; // "auto" or "pcm"
  #opus = false; // whether the socket's Worker decodes Opus
  #onVisible;

  /**
   * @param {object} options
   * @param {string} options.url the session's WebSocket URL
   * @param {() => Promise<string[]> | string[]} [options.protocols] called before every
   *   connection for the subprotocols to offer (a fresh single-use ticket each time)
   * @param {number} [options.sampleRate] the AudioContext rate to ask for (24000, Orpheus's)
   * @param {number} [options.allowanceMs] the engine's initial jitter allowance (20 ms)
   * @param {"auto" | "pcm"} [options.encoding] "auto": Opus from the relay (about 34 kbit/s
   *   instead of PCM's 384) when the browser decodes it (WebCodecs), else PCM; "pcm": always
   *   PCM, bit-exact
   */
  constructor({ url, protocols, sampleRate = 24000, allowanceMs = 20, encoding = "auto" } = {}) {
    super();
    this.#url = url;
    this.#encoding = encoding;
    this.#protocols = protocols ?? (() => ["orpheus.v2", "orpheus.v1"]);
    this.#core = new Core(Math.random());
    this.#socket = new Worker(SOCKET_URL, { type: "module" });
    this.#socket.onmessage = ({ data }) => this.#link(data);
    // Without its socket the player can do nothing: say so, and close.
    this.#socket.onerror = () => {
      this.dispatchEvent(new CustomEvent("error", {
        detail: { code: 0, reason: `orpheus-player: ${SOCKET_URL} did not load`, fatal: true },
      }));
      this.close();
    };
    this.#ctx = createContext(sampleRate);
    this.#output = this.#ctx.createGain();
    this.#output.connect(this.#ctx.destination);
    this.#ctx.addEventListener("statechange", () => this.#contextChanged());
    this.#ready = this.#startWorklet(allowanceMs);
    // A context the OS or the browser suspended mid-message runs again when the page is back.
    this.#onVisible = () => {
      if (document.visibilityState === "visible" && this.#ctx.state !== "running" && this.state === "suspended") {
        this.#ctx.resume().catch(() => {});
      }
    };
    document.addEventListener("visibilitychange", this.#onVisible);
    this.#contextChanged();
  }

  async #startWorklet(allowanceMs) {
    const [module] = await Promise.all([compileDsp(), this.#ctx.audioWorklet.addModule(WORKLET_URL)]);
    if (this.#closed) return;
    const node = new AudioWorkletNode(this.#ctx, "orpheus-player", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { module, allowanceMs },
    });
    node.port.onmessage = (event) => this.#report(event.data);
    node.connect(this.#output);
    // Frames go from the socket's Worker to the worklet on a port of their own.
    const frames = new MessageChannel();
    node.port.postMessage({ cmd: "frames", port: frames.port1 }, [frames.port1]);
    this.#socket.postMessage({ t: "engine", port: frames.port2 }, [frames.port2]);
    this.#node = node;
    for (const [message, transfer] of this.#early) node.port.postMessage(message, transfer);
    this.#early = [];
  }

  /** The current state: idle, connecting, buffering, speaking, blocked-by-autoplay,
   * suspended, error or closed. */
  get state() {
    return this.#core.state();
  }

  /** The AudioContext the player plays through. */
  get context() {
    return this.#ctx;
  }

  /** The node all speech passes through before the destination (route, tap or visualise it). */
  get output() {
    return this.#output;
  }

  /** Resolves once the audio engine runs in its worklet. */
  get loaded() {
    return this.#ready;
  }

  /** Opens the session; reconnects by itself after a drop. Idempotent. */
  connect() {
    this.#run(this.#core.connect(this.#now()));
  }

  /**
   * Speaks `text`, stopping any message still playing. Call it from a user gesture the first
   * time, so the browser lets audio start.
   * @returns {Promise<SpeakResult>} settles once, when the message has completely finished
   */
  speak(text, { voice, model, signal, cache = true, markup } = {}) {
    this.unlock();
    // Whatever plays is replaced: its words still on their way to the output are not said.
    this.#settleBoundaries(undefined, false);
    const id = `m${++this.#nextId}`;
    const result = new Promise((resolve) => this.#pending.set(id, { resolve, text: String(text) }));
    this.#run(this.#core.speak(id, String(text), voice ?? undefined, model ?? undefined, false, cache !== false, markup ?? undefined, this.#asked(), this.#now()));
    this.#stopOnAbort(id, signal);
    return result;
  }

  /**
   * Speaks text while it is still being written: `chunks` is an async (or plain) iterable of
   * strings, such as the text deltas of a chat completion stream. It is one message (one
   * result, one stop) however many chunks there are; speech starts with the first sentence.
   * If the iterable throws, what it gave so far is spoken to the end.
   * @returns {Promise<SpeakResult>} settles once, when the message has completely finished
   */
  speakStream(chunks, { voice, model, signal, cache = true, markup } = {}) {
    this.unlock();
    // Whatever plays is replaced: its words still on their way to the output are not said.
    this.#settleBoundaries(undefined, false);
    const id = `m${++this.#nextId}`;
    const pending = { resolve: null, text: "" };
    const result = new Promise((resolve) => {
      pending.resolve = resolve;
      this.#pending.set(id, pending);
    });
    this.#run(this.#core.speak(id, "", voice ?? undefined, model ?? undefined, true, cache !== false, markup ?? undefined, this.#asked(), this.#now()));
    this.#stopOnAbort(id, signal);
    this.#write(id, pending, chunks);
    return result;
  }

  /** Feeds a written message's chunks to the core until the iterable ends or the message does. */
  async #write(id, pending, chunks) {
    let held = ""; // a high surrogate whose low half comes with the next chunk
    const add = (text) => {
      if (!text) return;
      pending.text += text;
      this.#run(this.#core.append(id, text, this.#now()));
    };
    try {
      for await (const chunk of chunks) {
        if (!this.#pending.has(id)) return;
        let text = held + String(chunk);
        held = "";
        const last = text.charCodeAt(text.length - 1);
        if (last >= 0xd800 && last <= 0xdbff) {
          held = text.slice(-1);
          text = text.slice(0, -1);
        }
        add(text);
      }
    } catch {
      // The writer failed: what it wrote is spoken.
    }
    add(held);
    if (this.#pending.has(id)) this.#run(this.#core.finish(id, this.#now()));
  }

  #stopOnAbort(id, signal) {
    if (!signal) return;
    const abort = () => {
      if (this.#pending.has(id)) this.stop();
    };
    if (signal.aborted) abort();
    else signal.addEventListener("abort", abort, { once: true });
  }

  /**
   * Sets how the relay reads this session's messages (`markup`: "markdown", the default, or
   * "plain") and the words it says another way (`lexicon`: `{ "Groq": "grok" }`; `{}` clears
   * it); each given replaces the session's, for the messages that start after. Sent once the
   * session is ready, and again on every new connection.
   * @returns {Promise<{markup: string, lexicon: number}>} the session's settings, or a
   *   rejection with the relay's error (a lexicon over its limits changes nothing)
   */
  configure({ markup, lexicon } = {}) {
    const settled = new Promise((resolve, reject) => this.#configuring.push({ resolve, reject }));
    // One JSON string crosses into wasm; every replacement a string, as the relay reads it.
    const entries = lexicon
      ? JSON.stringify(Object.fromEntries(Object.entries(lexicon).map(([word, said]) => [word, String(said)])))
      : undefined;
    this.#run(this.#core.configure(markup ?? undefined, entries, this.#now()));
    return settled;
  }

  /** Stops the current message at once (a 5 ms fade); its promise settles `stopped`. */
  stop() {
    this.#settleBoundaries(undefined, false);
    this.#run(this.#core.stop(this.#now()));
  }

  /** Lets audio start: call it from a user gesture (`speak` does). */
  unlock() {
    if (this.#ctx.state !== "running" && this.#ctx.state !== "closed") {
      this.#ctx.resume().catch(() => {});
    }
  }

  /** Closes the socket and the AudioContext; pending messages settle `interrupted`.
   * Idempotent. */
  close() {
    if (this.#closed) return;
    this.#settleBoundaries(undefined, false);
    this.#run(this.#core.shutdown(this.#now()));
    this.#closed = true;
    this.#generation += 1;
    this.#socket.terminate();
    clearTimeout(this.#tick);
    clearTimeout(this.#retry);
    document.removeEventListener("visibilitychange", this.#onVisible);
    if (this.#node) this.#node.port.onmessage = null;
    this.#ctx.close().catch(() => {});
  }

  #now() {
    return this.#ctx.currentTime;
  }

  #contextChanged() {
    if (!this.#closed) this.#run(this.#core.context(this.#ctx.state, this.#now()));
  }

  #report([events, stream, played, buffered, underruns, at, words]) {
    this.#run(this.#core.engine(events, stream, played, buffered, underruns, at, words, this.#now()));
    // Progress details only for whoever listens (twice a report's cost otherwise).
    if (this.#progressListeners > 0) {
      const progress = this.#core.progress();
      if (progress) {
        const p = JSON.parse(progress);
        this.dispatchEvent(new CustomEvent("progress", {
          detail: {
            id: p.id,
            playedSeconds: p.played / p.rate,
            bufferedSeconds: p.buffered / p.rate,
            underruns: p.underruns,
          },
        }));
      }
    }
  }

  addEventListener(type, listener, options) {
    if (type === "progress" && listener) this.#listenProgress(1);
    super.addEventListener(type, listener, options);
  }

  removeEventListener(type, listener, options) {
    if (type === "progress" && listener) this.#listenProgress(-1);
    super.removeEventListener(type, listener, options);
  }

  // The worklet reports progress to the page only while someone listens.
  #listenProgress(change) {
    const before = this.#progressListeners > 0;
    this.#progressListeners = Math.max(0, this.#progressListeners + change);
    if (before !== this.#progressListeners > 0) this.#post({ cmd: "progress", on: !before });
  }

  #post(message, transfer = []) {
    if (this.#node) this.#node.port.postMessage(message, transfer);
    else this.#early.push([message, transfer]);
  }

  async #open() {
    clearTimeout(this.#retry);
    const generation = ++this.#generation;
    this.#socket.postMessage({ t: "drop" });
    let protocols;
    try {
      protocols = await this.#protocols();
    } catch (error) {
      if (generation === this.#generation) this.#run(this.#core.closed(1006, String(error?.message ?? error), this.#now()));
      return;
    }
    if (generation !== this.#generation || this.#closed) return;
    // The player speaks protocol v2 (resume, what was heard); the relay picks what it speaks.
    if (!protocols.includes("orpheus.v2")) protocols = ["orpheus.v2", ...protocols];
    this.#socket.postMessage({ t: "open", url: this.#url, protocols, generation });
  }

  /** The audio encoding to ask the relay for. */
  #asked() {
    return this.#opus && this.#encoding === "auto" ? "opus" : undefined;
  }

  /** What the socket's Worker reports; anything of a socket given up is ignored. */
  #link(event) {
    if (event.t === "codecs") this.#opus = event.opus;
    if (event.generation !== this.#generation || this.#closed) return;
    const now = this.#now();
    if (event.t === "text") this.#run(this.#core.text(event.text, now));
    else if (event.t === "heard") this.#core.heard(now);
    else if (event.t === "opened") this.#run(this.#core.opened(now));
    else if (event.t === "closed") this.#run(this.#core.closed(event.code, event.reason, now));
  }

  /** Executes the core's effects, then arms the timer for its next deadline. */
  #run(effectsJson) {
    // Most inputs have no effect: skip the parse.
    const effects = effectsJson === "[]" ? [] : JSON.parse(effectsJson);
    for (const effect of effects) {
      switch (effect.t) {
        case "open":
          this.#open();
          break;
        case "send":
          this.#socket.postMessage({ t: "send", text: effect.text });
          break;
        case "engine":
          this.#post(effect);
          break;
        case "complete":
          this.#complete(effect);
          break;
        case "state":
          this.dispatchEvent(new CustomEvent("statechange", { detail: { state: effect.state } }));
          break;
        case "ready":
          this.dispatchEvent(new Event("ready"));
          break;
        case "down":
          this.dispatchEvent(new CustomEvent("error", {
            detail: { code: effect.code, reason: effect.reason, fatal: effect.fatal },
          }));
          break;
        case "disconnect":
          this.#generation += 1;
          this.#socket.postMessage({ t: "drop" });
          break;
        case "boundary":
          this.#boundary(effect);
          break;
        case "configured": {
          const waiting = this.#configuring.shift();
          if (effect.error) waiting?.reject(Object.assign(new Error(effect.error.message), effect.error));
          else waiting?.resolve({ markup: effect.markup, lexicon: effect.lexicon });
          break;
        }
        case "reconnect":
          clearTimeout(this.#retry);
          this.#retry = setTimeout(() => this.#run(this.#core.retry(this.#now())), effect.ms);
          break;
      }
    }
    this.#armTimer();
  }

  /** A word's start passed the engine's play cursor: its `boundary` (as the Web Speech API's
   * SpeechSynthesisUtterance reports a word) goes out when the output plays it, the engine
   * rendering ahead of the output by its latency. */
  #boundary(effect) {
    const detail = { id: effect.id, name: "word", charIndex: effect.charIndex,
      charLength: effect.charLength, elapsedTime: effect.elapsedMs / 1000 };
    const fire = () => this.dispatchEvent(Object.assign(new CustomEvent("boundary", { detail }), detail));
    const wait = (effect.renderedAtMs / 1000 - this.#heardNow()) * 1000;
    if (wait < 1) return fire();
    const entry = { id: effect.id, fire };
    entry.timer = setTimeout(() => {
      this.#outputSoon.delete(entry);
      fire();
    }, wait);
    this.#outputSoon.add(entry);
  }

  /** Boundaries still on their way to the output, of message `id` (every message's when
   * undefined): fired now (its audio played to the end) or dropped (stopped, replaced). */
  #settleBoundaries(id, fire) {
    for (const entry of this.#outputSoon) {
      if (id !== undefined && entry.id !== id) continue;
      clearTimeout(entry.timer);
      this.#outputSoon.delete(entry);
      if (fire) entry.fire();
    }
  }

  /** The context time the output plays now, what the listener hears. */
  #heardNow() {
    const ts = this.#ctx.getOutputTimestamp?.();
    if (ts && ts.performanceTime > 0) {
      return ts.contextTime + (performance.now() - ts.performanceTime) / 1000;
    }
    return this.#ctx.currentTime - (this.#ctx.outputLatency || 0) - (this.#ctx.baseLatency || 0);
  }

  #complete(effect) {
    // Every word of a message played to its end has its boundary before its result.
    this.#settleBoundaries(effect.id, effect.reason === "done");
    const pending = this.#pending.get(effect.id);
    if (!pending) return;
    this.#pending.delete(effect.id);
    const result = {
      id: effect.id,
      reason: effect.reason,
      samples: effect.samples,
      played: effect.played,
      underruns: effect.underruns,
      firstAudioSeconds: effect.firstAudioMs === undefined ? null : effect.firstAudioMs / 1000,
      startedAt: effect.startedAtMs === undefined ? null : effect.startedAtMs / 1000,
      totalSeconds: effect.totalMs / 1000,
    };
    if (effect.error) result.error = effect.error;
    if (effect.heardChars !== undefined) {
      // The relay counts Unicode scalar values, as Array.from does.
      const chars = Array.from(pending.text);
      result.heardText = chars.slice(0, effect.heardChars).join("");
      result.unheardText = chars.slice(effect.heardChars).join("");
    }
    if (effect.metrics) result.metrics = effect.metrics;
    if (effect.words) {
      result.words = effect.words.map((w) => ({ charIndex: w.charIndex, charLength: w.charLength,
        startSeconds: w.startMs / 1000, endSeconds: w.endMs / 1000 }));
    }
    pending.resolve(result);
  }

  /** Keeps one timer for the core's next deadline. A timer due before the deadline is left
   * as it is: it ticks early, harmlessly, and re-arms (progress moves deadlines on often). */
  #armTimer() {
    const deadline = this.#core.nextDeadline();
    const unchanged = deadline === this.#deadline || (Number.isNaN(deadline) && Number.isNaN(this.#deadline));
    if (unchanged || deadline > this.#deadline) return;
    clearTimeout(this.#tick);
    this.#deadline = deadline;
    if (Number.isNaN(deadline) || this.#closed) return;
    const wait = Math.max(0, Math.ceil((deadline - this.#now()) * 1000)) + 1;
    this.#tick = setTimeout(() => {
      this.#deadline = NaN;
      this.#run(this.#core.tick(this.#now()));
    }, wait);
  }
}
