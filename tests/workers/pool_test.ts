// -workers, end to end through real mTLS: a db sidecar serving from the main thread and one
// worker thread on one port (SO_REUSEPORT). Connections land on both threads (their events say
// which), every thread follows leaf and roots rotations and intention changes from the main
// thread's one set of watches, the metrics count every thread, and close drains them all.
import assert from "node:assert/strict";
import type tls from "node:tls";
import { createProxyMetrics } from "../../src/admin/proxy_metrics.ts";
import { AgentClient } from "../../src/agent/client.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { ProxyEvent } from "../../src/events/lifecycle.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { AgentRelay } from "../../src/workers/agent_relay.ts";
import { shareableConfig } from "../../src/workers/pool.ts";
import { createLogger, type Logger } from "../../src/net/log.ts";
import { devAgent, eventually, freePort } from "../_helpers.ts";
import { echoServer, outcome, tcpClient, tlsClient } from "../e2e/_net.ts";

const FAST = { minIntervalMs: 0, backoffBaseMs: 20, backoffMaxMs: 200 };
/**
 * Ports shared by threads must be known before any of them binds (port 0 cannot be shared), so
 * each is picked free when the file loads — never a fixed number inside the kernel's ephemeral
 * range, which any test's outgoing connection may hold.
 */
const DB_PUBLIC = freePort();
const DB_PUBLIC_CRASH = freePort();
const DB_PUBLIC_UPSTREAM = freePort();
const WEB_PUBLIC = freePort();
const WEB_UPSTREAM = freePort();

/** Records every blocking request the agent holds, per path, for the "one watch" check. */
function watchCounter() {
  const holding = new Map<string, number>();
  const most = new Map<string, number>();
  const transport = async (input: URL | string, init: RequestInit) => {
    const url = new URL(String(input));
    const blocking = url.searchParams.has("index") || url.searchParams.has("hash");
    const key = url.pathname + (url.search.includes("by=") ? "?match" : "");
    if (blocking) {
      holding.set(key, (holding.get(key) ?? 0) + 1);
      most.set(key, Math.max(most.get(key) ?? 0, holding.get(key)!));
    }
    try {
      return await fetch(input, init);
    } finally {
      if (blocking) holding.set(key, holding.get(key)! - 1);
    }
  };
  return { transport, most };
}

/** db-1 with an echo app, its sidecar on DB_PUBLIC served by `threads` threads. */
async function setup(
  opts: { port: number; threads: number; module?: URL; grace?: number; log?: Logger },
) {
  const dev = await devAgent({ rotationJitterMs: 0 });
  const setupAgent = new AgentClient({ address: dev.address });
  const app = await echoServer();
  await setupAgent.register({
    ID: "db-1",
    Name: "db",
    Port: app.port,
    Connect: { SidecarService: { Port: opts.port } },
  });
  const counter = watchCounter();
  const relay = new AgentRelay({ fetch: counter.transport });
  const agent = new AgentClient({ address: dev.address, fetch: relay.fetch, watchDefaults: FAST });
  const events: ProxyEvent[] = [];
  const proxy = await startProxy({
    agent,
    sidecarFor: "db-1",
    limits: { revokeGraceMs: opts.grace ?? 0 },
    log: opts.log,
    workers: {
      count: opts.threads,
      relay,
      agent: { address: dev.address, watchDefaults: FAST },
      module: opts.module,
      log: { silent: true },
    },
  });
  const stopEvents = proxy.events.subscribe((e) => events.push(e));
  await proxy.ready;
  await eventually(() => proxy.problems.length === 0, 20_000, "every thread ready");
  /** A TLS connection as web, with web's current leaf and the current roots. */
  const connect = async () => {
    const web = (await setupAgent.leaf("web")).value;
    const roots = (await setupAgent.roots()).value;
    return await tlsClient(opts.port, {
      cert: web.CertPEM,
      key: web.PrivateKeyPEM,
      ca: roots.Roots.map((r) => r.RootCert),
    });
  };
  /** Which thread accepted the connection from `socket` (0: main), once it is accepted. */
  const threadOf = async (socket: tls.TLSSocket): Promise<number> => {
    const remote = `${socket.localAddress}:${socket.localPort}`;
    let found: ProxyEvent | undefined;
    await eventually(
      () => {
        found = events.find((e) => e.type === "accepted" && e.remote === remote);
        return found !== undefined;
      },
      5000,
      `the accepted event of ${remote}`,
    );
    return found!.worker ?? 0;
  };
  return {
    dev,
    app,
    relay,
    agent,
    setupAgent,
    proxy,
    events,
    counter,
    connect,
    threadOf,
    async [Symbol.asyncDispose]() {
      stopEvents();
      await proxy.close();
      relay.close();
      await agent.close();
      await setupAgent.close();
      await app.close();
      await dev.close();
    },
  };
}

