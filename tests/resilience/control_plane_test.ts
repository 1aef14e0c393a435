// Faults of the control plane, through the test double's fault injection: the agent down, slow,
// failing, lying. Open connections keep flowing, new ones fail closed (or use a recent answer
// within the configured TTL), watches recover by themselves, and /ready and /metrics tell the
// truth throughout. Each test prints the figures it held.
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import { AgentClient } from "../../src/agent/client.ts";
import type { ProxyEvent } from "../../src/events/lifecycle.ts";
import type { OutboundTls } from "../../src/outbound/listener.ts";
import { parseExposition } from "../admin/_prometheus.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";
import { outcome, roundTrip, tcpClient } from "../e2e/_net.ts";

/** web → db through two sidecars (tests/e2e/_mesh.ts); db's may cache authorize answers. */
async function pair(
  opts: {
    authorizeCacheTtlMs?: number;
    leafTtlMs?: number;
    leafExpiryMarginMs?: number;
    leg?: OutboundTls;
  } = {},
) {
  const m = await mesh({
    leafTtlMs: opts.leafTtlMs,
    webLimits: opts.leg ? { outboundTls: opts.leg } : undefined,
    dbLimits: { authorizeCacheTtlMs: opts.authorizeCacheTtlMs, authorizeTimeoutMs: 1000 },
  });
  const events: ProxyEvent[] = [];
  m.dbProxy.events.subscribe((e) => events.push(e));
  const admin = createAdminApp({
    proxy: m.dbProxy,
    leafExpiryMarginMs: opts.leafExpiryMarginMs,
  });
  const metrics = async () => parseExposition(await (await admin.request("/metrics")).text());
  const call = async (text: string) => {
    try {
      return new TextDecoder().decode(await roundTrip(await tcpClient(m.upstreamPort), text));
    } catch {
      return "";
    }
  };
  return Object.assign(m, {
    app: m.db,
    db: m.dbProxy,
    web: m.webProxy,
    admin,
    metrics,
    call,
    events,
  });
}

/** Makes every agent endpoint unreachable (the connection breaks), as a dead agent would. */
function agentDown(dev: { faults: { add(f: { path: string; drop: boolean }): () => void } }) {
  return dev.faults.add({ path: "/v1/", drop: true });
}

for (const leg of ["node", "native"] as const) {
  Deno.test(`resilience (${leg} outbound leg): agent down — open connections flow, new ones fail closed, recovery is automatic`, async () => {
    await using p = await pair({ leg });
    const open = await tcpClient(p.upstreamPort);
    let echoed = "";
    open.on("data", (d) => (echoed += d));
    open.write("before;");
    await eventually(() => echoed === "before;");

    const up = agentDown(p.dev);
    // A new connection is refused: authorize cannot be asked (fail closed).
    assert.equal(await p.call("new"), "");
    await eventually(
      async () => (await p.metrics()).value("meshgate_agent_reachable") === 0,
      10_000,
    );
    // Blocking watches notice on their next request: wake the roots watch.
    await p.dev.rotateCA();
    await eventually(async () => (await p.metrics()).value("meshgate_watch_backoff") >= 1, 10_000);
    // The soak keeps the agent down for two minutes; the open connection keeps flowing.
    if (Deno.env.get("MESHGATE_SOAK") === "1") await new Promise((r) => setTimeout(r, 120_000));
    for (let i = 0; i < 20; i++) open.write(`${i};`);
    await eventually(() => echoed.endsWith("19;"), 5000, "the open connection to keep flowing");
    await eventually(async () =>
      (await p.metrics()).value("meshgate_connections_refused_total", {
        direction: "inbound",
        reason: "authorize_error",
      }) >= 1
    );
    // /ready still tells the truth: the proxy can serve (cached leaf and roots are valid).
    assert.equal((await p.admin.request("/ready")).status, 200);
    const m = await p.metrics();
    assert.ok(m.value("meshgate_watch_errors_total") >= 1, "watch errors are counted");

    up(); // the agent is back
    await eventually(
      async () => (await p.metrics()).value("meshgate_agent_reachable") === 1,
      10_000,
    );
    await eventually(async () => (await p.call("after")) === "after", 10_000, "new connections");
    await eventually(
      () => p.db.agent.watches.every((w) => w.status.failures === 0),
      10_000,
      "every watch to recover",
    );
    open.write("still;");
    await eventually(() => echoed.endsWith("still;"));
    console.log(
      `held (${leg}): 1 open connection through the outage (${echoed.length} bytes echoed), ` +
        `${
          m.value("meshgate_watch_errors_total")
        } watch errors, new connections refused then allowed`,
    );
    open.destroy();
  });
}

Deno.test("resilience: agent down — a recent authorize answer within the TTL is used and counted", async () => {
  await using p = await pair({ authorizeCacheTtlMs: 60_000 });
  assert.equal(await p.call("warm"), "warm"); // web's answer is now cached on db's side
  const up = agentDown(p.dev);
  await eventually(async () => (await p.call("cached")) === "cached", 10_000);
  const used = (await p.metrics()).value("meshgate_authorize_cache_used_total");
  assert.equal(used, 1);
  up();
  console.log(`held: ${used} connection authorized from a cached answer while the agent was down`);
});

