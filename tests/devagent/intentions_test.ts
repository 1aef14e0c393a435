// The double's intentions (src/devagent/intentions.ts) without HTTP: a refused write (exact pair
// or whole service-intentions entry) changes nothing and wakes nobody; names are read as CE reads
// them; permissions are stored normalized and as copies; authorize's checks, each with an input
// that tries to get past it. The texts over HTTP: routes/intentions_test.ts and
// routes/config_entries_test.ts; the decision itself: intention_decision_test.ts.
import assert from "node:assert/strict";
import { Intentions } from "../../src/devagent/intentions.ts";
import { Store } from "../../src/devagent/store.ts";
import { BadRequest } from "../../src/devagent/strict.ts";

const TD = "11111111-2222-3333-4444-555555555555.consul";
const uri = (service: string, extra = "") =>
  `spiffe://${TD}${extra}/ns/default/dc/dc1/svc/${service}`;

/** Intentions on their own store; `http` names the services whose protocol is http. */
function intentions(defaultAllow = false, http: string[] = []) {
  const store = new Store();
  const i = new Intentions(store, defaultAllow, (s) => http.includes(s) ? "http" : "tcp");
  return Object.assign(i, { store });
}

const refused = (fn: () => unknown, message: string, status: number) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof BadRequest, String(e));
    assert.deepEqual([e.status, e.message], [status, message]);
    return true;
  });

const l7 = (HTTP: unknown, Action = "allow") => ({ Permissions: [{ Action, HTTP }] });

Deno.test("intentions: a refused exact write changes nothing and wakes nobody", () => {
  const ixns = intentions(false, ["shop"]);
  ixns.upsert("web", "shop", { Action: "allow", Description: "kept" });
  const before = { list: ixns.list(), index: ixns.store.index };
  const cases: [string | null, string | null, unknown, string, number][] = [
    ["web", "shop", { Action: "maybe" }, "Sources[0].Action must be set to 'allow' or 'deny'", 500],
    ["web", "shop", {}, "Sources[0].Action must be set to 'allow' or 'deny'", 500],
    [
      "web",
      "shop",
      { Action: "allow", Actoin: "deny" },
      'Request decode failed: json: unknown field "Actoin"',
      400,
    ],
    [
      "we*",
      "shop",
      { Action: "allow" },
      "Sources[1].Name: wildcard character '*' cannot be used with partial values",
      500,
    ],
    [
      "web",
      "sh*",
      { Action: "allow" },
      "Name: wildcard character '*' cannot be used with partial values",
      500,
    ],
    ["", "shop", { Action: "allow" }, "required query parameter 'source' not set", 500],
    ["web", "", { Action: "allow" }, "required query parameter 'destination' not set", 500],
    [null, "shop", { Action: "allow" }, "required query parameter 'source' not set", 500],
    [
      "peer:other/web",
      "shop",
      { Action: "allow" },
      'source "peer:other/web" is invalid: cannot specify a peer here',
      500,
    ],
    [
      "a/b/c/web",
      "shop",
      { Action: "allow" },
      `source "a/b/c/web" is invalid: input can contain at most two '/'`,
      500,
    ],
    // L7 permissions: each rule with an input that tries to get past it.
    [
      "api",
      "shop",
      { Action: "allow", ...l7({ PathPrefix: "/" }) },
      "Sources[1].Action must be omitted if Permissions are specified",
      500,
    ],
    ["api", "shop", l7(null), "Sources[1].Permissions[0].HTTP is required", 500],
    ["api", "shop", l7({}), "Sources[1].Permissions[0].HTTP should not be empty", 500],
    [
      "api",
      "shop",
      l7({ Methods: [], Header: [] }),
      "Sources[1].Permissions[0].HTTP should not be empty",
      500,
    ],
    [
      "api",
      "shop",
      l7({ PathExact: "" }),
      "Sources[1].Permissions[0].HTTP should not be empty",
      500,
    ],
    [
      "api",
      "shop",
      l7({ PathExact: "admin" }),
      `Sources[1].Permissions[0].HTTP.PathExact doesn't start with '/': "admin"`,
      500,
    ],
    [
      "api",
      "shop",
      l7({ PathExact: "/a", PathRegex: ".*" }),
      "Sources[1].Permissions[0].HTTP should only contain at most one of PathExact, PathPrefix, or PathRegex",
      500,
    ],
    [
      "api",
      "shop",
      l7({ PathPrefix: "/" }, "Allow"),
      "Sources[1].Permissions[0].Action must be set to 'allow' or 'deny'",
      500,
    ],
    [
      "api",
      "db",
      l7({ PathPrefix: "/" }),
      'service "db" has protocol "tcp", which is incompatible with L7 intentions permissions',
      500,
    ],
  ];
  for (const [source, destination, body, message, status] of cases) {
    refused(() => ixns.upsert(source, destination, body), message, status);
    assert.deepEqual(ixns.list(), before.list, `${source} → ${destination}: unchanged`);
    assert.equal(ixns.store.index, before.index, `${source} → ${destination}: no write`);
  }
  // What the rules allow: a regex path without '/', methods alone, a header alone.
  ixns.upsert("api", "shop", l7({ PathRegex: "admin.*" }));
  ixns.upsert("cli", "shop", l7({ Methods: ["get"] }));
  ixns.upsert("ops", "shop", l7({ Header: [{ Name: "x", Present: true }] }, "deny"));
  assert.deepEqual(ixns.l7Destinations(), ["shop"]);
});

