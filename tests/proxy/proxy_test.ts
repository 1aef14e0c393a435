// What src/proxy/proxy.ts decides on its own, on the test double: which mode it runs in and which
// sidecar it finds; the configuration diff (an upstream listener is opened, replaced or closed
// alone, the others and their connections untouched; one that cannot bind is retried on the next
// change and counted in problems); an unusable registration after a good one is ignored; a public
// listener that cannot bind at start rejects `ready`; the self-registration's body. The public
// listener following its address: rebind_test.ts; startup and -register retries: startup_test.ts;
// close: close_test.ts; the whole path: tests/e2e/.
import assert from "node:assert/strict";
import { createLogger } from "../../src/net/log.ts";
import { ProxyConfigError } from "../../src/proxy/config.ts";
import { findSidecar, startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort, nth } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";
import { echoServer, roundTrip, tcpClient } from "../e2e/_net.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Whether nothing accepts on 127.0.0.1:`port`. */
const refused = (port: number) => tcpClient(port).then((s) => (s.destroy(), false), () => true);

Deno.test("proxy: exactly one of proxyId, sidecarFor and config; workers a whole number ≥ 1", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const config = { service: "web", upstreams: [] };
  const cases: [Parameters<typeof startProxy>[0], string, RegExp][] = [
    [{ agent }, "mode", /give exactly one of -proxy-id, -sidecar-for or -service/],
    [{ agent, proxyId: "a", config }, "mode", /exactly one/],
    [{ agent, proxyId: "a", sidecarFor: "b" }, "mode", /exactly one/],
    [{ agent, config, workers: { count: 0 } as never }, "workers", /0 must be a whole number ≥ 1/],
    [{ agent, config, workers: { count: 1.5 } as never }, "workers", /1\.5 must be a whole number/],
    [
      { agent, config, workers: { count: 2 } as never, dataPlane: true },
      "workers",
      /a worker starts no workers/,
    ],
  ];
  for (const [options, field, message] of cases) {
    await assert.rejects(
      startProxy(options),
      (e: unknown) => e instanceof ProxyConfigError && e.field === field && message.test(e.message),
      `${field}: ${message}`,
    );
  }
});

Deno.test("findSidecar: the one connect-proxy for an instance ID, in any case; two are an error naming both", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  await agent.register({ ID: "web-1", Name: "web", Port: 1, Connect: { SidecarService: {} } });
  assert.equal(await findSidecar(agent, "web-1"), "web-1-sidecar-proxy");
  assert.equal(await findSidecar(agent, "WEB-1"), "web-1-sidecar-proxy", "IDs compare case-blind");
  // A plain service that names web-1 is not a sidecar.
  await agent.register({
    ID: "fake",
    Name: "fake",
    Port: 2,
    Meta: { DestinationServiceID: "web-1" },
  });
  assert.equal(await findSidecar(agent, "web-1"), "web-1-sidecar-proxy");
  await agent.register({
    Kind: "connect-proxy",
    ID: "web-1-other-proxy",
    Name: "web-other-proxy",
    Port: 21999,
    Proxy: { DestinationServiceName: "web", DestinationServiceID: "web-1" },
  });
  await assert.rejects(
    findSidecar(agent, "web-1"),
    (e: unknown) =>
      e instanceof ProxyConfigError && e.field === "-sidecar-for" &&
      /More than one sidecar proxy registered for web-1 \(.*web-1-other-proxy.*\); use -proxy-id/
        .test(e.message) &&
      e.message.includes("web-1-sidecar-proxy"),
  );
  await assert.rejects(startProxy({ agent, sidecarFor: "web-1" }), /More than one sidecar/);
});

Deno.test("proxy: an upstream added, changed or removed is opened, replaced or closed alone", async () => {
  await using m = await mesh();
  const db = nth(m.webProxy.upstreams, 0, "db's listener");
  const open = await tcpClient(m.upstreamPort);
  let got = "";
  open.on("data", (d) => (got += d));
  open.write("keep;");
  await eventually(() => got === "keep;");
  const configs = () => m.webProxy.events.recent().filter((e) => e.type === "config").length;

  // Added: a second upstream; db's listener is the same object and its connection flows.
  const api = freePort();
  await m.agent.register(m.webRegistration([{ DestinationName: "db2", LocalBindPort: api }]));
  await eventually(() => m.webProxy.upstreams.length === 2, 5000, "the new upstream listener");
  assert.equal(nth(m.webProxy.upstreams, 0, "db"), db, "db's listener was not reopened");
  assert.equal(configs(), 1, "one config event per change");
  open.write("still;");
  await eventually(() => got === "keep;still;", 5000, "db's open connection flows");

  // Changed: db2 on another port is a new listener; the old port closes, db is untouched.
  const moved = freePort();
  await m.agent.register(m.webRegistration([{ DestinationName: "db2", LocalBindPort: moved }]));
  await eventually(
    () =>
      m.webProxy.upstreams.some((u) => "port" in u.upstream.bind && u.upstream.bind.port === moved),
    5000,
    "db2 on its new port",
  );
  assert.equal(await refused(api), true, "db2's old port is closed");
  assert.equal(nth(m.webProxy.upstreams, 0, "db"), db);

  // Removed: db2 closes; db's connection still flows.
  await m.agent.register(m.webRegistration());
  await eventually(() => m.webProxy.upstreams.length === 1, 5000, "db2 to close");
  assert.equal(await refused(moved), true);
  open.write("end;");
  await eventually(() => got === "keep;still;end;", 5000, "db's connection survived it all");
  assert.equal(configs(), 3);
  open.destroy();
});

