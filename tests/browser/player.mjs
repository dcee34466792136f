// Drives the demo page and the orpheus-player package in headless Chromium (Debian's, through
// playwright-core) against a running relay, and prints its report as one JSON line. The Rust e2e
// suite runs it and makes the assertions (tests/e2e/tests/relay/browser.rs).
//
// usage: node tests/browser/player.mjs <relay base url> <output dir> <scenario texts as JSON>

import { createServer, connect } from "node:net";
import { join } from "node:path";
import { capture, installTap, open } from "./browser.mjs";

const [app, outDir, textsJson] = process.argv.slice(2);
// The page's players hear PCM: what they play is checked sample for sample against the source
// (Opus, lossy, is checked on its own: slow.mjs, and the chaos run).
const base = `${app}${app.includes("?") ? "&" : "?"}encoding=pcm`;
const texts = JSON.parse(textsJson);
const report = {};
const started = Date.now();
// Progress on stderr, so a hang shows where it is.
const step = (name) => process.stderr.write(`player.mjs: ${name} at ${Date.now() - started} ms\n`);

// A TCP relay between the page and the relay, so a test can cut the player's link (its socket
// lives in a Worker, out of the page's reach) as a network would.
async function linkProxy(target) {
  const { hostname, port } = new URL(target);
  const open = new Set();
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    client.pipe(upstream).pipe(client);
    const pair = [client, upstream];
    open.add(pair);
    const gone = () => { open.delete(pair); client.destroy(); upstream.destroy(); };
    client.on("error", gone).on("close", gone);
    upstream.on("error", gone).on("close", gone);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `ws://127.0.0.1:${server.address().port}`,
    cut: () => {
      const cut = open.size;
      for (const [client, upstream] of open) { client.resetAndDestroy(); upstream.destroy(); }
      return cut;
    },
    close: () => server.close(),
  };
}

