// The double's catalog (src/devagent/catalog.ts) without HTTP: what a registration must pass
// (each check with an input that tries to get past it, and a refused registration stores
// nothing), sidecar ports, TTL and alias checks on fake time, virtual IPs, the health entries
// and their index when a name has none. What real Consul answers over HTTP: the contract suite.
import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { Catalog, type CatalogOptions } from "../../src/devagent/catalog.ts";
import { Store } from "../../src/devagent/store.ts";
import { BadRequest } from "../../src/devagent/strict.ts";
import { nth } from "../_helpers.ts";

/** A catalog on its own store, closed at the end of the scope. */
function catalog(options: Partial<CatalogOptions> = {}) {
  const store = new Store();
  const c = new Catalog(store, { datacenter: "dc1", ...options });
  return Object.assign(c, { store, [Symbol.dispose]: () => c.close() });
}

/** Fake `setTimeout` and `Date`, uninstalled at the end of the scope. */
function fakeTime() {
  const clock = FakeTimers.install({
    now: Date.now(),
    toFake: ["setTimeout", "clearTimeout", "Date"],
    shouldClearNativeTimers: true,
  });
  return Object.assign(clock, { [Symbol.dispose]: () => clock.uninstall() });
}

const proxy = (extra: Record<string, unknown> = {}) => ({
  Kind: "connect-proxy",
  Name: "web-proxy",
  Port: 21000,
  Proxy: { DestinationServiceName: "web", ...extra },
});
const upstream = (u: Record<string, unknown>) =>
  proxy({ Upstreams: [{ DestinationName: "db", LocalBindPort: 9191, ...u }] });
const validation = (...errors: string[]) =>
  `Validation failed: ${errors.length} error${errors.length > 1 ? "s" : ""} occurred:\n${
    errors.map((e) => `\t* ${e}`).join("\n")
  }\n\n`;

