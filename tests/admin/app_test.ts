// The admin app through app.request(), on a real proxy pair (mesh of two sidecars).
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import { createProxyMetrics } from "../../src/admin/proxy_metrics.ts";
import type { ProxyState } from "../../src/admin/state.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import { eventually, nth } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";
import { roundTrip, tcpClient } from "../e2e/_net.ts";
import { parseExposition } from "./_prometheus.ts";

const loopback = { remoteAddr: { hostname: "127.0.0.1", port: 5555, transport: "tcp" } };
const remote = { remoteAddr: { hostname: "10.1.2.3", port: 5555, transport: "tcp" } };

Deno.test("admin: /healthz, /ready, and /v1/state describe the proxy without secrets", async () => {
  await using m = await mesh();
  const metrics = createProxyMetrics(m.webProxy);
  const app = createAdminApp({ proxy: m.webProxy, metrics });
  assert.equal(await (await app.request("/healthz")).text(), "ok");
  const ready = await app.request("/ready");
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { ready: true, problems: [] });

  // One connection through web's upstream shows up in the counts and endpoints.
  assert.equal(
    new TextDecoder().decode(await roundTrip(await tcpClient(m.upstreamPort), "x")),
    "x",
  );
  const res = await app.request("/v1/state");
  assert.equal(res.headers.get("content-type"), "application/json");
  const body = await res.text();
  assert.ok(!body.includes("PRIVATE KEY"), "never a private key");
  const s = JSON.parse(body) as ProxyState;
  assert.equal(s.phase, "ready");
  assert.equal(s.identity.service, "web");
  assert.equal(s.identity.proxyId, "web-1-sidecar-proxy");
  assert.match(s.identity.spiffeId!, /^spiffe:\/\/[^/]+\.consul\/ns\/default\/dc\/dc1\/svc\/web$/);
  assert.equal(s.identity.trustDomain, s.identity.spiffeId!.split("/")[2]);
  assert.ok(s.leaf!.expiresInSeconds > 3600);
  assert.equal(s.roots!.roots.filter((r) => r.active).length, 1);
  assert.equal(s.upstreams.length, 1);
  const up = nth(s.upstreams, 0, "upstream");
  assert.equal(up.name, "db");
  assert.equal(up.bind, `127.0.0.1:${m.upstreamPort}`);
  const target = nth(up.targets, 0, "target");
  assert.equal(target.id, "db.default.default.dc1");
  assert.equal(target.endpoints.length, 1);
  assert.equal(nth(target.endpoints, 0, "endpoint").lastError, undefined);
  assert.equal(s.agent.reachable, true);
  assert.ok(s.watches.some((w) => w.key === "roots" && w.healthy));
  assert.ok(s.watches.some((w) => w.key === "leaf:web"));
  metrics.close();
});

Deno.test("admin: /ready is 503 with the reasons while the proxy is not ready", async () => {
  await using m = await mesh();
  const app = createAdminApp({ proxy: m.dbProxy });
  await m.dbProxy.close();
  const res = await app.request("/ready");
  assert.equal(res.status, 503);
  const body = await res.json();
  assert.equal(body.ready, false);
  assert.ok(body.problems.includes("phase is stopped"), JSON.stringify(body));
});

Deno.test("admin: /v1/connections lists open connections with bytes and a limit", async () => {
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
  const first = list.find((c: { bytesOut: number }) => c.bytesOut === 5);
  assert.ok(first, JSON.stringify(list));
  assert.equal(first.direction, "outbound");
  assert.equal(first.listener, "upstream:db");
  assert.match(first.peer, /^db@127\.0\.0\.1:\d+$/);
  assert.equal(first.bytesIn, 5);
  assert.equal((await (await app.request("/v1/connections?limit=1")).json()).length, 1);
  assert.equal((await app.request("/v1/connections?limit=zero")).status, 400);
  a.destroy();
  b.destroy();
});

