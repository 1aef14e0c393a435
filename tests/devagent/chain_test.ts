// The double's config entries and chain compiler (src/devagent/chain.ts) without HTTP: what a
// write must pass (each check with an input that tries to get past it; a refused write stores
// nothing and wakes nobody), the L7-protocol guard putting an entry back, Hash and indexes, and
// chains that stay finite whatever the entries say. What real Consul compiles: the contract suite.
import assert from "node:assert/strict";
import { ConfigEntries, configTopic, type IntentionsStore } from "../../src/devagent/chain.ts";
import type { SourceInput } from "../../src/devagent/intentions.ts";
import { Store } from "../../src/devagent/store.ts";
import { BadRequest } from "../../src/devagent/strict.ts";

const TD = "11111111-2222-3333-4444-555555555555.consul";

/** Config entries on their own store; `l7` lists the destinations with L7 intentions. */
function entries(l7: string[] = [], vips: Record<string, string> = {}) {
  const store = new Store();
  const replaced: [string, SourceInput[]][] = [];
  const deleted: string[] = [];
  const intentions: IntentionsStore = {
    replaceDestination: (d, s) => void replaced.push([d, s]),
    deleteDestination: (d) => void deleted.push(d),
    l7Destinations: () => l7,
  };
  const c = new ConfigEntries(store, "dc1", () => TD, intentions, (s) => vips[s]);
  return Object.assign(c, { store, replaced, deleted });
}

const refused = (fn: () => unknown, message: string, status = 400) =>
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(e instanceof BadRequest, String(e));
      assert.deepEqual([e.status, e.message], [status, message]);
      return true;
    },
  );

Deno.test("config entries: a write Consul refuses names why, stores nothing and wakes nobody", () => {
  const cases: [string, unknown, string, number?][] = [
    ["no body", null, "Request decoding failed: EOF"],
    ["a string body", "service-defaults", "Request decoding failed: EOF"],
    [
      "an unknown kind",
      { Kind: "service-default", Name: "db" },
      "invalid config entry kind: service-default",
    ],
    [
      "a kind in another case",
      { Kind: "Service-Defaults", Name: "db" },
      "invalid config entry kind: Service-Defaults",
    ],
    ["no kind", { Name: "db" }, "invalid config entry kind: undefined"],
    ["no name", { Kind: "service-defaults" }, "Name is required"],
    ["an empty name", { Kind: "service-defaults", Name: "" }, "Name is required"],
    ["a name that is no string", { Kind: "service-defaults", Name: 7 }, "Name is required"],
    [
      "namespace and partition keys, in any case",
      { Kind: "service-defaults", Name: "db", namespace: "a", Partition: "b" },
      'Request decoding failed: 2 errors occurred:\n\t* invalid config key "namespace", namespaces are a consul enterprise feature\n\t* invalid config key "Partition"\n\n',
    ],
    [
      "a namespace on an intention source",
      { Kind: "service-intentions", Name: "db", Sources: [{ Name: "web", Namespace: "x" }] },
      'Request decoding failed: 1 error occurred:\n\t* invalid config key "Sources[0].Namespace", namespaces are a consul enterprise feature\n\n',
    ],
    [
      "a ConnectTimeout that is no duration",
      { Kind: "service-resolver", Name: "db", ConnectTimeout: "3 seconds" },
      'invalid ConnectTimeout "3 seconds"',
      500,
    ],
    [
      "splits that add up to 99",
      {
        Kind: "service-splitter",
        Name: "db",
        Splits: [{ Weight: 50 }, { Weight: 49, Service: "db2" }],
      },
      "Failed to apply config entry: the sum of all split weights must be 100, not 99",
      500,
    ],
    [
      "no splits",
      { Kind: "service-splitter", Name: "db" },
      "Failed to apply config entry: the sum of all split weights must be 100, not 0",
      500,
    ],
    [
      "a splitter on tcp",
      { Kind: "service-splitter", Name: "db", Splits: [{ Weight: 100 }] },
      'discovery chain "db" uses a protocol "tcp" that does not permit advanced routing or splitting behavior',
      500,
    ],
  ];
  for (const [what, body, message, status = 400] of cases) {
    const c = entries();
    const before = c.store.index;
    refused(() => c.put(body), message, status);
    assert.equal(c.store.index, before, `${what}: no write`);
    assert.equal(c.anyWritten, false, what);
    assert.deepEqual(c.replaced, [], `${what}: no intention written`);
  }
});

