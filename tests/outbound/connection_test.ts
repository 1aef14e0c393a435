// serveOutbound(): one client of an upstream, pick → dial → verify → pipe, with real mTLS on
// loopback and certificates from the double's CA. Every check gets a server that tries to get
// past it, and retries are proven to stop at the first byte. Every test runs on both legs:
// `node` (serveOutbound: node:net in, node:tls out) and `native` (serveOutboundNative:
// Deno.listen in, Deno.connectTls out).
import assert from "node:assert/strict";
import net from "node:net";
import { ConnectCA } from "../../src/devagent/ca.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { createLogger } from "../../src/net/log.ts";
import type { UpstreamConnector } from "../../src/outbound/connector.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import {
  type OutboundConnection,
  type OutboundContext,
  type OutboundResult,
  serveOutbound,
  serveOutboundNative,
} from "../../src/outbound/connection.ts";
import { eventually } from "../_helpers.ts";
import {
  issue,
  materialFor,
  meshServer as nativeMeshServer,
  rootList,
  spiffe,
} from "./_native_fixtures.ts";
import {
  type Behaviour,
  identityOf,
  meshServer,
  type UpstreamWorld,
  upstreamWorld,
} from "./_upstream.ts";

/**
 * A server whose clients serveOutbound() (`node`: a node:net server) or serveOutboundNative()
 * (`native`: Deno.listen) serves through `connector`.
 */
async function serving(
  leg: Leg,
  connector: UpstreamConnector,
  events: ConnectionEvent[],
  options: Partial<OutboundContext> = {},
) {
  const stop = new AbortController();
  const logs: string[] = [];
  const ctx: OutboundContext = {
    connector,
    connections: new Set<OutboundConnection>(),
    log: createLogger({ level: "warn", json: true, write: (l) => logs.push(l) }),
    emit: (e) => events.push(e),
    signal: stop.signal,
    ...options,
  };
  const results: Promise<OutboundResult>[] = [];
  let port: number;
  let closeServer: () => Promise<void>;
  if (leg === "native") {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepting = (async () => {
      for await (const client of listener) results.push(serveOutboundNative(client, ctx));
    })().catch(() => {});
    port = listener.addr.port;
    closeServer = async () => {
      listener.close();
      await accepting;
    };
  } else {
    const server = net.createServer(
      { allowHalfOpen: true, pauseOnConnect: true },
      (client) => results.push(serveOutbound(client, ctx)),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as net.AddressInfo).port;
    closeServer = () => new Promise<void>((r) => server.close(() => r()));
  }
  return {
    port,
    ctx,
    logs,
    stop,
    /** The result for the `n`th client (0-based), once it is served. */
    async result(n = 0): Promise<OutboundResult> {
      await eventually(() => results.length > n, 5000, `client ${n} accepted`);
      return await results[n]!;
    },
    async [Symbol.asyncDispose]() {
      stop.abort();
      for (const r of results) {
        const served = await r;
        if (served.ok) await served.closed;
      }
      await closeServer();
    },
  };
}

/** Which outbound leg a test runs on. */
type Leg = "node" | "native";

/** Registers `fn` as a test on each leg. */
function onBothLegs(name: string, fn: (leg: Leg) => Promise<void>): void {
  for (const leg of ["node", "native"] as const) {
    Deno.test(`${leg === "node" ? "serveOutbound" : "serveOutboundNative"}: ${name}`, () =>
      fn(leg));
  }
}

/**
 * A client that writes `early` at once (and ends its side with `end`), then `onData` answers;
 * `read` resolves with all it read once it is closed.
 */
function client(
  port: number,
  early: string,
  options: { end?: boolean; onData?: (socket: net.Socket, data: string) => void } = {},
): { socket: net.Socket; read: Promise<string> } {
  const { end = false, onData = () => {} } = options;
  const socket = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  let data = "";
  socket.on("error", () => {});
  if (early) socket.write(early);
  if (end) socket.end();
  socket.on("data", (c: Uint8Array) => {
    data += new TextDecoder().decode(c);
    onData(socket, data);
  });
  socket.on("end", () => socket.end());
  const read = new Promise<string>((r) => socket.on("close", () => r(data)));
  return { socket, read };
}

const refusals = (events: ConnectionEvent[]) =>
  events.flatMap((e) => e.type === "refused" ? [e.refusal] : []);
const dialFailures = (events: ConnectionEvent[]) =>
  events.flatMap((e) => e.type === "dial_failed" ? [e] : []);

/** Says "evil" at once, hoping to be relayed before it is checked, then echoes. */
const talksFirst: Behaviour = (s) => {
  s.write("evil");
  s.pipe(s);
};

