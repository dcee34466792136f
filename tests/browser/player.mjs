// Drives the demo page and the player in headless Chromium (Debian's, through playwright-core)
// against a running relay, and prints one JSON report line. The Rust e2e suite runs it and makes
// the assertions (tests/e2e/tests/relay.rs, browser_player).
//
// usage: node tests/browser/player.mjs <relay base url> <output dir> <scenario texts as JSON>
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const [base, outDir, textsJson] = process.argv.slice(2);
const texts = JSON.parse(textsJson);

const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage"];
const AUTOPLAY = "--autoplay-policy=no-user-gesture-required";

async function open({ autoplay = true, init = null } = {}) {
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

// Counts every source start, so a test can see whether anything was scheduled after a stop.
const countStarts = () => {
  window.__starts = 0;
  const start = AudioScheduledSourceNode.prototype.start;
  AudioScheduledSourceNode.prototype.start = function (...args) {
    window.__starts += 1;
    return start.apply(this, args);
  };
};

// The autoplay policy of a real browser: until a user gesture, a new AudioContext is suspended
// and resume() stays pending. (Headless Chromium 156 driven by playwright does not enforce the
// policy whatever --autoplay-policy says, so the page applies it; the gesture is a real click.)
const autoplayPolicy = () => {
  let gesture = false;
  window.addEventListener("pointerdown", (e) => { if (e.isTrusted) gesture = true; }, true);
  const resume = AudioContext.prototype.resume;
  AudioContext.prototype.resume = function () {
    return gesture ? resume.call(this) : new Promise(() => {});
  };
  const Real = AudioContext;
  window.AudioContext = class extends Real {
    constructor(options) {
      super(options);
      if (!gesture) this.suspend();
    }
  };
};

// A browser that never fires `ended` on audio sources.
const noEnded = () => {
  Object.defineProperty(AudioScheduledSourceNode.prototype, "onended", {
    configurable: true, get() { return null; }, set(_) {},
  });
};

// Plays `text` with an AudioWorklet tap between the player's output and the speakers and
// returns everything that passed through it, as base64 of Float32 samples.
async function capture(page, text) {
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

const report = {};

// Second message, screenshot, 100 messages, rapid interrupt, gapless capture, jitter.
{
  const { browser, page, errors } = await open({ init: countStarts });
  report.second = await page.evaluate(async ([a, b]) => {
    const p = window.orpheus.player;
    const first = await p.speak(a, "troy");
    const second = await p.speak(b, "diana");
    return { first, second, live: p.liveSources, state: p.state };
  }, [texts.first, texts.second]);

  // A real click on Speak, as a person would; the page's own UI shows the state.
  await page.click("#speak");
  await page.waitForFunction(() => document.getElementById("state").textContent === "speaking",
    null, { timeout: 20000 });
  const shot = join(outDir, "demo-speaking.png");
  await page.screenshot({ path: shot });
  report.screenshot = { path: shot, badge: await page.textContent("#state") };

  report.hundred = await page.evaluate(async () => {
    const p = window.orpheus.player;
    const results = [];
    for (let i = 0; i < 100; i++) results.push(await p.speak(`N ${i}.`, "troy"));
    await new Promise((r) => setTimeout(r, 100));
    return { reasons: results.map((r) => r.reason), ids: results.map((r) => r.id), live: p.liveSources };
  });

  report.rapid = await page.evaluate(async (text) => {
    const p = window.orpheus.player;
    const trials = [];
    let seed = 7;
    for (let i = 0; i < 40; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      const settled = p.speak(text, "troy");
      await new Promise((r) => setTimeout(r, seed % 400));
      p.stop();
      const startsAtStop = window.__starts;
      const stateAtStop = p.state;
      const result = await settled;
      await new Promise((r) => setTimeout(r, 50));
      trials.push({ reason: result.reason, startedAfterStop: window.__starts - startsAtStop,
        stateAtStop, stateAfter: p.state, live: p.liveSources });
    }
    return trials;
  }, texts.long);

  report.capture = await capture(page, texts.capture);
  report.jitter = await capture(page, texts.jitter);

  report.pageErrors = errors;
  await browser.close();
}

// The browser never reports `ended`: completion still comes, from the safety timer.
{
  const { browser, page } = await open({ init: noEnded });
  report.noEnded = await page.evaluate(async (text) => {
    const p = window.orpheus.player;
    const result = await p.speak(text, "troy");
    return { result, live: p.liveSources, state: p.state };
  }, texts.first);
  await browser.close();
}

// No autoplay permission and no gesture: the player says it is blocked instead of "speaking";
// a click (a real gesture) resumes it.
{
    const { browser, page } = await open({ autoplay: false, init: autoplayPolicy });
  report.blocked = await page.evaluate(async (text) => {
    const p = window.orpheus.player;
    window.__states = [];
    p.onStateChange((s) => window.__states.push(s));
    window.__blocked = p.speak(text, "troy");
    await new Promise((r) => setTimeout(r, 1500));
    return { states: [...window.__states], contextState: p.context.state };
  }, texts.first);
  await page.click("#speak");
  report.blocked.afterGesture = await page.evaluate(async () => {
    const first = await window.__blocked;
    return { first: first.reason, contextState: window.orpheus.player.context.state };
  });
  await browser.close();
}

writeFileSync(join(outDir, "browser-report.json"), JSON.stringify(report));
console.log(JSON.stringify({ ok: true, report: join(outDir, "browser-report.json") }));
