// The player's socket, in a dedicated Worker: audio frames go from here straight to the
// AudioWorklet engine (transferred, not copied) and never touch the page's main thread, nor
// does the engine's play cursor on its way back (protocol v2's `played`); text frames and the
// link's events go to the main thread, where the core decides. Messages to and from the
// main thread carry the socket's generation, so nothing of a socket the player has given up is
// ever taken for the current one's. Protocol v2's Opus frames are decoded here (WebCodecs),
// and reach the engine as the PCM frames it plays, at the same stream samples.

let ws = null;
let engine = null; // the worklet's frame port
let early = []; // frames that came before the worklet was there
let heardAt = 0;

onmessage = ({ data }) => {
  if (data.t === "engine") {
    engine = data.port;
    engine.onmessage = ({ data: [stream, played, received, onReceipt] }) => report(stream, played, received, onReceipt);
    for (const frame of early) engine.postMessage(frame, [frame]);
    early = [];
  } else if (data.t === "open") {
    open(data.url, data.protocols, data.generation);
  } else if (data.t === "send") {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(data.text);
  } else if (data.t === "drop") {
    drop();
  }
};

function open(url, protocols, generation) {
  drop();
  let socket;
  try {
    socket = new WebSocket(url, protocols);
  } catch (error) {
    postMessage({ t: "closed", generation, code: 1006, reason: String(error?.message ?? error) });
    return;
  }
  socket.binaryType = "arraybuffer";
  socket.onopen = () => postMessage({ t: "opened", generation });
  socket.onmessage = ({ data }) => {
    if (typeof data === "string") {
      postMessage({ t: "text", generation, text: data });
      return;
    }
    if (new Uint8Array(data, 0, 1)[0] === OPUS) opusFrame(data);
    else toEngine(data);
    // The link is alive: say so now and then (the main thread watches for silence).
    const now = performance.now();
    if (now - heardAt >= 1000) {
      heardAt = now;
      postMessage({ t: "heard", generation });
    }
  };
  socket.onclose = ({ code, reason }) => {
    if (ws !== socket) return;
    ws = null;
    postMessage({ t: "closed", generation, code, reason });
  };
  ws = socket;
}

// Protocol v2: the engine's play cursor, as the worklet reports it while the relay wants it:
// periodically, and at once for a frame received while little is buffered (`on_receipt`, by
// which the relay paces a slow link). As orpheus_protocol::codec::played writes it.
function report(stream, played, received, onReceipt) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(`{"type":"played","stream":${stream},"played":${played},"received":${received}${onReceipt ? ',"on_receipt":true' : ""}}`);
  }
}

function toEngine(frame) {
  if (engine) engine.postMessage(frame, [frame]);
  else early.push(frame);
}

// Opus (docs/protocol.md, "Opus frames"). One decoder serves every stream, started as soon as
// the browser is known to decode Opus, so that no message waits for one. A run's decoded audio
// lags its input by the frame's `delay` (at 48 kHz, as the browser decodes), so the stream
// sample start + j is the decoded sample 2j + delay. The stream was coded at 24 kHz: nothing
// of it lies above 12 kHz, and every other sample is the 24 kHz signal, no filter needed.
const OPUS = 2;
const RUN_START = 2;
const RUN_END = 4;
const CONFIG = { codec: "opus", sampleRate: 48000, numberOfChannels: 1 };
let opus = null; // { decoder, runs, next: the next packet's timestamp (µs) }

// Whether this browser decodes Opus: the page asks for it only then.
(self.AudioDecoder ? AudioDecoder.isConfigSupported(CONFIG).then((r) => r.supported, () => false) : Promise.resolve(false))
  .then((supported) => {
    if (supported) opus ??= decoder();
    postMessage({ t: "codecs", opus: !!supported });
  });

function decoder() {
  const state = { runs: [], next: 0 };
  state.decoder = new AudioDecoder({
    output: (data) => decoded(state, data),
    // A decoder that fails is replaced; the socket closes, and the player resumes.
    error: () => {
      opus = decoder();
      ws?.close();
    },
  });
  state.decoder.configure(CONFIG);
  return state;
}

function opusFrame(frame) {
  const view = new DataView(frame);
  const stream = view.getUint32(4, true);
  opus ??= decoder();
  const last = opus.runs.at(-1);
  if (view.getUint8(1) & RUN_START || last?.stream !== stream) {
    const start = view.getUint32(8, true);
    opus.runs.push({ stream, from: opus.next, start, end: start, delay: view.getUint16(2, true), pcm: new Float32Array(0), j: 0 });
  }
  opus.runs.at(-1).end += view.getUint32(12, true);
  for (let at = 16; at + 2 < frame.byteLength;) {
    const len = view.getUint16(at, true);
    opus.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: opus.next, data: new Uint8Array(frame, at + 2, len) }));
    opus.next += 20000;
    at += 2 + len;
  }
  // The decoder may hold its last packet back until more comes (Chromium's does): at a run's
  // end, out with it, or the run's last samples would wait for the next message.
  if (view.getUint8(1) & RUN_END) opus.decoder.flush().catch(() => {});
}

// Decoded audio, appended to its run (the last begun by its timestamp); what it completes of
// the stream goes to the engine. `pcm` holds the run's decoded samples from 2j + delay on.
function decoded({ runs }, data) {
  while (runs.length > 1 && runs[1].from <= data.timestamp) runs.shift();
  const run = runs[0];
  const pcm = new Float32Array(run.pcm.length + data.numberOfFrames);
  pcm.set(run.pcm);
  data.copyTo(pcm.subarray(run.pcm.length), { planeIndex: 0, format: "f32-planar" });
  data.close();
  const skip = Math.min(run.delay, pcm.length);
  run.delay -= skip;
  const count = Math.min(run.end - run.start - run.j, (pcm.length - skip + 1) >> 1);
  run.pcm = pcm.subarray(skip + 2 * count);
  if (count <= 0) return;
  const out = new ArrayBuffer(12 + 2 * count);
  const head = new DataView(out);
  head.setUint8(0, 1);
  head.setUint32(4, run.stream, true);
  head.setUint32(8, run.start + run.j, true);
  const samples = new Int16Array(out, 12);
  for (let k = 0; k < count; k++) samples[k] = Math.max(-32768, Math.min(32767, Math.round(pcm[skip + 2 * k] * 32768)));
  run.j += count;
  toEngine(out);
}

function drop() {
  if (!ws) return;
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.close();
  ws = null;
}
