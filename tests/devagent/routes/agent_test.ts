// Route-level tests of src/devagent/routes/agent.ts through app.request().
import assert from "node:assert/strict";
import { call, double } from "./_double.ts";

Deno.test("agent routes: /v1/agent/self names the datacenter, node and a 1.22.7 server", async () => {
  await using dev = await double({ datacenter: "east", nodeName: "n1" });
  const r = await call(dev, "GET", "/v1/agent/self");
  assert.equal(r.status, 200);
  assert.equal(r.json.Config.Datacenter, "east");
  assert.equal(r.json.Config.NodeName, "n1");
  assert.equal(r.json.Config.Version, "1.22.7");
  assert.equal(r.json.DebugConfig.ConnectEnabled, true);
  assert.equal(r.json.Member.Tags.dc, "east");
  // agent/self reads no Enterprise metadata: ns is ignored there.
  assert.equal((await call(dev, "GET", "/v1/agent/self?ns=x")).status, 200);
});

Deno.test("agent routes: register, list (Kind filter), read, deregister; IDs may hold a slash", async () => {
  await using dev = await double();
  const reg = await call(dev, "PUT", "/v1/agent/service/register", {
    ID: "db/1",
    Name: "db",
    Port: 5432,
    Connect: { SidecarService: {} },
  });
  assert.deepEqual([reg.status, reg.text, reg.headers.get("Content-Type")], [
    200,
    "",
    "application/json; charset=utf-8",
  ]);
  const all = await call(dev, "GET", "/v1/agent/services");
  assert.deepEqual(Object.keys(all.json).sort(), ["db/1", "db/1-sidecar-proxy"]);
  const proxies = await call(
    dev,
    "GET",
    `/v1/agent/services?filter=${encodeURIComponent("Kind == `connect-proxy`")}`,
  );
  assert.deepEqual(Object.keys(proxies.json), ["db/1-sidecar-proxy"]);
  const one = await call(dev, "GET", "/v1/agent/service/db%2F1");
  assert.equal(one.json.ID, "db/1");
  assert.equal(one.headers.get("X-Consul-ContentHash"), one.json.ContentHash);
  assert.equal((await call(dev, "GET", "/v1/agent/service/db/1")).json.ID, "db/1");
  const gone = await call(dev, "PUT", "/v1/agent/service/deregister/db/1");
  assert.equal(gone.status, 200);
  assert.equal(dev.catalog.get("db/1"), undefined);
  assert.equal(dev.catalog.get("db/1-sidecar-proxy"), undefined, "its sidecar went with it");
  const again = await call(dev, "PUT", "/v1/agent/service/deregister/db%2F1");
  assert.equal(again.status, 404);
  const missing = await call(dev, "GET", "/v1/agent/service/db%2F1");
  assert.deepEqual([missing.status, missing.text], [404, "unknown service ID: db/1"]);
});

Deno.test("agent routes: replace-existing-checks drops checks the new registration lacks", async () => {
  await using dev = await double();
  const body = (checks: unknown[]) => ({ ID: "web", Name: "web", Port: 1, Checks: checks });
  await call(dev, "PUT", "/v1/agent/service/register", body([{ CheckID: "a", TTL: "30s" }]));
  await call(dev, "PUT", "/v1/agent/service/register", body([{ CheckID: "b", TTL: "30s" }]));
  assert.deepEqual(dev.catalog.checksOf("web").map((c) => c.CheckID).sort(), ["a", "b"]);
  await call(
    dev,
    "PUT",
    "/v1/agent/service/register?replace-existing-checks",
    body([{ CheckID: "c", TTL: "30s" }]),
  );
  assert.deepEqual(dev.catalog.checksOf("web").map((c) => c.CheckID), ["c"]);
  await call(
    dev,
    "PUT",
    "/v1/agent/service/register?replace-existing-checks=false",
    body([{ CheckID: "d", TTL: "30s" }]),
  );
  assert.deepEqual(dev.catalog.checksOf("web").map((c) => c.CheckID).sort(), ["c", "d"]);
});