/** Opens connections until both threads have accepted some; returns them with their thread. */
async function onBothThreads(s: Awaited<ReturnType<typeof setup>>, most = 60) {
  const open: { socket: tls.TLSSocket; thread: number }[] = [];
  for (let i = 0; i < most; i++) {
    const socket = await s.connect();
    open.push({ socket, thread: await s.threadOf(socket) });
    const threads = new Set(open.map((o) => o.thread));
    if (threads.has(0) && threads.has(1) && open.length >= 4) return open;
  }
  throw new Error(`${most} connections all landed on thread ${open[0]?.thread}`);
}

Deno.test("-workers 2: connections land on both threads, all counted, all following one set of watches", async (t) => {
  await using s = await setup({ port: DB_PUBLIC, threads: 2 });
  assert.deepEqual(s.proxy.workers.map((w) => [w.id, w.state]), [[1, "ready"]]);
  const metrics = createProxyMetrics(s.proxy);

  await t.step("connections land on both threads and are piped by each", async () => {
    const open = await onBothThreads(s);
    for (const { socket } of open) {
      assert.equal(await outcome(socket, "ping"), "ping");
    }
    const accepted = s.events.filter((e) => e.type === "accepted").length;
    const line = metrics.registry.render().split("\n").find((l) =>
      l.startsWith("meshgate_connections_accepted_total{") && l.includes('direction="inbound"')
    );
    assert.ok(line, "accepted counter");
    assert.equal(Number(line.split(" ").at(-1)), accepted);
    await eventually(
      () => s.events.filter((e) => e.type === "closed").length === open.length,
      5000,
      "every close reported",
    );
    const closedBy = new Set(s.events.filter((e) => e.type === "closed").map((e) => e.worker ?? 0));
    assert.deepEqual([...closedBy].sort(), [0, 1]);
  });

  await t.step("the agent holds one blocking query per watched resource", () => {
    for (const [path, most] of s.counter.most) assert.equal(most, 1, path);
    for (const path of ["/v1/agent/connect/ca/roots", "/v1/agent/connect/ca/leaf/db"]) {
      assert.ok(s.counter.most.has(path), `${path} watched`);
    }
  });

  await t.step("a CA rotation reaches every thread: new connections get the new leaf", async () => {
    const before = s.proxy.material.leaf!.info.serial;
    await s.dev.rotateCA();
    await eventually(() => s.proxy.material.leaf!.info.serial !== before, 10_000, "main's leaf");
    const now = s.proxy.material.leaf!.info.serial;
    const normal = (x: string) => x.replaceAll(":", "").toLowerCase().replace(/^0+/, "");
    await eventually(
      async () => {
        const open = await onBothThreads(s);
        const serials = open.map(({ socket }) => normal(socket.getPeerCertificate().serialNumber));
        for (const { socket } of open) socket.destroy();
        return serials.every((x) => x === normal(now));
      },
      10_000,
      "both threads presenting the new leaf",
    );
  });

  await t.step(
    "a deny intention closes open connections and refuses new ones in every thread",
    async () => {
      const open = await onBothThreads(s);
      const ends = open.map(({ socket }) =>
        new Promise<void>((resolve) => {
          socket.on("error", () => {});
          socket.on("data", () => {});
          // A half-open client (allowHalfOpen): the proxy's end is the revocation.
          socket.on("end", () => {
            socket.destroy();
            resolve();
          });
          socket.on("close", () => resolve());
        })
      );
      await new OperatorClient(s.setupAgent).upsertIntention("web", "db", { Action: "deny" });
      await Promise.all(ends);
      // A worker's events cross a thread: its `revoked` may come a moment after the close.
      const revokedBy = () =>
        [...new Set(s.events.filter((e) => e.type === "revoked").map((e) => e.worker ?? 0))]
          .sort().join();
      await eventually(() => revokedBy() === "0,1", 5000, `revocations on both (${revokedBy()})`);
      // New connections are refused on every thread.
      await eventually(
        async () => {
          for (let i = 0; i < 20; i++) {
            const socket = await s.connect().catch(() => undefined);
            if (socket) assert.equal(await outcome(socket, "ping"), "closed");
          }
          const deniedBy = new Set(
            s.events.filter((e) => e.type === "refused" && e.refusal.reason === "denied")
              .map((e) => e.worker ?? 0),
          );
          return deniedBy.has(0) && deniedBy.has(1);
        },
        10_000,
        "denials on both threads",
      );
      await new OperatorClient(s.setupAgent).deleteIntention("web", "db");
    },
  );

  await t.step(
    "close drains every thread: an open connection finishes, then all stop",
    async () => {
      const open = await onBothThreads(s);
      const onWorker = open.find((o) => o.thread === 1)!;
      for (const o of open) if (o !== onWorker) o.socket.destroy();
      const closing = s.proxy.close(10_000);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(s.proxy.workers[0]?.state, "closing");
      assert.equal(await outcome(onWorker.socket, "still here"), "still here");
      await closing;
      assert.deepEqual(s.proxy.workers.map((w) => w.state), ["closed"]);
      assert.equal(s.relay.stats.inFlight, 0);
    },
  );
  metrics.close();
});

