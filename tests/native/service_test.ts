// ConnectService (src/native/service.ts) on the test double: native ↔ native over HTTP and raw
// TCP, native ↔ meshgate sidecar both ways, identity in the handler, denied callers never reach
// it, pooled connections reused, rotation keeps serving; connect() says what the agent answered
// when it cannot get its leaf or roots; close() is idempotent and awaits the drain.
import assert from "node:assert/strict";
import { Hono } from "hono";
import { createAdminApp } from "../../src/admin/app.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { allowCallers, callerOf } from "../../src/native/hono.ts";
import { connect, ConnectService } from "../../src/native/service.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";
import { echoServer, roundTrip } from "../e2e/_net.ts";

/** Registers a Connect-native instance so that health/connect lists it. */
async function registerNative(agent: ReturnType<typeof clientFor>, name: string, port: number) {
  await agent.register({ ID: `${name}-1`, Name: name, Port: port, Connect: { Native: true } });
}

Deno.test("native: web fetches api over the mesh; api sees web's identity; pooled", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using api = await connect({ service: "api", agent });
  await using web = await connect({ service: "web", agent });
  assert.match(web.spiffeId!, /\/svc\/web$/);
  const accepted: ConnectionEvent[] = [];
  api.events.subscribe((e) => {
    if (e.type === "accepted") accepted.push(e);
  });
  const app = new Hono();
  app.get(
    "/whoami",
    (c) => c.json({ caller: callerOf(c)?.id.service, uri: callerOf(c)?.spiffeId }),
  );
  app.post("/orders", allowCallers("web"), async (c) => c.json({ got: await c.req.json() }, 201));
  const server = await api.serve(app.fetch, { hostname: "127.0.0.1", port: 0 });
  await registerNative(agent, "api", server.address.port);

  const who = await web.fetch("http://api.service.consul/whoami");
  assert.equal(who.status, 200);
  assert.deepEqual(await who.json(), { caller: "web", uri: web.spiffeId });
  const order = await web.fetch("http://api.service.consul/orders", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ item: "tea" }),
  });
  assert.equal(order.status, 201);
  assert.deepEqual(await order.json(), { got: { item: "tea" } });
  assert.equal(accepted.length, 1, "the second request reused the pooled connection");

  // The same route refuses another allowed-by-intentions caller that is not on its list.
  await using other = await connect({ service: "billing", agent });
  const denied = await other.fetch("http://api.service.consul/orders", {
    method: "POST",
    body: "{}",
  });
  assert.equal(denied.status, 403);
  await denied.body?.cancel();
  await server.close();
  await agent.close();
});

Deno.test("native: a caller denied by intentions never reaches the handler", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using api = await connect({ service: "api", agent });
  await using web = await connect({ service: "web", agent });
  let calls = 0;
  const server = await api.serve(() => {
    calls++;
    return new Response("secret");
  }, { hostname: "127.0.0.1", port: 0 });
  await registerNative(agent, "api", server.address.port);
  await new OperatorClient(agent).upsertIntention("web", "api", { Action: "deny" });
  await assert.rejects(web.fetch("http://api.service.consul/"), TypeError);
  assert.equal(calls, 0);
  await eventually(() =>
    api.events.recent().some((e) => e.type === "refused" && e.refusal.reason === "denied")
  );
  await server.close();
  await agent.close();
});

Deno.test("native: raw TCP with listen() and dial(), identity on each connection", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using db = await connect({ service: "db", agent });
  await using web = await connect({ service: "web", agent });
  const listener = await db.listen({ hostname: "127.0.0.1", port: 0 });
  await registerNative(agent, "db", listener.address.port);
  const served = (async () => {
    for await (const { socket, caller } of listener) {
      socket.write(`hello ${caller.id.service};`);
      socket.pipe(socket);
    }
  })();
  const s = await web.dial("db");
  let got = "";
  s.on("data", (d) => (got += d));
  s.write("ping");
  await eventually(() => got === "hello web;ping");
  s.destroy();
  await listener.close();
  await served;
  await agent.close();
});

