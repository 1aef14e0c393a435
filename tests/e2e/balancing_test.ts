// Load balancing like Envoy: Consul's Weights, least connections, passive outlier ejection.
import assert from "node:assert/strict";
import type net from "node:net";
import { OperatorClient } from "../../src/agent/operator.ts";
import { startUpstream } from "../../src/outbound/listener.ts";
import { type Proxy, startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort, nth } from "../_helpers.ts";
import { echoServer, roundTrip, tcpClient } from "./_net.ts";

/** Two db instances (each an echo app behind a meshgate sidecar) and web with an upstream. */
async function twoInstances(
  opts: { weights?: [number, number]; lbPolicy?: string; checksAlwaysPass?: boolean } = {},
) {
  const dev = await devAgent(
    opts.checksAlwaysPass ? { probeTcp: () => Promise.resolve(true) } : {},
  );
  const agent = clientFor(dev);
  const apps = [await echoServer(), await echoServer()] as const;
  const proxies: Proxy[] = [];
  for (const [i, app] of apps.entries()) {
    await agent.register({
      ID: `db-${i + 1}`,
      Name: "db",
      Port: app.port,
      Connect: {
        SidecarService: {
          Port: freePort(),
          Weights: { Passing: opts.weights?.[i] ?? 1, Warning: 1 },
        },
      },
    });
    const p = await startProxy({ agent, sidecarFor: `db-${i + 1}` });
    await p.ready;
    proxies.push(p);
  }
  const upstreamPort = freePort();
  await agent.register({
    ID: "web-1",
    Name: "web",
    Port: 1,
    Connect: {
      SidecarService: {
        Port: freePort(),
        Proxy: {
          Upstreams: [{
            DestinationName: "db",
            LocalBindPort: upstreamPort,
            ...(opts.lbPolicy ? { Config: { lb_policy: opts.lbPolicy } } : {}),
          }],
        },
      },
    },
  });
  const web = await startProxy({ agent, sidecarFor: "web-1" });
  await web.ready;
  await eventually(async () =>
    (await agent.healthConnect("db", { passing: true })).value.length === 2
  );
  await eventually(() =>
    nth(web.upstreams, 0, "web's upstream").resolver!.targets.get("db.default.default.dc1")!
      .endpoints.length === 2
  );
  return {
    dev,
    agent,
    apps,
    proxies,
    web,
    upstreamPort,
    async [Symbol.asyncDispose]() {
      await web.close();
      for (const p of proxies) await p.close();
      for (const a of apps) await a.close();
      await agent.close();
      await dev.close();
    },
  };
}

Deno.test("balancing: Consul's Weights share new connections (3:1)", async () => {
  await using t = await twoInstances({ weights: [3, 1] });
  for (let i = 0; i < 40; i++) await roundTrip(await tcpClient(t.upstreamPort), "w");
  const [a, b] = [t.apps[0].connections(), t.apps[1].connections()];
  console.log(`held: 40 connections split ${a}:${b} for weights 3:1`);
  assert.equal(a + b, 40);
  assert.equal(a, 30, "smooth weighted round robin is exact over a full cycle");
});

for (const via of ["upstream Config.lb_policy", "service-resolver LoadBalancer"] as const) {
  Deno.test(`balancing: least connections (${via}) sends new connections where fewest are open`, async () => {
    await using t = await twoInstances(
      via === "upstream Config.lb_policy" ? { lbPolicy: "least_connections" } : {},
    );
    if (via === "service-resolver LoadBalancer") {
      await new OperatorClient(t.agent).putConfigEntry({
        Kind: "service-resolver",
        Name: "db",
        LoadBalancer: { Policy: "least_request" },
      });
      await eventually(() =>
        nth(t.web.upstreams, 0, "web's upstream").resolver!.policy === "least_connections"
      );
    }
    await leastConnections(t);
  });
}

