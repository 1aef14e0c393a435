// The public listener follows its registration without losing its port (#16.3): settings that
// need no new socket apply to the live listener, a rebind on the same port swaps sockets, and
// a failed rebind keeps the old listener serving and says why.
import assert from "node:assert/strict";
import net from "node:net";
import type tls from "node:tls";
import { readinessProblems } from "../../src/admin/readiness.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { ProxyConfig } from "../../src/proxy/config.ts";
import { type Proxy, startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort, nth } from "../_helpers.ts";
import { echoServer, roundTrip, tlsClient } from "../e2e/_net.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** A db proxy registered directly (`-proxy-id` mode), so every field can change. */
async function setup() {
  const dev = await devAgent();
  const agent = clientFor(dev);
  const app = await echoServer();
  const port = freePort();
  const register = (
    change: {
      Address?: string;
      Port?: number;
      Service?: string;
      Config?: Record<string, unknown>;
    } = {},
  ) =>
    agent.register({
      Kind: "connect-proxy",
      ID: "db-proxy",
      Name: "db-proxy",
      Address: change.Address ?? "",
      Port: change.Port ?? port,
      Proxy: {
        DestinationServiceName: change.Service ?? "db",
        LocalServicePort: app.port,
        Config: change.Config ?? {},
      },
    });
  await register();
  const proxy = await startProxy({ agent, proxyId: "db-proxy" });
  await proxy.ready;
  const web = (await agent.leaf("web")).value;
  const roots = (await agent.roots()).value.Roots.map((r) => r.RootCert);
  /** A connection as web, through the public listener. */
  const dial = (p = port): Promise<tls.TLSSocket> =>
    tlsClient(p, { cert: web.CertPEM, key: web.PrivateKeyPEM, ca: roots });
  return {
    dev,
    agent,
    proxy,
    port,
    register,
    dial,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await app.close();
      await agent.close();
      await dev.close();
    },
  };
}

/** An open (authorized, piped) connection that echoes a line on demand. */
async function openConnection(dial: () => Promise<tls.TLSSocket>) {
  const socket = await dial();
  let got = "";
  socket.on("data", (d) => (got += d.toString()));
  const connection = {
    async echo(line: string) {
      const before = got.length;
      socket.write(line);
      await eventually(() => got.slice(before) === line, 5000, `"${line}" echoed`);
    },
    close: () => socket.destroy(),
  };
  await connection.echo("open;");
  return connection;
}

/** Waits until the proxy has taken the registration change in. */
function applied(proxy: Proxy, check: (config: ProxyConfig) => boolean) {
  return eventually(() => !!proxy.config && check(proxy.config), 5000, "the change");
}

function refusedConnect(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(true));
  });
}

/** Plain TCP that never starts a handshake; resolves with how long the listener waited. */
function silentFor(port: number): Promise<number> {
  const started = Date.now();
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.on("error", () => {});
    s.once("close", () => resolve(Date.now() - started));
  });
}

/** `p`, or a rejection after `ms` (a cut TLS connection may never report its close). */
async function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function flows(m: { dial: () => Promise<tls.TLSSocket> }, line: string) {
  assert.equal(text(await roundTrip(await m.dial(), line)), line);
}

Deno.test("rebind: handshake_timeout_ms on the same port applies to the live listener", async () => {
  await using m = await setup();
  const open = await openConnection(m.dial);
  const listener = m.proxy.inbound;
  await m.register({ Config: { handshake_timeout_ms: 300 } });
  await applied(m.proxy, (c) => c.handshakeTimeoutMs === 300);
  assert.deepEqual(readinessProblems(m.proxy), []);
  assert.equal(m.proxy.inbound, listener, "the same listener, no new socket");
  await open.echo("still open;");
  await flows(m, "new connection");
  const waited = await silentFor(m.port);
  assert.ok(waited < 3000, `a silent client is cut after the new 300 ms deadline (${waited} ms)`);
  open.close();
});