// The demo page: the main scenarios.
{
  const { browser, page, errors } = await open(base);
  const relay = await page.evaluate(() => window.orpheus.relay);
  const proxy = await linkProxy(relay);
  await page.exposeFunction("cutLink", () => proxy.cut());
  step("second");
  report.second = await page.evaluate(async ([a, b]) => {
    const p = window.orpheus.player;
    // The session's lexicon crosses into the core as one JSON string: set, then cleared.
    const configured = await p.configure({ lexicon: { Groq: "grok", Ünïcode: 5 } });
    const cleared = await p.configure({ lexicon: {} });
    const first = await p.speak(a, { voice: "troy" });
    const second = await p.speak(b, { voice: "diana" });
    return { first, second, state: p.state, configured, cleared };
  }, [texts.first, texts.second]);

  // A real click on Speak, as a person would; the page's own UI shows the state.
  await page.click("#speak");
  await page.waitForFunction(() => document.getElementById("state").textContent === "speaking",
    null, { timeout: 20000 });
  await page.waitForTimeout(700);
  const shot = join(outDir, "demo-speaking.png");
  await page.screenshot({ path: shot });
  report.screenshot = {
    path: shot,
    badge: await page.textContent("#state"),
    played: await page.textContent("#played"),
    level: await page.evaluate(() => document.getElementById("level").style.width),
  };
  await page.evaluate(() => window.orpheus.player.stop());

  step("hundred");
  report.hundred = await page.evaluate(async () => {
    const p = window.orpheus.player;
    const results = [];
    for (let i = 0; i < 100; i++) results.push(await p.speak(`N ${i}.`));
    return { reasons: results.map((r) => r.reason), ids: results.map((r) => r.id), state: p.state };
  });

  step("capture");
  report.capture = await capture(page, texts.capture);
  step("jitter");
  report.jitter = await capture(page, texts.jitter);
  step("written");
  report.written = await capture(page, texts.written, { written: true });

  // Rapid interrupt, with the output tapped: after each stop nothing of the message plays.
  step("rapid");
  report.rapid = await page.evaluate(async (text) => {
    const p = window.orpheus.player;
    window.tapped(p);
    const trials = [];
    let seed = 7;
    for (let i = 0; i < 40; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      const settled = p.speak(text);
      await new Promise((r) => setTimeout(r, seed % 400));
      const stopAt = p.context.currentTime;
      p.stop();
      const stateAtStop = p.state;
      const result = await settled;
      await new Promise((r) => setTimeout(r, 60));
      trials.push({ reason: result.reason, played: result.played, stopAt, stateAtStop,
        stateAfter: p.state, quietUntil: p.context.currentTime });
    }
    return { trials, rate: p.context.sampleRate, tap: window.tapped(p) };
  }, texts.long);

  // The context suspended mid-message and resumed: the message goes on, nothing lost.
  step("suspended");
  report.suspended = await page.evaluate(async (text) => {
    const p = window.orpheus.player;
    window.tapped(p);
    const states = [];
    const onState = (e) => states.push(e.detail.state);
    p.addEventListener("statechange", onState);
    const settled = p.speak(text);
    await new Promise((r) => p.addEventListener("progress", r, { once: true }));
    await p.context.suspend();
    await new Promise((r) => setTimeout(r, 1000));
    await p.context.resume();
    const result = await settled;
    await new Promise((r) => setTimeout(r, 300));
    p.removeEventListener("statechange", onState);
    return { result, states, samples: window.tapped(p).samples };
  }, texts.capture);

  // The link drops after the relay's end while audio still plays: it plays out, done.
  step("dropAfterEnd");
  report.dropAfterEnd = await page.evaluate(async ([text, via]) => {
    const { OrpheusPlayer, session } = window.orpheus;
    const sid = session + "-drop";
    const protocols = async () => (await (await fetch(`/_dev/ticket?session=${sid}`)).json()).protocols;
    const p = new OrpheusPlayer({ encoding: "pcm", url: `${via}/v1/sessions/${sid}/ws`, protocols });
    const drops = [];
    p.addEventListener("error", (e) => drops.push(e.detail));
    const ready = new Promise((r) => p.addEventListener("ready", r, { once: true }));
    p.connect();
    await ready;
    const settled = p.speak(text);
    // All of it arrives within half a second; a second in, only the playing is left.
    await new Promise((resolve) => {
      const check = (e) => {
        if (e.detail.playedSeconds < 1) return;
        p.removeEventListener("progress", check);
        resolve();
      };
      p.addEventListener("progress", check);
    });
    const droppedAt = p.context.currentTime;
    const cut = await window.cutLink();
    const result = await settled;
    const endedAt = p.context.currentTime;
    p.close();
    return { result, cut, drops, droppedAt, endedAt };
  }, [texts.capture, proxy.url]);
  proxy.close();

  // More players on the same page, as an app might make them.
  step("players");
  report.players = await page.evaluate(async ({ session, tooLong, slow }) => {
    const { OrpheusPlayer, relay } = window.orpheus;
    const url = `${relay}/v1/sessions/${session}/ws`;
    const ticket = async (sid) => (await (await fetch(`/_dev/ticket?session=${sid}`)).json()).protocols;
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const out = {};

    // connect() is idempotent: four calls, one ticket (one socket).
    let asked = 0;
    const a = new OrpheusPlayer({ encoding: "pcm", url: url.replace(session, session + "-a"), protocols: () => { asked++; return ticket(session + "-a"); } });
    const aReady = new Promise((r) => a.addEventListener("ready", r, { once: true }));
    a.connect(); a.connect(); a.connect();
    await aReady;
    a.connect();
    await sleep(300);
    out.idempotent = { asked, state: a.state };

    // What the relay would refuse is refused before sending (the relay logs no refusal).
    out.tooLong = { result: await a.speak(tooLong) };

    // Replaced by another connection to the same session: no retry, the reason surfaced.
    const errors = [];
    a.addEventListener("error", (e) => errors.push(e.detail));
    const settled = a.speak(slow);
    await new Promise((r) => a.addEventListener("progress", r, { once: true }));
    const intruder = new WebSocket(url.replace(session, session + "-a"), await ticket(session + "-a"));
    const replaced = await settled;
    await sleep(1500);
    out.replaced = { result: replaced, errors, asked, state: a.state };
    intruder.close();
    a.close();

    // A refused ticket: no retry loop, the reason surfaced.
    let tries = 0;
    const b = new OrpheusPlayer({ encoding: "pcm", url, protocols: () => { tries++; return ["orpheus.v1", "orpheus.ticket.forged.ticket"]; } });
    const refusals = [];
    b.addEventListener("error", (e) => refusals.push(e.detail));
    b.connect();
    await sleep(2000);
    out.refused = { tries, refusals, state: b.state };
    b.close();

    // A context at 48 kHz: the engine resamples.
    const c = new OrpheusPlayer({ encoding: "pcm", url: url.replace(session, session + "-c"), protocols: () => ticket(session + "-c"), sampleRate: 48000 });
    c.connect();
    await new Promise((r) => c.addEventListener("ready", r, { once: true }));
    out.rate48k = { rate: c.context.sampleRate };
    window.player48k = c;
    return out;
  }, { session: await page.evaluate(() => window.orpheus.session), tooLong: "x".repeat(4001), slow: texts.slow });
  step("rate48k");
  report.rate48k = await page.evaluate(async (text) => {
    const p = window.player48k;
    await window.tapOutput(p);
    window.tapped(p);
    const result = await p.speak(text);
    await new Promise((r) => setTimeout(r, 300));
    const { samples, repeats } = window.tapped(p);
    return { result, rate: p.context.sampleRate, samples, repeats };
  }, texts.tone);

  report.pageErrors = errors;
  await browser.close();
}

