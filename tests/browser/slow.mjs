// Opus and PCM on a link slower than PCM's rate: the player's sockets through chaos proxies
// that throttle them (the Rust suite sets the rate and makes the assertions:
// tests/e2e/tests/relay/browser.rs, browser_opus_on_a_slow_link). Plays `text` with the
// player's default (Opus, decoded by the browser) through one proxy to the end, its output
// tapped; then the same text as PCM through the other for `pcmMs`, and stops it. Prints JSON.
//
// usage: node tests/browser/slow.mjs <relay base url> <ws://opus proxy> <ws://pcm proxy> <text> <pcm ms>

import { installTap, open } from "./browser.mjs";

const [base, opusWs, pcmWs, text, pcmMs] = process.argv.slice(2);
const { browser, page, errors } = await open(base);
await installTap(page);
const report = await page.evaluate(async ([opusWs, pcmWs, text, pcmMs]) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const { OrpheusPlayer } = window.orpheus;
  async function player(ws, encoding) {
    const session = `slow-${encoding}-${crypto.randomUUID().slice(0, 8)}`;
    const protocols = async () => (await (await fetch(`/_dev/ticket?session=${session}`)).json()).protocols;
    const p = new OrpheusPlayer({ url: `${ws}/v1/sessions/${session}/ws`, protocols, encoding });
    const ready = new Promise((r) => p.addEventListener("ready", r, { once: true }));
    p.connect();
    await Promise.all([p.loaded, ready]);
    await window.tapOutput(p);
    return p;
  }
  const opus = await player(opusWs, "auto");
  const opusResult = await opus.speak(text);
  await sleep(300);
  const { samples } = window.tapped(opus);
  const rate = opus.context.sampleRate;
  opus.close();

  const pcm = await player(pcmWs, "pcm");
  const settled = pcm.speak(text);
  await sleep(Number(pcmMs));
  pcm.stop();
  const pcmResult = await settled;
  pcm.close();
  return { opus: { result: opusResult, samples, rate }, pcm: { result: pcmResult } };
}, [opusWs, pcmWs, text, pcmMs]);
report.pageErrors = errors;
await browser.close();
console.log(JSON.stringify(report));