Deno.test("catalog: a registration Consul refuses is a BadRequest naming why, and stores nothing", () => {
  const cases: [string, unknown, string, number?][] = [
    ["no name", { ID: "x" }, "Missing service name"],
    ["empty name", { Name: "" }, "Missing service name"],
    [
      "unknown field",
      { Name: "web", Nmae: "x" },
      'Request decode failed: json: unknown field "Nmae"',
    ],
    [
      "unknown nested field",
      { Name: "web", Check: { TTL: "10s", Tll: "1s" } },
      'Request decode failed: json: unknown field "Tll"',
    ],
    [
      "body not an object",
      ["web"],
      "Request decode failed: json: cannot unmarshal array into Go value",
    ],
    ...["0.0.0.0", "::", "[::]"].map((a): [string, unknown, string] => [
      `address ${a}`,
      { Name: "web", Address: a },
      "Invalid service address",
    ]),
    [
      "passing weight 0",
      { Name: "web", Weights: { Passing: 0, Warning: 1 } },
      "Invalid Weights: Passing must be greater than 0",
    ],
    [
      "passing weight below 0",
      { Name: "web", Weights: { Passing: -1 } },
      "Invalid Weights: Passing must be greater than 0",
    ],
    [
      "proxy without port",
      { ...proxy(), Port: 0 },
      validation("Port or SocketPath must be set for a connect-proxy"),
    ],
    [
      "proxy without destination",
      { ...proxy(), Proxy: {} },
      validation("Proxy.DestinationServiceName must be set"),
    ],
    [
      "proxy for a wildcard",
      proxy({ DestinationServiceName: "*" }),
      validation("Proxy.DestinationServiceName must not be a wildcard"),
    ],
    [
      "native proxy",
      { ...proxy(), Connect: { Native: true } },
      validation("Connect.Native must not be set for a connect-proxy"),
    ],
    [
      "two errors at once",
      { ...proxy(), Port: 0, Proxy: {} },
      validation(
        "Port or SocketPath must be set for a connect-proxy",
        "Proxy.DestinationServiceName must be set",
      ),
    ],
    [
      "upstream of an unknown type",
      upstream({ DestinationType: "peer" }),
      validation("unknown upstream destination type: peer"),
    ],
    [
      "upstream without a name",
      upstream({ DestinationName: "" }),
      validation("upstream destination name must be set"),
    ],
    [
      "upstream to a wildcard",
      upstream({ DestinationName: "*" }),
      validation("upstream destination name must not be a wildcard"),
    ],
    [
      "upstream with port and socket",
      upstream({ LocalBindSocketPath: "/tmp/db.sock" }),
      validation("upstream db: exactly one of LocalBindPort or LocalBindSocketPath must be set"),
    ],
    [
      "upstream with neither",
      upstream({ LocalBindPort: 0 }),
      validation("upstream db: exactly one of LocalBindPort or LocalBindSocketPath must be set"),
    ],
    [
      "the same upstream twice",
      proxy({
        Upstreams: [{ DestinationName: "db", LocalBindPort: 1 }, {
          DestinationName: "db",
          DestinationType: "service",
          LocalBindPort: 2,
        }],
      }),
      validation("upstreams cannot contain duplicates of service:db:"),
    ],
    [
      "a check TTL that is no duration",
      { Name: "web", Check: { TTL: "zz" } },
      'Invalid check: invalid duration "zz"',
    ],
    ["a TCP interval that is no duration", {
      Name: "web",
      Check: { TCP: "127.0.0.1:1", Interval: "often" },
    }, 'Invalid check: invalid duration "often"'],
    [
      "a check status of its own",
      { Name: "web", Check: { TTL: "10s", Status: "fine" } },
      "Status for checks must 'passing', 'warning', 'critical'",
    ],
    // The second check is the bad one: the first must not stay behind.
    [
      "a bad second check",
      { Name: "web", Checks: [{ TTL: "10s" }, { TTL: "10s", Status: "ok" }] },
      "Status for checks must 'passing', 'warning', 'critical'",
    ],
    // The parent is valid, its sidecar's check is not: neither is registered.
    ["a bad sidecar check", {
      Name: "web",
      Port: 8080,
      Connect: { SidecarService: { Checks: [{ TTL: "soon" }] } },
    }, 'Invalid check: invalid duration "soon"'],
    ["a sidecar without a name's service", {
      Name: "web",
      Connect: { SidecarService: { Port: 0, Address: "0.0.0.0" } },
    }, "Invalid service address"],
  ];
  for (const [what, body, message, status = 400] of cases) {
    using c = catalog();
    const before = c.store.index;
    assert.throws(
      () => c.register(body),
      (e: unknown) => e instanceof BadRequest && e.message === message && e.status === status,
      what,
    );
    assert.deepEqual(c.all(), [], `${what}: nothing registered`);
    assert.deepEqual(c.checksOf("web"), [], `${what}: no check left behind`);
    assert.equal(c.store.index, before, `${what}: no write`);
  }
});

Deno.test("catalog: the edges of those checks pass", () => {
  using c = catalog();
  c.register({ Name: "a", Weights: { Passing: 1, Warning: 0 }, Address: "10.0.0.1" });
  // The same name as another type or in another datacenter is not a duplicate.
  c.register(proxy({
    Upstreams: [
      { DestinationName: "db", LocalBindPort: 1 },
      { DestinationName: "db", Datacenter: "dc2", LocalBindPort: 2 },
      { DestinationName: "db", DestinationType: "prepared_query", LocalBindPort: 3 },
      { DestinationName: "cache", LocalBindSocketPath: "/tmp/cache.sock" },
    ],
  }));
  c.register({
    Kind: "connect-proxy",
    Name: "unix-proxy",
    SocketPath: "/tmp/p.sock",
    Proxy: { DestinationServiceName: "web" },
  });
  // Field names match as Consul's decoder does: any case, snake_case too.
  c.register({ name: "b", PORT: 7, enable_tag_override: true });
  assert.deepEqual(c.all().map((s) => s.ID), ["a", "web-proxy", "unix-proxy", "b"]);
  assert.deepEqual(c.get("a")!.Weights, { Passing: 1, Warning: 0 });
  assert.deepEqual(
    c.get("web-proxy")!.Proxy!.Upstreams!.map((u) => u.DestinationType),
    ["service", "service", "prepared_query", "service"],
    "the type defaults to service",
  );
  assert.equal(c.get("b")!.Port, 7);
});