Deno.test("resilience: 500, 429 and malformed answers are counted, logged, and change nothing served", async () => {
  await using p = await pair();
  for (
    const fault of [{ status: 500, body: "rpc error" }, { status: 429, body: "slow down" }, {
      malformed: true,
    }]
  ) {
    const before = (await p.metrics()).value("meshgate_watch_errors_total", { watch: "roots" }) ||
      0;
    const remove = p.dev.faults.add({ path: "/v1/agent/connect/ca/roots", ...fault, times: 1 });
    // The first rotation answers the watch's request in flight, so the next request meets the
    // fault; a malformed body comes only with an answer, which the second rotation releases.
    await p.dev.rotateCA();
    await p.dev.rotateCA();
    await eventually(async () =>
      (await p.metrics()).value("meshgate_watch_errors_total", { watch: "roots" }) > before
    );
    remove();
    assert.equal(await p.call("ok"), "ok", `still serving after ${JSON.stringify(fault)}`);
  }
  // The watch recovered and picked up the rotations.
  await eventually(() => p.db.material.roots!.roots.Roots.length === 7, 10_000);
  const errors = (await p.metrics()).value("meshgate_watch_errors_total", { watch: "roots" });
  console.log(
    `held: 3 faults (500, 429, malformed), ${errors} roots watch errors counted, 3 connections served`,
  );
});

Deno.test("resilience: an index that goes backwards resets the watch, counted", async () => {
  await using p = await pair();
  p.dev.faults.add({ path: "/v1/agent/connect/ca/roots", indexBackwards: true, times: 1 });
  await p.dev.rotateCA(); // answers the watch's request in flight; the next one meets the fault
  await p.dev.rotateCA(); // and answers that one
  await eventually(async () =>
    (await p.metrics()).value("meshgate_watch_index_resets_total", { watch: "roots" }) === 1
  );
  await p.dev.rotateCA();
  await eventually(() => p.db.material.roots!.roots.Roots.length === 4, 5000, "roots keep coming");
  assert.equal(await p.call("ok"), "ok");
  console.log("held: 1 index reset counted; 3 rotations applied; 1 connection served");
});

Deno.test("resilience: a slow authorize (2 s) against a 1 s deadline refuses, counted as authorize_timeout", async () => {
  await using p = await pair();
  p.dev.faults.add({ path: "/v1/agent/connect/authorize", latencyMs: 2000, times: 1 });
  assert.equal(await p.call("slow"), "");
  assert.equal(
    (await p.metrics()).value("meshgate_connections_refused_total", {
      direction: "inbound",
      reason: "authorize_timeout",
    }),
    1,
  );
  assert.equal(p.app.connections(), 0, "the application was never dialled");
  console.log("held: 1 connection refused after the 1 s authorize deadline; 0 reached the app");
});

Deno.test("resilience: roots without the leaf's issuer — not ready, counted, until the leaf is renewed", async () => {
  await using p = await pair();
  await using other = await devAgent();
  const foreign = (await clientFor(other).roots()).value;
  const remove = p.dev.faults.add({
    path: "/v1/agent/connect/ca/roots",
    status: 200,
    body: JSON.stringify({ ...foreign, ActiveRootID: foreign.ActiveRootID }),
  });
  await p.dev.rotateCA(); // wake the watch; it reads the foreign roots
  await eventually(() => p.db.material.leafTrusted === false, 5000, "the mismatch to be seen");
  const ready = await p.admin.request("/ready");
  assert.equal(ready.status, 503);
  assert.match(JSON.stringify(await ready.json()), /does not chain to any current CA root/);
  assert.equal((await p.metrics()).value("meshgate_leaf_chains_to_roots"), 0);
  remove();
  await p.dev.rotateCA();
  await eventually(() => p.db.material.leafTrusted === true, 10_000, "trust to come back");
  assert.equal((await p.admin.request("/ready")).status, 200);
  console.log("held: foreign roots → not ready (leaf untrusted), then ready again after rotation");
});

Deno.test("resilience: leaf expiry while the agent is down — not ready before, never served after", async () => {
  // Leaves are backdated a minute, so a 64 s TTL leaves 4 s; the agent goes down right away.
  await using p = await pair({ leafTtlMs: 64_000, leafExpiryMarginMs: 2000 });
  const up = agentDown(p.dev);
  // Readiness turns false before expiry (within the margin)...
  await eventually(
    async () => (await p.admin.request("/ready")).status === 503,
    6000,
    "not ready before expiry",
  );
  // (The leaf installed now is the one that expires: a renewal may have landed just before the
  // agent went down, and none can come after.)
  const leaf = p.db.material.leaf!.info;
  const notReadyAt = Date.now();
  assert.ok(notReadyAt < leaf.notAfter.getTime() + 50, "not-ready came before the expiry");
  // ...and after expiry no handshake is served with the expired certificate.
  await eventually(() => p.db.material.leafExpired, 6000, "the leaf to expire");
  assert.equal(p.db.material.leaf!.info.notAfter.getTime(), leaf.notAfter.getTime());
  const client = await tcpClient(p.db.inbound!.address.port);
  assert.equal(await outcome(client, "x"), "closed");
  await eventually(() =>
    p.events.some((e) => e.type === "refused" && e.refusal.reason === "leaf_expired")
  );
  up();
  await eventually(() => !p.db.material.leafExpired, 10_000, "a renewed leaf after recovery");
  await eventually(async () => (await p.admin.request("/ready")).status === 200, 10_000);
  const refused =
    p.events.filter((e) => e.type === "refused" && e.refusal.reason === "leaf_expired")
      .length;
  console.log(
    `held: not ready ${((leaf.notAfter.getTime() - notReadyAt) / 1000).toFixed(1)} s before ` +
      `expiry; ${refused} connection(s) refused with the expired leaf; ready again after renewal`,
  );
});

Deno.test("resilience: an agent client pointed nowhere fails with a clear, typed error", async () => {
  const agent = new AgentClient({ address: `127.0.0.1:${freePort()}`, requestTimeoutMs: 2000 });
  const err = await agent.roots().catch((e) => e);
  assert.match(String(err), /\/v1\/agent\/connect\/ca\/roots/);
  await agent.close();
  console.log(`held: 1 typed error: ${String(err).split("\n")[0]}`);
});
