// Route-level tests of src/devagent/routes/health.ts through app.request().
import assert from "node:assert/strict";
import { call, double } from "./_double.ts";

async function registerDb(dev: Awaited<ReturnType<typeof double>>, id: string, tags: string[]) {
  await call(dev, "PUT", "/v1/agent/service/register", {
    ID: id,
    Name: "db",
    Port: 5432,
    Tags: tags,
    Meta: { id },
    Connect: { SidecarService: {} },
  });
}

Deno.test("health route: mesh endpoints of a service, [] for one without any", async () => {
  await using dev = await double();
  await registerDb(dev, "db-1", ["v1"]);
  const r = await call(dev, "GET", "/v1/health/connect/db");
  assert.equal(r.json.length, 1);
  assert.equal(r.json[0].Service.ID, "db-1-sidecar-proxy");
  assert.equal(r.headers.get("X-Consul-Query-Backend"), "blocking-query");
  assert.equal(r.headers.get("X-Consul-KnownLeader"), "true");
  assert.equal(r.headers.get("X-Consul-Effective-Consistency"), "leader");
  const none = await call(dev, "GET", "/v1/health/connect/web");
  assert.equal(none.text, "[]", "an empty list, never null");
  // No probe: the sidecar's TCP check stays critical, so ?passing drops it.
  assert.equal((await call(dev, "GET", "/v1/health/connect/db?passing")).text, "[]");
  assert.equal((await call(dev, "GET", "/v1/health/connect/db?passing=false")).json.length, 1);
  assert.equal((await call(dev, "GET", "/v1/health/connect/db?passing=f")).json.length, 1);
});

Deno.test("health route: Consul's errors for ?passing, ?dc, ?ns and a bad filter", async () => {
  await using dev = await double();
  const bad = await call(dev, "GET", "/v1/health/connect/db?passing=maybe");
  assert.deepEqual([bad.status, bad.text], [400, "Invalid value for ?passing"]);
  const dc = await call(dev, "GET", "/v1/health/connect/db?dc=dc2");
  assert.deepEqual([dc.status, dc.text], [500, "No path to datacenter"]);
  assert.equal((await call(dev, "GET", "/v1/health/connect/db?dc=dc1")).status, 200);
  const ns = await call(dev, "GET", "/v1/health/connect/db?ns=default");
  assert.equal(ns.status, 400);
  const filter = await call(dev, "GET", "/v1/health/connect/db?filter=%3D%3D");
  assert.equal(filter.status, 400);
  const put = await call(dev, "PUT", "/v1/health/connect/db");
  assert.deepEqual([put.status, put.headers.get("Allow")], [405, "OPTIONS,GET"]);
});

Deno.test("health route: ?filter applies; ?tag only on the streaming (blocking) path", async () => {
  await using dev = await double();
  await registerDb(dev, "db-1", ["v1"]);
  await registerDb(dev, "db-2", ["v2"]);
  const filtered = await call(
    dev,
    "GET",
    `/v1/health/connect/db?filter=${encodeURIComponent('Service.Meta.id == "db-2"')}`,
  );
  assert.deepEqual(filtered.json.map((e: { Service: { ID: string } }) => e.Service.ID), [
    "db-2-sidecar-proxy",
  ]);
  assert.equal((await call(dev, "GET", "/v1/health/connect/db?tag=v1")).json.length, 2);
  const streaming = await call(dev, "GET", "/v1/health/connect/db?tag=v1&index=1");
  assert.deepEqual(streaming.json.map((e: { Service: { ID: string } }) => e.Service.ID), [
    "db-1-sidecar-proxy",
  ]);
  assert.equal(streaming.headers.get("X-Consul-Query-Backend"), "streaming");
  assert.equal(streaming.headers.get("X-Consul-KnownLeader"), "false");
});

Deno.test("health route: a blocked read wakes for its own service only", async () => {
  await using dev = await double();
  await registerDb(dev, "db-1", []);
  const first = await call(dev, "GET", "/v1/health/connect/db");
  const index = first.headers.get("X-Consul-Index");
  const blocked = call(dev, "GET", `/v1/health/connect/db?index=${index}&wait=300ms`);
  await call(dev, "PUT", "/v1/agent/service/register", {
    Name: "web",
    Port: 1,
    Connect: { SidecarService: {} },
  });
  const timedOut = await blocked;
  assert.equal(timedOut.headers.get("X-Consul-Index"), index, "another service did not wake it");
  const again = call(dev, "GET", `/v1/health/connect/db?index=${index}&wait=10s`);
  await registerDb(dev, "db-2", []);
  const woke = await again;
  assert.ok(Number(woke.headers.get("X-Consul-Index")) > Number(index));
  assert.equal(woke.json.length, 2);
});

Deno.test("health route: service names may hold a slash", async () => {
  await using dev = await double();
  await call(dev, "PUT", "/v1/agent/service/register", {
    ID: "a/b-1",
    Name: "a/b",
    Port: 1,
    Connect: { SidecarService: {} },
  });
  const r = await call(dev, "GET", "/v1/health/connect/a/b");
  assert.equal(r.json.length, 1);
  assert.equal(r.json[0].Service.Proxy.DestinationServiceName, "a/b");
});
