// The proxy follows its registration and the agent live: public listener rebinding, a new
// application port, prepared-query upstreams, and self-registration that survives the agent
// forgetting it.
import assert from "node:assert/strict";
import net from "node:net";
import { OperatorClient } from "../../src/agent/operator.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";
import { mesh } from "./_mesh.ts";
import { echoServer, roundTrip, tcpClient } from "./_net.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("proxy: the public listener follows the registration's port; open connections survive", async () => {
  await using m = await mesh();
  const oldPort = m.dbProxy.inbound!.address.port!;
  const open = await tcpClient(m.upstreamPort);
  const got: string[] = [];
  open.on("data", (d) => got.push(d.toString()));
  open.write("before;");
  await eventually(() => got.join("") === "before;");

  const newPort = freePort();
  await m.agent.register({
    ID: "db-1",
    Name: "db",
    Port: m.db.port,
    Connect: { SidecarService: { Port: newPort } },
  });
  await eventually(
    () => m.dbProxy.inbound?.address.port === newPort,
    5000,
    "the public listener on the new port",
  );
  // The connection accepted on the old listener keeps flowing while it drains.
  open.write("after;");
  await eventually(() => got.join("") === "before;after;", 5000, "the open connection");
  // web's upstream follows db's health entry to the new port.
  await eventually(
    async () =>
      (await m.agent.healthConnect("db", { passing: true })).value[0]?.Service.Port === newPort,
  );
  await eventually(
    async () => {
      try {
        return text(await roundTrip(await tcpClient(m.upstreamPort), "new")) === "new";
      } catch {
        return false;
      }
    },
    5000,
    "a new connection through the new port",
  );
  await assert.rejects(tcpClient(oldPort), "the old port no longer accepts");
  open.end();
});

Deno.test("proxy: a new LocalServicePort sends new connections to the new application", async () => {
  await using m = await mesh();
  const second = await echoServer();
  const first = await roundTrip(await tcpClient(m.upstreamPort), "one");
  assert.equal(text(first), "one");
  assert.equal(m.db.connections(), 1);
  const svc = (await m.agent.service("db-1-sidecar-proxy")).value;
  await m.agent.register({
    ID: "db-1",
    Name: "db",
    Port: second.port,
    Connect: { SidecarService: { Port: svc.Port } },
  });
  await eventually(
    async () => {
      // The re-registered sidecar's checks may be critical for a moment: refused then.
      await roundTrip(await tcpClient(m.upstreamPort), "two").catch(() => {});
      return second.connections() > 0;
    },
    5000,
    "a connection to reach the second application",
  );
  assert.equal(m.dbProxy.inbound!.address.port, svc.Port, "the public listener stayed put");
  await second.close();
});

Deno.test("proxy: a prepared_query upstream resolves through /v1/query/:name/execute", async () => {
  await using m = await mesh();
  await new OperatorClient(m.agent).createPreparedQuery({
    Name: "db-nearby",
    Service: { Service: "db" },
  });
  const port = freePort();
  await using web = await startProxy({
    agent: m.agent,
    config: {
      service: "web",
      upstreams: [{
        type: "prepared_query",
        name: "db-nearby",
        bind: { hostname: "127.0.0.1", port },
      }],
    },
  });
  await web.ready;
  assert.equal(text(await roundTrip(await tcpClient(port), "via query")), "via query");
  // Deny applies to the service the query resolved to.
  await new OperatorClient(m.agent).upsertIntention("web", "db", { Action: "deny" });
  const refused = await roundTrip(await tcpClient(port), "nope").catch(() => new Uint8Array());
  assert.equal(refused.length, 0);
});

Deno.test("proxy: -register registers again when the agent loses the registration", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const app = await echoServer();
  const listen = freePort();
  const proxy = await startProxy({
    agent,
    config: {
      service: "db",
      upstreams: [],
      publicListener: { hostname: "127.0.0.1", port: listen },
      app: { hostname: "127.0.0.1", port: app.port },
    },
    register: { id: "db-proxy", name: "db-proxy", heartbeatMs: 30 },
  });
  await proxy.ready;
  assert.equal((await agent.service("db-proxy")).value.Port, listen);
  // An agent restart without persisted state looks like this: the registration is gone.
  await agent.deregister("db-proxy");
  await eventually(
    () => dev.catalog.get("db-proxy") !== undefined,
    5000,
    "the proxy to register again",
  );
  assert.deepEqual(dev.catalog.checksOf("db-proxy").map((c) => [c.CheckID, c.Status]), [
    ["db-proxy-ttl", "passing"],
  ]);
  await proxy.close();
  assert.equal(dev.catalog.get("db-proxy"), undefined, "deregistered on shutdown");
  await app.close();
  await agent.close();
});

Deno.test("proxy: unix sockets for an upstream listener (with its mode) and for the application", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const dir = await Deno.makeTempDir();
  const appPath = `${dir}/db.sock`;
  const upstreamPath = `${dir}/web-to-db.sock`;
  const app = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((r) => app.listen(appPath, r));
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: 1,
    Connect: {
      SidecarService: { Port: freePort(), Proxy: { LocalServiceSocketPath: appPath } },
    },
  });
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
            LocalBindSocketPath: upstreamPath,
            LocalBindSocketMode: "0700",
          }],
        },
      },
    },
  });
  const db = await startProxy({ agent, sidecarFor: "db-1" });
  const web = await startProxy({ agent, sidecarFor: "web-1" });
  try {
    await Promise.all([db.ready, web.ready]);
    await eventually(async () =>
      (await agent.healthConnect("db", { passing: true })).value.length === 1
    );
    assert.equal((await Deno.stat(upstreamPath)).mode! & 0o777, 0o700);
    const c = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ path: upstreamPath, allowHalfOpen: true }, () => resolve(s));
      s.once("error", reject);
    });
    assert.equal(text(await roundTrip(c, "over unix sockets")), "over unix sockets");
  } finally {
    await web.close();
    await db.close();
    await new Promise<void>((r) => app.close(() => r()));
    await agent.close();
  }
  await assert.rejects(Deno.stat(upstreamPath), Deno.errors.NotFound, "socket file removed");
  await Deno.remove(dir, { recursive: true });
});
