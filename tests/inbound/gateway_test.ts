// The public listener's lifecycle (startInbound): close() awaits every live connection handler —
// those not yet open are dropped at once, open ones drain until the deadline and are then cut —
// and reports nothing after it resolves; the connection limit and an expired leaf refuse before
// the handshake; refusals are reported in one place. Real TLS on loopback, certificates from our
// CA; the agent's answers are scripted. The drain deadline runs on fake time (setTimeout only:
// the real clock does not move while the test ticks).
import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import {
  type AuthorizedConnection,
  type InboundOptions,
  startInbound,
} from "../../src/inbound/gateway.ts";
import type { Logger, LogLevel } from "../../src/net/log.ts";
import { outcome, tlsClient } from "../e2e/_net.ts";
import { ALLOW, DENY, heldAgent, mesh, recordingApp } from "./_inbound.ts";

// Real timers, kept before any test fakes them: waiting on real I/O while fake time stands still.
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/** Real time passing (fake timers do not move it). */
const realDelay = (ms: number) => new Promise<void>((r) => realSetTimeout(r, ms));

/** `p`, or a failure after `ms` of real time. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = realSetTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    realClearTimeout(timer);
  }
}

/** db's public listener with a scripted agent; web calls it. */
async function gateway(opts: Partial<InboundOptions> = {}) {
  const m = await mesh();
  const app = await recordingApp();
  const agent = heldAgent();
  const events: ConnectionEvent[] = [];
  const lines: { level: LogLevel; message: string; fields: Record<string, unknown> }[] = [];
  const log: Logger = {
    level: "debug",
    log: (level, message, fields = {}) => void lines.push({ level, message, fields }),
    with: () => log,
  };
  const gw = await startInbound({
    material: m.material,
    service: "db",
    authorize: (req, o) =>
      agent.ask({ uri: req.ClientCertURI, serial: req.ClientCertSerial ?? "" }, o),
    bind: { hostname: "127.0.0.1", port: 0 },
    app: app.address,
    onEvent: (e) => events.push(e),
    log,
    ...opts,
  });
  const web = await m.client("web");
  return {
    gw,
    m,
    app,
    agent,
    events,
    lines,
    web,
    connect: () => tlsClient(gw.address.port, web),
    /** Resolves with the events of `type` once there are `n` of them. */
    async eventsOf(type: ConnectionEvent["type"], n = 1): Promise<ConnectionEvent[]> {
      for (let i = 0; i < 500; i++) {
        const found = events.filter((e) => e.type === type);
        if (found.length >= n) return found;
        await realDelay(10);
      }
      throw new Error(`fewer than ${n} ${type} events: ${JSON.stringify(events)}`);
    },
    async [Symbol.asyncDispose]() {
      await within(gw.close(), 10_000, "close() in teardown");
      for (let i = 0; i < agent.calls.length; i++) agent.answer(DENY, i);
      await app.close();
    },
  };
}

/** Fake setTimeout/clearTimeout (not Date), uninstalled at the end of the scope. */
function fakeTimers() {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  return Object.assign(clock, { [Symbol.dispose]: () => clock.uninstall() });
}

/** Whether `p` has settled after 50 ms of real time (I/O went on; fake time did not move). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  await realDelay(50);
  return done;
}

/** Opens one allowed connection: its client socket, its end, and what it read. */
async function openOne(s: Awaited<ReturnType<typeof gateway>>) {
  const client = await s.connect();
  client.on("error", () => {});
  // The client allows half-open: a cut shows as the end of what it reads.
  const ended = new Promise<void>((r) => {
    client.once("end", () => r());
    client.once("close", () => r());
  });
  let read = "";
  client.on("data", (c) => (read += String(c)));
  client.write("ping");
  await s.agent.called(s.agent.calls.length + 1);
  s.agent.answer(ALLOW);
  await s.eventsOf("accepted", s.events.filter((e) => e.type === "accepted").length + 1);
  return { client, ended, read: () => read };
}

Deno.test("gateway: close() waits for an open connection and resolves once it ends and its close is reported — before the drain deadline", async () => {
  await using s = await gateway();
  const { client } = await openOne(s);
  using time = fakeTimers();
  const closing = s.gw.close(60_000);
  assert.equal(await settled(closing), false, "an open connection holds close()");
  client.end(); // the caller finishes; the app's echo side follows
  await within(closing, 10_000, "close() once the connection ended");
  const closed = s.events.filter((e) => e.type === "closed");
  assert.equal(closed.length, 1, "the close was reported before close() resolved");
  assert.equal(closed[0]?.type === "closed" && closed[0].error, undefined, "it ended, not cut");
  assert.equal(time.now, 0, "the 60 s deadline played no part");
});

Deno.test("gateway: the drain deadline cuts open connections, at the deadline and not before", async () => {
  await using s = await gateway();
  const { client, ended } = await openOne(s);
  using time = fakeTimers();
  const closing = s.gw.close(5_000);
  await time.tickAsync(4_999);
  assert.equal(await settled(closing), false);
  assert.equal(s.gw.connections.size, 1, "still open one millisecond before the deadline");
  await time.tickAsync(1);
  await within(ended, 10_000, "cut at the deadline"); // the client sees its connection cut
  await within(closing, 10_000, "close() after the cut");
  client.destroy();
  const ends = s.events.filter((e) => e.type === "closed");
  assert.deepEqual(ends.map((e) => e.type === "closed" && e.error), ["proxy shutting down"]);
  assert.equal(s.gw.connections.size, 0);
});

