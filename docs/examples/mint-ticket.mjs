// Minting an Orpheus Relay ticket in a Node backend (node:crypto only).
// Run directly for a quick test: SESSION_SECRET=... node mint-ticket.mjs <session id> <origin>
import { createHmac, randomUUID } from "node:crypto";

export function mintTicket(secret, sessionId, origin, ttlSeconds = 60) {
  const claims = {
    v: 1,
    sid: sessionId,
    origin, // the page's origin, exactly as the browser sends it
    exp: Math.floor(Date.now() / 1000) + ttlSeconds, // at most 300 s ahead
    jti: randomUUID(), // single use
  };
  const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const signature = createHmac("sha256", secret).update(payload).digest("base64url");
  return `${payload}.${signature}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [sessionId, origin] = process.argv.slice(2);
  if (!process.env.SESSION_SECRET || !sessionId || !origin) {
    console.error("usage: SESSION_SECRET=... node mint-ticket.mjs <session id> <origin>");
    process.exit(2);
  }
  console.log(mintTicket(process.env.SESSION_SECRET, sessionId, origin));
}
