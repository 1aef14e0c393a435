import assert from "node:assert/strict";
import { formatSpiffeId, parseSpiffeId, SpiffeIdError } from "../../mod.ts";

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