Deno.test("config entries: a splitter needs one L7 protocol across the services it names", () => {
  const c = entries();
  c.put({ Kind: "service-defaults", Name: "db", Protocol: "HTTP" }); // compared lower-cased
  c.put({ Kind: "service-defaults", Name: "db2", Protocol: "grpc" });
  refused(
    () =>
      c.put({
        Kind: "service-splitter",
        Name: "db",
        Splits: [{ Weight: 90 }, { Weight: 10, Service: "db2" }],
      }),
    'discovery chain "db" uses inconsistent protocols; service "db2" has "grpc" which is not "http"',
    500,
  );
  assert.equal(c.get("service-splitter", "db"), undefined);
  c.put({ Kind: "service-defaults", Name: "db2", Protocol: "http" });
  c.put({
    Kind: "service-splitter",
    Name: "db",
    Splits: [{ Weight: 90.005 }, { Weight: 9.995, Service: "db2" }],
  });
  const chain = c.compile("db");
  assert.equal(chain.StartNode, "splitter:db.default.default");
  assert.deepEqual(
    chain.Nodes[chain.StartNode]?.Splits?.map((s) => s.NextNode),
    ["resolver:db.default.default.dc1", "resolver:db2.default.default.dc1"],
  );
  assert.equal(chain.Protocol, "http");
});

Deno.test("config entries: a write that leaves an L7 intention's destination without HTTP is undone", () => {
  const c = entries(["api"]);
  c.put({ Kind: "proxy-defaults", Name: "global", Config: { protocol: "http" } });
  c.put({ Kind: "service-defaults", Name: "api", Protocol: "http" });
  const kept = c.get("service-defaults", "api")!;
  const index = c.store.index;
  refused(
    () => c.put({ Kind: "service-defaults", Name: "api", Protocol: "tcp" }),
    'service "api" has protocol "tcp", which is incompatible with L7 intentions permissions',
    500,
  );
  assert.deepEqual(c.get("service-defaults", "api"), kept, "the previous entry is back");
  assert.equal(c.store.index, index, "no write");
  // Removing the global default would leave api on http (its own entry): allowed.
  c.delete("proxy-defaults", "global");
  assert.equal(c.protocol("api"), "http");
  // Deleting api's own entry now leaves it on tcp: refused, the entry stays.
  refused(
    () => c.delete("service-defaults", "api"),
    'service "api" has protocol "tcp", which is incompatible with L7 intentions permissions',
    500,
  );
  assert.equal(c.protocol("api"), "http");
  // A new entry refused is removed again.
  const fresh = entries(["web"]);
  refused(
    () => fresh.put({ Kind: "service-defaults", Name: "web", Protocol: "tcp" }),
    'service "web" has protocol "tcp", which is incompatible with L7 intentions permissions',
    500,
  );
  assert.equal(fresh.get("service-defaults", "web"), undefined);
});

Deno.test("config entries: service-intentions entries go to the intentions store, not the table", () => {
  const c = entries();
  const sources = [{ Name: "web", Action: "allow" }];
  c.put({ Kind: "service-intentions", Name: "db", Sources: sources });
  c.put({ Kind: "service-intentions", Name: "api" }); // no sources: every intention removed
  assert.deepEqual(c.replaced, [["db", sources], ["api", []]]);
  assert.equal(c.get("service-intentions", "db"), undefined);
  assert.equal(c.anyWritten, false);
  c.delete("service-intentions", "db");
  assert.deepEqual(c.deleted, ["db"]);
});

Deno.test("config entries: Hash follows the content; CreateIndex stays; delete is idempotent", () => {
  const c = entries();
  assert.equal(c.tableIndex, c.store.index, "nothing written: the raft index");
  c.put({ Kind: "service-resolver", Name: "db", ConnectTimeout: "3s" });
  const first = c.get("service-resolver", "db")!;
  assert.equal(first.CreateIndex, first.ModifyIndex);
  assert.ok(Number.isSafeInteger(first.Hash) && first.Hash > 0, "exact in JSON");
  c.put({ Kind: "service-resolver", Name: "db", ConnectTimeout: "3s" });
  const same = c.get("service-resolver", "db")!;
  assert.equal(same.Hash, first.Hash, "same content, same hash");
  assert.equal(same.CreateIndex, first.CreateIndex);
  assert.ok(same.ModifyIndex > first.ModifyIndex);
  c.put({ Kind: "service-resolver", Name: "db", ConnectTimeout: "4s" });
  assert.notEqual(c.get("service-resolver", "db")!.Hash, first.Hash);
  assert.equal(c.tableIndex, c.store.index);
  c.delete("service-resolver", "db");
  const afterDelete = c.store.index;
  c.delete("service-resolver", "db"); // gone already: no write
  c.delete("service-resolver", "never");
  assert.equal(c.store.index, afterDelete);
  refused(
    () => c.delete("service-resolvers", "db"),
    "invalid config entry kind: service-resolvers",
  );
});

