// startDevAgent() and probeTcp() (src/devagent/server.ts): the double over real HTTP on loopback
// with real TCP checks; its address in the forms CONSUL_HTTP_ADDR and URLs take, IPv6 bracketed;
// close() releases blocked queries and stops serving.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { probeTcp, startDevAgent } from "../../src/devagent/server.ts";
import { eventually } from "../_helpers.ts";

Deno.test("startDevAgent: serves on 127.0.0.1:0 by default, its address in both forms", async () => {
  await using dev = await startDevAgent({ blockingJitter: false });
  assert.ok(dev.port > 0);
  assert.equal(dev.address, `127.0.0.1:${dev.port}`);
  assert.equal(dev.url, `http://127.0.0.1:${dev.port}`);
  const self = await fetch(`${dev.url}/v1/agent/self`);
  assert.equal(self.status, 200);
  assert.equal((await self.json()).Config.Datacenter, "dc1");
  // The agent client reads through it, with the double's state behind.
  await using agent = new AgentClient({ address: dev.address });
  assert.equal((await agent.roots()).value.ActiveRootID, dev.ca.activeRoot.ID);
});

Deno.test("startDevAgent: an IPv6 loopback bind is bracketed in url and address", async () => {
  await using dev = await startDevAgent({ hostname: "::1", blockingJitter: false });
  assert.equal(dev.address, `[::1]:${dev.port}`);
  assert.equal(dev.url, `http://[::1]:${dev.port}`);
  await using agent = new AgentClient({ address: dev.address });
  assert.equal((await agent.roots()).value.TrustDomain, dev.ca.trustDomain);
});

Deno.test("startDevAgent: close() releases a blocked query at once and stops serving", async () => {
  const dev = await startDevAgent({ blockingJitter: false });
  const index = (await fetch(`${dev.url}/v1/agent/connect/ca/roots`).then(async (r) => {
    await r.body?.cancel();
    return r.headers.get("X-Consul-Index");
  }))!;
  const blocked = fetch(`${dev.url}/v1/agent/connect/ca/roots?index=${index}&wait=10m`);
  await new Promise((r) => setTimeout(r, 50)); // the query is waiting in the double
  const started = performance.now();
  await dev.close();
  const answer = await blocked.then(async (r) => {
    await r.body?.cancel();
    return r.status;
  }, () => "cut");
  assert.ok(answer === 200 || answer === "cut", String(answer));
  assert.ok(performance.now() - started < 5000, "not held for the 10 min wait");
  await assert.rejects(fetch(`${dev.url}/v1/agent/self`), TypeError);
  await dev.close(); // a second close (e.g. \`await using\` after an explicit one) is fine
});

Deno.test("startDevAgent: a sidecar's TCP check passes once something listens on its port", async () => {
  await using dev = await startDevAgent({ blockingJitter: false, tcpCheckIntervalMs: 20 });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await using agent = new AgentClient({ address: dev.address });
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: 1,
    Connect: { SidecarService: { Port: port } },
  });
  const status = () =>
    dev.catalog.checksOf("db-1-sidecar-proxy").find((c) => c.Type === "tcp")?.Status;
  await eventually(() => status() === "critical", 5000, "critical while nothing listens");
  using up = Deno.listen({ hostname: "127.0.0.1", port });
  (async () => {
    for await (const c of up) c.close();
  })().catch(() => {});
  await eventually(() => status() === "passing", 5000, "passing once the port answers");
});

Deno.test("probeTcp: true when something accepts on host:port, false otherwise; IPv6 in brackets", async () => {
  using v4 = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using v6 = Deno.listen({ hostname: "::1", port: 0 });
  const accepting = Promise.all([v4, v6].map(async (l) => {
    for await (const c of l) c.close();
  })).catch(() => {});
  assert.equal(await probeTcp(`127.0.0.1:${v4.addr.port}`), true);
  assert.equal(await probeTcp(`[::1]:${v6.addr.port}`), true);
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const free = closed.addr.port;
  closed.close();
  assert.equal(await probeTcp(`127.0.0.1:${free}`), false);
  assert.equal(await probeTcp("not a host:port"), false, "garbage is a failed probe, not a throw");
  v4.close();
  v6.close();
  await accepting;
});
