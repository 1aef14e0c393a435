// Faults as hono middleware (src/devagent/faults.ts): on a bare app, then on the double's routes.
import assert from "node:assert/strict";
import { Hono } from "hono";
import { Faults, injectFaults } from "../../src/devagent/faults.ts";
import { json, meta, text } from "../../src/devagent/http.ts";
import { Store } from "../../src/devagent/store.ts";
import { BadRequest } from "../../src/devagent/strict.ts";
import { call, double } from "./routes/_double.ts";

/** A bare app with one faulted route per shape of answer, counting handler runs. */
function faultedApp() {
  const faults = new Faults();
  const store = new Store();
  const runs: string[] = [];
  const app = new Hono();
  app.onError((err, c) => text(c, err.message, err instanceof BadRequest ? err.status : 500));
  const faulted = injectFaults(faults, store);
  app.get("/v1/list", faulted, (c) => {
    runs.push("list");
    meta(c, 42);
    return json(c, [1, 2]);
  });
  app.get("/v1/object", faulted, (c) => {
    runs.push("object");
    meta(c, 42);
    return json(c, { a: 1 });
  });
  app.get("/v1/missing", faulted, (c) => {
    runs.push("missing");
    return text(c, "not here", 404);
  });
  app.get("/v1/bad", faulted, () => {
    runs.push("bad");
    throw new BadRequest("Invalid index");
  });
  app.post("/v1/list", faulted, (c) => {
    runs.push("post");
    return json(c, true);
  });
  return { app, faults, store, runs };
}

Deno.test("faults middleware: no rule, no change", async () => {
  const { app, runs } = faultedApp();
  const r = await app.request("/v1/list");
  assert.deepEqual([r.status, await r.json(), r.headers.get("X-Consul-Index")], [
    200,
    [1, 2],
    "42",
  ]);
  assert.deepEqual(runs, ["list"]);
});

Deno.test("faults middleware: status answers instead of the handler, then the rule runs out", async () => {
  const { app, faults, runs } = faultedApp();
  faults.add({ path: "/v1/list", status: 503, body: "No cluster leader", times: 1 });
  const r = await app.request("/v1/list");
  assert.deepEqual([r.status, await r.text()], [503, "No cluster leader"]);
  assert.match(r.headers.get("Content-Type")!, /^text\/plain/);
  assert.deepEqual(runs, [], "the handler did not run");
  assert.equal(faults.hits.get("/v1/list"), 1);
  assert.equal((await app.request("/v1/list")).status, 200, "times: 1 removed the rule");
  faults.add({ path: "/v1/", status: 500 });
  const d = await app.request("/v1/object");
  assert.deepEqual([d.status, await d.text()], [500, "injected fault"], "default body");
});

Deno.test("faults middleware: a method-scoped rule spares other methods; paths match by prefix", async () => {
  const { app, faults, runs } = faultedApp();
  faults.add({ path: "/v1/li", method: "post", status: 429 });
  assert.equal((await app.request("/v1/list")).status, 200);
  const post = await app.request("/v1/list", { method: "POST" });
  assert.equal(post.status, 429);
  await post.body?.cancel();
  assert.equal((await app.request("/v1/object")).status, 200);
  assert.deepEqual(runs, ["list", "object"]);
});

Deno.test("faults middleware: malformed keeps status and headers, breaks the JSON", async () => {
  const { app, faults } = faultedApp();
  faults.add({ path: "/v1/", malformed: true });
  const r = await app.request("/v1/list");
  assert.deepEqual(
    [r.status, r.headers.get("X-Consul-Index"), r.headers.get("Content-Type"), await r.text()],
    [200, "42", "application/json", '{"broken": '],
  );
  // An answer the handler returns is rewritten, whatever its status...
  const missing = await app.request("/v1/missing");
  assert.deepEqual([missing.status, await missing.text()], [404, '{"broken": ']);
  // ...an error it throws is answered as Consul's text.
  const bad = await app.request("/v1/bad");
  assert.deepEqual([bad.status, await bad.text()], [400, "Invalid index"]);
});

