// Measures the player in headless Chromium against a running relay (run by scripts/bench):
// main-thread time spent handling the relay's frames per second of audio, the time from a
// frame's arrival to its scheduled start, and a capture for the seam check. Prints JSON.
//
// usage: node tests/browser/figures.mjs <relay base url> <text>
import { capture, open } from "./browser.mjs";

const [base, text] = process.argv.slice(2);

// Times every frame handler and records each source's start relative to the clock at scheduling.
const instrument = () => {
  window.__busyMs = 0;
  window.__leads = [];
  const onmessage = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage");
  Object.defineProperty(WebSocket.prototype, "onmessage", {
    configurable: true,
    get: onmessage.get,
    set(handler) {
      onmessage.set.call(this, handler && function (event) {
        const t0 = performance.now();
        handler.call(this, event);
        window.__busyMs += performance.now() - t0;
      });
    },
  });
    // AudioBufferSourceNode defines its own start(), shadowing its parent's.
  const start = AudioBufferSourceNode.prototype.start;
  AudioBufferSourceNode.prototype.start = function (when, ...rest) {
    window.__leads.push(when - this.context.currentTime);
    return start.call(this, when, ...rest);
  };
};

const { browser, page } = await open(base, { init: instrument });
const run = await capture(page, text);
const measured = await page.evaluate(() => ({ busyMs: window.__busyMs, leads: window.__leads }));
await browser.close();
console.log(JSON.stringify({ ...run, ...measured }));
