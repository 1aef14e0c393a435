// What every route module of the double shares (src/devagent/http.ts), on a bare hono app.
import assert from "node:assert/strict";
import { Hono } from "hono";
import {
  Blocking,
  empty,
  endpoint,
  enterpriseMetaRefused,
  json,
  meta,
  pathParam,
  text,
} from "../../src/devagent/http.ts";
import { Store } from "../../src/devagent/store.ts";
import { BadRequest } from "../../src/devagent/strict.ts";

function app(): Hono {
  const app = new Hono();
  app.onError((err, c) => text(c, err.message, err instanceof BadRequest ? err.status : 500));
  return app;
}

Deno.test("endpoint: OPTIONS and 405 list the methods in declaration order; HEAD is not GET", async () => {
  const a = app();
  endpoint(a, "/v1/thing", {
    GET: (c) => json(c, "get"),
    PUT: (c) => json(c, "put"),
    DELETE: (c) => empty(c),
  });
  const get = await a.request("/v1/thing");
  assert.deepEqual([get.status, await get.json()], [200, "get"]);
  const options = await a.request("/v1/thing", { method: "OPTIONS" });
  assert.deepEqual([options.status, options.headers.get("Allow"), await options.text()], [
    200,
    "OPTIONS,GET,PUT,DELETE",
    "",
  ]);
  const post = await a.request("/v1/thing", { method: "POST" });
  assert.deepEqual(
    [post.status, post.headers.get("Allow"), await post.text()],
    [405, "OPTIONS,GET,PUT,DELETE", "method POST not allowed"],
  );
  assert.match(post.headers.get("Content-Type")!, /^text\/plain/);
  // hono routes HEAD to GET handlers; Consul's endpoints do not allow it.
  const head = await a.request("/v1/thing", { method: "HEAD" });
  assert.deepEqual([head.status, head.headers.get("Allow")], [405, "OPTIONS,GET,PUT,DELETE"]);
  // A path nobody registered is not this endpoint's 405.
  assert.equal((await a.request("/v1/thing/else", { method: "POST" })).status, 404);
});

Deno.test("endpoint: the first registered path that matches answers, params may hold slashes", async () => {
  const a = app();
  endpoint(a, "/v1/svc/register", { PUT: (c) => json(c, "register") });
  endpoint(a, "/v1/svc/:id{.+}", { GET: (c) => json(c, pathParam(c, "id")) });
  assert.equal(await (await a.request("/v1/svc/register", { method: "PUT" })).json(), "register");
  // GET on the more specific path is its 405, not the catch-all's GET.
  const r = await a.request("/v1/svc/register");
  assert.deepEqual([r.status, r.headers.get("Allow")], [405, "OPTIONS,PUT"]);
  await r.body?.cancel();
  assert.equal(await (await a.request("/v1/svc/a/b")).json(), "a/b");
  assert.equal(await (await a.request("/v1/svc/a%2Fb%20c")).json(), "a/b c", "decoded once");
  assert.equal(await (await a.request("/v1/svc/register/x")).json(), "register/x");
});

Deno.test("endpoint: middleware runs after the method check, before the handler", async () => {
  const a = app();
  const seen: string[] = [];
  endpoint(a, "/v1/x", { GET: (c) => json(c, true) }, async (c, next) => {
    seen.push(c.req.method);
    await next();
  });
  await (await a.request("/v1/x")).body?.cancel();
  await (await a.request("/v1/x", { method: "PUT" })).body?.cancel();
  await (await a.request("/v1/x", { method: "HEAD" })).body?.cancel();
  await (await a.request("/v1/x", { method: "OPTIONS" })).body?.cancel();
  assert.deepEqual(seen, ["GET"]);
});

Deno.test("enterpriseMetaRefused: ns and partition, as query or header, even empty or default", async () => {
  const a = app();
  endpoint(a, "/v1/x", { GET: (c) => json(c, true) }, enterpriseMetaRefused);
  const ask = async (path: string, headers?: Record<string, string>) => {
    const r = await a.request(path, { headers });
    return [r.status, await r.text()];
  };
  const ns = `Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature`;
  const part = `Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature`;
  assert.deepEqual(await ask("/v1/x?ns=default"), [400, ns]);
  assert.deepEqual(await ask("/v1/x?ns"), [400, ns]);
  assert.deepEqual(await ask("/v1/x", { "X-Consul-Namespace": "default" }), [400, ns]);
  assert.deepEqual(await ask("/v1/x?partition=default"), [400, part]);
  assert.deepEqual(await ask("/v1/x", { "X-Consul-Partition": "p" }), [400, part]);
  assert.deepEqual(await ask("/v1/x?ns=a&partition=b"), [400, ns], "namespace is checked first");
  assert.deepEqual(await ask("/v1/x?nsx=1"), [200, "true"]);
});

