// Consul writes Go's nil slices and maps as `null`; the decoders take them as Consul means them
// (no element) and hand the rest of meshgate `[]` / `{}` instead.
import assert from "node:assert/strict";
import { AgentClient, AgentDecodeError } from "../../mod.ts";
import {
  decodeAgentService,
  decodeAgentServices,
  decodeCAConfig,
  decodeChain,
  DecodeFailure,
  decodeIntentionMatch,
  decodeIntentions,
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
  assert.deepEqual(one.Roots[0].IntermediateCerts, []);
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
  assert.deepEqual(svc.Proxy?.Upstreams?.[0].Config, {});
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
  assert.deepEqual(e.Checks, []);
  assert.deepEqual(e.Service.Tags, []);
  assert.deepEqual(e.Service.Meta, {});
  assert.deepEqual(e.Node.Meta, {});
  assert.deepEqual(e.Service.Proxy.Upstreams, []);
  assert.deepEqual(decodeServiceEntries(null), []);
  const q = decodePreparedQuery({ Service: "db", Nodes: null, Datacenter: "dc1" });
  assert.deepEqual(q.Nodes, []);
  const q2 = decodePreparedQuery({ Service: "db", Nodes: [entry()], Datacenter: "dc1" });
  assert.deepEqual(q2.Nodes[0].Checks, []);
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
  assert.deepEqual(ixn.Permissions, []);
  assert.deepEqual(ixn.Meta, {});
  assert.throws(() => decodeIntentions([{ SourceName: 1 }]), /\$\[0\]\.SourceName/);
  assert.deepEqual(decodeCAConfig({ Provider: "consul", Config: null, State: null }).Config, {});
});
