import assert from "node:assert/strict";
import type { AgentService } from "../../src/agent/types.ts";
import { configFromService, ProxyConfigError, upstreamKey } from "../../src/proxy/config.ts";

const base: AgentService = {
  Kind: "connect-proxy",
  ID: "web-1-sidecar-proxy",
  Service: "web-sidecar-proxy",
  Tags: [],
  Meta: {},
  Port: 21000,
  Address: "",
  Weights: { Passing: 1, Warning: 1 },
  EnableTagOverride: false,
  Proxy: {
    DestinationServiceName: "web",
    LocalServiceAddress: "127.0.0.1",
    LocalServicePort: 8080,
    Config: { local_connect_timeout_ms: 2000, handshake_timeout_ms: 3000 },
    Upstreams: [
      { DestinationName: "db", LocalBindPort: 9191, Config: { connect_timeout_ms: 1500 } },
      {
        DestinationType: "prepared_query",
        DestinationName: "q",
        LocalBindSocketPath: "/tmp/q.sock",
      },
    ],
  },
};

Deno.test("proxy config from a registration honours Consul's keys (numbers as JSON floats)", () => {
  const c = configFromService(base);
  assert.equal(c.service, "web");
  assert.deepEqual(c.publicListener, { hostname: "0.0.0.0", port: 21000 });
  assert.deepEqual(c.app, { hostname: "127.0.0.1", port: 8080 });
  assert.equal(c.localConnectTimeoutMs, 2000);
  assert.equal(c.handshakeTimeoutMs, 3000);
  assert.deepEqual(c.upstreams, [
    {
      type: "service",
      name: "db",
      datacenter: undefined,
      bind: { hostname: "127.0.0.1", port: 9191 },
      connectTimeoutMs: 1500,
    },
    {
      type: "prepared_query",
      name: "q",
      datacenter: undefined,
      bind: { path: "/tmp/q.sock" },
      connectTimeoutMs: undefined,
    },
  ]);
});

Deno.test("proxy config rejects registrations that cannot work, naming the field", () => {
  const bad: [AgentService, RegExp][] = [
    [{ ...base, Kind: undefined }, /^Kind: service web-1-sidecar-proxy is not a connect-proxy/],
    [
      { ...base, Proxy: { ...base.Proxy!, DestinationServiceName: "" } },
      /^Proxy\.DestinationServiceName/,
    ],
    [
      { ...base, Proxy: { ...base.Proxy!, Config: { local_connect_timeout_ms: "soon" } } },
      /^Config\.local_connect_timeout_ms: must be a positive number/,
    ],
    [{
      ...base,
      Proxy: { ...base.Proxy!, Upstreams: [{ DestinationName: "db", LocalBindPort: 70000 }] },
    }, /^Proxy\.Upstreams\[0\]\.LocalBindPort: must be 1-65535/],
    [{
      ...base,
      Proxy: {
        ...base.Proxy!,
        Upstreams: [{
          DestinationName: "db",
          LocalBindSocketPath: "/tmp/db.sock",
          LocalBindSocketMode: "rwx",
        }],
      },
    }, /^Proxy\.Upstreams\[0\]\.LocalBindSocketMode: must be an octal file mode/],
  ];
  for (const [svc, re] of bad) {
    assert.throws(
      () => configFromService(svc),
      (e) => e instanceof ProxyConfigError && re.test(e.message),
    );
  }
});

/** `base` with `Proxy` fields replaced. */
function withProxy(
  proxy: Partial<NonNullable<AgentService["Proxy"]>>,
  svc: Partial<AgentService> = {},
) {
  return { ...base, ...svc, Proxy: { ...base.Proxy!, ...proxy } } as AgentService;
}

function refused(svc: AgentService, field: string, detail: RegExp) {
  assert.throws(
    () => configFromService(svc),
    (e) => e instanceof ProxyConfigError && e.field === field && detail.test(e.message),
    field,
  );
}

Deno.test("proxy config: an upstream's bad field is named with its index", () => {
  refused(
    withProxy({
      Upstreams: [{
        DestinationName: "db",
        LocalBindPort: 9191,
        Config: { connect_timeout_ms: -5 },
      }],
    }),
    "Proxy.Upstreams[0].Config.connect_timeout_ms",
    /must be a positive number of milliseconds, got -5/,
  );
  refused(
    withProxy({
      Upstreams: [
        { DestinationName: "db", LocalBindPort: 9191 },
        { DestinationName: "q", DestinationType: "tcp", LocalBindPort: 9192 },
      ],
    }),
    "Proxy.Upstreams[1].DestinationType",
    /unknown type "tcp"/,
  );
  refused(
    withProxy({
      Upstreams: [{ DestinationName: "db", LocalBindPort: 9191, Config: { lb_policy: "random" } }],
    }),
    "Proxy.Upstreams[0].Config.lb_policy",
    /must be "round_robin" or "least_connections", got "random"/,
  );
});