Deno.test("a worker that dies is reported, not restarted; the main thread keeps serving", async () => {
  const lines: string[] = [];
  await using s = await setup({
    port: DB_PUBLIC_CRASH,
    threads: 2,
    module: new URL("./_crashing_worker.ts", import.meta.url),
    log: createLogger({ level: "error", write: (line) => lines.push(line) }),
  });
  await eventually(() => s.proxy.workers[0]?.state === "dead", 10_000, "the worker to die");
  assert.match(s.proxy.problems.join("\n"), /worker 1: died \(.*on purpose.*\); not restarted/);
  assert.ok(
    lines.some((l) => /\[ERROR\] worker died; not restarted.*worker=1.*on purpose/.test(l)),
    lines.join("\n"),
  );
  for (let i = 0; i < 10; i++) {
    const socket = await s.connect();
    assert.equal(await s.threadOf(socket), 0);
    assert.equal(await outcome(socket, "ping"), "ping");
  }
});

Deno.test("shareableConfig leaves unix-socket and port-0 listeners to the main thread", () => {
  const config = {
    service: "web",
    publicListener: { hostname: "0.0.0.0", port: 0 },
    app: { hostname: "127.0.0.1", port: 8080 },
    upstreams: [
      { type: "service" as const, name: "db", bind: { hostname: "127.0.0.1", port: 9191 } },
      { type: "service" as const, name: "cache", bind: { path: "/tmp/cache.sock" } },
      { type: "service" as const, name: "any", bind: { hostname: "127.0.0.1", port: 0 } },
    ],
  };
  const shared = shareableConfig(config);
  assert.equal(shared.publicListener, undefined);
  assert.deepEqual(shared.upstreams.map((u) => u.name), ["db"]);
  assert.equal(shared.app, config.app);
  const fixed = shareableConfig({
    ...config,
    publicListener: { hostname: "0.0.0.0", port: 21000 },
  });
  assert.deepEqual(fixed.publicListener, { hostname: "0.0.0.0", port: 21000 });
});

Deno.test("-workers 2 on the client side: an upstream listener's connections land on both threads", async () => {
  const dev = await devAgent();
  const setupAgent = new AgentClient({ address: dev.address });
  const app = await echoServer();
  await setupAgent.register({
    ID: "db-1",
    Name: "db",
    Port: app.port,
    Connect: { SidecarService: { Port: DB_PUBLIC_UPSTREAM } },
  });
  await setupAgent.register({
    ID: "web-1",
    Name: "web",
    Port: 1,
    Connect: {
      SidecarService: {
        Port: WEB_PUBLIC,
        Proxy: { Upstreams: [{ DestinationName: "db", LocalBindPort: WEB_UPSTREAM }] },
      },
    },
  });
  const dbAgent = new AgentClient({ address: dev.address, watchDefaults: FAST });
  const db = await startProxy({ agent: dbAgent, sidecarFor: "db-1" });
  const relay = new AgentRelay();
  const agent = new AgentClient({ address: dev.address, fetch: relay.fetch, watchDefaults: FAST });
  const events: ProxyEvent[] = [];
  const web = await startProxy({
    agent,
    sidecarFor: "web-1",
    workers: { count: 2, relay, agent: { address: dev.address, watchDefaults: FAST } },
  });
  const stop = web.events.subscribe((e) => events.push(e));
  try {
    await Promise.all([db.ready, web.ready]);
    await eventually(() => web.problems.length === 0, 20_000, "both threads ready");
    await eventually(
      async () => (await setupAgent.healthConnect("db", { passing: true })).value.length === 1,
      10_000,
      "db's sidecar healthy",
    );
    const threads = new Set<number>();
    for (let i = 0; i < 60 && threads.size < 2; i++) {
      const c = await tcpClient(WEB_UPSTREAM);
      const remote = `${c.localAddress}:${c.localPort}`;
      assert.equal(await outcome(c, `through ${i}`), `through ${i}`);
      let accepted: ProxyEvent | undefined;
      await eventually(
        () => {
          accepted = events.find((e) =>
            e.type === "accepted" && e.direction === "outbound" && e.remote === remote
          );
          return accepted !== undefined;
        },
        5000,
        `the accepted event of ${remote}`,
      );
      threads.add(accepted!.worker ?? 0);
    }
    assert.deepEqual([...threads].sort(), [0, 1]);
  } finally {
    stop();
    await web.close();
    await db.close();
    relay.close();
    await agent.close();
    await dbAgent.close();
    await setupAgent.close();
    await app.close();
    await dev.close();
  }
});
