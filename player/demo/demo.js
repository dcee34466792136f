// The demo page: uses the orpheus-player package exactly as an app would (served by the relay,
// the import map in index.html resolves the package; bundled, tests/sample-app builds it from
// the packed tarball). One session per page load; tickets from the page's own server at
// /_dev/ticket (the relay's development endpoint, or the sample app's backend). The relay is the
// page's own host unless `?relay=ws://host:port` names another.
import { OrpheusPlayer } from "orpheus-player";

const session = "demo-" + crypto.randomUUID().slice(0, 8);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const relay = new URLSearchParams(location.search).get("relay") ?? `${scheme}://${location.host}`;

// Tickets are single-use: the player asks for a fresh one before every (re)connection.
async function protocols() {
  const response = await fetch(`/_dev/ticket?session=${session}`);
  if (!response.ok) throw new Error(`ticket: ${response.status}`);
  return (await response.json()).protocols;
}

const player = new OrpheusPlayer({
  url: `${relay}/v1/sessions/${session}/ws`,
  protocols,
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

// What is being said, with the part already heard highlighted (an estimate: audio is
// proportional to text within the message).
let spoken = { text: "", total: 0 };
function showProgress(playedSeconds) {
  const share = spoken.total > 0 ? Math.min(1, playedSeconds / spoken.total) : 0;
  const cut = Math.round(spoken.text.length * share);
  const heard = document.createElement("span");
  heard.className = "heard";
  heard.textContent = spoken.text.slice(0, cut);
  $("spoken").replaceChildren(heard, spoken.text.slice(cut));
}

player.addEventListener("progress", ({ detail }) => {
  $("played").textContent = seconds(detail.playedSeconds);
  $("buffered").textContent = seconds(detail.bufferedSeconds);
  $("underruns").textContent = String(detail.underruns);
  // The total is known once all audio arrived; until then, what arrived so far.
  spoken.total = Math.max(spoken.total, detail.playedSeconds + detail.bufferedSeconds);
  showProgress(detail.playedSeconds);
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
    spoken.text += piece;
    showProgress(0);
    yield piece;
  }
}

$("speak").addEventListener("click", async () => {
  $("result").textContent = "";
  $("first").textContent = "…";
  const text = $("text").value;
  const options = { voice: $("voice").value };
  const streamed = $("written").checked;
  spoken = { text: streamed ? "" : text, total: 0 };
  showProgress(0);
  const result = streamed
    ? await player.speakStream(written(text), options)
    : await player.speak(text, options);
  $("first").textContent = result.firstAudioSeconds == null ? "–" : seconds(result.firstAudioSeconds);
  if (result.reason === "done") showProgress(Infinity);
  $("result").textContent = result.error
    ? `Ended: ${result.reason} (${result.error.code}: ${result.error.message})`
    : `Ended: ${result.reason}, ${(result.played / 24000).toFixed(1)} s played of ${(result.samples / 24000).toFixed(1)} s.`;
});
$("stop").addEventListener("click", () => player.stop());

// For tests and the console.
window.orpheus = { player, session, relay, OrpheusPlayer };
