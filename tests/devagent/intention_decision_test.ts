// The double's own copy of Consul's authorize decision (src/devagent/intention_decision.ts).
import assert from "node:assert/strict";
import type { Intention } from "../../src/agent/types.ts";
import {
  authorizeByIntentions,
  compareByPrecedence,
  intentionPrecedence,
  intentionText,
} from "../../src/devagent/intention_decision.ts";

function ixn(
  source: string,
  destination: string,
  extra: Partial<Intention> = {},
): Intention {
  const [sourceNS, sourceName] = source.includes("/") ? source.split("/") : ["default", source];
  const [destNS, destName] = destination.includes("/")
    ? destination.split("/")
    : ["default", destination];
  const names = {
    SourceNS: sourceNS!,
    SourceName: sourceName!,
    DestinationNS: destNS!,
    DestinationName: destName!,
  };
  return {
    ...names,
    SourceType: "consul",
    Action: "allow",
    Precedence: intentionPrecedence(names),
    CreateIndex: 1,
    ModifyIndex: 1,
    ...extra,
  };
}

const party = (name: string, namespace = "default", partition = "default") => ({
  name,
  namespace,
  partition,
});

Deno.test("intention precedence: Consul's UpdatePrecedence table, 9 down to 1", () => {
  // Rows: destination exact ns+name, exact ns + wildcard name, wildcard ns; columns: the same
  // for the source (structs/intention.go: max 9/6/3 minus what the source lacks).
  const table: [string, string, number][] = [
    ["default/web", "default/db", 9],
    ["default/*", "default/db", 8],
    ["*/*", "default/db", 7],
    ["default/web", "default/*", 6],
    ["default/*", "default/*", 5],
    ["*/*", "default/*", 4],
    ["default/web", "*/*", 3],
    ["default/*", "*/*", 2],
    ["*/*", "*/*", 1],
  ];
  for (const [source, destination, expected] of table) {
    assert.equal(ixn(source, destination).Precedence, expected, `${source} => ${destination}`);
  }
});

Deno.test("intention order: precedence first, then Go's byte order of the four names", () => {
  const list = [
    ixn("*", "db"),
    ixn("b", "db"),
    ixn("Ä", "db"),
    ixn("a", "db"),
    ixn("_x", "db"),
    ixn("B", "db"),
    ixn("web", "*"),
    ixn("a", "cache"),
  ];
  const sorted = [...list].sort(compareByPrecedence).map((i) =>
    `${i.SourceName}>${i.DestinationName}`
  );
  // Consul 1.22.7 lists B, Zed, _x, a, b, web, Ä at precedence 9 (uppercase before underscore
  // before lowercase before non-ASCII), then *>db (8), then web>* (6).
  assert.deepEqual(sorted, [
    "B>db",
    "_x>db",
    "a>cache",
    "a>db",
    "b>db",
    "Ä>db",
    "*>db",
    "web>*",
  ]);
  // Code points beyond the BMP sort after U+FFFD as in UTF-8, not before it as UTF-16 would.
  const astral = [ixn("😀", "db"), ixn("\ufffd", "db")].sort(compareByPrecedence);
  assert.deepEqual(astral.map((i) => i.SourceName), ["\ufffd", "😀"]);
  // Namespaces break ties before names.
  const ns = [ixn("zz/a", "db"), ixn("aa/z", "db")].sort(compareByPrecedence);
  assert.deepEqual(ns.map((i) => i.SourceNS), ["aa", "zz"]);
});

Deno.test("authorize decision: the first match by precedence decides, wildcards included", () => {
  const list = [
    ixn("*", "*", { Action: "deny" }),
    ixn("web", "*", { Action: "allow" }),
    ixn("*", "db", { Action: "deny" }),
    ixn("web", "db", { Action: "allow" }),
  ];
  const decide = (src: string, dst: string) =>
    authorizeByIntentions(list, party(dst), party(src), true);
  assert.deepEqual(decide("web", "db"), {
    Authorized: true,
    Reason: "Matched L4 intention: default/web => default/db (Precedence: 9, Action: ALLOW)",
  });
  assert.deepEqual(decide("api", "db"), {
    Authorized: false,
    Reason: "Matched L4 intention: default/* => default/db (Precedence: 8, Action: DENY)",
  });
  assert.equal(decide("web", "cache").Authorized, true);
  assert.deepEqual(decide("api", "cache"), {
    Authorized: false,
    Reason: "Matched L4 intention: default/* => default/* (Precedence: 5, Action: DENY)",
  });
  // The input order does not matter: the decision sorts by precedence itself.
  assert.deepEqual(
    authorizeByIntentions([...list].reverse(), party("db"), party("api"), true),
    decide("api", "db"),
  );
});