Deno.test("faults middleware: filteredByAcls empties lists, flags every successful answer", async () => {
  const { app, faults } = faultedApp();
  faults.add({ path: "/v1/", filteredByAcls: true });
  const list = await app.request("/v1/list");
  assert.deepEqual(
    [
      list.status,
      await list.text(),
      list.headers.get("X-Consul-Results-Filtered-By-ACLs"),
      list.headers.get("X-Consul-Index"),
      list.headers.get("Content-Length"),
    ],
    [200, "[]", "true", "42", null],
  );
  const object = await app.request("/v1/object");
  assert.deepEqual(
    [await object.json(), object.headers.get("X-Consul-Results-Filtered-By-ACLs")],
    [{ a: 1 }, "true"],
  );
  const missing = await app.request("/v1/missing");
  assert.deepEqual(
    [
      missing.status,
      await missing.text(),
      missing.headers.get("X-Consul-Results-Filtered-By-ACLs"),
    ],
    [404, "not here", null],
    "an error answer is not flagged",
  );
});

Deno.test("faults middleware: indexBackwards answers X-Consul-Index 1 where there is an index", async () => {
  const { app, faults } = faultedApp();
  faults.add({ path: "/v1/", indexBackwards: true, times: 2 });
  const r = await app.request("/v1/list");
  assert.deepEqual([r.headers.get("X-Consul-Index"), await r.json()], ["1", [1, 2]]);
  const none = await app.request("/v1/missing");
  assert.equal(none.headers.get("X-Consul-Index"), null, "no index is not invented");
  await none.body?.cancel();
  const after = await app.request("/v1/object");
  assert.equal(after.headers.get("X-Consul-Index"), "42");
  await after.body?.cancel();
});

Deno.test("faults middleware: latency delays the answer; the store closing cuts it short", async () => {
  const { app, faults, store } = faultedApp();
  faults.add({ path: "/v1/list", latencyMs: 150, times: 1 });
  let started = Date.now();
  const r = await app.request("/v1/list");
  assert.ok(Date.now() - started >= 140, "delayed");
  assert.deepEqual(await r.json(), [1, 2]);
  faults.add({ path: "/v1/list", latencyMs: 60_000, times: 1 });
  started = Date.now();
  const slow = app.request("/v1/list");
  setTimeout(() => store.close(), 20);
  await (await slow).body?.cancel();
  assert.ok(Date.now() - started < 5000, "released when the double closes");
});

Deno.test("faults middleware: drop breaks the connection mid-answer", async () => {
  const { app, faults, runs } = faultedApp();
  faults.add({ path: "/v1/list", drop: true, times: 1 });
  const r = await app.request("/v1/list");
  await assert.rejects(r.text(), /dropped connection/);
  assert.deepEqual(runs, []);
});

Deno.test("faults on the double: Consul endpoints only, after the method and Enterprise checks", async () => {
  await using dev = await double();
  // A 405, an OPTIONS and an Enterprise refusal are answered before the fault, and do not
  // use it up.
  dev.faults.add({ path: "/v1/agent/services", status: 500, times: 1 });
  assert.equal((await call(dev, "PUT", "/v1/agent/services")).status, 405);
  assert.equal((await call(dev, "OPTIONS", "/v1/agent/services")).status, 200);
  assert.equal((await call(dev, "GET", "/v1/agent/services?ns=x")).status, 400);
  assert.equal((await call(dev, "GET", "/v1/agent/services")).status, 500);
  assert.equal((await call(dev, "GET", "/v1/agent/services")).status, 200);
  // Unknown paths are never faulted.
  dev.faults.add({ path: "/v1/", status: 503 });
  assert.equal((await call(dev, "GET", "/v1/nope")).status, 404);
  for (
    const path of [
      "/v1/agent/self",
      "/v1/agent/connect/ca/roots",
      "/v1/connect/ca/roots",
      "/v1/connect/ca/configuration",
      "/v1/agent/connect/ca/leaf/web",
      "/v1/agent/service/web",
      "/v1/health/connect/web",
      "/v1/connect/intentions",
      "/v1/discovery-chain/web",
      "/v1/config/service-resolver/web",
      "/v1/query/q/execute",
    ]
  ) {
    assert.equal((await call(dev, "GET", path)).status, 503, path);
  }
  // The test hooks are not Consul's: never faulted, so a fault can always be cleared.
  dev.faults.add({ path: "/v1/devagent", status: 500 });
  assert.equal((await call(dev, "DELETE", "/v1/devagent/faults")).status, 200);
  assert.equal((await call(dev, "GET", "/v1/agent/self")).status, 200);
});
