// Shared by the browser tests and the benchmark: launching Debian's Chromium through
// playwright-core on a page of the relay, and capturing what the player plays.
import { chromium } from "playwright-core";

const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage"];
const AUTOPLAY = "--autoplay-policy=no-user-gesture-required";

// An init script counting every audio source start (window.__starts), so a test can see
// whether anything was scheduled after a stop or after a message ended.
export const countStarts = () => {
  window.__starts = 0;
  // AudioBufferSourceNode defines its own start(), shadowing its parent's.
  const start = AudioBufferSourceNode.prototype.start;
  AudioBufferSourceNode.prototype.start = function (...args) {
    window.__starts += 1;
    return start.apply(this, args);
  };
};

// Opens the demo page at `base` in a new Chromium and waits until its player is connected.
export async function open(base, { autoplay = true, init = null } = {}) {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: autoplay ? [...FLAGS, AUTOPLAY] : FLAGS,
  });
  const page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  if (init) await page.addInitScript(init);
  await page.goto(base);
  await page.waitForFunction(() => window.orpheus && window.orpheus.player.state === "idle",
    null, { timeout: 20000 });
  return { browser, page, errors };
}

// Plays `text` with an AudioWorklet tap between the player's output and the speakers and
// returns everything that passed through it, as base64 of Float32 samples.
export async function capture(page, text) {
  return page.evaluate(async (text) => {
    const p = window.orpheus.player;
    p.unlock();
    const ctx = p.context;
    const source = `registerProcessor("tap", class extends AudioWorkletProcessor {
      process(inputs, outputs) {
        const input = inputs[0][0];
        if (input) { this.port.postMessage(input.slice(0)); outputs[0][0].set(input); }
        return true;
      }
    });`;
    await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([source], { type: "text/javascript" })));
    const tap = new AudioWorkletNode(ctx, "tap");
    const blocks = [];
    tap.port.onmessage = (e) => blocks.push(e.data);
    p.output.disconnect();
    p.output.connect(tap);
    tap.connect(ctx.destination);
    const states = [];
    p.onStateChange((state, underruns) => states.push([state, underruns]));
    const result = await p.speak(text, "troy");
    await new Promise((r) => setTimeout(r, 300));
    const total = blocks.reduce((n, b) => n + b.length, 0);
    const all = new Float32Array(total);
    let at = 0;
    for (const b of blocks) { all.set(b, at); at += b.length; }
    const bytes = new Uint8Array(all.buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return { result, states, rate: ctx.sampleRate, samples: btoa(binary) };
  }, text);
}

