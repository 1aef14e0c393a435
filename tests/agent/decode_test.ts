// Consul writes Go's nil slices and maps as `null`; the decoders take them as Consul means them
// (no element) and hand the rest of meshgate `[]` / `{}` instead.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { AgentDecodeError } from "../../src/agent/errors.ts";
import {
  decodeAgentSelf,
  decodeAgentService,
  decodeAgentServices,
  decodeAuthorize,
  decodeBoolean,
  decodeCAConfig,
  decodeChain,
  DecodeFailure,
  decodeIntentionMatch,
  decodeIntentions,
  decodeLeaf,
  decodePreparedQuery,
  decodeRoots,
  decodeServiceEntries,
} from "../../src/agent/decode.ts";

const PEM = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";

function entry(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    Node: { Node: "n1", Address: "127.0.0.1", TaggedAddresses: null, Meta: null },
    Service: {
      ID: "db-1-sidecar-proxy",
      Service: "db-sidecar-proxy",
      Tags: null,
      Meta: null,
      Port: 21000,
      Weights: null,
      Proxy: { DestinationServiceName: "db", Upstreams: null, Config: null },
      ...overrides,
    },
    Checks: null,
  };
}

/** A client that answers every request with `body` (and a fixed index). */
function clientAnswering(body: unknown): AgentClient {
  return new AgentClient({
    fetch: () =>
      Promise.resolve(
        new Response(JSON.stringify(body), { headers: { "X-Consul-Index": "7" } }),
      ),
  });
}

Deno.test("intentions/match: {name: null} (Consul 1.22.7, nothing matches) is an empty list", async () => {
  assert.deepEqual(decodeIntentionMatch({ db: null }), { db: [] });
  const res = await clientAnswering({ db: null }).intentionMatch("destination", "db");
  assert.deepEqual(res.value, []);
  assert.equal(res.index, 7n);
  // A list of the wrong type still fails, naming the field.
  assert.throws(
    () => decodeIntentionMatch({ db: "x" }),
    (e: Error) => e instanceof DecodeFailure && e.detail === "$.db: expected array, got string",
  );
  const bad = await clientAnswering({ db: [{ SourceName: 1 }] }).intentionMatch("destination", "db")
    .catch((e) => e);
  assert.ok(bad instanceof AgentDecodeError);
  assert.equal(bad.detail, "$.db[0].SourceName: expected string, got number");
});

Deno.test("roots: null Roots and null IntermediateCerts are empty lists", () => {
  const none = decodeRoots({ ActiveRootID: "", TrustDomain: "", Roots: null });
  assert.deepEqual(none.Roots, []);
  const one = decodeRoots({
    ActiveRootID: "a",
    TrustDomain: "t.consul",
    Roots: [{ ID: "a", RootCert: PEM, Active: true, IntermediateCerts: null }],
  });
  assert.deepEqual(one.Roots.map((r) => r.IntermediateCerts), [[]]);
  assert.throws(
    () =>
      decodeRoots({
        ActiveRootID: "a",
        TrustDomain: "t.consul",
        Roots: [{ ID: "a", RootCert: PEM, Active: true, IntermediateCerts: ["nope"] }],
      }),
    /\$\.Roots\[0\]\.IntermediateCerts\[0\]: not a PEM/,
  );
  assert.throws(() => decodeRoots({ ActiveRootID: "a", TrustDomain: "t" }), /\$\.Roots: expected/);
});

Deno.test("agent service: null Tags, Meta, Upstreams and Config become empty", () => {
  const svc = decodeAgentService({
    ID: "web-1-sidecar-proxy",
    Service: "web-sidecar-proxy",
    Port: 21000,
    Tags: null,
    Meta: null,
    Proxy: {
      DestinationServiceName: "web",
      Config: null,
      Upstreams: [{ DestinationName: "db", LocalBindPort: 9191, Config: null }],
      Expose: { Paths: null },
    },
  });
  assert.deepEqual(svc.Tags, []);
  assert.deepEqual(svc.Meta, {});
  assert.deepEqual(svc.Proxy?.Config, {});
  assert.deepEqual(svc.Proxy?.Upstreams?.map((u) => u.Config), [{}]);
  assert.deepEqual(svc.Proxy?.Expose?.Paths, []);
  const noUpstreams = decodeAgentService({
    ID: "p",
    Service: "p",
    Port: 1,
    Proxy: { DestinationServiceName: "web", Upstreams: null },
  });
  assert.deepEqual(noUpstreams.Proxy?.Upstreams, []);
  assert.deepEqual(decodeAgentServices(null), {});
  assert.throws(
    () => decodeAgentService({ ID: "p", Service: "p", Port: 1, Tags: "a" }),
    /\$\.Tags: expected array, got string/,
  );
});

