// orpheus-player: plays Orpheus Relay speech in the browser.
//
// This file is the browser wiring only. The decisions (the link, messages, exactly-once
// completion) are made by the Rust core (orpheus_player_bg.wasm, player/src/core.rs); the
// audio is played by the Rust engine in an AudioWorklet (orpheus_player_dsp.wasm + worklet.js).
// Audio frames go from the socket to the worklet as they came, transferred, never copied on
// the main thread. Assets are found with new URL(..., import.meta.url), which bundlers follow.

import init, { Core } from "./orpheus_player.js";

await init({ module_or_path: new URL("./orpheus_player_bg.wasm", import.meta.url) });

const DSP_URL = new URL("./orpheus_player_dsp.wasm", import.meta.url);
const WORKLET_URL = new URL("./worklet.js", import.meta.url);

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
  #ws = null;
  #generation = 0;
  #pending = new Map();
  #nextId = 0;
  #tick = 0;
  #retry = 0;
  #closed = false;
  #onVisible;

  /**
   * @param {object} options
   * @param {string} options.url the session's WebSocket URL
   * @param {() => Promise<string[]> | string[]} [options.protocols] called before every
   *   connection for the subprotocols to offer (a fresh single-use ticket each time)
   * @param {number} [options.sampleRate] the AudioContext rate to ask for (24000, Orpheus's)
   * @param {number} [options.allowanceMs] the engine's initial jitter allowance (20 ms)
   */
  constructor({ url, protocols, sampleRate = 24000, allowanceMs = 20 } = {}) {
    super();
    this.#url = url;
    this.#protocols = protocols ?? (() => ["orpheus.v1"]);
    this.#core = new Core(Math.random());
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
  speak(text, { voice, model, signal } = {}) {
    this.unlock();
    const id = `m${++this.#nextId}`;
    const result = new Promise((resolve) => this.#pending.set(id, resolve));
    this.#run(this.#core.speak(id, String(text), voice ?? undefined, model ?? undefined, this.#now()));
    if (signal) {
      const abort = () => {
        if (this.#pending.has(id)) this.stop();
      };
      if (signal.aborted) abort();
      else signal.addEventListener("abort", abort, { once: true });
    }
    return result;
  }

  /** Stops the current message at once (a 5 ms fade); its promise settles `stopped`. */
  stop() {
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
    this.#run(this.#core.shutdown(this.#now()));
    this.#closed = true;
    this.#dropSocket();
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

  #report([events, stream, played, buffered, underruns, at]) {
    this.#run(this.#core.engine(events, stream, played, buffered, underruns, at, this.#now()));
  }

  #post(message, transfer = []) {
    if (this.#node) this.#node.port.postMessage(message, transfer);
    else this.#early.push([message, transfer]);
  }

  #dropSocket() {
    this.#generation += 1;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close();
    }
  }

  async #open() {
    clearTimeout(this.#retry);
    this.#dropSocket();
    const generation = this.#generation;
    let ws;
    try {
      const protocols = await this.#protocols();
      if (generation !== this.#generation || this.#closed) return;
      ws = new WebSocket(this.#url, protocols);
    } catch (error) {
      if (generation === this.#generation) this.#run(this.#core.closed(1006, String(error?.message ?? error), this.#now()));
      return;
    }
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.#run(this.#core.opened(this.#now()));
    ws.onmessage = ({ data }) => {
      if (typeof data === "string") {
        this.#run(this.#core.text(data, this.#now()));
      } else {
        this.#post(data, [data]);
        this.#core.frame(this.#now());
      }
    };
    ws.onclose = ({ code, reason }) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#run(this.#core.closed(code, reason, this.#now()));
    };
    this.#ws = ws;
  }

  /** Executes the core's effects, then arms the timer for its next deadline. */
  #run(effectsJson) {
    for (const effect of JSON.parse(effectsJson)) {
      switch (effect.t) {
        case "open":
          this.#open();
          break;
        case "send":
          if (this.#ws && this.#ws.readyState === WebSocket.OPEN) this.#ws.send(effect.text);
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
        case "progress":
          this.dispatchEvent(new CustomEvent("progress", {
            detail: {
              id: effect.id,
              playedSeconds: effect.played / effect.rate,
              bufferedSeconds: effect.buffered / effect.rate,
              underruns: effect.underruns,
            },
          }));
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
          this.#dropSocket();
          break;
        case "reconnect":
          clearTimeout(this.#retry);
          this.#retry = setTimeout(() => this.#run(this.#core.retry(this.#now())), effect.ms);
          break;
      }
    }
    this.#armTimer();
  }

  #complete(effect) {
    const resolve = this.#pending.get(effect.id);
    if (!resolve) return;
    this.#pending.delete(effect.id);
    const result = {
      id: effect.id,
      reason: effect.reason,
      samples: effect.samples,
      played: effect.played,
      underruns: effect.underruns,
      firstAudioSeconds: effect.firstAudioMs === undefined ? null : effect.firstAudioMs / 1000,
      totalSeconds: effect.totalMs / 1000,
    };
    if (effect.error) result.error = effect.error;
    resolve(result);
  }

  #armTimer() {
    clearTimeout(this.#tick);
    const deadline = this.#core.nextDeadline();
    if (Number.isNaN(deadline) || this.#closed) return;
    const wait = Math.max(0, Math.ceil((deadline - this.#now()) * 1000)) + 1;
    this.#tick = setTimeout(() => this.#run(this.#core.tick(this.#now())), wait);
  }
}