Deno.test("chain index: moves with the entries a chain used, not with other services'", () => {
  const c = entries();
  c.put({ Kind: "service-resolver", Name: "db", Redirect: { Service: "db2" } });
  c.compile("db");
  const compiled = c.chainIndex("db");
  c.store.bump(configTopic("cache")); // another service's entry
  assert.equal(c.chainIndex("db"), compiled);
  c.put({ Kind: "service-defaults", Name: "db2", Protocol: "tcp" }); // the redirect's target
  assert.ok(c.chainIndex("db") > compiled, "an entry of a service it visited");
  // Any write to the table moves every chain (the `*` topic), as Consul's table index does.
  const now = c.chainIndex("db");
  c.put({ Kind: "service-defaults", Name: "cache", Protocol: "tcp" });
  assert.ok(c.chainIndex("db") > now);
});

Deno.test("compile: redirect and failover loops end; failing over to itself is dropped", () => {
  const c = entries();
  c.put({ Kind: "service-resolver", Name: "a", Redirect: { Service: "b" } });
  c.put({ Kind: "service-resolver", Name: "b", Redirect: { Service: "a" } });
  const loop = c.compile("a");
  assert.equal(Object.keys(loop.Nodes).length, 1, "one resolver node, however deep the loop");
  assert.match(loop.StartNode, /^resolver:[ab]\.default\.default\.dc1$/);

  c.put({ Kind: "service-resolver", Name: "x", Failover: { "*": { Service: "y" } } });
  c.put({ Kind: "service-resolver", Name: "y", Failover: { "*": { Service: "x" } } });
  const failover = c.compile("x");
  const node = failover.Nodes["resolver:x.default.default.dc1"];
  assert.deepEqual(node?.Resolver?.Failover, { Targets: ["y.default.default.dc1"] });
  assert.deepEqual(Object.keys(failover.Targets).sort(), [
    "x.default.default.dc1",
    "y.default.default.dc1",
  ]);

  c.put({ Kind: "service-resolver", Name: "self", Failover: { "*": { Datacenters: ["dc1"] } } });
  const self = c.compile("self");
  assert.equal(self.Nodes["resolver:self.default.default.dc1"]?.Resolver?.Failover, undefined);
});

Deno.test("compile: default subset, subset definitions, timeouts per target, the virtual IP", () => {
  const c = entries([], { db: "240.0.0.9" });
  c.put({
    Kind: "service-resolver",
    Name: "db",
    ConnectTimeout: "2s",
    RequestTimeout: "1.5s",
    DefaultSubset: "v2",
    Subsets: { v2: { Filter: "Service.Meta.version == 2", OnlyPassing: true }, v1: { filter: "" } },
    Failover: { v2: { Service: "backup" } },
  });
  const chain = c.compile("db");
  assert.equal(chain.StartNode, "resolver:v2.db.default.default.dc1");
  assert.equal(chain.Default, undefined, "a resolver makes it non-default");
  const target = chain.Targets["v2.db.default.default.dc1"];
  assert.deepEqual(target?.Subset, { Filter: "Service.Meta.version == 2", OnlyPassing: true });
  assert.equal(target?.ConnectTimeout, "2s");
  assert.equal(target?.SNI, `v2.db.default.dc1.internal.${TD}`);
  const resolver = chain.Nodes["resolver:v2.db.default.default.dc1"]?.Resolver;
  assert.equal(resolver?.RequestTimeout, 1_500_000_000, "nanoseconds");
  assert.deepEqual(resolver?.Failover, { Targets: ["backup.default.default.dc1"] });
  assert.equal(
    chain.Targets["backup.default.default.dc1"]?.ConnectTimeout,
    "5s",
    "its own default",
  );
  assert.deepEqual([chain.AutoVirtualIPs, chain.ManualVirtualIPs], [["240.0.0.9"], []]);
  // Another datacenter, and a service with nothing configured.
  assert.equal(c.compile("db", "dc2").StartNode, "resolver:v2.db.default.default.dc2");
  const plain = c.compile("web");
  assert.equal(plain.Default, true);
  assert.deepEqual([plain.AutoVirtualIPs, plain.ManualVirtualIPs], [null, null]);
  assert.deepEqual(plain.Nodes["resolver:web.default.default.dc1"]?.Resolver, {
    Default: true,
    ConnectTimeout: "5s",
    Target: "web.default.default.dc1",
  });
});
