// The player's word boundaries in headless Chromium (Debian's, through playwright-core): the
// demo page speaks each text through a relay whose upstream knows where each word was said, and
// every `boundary` event is recorded with the AudioContext time at the output when it fired;
// then one message is stopped, and any boundary after its end recorded; then the demo page's
// own captions are read while a reply plays. Prints the report as
// one JSON line; the Rust side compares it with the upstream's word truth
// (tests/e2e/tests/relay/words.rs, scripts/bench words).
//
// usage: node tests/browser/words.mjs <page url> <scenario as JSON>
//   scenario: { "texts": [{ "text", "voice" }], "stop": { "text", "voice", "afterMs" },
//               "demo": a reply to type into the demo page }

import { open } from "./browser.mjs";

const [url, scenarioJson] = process.argv.slice(2);
const scenario = JSON.parse(scenarioJson);
const { browser, page, errors } = await open(url);

const report = await page.evaluate(async ({ texts, stop }) => {
  const p = window.orpheus.player;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // The context time being heard now: what the output plays, not what the engine renders.
  const heardNow = () => {
    const ts = p.context.getOutputTimestamp();
    return ts.contextTime + (performance.now() - ts.performanceTime) / 1000;
  };
  const record = (events) => (e) => events.push({
    id: e.id, name: e.name, charIndex: e.charIndex, charLength: e.charLength,
    elapsedTime: e.elapsedTime, heardAt: heardNow(), renderedAt: p.context.currentTime,
    wallMs: performance.now(),
  });

  const runs = [];
  for (const { text, voice } of texts) {
    const events = [];
    const listener = record(events);
    p.addEventListener("boundary", listener);
    const result = await p.speak(text, { voice });
    await sleep(200);
    p.removeEventListener("boundary", listener);
    runs.push({ result, events });
  }

  const events = [];
  const listener = record(events);
  p.addEventListener("boundary", listener);
  const settled = p.speak(stop.text, { voice: stop.voice });
  await sleep(stop.afterMs);
  p.stop();
  const stopMs = performance.now();
  const result = await settled;
  const endMs = performance.now();
  await sleep(1000);
  p.removeEventListener("boundary", listener);
  return {
    runs,
    stopped: { result, events, stopMs, endMs },
    outputLatency: p.context.outputLatency,
    baseLatency: p.context.baseLatency,
    rate: p.context.sampleRate,
  };
}, scenario);

// The demo page's own UI, clicked as a person would: live captions while the reply plays, and
// First audio shown while it is still speaking.
await page.fill("#text", scenario.demo);
await page.click("#speak");
await page.waitForFunction(() => document.querySelector("#spoken .word.now"), null, { timeout: 20000 });
report.demo = await page.evaluate(() => ({
  state: document.getElementById("state").textContent,
  first: document.getElementById("first").textContent,
  now: document.querySelector("#spoken .word.now").textContent,
  unsaid: [...document.querySelectorAll("#spoken .unsaid")].map((e) => e.textContent),
  shown: document.getElementById("spoken").textContent,
}));
await page.evaluate(() => window.orpheus.player.stop());

report.pageErrors = errors;
await browser.close();
console.log(JSON.stringify(report));