Deno.test("catalog: a sidecar takes the first free port from 21000, and a 500 when none is left", () => {
  using c = catalog();
  c.register({ Name: "taken", ID: "taken-21000", Port: 21000 });
  c.register({ Name: "web", Port: 8080, Connect: { SidecarService: {} } });
  const sidecar = c.get("web-sidecar-proxy")!;
  assert.equal(sidecar.Port, 21001);
  assert.deepEqual(sidecar.Proxy?.DestinationServiceName, "web");
  assert.equal(sidecar.Proxy?.LocalServiceAddress, "127.0.0.1");
  assert.equal(sidecar.Proxy?.LocalServicePort, 8080);
  assert.deepEqual(
    c.checksOf("web-sidecar-proxy").map((k) => [k.Name, k.Type]),
    [["Connect Sidecar Listening", "tcp"], ["Connect Sidecar Aliasing web", "alias"]],
  );
  // Registering again keeps its port; deregistering the parent removes it.
  c.register({ Name: "web", Port: 8080, Connect: { SidecarService: {} } });
  assert.equal(c.get("web-sidecar-proxy")!.Port, 21001);
  c.deregister("web");
  assert.equal(c.get("web-sidecar-proxy"), undefined);
  assert.deepEqual(c.checksOf("web-sidecar-proxy"), []);

  for (let port = 21001; port <= 21255; port++) {
    c.register({ Name: "taken", ID: `taken-${port}`, Port: port });
  }
  assert.throws(
    () => c.register({ Name: "api", Port: 9090, Connect: { SidecarService: {} } }),
    (e: unknown) =>
      e instanceof BadRequest && e.status === 500 &&
      e.message ===
        "no port provided for sidecar_service and none left in the configured range [21000, 21255]",
  );
  assert.equal(c.get("api"), undefined, "the parent is not registered either");
  c.register({ Name: "api", Port: 9090, Connect: { SidecarService: { Port: 30000 } } });
  assert.equal(c.get("api-sidecar-proxy")!.Port, 30000, "a port given is used");
});

Deno.test("catalog: a TTL longer than a timer can wait (1000h) does not run out at once", () => {
  using time = fakeTime();
  using c = catalog();
  c.register({ Name: "web", Port: 8080, Check: { CheckID: "web-ttl", TTL: "1000h" } });
  c.updateCheck("web-ttl", "passing", "ok");
  time.tick(24 * 3600_000);
  assert.equal(nth(c.checksOf("web"), 0, "web's check").Status, "passing", "a day into 1000 h");
});