// The engine never reports (its port is deaf): completion still comes, from the safety timer.
{
  const deaf = () => {
    const desc = Object.getOwnPropertyDescriptor(MessagePort.prototype, "onmessage");
    Object.defineProperty(MessagePort.prototype, "onmessage", {
      configurable: true, get: desc.get, set(_) { desc.set.call(this, null); },
    });
  };
  const { browser, page } = await open(base, { init: deaf });
  step("noReports");
  report.noReports = await page.evaluate(async (text) => {
    const p = window.orpheus.player;
    const result = await p.speak(text);
    return { result, state: p.state };
  }, texts.first);
  await browser.close();
}

// Protocol v2's answers on receipt leave from the socket's Worker, not the page: count what
// that Worker's socket sends, and what reaches the page's main thread from the worklet.
{
  const counted = () => {
    window.__sent = { receipts: 0, periodic: 0 };
    const NativeWorker = Worker;
    window.Worker = class extends NativeWorker {
      constructor(url, options) {
        const shim = `
          import ${JSON.stringify(new URL(url, location.href).href)};
          const send = WebSocket.prototype.send;
          WebSocket.prototype.send = function (data) {
            if (typeof data === "string" && data.includes('"type":"played"')) {
              postMessage({ sentPlayed: data.includes('"on_receipt":true') ? "receipts" : "periodic" });
            }
            return send.call(this, data);
          };`;
        super(URL.createObjectURL(new Blob([shim], { type: "text/javascript" })), options);
        this.addEventListener("message", ({ data }) => {
          if (data?.sentPlayed) window.__sent[data.sentPlayed] += 1;
        });
      }
    };
  };
  const { browser, page } = await open(base, { init: counted });
  step("receipts");
  report.receipts = await page.evaluate(async (text) => {
    const p = window.orpheus.player;
    const result = await p.speak(text);
    return { result, sent: window.__sent };
  }, texts.long);
  await browser.close();
}

// A browser that refuses a 24 kHz AudioContext: the player falls back to the device's rate.
{
  const no24k = () => {
    const Native = AudioContext;
    window.AudioContext = class extends Native {
      constructor(options = {}) {
        if (options.sampleRate) throw new DOMException("rate not supported", "NotSupportedError");
        super(options);
      }
    };
  };
  const { browser, page, errors } = await open(base, { init: no24k });
  step("fallback");
  report.fallback = await capture(page, texts.first);
  report.fallback.pageErrors = errors;
  await browser.close();
}

// No autoplay permission and no gesture: the player says it is blocked instead of "speaking";
// a click (a real gesture) resumes it. (Headless Chromium driven by playwright does not enforce
// the policy whatever --autoplay-policy says, so the page applies it; the gesture is real.)
{
  const autoplayPolicy = () => {
    let gesture = false;
    window.addEventListener("pointerdown", (e) => { if (e.isTrusted) gesture = true; }, true);
    const resume = AudioContext.prototype.resume;
    AudioContext.prototype.resume = function () {
      return gesture ? resume.call(this) : new Promise(() => {});
    };
    const Native = AudioContext;
    window.AudioContext = class extends Native {
      constructor(options) {
        super(options);
        if (!gesture) this.suspend();
      }
    };
  };
  const { browser, page } = await open(base, { autoplay: false, init: autoplayPolicy });
  step("blocked");
  report.blocked = await page.evaluate(async (text) => {
    const p = window.orpheus.player;
    window.__states = [];
    p.addEventListener("statechange", (e) => window.__states.push(e.detail.state));
    window.__blocked = p.speak(text);
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
