// An upstream whose chain or endpoints never arrive refuses its clients after the connect
// timeout, with a reason of its own, counted and logged — never holds them open (issue #14).
// Closing: the listener awaits every handler it started — open connections get the drain,
// dials in progress are cut — and a later close() may shorten the drain.
import assert from "node:assert/strict";
import nodeNet from "node:net";
import type net from "node:net";
import { AgentClient } from "../../src/agent/client.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { createLogger } from "../../src/net/log.ts";
import {
  type OutboundTls,
  startUpstream,
  type UpstreamListener,
} from "../../src/outbound/listener.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";
import { tcpClient } from "../e2e/_net.ts";
import { identityOf, meshServer, type UpstreamWorld, upstreamWorld } from "./_upstream.ts";

/** An upstream listener for `db` with events and warnings collected. */
async function dbUpstream(agent: AgentClient, connectTimeoutMs: number) {
  const events: ConnectionEvent[] = [];
  const logs: string[] = [];
  const listener = await startUpstream({
    agent,
    material: new TlsMaterial(),
    upstream: {
      type: "service",
      name: "db",
      bind: { hostname: "127.0.0.1", port: 0 },
      connectTimeoutMs,
    },
    log: createLogger({ level: "warn", json: true, write: (l) => logs.push(l) }),
    onEvent: (e) => events.push(e),
  });
  return { listener, events, logs };
}

/** Connects a client and resolves with how long it took until the proxy closed it (≤ 10 s). */
async function closedAfterMs(listener: UpstreamListener): Promise<number> {
  const started = Date.now();
  const client = await tcpClient((listener.address as { port: number }).port);
  client.on("error", () => {});
  client.write("hello?");
  const closed = new Promise<void>((r) => client.once("close", () => r()));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const held = new Promise<"held">((r) => (timer = setTimeout(() => r("held"), 10_000)));
  const result = await Promise.race([closed, held]);
  clearTimeout(timer);
  (client as net.Socket).destroy();
  assert.notEqual(result, "held", "the client was held open for 10 s");
  return Date.now() - started;
}

function refusals(events: ConnectionEvent[]) {
  return events.flatMap((e) => e.type === "refused" ? [e.refusal] : []);
}

Deno.test("upstream: the agent answers 403 for the chain → the client is refused (chain_unavailable)", async () => {
  await using dev = await devAgent();
  dev.faults.add({ path: "/v1/discovery-chain/db", status: 403, body: "Permission denied" });
  await using agent = clientFor(dev);
  const { listener, events, logs } = await dbUpstream(agent, 500);
  try {
    const ms = await closedAfterMs(listener);
    assert.ok(ms >= 450, `refused after ${ms} ms, before the connect timeout`);
    const [refusal] = refusals(events);
    assert.equal(refusal?.reason, "chain_unavailable");
    assert.match(refusal.detail, /no discovery chain for db from the agent within 500 ms/);
    assert.match(refusal.detail, /403 Permission denied/);
    assert.ok(
      logs.some((l) => l.includes("upstream connection failed") && l.includes("chain_unavailable")),
      logs.join("\n"),
    );
  } finally {
    await listener.close();
  }
});

Deno.test("upstream: the agent answers 403 for health → the client is refused (endpoints_unavailable)", async () => {
  await using dev = await devAgent();
  dev.faults.add({ path: "/v1/health/connect/db", status: 403, body: "Permission denied" });
  await using agent = clientFor(dev);
  const { listener, events } = await dbUpstream(agent, 500);
  try {
    await closedAfterMs(listener);
    const [refusal] = refusals(events);
    assert.equal(refusal?.reason, "endpoints_unavailable");
    assert.match(
      refusal.detail,
      /no endpoint list for db\.default\.default\.dc1 .*403 Permission denied/,
    );
  } finally {
    await listener.close();
  }
});

