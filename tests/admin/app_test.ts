// The admin app's routes (src/admin/app.ts) through app.request(), on a real proxy pair (mesh of
// two sidecars): what each route serves, its input checks, the drain guard, the event stream and
// /v1/explain. What the state, readiness and metrics say: state_test.ts, readiness_test.ts,
// proxy_metrics_test.ts.
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import { createProxyMetrics } from "../../src/admin/proxy_metrics.ts";
import { readinessProblems } from "../../src/admin/readiness.ts";
import { type ProxyState, proxyState } from "../../src/admin/state.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import { eventually } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";
import { roundTrip, tcpClient } from "../e2e/_net.ts";
import { parseExposition } from "./_prometheus.ts";

const loopback = { remoteAddr: { hostname: "127.0.0.1", port: 5555, transport: "tcp" } };
const remote = { remoteAddr: { hostname: "10.1.2.3", port: 5555, transport: "tcp" } };

Deno.test("admin: /healthz, /ready and /v1/state answer from the proxy's readiness and state", async () => {
  await using m = await mesh();
  const app = createAdminApp({ proxy: m.webProxy });
  assert.equal(await (await app.request("/healthz")).text(), "ok");
  const ready = await app.request("/ready");
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { ready: true, problems: [] });
  // /v1/state is proxyState() as JSON (its content: state_test.ts).
  const res = await app.request("/v1/state");
  assert.equal(res.headers.get("content-type"), "application/json");
  const s = await res.json() as ProxyState;
  const now = JSON.parse(JSON.stringify(proxyState(m.webProxy))) as ProxyState;
  assert.deepEqual(s.identity, now.identity);
  assert.deepEqual(s.roots, now.roots);
  assert.deepEqual(s.upstreams, now.upstreams);
  assert.equal(s.leaf?.serial, now.leaf?.serial);
  // The leaf's expiry in the app is that of /ready's margin option too.
  const strict = createAdminApp({ proxy: m.webProxy, leafExpiryMarginMs: 365 * 86_400_000 });
  const notReady = await strict.request("/ready");
  assert.equal(notReady.status, 503);
  assert.match((await notReady.json()).problems[0], /^leaf certificate expires in \d+ s/);
});

Deno.test("admin: /ready is 503 with the reasons while the proxy is not ready", async () => {
  await using m = await mesh();
  const app = createAdminApp({ proxy: m.dbProxy });
  await m.dbProxy.close();
  const res = await app.request("/ready");
  assert.equal(res.status, 503);
  const body = await res.json();
  assert.equal(body.ready, false);
  assert.deepEqual(body.problems, readinessProblems(m.dbProxy));
  assert.ok(body.problems.includes("phase is stopped"), JSON.stringify(body));
});

Deno.test("admin: /v1/connections serves openConnections with a limit of 1 to 10000", async () => {
  await using m = await mesh();
  const app = createAdminApp({ proxy: m.webProxy });
  const a = await tcpClient(m.upstreamPort);
  const b = await tcpClient(m.upstreamPort);
  let echoed = "";
  a.on("data", (d) => (echoed += d));
  b.on("data", () => {});
  a.write("hello");
  b.write("hi");
  await eventually(() => echoed === "hello");
  await eventually(async () => (await (await app.request("/v1/connections")).json()).length === 2);
  const list = await (await app.request("/v1/connections")).json();
  assert.ok(list.some((c: { bytesOut: number }) => c.bytesOut === 5), JSON.stringify(list));
  assert.equal((await (await app.request("/v1/connections?limit=1")).json()).length, 1);
  assert.equal((await (await app.request("/v1/connections?limit=10000")).json()).length, 2);
  for (const bad of ["zero", "0", "-1", "1.5", "10001", "", "Infinity"]) {
    const res = await app.request(`/v1/connections?limit=${bad}`);
    assert.equal(res.status, 400, `limit=${bad}`);
    assert.deepEqual(await res.json(), { error: "limit must be an integer from 1 to 10000" });
  }
  a.destroy();
  b.destroy();
});

