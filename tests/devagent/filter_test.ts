// The double's `filter=` on health/connect (what subset filters need), and subsets kept in the
// targets of the chains it compiles.
import assert from "node:assert/strict";
import { compileFilter } from "../../src/devagent/filter.ts";
import { BadRequest } from "../../src/devagent/strict.ts";
import { clientFor, devAgent } from "../_helpers.ts";
import { OperatorClient } from "../../src/agent/operator.ts";

const entry = (meta: Record<string, string> | null, tags: string[] = []) => ({
  Node: { Node: "n1", Datacenter: "dc1" },
  Service: { Service: "db", Meta: meta, Tags: tags },
  Checks: [{ Status: "passing" }],
});

Deno.test("double filter: the forms subset filters use", () => {
  const v1 = entry({ version: "v1" }, ["canary", "eu"]);
  const v2 = entry({ version: "v2" });
  const bare = entry(null);
  const cases: [string, boolean, boolean, boolean][] = [
    ["Service.Meta.version == v1", true, false, false],
    ['Service.Meta.version == "v1"', true, false, false],
    ["Service.Meta.version == `v1`", true, false, false],
    ["Service.Meta.version != v1", false, true, true],
    ["Service.Tags contains canary", true, false, false],
    ["Service.Tags not contains canary", false, true, true],
    ["canary in Service.Tags", true, false, false],
    ["canary not in Service.Tags", false, true, true],
    ["Service.Meta.version == v1 and Service.Tags contains eu", true, false, false],
    ["Service.Meta.version == v2 or Service.Tags contains eu", true, true, false],
    ["not (Service.Meta.version == v1)", false, true, true],
    ["Service.Meta is empty", false, false, true],
    ["Service.Meta is not empty", true, true, false],
    ["Service.Meta contains version", true, true, false],
    ['Service.Meta.version matches "^v[12]$"', true, true, false],
    ["service.meta.version == v1", true, false, false],
  ];
  for (const [expr, a, b, c] of cases) {
    const f = compileFilter(expr);
    assert.deepEqual([f(v1), f(v2), f(bare)], [a, b, c], expr);
  }
});

Deno.test("double filter: an expression it cannot parse is a 400 naming it", () => {
  for (const bad of ["", "Service.Meta.version ==", "Service.Meta.version v1", "(a == b", '"x']) {
    assert.throws(
      () => compileFilter(bad),
      (err) => err instanceof BadRequest && err.status === 400 && err.message.includes(bad),
      bad,
    );
  }
});

Deno.test("double health/connect: filter= narrows the entries; the chain keeps the subset", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  for (const [id, version] of [["db-1", "v1"], ["db-2", "v2"]] as const) {
    await agent.register({
      ID: id,
      Name: "db",
      Port: 1,
      Meta: { version },
      Connect: { Native: true },
    });
  }
  const ids = async (filter?: string) =>
    (await agent.healthConnect("db", { filter })).value.map((e) => e.Service.ID);
  assert.deepEqual(await ids(), ["db-1", "db-2"]);
  assert.deepEqual(await ids("Service.Meta.version == v2"), ["db-2"]);
  const bad = await dev.app.request("/v1/health/connect/db?filter=Service.Meta.version%20%3D%3D");
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /Failed to create boolean expression evaluator/);

  await new OperatorClient(agent).putConfigEntry({
    Kind: "service-resolver",
    Name: "db",
    DefaultSubset: "v1",
    Subsets: {
      v1: { Filter: "Service.Meta.version == v1", OnlyPassing: true },
      v2: { Filter: "Service.Meta.version == v2" },
    },
    Failover: { "*": { ServiceSubset: "v2" } },
  });
  const chain = (await agent.discoveryChain("db")).value;
  assert.deepEqual(chain.Targets["v1.db.default.default.dc1"]?.Subset, {
    Filter: "Service.Meta.version == v1",
    OnlyPassing: true,
  });
  assert.deepEqual(chain.Targets["v2.db.default.default.dc1"]?.Subset, {
    Filter: "Service.Meta.version == v2",
  });
  await agent.close();
});
