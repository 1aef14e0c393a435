// Route-level tests of src/devagent/routes/config_entries.ts through app.request().
import assert from "node:assert/strict";
import { call, double, svcUri } from "./_double.ts";

const exact = (src: string, dst: string) =>
  `/v1/connect/intentions/exact?source=${encodeURIComponent(src)}&destination=${dst}`;

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

Deno.test("config entry routes: Namespace and Partition keys are refused as CE decodes them", async () => {
  await using dev = await double();
  const put = (entry: unknown) => call(dev, "PUT", "/v1/config", entry);
  const one = await put({
    Kind: "service-intentions",
    Name: "db",
    Sources: [{ Name: "web", Namespace: "default", Action: "allow" }],
  });
  assert.deepEqual([one.status, one.text], [
    400,
    "Request decoding failed: 1 error occurred:\n" +
    '\t* invalid config key "Sources[0].Namespace", namespaces are a consul enterprise feature\n\n',
  ]);
  const many = await put({
    Kind: "service-intentions",
    Name: "db",
    partition: "default",
    Sources: [{ Name: "api", Action: "allow" }, { Name: "web", Partition: "x", Action: "allow" }],
  });
  assert.deepEqual([many.status, many.text], [
    400,
    "Request decoding failed: 2 errors occurred:\n" +
    '\t* invalid config key "Sources[1].Partition"\n' +
    '\t* invalid config key "partition"\n\n',
  ]);
  const defaults = await put({ Kind: "service-defaults", Name: "db", Namespace: "default" });
  assert.equal(defaults.status, 400);
  assert.match(defaults.text, /invalid config key "Namespace", namespaces are a consul enterprise/);
  const list = await call(dev, "GET", "/v1/connect/intentions");
  assert.equal(list.text, "[]", "nothing was written");
});

Deno.test("config entry routes: L7 intentions need an HTTP-like protocol on their destination", async () => {
  await using dev = await double({ defaultAllow: false });
  const put = (entry: unknown) => call(dev, "PUT", "/v1/config", entry);
  const l7 = { Action: "allow", HTTP: { PathPrefix: "/", Methods: ["get"] } };
  const entry = {
    Kind: "service-intentions",
    Name: "shop",
    Sources: [{ Name: "web", Permissions: [l7] }, { Name: "api", Action: "allow" }],
  };
  const tcp = await put(entry);
  assert.deepEqual([tcp.status, tcp.text], [
    500,
    'service "shop" has protocol "tcp", which is incompatible with L7 intentions permissions',
  ]);
  assert.equal(
    (await put({ Kind: "service-defaults", Name: "shop", Protocol: "http" })).status,
    200,
  );
  assert.deepEqual((await put(entry)).json, true);
  const web = (await call(dev, "GET", exact("web", "shop"))).json;
  assert.equal(web.Action, undefined);
  assert.deepEqual(web.Permissions, [
    { Action: "allow", HTTP: { PathPrefix: "/", Methods: ["GET"] } },
  ]);
  const authorize = async (caller: string) =>
    (await call(dev, "POST", "/v1/agent/connect/authorize", {
      Target: "shop",
      ClientCertURI: svcUri(dev, caller),
    })).json;
  assert.deepEqual(await authorize("web"), {
    Authorized: false,
    Reason: "Matched L7 intention: default/web => default/shop (Precedence: 9, Permissions: 1)",
  });
  assert.equal((await authorize("api")).Authorized, true);
  // A write or delete that would leave shop on tcp is refused, and changes nothing.
  const refused =
    'service "shop" has protocol "tcp", which is incompatible with L7 intentions permissions';
  const toTcp = await put({ Kind: "service-defaults", Name: "shop", Protocol: "tcp" });
  assert.deepEqual([toTcp.status, toTcp.text], [500, refused]);
  const del = await call(dev, "DELETE", "/v1/config/service-defaults/shop");
  assert.deepEqual([del.status, del.text], [500, refused]);
  assert.equal((await call(dev, "GET", "/v1/config/service-defaults/shop")).json.Protocol, "http");
  assert.equal((await call(dev, "GET", "/v1/discovery-chain/shop")).json.Chain.Protocol, "http");
  // With grpc as the global default, shop keeps an HTTP-like protocol without its own entry.
  assert.equal(
    (await put({ Kind: "proxy-defaults", Name: "global", Config: { protocol: "grpc" } })).status,
    200,
  );
  assert.equal((await call(dev, "DELETE", "/v1/config/service-defaults/shop")).status, 200);
  const global = await call(dev, "DELETE", "/v1/config/proxy-defaults/global");
  assert.deepEqual([global.status, global.text], [500, refused]);
  // Through the exact API too, once the destination speaks HTTP.
  const exactL7 = await call(dev, "PUT", exact("cron", "shop"), { Permissions: [l7] });
  assert.deepEqual([exactL7.status, exactL7.json], [200, true]);
  assert.equal((await call(dev, "DELETE", "/v1/config/service-intentions/shop")).status, 200);
  assert.equal((await call(dev, "DELETE", "/v1/config/proxy-defaults/global")).status, 200);
});