Deno.test("agent routes: checks pass, warn, fail and update; other actions are unknown paths", async () => {
  await using dev = await double();
  await call(dev, "PUT", "/v1/agent/service/register", {
    Name: "web",
    Port: 1,
    Check: { TTL: "30s" },
  });
  const status = () => dev.catalog.checksOf("web")[0]!;
  for (
    const [action, expected] of [["pass", "passing"], ["warn", "warning"], ["fail", "critical"]]
  ) {
    const r = await call(dev, "PUT", `/v1/agent/check/${action}/service:web?note=${action}!`);
    assert.equal(r.status, 200);
    assert.deepEqual([status().Status, status().Output], [expected, `${action}!`]);
  }
  await call(dev, "PUT", "/v1/agent/check/update/service:web", {
    Status: "passing",
    Output: "fine",
  });
  assert.deepEqual([status().Status, status().Output], ["passing", "fine"]);
  const bad = await call(dev, "PUT", "/v1/agent/check/update/service:web", '{"Status":"ok"}');
  assert.deepEqual([bad.status, bad.text], [400, "Invalid check status: 'ok'"]);
  const extra = await call(dev, "PUT", "/v1/agent/check/update/service:web", '{"Nope":1}');
  assert.deepEqual([extra.status, extra.text], [
    400,
    'Request decode failed: json: unknown field "Nope"',
  ]);
  assert.equal((await call(dev, "PUT", "/v1/agent/check/reset/service:web")).status, 404);
  assert.equal((await call(dev, "PUT", "/v1/agent/check/pass/nope")).status, 404);
  const get = await call(dev, "GET", "/v1/agent/check/pass/service:web");
  assert.deepEqual([get.status, get.headers.get("Allow")], [405, "OPTIONS,PUT"]);
});

Deno.test("agent routes: overlapping paths answer as the most specific one", async () => {
  await using dev = await double();
  // GET on register and deregister are their 405s, not a read of a service named so.
  for (const path of ["/v1/agent/service/register", "/v1/agent/service/deregister/x"]) {
    const r = await call(dev, "GET", path);
    assert.deepEqual([r.status, r.headers.get("Allow")], [405, "OPTIONS,PUT"], path);
  }
  // Below register, the path is an ID again.
  const r = await call(dev, "GET", "/v1/agent/service/register/x");
  assert.deepEqual([r.status, r.text], [404, "unknown service ID: register/x"]);
  const put = await call(dev, "PUT", "/v1/agent/service/web");
  assert.deepEqual([put.status, put.headers.get("Allow")], [405, "OPTIONS,GET"]);
});

Deno.test("agent routes: services and checks refuse Enterprise metadata", async () => {
  await using dev = await double();
  for (
    const [method, path] of [
      ["GET", "/v1/agent/services?ns=default"],
      ["PUT", "/v1/agent/service/register?partition=default"],
      ["PUT", "/v1/agent/service/deregister/web?ns=a"],
      ["GET", "/v1/agent/service/web?ns=a"],
      ["PUT", "/v1/agent/check/pass/x?ns=a"],
    ]
  ) {
    const r = await call(dev, method!, path!, method === "GET" ? undefined : "{}");
    assert.equal(r.status, 400, path);
    assert.match(r.text, /Consul Enterprise feature$/, path);
  }
});

Deno.test("agent routes: ?hash blocks until the service changes", async () => {
  await using dev = await double();
  await call(dev, "PUT", "/v1/agent/service/register", { ID: "web", Name: "web", Port: 1 });
  const first = await call(dev, "GET", "/v1/agent/service/web");
  const hash = first.headers.get("X-Consul-ContentHash")!;
  const blocked = call(dev, "GET", `/v1/agent/service/web?hash=${hash}&wait=10s`);
  await call(dev, "PUT", "/v1/agent/service/register", { ID: "web", Name: "web", Port: 2 });
  const changed = await blocked;
  assert.equal(changed.json.Port, 2);
  assert.notEqual(changed.headers.get("X-Consul-ContentHash"), hash);
  const started = Date.now();
  const timeout = await call(
    dev,
    "GET",
    `/v1/agent/service/web?hash=${changed.json.ContentHash}&wait=100ms`,
  );
  assert.ok(Date.now() - started >= 90, "it waited");
  assert.equal(timeout.json.Port, 2);
});
