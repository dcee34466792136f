// The player's figures against two widely used streaming PCM players, in one headless Chromium
// run (scripts/bench runs it): orpheus-player (the packed package, player/pkg), wavtools'
// WavStreamPlayer (OpenAI's realtime console player) and pcm-player, from npm. Each plays the
// same 10 s signal from the bench's pattern server in three arrival patterns: (a) 85 ms chunks
// at real-time pace, (b) irregular chunks of 1 to 12,000 bytes at their stream time plus 0-60 ms,
// (c) all of it within 1 s. Every player's output is tapped by an AudioWorklet. Prints JSON.
//
// usage: node tests/browser/figures.mjs <ws://pattern server> <repository root>

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { open, TAP_PROCESSOR } from "./browser.mjs";

const [wsBase, root] = process.argv.slice(2);

const page = `<!doctype html><meta charset="utf-8"><title>bench</title>
<script type="module">
  import { OrpheusPlayer } from "/pkg/index.js";
  import { WavStreamPlayer } from "/wavtools/lib/wav_stream_player.js";
  import PCMPlayer from "/pcm-player/src/pcm-player.js";
  window.bench = { OrpheusPlayer, WavStreamPlayer, PCMPlayer };
</script>`;

const files = { "/pkg/": "player/pkg/", "/wavtools/": "node_modules/wavtools/", "/pcm-player/": "node_modules/pcm-player/" };
const types = { js: "text/javascript", wasm: "application/wasm" };

// Main-thread time: every callback the players run (socket messages, worklet messages, timers)
// is timed; for the two peers, the page's handler that feeds them is their socket handler.
const instrument = () => {
  window.__busy = { socket: 0, worklet: 0, timers: 0 };
  window.__calls = { socket: 0, worklet: 0, timers: 0 };
  window.__firstArrival = null;
  const timed = (fn, source) => function (...args) {
    const t0 = performance.now();
    try { return fn.apply(this, args); } finally {
      window.__busy[source] += performance.now() - t0;
      window.__calls[source] += 1;
    }
  };
  for (const proto of [WebSocket.prototype, MessagePort.prototype]) {
    const desc = Object.getOwnPropertyDescriptor(proto, "onmessage");
    Object.defineProperty(proto, "onmessage", {
      configurable: true, get: desc.get,
      set(handler) {
        const socket = this instanceof WebSocket;
        desc.set.call(this, handler && timed(function (event) {
          if (socket && typeof event.data !== "string" && window.__firstArrival === null) {
            window.__firstArrival = performance.now();
          }
          return handler.call(this, event);
        }, socket ? "socket" : "worklet"));
      },
    });
  }
  for (const name of ["setTimeout", "setInterval"]) {
    const native = window[name];
    window[name] = (fn, ...rest) => native(typeof fn === "function" ? timed(fn, "timers") : fn, ...rest);
  }
  // A player whose socket lives in a Worker: note the first frame's arrival there.
  const NativeWorker = Worker;
  window.Worker = class extends NativeWorker {
    constructor(url, options) {
      const shim = `
        import ${JSON.stringify(new URL(url, location.href).href)};
        const desc = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage");
        let noted = false;
        Object.defineProperty(WebSocket.prototype, "onmessage", {
          configurable: true, get: desc.get,
          set(handler) {
            desc.set.call(this, handler && function (event) {
              if (!noted && typeof event.data !== "string") {
                noted = true;
                postMessage({ benchArrival: performance.timeOrigin + performance.now() });
              }
              return handler.call(this, event);
            });
          },
        });`;
      super(URL.createObjectURL(new Blob([shim], { type: "text/javascript" })), options);
      this.addEventListener("message", ({ data }) => {
        if (data && data.benchArrival) window.__firstArrival = data.benchArrival - performance.timeOrigin;
      });
    }
  };
};

