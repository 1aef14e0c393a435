// Startup that waits like Consul (#16.7) and a drain that stops traffic first (#16.5):
// startProxy returns while the registration, leaf and roots are still missing, /ready says
// what it waits for, and everything is retried with backoff; -register failures are retried;
// closing a self-registered proxy deregisters it before draining.
import assert from "node:assert/strict";
import { startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";
import { readiness } from "./_proxy.ts";
import { echoServer, roundTrip, tcpClient } from "../e2e/_net.ts";

/** `p`, or a rejection after `ms`. */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("startup: a leaf endpoint answering 403 — startProxy returns, /ready says why, the leaf is asked again", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const app = await echoServer();
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: app.port,
    Connect: { SidecarService: { Port: freePort() } },
  });
  const denied = dev.faults.add({
    path: "/v1/agent/connect/ca/leaf/db",
    status: 403,
    body: "Permission denied",
  });
  const proxy = await within(3000, startProxy({ agent, sidecarFor: "db-1" }), "startProxy");
  try {
    await eventually(
      async () =>
        (await readiness(proxy)).problems.includes(
          "leaf: /v1/agent/connect/ca/leaf/db: HTTP 403: Permission denied",
        ),
      5000,
      "/ready to name the leaf endpoint and its answer",
    );
    assert.equal((await readiness(proxy)).status, 503);
    assert.equal(proxy.phase, "starting");
    const asked = dev.faults.hits.get("/v1/agent/connect/ca/leaf/db") ?? 0;
    await eventually(
      () => (dev.faults.hits.get("/v1/agent/connect/ca/leaf/db") ?? 0) > asked + 1,
      5000,
      "the leaf to be asked again",
    );
    denied(); // the token gets its permission
    await within(5000, proxy.ready, "ready once the leaf loads");
    assert.deepEqual(await readiness(proxy), { status: 200, problems: [] });
  } finally {
    await proxy.close();
    await app.close();
    await agent.close();
  }
});

Deno.test("startup: -proxy-id for a registration that does not exist yet is waited for, not an error", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const app = await echoServer();
  const proxy = await within(3000, startProxy({ agent, proxyId: "db-proxy" }), "startProxy");
  try {
    await eventually(
      async () =>
        (await readiness(proxy)).problems.some((p) =>
          p.startsWith("registration: /v1/agent/service/db-proxy: HTTP 404")
        ),
      5000,
      "/ready to say the registration is missing",
    );
    const port = freePort();
    await agent.register({
      Kind: "connect-proxy",
      ID: "db-proxy",
      Name: "db-proxy",
      Port: port,
      Proxy: { DestinationServiceName: "db", LocalServicePort: app.port },
    });
    await within(10_000, proxy.ready, "ready once registered");
    assert.equal(proxy.inbound?.address.port, port);
    assert.deepEqual(await readiness(proxy), { status: 200, problems: [] });
  } finally {
    await proxy.close();
    await app.close();
    await agent.close();
  }
});

Deno.test("startup: a -register failure is logged, reported and retried; the proxy keeps running", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const app = await echoServer();
  const refused = dev.faults.add({
    path: "/v1/agent/service/register",
    method: "PUT",
    status: 403,
    body: "Permission denied: token lacks permission 'service:write'",
  });
  const proxy = await within(
    3000,
    startProxy({
      agent,
      config: {
        service: "db",
        upstreams: [],
        publicListener: { hostname: "127.0.0.1", port: freePort() },
        app: { hostname: "127.0.0.1", port: app.port },
      },
      register: { id: "db-proxy", name: "db-proxy", heartbeatMs: 30 },
    }),
    "startProxy",
  );
  try {
    await within(5000, proxy.ready, "ready: the data plane does not need the registration");
    assert.deepEqual((await readiness(proxy)).problems, [
      "register db-proxy: /v1/agent/service/register: HTTP 403: " +
      "Permission denied: token lacks permission 'service:write'",
    ]);
    assert.equal(dev.catalog.get("db-proxy"), undefined);
    refused();
    await eventually(() => dev.catalog.get("db-proxy") !== undefined, 5000, "a retried register");
    await eventually(async () => (await readiness(proxy)).status === 200, 5000, "/ready 200");
  } finally {
    await proxy.close();
    await app.close();
    await agent.close();
  }
  assert.equal(dev.catalog.get("db-proxy"), undefined, "deregistered on close");
});

Deno.test("drain: a self-registered proxy deregisters before it drains, not after", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const app = await echoServer();
  const port = freePort();
  const proxy = await startProxy({
    agent,
    config: {
      service: "db",
      upstreams: [{ type: "service", name: "db", bind: { hostname: "127.0.0.1", port } }],
      publicListener: { hostname: "127.0.0.1", port: freePort() },
      app: { hostname: "127.0.0.1", port: app.port },
    },
    register: { id: "db-proxy", name: "db-proxy" },
  });
  await proxy.ready;
  await eventually(
    async () => (await agent.healthConnect("db", { passing: true })).value.length === 1,
    5000,
    "the proxy registered and passing",
  );
  // A connection through the mesh (the proxy's own upstream to itself) keeps the drain busy.
  const open = await tcpClient(port);
  let got = "";
  open.on("data", (d) => (got += d.toString()));
  open.write("open;");
  await eventually(() => got === "open;", 5000, "the connection to be open");
  let closed = false;
  const closing = proxy.close(10_000).then(() => (closed = true));
  await eventually(
    () => dev.catalog.get("db-proxy") === undefined,
    2000,
    "deregistration at the start of the drain",
  );
  assert.equal(closed, false, "still draining the open connection");
  assert.equal(proxy.phase, "draining");
  assert.equal((await roundTrip(open, "")).length, 0);
  await closing;
  await app.close();
  await agent.close();
});

Deno.test("register: a listener on every address (-listen :8443) registers no address, so the agent's is used", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const app = await echoServer();
  const proxy = await startProxy({
    agent,
    config: {
      service: "db",
      upstreams: [],
      publicListener: { hostname: "0.0.0.0", port: freePort() },
      app: { hostname: "127.0.0.1", port: app.port },
    },
    register: { id: "db-proxy", name: "db-proxy" },
  });
  try {
    await proxy.ready;
    assert.equal(dev.catalog.get("db-proxy")?.Address, "");
  } finally {
    await proxy.close();
    await app.close();
    await agent.close();
  }
});

Deno.test("startProxy: an empty proxyId or sidecarFor is a clear error", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await assert.rejects(startProxy({ agent, proxyId: "" }), /^ProxyConfigError: proxyId: is empty$/);
  await assert.rejects(startProxy({ agent, sidecarFor: "" }), /sidecarFor: is empty/);
  await agent.close();
});