Deno.test("health and prepared query entries: null lists and maps become empty", () => {
  const [e] = decodeServiceEntries([entry()]);
  assert.ok(e, "one entry");
  assert.deepEqual(e.Checks, []);
  assert.deepEqual(e.Service.Tags, []);
  assert.deepEqual(e.Service.Meta, {});
  assert.deepEqual(e.Node.Meta, {});
  assert.deepEqual(e.Service.Proxy.Upstreams, []);
  assert.deepEqual(decodeServiceEntries(null), []);
  const q = decodePreparedQuery({ Service: "db", Nodes: null, Datacenter: "dc1" });
  assert.deepEqual(q.Nodes, []);
  const q2 = decodePreparedQuery({ Service: "db", Nodes: [entry()], Datacenter: "dc1" });
  assert.deepEqual(q2.Nodes.map((n) => n.Checks), [[]]);
  assert.throws(
    () => decodeServiceEntries([entry({ Tags: {} })]),
    /\$\[0\]\.Service\.Tags: expected array, got object/,
  );
});

Deno.test("discovery chain: null virtual IPs, failover targets and splits are empty lists", () => {
  const chain = decodeChain({
    Chain: {
      ServiceName: "db",
      StartNode: "resolver:db.default.default.dc1",
      Nodes: {
        "resolver:db.default.default.dc1": {
          Type: "resolver",
          Name: "db.default.default.dc1",
          Splits: null,
          Resolver: {
            ConnectTimeout: "5s",
            RequestTimeout: 2_000_000_000,
            Target: "db.default.default.dc1",
            Failover: { Targets: null },
          },
        },
      },
      Targets: {
        "db.default.default.dc1": { Service: "db", Datacenter: "dc1", Subset: {} },
      },
      AutoVirtualIPs: null,
      ManualVirtualIPs: null,
    },
  });
  assert.deepEqual(chain.AutoVirtualIPs, []);
  assert.deepEqual(chain.ManualVirtualIPs, []);
  const node = chain.Nodes[chain.StartNode];
  assert.ok(node, "the start node");
  assert.deepEqual(node.Splits, []);
  assert.deepEqual(node.Resolver?.Failover?.Targets, []);
  assert.throws(
    () =>
      decodeChain({
        Chain: {
          ServiceName: "db",
          StartNode: "resolver:x",
          Nodes: { "resolver:x": { Type: "resolver", Resolver: { RequestTimeout: "2s" } } },
          Targets: {},
        },
      }),
    /Nodes\[resolver:x\]\.Resolver\.RequestTimeout: expected number, got string/,
  );
  assert.throws(
    () => decodeChain({ Chain: { ServiceName: "db", StartNode: "a", Nodes: null, Targets: {} } }),
    /StartNode: a is not in Nodes/,
  );
});

Deno.test("intentions list and CA configuration: null is none", () => {
  assert.deepEqual(decodeIntentions(null), []);
  const [ixn] = decodeIntentions([
    { SourceName: "web", DestinationName: "db", Permissions: null, Meta: null },
  ]);
  assert.ok(ixn, "one intention");
  assert.deepEqual(ixn.Permissions, []);
  assert.deepEqual(ixn.Meta, {});
  assert.throws(() => decodeIntentions([{ SourceName: 1 }]), /\$\[0\]\.SourceName/);
  assert.deepEqual(decodeCAConfig({ Provider: "consul", Config: null, State: null }).Config, {});
});

/** Asserts that `decode(value)` throws a DecodeFailure whose detail is exactly `detail`. */
function refuses(decode: (v: unknown) => unknown, value: unknown, detail: string | RegExp) {
  assert.throws(
    () => decode(value),
    (e) =>
      e instanceof DecodeFailure &&
      (typeof detail === "string" ? e.detail === detail : detail.test(e.detail)),
    JSON.stringify(value)?.slice(0, 120),
  );
}

Deno.test("every decoder refuses a body of the wrong kind at the top, naming $", () => {
  for (
    const decode of [decodeRoots, decodeLeaf, decodeAuthorize, decodeAgentService, decodeAgentSelf]
  ) {
    refuses(decode, null, "$: expected object, got null");
    refuses(decode, [], "$: expected object, got array");
    refuses(decode, "x", "$: expected object, got string");
  }
  refuses(decodeServiceEntries, {}, "$: expected array, got object");
  refuses(decodeIntentions, "x", "$: expected array, got string");
  refuses(decodeChain, {}, "$.Chain: expected object, got undefined");
  refuses(decodeBoolean, "true", "$: expected boolean, got string");
  assert.equal(decodeBoolean(true), true);
});

