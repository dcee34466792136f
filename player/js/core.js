// The player core's wasm module (orpheus_player.wasm, player/src/ffi.rs) and its calls, by
// hand: a call's strings are written into the module's input one after another and passed as
// their lengths in bytes (-1 for none), before its numbers; the answer (the effects, as JSON)
// is read from its output. What wasm-bindgen would generate, for this module's few calls.

const response = await fetch(new URL("./orpheus_player.wasm", import.meta.url));
if (!response.ok) throw new Error(`orpheus-player: ${response.url} answered ${response.status}`);
const wasm = (await WebAssembly.instantiate(await response.arrayBuffer())).instance.exports;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
// A core the page let go of is freed with it.
const cores = new FinalizationRegistry((handle) => wasm.orpheus_free(handle));

function answer(length) {
  return decoder.decode(new Uint8Array(wasm.memory.buffer, wasm.orpheus_output(), length));
}

export class Core {
  #handle;

  /** A core not yet connected; `seed` (0 to 1) draws its reconnect jitter. */
  constructor(seed) {
    this.#handle = wasm.orpheus_new(seed);
    cores.register(this, this.#handle);
  }

  /** Export `orpheus_${name}` with `strings`, then `numbers`; its answer. */
  #call(name, strings, ...numbers) {
    const bytes = strings.map((s) => (s == null ? null : encoder.encode(s)));
    // The input is written only for calls that take strings: the frequent ones (the engine's
    // reports, ticks) take numbers alone.
    if (bytes.length) {
      let at = wasm.orpheus_input(bytes.reduce((n, b) => n + (b ? b.length : 0), 0));
      const memory = new Uint8Array(wasm.memory.buffer);
      for (const b of bytes) {
        if (b) {
          memory.set(b, at);
          at += b.length;
        }
      }
    }
    const lengths = bytes.map((b) => (b ? b.length : -1));
    return answer(wasm[`orpheus_${name}`](this.#handle, ...lengths, ...numbers));
  }

  connect(now) { return this.#call("connect", [], now); }
  retry(now) { return this.#call("retry", [], now); }
  opened(now) { return this.#call("opened", [], now); }
  text(text, now) { return this.#call("text", [text], now); }
  heard(now) { wasm.orpheus_heard(this.#handle, now); }
  closed(code, reason, now) { return this.#call("closed", [reason], code, now); }
  speak(id, text, voice, model, more, cache, markup, encoding, now) {
    const flags = (more ? 1 : 0) | (cache ? 2 : 0);
    return this.#call("speak", [id, text, voice, model, markup, encoding], flags, now);
  }
  append(id, text, now) { return this.#call("append", [id, text], now); }
  finish(id, now) { return this.#call("finish", [id], now); }
  configure(markup, lexicon, now) { return this.#call("configure", [markup, lexicon], now); }
  stop(now) { return this.#call("stop", [], now); }
  engine(events, stream, played, buffered, underruns, at, words, now) {
    return this.#call("engine", [], events, stream, played, buffered, underruns, at, words, now);
  }
  tick(now) { return this.#call("tick", [], now); }
  context(state, now) { return this.#call("context", [state], now); }
  shutdown(now) { return this.#call("shutdown", [], now); }
  progress() { return answer(wasm.orpheus_progress(this.#handle)); }
  nextDeadline() { return wasm.orpheus_next_deadline(this.#handle); }
  state() { return answer(wasm.orpheus_state(this.#handle)); }
}