Deno.test("admin: /metrics is valid exposition with the proxy's counters and histograms", async () => {
  await using m = await mesh();
  const dbApp = createAdminApp({ proxy: m.dbProxy });
  const webApp = createAdminApp({ proxy: m.webProxy });
  assert.equal(
    new TextDecoder().decode(await roundTrip(await tcpClient(m.upstreamPort), "abc")),
    "abc",
  );
  await new OperatorClient(m.agent).upsertIntention("web", "db", { Action: "deny" });
  await roundTrip(await tcpClient(m.upstreamPort), "no").catch(() => {});
  await eventually(() => m.events.some((e) => e.type === "refused"));
  await eventually(() => m.events.filter((e) => e.type === "closed").length >= 2);

  const res = await dbApp.request("/metrics");
  assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const db = parseExposition(await res.text());
  const v = (name: string, labels: Record<string, string> = {}) => db.value(name, labels);
  assert.equal(v("meshgate_connections_accepted_total", { direction: "inbound" }), 1);
  assert.equal(
    v("meshgate_connections_refused_total", { direction: "inbound", reason: "denied" }),
    1,
  );
  assert.equal(
    v("meshgate_connections_refused_total", { direction: "inbound", reason: "no_cert" }),
    0,
  );
  // #17.2: the two timeouts are told apart, each series pre-set; no bare `timeout` any more.
  for (const direction of ["inbound", "outbound"]) {
    for (const reason of ["handshake_timeout", "authorize_timeout"]) {
      assert.equal(v("meshgate_connections_refused_total", { direction, reason }), 0, reason);
    }
    assert.ok(
      Number.isNaN(v("meshgate_connections_refused_total", { direction, reason: "timeout" })),
    );
  }
  assert.equal(v("meshgate_received_bytes_total", { listener: "inbound:db" }), 3);
  assert.equal(v("meshgate_sent_bytes_total", { listener: "inbound:db" }), 3);
  assert.equal(v("meshgate_connections_active", { listener: "inbound:db" }), 0);
  assert.equal(v("meshgate_authorize_seconds_count"), 1);
  assert.equal(v("meshgate_tls_handshake_seconds_count"), 1);
  assert.equal(v("meshgate_ready"), 1);
  assert.equal(v("meshgate_agent_reachable"), 1);
  assert.equal(v("meshgate_root_rotations_total"), 0);
  const leafExpiry = v("meshgate_leaf_expiry_timestamp_seconds");
  assert.equal(leafExpiry, Math.floor(m.dbProxy.material.leaf!.info.notAfter.getTime() / 1000));
  assert.equal(db.type("meshgate_authorize_seconds"), "histogram");
  assert.equal(db.type("meshgate_connections_accepted_total"), "counter");
  assert.equal(db.type("meshgate_connections_active"), "gauge");

  const web = parseExposition(await (await webApp.request("/metrics")).text());
  assert.equal(
    web.value("meshgate_upstream_connect_seconds_count", {
      upstream: "db",
      target: "db.default.default.dc1",
    }),
    2,
  );
  assert.equal(web.value("meshgate_sent_bytes_total", { listener: "upstream:db" }), 5);
});

Deno.test("admin: a root rotation and an unreachable endpoint are counted", async () => {
  await using m = await mesh();
  const app = createAdminApp({ proxy: m.webProxy });
  await m.dev.rotateCA();
  await eventually(async () =>
    parseExposition(await (await app.request("/metrics")).text()).value(
      "meshgate_root_rotations_total",
    ) === 1
  );
  await m.dbProxy.close(); // its registration stays: web's dial fails
  await roundTrip(await tcpClient(m.upstreamPort), "x").catch(() => {});
  const metrics = parseExposition(await (await app.request("/metrics")).text());
  assert.equal(
    metrics.value("meshgate_upstream_connect_failures_total", {
      upstream: "db",
      target: "db.default.default.dc1",
    }),
    1,
  );
  // The failure is kept per endpoint (and shown in /v1/state while the endpoint is listed; its
  // health check may remove it from the list any moment now).
  const [failure] = nth(m.webProxy.upstreams, 0, "upstream").endpointFailures.values();
  assert.ok(failure, "the endpoint's failure is kept");
  assert.match(failure.error, /refused|ECONNREFUSED/i);
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
  const wrong = { method: "POST", headers: { Authorization: "Bearer nope" } };
  assert.equal((await guarded.request("/v1/drain", wrong, loopback)).status, 401);
  assert.equal(drains, 0);
  const right = { method: "POST", headers: { Authorization: "Bearer s3cret" } };
  assert.equal((await guarded.request("/v1/drain", right, loopback)).status, 202);
  assert.equal(drains, 1);

  // The default drain closes the proxy.
  const real = createAdminApp({ proxy: m.webProxy, drainMs: 0 });
  assert.equal((await real.request("/v1/drain", ownPage, loopback)).status, 202);
  await eventually(() => m.webProxy.phase === "stopped");
  assert.equal((await real.request("/ready")).status, 503);
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