Deno.test("leaf: the PEMs must be PEMs and the validity RFC 3339 times", () => {
  const leaf = {
    SerialNumber: "01:2c",
    CertPEM: PEM,
    PrivateKeyPEM: "-----BEGIN EC PRIVATE KEY-----\nMA==\n-----END EC PRIVATE KEY-----\n",
    Service: "web",
    ServiceURI: "spiffe://t.consul/ns/default/dc/dc1/svc/web",
    ValidAfter: "2026-01-01T00:00:00Z",
    ValidBefore: "2026-01-04T00:00:00Z",
    CreateIndex: 1,
    ModifyIndex: 1,
  };
  assert.equal(decodeLeaf(leaf).SerialNumber, "01:2c");
  refuses(decodeLeaf, { ...leaf, CertPEM: "MIIB..." }, "$.CertPEM: not a PEM");
  refuses(decodeLeaf, { ...leaf, PrivateKeyPEM: "" }, "$.PrivateKeyPEM: not a PEM");
  refuses(decodeLeaf, { ...leaf, ValidBefore: "soon" }, "$.ValidBefore: not an RFC 3339 time");
  refuses(decodeLeaf, { ...leaf, ValidAfter: 5 }, "$.ValidAfter: expected string, got number");
  const { ServiceURI: _, ...missing } = leaf;
  refuses(decodeLeaf, missing, "$.ServiceURI: expected string, got undefined");
});

Deno.test("roots: a RootCert that is no PEM and a missing Active flag are refused", () => {
  const root = { ID: "a", RootCert: PEM, Active: true };
  const list = (r: Record<string, unknown>) => ({
    ActiveRootID: "a",
    TrustDomain: "t",
    Roots: [r],
  });
  refuses(decodeRoots, list({ ...root, RootCert: "x" }), "$.Roots[0].RootCert: not a PEM");
  refuses(
    decodeRoots,
    list({ ...root, Active: "true" }),
    /\$\.Roots\[0\]\.Active: expected boolean/,
  );
  refuses(decodeRoots, list({ ...root, NotAfter: 7 }), /\$\.Roots\[0\]\.NotAfter/);
  refuses(decodeRoots, { ...list(root), TrustDomain: null }, /\$\.TrustDomain: expected string/);
});

Deno.test("authorize and agent self: the fields meshgate decides on must have their types", () => {
  assert.deepEqual(decodeAuthorize({ Authorized: false, Reason: "x" }), {
    Authorized: false,
    Reason: "x",
  });
  // A string "true" must never authorize a connection.
  refuses(decodeAuthorize, { Authorized: "true" }, "$.Authorized: expected boolean, got string");
  refuses(decodeAuthorize, { Reason: "ok" }, "$.Authorized: expected boolean, got undefined");
  refuses(
    decodeAuthorize,
    { Authorized: true, Reason: 1 },
    "$.Reason: expected string, got number",
  );
  refuses(decodeAgentSelf, { Config: { Datacenter: "dc1" } }, /\$\.Config\.NodeName/);
  refuses(decodeAgentSelf, {}, "$.Config: expected object, got undefined");
});

Deno.test("agent services: a bad service names its ID", () => {
  refuses(
    decodeAgentServices,
    { "web-1": { ID: "web-1", Service: "web", Port: "80" } },
    "$[web-1].Port: expected number, got string",
  );
  refuses(decodeAgentServices, [], "$: expected object, got array");
});

Deno.test("discovery chain: StartNode must be one of the chain's own nodes, not an inherited name", () => {
  const chain = (start: string) => ({
    Chain: {
      ServiceName: "db",
      StartNode: start,
      Nodes: { "resolver:db": { Type: "resolver" } },
      Targets: {},
    },
  });
  assert.equal(decodeChain(chain("resolver:db")).StartNode, "resolver:db");
  for (const start of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
    refuses(decodeChain, chain(start), `$.Chain.StartNode: ${start} is not in Nodes`);
  }
  refuses(
    decodeChain,
    { Chain: { ...chain("x").Chain, StartNode: 5 } },
    /StartNode: expected string/,
  );
  refuses(
    decodeChain,
    { Chain: { ...chain("resolver:db").Chain, Targets: { t: { Service: "db" } } } },
    "$.Chain.Targets[t].Datacenter: expected string, got undefined",
  );
});