Deno.test("proxy: an upstream that cannot bind is a problem, retried on the next registration change", async () => {
  await using m = await mesh();
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  await m.agent.register(m.webRegistration([{ DestinationName: "db2", LocalBindPort: port }]));
  await eventually(
    () => m.webProxy.problems.includes("1 upstream listener(s) not up"),
    5000,
    "the problem",
  );
  assert.equal(m.webProxy.upstreams.length, 1, "db serves on");
  assert.equal(text(await roundTrip(await tcpClient(m.upstreamPort), "db")), "db");
  taken.close();
  // Any change to the registration applies the configuration again, which opens it now.
  const extra = { DestinationName: "db2", LocalBindPort: port };
  await m.agent.register({ ...m.webRegistration([extra]), Tags: ["retry"] });
  await eventually(() => m.webProxy.upstreams.length === 2, 5000, "db2 listening");
  assert.deepEqual(m.webProxy.problems, []);
});

Deno.test("proxy: an unusable registration after a good one is logged and ignored", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const app = await echoServer();
  const errors: string[] = [];
  const log = createLogger({
    level: "error",
    json: true,
    write: (line) => errors.push(JSON.parse(line)["@message"]),
  });
  const upstreamPort = freePort();
  const register = (lb: string) =>
    agent.register({
      ID: "db-1",
      Name: "db",
      Port: app.port,
      Connect: {
        SidecarService: {
          Port: freePort(),
          Proxy: {
            Upstreams: [{
              DestinationName: "cache",
              LocalBindPort: upstreamPort,
              Config: { lb_policy: lb },
            }],
          },
        },
      },
    });
  await register("round_robin");
  await using proxy = await startProxy({ agent, sidecarFor: "db-1", log });
  await proxy.ready;
  const good = proxy.config;
  await register("random");
  await eventually(() => errors.includes("ignoring unusable registration"), 5000, "the error");
  assert.equal(proxy.config, good, "the configuration stays");
  assert.deepEqual(proxy.problems, [], "not a problem while a configuration serves");
  await register("least_connections");
  await eventually(() => proxy.config?.upstreams[0]?.policy === "least_connections");
  await app.close();
});

Deno.test("proxy: a public listener that cannot bind at start rejects ready, naming the address", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  await using proxy = await startProxy({
    agent,
    config: {
      service: "db",
      upstreams: [],
      publicListener: { hostname: "127.0.0.1", port },
      app: { hostname: "127.0.0.1", port: 1 },
    },
  });
  await assert.rejects(
    proxy.ready,
    new RegExp(
      `^Error: public listener: cannot bind 127\\.0\\.0\\.1:${port}: address already in use$`,
    ),
  );
  assert.ok(
    proxy.problems.includes(
      `public listener: cannot bind 127.0.0.1:${port}: address already in use`,
    ),
    proxy.problems.join("; "),
  );
  assert.equal(proxy.inbound, undefined);
});

Deno.test("proxy -register: the body names the proxy, its address and service, with a passing TTL check", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const app = await echoServer();
  const port = freePort();
  {
    await using proxy = await startProxy({
      agent,
      config: {
        service: "db",
        upstreams: [],
        publicListener: { hostname: "127.0.0.1", port },
        app: { hostname: "127.0.0.1", port: app.port },
      },
      register: { id: "db-proxy-7", name: "db-proxy" },
    });
    await proxy.ready;
    const registered = (await agent.service("db-proxy-7")).value;
    assert.equal(registered.Kind, "connect-proxy");
    assert.equal(registered.Service, "db-proxy");
    assert.equal(registered.Address, "127.0.0.1");
    assert.equal(registered.Port, port);
    assert.equal(registered.Proxy?.DestinationServiceName, "db");
    assert.deepEqual(
      dev.catalog.checksOf("db-proxy-7").map((c) => [c.CheckID, c.Name, c.Type, c.Status]),
      [["db-proxy-7-ttl", "proxy heartbeat", "ttl", "passing"]],
    );
    // It is a mesh endpoint of db now.
    assert.equal((await agent.healthConnect("db", { passing: true })).value.length, 1);
  }
  // Closed: deregistered.
  await assert.rejects(agent.service("db-proxy-7"), /404/);
  // A proxy with upstreams only has nothing to register: the agent would refuse it forever.
  await assert.rejects(
    startProxy({
      agent,
      config: {
        service: "web",
        upstreams: [{
          type: "service",
          name: "db",
          bind: { hostname: "127.0.0.1", port: freePort() },
        }],
      },
      register: { id: "web-proxy", name: "web-proxy" },
    }),
    (e: unknown) =>
      e instanceof ProxyConfigError && e.field === "register" &&
      e.message === "register: needs a public listener (the address to register)",
  );
  await app.close();
});
