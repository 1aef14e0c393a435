// Route-level tests of src/devagent/routes/authorize.ts through app.request().
import assert from "node:assert/strict";
import { call, double, svcUri } from "./_double.ts";

Deno.test("authorize route: the double's intentions decide; Consul's reasons", async () => {
  await using dev = await double();
  const authz = (src: string, dst: string) =>
    call(dev, "POST", "/v1/agent/connect/authorize", {
      Target: dst,
      ClientCertURI: svcUri(dev, src),
    });
  assert.deepEqual((await authz("web", "db")).json, {
    Authorized: true,
    Reason: "Default behavior configured by ACLs",
  });
  await call(dev, "PUT", "/v1/connect/intentions/exact?source=*&destination=db", {
    Action: "deny",
  });
  await call(dev, "PUT", "/v1/connect/intentions/exact?source=web&destination=db", {
    Action: "allow",
  });
  assert.deepEqual((await authz("web", "db")).json, {
    Authorized: true,
    Reason: "Matched L4 intention: default/web => default/db (Precedence: 9, Action: ALLOW)",
  });
  assert.deepEqual((await authz("api", "db")).json, {
    Authorized: false,
    Reason: "Matched L4 intention: default/* => default/db (Precedence: 8, Action: DENY)",
  });
  // The trust domain is not compared (Consul leaves that to the chain).
  const foreign = await call(dev, "POST", "/v1/agent/connect/authorize", {
    Target: "db",
    ClientCertURI: "spiffe://other.consul/ns/default/dc/dc9/svc/web",
  });
  assert.equal(foreign.json.Authorized, true);
  dev.intentions.defaultAllow = false;
  const denied = await authz("web", "cache");
  assert.deepEqual(denied.json, {
    Authorized: false,
    Reason: "Default behavior configured by ACLs",
  });
  assert.equal(denied.headers.get("X-Consul-Default-ACL-Policy"), "deny");
});

Deno.test("authorize route: MISS the first time a target is asked about, then HIT; errors carry neither", async () => {
  await using dev = await double();
  const ask = (target: string) =>
    call(dev, "POST", "/v1/agent/connect/authorize", {
      target,
      clientcerturi: svcUri(dev, "web"),
    });
  const first = await ask("db");
  assert.deepEqual([first.headers.get("X-Cache"), first.headers.get("Age")], ["MISS", null]);
  const second = await ask("db");
  assert.deepEqual([second.headers.get("X-Cache"), second.headers.get("Age")], ["HIT", "0"]);
  assert.equal((await ask("cache")).headers.get("X-Cache"), "MISS", "per target");
  const bad = await call(dev, "POST", "/v1/agent/connect/authorize", { Target: "zz" });
  assert.deepEqual([bad.status, bad.text], [400, "ClientCertURI not a valid Connect identifier"]);
  assert.equal(bad.headers.get("X-Cache"), null);
  assert.equal((await ask("zz")).headers.get("X-Cache"), "MISS", "an error does not fill it");
});

Deno.test("authorize route: Consul's 400s, POST only", async () => {
  await using dev = await double();
  const cases: [unknown, string][] = [
    ["", "Request decode failed: EOF"],
    ["[]", "Request decode failed: json: cannot unmarshal array into Go value"],
    [{ Target: "db", Extra: 1 }, 'Request decode failed: json: unknown field "Extra"'],
    [{ ClientCertURI: svcUri(dev, "web") }, "Target service must be specified"],
    [
      { Target: "db", ClientCertURI: svcUri(dev, "web"), Namespace: "default" },
      'Request decode failed: json: unknown field "Namespace"',
    ],
  ];
  for (const [body, message] of cases) {
    const r = await call(dev, "POST", "/v1/agent/connect/authorize", body);
    assert.deepEqual([r.status, r.text], [400, message], JSON.stringify(body));
  }
  const get = await call(dev, "GET", "/v1/agent/connect/authorize");
  assert.deepEqual([get.status, get.headers.get("Allow")], [405, "OPTIONS,POST"]);
});
