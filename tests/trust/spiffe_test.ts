import assert from "node:assert/strict";
import {
  formatSpiffeId,
  parseSpiffeId,
  serviceSpiffeId,
  SpiffeIdError,
} from "../../src/trust/spiffe.ts";

const TD = "11111111-2222-3333-4444-555555555555.consul";

Deno.test("SPIFFE: parses every identity kind Consul writes, and formats it back", () => {
  const cases: [string, Record<string, string>][] = [
    [`spiffe://${TD}/ns/default/dc/dc1/svc/web`, {
      kind: "service",
      partition: "default",
      namespace: "default",
      datacenter: "dc1",
      service: "web",
    }],
    [`spiffe://${TD}/ap/team/ns/ns1/dc/dc2/svc/db`, {
      kind: "service",
      partition: "team",
      namespace: "ns1",
      service: "db",
    }],
    [`spiffe://${TD}/agent/client/dc/dc1/id/node-1`, { kind: "agent", agent: "node-1" }],
    [`spiffe://${TD}/agent/server/dc/dc1`, { kind: "server", datacenter: "dc1" }],
    [`spiffe://${TD}/gateway/mesh/dc/dc1`, { kind: "mesh-gateway", datacenter: "dc1" }],
    [`spiffe://${TD}`, { kind: "signing", clusterId: "11111111-2222-3333-4444-555555555555" }],
  ];
  for (const [uri, expected] of cases) {
    const id = parseSpiffeId(uri) as unknown as Record<string, string>;
    for (const [k, v] of Object.entries(expected)) assert.equal(id[k], v, `${uri} ${k}`);
    assert.equal(id.trustDomain, TD);
    assert.equal(formatSpiffeId(id as never), uri);
  }
});

Deno.test("SPIFFE: escaped segments are unescaped; the trust domain is case-insensitive", () => {
  const id = parseSpiffeId(`spiffe://${TD.toUpperCase()}/ns/default/dc/dc1/svc/we%20b`);
  assert.equal(id.kind, "service");
  if (id.kind === "service") assert.equal(id.service, "we b");
  assert.equal(id.trustDomain, TD);
  assert.equal(formatSpiffeId(id), `spiffe://${TD}/ns/default/dc/dc1/svc/we%20b`);
});

Deno.test("SPIFFE: rejects what Consul rejects, with its messages", () => {
  const bad: [string, RegExp][] = [
    ["https://x.consul/ns/default/dc/dc1/svc/web", /must have 'spiffe' scheme/],
    [`spiffe://${TD}/ns/default/dc/dc1/svc/`, /not in the expected format/],
    [`spiffe://${TD}/ns/default/svc/web`, /not in the expected format/],
    [`spiffe://nodot`, /not in the expected format/],
    ["not a uri", /not a URI/],
    [`spiffe://${TD}/ns/default/dc/dc1/svc/%zz`, /malformed escape/],
    ["spiffe://" + "a".repeat(3000), /at most 2048/],
  ];
  for (const [uri, re] of bad) {
    assert.throws(
      () => parseSpiffeId(uri),
      (e) => e instanceof SpiffeIdError && re.test(e.message),
      uri,
    );
  }
});

Deno.test("SPIFFE: random inputs only ever give a SpiffeIdError (fuzz, bounded)", () => {
  const alphabet = "spife:/.%ab-_nsdcvgtwy0123456789AZ ?#@";
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 5000; i++) {
    const len = Math.floor(rand() * 60);
    let s = rand() < 0.5 ? "spiffe://" : "";
    for (let j = 0; j < len; j++) s += alphabet[Math.floor(rand() * alphabet.length)];
    try {
      parseSpiffeId(s);
    } catch (e) {
      assert.ok(e instanceof SpiffeIdError, `${s}: ${e}`);
    }
  }
});