Deno.test("rebind: local_connect_timeout_ms and DestinationServiceName change in place", async () => {
  await using m = await setup();
  const open = await openConnection(m.dial);
  const listener = m.proxy.inbound;
  await m.register({ Config: { local_connect_timeout_ms: 250 } });
  await applied(m.proxy, (c) => c.localConnectTimeoutMs === 250);
  assert.deepEqual(readinessProblems(m.proxy), []);
  await flows(m, "after the connect timeout change");
  await m.register({ Service: "db2" });
  await applied(m.proxy, (c) => c.service === "db2");
  assert.equal(m.proxy.config?.service, "db2");
  assert.equal(m.proxy.inbound, listener, "the same listener throughout");
  await open.echo("open across both changes;");
  // The leaf follows the new service; new connections are authorized against it.
  await eventually(() => m.proxy.material.leaf?.info.uris[0]?.endsWith("/svc/db2") ?? false);
  assert.deepEqual(readinessProblems(m.proxy), []);
  await flows(m, "as db2");
  await new OperatorClient(m.agent).upsertIntention("web", "db2", { Action: "deny" });
  await eventually(
    async () => (await roundTrip(await m.dial(), "x").catch(() => new Uint8Array())).length === 0,
    5000,
    "the deny on db2 to apply",
  );
  open.close();
});

Deno.test('rebind: Address "" → 127.0.0.1 on the same port swaps sockets; open connections flow', async () => {
  await using m = await setup();
  const open = await openConnection(m.dial);
  await m.register({ Address: "127.0.0.1" });
  await applied(m.proxy, (c) => c.publicListener?.hostname === "127.0.0.1");
  assert.deepEqual(readinessProblems(m.proxy), []);
  assert.equal(m.proxy.inbound?.address.hostname, "127.0.0.1");
  assert.equal(m.proxy.inbound?.address.port, m.port);
  await open.echo("old connection;");
  await flows(m, "through the new socket");
  open.close();
  await m.proxy.close();
  assert.ok(await refusedConnect(m.port), "nothing accepts after close()");
});

Deno.test("rebind: a connection still being authorized when the listener moves is not cut", async () => {
  await using m = await setup();
  m.dev.faults.add({ path: "/v1/agent/connect/authorize", latencyMs: 600, times: 1 });
  const pending = await m.dial(); // handshake done; authorize held by the agent
  const port = freePort();
  await m.register({ Port: port });
  await applied(m.proxy, (c) => c.publicListener?.port === port);
  assert.equal(
    text(await within(5000, roundTrip(pending, "authorized after the move"))),
    "authorized after the move",
  );
  pending.destroy();
});

Deno.test("rebind: a port in use keeps the old listener serving and says why; reverting recovers", async () => {
  await using m = await setup();
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(0, "0.0.0.0", r));
  const busy = (squatter.address() as net.AddressInfo).port;
  try {
    await m.register({ Port: busy });
    await eventually(() => readinessProblems(m.proxy).length > 0, 5000, "a problem");
    assert.deepEqual(readinessProblems(m.proxy), [
      `public listener: cannot bind 0.0.0.0:${busy}: address already in use; ` +
      `still serving on 0.0.0.0:${m.port}`,
    ]);
    await flows(m, "old port still serves");
    await m.register();
    await applied(m.proxy, (c) => c.publicListener?.port === m.port);
    assert.deepEqual(readinessProblems(m.proxy), [], "reverting the registration recovers");
    await flows(m, "after the revert");
  } finally {
    await new Promise<void>((r) => squatter.close(() => r()));
  }
});

Deno.test("rebind: the same port on an address not on this host resumes the old socket", async () => {
  await using m = await setup();
  const open = await openConnection(m.dial);
  await m.register({ Address: "192.0.2.1" }); // TEST-NET-1: never a local address
  await eventually(() => readinessProblems(m.proxy).length > 0, 5000, "a problem");
  assert.match(
    nth(readinessProblems(m.proxy), 0, "readiness problem"),
    new RegExp(`^public listener: cannot bind 192\\.0\\.2\\.1:${m.port}: .*; still serving on`),
  );
  await flows(m, "the old socket listens again");
  await open.echo("open one too;");
  open.close();
});
