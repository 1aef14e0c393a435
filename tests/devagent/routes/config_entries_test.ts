// Route-level tests of src/devagent/routes/config_entries.ts through app.request().
import assert from "node:assert/strict";
import { call, double, svcUri } from "./_double.ts";

Deno.test("config entry routes: write, read, delete; Consul's not-found text", async () => {
  await using dev = await double();
  const put = await call(dev, "PUT", "/v1/config", {
    Kind: "service-resolver",
    Name: "db",
    ConnectTimeout: "3s",
  });
  assert.deepEqual([put.status, put.json], [200, true]);
  const got = await call(dev, "GET", "/v1/config/service-resolver/db");
  assert.equal(got.json.ConnectTimeout, "3s");
  assert.equal(got.headers.get("X-Consul-Query-Backend"), "blocking-query");
  const missing = await call(dev, "GET", "/v1/config/service-resolver/cache");
  assert.deepEqual([missing.status, missing.text], [
    404,
    'Config entry not found for "service-resolver" / "cache"',
  ]);
  const del = await call(dev, "DELETE", "/v1/config/service-resolver/db");
  assert.deepEqual([del.status, del.json], [200, {}]);
  assert.equal((await call(dev, "GET", "/v1/config/service-resolver/db")).status, 404);
  const empty = await call(dev, "PUT", "/v1/config", "");
  assert.deepEqual([empty.status, empty.text], [400, "Request decoding failed: EOF"]);
  assert.equal((await call(dev, "GET", "/v1/config/service-resolver")).status, 404);
  const put405 = await call(dev, "PUT", "/v1/config/service-resolver/db");
  assert.deepEqual([put405.status, put405.headers.get("Allow")], [405, "OPTIONS,GET,DELETE"]);
  const get405 = await call(dev, "GET", "/v1/config");
  assert.deepEqual([get405.status, get405.headers.get("Allow")], [405, "OPTIONS,PUT"]);
  assert.equal((await call(dev, "GET", "/v1/config/service-resolver/db?ns=a")).status, 400);
});

Deno.test("config entry routes: a service-intentions entry replaces the destination's intentions", async () => {
  await using dev = await double({ defaultAllow: false });
  await call(dev, "PUT", "/v1/config", {
    Kind: "service-intentions",
    Name: "db",
    Sources: [{ Name: "web", Action: "allow" }],
  });
  const authz = await call(dev, "POST", "/v1/agent/connect/authorize", {
    Target: "db",
    ClientCertURI: svcUri(dev, "web"),
  });
  assert.equal(authz.json.Authorized, true);
  const list = await call(dev, "GET", "/v1/connect/intentions");
  assert.deepEqual(list.json.map((i: { SourceName: string }) => i.SourceName), ["web"]);
});

Deno.test("discovery chain routes: GET and POST compile; names may hold a slash; an empty name is a 400", async () => {
  await using dev = await double();
  const get = await call(dev, "GET", "/v1/discovery-chain/db");
  assert.equal(get.json.Chain.ServiceName, "db");
  assert.equal(get.json.Chain.StartNode, "resolver:db.default.default.dc1");
  assert.equal(get.headers.get("X-Consul-Effective-Consistency"), "leader");
  const post = await call(dev, "POST", "/v1/discovery-chain/db", {});
  assert.deepEqual(post.json, get.json);
  const slash = await call(dev, "GET", "/v1/discovery-chain/a/b");
  assert.equal(slash.json.Chain.ServiceName, "a/b");
  const empty = await call(dev, "GET", "/v1/discovery-chain/");
  assert.deepEqual([empty.status, empty.text], [400, "Missing chain name"]);
  const noBody = await call(dev, "POST", "/v1/discovery-chain/db", "");
  assert.deepEqual([noBody.status, noBody.text], [400, "Request decoding failed: EOF"]);
  const mode = await call(dev, "POST", "/v1/discovery-chain/db", {
    OverrideMeshGateway: { Mode: "sideways" },
  });
  assert.deepEqual([mode.status, mode.text], [400, "Invalid OverrideMeshGateway.Mode parameter"]);
  const dc2 = await call(dev, "GET", "/v1/discovery-chain/db?compile-dc=dc2");
  assert.equal(dc2.json.Chain.Datacenter, "dc2");
  const put = await call(dev, "PUT", "/v1/discovery-chain/db");
  assert.deepEqual([put.status, put.headers.get("Allow")], [405, "OPTIONS,GET,POST"]);
  assert.equal((await call(dev, "GET", "/v1/discovery-chain/db?partition=x")).status, 400);
});

Deno.test("discovery chain routes: a blocked read wakes when its resolver changes", async () => {
  await using dev = await double();
  const first = await call(dev, "GET", "/v1/discovery-chain/db");
  const index = first.headers.get("X-Consul-Index");
  const blocked = call(dev, "GET", `/v1/discovery-chain/db?index=${index}&wait=10s`);
  await call(dev, "PUT", "/v1/config", {
    Kind: "service-resolver",
    Name: "db",
    ConnectTimeout: "9s",
  });
  const woke = await blocked;
  assert.ok(Number(woke.headers.get("X-Consul-Index")) > Number(index));
  assert.equal(woke.json.Chain.Targets["db.default.default.dc1"].ConnectTimeout, "9s");
});