Deno.test("catalog: a TTL check is critical until updated, and again when its TTL runs out", () => {
  using time = fakeTime();
  using c = catalog();
  c.register({ Name: "web", Port: 8080, Check: { CheckID: "web-ttl", TTL: "10s" } });
  const check = () => nth(c.checksOf("web"), 0, "web's check");
  assert.deepEqual([check().Status, check().Type], ["critical", "ttl"]);
  c.updateCheck("web-ttl", "passing", "ok");
  time.tick(6_000);
  c.updateCheck("web-ttl", "passing", "ok"); // each update starts the TTL again
  time.tick(6_000);
  assert.equal(check().Status, "passing", "12 s after the first update, 6 s after the last");
  const before = c.store.index;
  time.tick(4_000);
  assert.deepEqual(
    [check().Status, check().Output],
    ["critical", "TTL expired (last output before timeout follows): ok"],
  );
  assert.ok(c.store.index > before, "the expiry is a write (blocked health reads wake)");
  assert.equal(check().ModifyIndex, c.store.index);

  assert.throws(
    () => c.updateCheck("nope", "passing", ""),
    (e: unknown) =>
      e instanceof BadRequest && e.status === 404 &&
      e.message ===
        'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.',
  );
  c.register({ Name: "db", Port: 5432, Check: { CheckID: "db-tcp", TCP: "127.0.0.1:5432" } });
  assert.throws(
    () => c.updateCheck("db-tcp", "passing", ""),
    (e: unknown) =>
      e instanceof BadRequest && e.status === 500 &&
      e.message === 'CheckID "db-tcp" does not have associated TTL',
  );
});

Deno.test("catalog: a sidecar's alias check follows its parent's checks", () => {
  using time = fakeTime();
  using c = catalog();
  c.register({
    Name: "web",
    Port: 8080,
    Checks: [{ CheckID: "a", TTL: "1m", Status: "passing" }, {
      CheckID: "b",
      TTL: "1m",
      Status: "passing",
    }],
    Connect: { SidecarService: {} },
  });
  const alias = () =>
    nth(c.checksOf("web-sidecar-proxy").filter((k) => k.Type === "alias"), 0, "alias");
  assert.equal(alias().Status, "passing");
  c.updateCheck("b", "warning", "slow");
  assert.deepEqual([alias().Status, alias().Output], ["warning", "Aliased checks failing."]);
  c.updateCheck("a", "critical", "down");
  assert.equal(alias().Status, "critical", "critical wins over warning");
  c.updateCheck("a", "passing", "");
  c.updateCheck("b", "passing", "");
  assert.deepEqual([alias().Status, alias().Output], ["passing", "All checks passing."]);
  time.tick(60_000); // both TTLs run out
  assert.equal(alias().Status, "critical");
});

Deno.test("catalog: TCP checks probe until close(), at the catalog's interval", async () => {
  const probed: string[] = [];
  const c = catalog({
    tcpCheckIntervalMs: 5,
    probeTcp: (hostPort) => {
      probed.push(hostPort);
      return Promise.resolve(probed.length > 1);
    },
  });
  c.register({
    Name: "db",
    Port: 5432,
    Check: { CheckID: "tcp", TCP: "127.0.0.1:5432", Interval: "1h" },
  });
  const status = () => nth(c.checksOf("db"), 0, "db's check");
  while (probed.length < 3) await new Promise((r) => setTimeout(r, 5));
  assert.equal(status().Status, "passing");
  assert.equal(status().Output, "TCP connect 127.0.0.1:5432: Success");
  c.close();
  const after = probed.length;
  await new Promise((r) => setTimeout(r, 30));
  assert.ok(probed.length <= after + 1, "no more rounds after close (one may be in flight)");
});

Deno.test("catalog: a virtual IP per mesh name from 240.0.0.1, freed with its last instance and reused first", () => {
  using c = catalog();
  c.register({ Name: "web", ID: "web-1", Port: 1, Connect: { SidecarService: {} } });
  c.register({ Name: "api", Port: 2, Connect: { Native: true } });
  c.register({ Name: "plain", Port: 3 });
  assert.equal(c.virtualIp("web"), "240.0.0.1", "a sidecar's destination");
  assert.equal(c.virtualIp("api"), "240.0.0.2", "a Connect-native service");
  assert.equal(c.virtualIp("plain"), undefined, "not in the mesh");
  c.register({ Name: "web", ID: "web-2", Port: 4, Connect: { SidecarService: {} } });
  assert.equal(c.virtualIp("web"), "240.0.0.1", "one per name");
  c.deregister("web-1");
  assert.equal(c.virtualIp("web"), "240.0.0.1", "kept while an instance is left");
  c.deregister("web-2");
  assert.equal(c.virtualIp("web"), undefined);
  c.register({ Name: "cache", Port: 5, Connect: { Native: true } });
  assert.equal(c.virtualIp("cache"), "240.0.0.1", "the freed IP first");
  c.register({ Name: "queue", Port: 6, Connect: { Native: true } });
  assert.equal(c.virtualIp("queue"), "240.0.0.3");
  const entry = nth(c.healthConnect("cache", false), 0, "cache's entry");
  assert.deepEqual(entry.Service.TaggedAddresses?.["consul-virtual"], {
    Address: "240.0.0.1",
    Port: 5,
  });
});