async function leastConnections(t: Awaited<ReturnType<typeof twoInstances>>) {
  const open: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = await tcpClient(t.upstreamPort);
    s.on("data", () => {});
    s.write("x");
    open.push(s);
    await eventually(() => t.apps[0].connections() + t.apps[1].connections() === i + 1);
  }
  assert.deepEqual(t.apps.map((x) => x.connections()), [2, 2]);
  // Close the two that went to the first instance: the next two go there.
  const health = nth(t.web.upstreams, 0, "web's upstream").endpointHealth;
  assert.deepEqual([...health.values()].map((h) => h.active), [2, 2]);
  const [firstId] = [...health.keys()];
  assert.ok(firstId, "an endpoint is tracked");
  const toFirst = open.filter((_, i) => i % 2 === 0); // 0 and 2 went to the first (ties: order)
  for (const s of toFirst) s.destroy();
  await eventually(() => health.get(firstId)!.active === 0, 5000, "the first instance idle");
  const before = t.apps.map((x) => x.connections());
  for (let i = 0; i < 2; i++) {
    const s = await tcpClient(t.upstreamPort);
    s.on("data", () => {});
    s.write("y");
    open.push(s);
  }
  await eventually(() => t.apps[0].connections() + t.apps[1].connections() === 6);
  const after = t.apps.map((x, i) => x.connections() - nth(before, i, "count before"));
  assert.ok(after.includes(2), `both new connections went to the idle instance: ${after}`);
  for (const s of open) s.destroy();
}

Deno.test("balancing: an endpoint that keeps failing is ejected (passive outlier ejection)", async () => {
  // The catalog keeps listing db-2 as passing after its sidecar is gone (as between two runs
  // of a 10 s check): the window passive ejection exists for.
  await using t = await twoInstances({ checksAlwaysPass: true });
  await nth(t.proxies, 1, "db-2's sidecar").close();
  const failed: string[] = [];
  // No cooldown, so plain round robin keeps offering the dead endpoint its turn.
  await using up = await startUpstream({
    agent: t.agent,
    material: t.web.material,
    upstream: { type: "service", name: "db", bind: { hostname: "127.0.0.1", port: freePort() } },
    failureCooldownMs: 0,
    onEvent: (e) => {
      if (e.type === "dial_failed") failed.push(e.endpoint);
    },
  });
  const port = (up.address as { port: number }).port;
  let served = 0;
  for (let i = 0; i < 12; i++) {
    const got = await roundTrip(await tcpClient(port), "e").catch(() => undefined);
    if (got?.length) served++;
  }
  assert.equal(served, 12, "every connection was served (retried on the healthy endpoint)");
  assert.equal(failed.length, 3, `the dead endpoint was dialled until ejected: ${failed}`);
  const dead = up.endpointHealth.get(nth(failed, 0, "failed dial"))!;
  assert.ok(dead.ejectedUntil! > Date.now(), "ejected");
  assert.equal(dead.ejections, 1);
  console.log(`held: 12 connections served; the dead endpoint failed 3 dials, then was ejected`);
});

Deno.test("balancing: a connection is retried on another endpoint only before any byte was sent", async () => {
  await using t = await twoInstances();
  // db-1's sidecar still answers mTLS, but its application is gone: the mesh connection is
  // accepted, the caller's bytes go out, and then db-1 closes it. That is not retried (the
  // bytes may have been acted on); only dials that fail are.
  await t.apps[0].close();
  const outcomes: string[] = [];
  for (let i = 0; i < 4; i++) {
    const got = await roundTrip(await tcpClient(t.upstreamPort), "once").catch(() => undefined);
    outcomes.push(got?.length ? new TextDecoder().decode(got) : "closed");
  }
  const served = outcomes.filter((o) => o === "once").length;
  assert.equal(
    served,
    2,
    `round robin: half went to db-1 and were closed, not retried: ${outcomes}`,
  );
  assert.equal(t.apps[1].connections(), 2, "db-2 saw only its own share");
  console.log(`held: 4 connections, 2 closed by db-1 without a retry, 2 served by db-2`);
});