Deno.test("SPIFFE: partitions are lower-cased and default is never written", () => {
  const id = parseSpiffeId(`spiffe://${TD}/ap/Finance/ns/default/dc/dc1/svc/db`);
  assert.equal(id.kind === "service" && id.partition, "finance");
  assert.equal(formatSpiffeId(id), `spiffe://${TD}/ap/finance/ns/default/dc/dc1/svc/db`);
  const explicitDefault = parseSpiffeId(`spiffe://${TD}/ap/default/ns/default/dc/dc1/svc/db`);
  assert.equal(formatSpiffeId(explicitDefault), `spiffe://${TD}/ns/default/dc/dc1/svc/db`);
  const agent = parseSpiffeId(`spiffe://${TD}/ap/Team/agent/client/dc/dc1/id/n1`);
  assert.equal(agent.kind === "agent" && agent.partition, "team");
  assert.equal(formatSpiffeId(agent), `spiffe://${TD}/ap/team/agent/client/dc/dc1/id/n1`);
});

Deno.test("SPIFFE: an escaped slash stays inside its segment and round-trips", () => {
  const id = parseSpiffeId(`spiffe://${TD}/ns/default/dc/dc1/svc/a%2Fb`);
  assert.equal(id.kind === "service" && id.service, "a/b");
  assert.equal(formatSpiffeId(id), `spiffe://${TD}/ns/default/dc/dc1/svc/a%2Fb`);
  // A raw slash is an extra segment, which no pattern allows.
  assert.throws(() => parseSpiffeId(`spiffe://${TD}/ns/default/dc/dc1/svc/a/b`), SpiffeIdError);
});

Deno.test("SPIFFE: a query or fragment does not change the identity", () => {
  const id = parseSpiffeId(`spiffe://${TD}/ns/default/dc/dc1/svc/web?x=1#frag`);
  assert.equal(formatSpiffeId(id), `spiffe://${TD}/ns/default/dc/dc1/svc/web`);
});

Deno.test("SPIFFE: trust domains with user info, a port, spaces or nothing are refused", () => {
  for (
    const td of ["", "user@" + TD, TD + ":8443", "a b.consul"]
  ) {
    assert.throws(
      () => parseSpiffeId(`spiffe://${td}/ns/default/dc/dc1/svc/web`),
      (e) => e instanceof SpiffeIdError && /invalid trust domain|not a URI/.test(e.message),
      JSON.stringify(td),
    );
  }
  // The signing form needs a dotted trust domain (<cluster-id>.consul).
  assert.throws(() => parseSpiffeId("spiffe://clusterid"), /not in the expected format/);
  // Not a string at all (JSON from a peer can be anything).
  assert.throws(() => parseSpiffeId(42 as unknown as string), SpiffeIdError);
});

Deno.test("SPIFFE: error messages carry at most 200 characters of the input", () => {
  const long = `spiffe://${TD}/ns/default/dc/dc1/svc/${"x".repeat(1500)}/extra`;
  const err = (() => {
    try {
      parseSpiffeId(long);
    } catch (e) {
      return e as SpiffeIdError;
    }
  })();
  assert.ok(err instanceof SpiffeIdError);
  assert.equal(err.uri.length, 200);
  assert.ok(err.message.length < 300);
});

Deno.test("serviceSpiffeId fills Consul's defaults and lower-cases the trust domain", () => {
  const id = serviceSpiffeId({ trustDomain: TD.toUpperCase(), datacenter: "dc2", service: "Db" });
  assert.deepEqual(id, {
    kind: "service",
    trustDomain: TD,
    partition: "default",
    namespace: "default",
    datacenter: "dc2",
    service: "Db",
  });
  const ns = serviceSpiffeId({
    trustDomain: TD,
    datacenter: "dc1",
    service: "db",
    namespace: "ops",
  });
  assert.equal(formatSpiffeId(ns), `spiffe://${TD}/ns/ops/dc/dc1/svc/db`);
  assert.deepEqual(parseSpiffeId(formatSpiffeId(ns)), ns);
});