Deno.test("intentions: a refused service-intentions entry keeps the destination's intentions", () => {
  const ixns = intentions();
  ixns.replaceDestination("db", [{ Name: "web", Action: "allow" }, { Name: "*", Action: "deny" }]);
  const before = { list: ixns.list(), index: ixns.store.index };
  refused(
    () =>
      ixns.replaceDestination("db", [{ Name: "api", Action: "allow" }, {
        Name: "api",
        Action: "deny",
      }]),
    'Sources[1] defines "api" more than once',
    500,
  );
  refused(() => ixns.replaceDestination("db", []), "At least one source is required", 500);
  refused(
    () => ixns.replaceDestination("db", [{ Name: "api", ...l7({ PathPrefix: "/" }) }]),
    'service "db" has protocol "tcp", which is incompatible with L7 intentions permissions',
    500,
  );
  assert.deepEqual(ixns.list(), before.list);
  assert.equal(ixns.store.index, before.index);
  // A valid entry replaces them all in one write; deleting it removes them, once.
  ixns.replaceDestination("db", [{ Name: "api", Action: "allow" }]);
  assert.equal(ixns.store.index, before.index + 1);
  assert.deepEqual(ixns.list().map((i) => `${i.SourceName}>${i.DestinationName}`), ["api>db"]);
  ixns.deleteDestination("db");
  const deleted = ixns.store.index;
  ixns.deleteDestination("db");
  ixns.delete("api", "db");
  assert.equal(ixns.store.index, deleted, "deleting what is gone is no write");
  assert.deepEqual(ixns.list(), []);
});

Deno.test("intentions: names as CE reads them; an update keeps CreateIndex; permissions are normalized copies", () => {
  const ixns = intentions(false, ["shop"]);
  ixns.upsert("ns1/web", "part/ns2/db", { Action: "allow" }); // written without the namespace
  const stored = ixns.get("web", "db");
  assert.ok(stored);
  assert.deepEqual([stored.SourceNS, stored.SourceName, stored.DestinationName], [
    "default",
    "web",
    "db",
  ]);
  assert.equal(ixns.get("default/web", "db"), stored, "default is the namespace it is in");
  refused(
    () => ixns.get("ns1/web", "db"),
    'Invalid SourceNS "ns1": Namespaces is a Consul Enterprise feature',
    500,
  );
  refused(
    () => ixns.get("web", "ns2/db"),
    'Invalid DestinationNS "ns2": Namespaces is a Consul Enterprise feature',
    500,
  );
  assert.equal(ixns.get("peer:other/web", "db"), undefined, "a peer's web is another source");
  refused(
    () => ixns.get("peer:other", "db"),
    'source "peer:other" is invalid: need to specify the service name as well',
    500,
  );

  ixns.upsert("web", "db", { Action: "deny" });
  const updated = ixns.get("web", "db")!;
  assert.equal(updated.Action, "deny");
  assert.equal(updated.CreateIndex, stored.CreateIndex);
  assert.ok(updated.ModifyIndex > stored.ModifyIndex);

  const permissions = [{ Action: "allow", HTTP: { PathPrefix: "/", Methods: ["get", "Post"] } }];
  ixns.upsert("web", "shop", { Permissions: permissions });
  permissions[0]!.HTTP.Methods.push("DELETE"); // the caller's array changes afterwards
  assert.deepEqual(ixns.get("web", "shop")!.Permissions, [
    { Action: "allow", HTTP: { PathPrefix: "/", Methods: ["GET", "POST"] } },
  ]);
  assert.equal(ixns.get("web", "shop")!.Action, undefined, "no Action beside Permissions");
});

Deno.test("intentions: authorize refuses what Consul refuses, before any decision", () => {
  const ixns = intentions(true);
  const cases: [unknown, string][] = [
    [
      { Target: "db", ClientCertURI: uri("web"), Namespace: "default" },
      'Request decode failed: json: unknown field "Namespace"',
    ],
    [
      { Target: "db", ClientCertURI: uri("web"), Partition: "" },
      'Request decode failed: json: unknown field "Partition"',
    ],
    [
      { Target: "db", ClientCertURI: uri("web"), Tarjet: "x" },
      'Request decode failed: json: unknown field "Tarjet"',
    ],
    [{ ClientCertURI: uri("web") }, "Target service must be specified"],
    [{ Target: "", ClientCertURI: uri("web") }, "Target service must be specified"],
    [{ Target: "db" }, "ClientCertURI not a valid Connect identifier"],
    [
      { Target: "db", ClientCertURI: "https://example.com/svc/web" },
      "ClientCertURI not a valid Connect identifier",
    ],
    [
      { Target: "db", ClientCertURI: `spiffe://${TD}/agent/client/dc/dc1/id/node1` },
      "ClientCertURI not a valid Service identifier",
    ],
    [
      { Target: "db", ClientCertURI: uri("web", "/ap/team") },
      'Mismatched partitions: "team" != "default"',
    ],
  ];
  for (const [body, message] of cases) refused(() => ixns.authorize(body), message, 400);
  assert.equal(
    ixns.authorize({ Target: "db", ClientCertURI: uri("web") }).Authorized,
    true,
    "default allow",
  );
  ixns.upsert("web", "db", { Action: "deny" });
  const denied = ixns.authorize({ target: "db", clientcerturi: uri("web") }); // any case, as Go decodes
  assert.equal(denied.Authorized, false);
  assert.match(denied.Reason, /^Matched L4 intention: default\/web => default\/db/);
  assert.equal(ixns.check("web", "db"), false);
  assert.equal(ixns.check("api", "db"), true);
  ixns.defaultAllow = false;
  assert.equal(ixns.check("api", "db"), false, "the default is read per decision");
});
