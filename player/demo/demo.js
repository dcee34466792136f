// The demo page: one session per page load, tickets from the relay's development endpoint.
import init, { Player } from "./pkg/orpheus_player.js";

await init();

const session = "demo-" + crypto.randomUUID().slice(0, 8);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const url = `${scheme}://${location.host}/v1/sessions/${session}/ws`;

// Tickets are single-use: the player asks for a fresh one before every (re)connection.
async function tickets() {
  const response = await fetch(`/_dev/ticket?session=${session}`);
  if (!response.ok) throw new Error(`ticket: ${response.status}`);
  return (await response.json()).protocols;
}

const player = new Player(url, tickets);
const $ = (id) => document.getElementById(id);
player.onStateChange((state, underruns) => {
  $("state").textContent = state;
  $("state").dataset.state = state;
  $("underruns").textContent = underruns ? `${underruns} underrun(s)` : "";
});
player.connect();

$("speak").addEventListener("click", async () => {
  $("result").textContent = "";
  const result = await player.speak($("text").value, $("voice").value);
  const first = result.firstAudioSeconds == null ? "no audio" : `first audio after ${result.firstAudioSeconds.toFixed(2)} s`;
  $("result").textContent = result.error
    ? `Ended: ${result.reason} (${result.error.code}: ${result.error.message})`
    : `Ended: ${result.reason}, ${(result.samples / 24000).toFixed(1)} s of audio, ${first}.`;
});
$("stop").addEventListener("click", () => player.stop());

// For tests and the console.
window.orpheus = { player, session };
