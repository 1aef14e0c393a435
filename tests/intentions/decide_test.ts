// decideByIntentions against Consul's documented semantics, not against our own code: the
// precedence of each intention comes from the table in Consul's docs (shared/spec §1.11: "count
// the exact parts of the destination … then of the source"), the list is sorted the way the
// docs say Consul sorts it (precedence, highest first; ties by source partition, namespace,
// name, then destination partition, namespace, name), and each expected verdict is written by
// hand from the rule "the first intention whose source matches decides" (spec §4 steps 5–7).
import assert from "node:assert/strict";
import type { Intention } from "../../src/agent/types.ts";
import { decideByIntentions } from "../../src/intentions/decide.ts";
import { type ServiceSpiffeId, serviceSpiffeId } from "../../src/trust/spiffe.ts";

const TD = "11111111-2222-3333-4444-555555555555.consul";

/** Consul's documented precedence: 9/6/3 by the destination's exact parts, less the source's. */
function documentedPrecedence(
  i: Pick<Intention, "SourceNS" | "SourceName" | "DestinationNS" | "DestinationName">,
): number {
  const exact = (ns: string, name: string) => (ns === "*" ? 0 : name === "*" ? 1 : 2);
  const max = [3, 6, 9][exact(i.DestinationNS, i.DestinationName)]!;
  return max - (2 - exact(i.SourceNS, i.SourceName));
}

/** The docs' table, source ns/name → destination ns/name = precedence (e = exact). */
Deno.test("the test's precedence follows the documented table", () => {
  const table: [string, string, string, string, number][] = [
    ["e", "e", "e", "e", 9],
    ["e", "*", "e", "e", 8],
    ["*", "*", "e", "e", 7],
    ["e", "e", "e", "*", 6],
    ["e", "*", "e", "*", 5],
    ["*", "*", "e", "*", 4],
    ["e", "e", "*", "*", 3],
    ["e", "*", "*", "*", 2],
    ["*", "*", "*", "*", 1],
  ];
  const v = (x: string) => (x === "e" ? "x" : "*");
  for (const [sns, sn, dns, dn, p] of table) {
    assert.equal(
      documentedPrecedence({
        SourceNS: v(sns),
        SourceName: v(sn),
        DestinationNS: v(dns),
        DestinationName: v(dn),
      }),
      p,
    );
  }
});

let index = 0;

/** An intention as Consul lists it, `source` and `destination` as `[ns/]name`. */
function ixn(
  source: string,
  destination: string,
  action: "allow" | "deny" | { permissions: number },
  extra: Partial<Intention> = {},
): Intention {
  const [sns, sn] = source.includes("/")
    ? source.split("/") as [string, string]
    : ["default", source];
  const [dns, dn] = destination.includes("/")
    ? destination.split("/") as [string, string]
    : ["default", destination];
  const base = {
    SourceNS: sns,
    SourceName: sn,
    DestinationNS: dns,
    DestinationName: dn,
  };
  return {
    ...base,
    SourceType: "consul",
    ...(typeof action === "string"
      ? { Action: action }
      : { Permissions: Array.from({ length: action.permissions }, () => ({ Action: "allow" })) }),
    Precedence: documentedPrecedence(base),
    CreateIndex: ++index,
    ModifyIndex: index,
    ...extra,
  };
}

/** Go's byte-wise string order. */
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Consul's documented order: precedence, highest first, then the deterministic tie-break. */
function sorted(list: Intention[]): Intention[] {
  return [...list].sort((a, b) =>
    b.Precedence - a.Precedence ||
    cmp(a.SourcePartition ?? "", b.SourcePartition ?? "") ||
    cmp(a.SourceNS, b.SourceNS) ||
    cmp(a.SourceName, b.SourceName) ||
    cmp(a.DestinationPartition ?? "", b.DestinationPartition ?? "") ||
    cmp(a.DestinationNS, b.DestinationNS) ||
    cmp(a.DestinationName, b.DestinationName)
  );
}

function client(service: string, namespace = "default", partition = "default"): ServiceSpiffeId {
  return serviceSpiffeId({ trustDomain: TD, datacenter: "dc1", service, namespace, partition });
}

/** The decision for `from` → `to`, as [authorized, the deciding intention] or "none". */
function decide(list: Intention[], to: string, from: ServiceSpiffeId) {
  const d = decideByIntentions(sorted(list), to, from);
  return d
    ? [
      d.authorized,
      `${d.intention.SourceNS}/${d.intention.SourceName} => ${d.intention.DestinationNS}/${d.intention.DestinationName}`,
    ] as const
    : "none";
}

Deno.test("CE precedences 9, 8, 6, 5: the most specific matching intention decides", () => {
  const list = [
    ixn("web", "db", "deny"), // 9
    ixn("*", "db", "allow"), // 8
    ixn("web", "*", "allow"), // 6
    ixn("*", "*", "deny"), // 5
  ];
  assert.deepEqual(list.map((i) => i.Precedence), [9, 8, 6, 5]);
  assert.deepEqual(decide(list, "db", client("web")), [false, "default/web => default/db"]);
  assert.deepEqual(decide(list, "db", client("api")), [true, "default/* => default/db"]);
  assert.deepEqual(decide(list, "cache", client("web")), [true, "default/web => default/*"]);
  assert.deepEqual(decide(list, "cache", client("api")), [false, "default/* => default/*"]);
});