Deno.test("gateway: a second close() with a shorter drain ends the drain sooner; both get the same promise", async () => {
  await using s = await gateway();
  await openOne(s);
  using time = fakeTimers();
  const first = s.gw.close(60_000);
  await time.tickAsync(1_000);
  const second = s.gw.close(100);
  assert.equal(first, second);
  await time.tickAsync(100);
  await within(first, 10_000, "close() at the shorter deadline");
  const ends = s.events.filter((e) => e.type === "closed");
  assert.deepEqual(ends.map((e) => e.type === "closed" && e.error), ["proxy shutting down"]);
  assert.equal(time.now, 1_100);
});

Deno.test("gateway: a connection still waiting for authorize when close() is called is dropped at once; nothing is reported after close() resolves", async () => {
  await using s = await gateway({ authorizeTimeoutMs: 60_000 });
  const client = await s.connect();
  const seen = outcome(client, "x");
  await s.agent.called(1);
  // Dropped at once: close() waits neither for the answer nor for the drain deadline.
  await within(s.gw.close(60_000), 10_000, "close() with only a connection not yet open");
  assert.equal(await seen, "closed");
  const after = s.events.length;
  s.agent.answer(DENY); // the agent answers late: no refusal may be reported now
  s.agent.answer(ALLOW);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(s.events.length, after, `reported after close: ${JSON.stringify(s.events)}`);
  assert.equal(s.app.connections(), 0);
});

Deno.test("gateway: close() awaits a handed-off connection, and cuts it at the deadline", async () => {
  const handed: AuthorizedConnection[] = [];
  await using s = await gateway({ app: undefined, handoff: (c) => void handed.push(c) });
  const client = await s.connect();
  client.on("error", () => {});
  client.write("hi");
  await s.agent.called(1);
  s.agent.answer(ALLOW);
  await s.eventsOf("accepted");
  assert.equal(handed.length, 1);
  using time = fakeTimers();
  const closing = s.gw.close(1_000);
  assert.equal(await settled(closing), false, "the handed-off connection holds close()");
  await time.tickAsync(1_000);
  await within(closing, 10_000, "close() at the deadline");
  assert.equal(handed[0]?.socket.destroyed, true);
  assert.equal((await s.eventsOf("closed")).length, 1);
});

Deno.test("gateway: over the connection limit, a connection is refused before the handshake (limit)", async () => {
  await using s = await gateway({ maxConnections: 1 });
  const { client } = await openOne(s);
  const second = await s.connect().catch((e: Error) => e);
  if (!(second instanceof Error)) assert.equal(await outcome(second, "y"), "closed");
  const [refused] = await s.eventsOf("refused");
  assert.equal(refused?.type === "refused" && refused.refusal.reason, "limit");
  assert.equal(s.agent.calls.length, 1, "the refused one never reached authorize");
  client.destroy();
});

Deno.test("gateway: while our leaf is expired, connections are refused before the handshake (leaf_expired)", async () => {
  await using s = await gateway();
  const leafEnd = new Date(s.m.material.leaf!.cert.ValidBefore).getTime();
  const clock = FakeTimers.install({ now: leafEnd + 1, toFake: ["Date"] });
  try {
    const client = await s.connect().catch((e: Error) => e);
    if (!(client instanceof Error)) assert.equal(await outcome(client, "x"), "closed");
    const [refused] = await s.eventsOf("refused");
    assert.equal(refused?.type === "refused" && refused.refusal.reason, "leaf_expired");
    assert.match(refused?.type === "refused" ? refused.refusal.detail : "", /expired at /);
  } finally {
    clock.uninstall();
  }
  assert.equal(s.agent.calls.length, 0);
  assert.equal(s.app.connections(), 0);
});

Deno.test("gateway: each refusal is one event and one log line, at the level its kind deserves", async () => {
  await using s = await gateway();
  const denied = outcome(await s.connect(), "x");
  await s.agent.called(1);
  s.agent.answer(DENY);
  assert.equal(await denied, "closed");
  const noCert = await tlsClient(s.gw.address.port, { ca: s.m.roots }).catch((e: Error) => e);
  if (!(noCert instanceof Error)) assert.equal(await outcome(noCert, "x"), "closed");
  const refusals = await s.eventsOf("refused", 2);
  assert.deepEqual(
    refusals.map((e) => e.type === "refused" && [e.listener, e.refusal.reason]),
    [["inbound:db", "denied"], ["inbound:db", "no_cert"]],
  );
  const logged = s.lines.filter((l) => l.message === "inbound connection refused");
  assert.deepEqual(logged.map((l) => [l.level, l.fields.reason]), [
    ["info", "denied"],
    ["warn", "no_cert"],
  ]);
  assert.equal(logged[0]?.fields.peer, s.web.uri);
});