Deno.test("config entry routes: service-intentions sources are validated with Consul's texts", async () => {
  await using dev = await double();
  await call(dev, "PUT", "/v1/config", {
    Kind: "service-defaults",
    Name: "shop",
    Protocol: "http",
  });
  const perm = (p: unknown) => ({ Name: "web", Permissions: [p] });
  const cases: [string, unknown[], string][] = [
    ["shop", [], "At least one source is required"],
    ["shop", [{ Action: "allow" }], "Sources[0].Name is required"],
    // Sources are sorted by precedence first: the wildcard goes last.
    [
      "shop",
      [{ Name: "*", Action: "maybe" }, { Name: "web", Action: "allow" }],
      "Sources[1].Action must be set to 'allow' or 'deny'",
    ],
    [
      "shop",
      [{ Name: "web", Action: "allow" }, { Name: "web", Action: "deny" }],
      'Sources[1] defines "web" more than once',
    ],
    [
      "shop",
      [{ Name: "we*", Action: "allow" }],
      "Sources[0].Name: wildcard character '*' cannot be used with partial values",
    ],
    [
      "shop",
      [{ Name: "web", Action: "allow", Permissions: [{ Action: "allow" }] }],
      "Sources[0].Action must be omitted if Permissions are specified",
    ],
    [
      "*",
      [perm({ Action: "allow", HTTP: { PathPrefix: "/" } })],
      "Sources[0].Permissions cannot be specified on intentions with wildcarded destinations",
    ],
    [
      "shop",
      [{ Name: "web", Action: "allow", Type: "other" }],
      "Sources[0].Type must be set to 'consul'",
    ],
    [
      "shop",
      [perm({ Action: "maybe", HTTP: { PathPrefix: "/" } })],
      "Sources[0].Permissions[0].Action must be set to 'allow' or 'deny'",
    ],
    ["shop", [perm({ Action: "deny" })], "Sources[0].Permissions[0].HTTP is required"],
    [
      "shop",
      [perm({ Action: "deny", HTTP: {} })],
      "Sources[0].Permissions[0].HTTP should not be empty",
    ],
    [
      "shop",
      [perm({ Action: "deny", HTTP: { PathPrefix: "admin" } })],
      `Sources[0].Permissions[0].HTTP.PathPrefix doesn't start with '/': "admin"`,
    ],
    [
      "shop",
      [perm({ Action: "deny", HTTP: { PathPrefix: "/a", PathExact: "/b" } })],
      "Sources[0].Permissions[0].HTTP should only contain at most one of PathExact, PathPrefix, or PathRegex",
    ],
  ];
  for (const [Name, Sources, message] of cases) {
    const r = await call(dev, "PUT", "/v1/config", { Kind: "service-intentions", Name, Sources });
    assert.deepEqual([r.status, r.text], [500, message], message);
  }
  // The exact API counts a pair's place in its destination's entry.
  await call(dev, "PUT", "/v1/config", {
    Kind: "service-intentions",
    Name: "shop",
    Sources: [{ Name: "*", Action: "deny" }, { Name: "a", Action: "allow" }],
  });
  const r = await call(dev, "PUT", exact("b", "shop"), {
    Action: "allow",
    Permissions: [{ Action: "deny", HTTP: { PathExact: "/x" } }],
  });
  assert.deepEqual([r.status, r.text], [
    500,
    "Sources[1].Action must be omitted if Permissions are specified",
  ]);
  assert.equal((await call(dev, "GET", "/v1/connect/intentions")).json.length, 2);
});

Deno.test("config entry routes: a source in a peer never matches a local caller", async () => {
  await using dev = await double({ defaultAllow: false });
  await call(dev, "PUT", "/v1/config", {
    Kind: "service-intentions",
    Name: "db",
    Sources: [{ Name: "web", Peer: "p", Action: "allow" }],
  });
  const authz = await call(dev, "POST", "/v1/agent/connect/authorize", {
    Target: "db",
    ClientCertURI: svcUri(dev, "web"),
  });
  assert.deepEqual(authz.json, {
    Authorized: false,
    Reason: "Default behavior configured by ACLs",
  });
  assert.equal((await call(dev, "GET", exact("peer:p/web", "db"))).json.SourcePeer, "p");
  assert.equal((await call(dev, "GET", exact("web", "db"))).status, 404);
});
