// The floor under `scripts/bench relay`'s overhead: a Worker that does nothing but forward a
// speech request to the upstream and stream its answer back. Run by `wrangler dev` as the relay
// is, its outbound fetch takes the same way out of workerd (in development, through wrangler's
// outbound Worker), so the relay's time to first audio minus this one's is what the relay
// itself adds.
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/healthz") return new Response("ok");
    return fetch(env.UPSTREAM_URL + path, {
      method: request.method,
      headers: request.headers,
      body: request.body,
    });
  },
};
