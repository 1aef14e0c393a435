// Where an upstream's chain and endpoints are looked up: in the upstream's datacenter and each
// target's (issue #15), narrowed by the target's subset (issue #16). The double compiles a chain
// for any `compile-dc`, as Consul does, but knows the instances of one datacenter only, so a
// wrapping fetch plays "dc2" for health: it records every request and answers `dc=dc2` with the
// double's own (dc1) instances — exactly the wrong-datacenter answer a resolver must not trust.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { RunningDevAgent } from "../../src/devagent/server.ts";
import { UpstreamConnector } from "../../src/outbound/connector.ts";
import { UpstreamResolver } from "../../src/outbound/resolver.ts";
import { devAgent, eventually } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";

/** A client of `dev` whose health requests naming dc2 are answered with dc1's instances. */
function dc2Client(dev: RunningDevAgent, seen: URL[] = []): AgentClient {
  const viaDc2: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    seen.push(new URL(url));
    if (url.searchParams.get("dc") === "dc2") url.searchParams.delete("dc");
    return fetch(url, init);
  };
  return new AgentClient({
    address: dev.address,
    fetch: viaDc2,
    watchDefaults: { minIntervalMs: 0, backoffBaseMs: 20, backoffMaxMs: 200 },
  });
}

/** Paths with their query, as sent, e.g. `/v1/health/connect/db?dc=dc2`. */
const sent = (seen: URL[], prefix: string) =>
  [
    ...new Set(
      seen.filter((u) => u.pathname.startsWith(prefix)).map((u) => {
        const q = new URLSearchParams(u.searchParams);
        q.delete("index");
        q.delete("wait");
        return `${u.pathname}${q.size ? `?${q}` : ""}`;
      }),
    ),
  ].sort();

async function registerDb(agent: AgentClient, id: string, meta: Record<string, string> = {}) {
  await agent.register({
    ID: id,
    Name: "db",
    Port: 1,
    Meta: meta,
    Connect: { SidecarService: {} },
  });
}

Deno.test("resolver: an upstream in dc2 compiles its chain for dc2 and asks dc2 for endpoints", async () => {
  await using dev = await devAgent({ probeTcp: () => Promise.resolve(true) });
  const seen: URL[] = [];
  await using agent = dc2Client(dev, seen);
  await registerDb(agent, "db-1");
  const resolver = new UpstreamResolver(agent, "db", { datacenter: "dc2" });
  try {
    await eventually(
      () => (resolver.targets.get("db.default.default.dc2")?.endpoints.length ?? 0) === 1,
      5000,
      "the dc2 target's endpoints",
    );
    assert.deepEqual(sent(seen, "/v1/discovery-chain/"), ["/v1/discovery-chain/db?compile-dc=dc2"]);
    assert.deepEqual(sent(seen, "/v1/health/connect/"), ["/v1/health/connect/db?dc=dc2"]);
    const [endpoint] = resolver.targets.get("db.default.default.dc2")!.endpoints;
    assert.ok(endpoint, "the dc2 target has an endpoint");
    // The answer's nodes say dc1; the peer must still prove to be db in dc2.
    assert.equal(endpoint.datacenter, "dc2");
  } finally {
    await resolver.close();
  }
});

Deno.test("resolver: a failover target in another datacenter is asked for there, a local one without dc", async () => {
  await using dev = await devAgent({ probeTcp: () => Promise.resolve(true) });
  const seen: URL[] = [];
  await using agent = dc2Client(dev, seen);
  await registerDb(agent, "db-1");
  await new OperatorClient(agent).putConfigEntry({
    Kind: "service-resolver",
    Name: "db",
    Failover: { "*": { Datacenters: ["dc2"] } },
  });
  const resolver = new UpstreamResolver(agent, "db");
  try {
    await eventually(
      () =>
        ["db.default.default.dc1", "db.default.default.dc2"].every((id) =>
          (resolver.targets.get(id)?.endpoints.length ?? 0) === 1
        ),
      5000,
      "both targets' endpoints",
    );
    assert.deepEqual(resolver.routes, [{
      weight: 100,
      targets: ["db.default.default.dc1", "db.default.default.dc2"],
    }]);
    assert.deepEqual(sent(seen, "/v1/discovery-chain/"), ["/v1/discovery-chain/db"]);
    assert.deepEqual(sent(seen, "/v1/health/connect/"), [
      "/v1/health/connect/db",
      "/v1/health/connect/db?dc=dc2",
    ]);
    assert.equal(resolver.targets.get("db.default.default.dc1")?.endpoints[0]?.datacenter, "dc1");
    assert.equal(resolver.targets.get("db.default.default.dc2")?.endpoints[0]?.datacenter, "dc2");
  } finally {
    await resolver.close();
  }
});