Deno.test("an exact destination outranks an exact source (8 beats 6)", () => {
  // A rule that looks only at how exact the source is would pick web → * here.
  const list = [ixn("web", "*", "allow"), ixn("*", "db", "deny")];
  assert.deepEqual(decide(list, "db", client("web")), [false, "default/* => default/db"]);
  assert.deepEqual(decide(list, "cache", client("web")), [true, "default/web => default/*"]);
});

Deno.test("no matching intention is no decision (the default policy decides then)", () => {
  const list = [ixn("web", "db", "allow"), ixn("*", "cache", "deny")];
  assert.equal(decide(list, "db", client("api")), "none");
  assert.equal(decide(list, "payments", client("web")), "none");
  assert.equal(decide([], "db", client("web")), "none");
});

Deno.test("namespaces (Enterprise table): 9, 8, 7 for an exact destination", () => {
  const list = [
    ixn("ns1/web", "db", "allow"), // 9
    ixn("ns1/*", "db", "deny"), // 8
    ixn("*/*", "db", "allow"), // 7
  ];
  assert.deepEqual(list.map((i) => i.Precedence), [9, 8, 7]);
  assert.deepEqual(decide(list, "db", client("web", "ns1")), [true, "ns1/web => default/db"]);
  assert.deepEqual(decide(list, "db", client("api", "ns1")), [false, "ns1/* => default/db"]);
  assert.deepEqual(decide(list, "db", client("web", "ns2")), [true, "*/* => default/db"]);
  assert.deepEqual(decide(list, "db", client("web")), [true, "*/* => default/db"]);
});

Deno.test("an L7 intention that matches denies an L4 connection, whatever its permissions", () => {
  const list = [ixn("web", "api", { permissions: 2 }), ixn("*", "api", "allow")];
  const d = decideByIntentions(sorted(list), "api", client("web"));
  assert.equal(d?.authorized, false);
  assert.equal(
    d?.reason,
    "Matched L7 intention: default/web => default/api (Precedence: 9, Permissions: 2)",
  );
  // Another caller falls through to the L4 wildcard.
  assert.deepEqual(decide(list, "api", client("billing")), [true, "default/* => default/api"]);
});

Deno.test("Consul's reason text for an L4 match", () => {
  const allow = decideByIntentions(sorted([ixn("web", "*", "allow")]), "db", client("web"));
  assert.equal(
    allow?.reason,
    "Matched L4 intention: default/web => default/* (Precedence: 6, Action: ALLOW)",
  );
  const deny = decideByIntentions(sorted([ixn("*", "db", "deny")]), "db", client("web"));
  assert.equal(
    deny?.reason,
    "Matched L4 intention: default/* => default/db (Precedence: 8, Action: DENY)",
  );
});

Deno.test("peer intentions never match a local certificate; the next one decides", () => {
  const list = [ixn("web", "db", "allow", { SourcePeer: "cluster-02" }), ixn("*", "db", "deny")];
  assert.deepEqual(decide(list, "db", client("web")), [false, "default/* => default/db"]);
});

Deno.test("partitions: an empty source partition is default; another partition does not match", () => {
  const list = [
    ixn("web", "db", "allow", { SourcePartition: "finance" }),
    ixn("*", "db", "deny", { SourcePartition: "" }),
  ];
  assert.deepEqual(decide(list, "db", client("web")), [false, "default/* => default/db"]);
  assert.deepEqual(decide(list, "db", client("web", "default", "finance")), [
    true,
    "default/web => default/db",
  ]);
  assert.equal(decide([ixn("*", "db", "deny")], "db", client("web", "default", "finance")), "none");
});

Deno.test("names are compared exactly and case-sensitively; * is only a whole name", () => {
  const list = [ixn("Web", "db", "allow"), ixn("web-*", "db", "allow"), ixn("*", "db", "deny")];
  assert.deepEqual(decide(list, "db", client("web")), [false, "default/* => default/db"]);
  assert.deepEqual(decide(list, "db", client("web-1")), [false, "default/* => default/db"]);
  assert.deepEqual(decide(list, "db", client("Web")), [true, "default/Web => default/db"]);
  // The destination too: an intention for "DB" is not one for "db".
  assert.equal(decide([ixn("*", "DB", "allow")], "db", client("web")), "none");
});

Deno.test("equal precedence: the documented tie-break order, and only one can match a caller", () => {
  // Two exact pairs with the same precedence: each caller matches its own only.
  const list = [ixn("b-svc", "db", "deny"), ixn("a-svc", "db", "allow")];
  const order = sorted(list).map((i) => i.SourceName);
  assert.deepEqual(order, ["a-svc", "b-svc"]);
  assert.deepEqual(decide(list, "db", client("a-svc")), [true, "default/a-svc => default/db"]);
  assert.deepEqual(decide(list, "db", client("b-svc")), [false, "default/b-svc => default/db"]);
});