Deno.test("admin: /metrics serves the metrics it is given, as Prometheus text", async () => {
  await using m = await mesh();
  // The metrics themselves: proxy_metrics_test.ts.
  const metrics = createProxyMetrics(m.webProxy);
  metrics.registry.counter("test_only_total", "A counter only this test adds.").inc({}, 7);
  const app = createAdminApp({ proxy: m.webProxy, metrics });
  const res = await app.request("/metrics");
  assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const scraped = parseExposition(await res.text());
  assert.equal(scraped.value("test_only_total"), 7);
  assert.equal(scraped.value("meshgate_ready"), 1);
  metrics.close();
  // Without metrics given, the app makes its own from the proxy.
  const own = parseExposition(
    await (await createAdminApp({ proxy: m.webProxy }).request("/metrics")).text(),
  );
  assert.ok(Number.isNaN(own.value("test_only_total")));
  assert.equal(own.value("meshgate_ready"), 1);
});

Deno.test("admin: POST /v1/drain only from loopback, with the token when one is set", async () => {
  await using m = await mesh();
  let drains = 0;
  const onDrain = () => drains++;
  const open = createAdminApp({ proxy: m.webProxy, onDrain });
  assert.equal((await open.request("/v1/drain", { method: "POST" }, remote)).status, 403);
  assert.equal((await open.request("/v1/drain", { method: "POST" })).status, 403, "no address");
  assert.equal(drains, 0);

  const exposed = createAdminApp({ proxy: m.webProxy, onDrain, boundToLoopback: false });
  const refused = await exposed.request("/v1/drain", { method: "POST" }, loopback);
  assert.equal(refused.status, 403);
  assert.match((await refused.json()).error, /-admin-token/);

  const guarded = createAdminApp({ proxy: m.webProxy, onDrain, token: "s3cret" });
  // A wrong token, a prefix of it, more than it, another scheme, none.
  for (
    const given of ["Bearer nope", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "Bearer "]
  ) {
    const wrong = { method: "POST", headers: { Authorization: given } };
    const res = await guarded.request("/v1/drain", wrong, loopback);
    assert.equal(res.status, 401, given);
    assert.match((await res.json()).error, /missing or wrong admin token/);
  }
  assert.equal((await guarded.request("/v1/drain", { method: "POST" }, loopback)).status, 401);
  assert.equal(drains, 0);
  const right = { method: "POST", headers: { Authorization: "Bearer s3cret" } };
  assert.equal((await guarded.request("/v1/drain", right, loopback)).status, 202);
  assert.equal(drains, 1);

  // The default drain closes the proxy.
  const real = createAdminApp({ proxy: m.webProxy, drainMs: 0 });
  assert.equal((await real.request("/v1/drain", ownPage, loopback)).status, 202);
  await eventually(() => m.webProxy.phase === "stopped");
  assert.equal((await real.request("/ready")).status, 503);
  // Once stopped, a drain says so and does nothing more.
  const again = await guarded.request("/v1/drain", right, loopback);
  assert.equal(again.status, 202);
  assert.deepEqual(await again.json(), { draining: true, phase: "stopped" });
  assert.equal(drains, 1);
});

/** What a page served by the admin app itself sends (`fetch(base + "v1/drain", …)`). */
const ownPage = {
  method: "POST",
  headers: { "X-Meshgate-Drain": "1", Origin: "http://localhost", "Sec-Fetch-Site": "same-origin" },
};