Deno.test("proxy config: ports must be whole numbers 1-65535", () => {
  for (const port of [0, -1, 65536, 9191.5, NaN]) {
    refused(
      withProxy({ Upstreams: [{ DestinationName: "db", LocalBindPort: port }] }),
      "Proxy.Upstreams[0].LocalBindPort",
      /must be 1-65535/,
    );
  }
  for (const port of [-1, 65536, 8080.5]) {
    refused(withProxy({ LocalServicePort: port }), "Proxy.LocalServicePort", /must be 1-65535/);
    refused(withProxy({}, { Port: port }), "Port", /must be 1-65535/);
  }
  assert.equal(configFromService(withProxy({ LocalServicePort: 0 })).app, undefined);
  assert.equal(configFromService(withProxy({}, { Port: 0 })).publicListener, undefined);
});

Deno.test("proxy config: timeouts as numbers or numeric strings; anything else is refused", () => {
  const timeout = (v: unknown) =>
    configFromService(withProxy({ Config: { local_connect_timeout_ms: v } })).localConnectTimeoutMs;
  assert.equal(timeout("1500"), 1500);
  assert.equal(timeout(250.5), 250.5);
  assert.equal(timeout(null), undefined);
  assert.equal(timeout(undefined), undefined);
  for (const bad of [0, -1, "", " ", "soon", true, {}, [], "Infinity"]) {
    refused(
      withProxy({ Config: { local_connect_timeout_ms: bad } }),
      "Config.local_connect_timeout_ms",
      /positive/,
    );
  }
});

Deno.test("proxy config: sockets, modes, datacenters, policies and the app address", () => {
  const c = configFromService(withProxy({
    LocalServiceSocketPath: "/run/app.sock",
    Upstreams: [
      {
        DestinationName: "a",
        LocalBindSocketPath: "/run/a.sock",
        LocalBindSocketMode: "0700",
        LocalBindPort: 1,
      },
      { DestinationName: "b", LocalBindSocketPath: "/run/b.sock", LocalBindSocketMode: "640" },
      { DestinationName: "c", LocalBindPort: 9, LocalBindSocketMode: "zzz", Datacenter: "dc2" },
      {
        DestinationName: "d",
        LocalBindPort: 10,
        LocalBindAddress: "::1",
        Config: { lb_policy: "least_connections" },
      },
    ],
  }, { Address: "10.0.0.5" }));
  assert.deepEqual(c.app, { path: "/run/app.sock" }, "the socket path wins over the port");
  assert.deepEqual(c.publicListener, { hostname: "10.0.0.5", port: 21000 });
  assert.deepEqual(c.upstreams.map((u) => [u.bind, u.socketMode, u.datacenter, u.policy]), [
    [{ path: "/run/a.sock" }, 0o700, undefined, undefined],
    [{ path: "/run/b.sock" }, 0o640, undefined, undefined],
    [{ hostname: "127.0.0.1", port: 9 }, undefined, "dc2", undefined], // mode only with a path
    [{ hostname: "::1", port: 10 }, undefined, undefined, "least_connections"],
  ]);
  for (const mode of ["1777", "07777", "0800", "rwx------"]) {
    refused(
      withProxy({
        Upstreams: [{ DestinationName: "a", LocalBindSocketPath: "/a", LocalBindSocketMode: mode }],
      }),
      "Proxy.Upstreams[0].LocalBindSocketMode",
      /octal file mode/,
    );
  }
  refused(
    withProxy({}, { Kind: "mesh-gateway" }),
    "Kind",
    /is not a connect-proxy \(Kind "mesh-gateway"\)/,
  );
  refused(
    { ...base, Proxy: undefined },
    "Proxy.DestinationServiceName",
    /is empty on web-1-sidecar-proxy/,
  );
});

Deno.test("upstreamKey: the same upstream has the same key; any changed field a new one", () => {
  const [db] = configFromService(base).upstreams;
  assert.equal(upstreamKey({ ...db! }), upstreamKey(db!));
  const changes = [
    { type: "prepared_query" as const },
    { name: "db2" },
    { datacenter: "dc2" },
    { bind: { hostname: "127.0.0.1", port: 9192 } },
    { bind: { hostname: "0.0.0.0", port: 9191 } },
    { bind: { path: "/run/db.sock" } },
    { connectTimeoutMs: 1501 },
    { socketMode: 0o600 },
    { policy: "least_connections" as const },
  ];
  const keys = new Set([upstreamKey(db!), ...changes.map((c) => upstreamKey({ ...db!, ...c }))]);
  assert.equal(keys.size, changes.length + 1);
});
