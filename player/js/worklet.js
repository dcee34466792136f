// The AudioWorklet half of the player: runs the engine (orpheus_player_dsp.wasm, compiled on
// the main thread and handed over in processorOptions) on the audio thread. Audio frames come
// from the socket's Worker on their own port, as the relay sent them; engine commands come from
// the main thread on the node's port. The engine's events go back to the main thread as
// [events, stream, played, buffered, underruns, contextTime, wordsPassed] (a frame received
// goes unreported there, and progress only while the page listens for it); protocol v2's play
// cursor goes back to the socket's Worker on the frames' port, as [stream, played, received,
// onReceipt]. All DSP is in Rust (player/dsp); this file only wires it.

// Event bits (player/dsp/src/engine.rs `event`).
const PROGRESS = 2;
const OVER = 8 | 16; // drained or stopped
const RECEIVED = 32;
// A live stream's cursor goes to the relay at least this often, even when it is not playing
// (starved, or waiting to start): the relay paces its audio by these reports. A page that
// listens for progress hears of it as often.
const REPORT_EVERY_S = 0.25;
// With at least PLENTY_S buffered beyond the cursor, the relay hears of it only this often:
// nothing needs topping up sooner, and every report wakes the relay (protocol v2).
const PLENTY_S = 1;
const SPARSE_REPORT_EVERY_S = 0.75;

const ACCEPTED = 0;
const FULL = 2;
const AHEAD = 4;

const streamOf = (frame) => new DataView(frame.buffer, frame.byteOffset, 8).getUint32(4, true);

class OrpheusProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { module, allowanceMs } = options.processorOptions;
    this.dsp = new WebAssembly.Instance(module, {}).exports;
    this.dsp.orpheus_configure(sampleRate, allowanceMs);
    // Views of the engine's memory, made once: it never grows (the engine allocates nothing).
    const memory = this.dsp.memory.buffer;
    this.staging = new Uint8Array(memory, this.dsp.orpheus_staging(), this.dsp.orpheus_staging_bytes());
    this.output = new Float32Array(memory, this.dsp.orpheus_output(), 128);
    this.words = new Uint32Array(memory, this.dsp.orpheus_word_staging(), this.dsp.orpheus_word_staging_len());
    // Frames waiting for room in the engine's ring, still as the relay's Int16 bytes.
    this.waiting = [];
    // Frames of a stream that has not begun yet (its `begin` comes by another route).
    this.held = [];
    // Whether a stream is begun and not yet over, and when it was last reported.
    this.live = false;
    // Protocol v2: whether the stream's play cursor goes to the relay (from its begin to the
    // relay's end or a stop): straight to the socket's Worker, which sends it as `played`, at
    // once for a frame received while little is buffered and with each progress report. The
    // page's main thread is not in the way, and the link is timed without it.
    this.reporting = false;
    this.frames = null;
    this.relayReportedAt = 0;
    // PLENTY_S in the stream's samples.
    this.plenty = 0;
    // Whether the page listens for progress (it is told so), and when it last heard.
    this.progress = false;
    this.pageReportedAt = 0;
    this.port.onmessage = (event) => this.command(event.data);
  }

  command(data) {
    const dsp = this.dsp;
    if (data.cmd === "frames") {
      this.frames = data.port;
      data.port.onmessage = (event) => {
        this.waiting.push(new Uint8Array(event.data));
        this.feed();
      };
    } else if (data.cmd === "progress") {
      this.progress = data.on;
    } else if (data.cmd === "begin") {
      dsp.orpheus_begin(data.stream, data.rate);
      this.plenty = PLENTY_S * data.rate;
      this.live = true;
      this.reporting = data.reports;
      this.waiting = this.held.filter((f) => streamOf(f) === data.stream);
      this.held = this.held.filter((f) => streamOf(f) > data.stream);
      this.feed();
    } else if (data.cmd === "words") {
      for (let at = 0; at < data.starts.length; at += this.words.length) {
        const starts = data.starts.slice(at, at + this.words.length);
        this.words.set(starts);
        dsp.orpheus_words(data.stream, starts.length);
      }
    } else if (data.cmd === "end") {
      dsp.orpheus_end(data.stream, data.samples);
      if (dsp.orpheus_stream() === data.stream) this.reporting = false;
    } else if (data.cmd === "stop" && dsp.orpheus_stream() === data.stream) {
      this.reporting = false;
      this.waiting.length = 0;
      dsp.orpheus_stop(data.stream);
    }
  }

  feed() {
    const dsp = this.dsp;
    while (this.waiting.length) {
      const frame = this.waiting[0];
      let result = ACCEPTED;
      if (frame.length <= this.staging.length) {
        this.staging.set(frame);
        result = dsp.orpheus_push(frame.length);
      }
      if (result === FULL) return;
      if (result === AHEAD) this.held.push(frame);
      this.waiting.shift();
    }
  }

  // How long the relay may go without a report of the stream's cursor.
  reportEvery() {
    return this.dsp.orpheus_buffered() >= this.plenty ? SPARSE_REPORT_EVERY_S : REPORT_EVERY_S;
  }

  process(_inputs, outputs) {
    if (this.waiting.length) this.feed();
    const out = outputs[0][0];
    const dsp = this.dsp;
    let events = dsp.orpheus_render(out.length);
    const received = events & RECEIVED;
    events &= ~RECEIVED;
    // (A render quantum is 128 frames; a browser that renders another size gets its own view.)
    if (this.output.length !== out.length) {
      this.output = new Float32Array(dsp.memory.buffer, dsp.orpheus_output(), out.length);
    }
    out.set(this.output);
    if (this.reporting && (received || currentTime - this.relayReportedAt >= this.reportEvery())) {
      this.relayReportedAt = currentTime;
      const played = dsp.orpheus_played();
      this.frames.postMessage([dsp.orpheus_stream(), played, played + dsp.orpheus_buffered(), received ? 1 : 0]);
    }
    // The page hears of events at once, and of progress only while it listens: a page that
    // only speaks is not woken four times a second.
    if (!this.progress) events &= ~PROGRESS;
    else if (!events && this.live && currentTime - this.pageReportedAt >= REPORT_EVERY_S) events = PROGRESS;
    if (events & OVER) this.live = this.reporting = false;
    if (events) {
      this.pageReportedAt = currentTime;
      this.port.postMessage([events, dsp.orpheus_stream(), dsp.orpheus_played(),
        dsp.orpheus_buffered(), dsp.orpheus_underruns(), currentTime, dsp.orpheus_words_passed()]);
    }
    return true;
  }
}

registerProcessor("orpheus-player", OrpheusProcessor);