Deno.test("upstream: the agent is down at start → refused (chain_unavailable); once it is up, the agent decides", async () => {
  const port = freePort();
  await using agent = new AgentClient({
    address: `127.0.0.1:${port}`,
    watchDefaults: { minIntervalMs: 0, backoffBaseMs: 20, backoffMaxMs: 100 },
  });
  const { listener, events } = await dbUpstream(agent, 500);
  try {
    await closedAfterMs(listener);
    assert.equal(refusals(events)[0]?.reason, "chain_unavailable");
    // The agent comes up (nothing registered): the next client is refused for what the agent
    // says — no healthy db — not for want of an answer.
    await using _dev = await devAgent({ port });
    let reason: string | undefined;
    for (let i = 0; i < 20 && reason !== "no_endpoint"; i++) {
      await closedAfterMs(listener);
      reason = refusals(events).at(-1)?.reason;
    }
    assert.equal(reason, "no_endpoint");
  } finally {
    await listener.close();
  }
});

/** An upstream listener for db in `w`, and a client of it that has written "hello". */
async function openClient(w: UpstreamWorld, leg: OutboundTls, connectTimeoutMs = 2000) {
  const events: ConnectionEvent[] = [];
  const listener = await startUpstream({
    agent: w.agent,
    material: w.material,
    upstream: {
      type: "service",
      name: "db",
      bind: { hostname: "127.0.0.1", port: 0 },
      connectTimeoutMs,
    },
    outboundTls: leg,
    onEvent: (e) => events.push(e),
  });
  await eventually(() =>
    listener.resolver?.targets.get("db.default.default.dc1")?.endpoints.length === 1
  );
  const client = await tcpClient((listener.address as { port: number }).port);
  let read = "";
  client.on("error", () => {});
  client.on("data", (c: Uint8Array) => (read += new TextDecoder().decode(c)));
  client.on("end", () => client.end()); // half-open: close once the proxy has ended its side
  const closed = new Promise<void>((r) => client.once("close", () => r()));
  let isClosed = false;
  void closed.then(() => (isClosed = true));
  client.write("hello");
  return { listener, events, client, closed, isClosed: () => isClosed, read: () => read };
}

/** Which outbound leg a test runs on. */
function onBothLegs(name: string, fn: (leg: OutboundTls) => Promise<void>): void {
  for (const leg of ["node", "native"] as const) {
    Deno.test(`upstream${leg === "native" ? " (native)" : ""}: ${name}`, () => fn(leg));
  }
}

onBothLegs("close(drainMs) lets an open connection finish, then returns", async (leg) => {
  await using w = await upstreamWorld();
  await using db = await meshServer(await identityOf(w.dev.ca, "db"));
  await w.registerDb("db-1", db.port);
  const c = await openClient(w, leg);
  await eventually(() => c.read() === "hello", 5000, "the echo");
  const closing = c.listener.close(60_000);
  await eventually(() => db.received() === "hello");
  c.client.end(); // the client finishes on its own, well within the drain
  await closing;
  assert.equal(c.listener.connections.size, 0);
  const closed = c.events.find((e) => e.type === "closed");
  assert.equal(closed?.type === "closed" && closed.error, undefined, "not cut");
});

onBothLegs(
  "close() cuts a dial in progress and awaits it — the client is closed, nothing is refused",
  async (leg) => {
    await using w = await upstreamWorld();
    // Accepts TCP and never answers the TLS handshake: the dial would wait its 30 s.
    const silent = new Set<net.Socket>();
    const mute = nodeNet.createServer((s) => silent.add(s.on("error", () => {})));
    await new Promise<void>((r) => mute.listen(0, "127.0.0.1", r));
    try {
      await w.registerDb("db-1", (mute.address() as net.AddressInfo).port);
      const c = await openClient(w, leg, 30_000);
      await eventually(() => silent.size === 1, 5000, "the dial to start");
      await c.listener.close(0);
      await eventually(c.isClosed, 3000, "the client closed by close(), not by the dial timeout");
      assert.deepEqual(c.events, [], "no refusal, no dial failure");
    } finally {
      for (const s of silent) s.destroy();
      await new Promise<void>((r) => mute.close(() => r()));
    }
  },
);

