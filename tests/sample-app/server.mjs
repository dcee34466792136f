// The sample app's server: serves the built app (dist/) and, as the app's backend, mints the
// single-use tickets its page needs at /_dev/ticket, with the secret it shares with the relay
// (the same code as docs/examples/mint-ticket.mjs). Listens on 127.0.0.1; prints its URL.
//
// usage: SESSION_SECRET=... node tests/sample-app/server.mjs <dist dir> <relay ws url>

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { mintTicket } from "../../docs/examples/mint-ticket.mjs";

const [dist, relay] = process.argv.slice(2);
const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm" };

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  if (url.pathname === "/_dev/ticket") {
    const session = url.searchParams.get("session");
    const origin = req.headers.origin ?? `http://${req.headers.host}`;
    const ticket = mintTicket(process.env.SESSION_SECRET, session, origin);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ ticket, protocols: ["orpheus.v1", `orpheus.ticket.${ticket}`] }));
    return;
  }
  if (url.pathname === "/") {
    // The page's own query (`?encoding=pcm`) goes along.
    url.searchParams.set("relay", relay);
    res.writeHead(302, { location: `/index.html${url.search}` });
    res.end();
    return;
  }
  const file = normalize(join(dist, url.pathname));
  try {
    const body = readFileSync(file);
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
});
server.listen(0, "127.0.0.1", () => console.log(`http://127.0.0.1:${server.address().port}`));
