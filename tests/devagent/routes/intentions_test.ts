// Route-level tests of src/devagent/routes/intentions.ts through app.request().
import assert from "node:assert/strict";
import { call, double } from "./_double.ts";

const exact = (src: string, dst: string) =>
  `/v1/connect/intentions/exact?source=${encodeURIComponent(src)}&destination=${dst}`;

Deno.test("intention routes: exact write, read, delete (idempotent), with Consul's errors", async () => {
  await using dev = await double();
  const put = await call(dev, "PUT", exact("web", "db"), { Action: "allow", Description: "d" });
  assert.deepEqual([put.status, put.json], [200, true]);
  const got = await call(dev, "GET", exact("web", "db"));
  assert.equal(got.json.Action, "allow");
  assert.equal(got.json.Description, "d");
  assert.equal(got.json.Precedence, 9);
  assert.equal(got.json.SourceNS, "default");
  const del = await call(dev, "DELETE", exact("web", "db"));
  assert.deepEqual([del.status, del.json], [200, true]);
  assert.deepEqual([(await call(dev, "DELETE", exact("web", "db"))).status], [200]);
  const missing = await call(dev, "GET", exact("web", "db"));
  assert.deepEqual([missing.status, missing.text], [404, "Intention not found"]);
  const noSource = await call(dev, "GET", "/v1/connect/intentions/exact?destination=db");
  assert.deepEqual([noSource.status, noSource.text], [
    500,
    "required query parameter 'source' not set",
  ]);
  const noAction = await call(dev, "PUT", exact("web", "db"), {});
  // Consul validates the pair as a source of the destination's service-intentions entry.
  assert.deepEqual([noAction.status, noAction.text], [
    500,
    "Sources[0].Action must be set to 'allow' or 'deny'",
  ]);
  const post = await call(dev, "POST", exact("web", "db"), {});
  assert.deepEqual([post.status, post.headers.get("Allow")], [405, "OPTIONS,GET,PUT,DELETE"]);
  const ns = await call(dev, "GET", `${exact("web", "db")}&ns=default`);
  assert.equal(ns.status, 400);
});

Deno.test("intention routes: the list is in Consul's order (precedence, then Go byte order)", async () => {
  await using dev = await double();
  for (const src of ["b", "*", "a", "B", "_x"]) {
    await call(dev, "PUT", exact(src, "db"), { Action: "deny" });
  }
  await call(dev, "PUT", exact("web", "*"), { Action: "allow" });
  const list = await call(dev, "GET", "/v1/connect/intentions");
  // As consul 1.22.7 answers (measured): uppercase, underscore, lowercase; then 8, then 6.
  assert.deepEqual(
    list.json.map((i: { SourceName: string; Precedence: number }) =>
      `${i.SourceName}:${i.Precedence}`
    ),
    ["B:9", "_x:9", "a:9", "b:9", "*:8", "web:6"],
  );
  assert.equal(list.headers.get("X-Consul-Query-Backend"), "blocking-query");
  const filtered = await call(
    dev,
    "GET",
    `/v1/connect/intentions?filter=${encodeURIComponent('DestinationName == "*"')}`,
  );
  assert.deepEqual(filtered.json.map((i: { SourceName: string }) => i.SourceName), ["web"]);
});

Deno.test("intention routes: match maps each name to its intentions or null; 'by' and 'name' required", async () => {
  await using dev = await double();
  await call(dev, "PUT", exact("web", "db"), { Action: "allow" });
  await call(dev, "PUT", exact("*", "db"), { Action: "deny" });
  const r = await call(
    dev,
    "GET",
    "/v1/connect/intentions/match?by=destination&name=db&name=cache",
  );
  assert.deepEqual(Object.keys(r.json), ["db", "cache"]);
  assert.deepEqual(r.json.db.map((i: { SourceName: string }) => i.SourceName), ["web", "*"]);
  assert.equal(r.json.cache, null);
  assert.equal(r.headers.get("X-Consul-Effective-Consistency"), "leader");
  const bySource = await call(dev, "GET", "/v1/connect/intentions/match?by=source&name=web");
  // By source, a wildcard source matches too.
  assert.deepEqual(bySource.json.web.map((i: { SourceName: string }) => i.SourceName), [
    "web",
    "*",
  ]);
  const cases: [string, string][] = [
    ["name=db", "required query parameter 'by' not set"],
    ["by=x&name=db", "'by' parameter must be one of 'source' or 'destination'"],
    ["by=source", "required query parameter 'name' not set"],
  ];
  for (const [q, message] of cases) {
    const bad = await call(dev, "GET", `/v1/connect/intentions/match?${q}`);
    assert.deepEqual([bad.status, bad.text], [500, message], q);
  }
});

Deno.test("intention routes: list and match block until intentions change", async () => {
  await using dev = await double();
  const first = await call(dev, "GET", "/v1/connect/intentions");
  const index = first.headers.get("X-Consul-Index");
  assert.equal(first.text, "[]");
  const list = call(dev, "GET", `/v1/connect/intentions?index=${index}&wait=10s`);
  const match = call(
    dev,
    "GET",
    `/v1/connect/intentions/match?by=destination&name=db&index=${index}&wait=10s`,
  );
  await call(dev, "PUT", exact("web", "db"), { Action: "allow" });
  for (const r of [await list, await match]) {
    assert.ok(Number(r.headers.get("X-Consul-Index")) > Number(index));
  }
  assert.equal((await list).json.length, 1);
});