// The page and the three packages, from a loopback server (a secure context, as AudioWorklet
// requires), cross-origin isolated so that performance.now() is precise to microseconds.
const isolated = { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" };
const server = createServer((req, res) => {
  const path = new URL(req.url, "http://127.0.0.1").pathname;
  if (path === "/") {
    res.writeHead(200, { "content-type": "text/html", ...isolated });
    return res.end(page);
  }
  const prefix = Object.keys(files).find((k) => path.startsWith(k));
  try {
    const file = join(root, files[prefix], path.slice(prefix.length));
    const body = readFileSync(file);
    res.writeHead(200, { "content-type": types[file.split(".").pop()] ?? "application/octet-stream", ...isolated });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));

const { browser, page: tab, errors } = await open(`http://127.0.0.1:${server.address().port}/`, {
  init: instrument,
  ready: () => window.bench && window.crossOriginIsolated,
});

const runs = [];
for (const pattern of ["a", "b", "c"]) {
  for (const kind of ["orpheus-player v2", "orpheus-player v1", "wavtools", "pcm-player"]) {
    process.stderr.write(`figures.mjs: ${kind} (${pattern})\n`);
    runs.push(await tab.evaluate(runOne, { kind, pattern, wsBase, tapSource: TAP_PROCESSOR }));
  }
}
// Stop to silence, the same signal stopped 3 s in: the player's `stop`, wavtools' `interrupt`.
const stops = [];
for (const kind of ["orpheus-player v2", "wavtools"]) {
  stops.push(await tab.evaluate(runOne, { kind, pattern: "c", wsBase, stopAfterMs: 3000, tapSource: TAP_PROCESSOR }));
}
console.log(JSON.stringify({ runs, stops, pageErrors: errors }));
await browser.close();
server.close();

// Runs in the page: one player, one pattern. Returns what its tapped output shows.
async function runOne({ kind, pattern, wsBase, stopAfterMs, tapSource }) {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const SIGNAL_S = 10;
  // A tap in front of the context's destination, recording [frame, samples] per quantum.
  const tapContext = async (ctx) => {
    await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([tapSource], { type: "text/javascript" })));
    const tap = new AudioWorkletNode(ctx, "tap");
    const blocks = [];
    tap.port.addEventListener("message", (e) => blocks.push(e.data));
    tap.port.start();
    tap.connect(ctx.destination);
    return { tap, blocks };
  };
  // Feeds a peer from a raw socket as an app would, carrying an odd byte to the next chunk.
  const feedRaw = (add) => new Promise((resolve) => {
    const ws = new WebSocket(`${wsBase}/raw/${pattern}`);
    ws.binaryType = "arraybuffer";
    let carry = null;
    ws.onopen = () => ws.send("go");
    ws.onmessage = ({ data }) => {
      if (typeof data === "string") { ws.close(); resolve(); return; }
      let bytes = new Uint8Array(data);
      if (carry !== null) {
        const joined = new Uint8Array(bytes.length + 1);
        joined[0] = carry;
        joined.set(bytes, 1);
        bytes = joined;
        carry = null;
      }
      if (bytes.length % 2) { carry = bytes[bytes.length - 1]; bytes = bytes.subarray(0, bytes.length - 1); }
      if (bytes.length) add(new Int16Array(bytes.slice().buffer));
    };
  });

  window.__firstArrival = null;
  let ctx, blocks, done, stop = null;
  if (kind.startsWith("orpheus-player")) {
    // The pattern server speaking version 2 (the player's default: it reports its play
    // cursor) or only version 1, as an older relay.
    const version = kind.endsWith("v2") ? "v2" : "v1";
    const p = new window.bench.OrpheusPlayer({ url: `${wsBase}/orpheus/${version}/${pattern}` });
    const ready = new Promise((r) => p.addEventListener("ready", r, { once: true }));
    p.connect();
    await Promise.all([p.loaded, ready]);
    ctx = p.context;
    ({ blocks } = await tapContext(ctx).then((t) => { p.output.disconnect(); p.output.connect(t.tap); return t; }));
    window.__busy = { socket: 0, worklet: 0, timers: 0 };
    window.__calls = { socket: 0, worklet: 0, timers: 0 };
    const result = p.speak("bench");
    if (stopAfterMs) {
      while (window.__firstArrival === null) await sleep(5);
      await sleep(stopAfterMs);
      stop = performance.now();
      p.stop();
    }
    done = result.then(async (r) => { await sleep(300); p.close(); return r; });
  } else if (kind === "wavtools") {
    const w = new window.bench.WavStreamPlayer({ sampleRate: 24000 });
    await w.connect();
    ctx = w.context;
    const t = await tapContext(ctx);
    blocks = t.blocks;
    // wavtools connects each new stream node to the destination: route it through the tap.
    const connect = AudioNode.prototype.connect;
    AudioNode.prototype.connect = function (target, ...rest) {
      return connect.call(this, target === ctx.destination && this !== t.tap ? t.tap : target, ...rest);
    };
    window.__busy = { socket: 0, worklet: 0, timers: 0 };
    window.__calls = { socket: 0, worklet: 0, timers: 0 };
    const fed = feedRaw((pcm) => w.add16BitPCM(pcm));
    if (stopAfterMs) {
      while (window.__firstArrival === null) await sleep(5);
      await sleep(stopAfterMs);
      stop = performance.now();
      await w.interrupt();
    }
    done = fed.then(async () => {
      await sleep(SIGNAL_S * 1000 + 1500 - (performance.now() - window.__firstArrival));
      AudioNode.prototype.connect = connect;
      ctx.close();
    });
  } else {
    const pp = new window.bench.PCMPlayer({ inputCodec: "Int16", channels: 1, sampleRate: 24000, flushTime: 100 });
    pp.volume(1);
    ctx = pp.audioCtx;
    const t = await tapContext(ctx);
    blocks = t.blocks;
    pp.gainNode.disconnect();
    pp.gainNode.connect(t.tap);
    window.__busy = { socket: 0, worklet: 0, timers: 0 };
    window.__calls = { socket: 0, worklet: 0, timers: 0 };
    done = feedRaw((pcm) => pp.feed(pcm)).then(async () => {
      await sleep(SIGNAL_S * 1000 + 1500 - (performance.now() - window.__firstArrival));
      pp.destroy();
    });
  }
  // The mapping from context time to the time the output is heard, read while playing.
  while (window.__firstArrival === null) await sleep(5);
  await sleep(400);
  const stamp = ctx.getOutputTimestamp();
  const result = await done;
  const busy = window.__busy;
  const calls = window.__calls;
  const busyMs = busy.socket + busy.worklet + busy.timers;
  const rate = ctx.sampleRate;
  const heardAt = (frame) => stamp.performanceTime + (frame / rate - stamp.contextTime) * 1000;

  // What the output shows: where sound starts and ends, and the silent gaps in between.
  let first = -1, last = -1, gapCount = 0, gapSamples = 0, run = 0;
  const minGap = rate / 1000;
  let n = 0;
  for (const [frame, samples] of blocks) {
    for (let i = 0; i < samples.length; i++, n++) {
      if (samples[i] !== 0) {
        if (first < 0) first = frame + i;
        else if (run > minGap) { gapCount += 1; gapSamples += run; }
        last = frame + i;
        run = 0;
      } else if (first >= 0) run += 1;
    }
  }
  const spanMs = ((last - first + 1) / rate) * 1000;
  const playedMs = spanMs - (gapSamples / rate) * 1000;
  return {
    kind, pattern, rate,
    result: result ?? null,
    gaps: gapCount,
    gapMs: (gapSamples / rate) * 1000,
    lostMs: Math.max(0, SIGNAL_S * 1000 - playedMs),
    latencyMs: heardAt(first) - window.__firstArrival,
    busyMsPerAudioS: busyMs / SIGNAL_S,
    busy,
    calls,
    stopToSilenceMs: stop === null ? null : heardAt(last) - stop,
  };
}
