// The player's socket, in a dedicated Worker: audio frames go from here straight to the
// AudioWorklet engine (transferred, not copied) and never touch the page's main thread, nor
// does the engine's play cursor on its way back (protocol v2's `played`); text frames and the
// link's events go to the main thread, where the core decides. Messages to and from the
// main thread carry the socket's generation, so nothing of a socket the player has given up is
// ever taken for the current one's.

let ws = null;
let engine = null; // the worklet's frame port
let early = []; // frames that came before the worklet was there
let heardAt = 0;

onmessage = ({ data }) => {
  if (data.t === "engine") {
    engine = data.port;
    engine.onmessage = ({ data: [stream, played, received, onReceipt] }) => report(stream, played, received, onReceipt);
    for (const frame of early) engine.postMessage(frame, [frame]);
    early = [];
  } else if (data.t === "open") {
    open(data.url, data.protocols, data.generation);
  } else if (data.t === "send") {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(data.text);
  } else if (data.t === "drop") {
    drop();
  }
};

function open(url, protocols, generation) {
  drop();
  let socket;
  try {
    socket = new WebSocket(url, protocols);
  } catch (error) {
    postMessage({ t: "closed", generation, code: 1006, reason: String(error?.message ?? error) });
    return;
  }
  socket.binaryType = "arraybuffer";
  socket.onopen = () => postMessage({ t: "opened", generation });
  socket.onmessage = ({ data }) => {
    if (typeof data === "string") {
      postMessage({ t: "text", generation, text: data });
      return;
    }
    if (engine) engine.postMessage(data, [data]);
    else early.push(data);
    // The link is alive: say so now and then (the main thread watches for silence).
    const now = performance.now();
    if (now - heardAt >= 1000) {
      heardAt = now;
      postMessage({ t: "heard", generation });
    }
  };
  socket.onclose = ({ code, reason }) => {
    if (ws !== socket) return;
    ws = null;
    postMessage({ t: "closed", generation, code, reason });
  };
  ws = socket;
}

// Protocol v2: the engine's play cursor, as the worklet reports it while the relay wants it:
// periodically, and at once for a frame received while little is buffered (`on_receipt`, by
// which the relay paces a slow link). As orpheus_protocol::codec::played writes it.
function report(stream, played, received, onReceipt) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(`{"type":"played","stream":${stream},"played":${played},"received":${received}${onReceipt ? ',"on_receipt":true' : ""}}`);
  }
}

function drop() {
  if (!ws) return;
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.close();
  ws = null;
}
