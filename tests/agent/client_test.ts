import assert from "node:assert/strict";
import {
  AgentDecodeError,
  AgentError,
  AgentNetworkError,
  isRetryable,
} from "../../src/agent/errors.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import { parseCertificate } from "../../src/trust/certificate.ts";
import { verifyChain } from "../../src/trust/chain.ts";
import { parseSpiffeId } from "../../src/trust/spiffe.ts";
import { clientFor, devAgent, nth } from "../_helpers.ts";

Deno.test("agent client reads roots and a leaf that chains to them over real HTTP", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const roots = await agent.roots();
  assert.equal(roots.value.TrustDomain, dev.ca.trustDomain);
  assert.ok(roots.index! >= 1n);
  const leaf = await agent.leaf("web");
  assert.equal(leaf.value.Service, "web");
  const id = parseSpiffeId(leaf.value.ServiceURI);
  assert.equal(id.kind, "service");
  const cert = await parseCertificate(leaf.value.CertPEM);
  const [active] = roots.value.Roots;
  assert.ok(active, "the agent has a root");
  const root = await parseCertificate(active.RootCert);
  await verifyChain(cert, [], [root]);
  assert.equal(cert.uris[0], leaf.value.ServiceURI);
  assert.equal(cert.authorityKeyId, active.SigningKeyID);
});

Deno.test("agent client authorizes and reports denials as results, not errors", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const uri = `spiffe://${dev.ca.trustDomain}/ns/default/dc/dc1/svc/web`;
  assert.equal((await agent.authorize({ Target: "db", ClientCertURI: uri })).Authorized, true);
  await new OperatorClient(agent).upsertIntention("web", "db", { Action: "deny" });
  const denied = await agent.authorize({ Target: "db", ClientCertURI: uri });
  assert.equal(denied.Authorized, false);
  assert.match(denied.Reason, /Matched L4 intention: default\/web => default\/db/);
});

Deno.test("agent errors name the endpoint, status and Consul's text", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const err = await agent.service("nope").catch((e) => e);
  assert.ok(err instanceof AgentError);
  assert.equal(err.status, 404);
  assert.equal(err.endpoint, "GET /v1/agent/service/nope");
  assert.equal(err.consulMessage, "unknown service ID: nope");
  assert.equal(err.retryable, false);
  const bad = await agent.authorize({ Target: "", ClientCertURI: "x" }).catch((e) => e);
  assert.ok(bad instanceof AgentError);
  assert.equal(bad.status, 400);
  assert.equal(bad.consulMessage, "Target service must be specified");
});

Deno.test("agent errors: 403 names the missing permission; 5xx and 429 are retryable", () => {
  const denied = new AgentError(
    "POST /v1/agent/connect/authorize",
    403,
    `Permission denied: token with AccessorID 'abc' lacks permission 'service:write' on "db"`,
  );
  assert.equal(denied.missingPermission, "service:write");
  assert.equal(denied.retryable, false);
  assert.ok(isRetryable(new AgentError("GET /x", 503, "")));
  assert.ok(isRetryable(new AgentError("GET /x", 429, "Rate limit reached, try again later")));
  assert.ok(!isRetryable(new Error("other")));
});

Deno.test("agent client turns malformed JSON into a decode error naming the endpoint", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  dev.faults.add({ path: "/v1/agent/connect/ca/roots", malformed: true, times: 1 });
  const err = await agent.roots().catch((e) => e);
  assert.ok(err instanceof AgentDecodeError);
  assert.match(
    err.message,
    /GET \/v1\/agent\/connect\/ca\/roots: malformed response: invalid JSON/,
  );
  assert.ok(err.retryable);
});

Deno.test("agent client rejects well-formed JSON of the wrong shape with the field path", async () => {
  const agent = clientFor({ address: "127.0.0.1:1" });
  const fake = new (agent.constructor as typeof import("../../mod.ts").AgentClient)({
    fetch: () =>
      Promise.resolve(
        new Response(JSON.stringify({ ActiveRootID: "x", TrustDomain: "t", Roots: [{ ID: 1 }] })),
      ),
  });
  const err = await fake.roots().catch((e) => e);
  assert.ok(err instanceof AgentDecodeError);
  assert.equal(err.detail, "$.Roots[0].ID: expected string, got number");
});

Deno.test("agent client reports an unreachable agent and a dropped connection as network errors", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const down = clientFor({ address: `127.0.0.1:${port}` });
  const err = await down.self().catch((e) => e);
  assert.ok(err instanceof AgentNetworkError);
  assert.match(err.message, /GET \/v1\/agent\/self: agent unreachable/);

  await using dev = await devAgent();
  dev.faults.add({ path: "/v1/agent/self", drop: true, times: 1 });
  const dropped = await clientFor(dev).self().catch((e) => e);
  assert.ok(dropped instanceof AgentNetworkError, String(dropped));
  assert.equal((await clientFor(dev).self()).Config.Datacenter, "dc1");
});

Deno.test("agent client times out a request the agent never answers", async () => {
  await using dev = await devAgent();
  dev.faults.add({ path: "/v1/agent/self", latencyMs: 5000, times: 1 });
  const err = await clientFor(dev).self({ timeoutMs: 100 }).catch((e) => e);
  assert.ok(err instanceof AgentNetworkError);
  assert.match(err.message, /no answer within 100 ms/);
});

Deno.test("agent client sends the token in X-Consul-Token and namespace only when set", async () => {
  const seen: Request[] = [];
  const { AgentClient } = await import("../../mod.ts");
  const agent = new AgentClient({
    token: "t0k",
    namespace: "team",
    fetch: (input, init) => {
      seen.push(new Request(input, init));
      return Promise.resolve(new Response("true"));
    },
  });
  await agent.setCheck("service:web-1", "pass", { note: "fine" });
  const request = nth(seen, 0, "request");
  assert.equal(request.headers.get("X-Consul-Token"), "t0k");
  const url = new URL(request.url);
  assert.equal(url.pathname, "/v1/agent/check/pass/service%3Aweb-1");
  assert.equal(url.searchParams.get("ns"), "team");
  assert.equal(url.searchParams.get("note"), "fine");
});

Deno.test("agent client: registration and checks round-trip", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await agent.register({
    ID: "web-1",
    Name: "web",
    Port: 8080,
    Check: { TTL: "30s", Status: "critical" },
    Connect: { SidecarService: {} },
  });
  const services = await agent.services({ filter: "Kind == `connect-proxy`" });
  assert.deepEqual(Object.keys(services), ["web-1-sidecar-proxy"]);
  await agent.setCheck("service:web-1", "pass", { note: "fine" });
  await agent.updateCheck("service:web-1", { Status: "warning", Output: "slow" });
  assert.equal(nth(dev.catalog.checksOf("web-1"), 0, "web-1's check").Status, "warning");
  await agent.deregister("web-1");
  assert.deepEqual(await agent.services(), {});
});
