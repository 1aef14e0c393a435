// Differences the shape differential (tests/integration/shape_test.ts) found between the double
// and Consul 1.22.7, each pinned here on the double alone so it runs without a Consul binary.
import assert from "node:assert/strict";
import { devAgent } from "../_helpers.ts";

type Dev = Awaited<ReturnType<typeof devAgent>>;

async function call(
  dev: Dev,
  path: string,
  init: { method?: string; body?: unknown } = {},
): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(`${dev.url}${path}`, {
    method: init.method ?? "GET",
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

const register = (dev: Dev, body: unknown) =>
  call(dev, "/v1/agent/service/register", { method: "PUT", body });

Deno.test("parity: an empty wait= or index= is ignored, as Consul's parseWait does", async () => {
  await using dev = await devAgent();
  await register(dev, { ID: "web-1", Name: "web", Port: 1, Connect: { SidecarService: {} } });
  for (
    const path of [
      "/v1/agent/connect/ca/roots?wait=&index=",
      "/v1/health/connect/web?wait=&index=",
      "/v1/discovery-chain/web?wait=&index=",
      "/v1/connect/intentions/match?by=destination&name=web&wait=&index=",
      "/v1/agent/connect/ca/leaf/web?wait=&index=",
      "/v1/agent/service/web-1-sidecar-proxy?wait=&index=&hash=",
    ]
  ) {
    const r = await call(dev, path);
    assert.equal(r.status, 200, `${path}: ${r.text}`);
  }
});

Deno.test("parity: /v1/agent/service/:id parses wait and index even without hash", async () => {
  await using dev = await devAgent();
  await register(dev, { ID: "web-1", Name: "web", Port: 1 });
  const bad = await call(dev, "/v1/agent/service/web-1?wait=zz");
  assert.deepEqual([bad.status, bad.text], [400, "Invalid wait time"]);
  const badIndex = await call(dev, "/v1/agent/service/web-1?index=x");
  assert.deepEqual([badIndex.status, badIndex.text], [400, "Invalid index"]);
  // Even for an unknown ID the bad parameter is reported first.
  assert.equal((await call(dev, "/v1/agent/service/nope?wait=zz")).status, 400);
});

Deno.test("parity: intentions/match maps a name nothing matches to null", async () => {
  await using dev = await devAgent();
  const none = await call(dev, "/v1/connect/intentions/match?by=destination&name=db&name=web");
  assert.deepEqual(JSON.parse(none.text), { db: null, web: null });
  await call(dev, "/v1/connect/intentions/exact?source=web&destination=db", {
    method: "PUT",
    body: { Action: "allow" },
  });
  const one = JSON.parse(
    (await call(dev, "/v1/connect/intentions/match?by=destination&name=db&name=web")).text,
  );
  assert.equal(one.db.length, 1);
  assert.equal(one.web, null);
});

Deno.test("parity: DELETE /v1/config/:kind/:name answers {}; an unknown kind is a 400", async () => {
  await using dev = await devAgent();
  await call(dev, "/v1/config", {
    method: "PUT",
    body: { Kind: "service-resolver", Name: "db", ConnectTimeout: "3s" },
  });
  const del = await call(dev, "/v1/config/service-resolver/db", { method: "DELETE" });
  assert.deepEqual([del.status, JSON.parse(del.text)], [200, {}]);
  const again = await call(dev, "/v1/config/service-resolver/db", { method: "DELETE" });
  assert.deepEqual([again.status, JSON.parse(again.text)], [200, {}]);
  const bad = await call(dev, "/v1/config/nonsense/db", { method: "DELETE" });
  assert.deepEqual([bad.status, bad.text], [400, "invalid config entry kind: nonsense"]);
});

Deno.test("parity: a never-seen service's health answers the current raft index, not 1", async () => {
  await using dev = await devAgent();
  await register(dev, { ID: "web-1", Name: "web", Port: 1, Connect: { SidecarService: {} } });
  const r = await call(dev, "/v1/health/connect/ghost");
  assert.equal(r.text.trim(), "[]");
  assert.equal(Number(r.headers.get("X-Consul-Index")), dev.store.index);
  assert.ok(dev.store.index > 1);
});

Deno.test("parity: chain failover to another service carries that service's own timeouts", async () => {
  await using dev = await devAgent();
  const put = (body: unknown) => call(dev, "/v1/config", { method: "PUT", body });
  await put({
    Kind: "service-resolver",
    Name: "db",
    ConnectTimeout: "3s",
    RequestTimeout: "2s",
    Failover: { "*": { Service: "db-backup" } },
  });
  const chain = JSON.parse((await call(dev, "/v1/discovery-chain/db")).text).Chain;
  const node = chain.Nodes["resolver:db.default.default.dc1"];
  assert.equal(node.Resolver.ConnectTimeout, "3s");
  assert.equal(node.Resolver.RequestTimeout, 2_000_000_000, "Go's time.Duration: nanoseconds");
  assert.deepEqual(node.Resolver.Failover.Targets, ["db-backup.default.default.dc1"]);
  assert.equal(chain.Targets["db.default.default.dc1"].ConnectTimeout, "3s");
  assert.equal(chain.Targets["db-backup.default.default.dc1"].ConnectTimeout, "5s");
  assert.equal(Object.keys(chain.Nodes).length, 1, "a failover target is not a node");
  // The failover service's own resolver decides its timeout and default subset.
  await put({
    Kind: "service-resolver",
    Name: "db-backup",
    ConnectTimeout: "7s",
    DefaultSubset: "v1",
    Subsets: { v1: { Filter: "Service.Meta.version == v1" } },
  });
  const again = JSON.parse((await call(dev, "/v1/discovery-chain/db")).text).Chain;
  assert.deepEqual(again.Nodes["resolver:db.default.default.dc1"].Resolver.Failover.Targets, [
    "v1.db-backup.default.default.dc1",
  ]);
  assert.equal(again.Targets["v1.db-backup.default.default.dc1"].ConnectTimeout, "7s");
  const plain = JSON.parse((await call(dev, "/v1/discovery-chain/web")).text).Chain;
  assert.equal(plain.Nodes[plain.StartNode].Resolver.RequestTimeout, undefined);
});

Deno.test("parity: compile-dc compiles the chain for that datacenter", async () => {
  await using dev = await devAgent();
  const r = await call(dev, "/v1/discovery-chain/db?compile-dc=dc2");
  assert.equal(r.status, 200);
  const chain = JSON.parse(r.text).Chain;
  assert.equal(chain.Datacenter, "dc2");
  assert.equal(chain.StartNode, "resolver:db.default.default.dc2");
  const t = chain.Targets["db.default.default.dc2"];
  assert.equal(t.Datacenter, "dc2");
  assert.equal(t.SNI, `db.default.dc2.internal.${dev.ca.trustDomain}`);
});

Deno.test("parity: virtual IPs are assigned per mesh service and shown in the chain and health", async () => {
  await using dev = await devAgent();
  const chain = async (name: string) =>
    JSON.parse((await call(dev, `/v1/discovery-chain/${name}`)).text).Chain;
  const none = await chain("web");
  assert.equal(none.AutoVirtualIPs, null);
  assert.equal(none.ManualVirtualIPs, null);
  await register(dev, { ID: "web-1", Name: "web", Port: 1, Connect: { SidecarService: {} } });
  await register(dev, { ID: "db-1", Name: "db", Port: 2, Connect: { SidecarService: {} } });
  await register(dev, { ID: "plain", Name: "plain", Port: 3 });
  assert.deepEqual((await chain("web")).AutoVirtualIPs, ["240.0.0.1"]);
  assert.deepEqual((await chain("web")).ManualVirtualIPs, []);
  assert.deepEqual((await chain("db")).AutoVirtualIPs, ["240.0.0.2"]);
  assert.equal((await chain("plain")).AutoVirtualIPs, null, "not in the mesh: no virtual IP");
  const [entry] = JSON.parse((await call(dev, "/v1/health/connect/db")).text);
  assert.deepEqual(entry.Service.TaggedAddresses["consul-virtual"], {
    Address: "240.0.0.2",
    Port: entry.Service.Port,
  });
  // Freed when the last instance named so is gone, and handed out again first.
  await call(dev, "/v1/agent/service/deregister/web-1", { method: "PUT" });
  assert.equal((await chain("web")).AutoVirtualIPs, null);
  await register(dev, { ID: "api-1", Name: "api", Port: 4, Connect: { SidecarService: {} } });
  assert.deepEqual((await chain("api")).AutoVirtualIPs, ["240.0.0.1"]);
});

Deno.test("parity: the headers Consul's setMeta writes, per endpoint", async () => {
  await using dev = await devAgent();
  await register(dev, { ID: "db-1", Name: "db", Port: 2, Connect: { SidecarService: {} } });
  const h = async (path: string) => (await call(dev, path)).headers;
  const roots = await h("/v1/agent/connect/ca/roots");
  assert.equal(roots.get("X-Consul-Query-Backend"), "blocking-query");
  assert.deepEqual([roots.get("X-Cache"), roots.get("Age")], ["HIT", "0"]);
  const index = roots.get("X-Consul-Index");
  const rootsWait = await h(`/v1/agent/connect/ca/roots?index=${index}&wait=50ms`);
  assert.deepEqual([rootsWait.get("X-Cache"), rootsWait.get("Age")], ["MISS", null]);
  for (
    const path of [
      "/v1/health/connect/db",
      "/v1/discovery-chain/db",
      "/v1/connect/intentions/match?by=destination&name=db",
    ]
  ) {
    const got = await h(path);
    assert.equal(got.get("X-Consul-Effective-Consistency"), "leader", path);
    assert.equal(got.get("X-Consul-Query-Backend"), "blocking-query", path);
    assert.equal(got.get("X-Consul-KnownLeader"), "true", path);
  }
  const list = await h("/v1/connect/intentions");
  assert.equal(list.get("X-Consul-Effective-Consistency"), null);
  assert.equal(list.get("X-Consul-Query-Backend"), "blocking-query");
  // A blocking health read is the streaming backend's: no leader to report.
  const healthIndex = (await h("/v1/health/connect/db")).get("X-Consul-Index");
  const streamed = await h(`/v1/health/connect/db?index=${healthIndex}&wait=50ms`);
  assert.equal(streamed.get("X-Consul-Query-Backend"), "streaming");
  assert.equal(streamed.get("X-Consul-KnownLeader"), "false");
  assert.equal(streamed.get("X-Consul-Effective-Consistency"), "leader");
  // Config entry reads carry the table's index.
  const missing = await call(dev, "/v1/config/service-resolver/nope");
  assert.equal(missing.status, 404);
  assert.equal(Number(missing.headers.get("X-Consul-Index")), dev.store.index);
  assert.equal(missing.headers.get("X-Consul-Query-Backend"), "blocking-query");
  // A handler with no result still sends Consul's JSON content type.
  const reg = await register(dev, { Name: "x", Port: 1 });
  assert.deepEqual([reg.text, reg.headers.get("Content-Type")], [
    "",
    "application/json; charset=utf-8",
  ]);
});

Deno.test("parity: the never-seen health index stays put when a blocking read times out", async () => {
  await using dev = await devAgent();
  const first = await call(dev, "/v1/health/connect/ghost");
  const index = first.headers.get("X-Consul-Index");
  const blocked = call(dev, `/v1/health/connect/ghost?index=${index}&wait=300ms`);
  await register(dev, { Name: "other", Port: 1 });
  const r = await blocked;
  assert.equal(r.headers.get("X-Consul-Index"), index);
  assert.equal(r.text.trim(), "[]");
});

Deno.test("parity: health/connect filters by tag only on the streaming (blocking) path", async () => {
  await using dev = await devAgent();
  await register(dev, {
    ID: "db-1",
    Name: "db",
    Port: 2,
    Tags: ["a"],
    Connect: { SidecarService: {} },
  });
  const plain = JSON.parse((await call(dev, "/v1/health/connect/db?tag=nope")).text);
  assert.equal(plain.length, 1, "the server's connect query ignores ?tag");
  const index = (await call(dev, "/v1/health/connect/db")).headers.get("X-Consul-Index");
  const streamed = await call(dev, `/v1/health/connect/db?tag=nope&index=${Number(index) - 1}`);
  assert.deepEqual(JSON.parse(streamed.text), []);
});

Deno.test("parity: authorize answers from an intention-match cache (MISS, then HIT with Age 0)", async () => {
  await using dev = await devAgent();
  const uri = `spiffe://${dev.ca.trustDomain}/ns/default/dc/dc1/svc/web`;
  const ask = (Target: string, ClientCertURI = uri) =>
    call(dev, "/v1/agent/connect/authorize", { method: "POST", body: { Target, ClientCertURI } });
  const first = await ask("db");
  assert.deepEqual([first.headers.get("X-Cache"), first.headers.get("Age")], ["MISS", null]);
  const again = await ask("db");
  assert.deepEqual([again.headers.get("X-Cache"), again.headers.get("Age")], ["HIT", "0"]);
  const bad = await ask("db", "https://x");
  assert.equal(bad.status, 400);
  assert.deepEqual([bad.headers.get("X-Cache"), bad.headers.get("Age")], [null, null]);
});

Deno.test("parity: prepared queries fail as Consul's PreparedQuery.Apply and Execute do", async () => {
  await using dev = await devAgent();
  const post = (body: unknown) => call(dev, "/v1/query", { method: "POST", body });
  const created = await post({ Name: "db-q", Service: { Service: "db" } });
  const id = JSON.parse(created.text).ID;
  const duplicate = await post({ Name: "db-q", Service: { Service: "db" } });
  assert.deepEqual([duplicate.status, duplicate.text], [
    500,
    "raft apply failed: name 'db-q' aliases an existing query name",
  ]);
  assert.equal(
    (await post({ Name: "x", Service: {} })).text,
    "Invalid prepared query: Must provide a Service name to query",
  );
  assert.equal(
    (await post({ Service: { Service: "db" } })).text,
    "Invalid prepared query: Must be bound to a session",
  );
  const dc9 = await call(dev, "/v1/query/db-q/execute?connect=true&dc=dc9");
  assert.deepEqual([dc9.status, dc9.text], [500, "No path to datacenter"]);
  assert.equal(dc9.headers.get("X-Consul-KnownLeader"), "false");
  const ok = await call(dev, "/v1/query/db-q/execute?connect=true");
  const body = JSON.parse(ok.text);
  assert.equal(ok.headers.get("X-Consul-Index"), "1", "execute sets no index: Consul sends 1");
  assert.equal(ok.headers.get("X-Consul-Effective-Consistency"), "leader");
  assert.deepEqual(
    {
      PeerName: body.PeerName,
      Index: body.Index,
      KnownLeader: body.KnownLeader,
      ConsistencyLevel: body.ConsistencyLevel,
      NotModified: body.NotModified,
      Backend: body.Backend,
      ResultsFilteredByACLs: body.ResultsFilteredByACLs,
    },
    {
      PeerName: "",
      Index: 1,
      KnownLeader: true,
      ConsistencyLevel: "leader",
      NotModified: false,
      Backend: 0,
      ResultsFilteredByACLs: false,
    },
  );
  const del = await call(dev, `/v1/query/${id}`, { method: "DELETE" });
  assert.deepEqual([del.status, del.text], [200, ""]);
  const again = await call(dev, `/v1/query/${id}`, { method: "DELETE" });
  assert.deepEqual([again.status, again.text], [
    500,
    `Cannot modify non-existent prepared query: '${id}'`,
  ]);
  const byName = await call(dev, "/v1/query/db-q", { method: "DELETE" });
  assert.equal(byName.status, 500);
  assert.match(byName.text, /UUID must be 36 characters$/);
});

Deno.test("parity: prepared query nodes keep Go's nil slices as null", async () => {
  await using dev = await devAgent();
  await register(dev, {
    ID: "db-1",
    Name: "db",
    Port: 2,
    Connect: { SidecarService: { Check: { TTL: "60s", Status: "passing" } } },
  });
  await call(dev, "/v1/query", {
    method: "POST",
    body: { Name: "db-q", Service: { Service: "db" } },
  });
  const [node] = JSON.parse((await call(dev, "/v1/query/db-q/execute?connect=true")).text).Nodes;
  assert.equal(node.Service.Tags, null);
  assert.equal(node.Service.Meta, null);
  assert.ok(node.Checks.every((c: { ServiceTags: unknown }) => c.ServiceTags === null));
  // The health endpoint replaces them with [] (Consul's "use empty list instead of nil").
  const [entry] = JSON.parse((await call(dev, "/v1/health/connect/db")).text);
  assert.deepEqual(entry.Service.Tags, []);
});

Deno.test("parity: config entry reads carry Hash; CA configuration and agent/self fields", async () => {
  await using dev = await devAgent();
  await call(dev, "/v1/config", {
    method: "PUT",
    body: { Kind: "service-resolver", Name: "db", ConnectTimeout: "3s" },
  });
  const entry = JSON.parse((await call(dev, "/v1/config/service-resolver/db")).text);
  assert.ok(Number.isSafeInteger(entry.Hash) && entry.Hash > 0);
  const cfg = JSON.parse((await call(dev, "/v1/connect/ca/configuration")).text);
  assert.equal(cfg.Config.LeafCertTTL, "72h");
  const self = JSON.parse((await call(dev, "/v1/agent/self")).text);
  assert.equal(self.Config.BindAddr, "127.0.0.1");
});