Deno.test("catalog: health entries of a name, sorted by ID; passing only leaves out any non-passing check", () => {
  using c = catalog();
  for (const id of ["api-2", "api-1"]) {
    c.register({
      Name: "api",
      ID: id,
      Port: 1,
      Connect: { Native: true },
      Check: { CheckID: `${id}-ttl`, TTL: "1m" },
    });
  }
  c.register({ Name: "web", Port: 2, Meta: { v: "1" }, Connect: { SidecarService: {} } });
  const all = c.healthConnect("api", false);
  assert.deepEqual(all.map((e) => e.Service.ID), ["api-1", "api-2"]);
  assert.deepEqual(nth(all, 0).Checks.map((k) => k.CheckID), ["serfHealth", "api-1-ttl"]);
  assert.equal(nth(all, 0).Service.Meta, null, "an empty map is null, as the catalog keeps it");
  assert.deepEqual(c.healthConnect("api", true), [], "both TTL checks are critical");
  c.updateCheck("api-2-ttl", "passing", "");
  assert.deepEqual(c.healthConnect("api", true).map((e) => e.Service.ID), ["api-2"]);
  c.updateCheck("api-2-ttl", "warning", "");
  assert.deepEqual(c.healthConnect("api", true), [], "warning is not passing");
  // A sidecar is listed under its destination's name, not its own.
  assert.deepEqual(c.healthConnect("web", false).map((e) => e.Service.ID), ["web-sidecar-proxy"]);
  assert.deepEqual(nth(c.healthConnect("web", false), 0).Service.Meta, { v: "1" });
  assert.deepEqual(c.healthConnect("web-sidecar-proxy", false), []);
  assert.equal(c.hasMeshEndpoints("web"), true);
  assert.equal(c.hasMeshEndpoints("web-sidecar-proxy"), false);
});

Deno.test("catalog: a name without mesh endpoints answers the last-extinction index, else the plain service's, else the catalog's", () => {
  using c = catalog();
  assert.equal(c.emptyHealthIndex("db"), c.store.index, "nothing written: the raft index");
  c.register({ Name: "other", Port: 1 });
  const servicesWrite = c.store.index;
  c.store.bump("unrelated");
  assert.equal(c.emptyHealthIndex("db"), servicesWrite, "the catalog's last write");
  c.register({ Name: "db", Port: 5432 }); // a plain instance, no mesh endpoint
  const dbWrite = c.store.index;
  c.register({ Name: "other", ID: "other-2", Port: 2 });
  assert.equal(c.emptyHealthIndex("db"), dbWrite, "the plain service's own index");
  c.deregister("other-2");
  c.deregister("other"); // 'other' loses its last instance
  const extinction = c.store.index;
  assert.equal(c.emptyHealthIndex("db"), extinction);
  c.register({ Name: "new", Port: 3 });
  assert.equal(c.emptyHealthIndex("db"), extinction, "a registration does not move it");
  assert.throws(
    () => c.deregister("other"),
    (e: unknown) =>
      e instanceof BadRequest && e.status === 404 &&
      e.message ===
        'Unknown service ID "other". Ensure that the service ID is passed, not the service name.',
  );
});
