// The leaf and roots client, hardened against Consul's known leaf-endpoint behaviour. Each test
// is named after the Consul issue it guards against.
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import { AgentClient } from "../../src/agent/client.ts";
import { parseGoDuration } from "../../src/agent/duration.ts";
import type { ProxyEvent } from "../../src/events/lifecycle.ts";
import { createLogger } from "../../src/net/log.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { parseCertificate } from "../../src/trust/certificate.ts";
import { clientFor, devAgent, eventually, registerEchoDb } from "../_helpers.ts";
import { outcome, roundTrip, tlsClient } from "./_net.ts";

Deno.test("consul#13302, #12319: the leaf watch starts non-blocking and blocks at most 60 s", async () => {
  await using dev = await devAgent();
  const leafRequests: URL[] = [];
  const agent = new AgentClient({
    address: dev.address,
    watchDefaults: { minIntervalMs: 0 },
    fetch: (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.pathname.startsWith("/v1/agent/connect/ca/leaf/")) leafRequests.push(url);
      return fetch(input, init);
    },
  });
  await agent.register({ ID: "db-1", Name: "db", Port: 1, Connect: { SidecarService: {} } });
  await using proxy = await startProxy({ agent, sidecarFor: "db-1" });
  await proxy.ready;
  await eventually(() => leafRequests.length >= 2, 5000, "a blocking leaf request");
  const [first, blocking] = leafRequests;
  assert.ok(first && blocking, "two leaf requests");
  assert.equal(first.searchParams.get("index"), null, "the first fetch does not block");
  assert.ok(Number(blocking.searchParams.get("index")) > 0);
  assert.ok(parseGoDuration(blocking.searchParams.get("wait")!) <= 60_000, blocking.search);
  await proxy.close();
  await agent.close();
});

Deno.test("consul#10871, #9862: an expired leaf from the agent is refused and asked for again", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const expired = await dev.ca.signLeaf("db", {
    notBefore: new Date(Date.now() - 2 * 3600_000),
    ttlMs: 3600_000,
  });
  // The agent answers the stale certificate twice (as a cache could), then the real one.
  dev.faults.add({
    path: "/v1/agent/connect/ca/leaf/db",
    status: 200,
    body: JSON.stringify({ ...expired.cert, CreateIndex: 5, ModifyIndex: 5 }),
    times: 2,
  });
  await agent.register({ ID: "db-1", Name: "db", Port: 1, Connect: { SidecarService: {} } });
  const events: ProxyEvent[] = [];
  await using proxy = await startProxy({ agent, sidecarFor: "db-1" });
  proxy.events.subscribe((e) => events.push(e));
  await proxy.ready;
  assert.equal(dev.faults.hits.get("/v1/agent/connect/ca/leaf/db"), 2);
  const serial = proxy.material.leaf!.cert.SerialNumber;
  assert.notEqual(serial, expired.cert.SerialNumber);
  assert.ok(proxy.material.leaf!.info.notAfter.getTime() > Date.now());
  assert.ok(
    !events.some((e) => e.type === "leaf" && e.serial === expired.cert.SerialNumber),
    "the expired leaf was never installed",
  );
  await proxy.close();
  await agent.close();
});

Deno.test("consul#8681: after a rotation, trust includes every root the agent lists until it drops it", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const { app, port } = await registerEchoDb(agent);
  await using proxy = await startProxy({ agent, sidecarFor: "db-1" });
  await proxy.ready;
  // A caller still holding a leaf from the old root (its agent has not re-issued yet).
  const oldLeaf = (await agent.leaf("web")).value;
  const oldRoots = (await agent.roots()).value.Roots.map((r) => r.RootCert);
  await dev.rotateCA();
  await eventually(() => proxy.material.roots?.roots.Roots.length === 2, 5000, "two roots");
  const roots = (await agent.roots()).value.Roots.map((r) => r.RootCert);
  const before = await tlsClient(port, {
    cert: oldLeaf.CertPEM,
    key: oldLeaf.PrivateKeyPEM,
    ca: [...oldRoots, ...roots],
  });
  assert.equal(new TextDecoder().decode(await roundTrip(before, "old leaf")), "old leaf");
  // Once the agent drops the old root, its leaves are no longer trusted.
  dev.pruneRoots();
  await eventually(() => proxy.material.roots?.roots.Roots.length === 1, 5000, "one root");
  const after = await tlsClient(port, {
    cert: oldLeaf.CertPEM,
    key: oldLeaf.PrivateKeyPEM,
    ca: [...oldRoots, ...roots],
  }).catch((e) => e);
  if (!(after instanceof Error)) assert.equal(await outcome(after, "x"), "closed");
  assert.equal(app.connections(), 1, "only the first connection reached the app");
  await proxy.close();
  await app.close();
  await agent.close();
});

Deno.test("leaf watchdog: within the expiry margin without a renewal, the proxy warns, asks again and is not ready", async () => {
  await using dev = await devAgent();
  let leafRequests = 0;
  const agent = new AgentClient({
    address: dev.address,
    watchDefaults: { minIntervalMs: 0 },
    fetch: (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.pathname.startsWith("/v1/agent/connect/ca/leaf/")) leafRequests++;
      return fetch(input, init);
    },
  });
  await agent.register({ ID: "db-1", Name: "db", Port: 1, Connect: { SidecarService: {} } });
  // The margin puts the leaf's warning point 4 s from now (room for a loaded machine to start
  // the proxy before it); the agent renews the leaf only hours later.
  const leaf = await parseCertificate((await agent.leaf("db")).value.CertPEM);
  const marginMs = leaf.notAfter.getTime() - Date.now() - 4000;
  const warnings: string[] = [];
  await using proxy = await startProxy({
    agent,
    sidecarFor: "db-1",
    limits: { leafExpiryMarginMs: marginMs },
    log: createLogger({ level: "warn", json: true, write: (l) => warnings.push(l) }),
  });
  await proxy.ready;
  const admin = createAdminApp({ proxy, leafExpiryMarginMs: marginMs });
  assert.equal((await admin.request("/ready")).status, 200);
  const asked = leafRequests;
  await eventually(
    () => warnings.some((l) => l.includes("no renewed leaf from the agent yet")),
    10_000,
    "the watchdog's warning",
  );
  // The watchdog warns, then asks: wait for the request rather than race it.
  await eventually(() => leafRequests > asked, 5000, "the agent to be asked again");
  const ready = await admin.request("/ready");
  assert.equal(ready.status, 503);
  assert.match(JSON.stringify(await ready.json()), /has not been renewed/);
  await proxy.close();
  await agent.close();
});
