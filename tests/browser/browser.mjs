// Shared by the browser tests and the benchmark: launching Debian's Chromium through
// playwright-core on a page, and capturing what the player plays.
import { chromium } from "playwright-core";

const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage"];
const AUTOPLAY = "--autoplay-policy=no-user-gesture-required";

// Opens `url` in a new Chromium and waits until `ready` (a function evaluated in the page)
// holds: by default, the demo page's player is connected and idle.
export async function open(url, { autoplay = true, init = null, ready = null } = {}) {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: autoplay ? [...FLAGS, AUTOPLAY] : FLAGS,
  });
  const page = await browser.newPage({ viewport: { width: 1000, height: 720 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  if (init) await page.addInitScript(init);
  await page.goto(url);
  await page.waitForFunction(ready ?? (() => window.orpheus && window.orpheus.player.state === "idle"),
    null, { timeout: 20000 });
  return { browser, page, errors };
}

// The AudioWorklet processor of a tap: passes its input through and posts [frame, samples] of
// every render quantum. (Its source, for pages to load.)
export const TAP_PROCESSOR = `registerProcessor("tap", class extends AudioWorkletProcessor {
  process(inputs, outputs) {
    const input = inputs[0][0];
    if (input) { this.port.postMessage([currentFrame, input.slice(0)]); outputs[0][0].set(input); }
    return true;
  }
});`;

// Installs, in the page, `window.tapOutput(player)`: an AudioWorklet between the player's
// output and the speakers recording every render quantum with its context frame, and
// `window.tapped(player)`, which returns { firstFrame, samples: base64 Float32 } of what the
// player's tap recorded since the last call.
export async function installTap(page) {
  await page.evaluate((source) => {
    const taps = new Map();
    window.tapOutput = async (player) => {
      if (taps.has(player)) return;
      const ctx = player.context;
      await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([source], { type: "text/javascript" })));
      const tap = new AudioWorkletNode(ctx, "tap");
      const blocks = [];
      tap.port.onmessage = (e) => blocks.push(e.data);
      taps.set(player, blocks);
      player.output.disconnect();
      player.output.connect(tap);
      tap.connect(ctx.destination);
    };
    window.tapped = (player) => {
      const blocks = taps.get(player).splice(0);
      const encode = (floats) => {
        const bytes = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
        let binary = "";
        for (let i = 0; i < bytes.length; i += 0x8000) {
          binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
        }
        return btoa(binary);
      };
      // Each block at its own frame: a quantum the tap did not see stays silent instead of
      // shifting everything after it earlier. A block whose frame does not advance past the
      // one before (the audio thread's clock read twice) goes right after it, in the order it
      // was rendered, instead of over it; such blocks are counted.
      const firstFrame = blocks.length ? blocks[0][0] : 0;
      let [next, repeats] = [firstFrame, 0];
      const placed = blocks.map(([frame, b]) => {
        if (frame < next) repeats += 1;
        const at = Math.max(frame, next);
        next = at + b.length;
        return [at - firstFrame, b];
      });
      const all = new Float32Array(next - firstFrame);
      for (const [at, b] of placed) all.set(b, at);
      return { firstFrame, samples: encode(all), repeats };
    };
  }, TAP_PROCESSOR);
}

// Plays `text` through the page's player with the output tapped; returns the result, the
// states seen, the context rate and the captured samples (base64 Float32).
export async function capture(page, text, { voice = "troy", written = false } = {}) {
  await installTap(page);
  return page.evaluate(async ([text, voice, written]) => {
    const p = window.orpheus.player;
    await window.tapOutput(p);
    const states = [];
    p.addEventListener("statechange", (e) => states.push(e.detail.state));
    // Written: the text in pieces of 1 to 5 characters, 20 to 50 ms apart, as a model streams.
    async function* pieces() {
      let seed = 11;
      for (let at = 0; at < text.length; ) {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        const piece = text.slice(at, at + 1 + (seed % 5));
        at += piece.length;
        await new Promise((r) => setTimeout(r, 20 + (seed % 31)));
        yield piece;
      }
    }
    const result = written ? await p.speakStream(pieces(), { voice }) : await p.speak(text, { voice });
    await new Promise((r) => setTimeout(r, 300));
    const { samples, repeats } = window.tapped(p);
    return { result, states, rate: p.context.sampleRate, samples, repeats };
  }, [text, voice, written]);
}
