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

/** `X-Consul-Index` of a health read, with its body checked empty. */
async function emptyIndex(dev: Awaited<ReturnType<typeof double>>, path: string) {
  const r = await call(dev, "GET", path);
  assert.equal(r.text, "[]", path);
  return Number(r.headers.get("X-Consul-Index"));
}

/** A Connect-native instance: a mesh endpoint with no checks (nothing runs in the background). */
const native = (dev: Awaited<ReturnType<typeof double>>, id: string, name = id) =>
  call(dev, "PUT", "/v1/agent/service/register", {
    ID: id,
    Name: name,
    Port: 1,
    Connect: { Native: true },
  });
const deregister = (dev: Awaited<ReturnType<typeof double>>, id: string) =>
  call(dev, "PUT", `/v1/agent/service/deregister/${id}`);

Deno.test("health route: a service without endpoints answers the last-extinction index", async () => {
  await using dev = await double();
  // Before any catalog write: the raft index the read arrives at.
  assert.equal(await emptyIndex(dev, "/v1/health/connect/ghost"), dev.store.index);
  // Before any extinction: the catalog's last write (not the raft index, which intentions move)…
  await native(dev, "web-1", "web");
  const registered = dev.store.index;
  await call(dev, "PUT", "/v1/connect/intentions/exact?source=a&destination=b", {
    Action: "allow",
  });
  assert.ok(dev.store.index > registered);
  assert.equal(await emptyIndex(dev, "/v1/health/connect/ghost"), registered);
  // …or the index of the plain (non-mesh) service of that name.
  await call(dev, "PUT", "/v1/agent/service/register", { ID: "ghost-1", Name: "ghost", Port: 1 });
  const plain = dev.store.index;
  await native(dev, "api-1", "api");
  assert.equal(await emptyIndex(dev, "/v1/health/connect/ghost"), plain);
  // Once a name loses its last instance, every endpoint-less service answers that index.
  await deregister(dev, "web-1");
  const extinct = dev.store.index;
  assert.equal(await emptyIndex(dev, "/v1/health/connect/ghost"), extinct);
  assert.equal(await emptyIndex(dev, "/v1/health/connect/web"), extinct);
  await native(dev, "cache-1", "cache");
  assert.equal(
    await emptyIndex(dev, "/v1/health/connect/ghost"),
    extinct,
    "arrivals do not move it",
  );
  await native(dev, "api-2", "api");
  await deregister(dev, "api-1");
  assert.equal(await emptyIndex(dev, "/v1/health/connect/ghost"), extinct, "api still has one");
  await deregister(dev, "api-2");
  assert.equal(await emptyIndex(dev, "/v1/health/connect/ghost"), dev.store.index);
  assert.ok(dev.store.index > extinct);
});

Deno.test("health route: an endpoint-less read keeps its index until its own service changes", async () => {
  await using dev = await double();
  await native(dev, "a-1", "a");
  await native(dev, "b-1", "b");
  await deregister(dev, "a-1");
  const first = dev.store.index;
  // Asked below the index it would answer: at once, as Consul's blocking query and view do.
  const started = Date.now();
  const below = await call(dev, "GET", `/v1/health/connect/ghost?index=${first - 1}&wait=30s`);
  assert.ok(Date.now() - started < 5_000, "it did not block");
  assert.equal(Number(below.headers.get("X-Consul-Index")), first);
  // Another service's extinction neither wakes it nor shows when the wait ends.
  const blocked = call(dev, "GET", `/v1/health/connect/ghost?index=${first}&wait=300ms`);
  await deregister(dev, "b-1");
  const second = dev.store.index;
  assert.ok(second > first);
  const ended = await blocked;
  assert.equal(Number(ended.headers.get("X-Consul-Index")), first);
  assert.equal(await emptyIndex(dev, "/v1/health/connect/ghost"), second, "a new read sees it");
  // Its own first endpoint wakes it; losing it wakes it again with the new extinction index.
  const arrival = call(dev, "GET", `/v1/health/connect/ghost?index=${second}&wait=10s`);
  await native(dev, "ghost-1", "ghost");
  const woke = await arrival;
  const wokeAt = Number(woke.headers.get("X-Consul-Index"));
  assert.ok(wokeAt > second);
  assert.equal(woke.json.length, 1);
  const departure = call(dev, "GET", `/v1/health/connect/ghost?index=${wokeAt}&wait=10s`);
  await deregister(dev, "ghost-1");
  const gone = await departure;
  assert.equal(gone.text, "[]");
  assert.equal(Number(gone.headers.get("X-Consul-Index")), dev.store.index);
});

Deno.test("health route: ?passing that leaves nothing still answers the service's own index", async () => {
  await using dev = await double();
  await registerDb(dev, "db-1", []);
  await native(dev, "x-1", "x");
  await deregister(dev, "x-1"); // an extinction after db's last change
  // No probe: the sidecar's TCP check is critical, so ?passing drops the only endpoint.
  const all = await call(dev, "GET", "/v1/health/connect/db");
  const passing = await call(dev, "GET", "/v1/health/connect/db?passing");
  assert.equal(passing.text, "[]");
  assert.equal(passing.headers.get("X-Consul-Index"), all.headers.get("X-Consul-Index"));
  assert.ok(Number(all.headers.get("X-Consul-Index")) < dev.store.index);
});
