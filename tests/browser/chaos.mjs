// The player in headless Chromium with its socket through the chaos proxy: the page and its
// tickets come straight from the relay, the WebSocket goes through the proxy. Speaks the given
// texts one after another (every third one stopped at a random moment) and prints a JSON report;
// the Rust suite makes the assertions (tests/e2e/src/reliability.rs, browser_chaos).
//
// usage: node tests/browser/chaos.mjs <relay base url> <ws://proxy> <texts as JSON> <seed>

import { countStarts, open } from "./browser.mjs";

const [base, wsBase, textsJson, seedText] = process.argv.slice(2);
const texts = JSON.parse(textsJson);

const { browser, page, errors } = await open(base, { init: countStarts });
const report = await page.evaluate(async ([wsBase, texts, seed]) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const { Player } = await import("/pkg/orpheus_player.js");
  const session = "chaos-" + crypto.randomUUID().slice(0, 8);
  const tickets = async () => {
    const response = await fetch(`/_dev/ticket?session=${session}`);
    return (await response.json()).protocols;
  };
  const p = new Player(`${wsBase}/v1/sessions/${session}/ws`, tickets);
  p.connect();
  p.unlock();
  const states = [];
  p.onStateChange((s) => states.push(s));
  const results = [];
  for (let i = 0; i < texts.length; i++) {
    const settled = p.speak(texts[i], "troy");
    const stopped = i % 3 === 2;
    if (stopped) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      await sleep(seed % 1500);
      p.stop();
    }
    const never = sleep(90000).then(() => ({ reason: "never settled" }));
    const result = await Promise.race([settled, never]);
    const startsAtEnd = window.__starts;
    await sleep(300);
    results.push({ id: result.id, reason: result.reason, samples: result.samples, stopped,
      startedAfterEnd: window.__starts - startsAtEnd, live: p.liveSources });
  }
  const idle = p.state;
  p.close();
  return { results, starts: window.__starts, live: p.liveSources, idle,
    reconnecting: states.filter((s) => s === "connecting" || s === "error").length };
}, [wsBase, texts, Number(seedText)]);
report.pageErrors = errors;
await browser.close();
console.log(JSON.stringify(report));
