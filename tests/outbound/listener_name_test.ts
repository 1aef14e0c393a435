// Two upstreams of one service in two datacenters get two listener names — `upstream:db` (the
// local one, as before) and `upstream:db@dc2` — in events, metrics, /v1/state and /v1/connections,
// so their series never mix. The double knows one datacenter, so web's client plays "dc2": it
// answers dc2's chain and endpoints with dc1's, renamed (the peer then proves dc1, not dc2).
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import type { ProxyState } from "../../src/admin/state.ts";
import { AgentClient } from "../../src/agent/client.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { upstreamListenerName } from "../../src/outbound/connector.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, registerEchoDb } from "../_helpers.ts";
import { roundTrip, tcpClient } from "../e2e/_net.ts";
import { parseExposition } from "../admin/_prometheus.ts";

Deno.test("upstreamListenerName: local keeps upstream:<name>; another datacenter adds @<dc>", () => {
  assert.equal(upstreamListenerName({ name: "db" }), "upstream:db");
  assert.equal(upstreamListenerName({ name: "db" }, "dc1"), "upstream:db");
  assert.equal(upstreamListenerName({ name: "db", datacenter: "dc1" }, "dc1"), "upstream:db");
  assert.equal(upstreamListenerName({ name: "db", datacenter: "dc2" }, "dc1"), "upstream:db@dc2");
  // Not known yet to be the local one: named with its datacenter.
  assert.equal(upstreamListenerName({ name: "db", datacenter: "dc1" }), "upstream:db@dc1");
});

/** A client of `dev` whose requests naming dc2 are answered by `dev` as if it were dc2. */
function dc2Client(address: string): AgentClient {
  const viaDc2: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const chainInDc2 = url.searchParams.get("compile-dc") === "dc2";
    if (chainInDc2) url.searchParams.delete("compile-dc");
    if (url.searchParams.get("dc") === "dc2") url.searchParams.delete("dc");
    const res = await fetch(url, init);
    if (!chainInDc2) return res;
    const text = (await res.text()).replaceAll("dc1", "dc2");
    return new Response(text, { status: res.status, headers: res.headers });
  };
  return new AgentClient({
    address,
    fetch: viaDc2,
    watchDefaults: { minIntervalMs: 0, backoffBaseMs: 20, backoffMaxMs: 200 },
  });
}

Deno.test("upstream: db in dc1 and db in dc2 are upstream:db and upstream:db@dc2 in events, metrics and state", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const db = await registerEchoDb(agent);
  await using webAgent = dc2Client(dev.address);
  const events: ConnectionEvent[] = [];
  await using dbProxy = await startProxy({ agent, sidecarFor: "db-1" });
  const bind = { hostname: "127.0.0.1", port: 0 };
  await using web = await startProxy({
    agent: webAgent,
    config: {
      service: "web",
      upstreams: [
        { type: "service", name: "db", bind },
        { type: "service", name: "db", datacenter: "dc2", bind, connectTimeoutMs: 1000 },
        // The local datacenter named explicitly: still the local name.
        { type: "service", name: "db", datacenter: "dc1", bind },
      ],
    },
    onEvent: (e) => events.push(e),
  });
  const admin = createAdminApp({ proxy: web }); // counts from here on
  try {
    await Promise.all([dbProxy.ready, web.ready]);
    await eventually(async () =>
      (await agent.healthConnect("db", { passing: true })).value.length === 1
    );
    const [local, remote, explicitLocal] = web.upstreams;
    assert.deepEqual(
      [local!.name, remote!.name, explicitLocal!.name],
      ["upstream:db", "upstream:db@dc2", "upstream:db"],
    );
    const port = (u: typeof local) => (u!.address as { port: number }).port;

    // Local: bytes flow, counted under upstream:db.
    await eventually(() =>
      local!.resolver!.targets.get("db.default.default.dc1")?.endpoints.length === 1
    );
    const echoed = await roundTrip(await tcpClient(port(local)), "abc");
    assert.equal(new TextDecoder().decode(echoed), "abc");
    // dc2: the peer proves dc1, so the dial fails, counted under upstream:db@dc2.
    await eventually(() =>
      remote!.resolver!.targets.get("db.default.default.dc2")?.endpoints.length === 1
    );
    await roundTrip(await tcpClient(port(remote)), "x").catch(() => {});
    await eventually(() => events.some((e) => e.type === "refused"), 5000, "the dc2 refusal");
    await eventually(() => events.some((e) => e.type === "closed"), 5000, "the local close");

    const listeners = (type: string) =>
      events.flatMap((e) => e.type === type && "listener" in e ? [e.listener] : []);
    assert.deepEqual(listeners("accepted"), ["upstream:db"]);
    assert.deepEqual(listeners("closed"), ["upstream:db"]);
    assert.deepEqual([...new Set(listeners("dial_failed"))], ["upstream:db@dc2"]);
    assert.deepEqual(listeners("refused"), ["upstream:db@dc2"]);

    const metrics = parseExposition(await (await admin.request("/metrics")).text());
    assert.equal(metrics.value("meshgate_sent_bytes_total", { listener: "upstream:db" }), 3);
    assert.equal(metrics.value("meshgate_sent_bytes_total", { listener: "upstream:db@dc2" }), 0);
    assert.equal(metrics.value("meshgate_connections_active", { listener: "upstream:db@dc2" }), 0);
    assert.ok(
      metrics.value("meshgate_upstream_connect_failures_total", {
        upstream: "db@dc2",
        target: "db.default.default.dc2",
      }) >= 1,
    );
    assert.equal(
      metrics.value("meshgate_upstream_connect_seconds_count", {
        upstream: "db",
        target: "db.default.default.dc1",
      }),
      1,
    );
    assert.equal(metrics.value("meshgate_upstream_endpoints_ejected", { upstream: "db@dc2" }), 0);

    const state = await (await admin.request("/v1/state")).json() as ProxyState;
    assert.deepEqual(
      state.upstreams.map((u) => [u.listener, u.name, u.datacenter ?? ""]),
      [["upstream:db", "db", ""], ["upstream:db@dc2", "db", "dc2"], ["upstream:db", "db", "dc1"]],
    );
  } finally {
    await db.app.close();
  }
});