Deno.test("intention routes: check answers what authorize would", async () => {
  await using dev = await double({ defaultAllow: false });
  await call(dev, "PUT", exact("web", "db"), { Action: "allow" });
  const check = async (src: string, dst: string) =>
    (await call(dev, "GET", `/v1/connect/intentions/check?source=${src}&destination=${dst}`))
      .json;
  assert.deepEqual(await check("web", "db"), { Allowed: true });
  assert.deepEqual(await check("api", "db"), { Allowed: false });
  const missing = await call(dev, "GET", "/v1/connect/intentions/check?source=web");
  assert.deepEqual([missing.status, missing.text], [
    500,
    "required query parameter 'destination' not set",
  ]);
  const noSource = await call(dev, "GET", "/v1/connect/intentions/check?destination=db");
  assert.deepEqual([noSource.status, noSource.text], [
    500,
    "required query parameter 'source' not set",
  ]);
});

Deno.test("intention routes: CE drops a namespace or partition part on writes, refuses one other than default on reads", async () => {
  await using dev = await double();
  const put = (src: string, dst: string, Action = "deny") =>
    call(dev, "PUT", exact(src, dst), { Action });
  assert.equal((await put("*/web", "db")).status, 200);
  assert.equal((await put("api", "default/pay", "allow")).status, 200);
  const pairs = async () =>
    (await call(dev, "GET", "/v1/connect/intentions")).json.map((
      i: { SourceNS: string; SourceName: string; DestinationName: string; Precedence: number },
    ) => `${i.SourceNS}/${i.SourceName}>${i.DestinationName}:${i.Precedence}`);
  assert.deepEqual(await pairs(), ["default/api>pay:9", "default/web>db:9"]);
  // A partition/namespace/name write is the same pair.
  assert.equal((await put("ap/ns/web", "db", "allow")).status, 200);
  assert.equal((await call(dev, "GET", exact("web", "db"))).json.Action, "allow");
  for (const src of ["default/web", "ap/default/web", "default/default/web"]) {
    assert.equal((await call(dev, "GET", exact(src, "db"))).json.SourceName, "web", src);
  }
  const reads: [string, string, string][] = [
    ["*/web", "db", `Invalid SourceNS "*": Namespaces is a Consul Enterprise feature`],
    ["ap/ns/web", "db", `Invalid SourceNS "ns": Namespaces is a Consul Enterprise feature`],
    ["web", "foo/db", `Invalid DestinationNS "foo": Namespaces is a Consul Enterprise feature`],
    ["peer:x", "db", `source "peer:x" is invalid: need to specify the service name as well`],
  ];
  for (const [src, dst, message] of reads) {
    const r = await call(dev, "GET", exact(src, dst));
    assert.deepEqual([r.status, r.text], [500, message], `${src} → ${dst}`);
  }
  // A read may name a peer (none of the double's intentions has this one).
  assert.equal((await call(dev, "GET", exact("peer:x/web", "db"))).status, 404);
  const peerWrite = await put("peer:x/web", "db");
  assert.deepEqual([peerWrite.status, peerWrite.text], [
    500,
    `source "peer:x/web" is invalid: cannot specify a peer here`,
  ]);
  // A delete drops the namespace too.
  assert.equal((await call(dev, "DELETE", exact("x/web", "y/db"))).status, 200);
  assert.deepEqual(await pairs(), ["default/api>pay:9"]);
});

Deno.test("intention routes: match and check read names as CE does", async () => {
  await using dev = await double({ defaultAllow: false });
  await call(dev, "PUT", exact("web", "db"), { Action: "allow" });
  const match = async (name: string) =>
    await call(dev, "GET", `/v1/connect/intentions/match?by=source&name=${name}`);
  const ok = await match("default/web");
  assert.deepEqual(Object.keys(ok.json), ["default/web"], "keyed by the name as given");
  assert.equal(ok.json["default/web"][0].DestinationName, "db");
  const refused: [string, string][] = [
    ["x/web", `Invalid match entry namespace "x": Namespaces is a Consul Enterprise feature`],
    ["a/b/web", `Invalid match entry namespace "b": Namespaces is a Consul Enterprise feature`],
    [
      "ap/default/web",
      `Invalid match entry partition "ap": Partitions is a Consul Enterprise feature`,
    ],
    ["peer:p/web", `name "peer:p/web" is invalid: cannot specify a peer here`],
  ];
  for (const [name, message] of refused) {
    const r = await match(name);
    assert.deepEqual([r.status, r.text], [500, message], name);
  }
  const check = (q: string) => call(dev, "GET", `/v1/connect/intentions/check?${q}`);
  assert.deepEqual((await check("source=default/web&destination=ap/default/db")).json, {
    Allowed: true,
  });
  assert.deepEqual((await check("source=api&destination=db")).json, { Allowed: false });
  const checks: [string, string][] = [
    [
      "source=x/web&destination=db",
      `Invalid source namespace "x": Namespaces is a Consul Enterprise feature`,
    ],
    [
      "source=web&destination=x/db",
      `Invalid destination namespace "x": Namespaces is a Consul Enterprise feature`,
    ],
    [
      "source=peer:a/web&destination=db",
      `source "peer:a/web" is invalid: cannot specify a peer here`,
    ],
  ];
  for (const [q, message] of checks) {
    const r = await check(q);
    assert.deepEqual([r.status, r.text], [500, message], q);
  }
});
