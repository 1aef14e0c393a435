// The runtime Proxy and ConnectService share: one idempotent close that every caller awaits
// (a `draining` subscriber included), events with lastEvent, problems by source, the phase, the
// feeds' problems when the leaf's service changes, and the intentions re-check whose grace
// period runs on fake time.
import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { AgentClient } from "../../src/agent/client.ts";
import { createDevAgent } from "../../src/devagent/app.ts";
import { ConnectCA } from "../../src/devagent/ca.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import type { ProxyEvent } from "../../src/events/lifecycle.ts";
import { startInbound } from "../../src/inbound/gateway.ts";
import { MeshRuntime } from "../../src/runtime/mesh_runtime.ts";
import { echoServer, tlsClient } from "../e2e/_net.ts";
import { scriptedAgent } from "./_agent.ts";
import { realSleep, settled } from "../_fake_time.ts";

/** An agent that is never asked anything (the close and event tests start no watch). */
function idleAgent(onClose?: () => void): AgentClient {
  const fetch = Object.assign(
    () => Promise.reject(new Error("this test's agent is not to be asked")),
    { close: onClose },
  );
  return new AgentClient({ address: "http://agent.test:8500", fetch });
}

Deno.test("runtime close: two callers await the same drain, which runs once", async () => {
  const runtime = new MeshRuntime({ agent: idleAgent() });
  const phases: string[] = [];
  runtime.events.subscribe((e) => e.type === "phase" && phases.push(e.phase));
  const drained = Promise.withResolvers<void>();
  let drains = 0;
  const steps = {
    drain: async () => {
      drains++;
      await drained.promise;
    },
  };
  const order: string[] = [];
  const first = runtime.close(steps);
  const second = runtime.close(steps);
  assert.equal(first, second, "every caller gets the same promise");
  assert.equal(runtime.close(), first, "with or without steps");
  first.then(() => order.push("first"));
  second.then(() => order.push("second"));
  assert.equal(runtime.phase, "draining");
  await realSleep(20);
  assert.equal(order.join(), "", "neither resolved while the drain waits");
  order.push("drained");
  drained.resolve();
  await Promise.all([first, second]);
  assert.deepEqual(order, ["drained", "first", "second"]);
  assert.equal(drains, 1);
  assert.deepEqual(phases, ["draining", "stopped"]);
  assert.equal(runtime.phase, "stopped");
});

Deno.test("runtime close: a subscriber of `draining` that closes joins the same drain", async () => {
  const runtime = new MeshRuntime({ agent: idleAgent() });
  const phases: string[] = [];
  let joined: Promise<void> | undefined;
  runtime.events.subscribe((e) => {
    if (e.type !== "phase") return;
    phases.push(e.phase);
    if (e.phase === "draining") joined = runtime.close({ drain: () => Promise.reject("not me") });
  });
  const drained = Promise.withResolvers<void>();
  const first = runtime.close({ drain: () => drained.promise });
  assert.equal(joined, first, "the subscriber got the drain under way");
  const order: string[] = [];
  joined!.then(() => order.push("subscriber"));
  await realSleep(20);
  order.push("drained");
  drained.resolve();
  await first;
  assert.deepEqual(order, ["drained", "subscriber"], "the subscriber's close waited for the drain");
  assert.deepEqual(phases, ["draining", "stopped"], "one drain, not two");
});

Deno.test("runtime close: stops the signal, awaits spawned loops, then closes an owned agent", async () => {
  const order: string[] = [];
  const runtime = new MeshRuntime({
    agent: idleAgent(() => order.push("agent closed")),
    ownsAgent: true,
  });
  const loopMayEnd = Promise.withResolvers<void>();
  runtime.spawn((async () => {
    await new Promise((r) => runtime.signal.addEventListener("abort", r, { once: true }));
    order.push("loop saw the stop");
    await loopMayEnd.promise;
    order.push("loop ended");
  })());
  const closing = runtime.close({
    drain: (stop) => {
      order.push("drain");
      stop();
      return Promise.resolve();
    },
    stopped: () => order.push("stopped"),
  });
  await realSleep(20);
  assert.deepEqual(order, ["drain", "loop saw the stop"], "close waits for the loop");
  loopMayEnd.resolve();
  await closing;
  assert.deepEqual(order, ["drain", "loop saw the stop", "loop ended", "agent closed", "stopped"]);
  assert.equal(await runtime.until(new Promise(() => {})), false, "until() after close is false");
});

