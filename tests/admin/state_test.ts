// proxyState() and openConnections() (src/admin/state.ts) read from a running proxy pair and a
// Connect-native service on the test double: identity, certificates as of a given `now`,
// upstream targets and endpoints, connection counts, the agent's reachability and each watch —
// never a private key.
import assert from "node:assert/strict";
import { openConnections, proxyState } from "../../src/admin/state.ts";
import { connect } from "../../src/native/service.ts";
import { clientFor, devAgent, eventually, nth } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";
import { roundTrip, tcpClient } from "../e2e/_net.ts";

Deno.test("proxyState: identity, certificates, listeners and upstreams of a sidecar, no secrets", async () => {
  await using m = await mesh();
  assert.equal(
    new TextDecoder().decode(await roundTrip(await tcpClient(m.upstreamPort), "x")),
    "x",
  );
  const leaf = m.webProxy.material.leaf;
  assert.ok(leaf, "web's leaf is loaded");
  const now = leaf.info.notAfter.getTime() - 90_000;
  const s = proxyState(m.webProxy, now);
  assert.ok(!JSON.stringify(s).includes("PRIVATE KEY"), "never a private key");
  assert.equal(s.phase, "ready");
  assert.equal(s.identity.service, "web");
  assert.equal(s.identity.proxyId, "web-1-sidecar-proxy");
  assert.match(s.identity.spiffeId!, /^spiffe:\/\/[^/]+\.consul\/ns\/default\/dc\/dc1\/svc\/web$/);
  assert.equal(s.identity.trustDomain, s.identity.spiffeId!.split("/")[2]);
  // Certificates as of `now`.
  assert.equal(s.leaf!.expiresInSeconds, 90);
  assert.equal(s.leaf!.serial, leaf.info.serial);
  assert.equal(s.leaf!.notAfter, leaf.info.notAfter.toISOString());
  assert.equal(s.leaf!.lastRenewalAt, new Date(m.webProxy.lastEvent("leaf")!.at).toISOString());
  assert.equal(s.roots!.roots.filter((r) => r.active).length, 1);
  assert.equal(s.roots!.activeRootId, nth(s.roots!.roots, 0, "root").id);
  assert.equal(
    s.publicListener?.address,
    `0.0.0.0:${m.webProxy.inboundListeners[0]!.address.port}`,
  );
  assert.equal(s.publicListener?.app, "127.0.0.1:1", "web's registration says port 1");
  assert.equal(s.upstreams.length, 1);
  const up = nth(s.upstreams, 0, "upstream");
  assert.equal(up.name, "db");
  assert.equal(up.listener, "upstream:db");
  assert.equal("datacenter" in up, false, "no datacenter named, none shown");
  assert.equal(up.bind, `127.0.0.1:${m.upstreamPort}`);
  const target = nth(up.targets, 0, "target");
  assert.equal(target.id, "db.default.default.dc1");
  assert.equal(target.resultsFilteredByAcls, false);
  const endpoint = nth(target.endpoints, 0, "endpoint");
  assert.equal(endpoint.lastError, undefined);
  assert.equal(endpoint.ejectedUntil, undefined);
  assert.equal(endpoint.weight, 1);
  assert.equal(s.agent.address, m.agent.config.baseUrl);
  assert.equal(s.agent.reachable, true);
  assert.ok(s.watches.some((w) => w.key === "roots" && w.healthy && w.failures === 0));
  assert.ok(s.watches.some((w) => w.key === "leaf:web"));
});

Deno.test("proxyState counts open connections by direction; openConnections lists them newest first", async () => {
  await using m = await mesh();
  const a = await tcpClient(m.upstreamPort);
  let echoed = "";
  a.on("data", (d) => (echoed += d));
  a.write("hello");
  await eventually(() => echoed === "hello");
  await new Promise((r) => setTimeout(r, 20)); // b is measurably younger
  const b = await tcpClient(m.upstreamPort);
  b.on("data", () => {});
  b.write("hi");
  await eventually(() => openConnections(m.webProxy).length === 2, 5000, "both listed");
  await eventually(() => proxyState(m.dbProxy).connections.inbound === 2, 5000, "db's side");
  assert.deepEqual(proxyState(m.webProxy).connections, { inbound: 0, outbound: 2 });
  assert.equal(nth(proxyState(m.webProxy).upstreams, 0, "upstream").connections, 2);
  assert.equal(proxyState(m.dbProxy).publicListener?.connections, 2);

  await eventually(() => openConnections(m.webProxy).some((c) => c.bytesIn === 2));
  const list = openConnections(m.webProxy);
  assert.deepEqual(list.map((c) => c.bytesOut), [2, 5], "newest (b) first");
  const first = nth(list, 1, "a's connection");
  assert.equal(first.direction, "outbound");
  assert.equal(first.listener, "upstream:db");
  assert.match(first.peer, /^db@127\.0\.0\.1:\d+$/);
  assert.match(first.remote, /^127\.0\.0\.1:\d+$/);
  assert.equal(first.bytesIn, 5, "what came back from the upstream");
  assert.ok(first.ageSeconds > nth(list, 0, "b's connection").ageSeconds);
  assert.deepEqual(openConnections(m.webProxy, 1).map((c) => c.bytesOut), [2], "the limit");
  // The inbound side names the caller by its SPIFFE ID and the listener by the service.
  const inbound = openConnections(m.dbProxy);
  assert.equal(inbound.length, 2);
  for (const c of inbound) {
    assert.equal(c.direction, "inbound");
    assert.equal(c.listener, "inbound:db");
    assert.match(c.peer, /^spiffe:\/\/[^/]+\/ns\/default\/dc\/dc1\/svc\/web$/);
  }
  assert.deepEqual(inbound.map((c) => c.bytesIn).sort(), [2, 5], "from the mesh side");
  a.destroy();
  b.destroy();
  await eventually(() => openConnections(m.webProxy).length === 0, 5000, "none left");
  assert.deepEqual(proxyState(m.webProxy).connections, { inbound: 0, outbound: 0 });
});

Deno.test("proxyState: an agent that stops answering is unreachable, with the failure and each watch's errors", async () => {
  const dev = await devAgent();
  const agent = clientFor(dev);
  await using api = await connect({ service: "api", agent });
  const before = proxyState(api);
  assert.equal(before.agent.reachable, true);
  assert.ok(before.agent.lastAnswerAt, "it answered");
  assert.equal(before.agent.lastFailure, undefined);
  await dev.close(); // the watches' next requests find nobody
  await eventually(
    () => proxyState(api).watches.some((w) => w.key === "roots" && w.failures > 0),
    5000,
    "a failed roots request",
  );
  const s = proxyState(api);
  assert.equal(s.agent.reachable, false);
  assert.ok(Date.parse(s.agent.lastFailureAt!) >= Date.parse(s.agent.lastAnswerAt!));
  assert.ok(s.agent.lastFailure, "the failure is kept");
  const roots = nth(s.watches.filter((w) => w.key === "roots"), 0, "roots watch");
  assert.equal(roots.healthy, false);
  assert.match(
    roots.lastError!,
    /^AgentNetworkError: GET \/v1\/agent\/connect\/ca\/roots: agent unreachable: /,
  );
  assert.equal(typeof roots.lastSuccessAgeSeconds, "number");
  // The certificates already loaded are still shown.
  assert.equal(s.identity.spiffeId, api.spiffeId);
  assert.ok(s.leaf && s.roots);
  await api.close();
  await agent.close();
});