Deno.test("admin: POST /v1/drain without a token cannot be sent by a page of another origin", async () => {
  await using m = await mesh();
  const app = createAdminApp({ proxy: m.webProxy, drainMs: 0 });
  const post = async (headers: Record<string, string>, url = "/v1/drain") => {
    const res = await app.request(url, { method: "POST", headers }, loopback);
    return { status: res.status, error: (await res.json()).error as string | undefined };
  };
  // A cross-site form or fetch from a page on this host: foreign Origin, no custom header.
  const foreign = await post({ Origin: "http://127.0.0.1:8080" });
  assert.equal(foreign.status, 403);
  assert.match(foreign.error!, /Origin "http:\/\/127\.0\.0\.1:8080"/);
  assert.equal(m.webProxy.phase, "ready", "not draining");
  // Each guard alone refuses.
  assert.equal(
    (await post({ Origin: "http://evil.example", "X-Meshgate-Drain": "1" })).status,
    403,
  );
  assert.equal((await post({ Origin: "null", "X-Meshgate-Drain": "1" })).status, 403);
  assert.equal(
    (await post({ "Sec-Fetch-Site": "cross-site", "X-Meshgate-Drain": "1" })).status,
    403,
  );
  const bare = await post({});
  assert.equal(bare.status, 403);
  assert.match(bare.error!, /X-Meshgate-Drain: 1/);
  // DNS rebinding: a page whose own name now points at 127.0.0.1 is "same-origin" with itself.
  const rebound = await post(
    { Origin: "http://evil.example:19000", "X-Meshgate-Drain": "1" },
    "http://evil.example:19000/v1/drain",
  );
  assert.equal(rebound.status, 403);
  assert.match(rebound.error!, /loopback host/);
  assert.equal(m.webProxy.phase, "ready", "still not draining");
  // With a token, a foreign Origin is refused too, even with the right token.
  const guarded = createAdminApp({ proxy: m.webProxy, token: "s3cret", onDrain: () => {} });
  const withToken = { Authorization: "Bearer s3cret", Origin: "http://evil.example" };
  assert.equal(
    (await guarded.request("/v1/drain", { method: "POST", headers: withToken }, loopback)).status,
    403,
  );

  // The admin's own page (same origin, the header) and a command line client (no Origin) drain.
  const curl = createAdminApp({ proxy: m.webProxy, onDrain: () => {} });
  assert.equal(
    (await curl.request(
      "/v1/drain",
      { method: "POST", headers: { "X-Meshgate-Drain": "1" } },
      loopback,
    )).status,
    202,
  );
  assert.equal((await app.request("/v1/drain", ownPage, loopback)).status, 202);
  await eventually(() => m.webProxy.phase === "stopped");
});

Deno.test("admin: /v1/events streams lifecycle and connection events as SSE", async () => {
  await using m = await mesh();
  const ac = new AbortController();
  const app = createAdminApp({ proxy: m.webProxy, tickMs: 50, signal: ac.signal });
  const res = await app.request("/v1/events");
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const until = async (re: RegExp) => {
    const deadline = Date.now() + 5000;
    while (!re.test(text)) {
      if (Date.now() > deadline) throw new Error(`no ${re} in:\n${text.slice(-2000)}`);
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended");
      text += value;
    }
  };
  // Replayed on connect: the leaf and roots that were loaded, the phase.
  await until(/event: leaf\n/);
  await until(/event: phase\ndata: \{[^\n]*"phase":"ready"/);
  await until(/event: tick\n/);
  await roundTrip(await tcpClient(m.upstreamPort), "live");
  await until(/event: accepted\ndata: [^\n]*"listener":"upstream:db"/);
  await until(/event: closed\n/);
  ac.abort();
  await until(/$/);
  // The stream ends when the server shuts down.
  while (!(await reader.read()).done) { /* drain */ }
});

Deno.test("admin: /v1/explain says what would happen to a caller now, and where we would go", async () => {
  await using m = await mesh();
  const db = createAdminApp({ proxy: m.dbProxy });
  const before = await (await db.request("/v1/explain?source=web")).json();
  assert.equal(before.destination, "db");
  assert.match(before.sourceSpiffeId, /\/ns\/default\/dc\/dc1\/svc\/web$/);
  assert.equal(before.authorize.authorized, true);
  assert.equal(before.intention, null, "no intention matches yet (default policy)");
  assert.equal(before.verdict.allowed, true);
  await new OperatorClient(m.agent).upsertIntention("web", "db", { Action: "deny" });
  const after = await (await db.request("/v1/explain?source=web")).json();
  assert.deepEqual(after.intention, {
    authorized: false,
    reason: "Matched L4 intention: default/web => default/db (Precedence: 9, Action: DENY)",
  });
  assert.equal(after.verdict.allowed, false);
  assert.match(after.verdict.why, /Action: DENY/);
  assert.equal((await db.request("/v1/explain")).status, 400);
  const web = createAdminApp({ proxy: m.webProxy });
  const ours = await (await web.request("/v1/explain?source=web")).json();
  assert.equal(ours.upstreams[0].name, "db");
  assert.equal(ours.upstreams[0].targets[0].id, "db.default.default.dc1");
  assert.equal(ours.upstreams[0].targets[0].endpoints.length, 1);
});
