// Agent errors under ACLs: a 403 says what the token lacks. Consul names the permission in most
// 403s; where it does not (health/connect answers a bare "Permission denied"), the message says
// what the endpoint needs, as measured in tests/integration/acl_test.ts.
import assert from "node:assert/strict";
import { AgentError } from "../../mod.ts";

Deno.test("agent errors: a bare 403 from health/connect says what the token needs", () => {
  const err = new AgentError("GET /v1/health/connect/db", 403, "Permission denied");
  assert.equal(
    err.message,
    `GET /v1/health/connect/db: 403 Permission denied (the ACL token needs service:read on "db"; ` +
      "node:read and service:read on its sidecar proxies, or their endpoints are left out)",
  );
  assert.equal(err.consulMessage, "Permission denied", "Consul's own text is kept apart");
  assert.equal(err.missingPermission, undefined, "Consul named none");
});

Deno.test("agent errors: each endpoint meshgate calls names its permission on a bare 403", () => {
  const needs = (endpoint: string) =>
    /\(the ACL token needs (.*)\)$/.exec(new AgentError(endpoint, 403, "Permission denied").message)
      ?.[1];
  assert.equal(needs("GET /v1/discovery-chain/db"), `service:read on "db"`);
  assert.equal(needs("GET /v1/agent/connect/ca/leaf/my%20svc"), `service:write on "my svc"`);
  assert.equal(
    needs("POST /v1/agent/connect/authorize"),
    "service:write and intention:read on the target service",
  );
  assert.equal(needs("GET /v1/connect/intentions/match"), "intention:read on the service");
  assert.equal(needs("GET /v1/agent/service/web-sidecar-proxy"), "service:read on the service");
  assert.equal(
    needs("PUT /v1/agent/service/register"),
    "service:write on the registered name (and on a proxy's destination service)",
  );
  assert.equal(needs("PUT /v1/agent/check/pass/web-proxy-ttl"), "service:write on the service");
  assert.equal(needs("GET /v1/agent/connect/ca/leaf/%E0%A4%A"), `service:write on "%E0%A4%A"`);
  assert.equal(needs("GET /v1/status/leader"), undefined, "unknown endpoints get no guess");
});

Deno.test("agent errors: a 403 that names its permission is left as Consul wrote it", () => {
  const text =
    `Permission denied: token with AccessorID 'abc' lacks permission 'service:write' on "db"`;
  const err = new AgentError("GET /v1/agent/connect/ca/leaf/db", 403, text);
  assert.equal(err.message, `GET /v1/agent/connect/ca/leaf/db: 403 ${text}`);
  assert.equal(err.missingPermission, "service:write");
  const notFound = new AgentError("GET /v1/health/connect/db", 404, "");
  assert.equal(notFound.message, "GET /v1/health/connect/db: 404 not found", "only 403s");
});