Deno.test("native ↔ meshgate sidecar, both directions", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  // native web → sidecar-fronted db
  const dbApp = await echoServer();
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: dbApp.port,
    Connect: { SidecarService: { Port: freePort() } },
  });
  await using dbProxy = await startProxy({ agent, sidecarFor: "db-1" });
  await dbProxy.ready;
  await eventually(async () =>
    (await agent.healthConnect("db", { passing: true })).value.length === 1
  );
  await using web = await connect({ service: "web", agent });
  const s = await web.dial("db");
  assert.equal(new TextDecoder().decode(await roundTrip(s, "native→sidecar")), "native→sidecar");

  // sidecar-fronted client → native api
  await using api = await connect({ service: "api", agent });
  const server = await api.serve(
    (_req, { caller }) => new Response(`hi ${caller.id.service}`),
    { hostname: "127.0.0.1", port: 0 },
  );
  await registerNative(agent, "api", server.address.port);
  const up = freePort();
  await using client = await startProxy({
    agent,
    config: {
      service: "frontend",
      upstreams: [{ type: "service", name: "api", bind: { hostname: "127.0.0.1", port: up } }],
    },
  });
  await client.ready;
  const res = await fetch(`http://127.0.0.1:${up}/`, { headers: { Connection: "close" } });
  assert.equal(await res.text(), "hi frontend");
  await server.close();
  await dbApp.close();
  await agent.close();
});

Deno.test("native: a CA rotation keeps the server serving old and new connections", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using api = await connect({ service: "api", agent });
  await using web = await connect({ service: "web", agent });
  const server = await api.serve(() => new Response("ok"), { hostname: "127.0.0.1", port: 0 });
  await registerNative(agent, "api", server.address.port);
  assert.equal(await (await web.fetch("http://api.service.consul/")).text(), "ok");
  const before = api.material.leaf!.info.serial;
  await dev.rotateCA();
  await eventually(() => api.material.leaf!.info.serial !== before, 5000, "api's new leaf");
  await eventually(() => web.material.roots!.roots.Roots.length === 2, 5000, "web's roots");
  // The pooled connection (old material) still works; a fresh client uses the new material.
  assert.equal(await (await web.fetch("http://api.service.consul/")).text(), "ok");
  await using fresh = await connect({ service: "web", agent });
  assert.equal(await (await fresh.fetch("http://api.service.consul/")).text(), "ok");
  await server.close();
  await agent.close();
});

// The host name forms themselves: tests/native/names_test.ts.
Deno.test("native: fetch refuses a host that is not a mesh address, and one with no instance", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using web = await connect({ service: "web", agent });
  await assert.rejects(web.fetch("http://example.com/"), /is not a mesh address/);
  await assert.rejects(web.fetch("http://nobody.service.consul/"), /no healthy instances/);
  await agent.close();
});

Deno.test("native: the admin app works for a Connect-native service too", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using api = await connect({ service: "api", agent });
  await using web = await connect({ service: "web", agent });
  const server = await api.serve(() => new Response("ok"), { hostname: "127.0.0.1", port: 0 });
  await registerNative(agent, "api", server.address.port);
  const admin = createAdminApp({ proxy: api });
  assert.equal(await (await web.fetch("http://api.service.consul/")).text(), "ok");
  assert.equal((await admin.request("/ready")).status, 200);
  const state = await (await admin.request("/v1/state")).json();
  assert.equal(state.identity.service, "api");
  assert.equal(state.identity.spiffeId, api.spiffeId);
  assert.equal(state.connections.inbound, 1, "web's pooled connection is open");
  const metrics = await (await admin.request("/metrics")).text();
  assert.match(
    metrics,
    /^meshgate_connections_accepted_total\{direction="inbound",listener="inbound:api"\} 1$/m,
  );
  await server.close();
  await agent.close();
});

// connect() that cannot get its leaf or roots says what the agent answered (endpoint, status and
// Consul's own text), not only that time ran out.
const DENIED = `Permission denied: token with AccessorID '3e4f…' lacks permission ` +
  `'service:write' on "web"`;

Deno.test("native: connect() with a leaf the agent refuses (403) says the endpoint, status and Consul's text", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  dev.faults.add({ path: "/v1/agent/connect/ca/leaf/web", status: 403, body: DENIED });
  const err = await connect({ service: "web", agent, readyTimeoutMs: 500 }).catch((e) => e);
  assert.ok(err instanceof Error, String(err));
  assert.equal(
    err.message,
    `web: no leaf certificate from the agent at ${agent.config.baseUrl} within 500 ms: ` +
      `leaf: /v1/agent/connect/ca/leaf/web: HTTP 403: ${DENIED}`,
  );
});

Deno.test("native: connect() to an agent that is down says it could not reach it, for both", async () => {
  await using agent = clientFor({ address: `127.0.0.1:${freePort()}` });
  const err = await connect({ service: "web", agent, readyTimeoutMs: 300 }).catch((e) => e);
  assert.match(
    String(err),
    /no leaf certificate and roots from the agent at .* within 300 ms: roots: \/v1\/agent\/connect\/ca\/roots: agent unreachable: .*; leaf: \/v1\/agent\/connect\/ca\/leaf\/web: agent unreachable: /,
  );
});