Deno.test("meta: Consul's setMeta headers, the index never below 1", async () => {
  const a = app();
  a.get("/a", (c) => {
    meta(c, 0);
    return empty(c);
  });
  a.get("/b", (c) => {
    meta(c, 42, { knownLeader: false, backend: "streaming", consistency: true });
    return empty(c);
  });
  const r = await a.request("/a");
  assert.deepEqual(
    ["X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact"].map((h) => r.headers.get(h)),
    ["1", "true", "0"],
  );
  assert.equal(r.headers.get("X-Consul-Query-Backend"), null);
  assert.equal(r.headers.get("X-Consul-Effective-Consistency"), null);
  assert.equal(r.headers.get("Content-Type"), "application/json; charset=utf-8");
  assert.equal(await r.text(), "");
  const b = await a.request("/b");
  assert.deepEqual(
    [
      "X-Consul-Index",
      "X-Consul-KnownLeader",
      "X-Consul-Query-Backend",
      "X-Consul-Effective-Consistency",
    ].map((h) => b.headers.get(h)),
    ["42", "false", "streaming", "leader"],
  );
  await b.body?.cancel();
});

Deno.test("json: pretty-printed with 4 spaces, as an agent in -dev mode writes it", async () => {
  const a = app();
  a.get("/", (c) => json(c, { A: [1] }, 201));
  const r = await a.request("/");
  assert.deepEqual([r.status, await r.text()], [201, '{\n    "A": [\n        1\n    ]\n}']);
  assert.equal(r.headers.get("Content-Type"), "application/json");
});

Deno.test("Blocking.params: Consul's parseWait (empty is none, bad is a 400, capped at 10 min)", async () => {
  const blocking = new Blocking(new Store(), { defaultWaitMs: 300_000, jitter: false });
  const a = app();
  a.get("/", (c) => json(c, blocking.params(c)));
  const params = async (q: string) => {
    const r = await a.request(`/${q}`);
    return [r.status, r.status === 200 ? await r.json() : await r.text()];
  };
  assert.deepEqual(await params(""), [200, { index: 0, waitMs: 300_000 }]);
  assert.deepEqual(await params("?wait=&index="), [200, { index: 0, waitMs: 300_000 }]);
  assert.deepEqual(await params("?wait=2s&index=17"), [200, { index: 17, waitMs: 2000 }]);
  assert.deepEqual(await params("?wait=0s"), [200, { index: 0, waitMs: 300_000 }]);
  assert.deepEqual(await params("?wait=1h"), [200, { index: 0, waitMs: 600_000 }]);
  assert.deepEqual(await params("?wait=forever"), [400, "Invalid wait time"]);
  assert.deepEqual(await params("?index=-1"), [400, "Invalid index"]);
  assert.deepEqual(await params("?index=abc"), [400, "Invalid index"]);
  const jittered = new Blocking(new Store(), { defaultWaitMs: 1600, jitter: true });
  const j = app();
  j.get("/", (c) => json(c, jittered.params(c).waitMs));
  for (let i = 0; i < 20; i++) {
    const waitMs = await (await j.request("/?wait=1600ms")).json();
    assert.ok(waitMs >= 1600 && waitMs <= 1700, `wait/16 jitter at most: ${waitMs}`);
  }
});

Deno.test("Blocking.wait: returns at once without index, wakes on a write, answers the arrival index for a never-written resource", async () => {
  const store = new Store();
  const blocking = new Blocking(store, { defaultWaitMs: 10_000, jitter: false });
  const a = app();
  a.get("/", async (c) => {
    const index = await blocking.wait(c, () => store.topicIndex("t"), () => store.seen("t"));
    return json(c, index);
  });
  const arrived = store.index;
  assert.equal(await (await a.request("/")).json(), arrived, "never written: the raft index");
  const written = store.bump("t");
  assert.equal(await (await a.request("/")).json(), written);
  const started = Date.now();
  const blocked = a.request(`/?index=${written}&wait=5s`);
  store.bump("other");
  store.bump("t");
  assert.equal(await (await blocked).json(), written + 2);
  assert.ok(Date.now() - started < 4000, "it woke on the write, not at the end of the wait");
  const timedOut = await (await a.request(`/?index=${written + 2}&wait=50ms`)).json();
  assert.equal(timedOut, written + 2, "a timeout answers the same index");
  store.close();
});