Deno.test("runtime: events are stamped, lastEvent keeps each type's latest, onEvent gets connection events", () => {
  const connections: ConnectionEvent[] = [];
  const runtime = new MeshRuntime({ agent: idleAgent(), onEvent: (e) => connections.push(e) });
  const seen: ProxyEvent[] = [];
  runtime.events.subscribe((e) => seen.push(e));
  const before = Date.now();
  runtime.emit({ type: "roots", rotated: false, activeRootId: "a", rootIds: ["a"] });
  runtime.emit({ type: "roots", rotated: true, activeRootId: "b", rootIds: ["a", "b"] });
  const refused: ConnectionEvent = {
    type: "refused",
    direction: "inbound",
    listener: "inbound:db",
    refusal: { reason: "denied", detail: "intention" },
  };
  runtime.emit(refused);
  assert.equal(seen.length, 3);
  assert.ok(seen.every((e) => e.at >= before && e.at <= Date.now()), "stamped with Date.now()");
  assert.equal(runtime.lastEvent("roots")?.activeRootId, "b");
  assert.equal(runtime.lastEvent("refused")?.refusal.reason, "denied");
  assert.equal(runtime.lastEvent("leaf"), undefined);
  assert.deepEqual(connections, [refused], "lifecycle events are not connection events");
  assert.equal(runtime.markReady(), true);
  assert.equal(runtime.markReady(), false, "ready once");
  assert.deepEqual(seen.slice(3).map((e) => e.type === "phase" && e.phase), ["ready"]);
});

Deno.test("runtime: problems are one line per source, in the order they came, until cleared", () => {
  const runtime = new MeshRuntime({ agent: idleAgent() });
  runtime.problem("leaf", "leaf: HTTP 403");
  runtime.problem("roots", "roots: unreachable");
  runtime.problem("leaf", "leaf: HTTP 500");
  assert.deepEqual(runtime.problems, ["leaf: HTTP 500", "roots: unreachable"]);
  assert.equal(runtime.problemOf("roots"), "roots: unreachable");
  runtime.problem("leaf", undefined);
  assert.deepEqual(runtime.problems, ["roots: unreachable"]);
  assert.equal(runtime.problemOf("leaf"), undefined);
});

Deno.test("runtime watchLeaf: another service stops the old watch and forgets its problem", async () => {
  const ca = await ConnectCA.create();
  const a = scriptedAgent(ca);
  a.leafError("db", 403, "Permission denied: token lacks permission 'service:write' on \"db\"");
  a.leaf("db2", await ca.signLeaf("db2"));
  const runtime = new MeshRuntime({ agent: a.agent });
  runtime.watchRoots();
  runtime.watchLeaf("db");
  await settled(undefined, () => runtime.problemOf("leaf") !== undefined, "the leaf problem");
  assert.match(runtime.problemOf("leaf")!, /^leaf: \/v1\/agent\/connect\/ca\/leaf\/db: HTTP 403: /);
  runtime.watchLeaf("db2");
  assert.equal(runtime.problemOf("leaf"), undefined, "db's problem is not db2's");
  await runtime.material.ready;
  assert.match(runtime.material.leaf!.info.uris[0]!, /\/svc\/db2$/);
  const dbAsks = a.asks("/v1/agent/connect/ca/leaf/db").length;
  await realSleep(1200); // db's watch would retry after its 1 s backoff
  assert.equal(a.asks("/v1/agent/connect/ca/leaf/db").length, dbAsks, "db is no longer watched");
  assert.deepEqual(runtime.problems, []);
  await runtime.close();
  await a.agent.close();
});

Deno.test("runtime watchIntentions: revokeGraceMs -1 watches nothing", async () => {
  const ca = await ConnectCA.create();
  const a = scriptedAgent(ca);
  const runtime = new MeshRuntime({ agent: a.agent, revokeGraceMs: -1 });
  runtime.watchIntentions("db");
  await realSleep(20);
  assert.deepEqual(a.requests, []);
  assert.equal(runtime.intentions, undefined);
  await runtime.close();
});

/** The double in-process: only timers (fake or real) and crypto decide the order. */
async function inProcessDouble() {
  const dev = await createDevAgent();
  const agent = new AgentClient({
    address: "http://agent.test:8500",
    watchDefaults: { minIntervalMs: 0, backoffBaseMs: 20, backoffMaxMs: 200 },
    // Like a real fetch, an abort settles the call at once, whatever the double is doing.
    fetch: (input, init) =>
      new Promise<Response>((resolve, reject) => {
        const signal = init?.signal;
        const onAbort = () => reject(signal!.reason);
        signal?.addEventListener("abort", onAbort, { once: true });
        Promise.resolve(dev.app.fetch(new Request(input, init))).then(resolve, reject)
          .finally(() => signal?.removeEventListener("abort", onAbort));
      }),
  });
  const intention = (source: string, action: "allow" | "deny") =>
    dev.app.request(`/v1/connect/intentions/exact?source=${source}&destination=db`, {
      method: "PUT",
      body: JSON.stringify({ SourceType: "consul", Action: action }),
    });
  return { dev, agent, intention };
}

/**
 * A runtime with a `revokeGraceMs` of `GRACE` re-checking one gateway of db, the double
 * in-process, and web connected through it (its echo seen): the stage of the grace-period tests.
 */