Deno.test("connector: a peer whose SPIFFE ID names dc1 is refused for a dc2 target", async () => {
  await using m = await mesh();
  // The same db sidecar, reached as db in the local datacenter: allowed.
  const local = new UpstreamConnector({
    agent: m.agent,
    material: m.webProxy.material,
    upstream: { type: "service", name: "db" },
  });
  const ok = await local.connect();
  assert.ok(ok.ok, ok.ok ? "" : ok.refusal.detail);
  ok.connection.socket.destroy();
  await local.close();
  // Reached as db in dc2 (our "dc2" answers with dc1's instances): refused by identity.
  await using agent = dc2Client(m.dev);
  const remote = new UpstreamConnector({
    agent,
    material: m.webProxy.material,
    upstream: { type: "service", name: "db", datacenter: "dc2", connectTimeoutMs: 2000 },
  });
  try {
    const refused = await remote.connect();
    assert.ok(!refused.ok, "expected a refusal");
    assert.equal(refused.refusal.reason, "bad_identity");
    assert.match(
      refused.refusal.detail,
      /bad_identity: .*\/dc\/dc1\/svc\/db, want service db in dc2/,
    );
  } finally {
    await remote.close();
  }
});

Deno.test("resolver: a DefaultSubset's Filter leaves only its instances (v1 of v1 and v2)", async () => {
  await using dev = await devAgent({ probeTcp: () => Promise.resolve(true) });
  const seen: URL[] = [];
  await using agent = dc2Client(dev, seen);
  await registerDb(agent, "db-1", { version: "v1" });
  await registerDb(agent, "db-2", { version: "v2" });
  await eventually(async () =>
    (await agent.healthConnect("db", { passing: true })).value.length === 2
  );
  await new OperatorClient(agent).putConfigEntry({
    Kind: "service-resolver",
    Name: "db",
    DefaultSubset: "v1",
    Subsets: {
      v1: { Filter: "Service.Meta.version == v1" },
      v2: { Filter: "Service.Meta.version == v2" },
    },
  });
  seen.length = 0; // from here on, only the resolver's requests
  const resolver = new UpstreamResolver(agent, "db");
  try {
    await resolver.ready;
    const target = resolver.targets.get("v1.db.default.default.dc1");
    assert.ok(target, `targets: ${[...resolver.targets.keys()]}`);
    assert.deepEqual(target.endpoints.map((e) => e.id), ["devagent/db-1-sidecar-proxy"]);
    assert.deepEqual(sent(seen, "/v1/health/connect/"), [
      `/v1/health/connect/db?${new URLSearchParams({ filter: "Service.Meta.version == v1" })}`,
    ]);
  } finally {
    await resolver.close();
  }
});

Deno.test("resolver: warning instances serve unless the subset is OnlyPassing; critical ones never", async () => {
  await using dev = await devAgent();
  await using agent = dc2Client(dev);
  for (const [id, status] of [["db-1", "pass"], ["db-2", "warn"], ["db-3", "fail"]] as const) {
    await agent.register({
      ID: id,
      Name: "db",
      Port: 1,
      Meta: { version: "v1" },
      Weights: { Passing: 5, Warning: 2 },
      Connect: { Native: true },
      Check: { TTL: "60s" },
    });
    await agent.setCheck(`service:${id}`, status);
  }
  const subsets = {
    v1: { Filter: "Service.Meta.version == v1" },
    strict: { Filter: "Service.Meta.version == v1", OnlyPassing: true },
  };
  await new OperatorClient(agent).putConfigEntry({
    Kind: "service-resolver",
    Name: "db",
    DefaultSubset: "v1",
    Subsets: subsets,
  });
  const resolver = new UpstreamResolver(agent, "db");
  const ids = (target: string) =>
    resolver.targets.get(target)?.endpoints.map((e) => `${e.id}:${e.weight}`).sort().join(",");
  try {
    await eventually(
      () => ids("v1.db.default.default.dc1") === "devagent/db-1:5,devagent/db-2:2",
      5000,
      "the passing and the warning v1 instance",
    );
    await new OperatorClient(agent).putConfigEntry({
      Kind: "service-resolver",
      Name: "db",
      DefaultSubset: "strict",
      Subsets: subsets,
    });
    await eventually(
      () => ids("strict.db.default.default.dc1") === "devagent/db-1:5",
      5000,
      "only the passing instance",
    );
  } finally {
    await resolver.close();
  }
});
