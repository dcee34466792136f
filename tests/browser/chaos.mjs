// The player in headless Chromium with its socket through the chaos proxy: the page and its
// tickets come straight from the relay, the WebSocket goes through the proxy. Speaks the given
// texts one after another (every third one stopped at a random moment), with the output tapped,
// and prints a JSON report; the Rust suite makes the assertions (tests/e2e/src/reliability.rs,
// browser_chaos).
//
// usage: node tests/browser/chaos.mjs <relay base url> <ws://proxy> <texts as JSON> <seed>

import { installTap, open } from "./browser.mjs";

const [base, wsBase, textsJson, seedText] = process.argv.slice(2);
const texts = JSON.parse(textsJson);

const { browser, page, errors } = await open(base);
await installTap(page);
const report = await page.evaluate(async ([wsBase, texts, seed]) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const { OrpheusPlayer } = window.orpheus;
  const session = "chaos-" + crypto.randomUUID().slice(0, 8);
  const protocols = async () => {
    const response = await fetch(`/_dev/ticket?session=${session}`);
    return (await response.json()).protocols;
  };
  const p = new OrpheusPlayer({ url: `${wsBase}/v1/sessions/${session}/ws`, protocols });
  p.connect();
  await p.loaded;
  await window.tapOutput(p);
  const states = [];
  p.addEventListener("statechange", (e) => states.push(e.detail.state));
  const results = [];
  const quiet = [];
  for (let i = 0; i < texts.length; i++) {
    const settled = p.speak(texts[i]);
    const stopped = i % 3 === 2;
    if (stopped) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      await sleep(seed % 1500);
      p.stop();
    }
    // (Where the player was, if it hangs: the states it went through for this message.)
    const from = states.length;
    const never = sleep(90000).then(() => ({ reason: "never settled", states: states.slice(from) }));
    const result = await Promise.race([settled, never]);
    // Nothing of a settled message may play after it settled (stale audio after a reconnect).
    const settledAt = p.context.currentTime;
    await sleep(400);
    quiet.push([settledAt + 0.05, p.context.currentTime]);
    results.push({ id: result.id, reason: result.reason, samples: result.samples,
      played: result.played, stopped, states: result.states });
  }
  // Idle once every message settled; a cut in the last moments may still be reconnecting,
  // which takes well under the bound.
  for (let waited = 0; p.state !== "idle" && waited < 10000; waited += 100) await sleep(100);
  const idle = p.state;
  const tap = window.tapped(p);
  p.close();
  return { results, quiet, tap, rate: p.context.sampleRate, idle,
    reconnecting: states.filter((s) => s === "connecting" || s === "error").length };
}, [wsBase, texts, Number(seedText)]);
report.pageErrors = errors;
await browser.close();
console.log(JSON.stringify(report));