onBothLegs("a later close() shortens the drain and cuts what is still open", async (leg) => {
  await using w = await upstreamWorld();
  await using db = await meshServer(await identityOf(w.dev.ca, "db"));
  await w.registerDb("db-1", db.port);
  const c = await openClient(w, leg);
  await eventually(() => c.read() === "hello", 5000, "the echo");
  const long = c.listener.close(60_000);
  const short = c.listener.close(0);
  assert.equal(long, short, "one drain, every caller awaits it");
  await short;
  await c.closed;
  const closed = c.events.find((e) => e.type === "closed");
  assert.equal(closed?.type === "closed" && closed.error, "listener closing");
});

Deno.test("upstream (native): two listeners with reusePort share a port (natively with --unstable-net, else on node:net with a warning); without it the second bind fails", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const port = freePort();
  const logs: string[] = [];
  const refusedBy: [number, number] = [0, 0];
  const start = (i: 0 | 1 | undefined, reusePort?: boolean) =>
    startUpstream({
      agent,
      material: new TlsMaterial(),
      upstream: { type: "service", name: "db", bind: { hostname: "127.0.0.1", port } },
      reusePort,
      outboundTls: "native",
      log: createLogger({ level: "info", json: true, write: (l) => logs.push(l) }),
      onEvent: (e) => e.type === "refused" && i !== undefined && refusedBy[i]++,
    });
  const a = await start(0, true);
  const b = await start(1, true);
  try {
    const unstableNet = typeof (Deno as { listenDatagram?: unknown }).listenDatagram === "function";
    const started = logs.filter((l) => l.includes("upstream listener started"));
    assert.equal(started.length, 2);
    for (const l of started) assert.equal(l.includes(`"outboundTls":"native"`), unstableNet, l);
    const warned = logs.filter((l) => l.includes("needs --unstable-net"));
    assert.equal(warned.length, unstableNet ? 0 : 2, logs.join("\n"));
    // No db registered: each listener refuses the clients it got (no_endpoint).
    for (let i = 0; i < 40 && !(refusedBy[0] && refusedBy[1]); i++) {
      // A refused client's connection is closed: its read ends (a FIN, or a reset).
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      await c.write(new TextEncoder().encode("hello?"));
      assert.equal(await c.read(new Uint8Array(16)).catch(() => null), null);
      c.close();
    }
    assert.ok(refusedBy[0] > 0 && refusedBy[1] > 0, `refusals per listener: ${refusedBy}`);
    await assert.rejects(start(undefined));
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

Deno.test("upstream (native): a unix-socket listener stays on node:net and node:tls, and works", async () => {
  await using w = await upstreamWorld();
  await using db = await meshServer(await identityOf(w.dev.ca, "db"));
  await w.registerDb("db-1", db.port);
  const dir = await Deno.makeTempDir();
  const path = `${dir}/db.sock`;
  const logs: string[] = [];
  await using listener = await startUpstream({
    agent: w.agent,
    material: w.material,
    upstream: { type: "service", name: "db", bind: { path } },
    outboundTls: "native",
    log: createLogger({ level: "info", json: true, write: (l) => logs.push(l) }),
  });
  try {
    const started = logs.find((l) => l.includes("upstream listener started")) ?? "";
    assert.ok(!started.includes("outboundTls"), started);
    await eventually(() =>
      listener.resolver?.targets.get("db.default.default.dc1")?.endpoints.length === 1
    );
    const conn = await Deno.connect({ transport: "unix", path });
    await conn.write(new TextEncoder().encode("over unix"));
    await conn.closeWrite();
    const got = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
    assert.equal(got, "over unix");
  } finally {
    await listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});
