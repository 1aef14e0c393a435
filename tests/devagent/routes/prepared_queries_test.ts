// Route-level tests of src/devagent/routes/prepared_queries.ts through app.request().
import assert from "node:assert/strict";
import { call, double } from "./_double.ts";

Deno.test("prepared query routes: create, execute by ID or name with ?connect, delete", async () => {
  await using dev = await double();
  await call(dev, "PUT", "/v1/agent/service/register", {
    ID: "db-1",
    Name: "db",
    Port: 5432,
    Connect: { SidecarService: {} },
  });
  // Make the sidecar's TCP check pass: execute leaves out critical instances.
  dev.catalog.forceCheck("service:db-1-sidecar-proxy:1", "passing");
  const created = await call(dev, "POST", "/v1/query", { Name: "q", Service: { Service: "db" } });
  assert.equal(created.status, 200);
  assert.match(created.json.ID, /^[0-9a-f-]{36}$/);
  const byName = await call(dev, "GET", "/v1/query/q/execute?connect");
  assert.equal(byName.json.Service, "db");
  assert.equal(byName.json.Nodes.length, 1);
  assert.equal(byName.json.Nodes[0].Service.ID, "db-1-sidecar-proxy");
  assert.equal(byName.json.Nodes[0].Service.Tags, null, "Go's nil slice");
  assert.equal(byName.headers.get("X-Consul-Index"), "1");
  const byId = await call(dev, "GET", `/v1/query/${created.json.ID}/execute?connect=true`);
  assert.deepEqual(byId.json.Nodes.length, 1);
  const plain = await call(dev, "GET", "/v1/query/q/execute");
  assert.deepEqual(plain.json.Nodes, [], "without ?connect: the service itself, none here");
  const del = await call(dev, "DELETE", `/v1/query/${created.json.ID}`);
  assert.deepEqual([del.status, del.text], [200, ""]);
  const gone = await call(dev, "GET", "/v1/query/q/execute");
  assert.deepEqual([gone.status, gone.text], [404, "Query not found"]);
  assert.equal(gone.headers.get("X-Consul-KnownLeader"), "false");
});

Deno.test("prepared query routes: the errors of Consul's PreparedQuery.Apply and Execute", async () => {
  await using dev = await double();
  const create = (body: unknown) => call(dev, "POST", "/v1/query", body);
  const cases: [unknown, string][] = [
    [{ Service: { Service: "db" } }, "Invalid prepared query: Must be bound to a session"],
    [{ Name: "q" }, "Invalid prepared query: Must provide a Service name to query"],
  ];
  for (const [body, message] of cases) {
    const r = await create(body);
    assert.deepEqual([r.status, r.text], [500, message]);
  }
  await create({ Name: "q", Service: { Service: "db" } });
  const dup = await create({ Name: "q", Service: { Service: "db" } });
  assert.deepEqual([dup.status, dup.text], [
    500,
    "raft apply failed: name 'q' aliases an existing query name",
  ]);
  const short = await call(dev, "DELETE", "/v1/query/nope");
  assert.equal(short.status, 500);
  assert.match(short.text, /UUID must be 36 characters$/);
  const unknown = await call(
    dev,
    "DELETE",
    `/v1/query/${"0".repeat(8)}-0000-0000-0000-${"0".repeat(12)}`,
  );
  assert.equal(unknown.status, 500);
  assert.match(unknown.text, /^Cannot modify non-existent prepared query/);
  const dc = await call(dev, "GET", "/v1/query/q/execute?dc=dc9");
  assert.deepEqual([dc.status, dc.text], [500, "No path to datacenter"]);
  assert.equal(dc.headers.get("X-Consul-Index"), "1");
  const get = await call(dev, "GET", "/v1/query/q");
  assert.deepEqual([get.status, get.headers.get("Allow")], [405, "OPTIONS,DELETE"]);
  assert.equal((await call(dev, "GET", "/v1/query/a/b/execute")).status, 404);
});