/** One db instance presenting `who`'s certificate; a client that says "secret" is refused. */
async function refusedBy(
  leg: Leg,
  w: UpstreamWorld,
  who: { cert: string; key: string },
  reason: string,
) {
  await using server = await meshServer(who, talksFirst);
  await w.registerDb("db-1", server.port);
  const { connector, events } = await w.connector(1);
  await using up = await serving(leg, connector, events);
  const c = client(up.port, "secret", { end: true });
  const served = await up.result();
  assert.ok(!served.ok && served.refusal, "refused");
  assert.equal(await c.read, "", "nothing of the refused server reached the client");
  assert.equal(served.refusal.reason, reason);
  assert.match(served.refusal.remote ?? "", /^127\.0\.0\.1:\d+$/);
  assert.deepEqual(refusals(events).map((r) => r.reason), [reason]);
  assert.equal(server.received(), "", "no byte of the client reached the server");
  assert.equal(up.ctx.connections.size, 0);
  assert.ok(up.logs.some((l) => l.includes("upstream connection failed") && l.includes(reason)));
  return { server: { handshakes: server.handshakes() }, refusal: served.refusal };
}

onBothLegs(
  "a client reaches db; its early bytes arrive once; accepted and closed are reported",
  async (leg) => {
    await using w = await upstreamWorld();
    await using db = await meshServer(await identityOf(w.dev.ca, "db"));
    await w.registerDb("db-1", db.port);
    const { connector, events } = await w.connector(1);
    await using up = await serving(leg, connector, events);
    const c = client(up.port, "hello");
    const served = await up.result();
    assert.ok(served.ok, "open");
    assert.equal(served.connection.peer, `db@127.0.0.1:${db.port}`);
    assert.equal(served.connection.target, "db.default.default.dc1");
    assert.ok(up.ctx.connections.has(served.connection));
    c.socket.end();
    assert.equal(await c.read, "hello");
    await served.closed;
    assert.equal(up.ctx.connections.size, 0);
    assert.equal(db.received(), "hello");
    const [accepted, closed] = events;
    assert.equal(accepted?.type, "accepted");
    assert.equal(closed?.type, "closed");
    if (closed?.type === "closed") {
      assert.equal(closed.listener, "upstream:db");
      assert.equal(closed.bytesOut, 5);
      assert.equal(closed.bytesIn, 5);
    }
  },
);

onBothLegs("another service's certificate from our CA is refused (bad_identity)", async (leg) => {
  await using w = await upstreamWorld();
  const { refusal } = await refusedBy(leg, w, await identityOf(w.dev.ca, "api"), "bad_identity");
  assert.match(refusal.detail, /got spiffe:\/\/.*\/svc\/api, want service db/);
});

onBothLegs("db in another datacenter or namespace is refused (bad_identity)", async (leg) => {
  for (const [dc, ns] of [["dc2", "default"], ["dc1", "other"]]) {
    await using w = await upstreamWorld();
    const uri = `spiffe://${w.dev.ca.trustDomain}/ns/${ns}/dc/${dc}/svc/db`;
    const { certPem, keyPem } = await w.dev.ca.signIdentity(uri);
    const { refusal } = await refusedBy(leg, w, { cert: certPem, key: keyPem }, "bad_identity");
    assert.match(refusal.detail, new RegExp(`got ${uri}, want service db in dc1`));
  }
});

onBothLegs(
  "db's SPIFFE ID signed by a forger of our trust domain is refused (bad_chain)",
  async (leg) => {
    await using w = await upstreamWorld();
    const forger = await ConnectCA.create({ clusterId: w.dev.ca.clusterId });
    assert.equal(forger.trustDomain, w.dev.ca.trustDomain);
    const { server } = await refusedBy(leg, w, await identityOf(forger, "db"), "bad_chain");
    assert.equal(server.handshakes, 0, "the TLS layer refused it in the handshake");
  },
);