Deno.test("authorize decision: nothing matching answers the ACL default", () => {
  const list = [ixn("web", "db")];
  for (const defaultAllow of [true, false]) {
    assert.deepEqual(authorizeByIntentions(list, party("cache"), party("web"), defaultAllow), {
      Authorized: defaultAllow,
      Reason: "Default behavior configured by ACLs",
    });
  }
  assert.equal(authorizeByIntentions([], party("db"), party("web"), false).Authorized, false);
});

Deno.test("authorize decision: an L7 intention denies, naming its permissions", () => {
  const list = [
    ixn("web", "db", { Action: undefined, Permissions: [{ Action: "allow" }, {}] }),
    ixn("*", "db", { Action: "allow" }),
  ];
  assert.deepEqual(authorizeByIntentions(list, party("db"), party("web"), true), {
    Authorized: false,
    Reason: "Matched L7 intention: default/web => default/db (Precedence: 9, Permissions: 2)",
  });
  // Another source falls through to the L4 wildcard.
  assert.equal(authorizeByIntentions(list, party("db"), party("api"), false).Authorized, true);
});

Deno.test("authorize decision: peers, partitions and namespaces match as Consul's IntentionMatch", () => {
  // A peer's intention never matches a local certificate, however exact it is.
  const peer = [ixn("web", "db", { SourcePeer: "other", Action: "deny" })];
  assert.equal(
    authorizeByIntentions(peer, party("db"), party("web"), true).Reason,
    "Default behavior configured by ACLs",
  );
  // Empty partitions count as default on both sides; another partition does not match.
  const parts = [ixn("web", "db", { SourcePartition: "team", Action: "deny" })];
  assert.equal(authorizeByIntentions(parts, party("db"), party("web"), true).Authorized, true);
  assert.deepEqual(
    authorizeByIntentions(parts, party("db"), party("web", "default", "team"), true),
    {
      Authorized: false,
      Reason: "Matched L4 intention: team/default/web => default/db (Precedence: 9, Action: DENY)",
    },
  );
  const dstPart = [ixn("web", "db", { DestinationPartition: "team", Action: "deny" })];
  assert.equal(authorizeByIntentions(dstPart, party("db"), party("web"), true).Authorized, true);
  // Namespaces: exact or wildcard, on both sides; comparisons are case-sensitive.
  const ns = [ixn("ops/web", "default/db", { Action: "deny" }), ixn("*/*", "*/*")];
  assert.equal(authorizeByIntentions(ns, party("db"), party("web", "ops"), true).Authorized, false);
  assert.equal(authorizeByIntentions(ns, party("db"), party("web"), false).Authorized, true);
  assert.equal(
    authorizeByIntentions([ixn("Web", "db", { Action: "deny" })], party("db"), party("web"), true)
      .Authorized,
    true,
  );
  assert.equal(
    authorizeByIntentions([ixn("web", "db", { Action: "deny" })], party("DB"), party("web"), true)
      .Authorized,
    true,
  );
});

Deno.test("intention text: Consul's String() with ID, partitions and peer when set", () => {
  assert.equal(
    intentionText(ixn("web", "*", { Action: "deny" })),
    "default/web => default/* (Precedence: 6, Action: DENY)",
  );
  assert.equal(
    intentionText(ixn("web", "db", { ID: "abc", SourcePartition: "p", DestinationPartition: "q" })),
    "p/default/web => q/default/db (ID: abc, Precedence: 9, Action: ALLOW)",
  );
  assert.equal(
    intentionText(ixn("web", "db", { SourcePeer: "dc9", SourcePartition: "p" })),
    "peer(dc9)/default/web => default/db (Precedence: 9, Action: ALLOW)",
  );
});
