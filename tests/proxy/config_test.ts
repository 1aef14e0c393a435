import assert from "node:assert/strict";
import { type AgentService, configFromService, ProxyConfigError } from "../../mod.ts";

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
