// Drives the demo page and the player in headless Chromium (Debian's, through playwright-core)
// against a running relay, and prints its report as one JSON line. The Rust e2e suite runs it and makes
// the assertions (tests/e2e/tests/relay.rs, browser_player).
//
// usage: node tests/browser/player.mjs <relay base url> <output dir> <scenario texts as JSON>

import { join } from "node:path";
import { capture, countStarts, open } from "./browser.mjs";

const [base, outDir, textsJson] = process.argv.slice(2);
const texts = JSON.parse(textsJson);

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

const report = {};

// Second message, screenshot, 100 messages, rapid interrupt, gapless capture, jitter.
{
  const { browser, page, errors } = await open(base, { init: countStarts });
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
        return { trials, starts: window.__starts };
  }, texts.long);

  report.capture = await capture(page, texts.capture);
  report.jitter = await capture(page, texts.jitter);

  report.pageErrors = errors;
  await browser.close();
}

// The browser never reports `ended`: completion still comes, from the safety timer.
{
  const { browser, page } = await open(base, { init: noEnded });
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
    const { browser, page } = await open(base, { autoplay: false, init: autoplayPolicy });
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

console.log(JSON.stringify(report));
