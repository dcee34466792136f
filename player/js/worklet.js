// The AudioWorklet half of the player: runs the engine (orpheus_player_dsp.wasm, compiled on
// the main thread and handed over in processorOptions) on the audio thread. The main thread
// posts the relay's audio frames here as it received them (transferred, not copied) and the
// engine commands; the engine's events go back as [events, stream, played, buffered,
// underruns, contextTime]. All DSP is in Rust (player/dsp); this file only wires it.

const FULL = 2;

class OrpheusProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { module, allowanceMs } = options.processorOptions;
    this.dsp = new WebAssembly.Instance(module, {}).exports;
    this.dsp.orpheus_configure(sampleRate, allowanceMs);
    this.staging = this.dsp.orpheus_staging();
    this.stagingBytes = this.dsp.orpheus_staging_bytes();
    this.output = this.dsp.orpheus_output();
    // Frames waiting for room in the engine's ring, still as the relay's Int16 bytes.
    this.waiting = [];
    this.port.onmessage = (event) => this.command(event.data);
  }

  command(data) {
    if (data instanceof ArrayBuffer) {
      this.waiting.push(new Uint8Array(data));
      this.feed();
      return;
    }
    const dsp = this.dsp;
    if (data.cmd === "begin") {
      this.waiting.length = 0;
      dsp.orpheus_begin(data.stream, data.rate);
    } else if (data.cmd === "end") {
      dsp.orpheus_end(data.stream, data.samples);
    } else if (data.cmd === "stop" && dsp.orpheus_stream() === data.stream) {
      this.waiting.length = 0;
      dsp.orpheus_stop(data.stream);
    }
  }

  feed() {
    const dsp = this.dsp;
    while (this.waiting.length) {
      const frame = this.waiting[0];
      if (frame.length <= this.stagingBytes) {
        new Uint8Array(dsp.memory.buffer, this.staging, frame.length).set(frame);
        if (dsp.orpheus_push(frame.length) === FULL) return;
      }
      this.waiting.shift();
    }
  }

  process(_inputs, outputs) {
    if (this.waiting.length) this.feed();
    const out = outputs[0][0];
    const dsp = this.dsp;
    const events = dsp.orpheus_render(out.length);
    out.set(new Float32Array(dsp.memory.buffer, this.output, out.length));
    if (events) {
      this.port.postMessage([events, dsp.orpheus_stream(), dsp.orpheus_played(),
        dsp.orpheus_buffered(), dsp.orpheus_underruns(), currentTime]);
    }
    return true;
  }
}

registerProcessor("orpheus-player", OrpheusProcessor);
