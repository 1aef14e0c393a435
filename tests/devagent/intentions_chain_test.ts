import assert from "node:assert/strict";
import { clientFor, devAgent } from "../_helpers.ts";
import { OperatorClient } from "../../mod.ts";

Deno.test("double authorize: the first intention by precedence decides; wildcards; default", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const operator = new OperatorClient(agent);
  const uri = (svc: string) => `spiffe://${dev.ca.trustDomain}/ns/default/dc/dc1/svc/${svc}`;
  const authz = (src: string, dst: string) =>
    agent.authorize({ Target: dst, ClientCertURI: uri(src) });
  assert.deepEqual(await authz("web", "db"), {
    Authorized: true,
    Reason: "Default behavior configured by ACLs",
  });
  await operator.upsertIntention("*", "*", { Action: "deny" });
  await operator.upsertIntention("web", "*", { Action: "allow" });
  await operator.upsertIntention("*", "db", { Action: "deny" });
  await operator.upsertIntention("web", "db", { Action: "allow" });
  const list = (await agent.intentions()).value;
  assert.deepEqual(list.map((i) => i.Precedence), [9, 8, 6, 5]);
  assert.deepEqual(await authz("web", "db"), {
    Authorized: true,
    Reason: "Matched L4 intention: default/web => default/db (Precedence: 9, Action: ALLOW)",
  });
  assert.equal(
    (await authz("api", "db")).Reason,
    "Matched L4 intention: default/* => default/db (Precedence: 8, Action: DENY)",
  );
  assert.equal((await authz("web", "cache")).Authorized, true);
  assert.equal((await authz("api", "cache")).Authorized, false);
  await operator.deleteIntention("*", "*");
  dev.intentions.defaultAllow = false;
  assert.deepEqual(await authz("api", "cache"), {
    Authorized: false,
    Reason: "Default behavior configured by ACLs",
  });
  const exact = await operator.intention("web", "db");
  assert.equal(exact?.CreatedAt, undefined);
  assert.equal(exact?.SourceNS, "default");
});

Deno.test("double authorize: identifiers that are not services are 400s with Consul's text", async () => {
  await using dev = await devAgent();
  const td = dev.ca.trustDomain;
  const cases: [string, string][] = [
    ["https://nope", "ClientCertURI not a valid Connect identifier"],
    [`spiffe://${td}/agent/client/dc/dc1/id/n1`, "ClientCertURI not a valid Service identifier"],
    [
      `spiffe://${td}/ap/team/ns/default/dc/dc1/svc/web`,
      'Mismatched partitions: "team" != "default"',
    ],
  ];
  for (const [uri, message] of cases) {
    const r = await fetch(`${dev.url}/v1/agent/connect/authorize`, {
      method: "POST",
      body: JSON.stringify({ Target: "db", ClientCertURI: uri }),
    });
    assert.deepEqual([r.status, await r.text()], [400, message]);
  }
});

Deno.test("double intentions: exact API errors as Consul answers them", async () => {
  await using dev = await devAgent();
  const r = await fetch(`${dev.url}/v1/connect/intentions/exact?source=web&destination=db`);
  assert.deepEqual([r.status, await r.text()], [404, "Intention not found"]);
  assert.equal(r.headers.get("X-Consul-Index"), null);
  const missing = await fetch(`${dev.url}/v1/connect/intentions/exact?destination=db`, {
    method: "PUT",
    body: '{"Action":"allow"}',
  });
  assert.deepEqual([missing.status, await missing.text()], [
    500,
    "required query parameter 'source' not set",
  ]);
});

Deno.test("double discovery chain: default resolver with Consul's names", async () => {
  await using dev = await devAgent();
  const chain = (await clientFor(dev).discoveryChain("db")).value;
  const td = dev.ca.trustDomain;
  assert.equal(chain.StartNode, "resolver:db.default.default.dc1");
  assert.equal(chain.Default, true);
  assert.equal(chain.Protocol, "tcp");
  const t = chain.Targets["db.default.default.dc1"];
  assert.equal(t.SNI, `db.default.dc1.internal.${td}`);
  assert.equal(t.Name, t.SNI);
  assert.equal(t.ConnectTimeout, "5s");
  assert.equal(chain.Nodes[chain.StartNode].Resolver!.Default, true);
  // Consul sends `null` for a service without a virtual IP; the client's decoder makes it [].
  assert.deepEqual(chain.AutoVirtualIPs, []);
});

