// Route-level tests of src/devagent/routes/connect_ca.ts through app.request().
import assert from "node:assert/strict";
import { call, double } from "./_double.ts";

Deno.test("CA routes: roots on the agent's path carry its cache headers, the server's path none", async () => {
  await using dev = await double();
  const agent = await call(dev, "GET", "/v1/agent/connect/ca/roots");
  assert.equal(agent.json.TrustDomain, dev.ca.trustDomain);
  assert.equal(agent.json.ActiveRootID, dev.ca.activeRoot.ID);
  assert.equal(agent.json.Roots.length, 1);
  assert.deepEqual([agent.headers.get("X-Cache"), agent.headers.get("Age")], ["HIT", "0"]);
  assert.equal(agent.headers.get("X-Consul-Query-Backend"), "blocking-query");
  const server = await call(dev, "GET", "/v1/connect/ca/roots");
  assert.deepEqual(server.json, agent.json);
  assert.equal(server.headers.get("X-Cache"), null);
  const blocking = await call(dev, "GET", "/v1/agent/connect/ca/roots?index=1&wait=1ms");
  assert.deepEqual([blocking.headers.get("X-Cache"), blocking.headers.get("Age")], ["MISS", null]);
  // Roots read no Enterprise metadata.
  assert.equal((await call(dev, "GET", "/v1/agent/connect/ca/roots?ns=x")).status, 200);
});

Deno.test("CA routes: a blocking roots read wakes on a rotation with the new root", async () => {
  await using dev = await double();
  const first = await call(dev, "GET", "/v1/agent/connect/ca/roots");
  const index = first.headers.get("X-Consul-Index");
  const blocked = call(dev, "GET", `/v1/agent/connect/ca/roots?index=${index}&wait=10s`);
  const rotated = await call(dev, "POST", "/v1/devagent/rotate");
  const woke = await blocked;
  assert.ok(Number(woke.headers.get("X-Consul-Index")) > Number(index));
  assert.equal(woke.json.ActiveRootID, rotated.json.ActiveRootID);
  assert.notEqual(woke.json.ActiveRootID, first.json.ActiveRootID);
  assert.equal(woke.json.Roots.length, 2, "the old root stays until pruned");
});

Deno.test("CA routes: leaf is a MISS when fetched, a HIT when the client is behind, blocks otherwise", async () => {
  await using dev = await double();
  const first = await call(dev, "GET", "/v1/agent/connect/ca/leaf/web");
  assert.equal(first.status, 200);
  assert.equal(first.json.Service, "web");
  assert.equal(first.headers.get("X-Cache"), "MISS");
  assert.equal(first.headers.get("X-Consul-Index"), String(first.json.ModifyIndex));
  const behind = await call(dev, "GET", "/v1/agent/connect/ca/leaf/web?index=1");
  assert.deepEqual([behind.headers.get("X-Cache"), behind.headers.get("Age")], ["HIT", "0"]);
  assert.equal(behind.json.SerialNumber, first.json.SerialNumber);
  const started = Date.now();
  const timedOut = await call(
    dev,
    "GET",
    `/v1/agent/connect/ca/leaf/web?index=${first.json.ModifyIndex}&wait=100ms`,
  );
  assert.ok(Date.now() - started >= 90, "it waited");
  assert.equal(timedOut.json.SerialNumber, first.json.SerialNumber);
  const blocked = call(
    dev,
    "GET",
    `/v1/agent/connect/ca/leaf/web?index=${first.json.ModifyIndex}&wait=10s`,
  );
  await dev.rotateCA();
  const renewed = await blocked;
  assert.equal(renewed.headers.get("X-Cache"), "MISS");
  assert.notEqual(renewed.json.SerialNumber, first.json.SerialNumber);
  assert.ok(renewed.json.ModifyIndex > first.json.ModifyIndex);
});

Deno.test("CA routes: leaf names may hold a slash; bad wait and index are 400s", async () => {
  await using dev = await double();
  const r = await call(dev, "GET", "/v1/agent/connect/ca/leaf/a%2Fb");
  assert.equal(r.json.Service, "a/b");
  for (const [q, message] of [["wait=zz", "Invalid wait time"], ["index=x", "Invalid index"]]) {
    const bad = await call(dev, "GET", `/v1/agent/connect/ca/leaf/web?${q}`);
    assert.deepEqual([bad.status, bad.text], [400, message]);
  }
  const post = await call(dev, "POST", "/v1/agent/connect/ca/leaf/web");
  assert.deepEqual([post.status, post.headers.get("Allow")], [405, "OPTIONS,GET"]);
});

Deno.test("CA routes: configuration shows the leaf TTL; a write moves ModifyIndex, a new key rotates", async () => {
  await using dev = await double({ leafTtlMs: 72 * 3_600_000 });
  const before = await call(dev, "GET", "/v1/connect/ca/configuration");
  assert.equal(before.json.Provider, "consul");
  assert.equal(before.json.Config.LeafCertTTL, "72h");
  assert.equal(before.json.State, null);
  const root = dev.ca.activeRoot.ID;
  const put = await call(dev, "PUT", "/v1/connect/ca/configuration", {
    Provider: "consul",
    Config: { LeafCertTTL: "90m" },
  });
  assert.deepEqual([put.status, put.text], [200, ""]);
  const after = await call(dev, "GET", "/v1/connect/ca/configuration");
  assert.equal(after.json.Config.LeafCertTTL, "90m");
  assert.ok(after.json.ModifyIndex > before.json.ModifyIndex);
  assert.equal(dev.ca.activeRoot.ID, root, "a TTL change keeps the root");
  await call(dev, "PUT", "/v1/connect/ca/configuration", {
    Provider: "consul",
    Config: { PrivateKeyType: "ec", PrivateKeyBits: 384 },
  });
  assert.notEqual(dev.ca.activeRoot.ID, root, "a new key size rotates the root");
  const rotated = await call(dev, "GET", "/v1/connect/ca/configuration");
  assert.ok(rotated.json.ModifyIndex > after.json.ModifyIndex);
  const badTtl = await call(dev, "PUT", "/v1/connect/ca/configuration", {
    Config: { LeafCertTTL: "soon" },
  });
  assert.deepEqual([badTtl.status, badTtl.text], [500, "Invalid LeafCertTTL: soon"]);
  const unknown = await call(dev, "PUT", "/v1/connect/ca/configuration", { Nope: 1 });
  assert.deepEqual([unknown.status, unknown.text], [
    400,
    'Request decode failed: json: unknown field "Nope"',
  ]);
  const del = await call(dev, "DELETE", "/v1/connect/ca/configuration");
  assert.deepEqual([del.status, del.headers.get("Allow")], [405, "OPTIONS,GET,PUT"]);
});