onBothLegs(
  "a failed endpoint is retried on the next while no byte has moved; a refused server's bytes never reach the client",
  async (leg) => {
    await using w = await upstreamWorld();
    // The impostor (weight 9) is picked first; it talks at once, hoping to be relayed.
    await using impostor = await meshServer(await identityOf(w.dev.ca, "api"), talksFirst);
    await using db = await meshServer(await identityOf(w.dev.ca, "db"));
    await w.registerDb("db-1", impostor.port, 9);
    await w.registerDb("db-2", db.port, 1);
    const { connector, events } = await w.connector(2);
    await using up = await serving(leg, connector, events);
    const c = client(up.port, "hello", { end: true });
    const served = await up.result();
    assert.ok(served.ok, "open");
    assert.equal(served.connection.peer, `db@127.0.0.1:${db.port}`);
    assert.equal(await c.read, "hello", "db's echo, nothing of the impostor");
    await served.closed;
    assert.equal(impostor.accepted(), 1, "the impostor was dialled first");
    assert.equal(impostor.received(), "", "and got nothing of the client");
    assert.equal(db.received(), "hello", "the client's early bytes reached db once");
    assert.deepEqual(dialFailures(events).map((e) => e.endpoint), ["devagent/db-1-sidecar-proxy"]);
    assert.match(dialFailures(events)[0]!.error, /^bad_identity: /);
  },
);

onBothLegs(
  "once a byte reached the client the connection is never retried, even when it then fails",
  async (leg) => {
    await using w = await upstreamWorld();
    // The first endpoint (weight 9) passes every check, says "first", and dies at the answer.
    const failing: Behaviour = (s) => {
      s.write("first");
      s.once("data", () => s.destroy());
    };
    await using flaky = await meshServer(await identityOf(w.dev.ca, "db"), failing);
    await using db = await meshServer(await identityOf(w.dev.ca, "db"));
    await w.registerDb("db-1", flaky.port, 9);
    await w.registerDb("db-2", db.port, 1);
    const { connector, events } = await w.connector(2);
    await using up = await serving(leg, connector, events);
    const c = client(up.port, "", {
      onData: (socket, data) => {
        if (data === "first") socket.write("ack");
      },
    });
    const served = await up.result();
    assert.ok(served.ok, "open");
    assert.equal(await c.read, "first", "the client saw the first byte, then the close");
    await served.closed;
    assert.equal(flaky.received(), "ack");
    assert.equal(db.accepted(), 0, "the healthy endpoint was never dialled");
    assert.deepEqual(dialFailures(events), [], "no dial failed");
    assert.deepEqual(events.map((e) => e.type), ["accepted", "closed"]);
  },
);

onBothLegs(
  "past maxConnections a client is refused (limit) and nothing is dialled",
  async (leg) => {
    await using w = await upstreamWorld();
    await using db = await meshServer(await identityOf(w.dev.ca, "db"));
    await w.registerDb("db-1", db.port);
    const { connector, events } = await w.connector(1);
    await using up = await serving(leg, connector, events, { maxConnections: 1 });
    const first = client(up.port, "one");
    assert.ok((await up.result(0)).ok);
    const second = client(up.port, "two");
    const refused = await up.result(1);
    assert.ok(!refused.ok && refused.refusal?.reason === "limit", "refused for the limit");
    assert.equal(refused.refusal.detail, "1 connections open");
    assert.equal(await second.read, "");
    assert.equal(db.accepted(), 1, "only the first client was dialled");
    first.socket.end();
    assert.equal(await first.read, "one");
  },
);

onBothLegs("with our leaf expired nothing is dialled (leaf_expired)", async (leg) => {
  await using w = await upstreamWorld();
  await using db = await meshServer(await identityOf(w.dev.ca, "db"));
  await w.registerDb("db-1", db.port);
  // A leaf valid for about a second more (NotBefore a minute back, as the double issues them).
  const material = new TlsMaterial();
  await material.setRoots({
    ActiveRootID: w.dev.ca.activeRoot.ID,
    TrustDomain: w.dev.ca.trustDomain,
    Roots: w.dev.ca.roots,
  });
  const leaf = await w.dev.ca.signLeaf("web", { ttlMs: 62_000 });
  await material.setLeaf({ ...leaf.cert, CreateIndex: 1, ModifyIndex: 1 });
  await eventually(() => material.leafExpired, 5000, "the leaf to expire");
  const { connector, events } = await w.connector(1, { material });
  await using up = await serving(leg, connector, events);
  const c = client(up.port, "hello", { end: true });
  const served = await up.result();
  assert.ok(!served.ok && served.refusal?.reason === "leaf_expired", "refused");
  assert.match(served.refusal.detail, /our leaf certificate expired at /);
  assert.equal(await c.read, "");
  assert.equal(db.accepted(), 0, "no dial with an expired leaf");
});

