// The demo page: uses the orpheus-player package exactly as an app would (served by the relay,
// the import map in index.html resolves the package; bundled, tests/sample-app builds it from
// the packed tarball). One session per page load; tickets from the page's own server at
// /_dev/ticket (the relay's development endpoint, or the sample app's backend). The relay is the
// page's own host unless `?relay=ws://host:port` names another; `?encoding=pcm` hears PCM where
// the player would ask for Opus.
import { OrpheusPlayer } from "orpheus-player";

const session = "demo-" + crypto.randomUUID().slice(0, 8);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const query = new URLSearchParams(location.search);
const relay = query.get("relay") ?? `${scheme}://${location.host}`;

// Tickets are single-use: the player asks for a fresh one before every (re)connection.
async function protocols() {
  const response = await fetch(`/_dev/ticket?session=${session}`);
  if (!response.ok) throw new Error(`ticket: ${response.status}`);
  return (await response.json()).protocols;
}

const player = new OrpheusPlayer({
  url: `${relay}/v1/sessions/${session}/ws`,
  protocols,
  encoding: query.get("encoding") ?? "auto",
});
const $ = (id) => document.getElementById(id);
const seconds = (s) => `${s.toFixed(2)} s`;

player.addEventListener("statechange", ({ detail }) => {
  $("state").textContent = detail.state;
  $("state").dataset.state = detail.state;
});
player.addEventListener("error", ({ detail }) => {
  $("link").textContent = detail.fatal ? `closed: ${detail.reason || detail.code}` : "reconnecting…";
});
player.addEventListener("ready", () => ($("link").textContent = ""));

// Live captions: the reply as written, each word highlighted as it starts at the output (the
// player's `boundary` events, fired from its play cursor), the words before it heard, and what
// is not said (markup, code, link addresses) dimmed once the words around it were said. Word
// positions are the relay's (protocol v2); a relay without them leaves the text plain.
let captions = { chars: [], words: [], current: -1 };
const unsaid = /[^\s.,;:!?'"()\u2013\u2014-]/u;
function showCaptions() {
  const { chars, words, current } = captions;
  const nodes = [];
  const piece = (from, to, className) => {
    if (to <= from) return;
    const span = document.createElement("span");
    span.textContent = chars.slice(from, to).join("");
    if (className) span.className = className;
    nodes.push(span);
  };
  let at = 0;
  words.forEach((w, k) => {
    // Between two words said: white space and punctuation, or what was not said at all.
    const gap = chars.slice(at, w.charIndex).join("");
    piece(at, w.charIndex, unsaid.test(gap) ? "unsaid" : "");
    piece(w.charIndex, w.charIndex + w.charLength, k === current ? "word now" : "word heard");
    at = w.charIndex + w.charLength;
  });
  piece(at, chars.length, "");
  $("spoken").replaceChildren(...nodes);
}

player.addEventListener("boundary", (event) => {
  // Indexes count Unicode scalar values, as `captions.chars` does.
  captions.words.push({ charIndex: event.charIndex, charLength: event.charLength });
  captions.current = captions.words.length - 1;
  showCaptions();
});

player.addEventListener("progress", ({ detail }) => {
  $("played").textContent = seconds(detail.playedSeconds);
  $("buffered").textContent = seconds(detail.bufferedSeconds);
  $("underruns").textContent = String(detail.underruns);
});

// First audio, shown as soon as the message is heard.
let spokeAt = null;
player.addEventListener("statechange", ({ detail }) => {
  if (detail.state !== "speaking" || spokeAt === null) return;
  $("first").textContent = seconds(player.context.currentTime - spokeAt);
  spokeAt = null;
});

// A level meter on the player's output node.
const analyser = player.context.createAnalyser();
analyser.fftSize = 512;
player.output.connect(analyser);
const levels = new Float32Array(analyser.fftSize);
(function meter() {
  analyser.getFloatTimeDomainData(levels);
  const peak = levels.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  $("level").style.width = `${Math.min(100, peak * 140)}%`;
  requestAnimationFrame(meter);
})();

player.connect();

// The text in pieces of 1 to 5 characters, 20 to 50 ms apart, as a language model streams its
// reply; what has been written so far shows as it comes.
async function* written(text) {
  for (let at = 0; at < text.length; ) {
    const piece = text.slice(at, at + 1 + Math.floor(Math.random() * 5));
    at += piece.length;
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
    captions.chars.push(...piece);
    showCaptions();
    yield piece;
  }
}

$("speak").addEventListener("click", async () => {
  $("result").textContent = "";
  $("first").textContent = "…";
  const text = $("text").value;
  const options = { voice: $("voice").value };
  const streamed = $("written").checked;
  captions = { chars: streamed ? [] : Array.from(text), words: [], current: -1 };
  showCaptions();
  spokeAt = player.context.currentTime;
  const result = streamed
    ? await player.speakStream(written(text), options)
    : await player.speak(text, options);
  if (result.firstAudioSeconds == null) $("first").textContent = "–";
  // Over: no word is being said.
  captions.current = -1;
  showCaptions();
  $("result").textContent = result.error
    ? `Ended: ${result.reason} (${result.error.code}: ${result.error.message})`
    : `Ended: ${result.reason}, ${(result.played / 24000).toFixed(1)} s played of ${(result.samples / 24000).toFixed(1)} s.`;
});
$("stop").addEventListener("click", () => player.stop());

// For tests and the console.
window.orpheus = { player, session, relay, OrpheusPlayer };