Deno.test("native: a refused leaf is a readiness problem on /ready until the agent hands one out", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const allow = dev.faults.add({
    path: "/v1/agent/connect/ca/leaf/web",
    status: 403,
    body: DENIED,
  });
  await using web = new ConnectService({ service: "web", agent }, false);
  const admin = createAdminApp({ proxy: web });
  const said = `leaf: /v1/agent/connect/ca/leaf/web: HTTP 403: ${DENIED}`;
  await eventually(() => web.problems.includes(said), 5000, "the refusal among the problems");
  const refused = await admin.request("/ready");
  assert.equal(refused.status, 503);
  assert.ok(((await refused.json()) as { problems: string[] }).problems.includes(said));
  allow();
  await web.ready;
  assert.deepEqual(web.problems, []);
  assert.equal((await admin.request("/ready")).status, 200);
});

// ConnectService.close() is idempotent (#17.1): a second close() while the first drains an
// open connection resolves only when the first does, not at once.
Deno.test("native: a second close() while draining resolves only when the first does", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using db = await connect({ service: "db", agent });
  await using web = await connect({ service: "web", agent });
  const listener = await db.listen({ hostname: "127.0.0.1", port: 0 });
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: listener.address.port,
    Connect: { Native: true },
  });
  const served = (async () => {
    for await (const { socket } of listener) socket.pipe(socket);
  })();
  const s = await web.dial("db");
  let got = "";
  s.on("data", (d) => (got += d));
  const echo = async (line: string) => {
    const before = got.length;
    s.write(line);
    await eventually(() => got.slice(before) === line, 5000, `"${line}" echoed`);
  };
  await echo("open;");

  const order: string[] = [];
  const first = db.close(60_000).then(() => order.push("first"));
  const second = db.close(60_000).then(() => order.push("second"));
  assert.equal(db.close(), db.close(), "every caller gets the same drain");
  await echo("draining;"); // the open connection still flows while the service drains
  assert.equal(order.join(), "", "neither close() resolved while the connection is open");
  order.push("connection closed");
  s.destroy();
  await Promise.all([first, second]);
  assert.deepEqual(order, ["connection closed", "first", "second"]);
  assert.equal(db.phase, "stopped");
  await listener.close(); // ends the iteration (the service closed its gateway, not the queue)
  await served;
  await agent.close();
});

Deno.test("native: a server leaves inboundListeners when closed; 'db' and its host name share one upstream", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using db = await connect({ service: "db", agent });
  await using web = await connect({ service: "web", agent });
  const listener = await db.listen({ hostname: "127.0.0.1", port: 0 });
  const server = await db.serve(() => new Response("ok"), { hostname: "127.0.0.1", port: 0 });
  assert.equal(db.inboundListeners.length, 2);
  await server.close();
  assert.deepEqual(db.inboundListeners.map((g) => g.address.port), [listener.address.port]);
  await registerNative(agent, "db", listener.address.port);
  // Nobody iterates the listener: its authorized connection waits in the queue.
  const a = await web.dial("db");
  const b = await web.dial("db.service.consul");
  assert.deepEqual(web.upstreams.map((u) => u.name), ["native:db"], "one connector for both");
  const accepted = () => db.events.recent().filter((e) => e.type === "accepted").length;
  await eventually(() => accepted() === 2, 5000, "both connections handed to the listener");
  // The server's end of the connection goes away: the client reads its end.
  const ended = (s: typeof a) => new Promise<void>((r) => s.once("end", () => r()));
  const bothEnded = Promise.all([ended(a), ended(b)]);
  a.resume();
  b.resume();
  // Closing the listener drops at once what it accepted but never handed out: the drain (60 s)
  // is for connections the application holds.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all([listener.close(60_000), bothEnded]),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("close() waited on queued connections")), 5000);
    }),
  ]).finally(() => clearTimeout(timer));
  a.destroy();
  b.destroy();
  assert.deepEqual(db.inboundListeners, []);
  await agent.close();
});

Deno.test("native: serve() and listen() after close() fail naming the service", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const db = await connect({ service: "db", agent });
  await db.close();
  await assert.rejects(db.serve(() => new Response(), { port: 0 }), /^Error: db: closed$/);
  await assert.rejects(db.listen({ port: 0 }), /^Error: db: closed$/);
  assert.deepEqual(db.inboundListeners, []);
  await agent.close();
});