async function webConnectedToDb() {
  const { dev, agent, intention } = await inProcessDouble();
  const app = await echoServer();
  const gateways: Awaited<ReturnType<typeof startInbound>>[] = [];
  const runtime = new MeshRuntime({ agent, gateways: () => gateways, revokeGraceMs: GRACE });
  runtime.watchRoots();
  runtime.watchLeaf("db");
  await runtime.material.ready;
  const gw = await startInbound({
    material: runtime.material,
    service: "db",
    authorize: (req, opts) => agent.authorize(req, opts),
    intentions: () => runtime.intentions,
    bind: { hostname: "127.0.0.1", port: 0 },
    app: { hostname: "127.0.0.1", port: app.port },
    onEvent: runtime.emit,
  });
  gateways.push(gw);
  runtime.watchIntentions("db");
  await settled(undefined, () => runtime.intentions !== undefined, "the first intentions");

  const leaf = await dev.ca.signLeaf("web");
  const roots = dev.ca.roots.map((r) => r.RootCert);
  const web = await tlsClient(gw.address.port, {
    cert: leaf.cert.CertPEM,
    key: leaf.cert.PrivateKeyPEM,
    ca: roots,
  });
  let echoed = "";
  web.on("data", (d) => (echoed += d));
  web.on("error", () => {});
  // The revocation shows up as 'end' (the socket is half-open), or as 'close'.
  const closed = new Promise<void>((r) => (web.once("end", r), web.once("close", r)));
  web.write("hi;");
  await settled(undefined, () => echoed === "hi;", "web's echo");
  return { dev, agent, intention, app, runtime, gw, leaf, web, closed };
}

const GRACE = 30_000;

Deno.test("runtime intentions: a denied caller's connections close after revokeGraceMs (fake time), not before", async () => {
  const { dev, agent, intention, app, runtime, gw, leaf, web, closed } = await webConnectedToDb();

  const rounds: ProxyEvent[] = [];
  const revoked: Extract<ConnectionEvent, { type: "revoked" }>[] = [];
  runtime.events.subscribe((e) => {
    if (e.type === "reauthorized") rounds.push(e);
    if (e.type === "revoked") revoked.push(e);
  });
  const time = FakeTimers.install({
    toFake: ["setTimeout", "clearTimeout"],
    shouldClearNativeTimers: true,
  });
  try {
    assert.equal((await intention("web", "deny")).status, 200);
    await settled(time, () => rounds.length === 1, "the re-check round of the deny");
    const round = rounds[0] as Extract<ProxyEvent, { type: "reauthorized" }>;
    assert.deepEqual(round.denied.map((d) => d.peer), [leaf.cert.ServiceURI]);
    await time.tickAsync(GRACE - 1);
    assert.deepEqual(revoked.map((e) => e.peer), [], "not closed within the grace period");
    assert.equal(gw.connections.size, 1);
    await time.tickAsync(1);
    assert.deepEqual(
      revoked.map((e) => e.peer),
      [leaf.cert.ServiceURI],
      "closed when the grace period ends",
    );
  } finally {
    time.uninstall();
  }
  await closed;
  web.destroy();
  await runtime.close({ drain: () => gw.close() });
  await app.close();
  await agent.close();
  await dev.close();
});

Deno.test("runtime intentions: closing during the grace period does not wait it out (fake time)", async () => {
  const { dev, agent, intention, app, runtime, gw, leaf, web, closed } = await webConnectedToDb();

  const rounds: ProxyEvent[] = [];
  const revoked: ProxyEvent[] = [];
  runtime.events.subscribe((e) => {
    if (e.type === "reauthorized") rounds.push(e);
    if (e.type === "revoked") revoked.push(e);
  });
  const time = FakeTimers.install({
    toFake: ["setTimeout", "clearTimeout"],
    shouldClearNativeTimers: true,
  });
  try {
    assert.equal((await intention("web", "deny")).status, 200);
    await settled(time, () => rounds.length === 1, "the re-check round of the deny");
    const round = rounds[0] as Extract<ProxyEvent, { type: "reauthorized" }>;
    assert.deepEqual(round.denied.map((d) => d.peer), [leaf.cert.ServiceURI]);
    // The owner closes while the round waits out its grace: the close must not wait for it
    // (fake time does not move here; a close that waited would never settle).
    let closedRuntime = false;
    const closing = runtime.close({ drain: () => gw.close() }).then(() => (closedRuntime = true));
    await settled(time, () => closedRuntime, "the close, with the grace period still running");
    await closing;
    assert.deepEqual(revoked, [], "the grace period was cut short by the close, not ended");
  } finally {
    time.uninstall();
  }
  await closed;
  web.destroy();
  await app.close();
  await agent.close();
  await dev.close();
});