onBothLegs(
  "the listener stopping cuts a dial in progress; nothing is refused or counted",
  async (leg) => {
    await using w = await upstreamWorld();
    // Accepts TCP and never answers the TLS handshake.
    const silent = new Set<net.Socket>();
    const mute = net.createServer((s) => silent.add(s.on("error", () => {})));
    await new Promise<void>((r) => mute.listen(0, "127.0.0.1", r));
    try {
      await w.registerDb("db-1", (mute.address() as net.AddressInfo).port);
      const { connector, events } = await w.connector(1, {
        upstream: { type: "service", name: "db", connectTimeoutMs: 30_000 },
      });
      await using up = await serving(leg, connector, events);
      const c = client(up.port, "hello");
      await eventually(() => silent.size === 1, 5000, "the dial to start");
      up.stop.abort();
      const served = await up.result();
      assert.deepEqual(served, { ok: false, gone: true });
      assert.equal(await c.read, "", "the client is closed");
      assert.deepEqual(events, [], "no refusal, no dial failure");
      const health = [...connector.endpointHealth.values()];
      assert.deepEqual(health.map((h) => h.consecutiveFailures), [0]);
    } finally {
      for (const s of silent) s.destroy();
      await new Promise<void>((r) => mute.close(() => r()));
    }
  },
);

onBothLegs(
  "the listener stopping cuts an open connection (closed: listener closing)",
  async (leg) => {
    await using w = await upstreamWorld();
    await using db = await meshServer(await identityOf(w.dev.ca, "db"));
    await w.registerDb("db-1", db.port);
    const { connector, events } = await w.connector(1);
    await using up = await serving(leg, connector, events);
    const c = client(up.port, "hello");
    const served = await up.result();
    assert.ok(served.ok);
    await eventually(() => db.received() === "hello");
    up.stop.abort();
    await served.closed;
    await c.read;
    const closed = events.find((e) => e.type === "closed");
    assert.equal(closed?.type === "closed" && closed.error, "listener closing");
  },
);

Deno.test("serveOutboundNative: where the native leg cannot decide (an intermediate only the server presents) it dials node:tls and bridges it: early bytes, echo, half-close, counts", async () => {
  await using w = await upstreamWorld();
  const root = await issue({ ca: true });
  const inter = await issue({ ca: true, issuer: root, name: "intermediate" });
  const web = await issue({ issuer: root, uri: spiffe("web") });
  const db = await issue({ issuer: inter, uri: spiffe("db") });
  // The roots do not list the intermediate: only the presented chain proves db.
  const material = await materialFor(rootList([{ pem: root.pem }]), {
    certPem: web.pem,
    keyPem: web.keyPem,
  });
  await using server = await nativeMeshServer(db.pem + inter.pem, db.keyPem, [root.pem], (s) => {
    s.pipe(s);
  });
  await w.registerDb("db-1", server.port);
  const logs: string[] = [];
  const { connector, events } = await w.connector(1, {
    material,
    log: createLogger({ level: "debug", json: true, write: (l) => logs.push(l) }),
  });
  await using up = await serving("native", connector, events);
  const c = client(up.port, "hello", { end: true });
  const served = await up.result();
  assert.ok(served.ok, JSON.stringify(served));
  assert.equal(await c.read, "hello", "echoed, and the server's end reached the client");
  await served.closed;
  assert.ok(logs.some((l) => l.includes("falls back to node:tls")), logs.join("\n"));
  assert.equal(server.seen.length, 2, "one native handshake, then the node:tls one");
  assert.deepEqual(server.seen.map((s) => s.received), [0, 5], "the client's bytes went once");
  assert.deepEqual(dialFailures(events), [], "the fallback is not a failed dial");
  assert.deepEqual(events.map((e) => e.type), ["accepted", "closed"]);
  const closed = events[1];
  assert.ok(closed?.type === "closed");
  assert.equal(closed.bytesOut, 5);
  assert.equal(closed.bytesIn, 5);
  await eventually(() => [...connector.endpointHealth.values()].every((h) => h.active === 0));
});

onBothLegs(
  "a connection idle past idleTimeoutMs is closed and reported (closed: idle)",
  async (leg) => {
    await using w = await upstreamWorld();
    await using db = await meshServer(await identityOf(w.dev.ca, "db"));
    await w.registerDb("db-1", db.port);
    const { connector, events } = await w.connector(1);
    await using up = await serving(leg, connector, events, { idleTimeoutMs: 300 });
    const started = Date.now();
    const c = client(up.port, "hi");
    const served = await up.result();
    assert.ok(served.ok, "open");
    assert.equal(await c.read, "hi", "the echo, then the close");
    await served.closed;
    const ms = Date.now() - started;
    assert.ok(ms >= 250, `closed after ${ms} ms`);
    const closed = events.find((e) => e.type === "closed");
    assert.equal(closed?.type === "closed" && closed.error, "idle for 300 ms");
    assert.equal(up.ctx.connections.size, 0);
  },
);