Deno.test("double discovery chain: resolver timeout, failover and redirect; blocking on change", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const operator = new OperatorClient(agent);
  const before = await agent.discoveryChain("db");
  const blocked = agent.discoveryChain("db", { index: before.index, waitMs: 10_000 });
  await operator.putConfigEntry({
    Kind: "service-resolver",
    Name: "db",
    ConnectTimeout: "2s",
    Failover: { "*": { Service: "db-backup" } },
  });
  const after = await blocked;
  assert.ok(after.index! > before.index!);
  const node = after.value.Nodes["resolver:db.default.default.dc1"];
  assert.equal(node.Resolver!.ConnectTimeout, "2s");
  assert.equal(node.Resolver!.Default, undefined);
  assert.deepEqual(node.Resolver!.Failover, { Targets: ["db-backup.default.default.dc1"] });
  assert.equal(after.value.Targets["db-backup.default.default.dc1"].Service, "db-backup");
  assert.equal(after.value.Default, undefined);

  await operator.putConfigEntry({
    Kind: "service-resolver",
    Name: "legacy",
    Redirect: { Service: "db" },
  });
  const redirected = (await agent.discoveryChain("legacy")).value;
  assert.equal(redirected.StartNode, "resolver:db.default.default.dc1");
  assert.deepEqual(Object.keys(redirected.Targets).sort(), [
    "db-backup.default.default.dc1",
    "db.default.default.dc1",
  ]);
});

Deno.test("double discovery chain: splitters compile only for L7 protocols", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const operator = new OperatorClient(agent);
  const tcp = await operator.putConfigEntry({
    Kind: "service-splitter",
    Name: "api",
    Splits: [{ Weight: 90 }, { Weight: 10, Service: "api-canary" }],
  }).catch((e) => e);
  assert.match(String(tcp), /does not permit advanced routing or splitting/);
  await operator.putConfigEntry({
    Kind: "service-defaults",
    Name: "api",
    Protocol: "http",
  });
  await operator.putConfigEntry({
    Kind: "service-defaults",
    Name: "api-canary",
    Protocol: "http",
  });
  await operator.putConfigEntry({
    Kind: "service-splitter",
    Name: "api",
    Splits: [{ Weight: 90 }, { Weight: 10, Service: "api-canary" }],
  });
  const chain = (await agent.discoveryChain("api")).value;
  assert.equal(chain.Protocol, "http");
  assert.equal(chain.StartNode, "splitter:api.default.default");
  const splits = chain.Nodes[chain.StartNode].Splits!;
  assert.deepEqual(splits.map((s) => [s.Weight, s.NextNode]), [
    [90, "resolver:api.default.default.dc1"],
    [10, "resolver:api-canary.default.default.dc1"],
  ]);
});

Deno.test("double leaf: blocking returns a renewed certificate; non-blocking revalidates after rotation", async () => {
  await using dev = await devAgent({ rotationJitterMs: 60_000 });
  const agent = clientFor(dev);
  const first = await agent.leaf("web");
  assert.equal(first.headers.get("X-Cache"), "MISS");
  // Consul 1.22.7 revalidates on every read without an index: a MISS, the same certificate.
  const again = await agent.leaf("web");
  assert.equal(again.headers.get("X-Cache"), "MISS");
  assert.equal(again.headers.get("Age"), null);
  assert.equal(again.value.SerialNumber, first.value.SerialNumber);
  // A blocking read with an index already behind is served from the cache: a HIT with an Age.
  const stale = await agent.leaf("web", { index: first.index! - 1n, waitMs: 10_000 });
  assert.equal(stale.headers.get("X-Cache"), "HIT");
  assert.equal(stale.headers.get("Age"), "0");
  assert.equal(stale.value.SerialNumber, first.value.SerialNumber);
  const blocked = agent.leaf("web", { index: first.index, waitMs: 10_000 });
  await dev.leaves.renew("web");
  const renewed = await blocked;
  assert.notEqual(renewed.value.SerialNumber, first.value.SerialNumber);
  assert.ok(renewed.index! > first.index!);
  // After a rotation, a non-blocking read re-issues at once (signed by the new root).
  await dev.rotateCA();
  const fresh = await agent.leaf("web");
  assert.notEqual(fresh.value.SerialNumber, renewed.value.SerialNumber);
  assert.equal(fresh.value.CertPEM.match(/BEGIN CERTIFICATE/g)!.length, 2);
});
