// Agent errors under ACLs: a 403 says what the token lacks. Consul names the permission in most
// 403s; where it does not (health/connect answers a bare "Permission denied"), the message says
// what the endpoint needs, as measured in tests/integration/acl_test.ts.
import assert from "node:assert/strict";
import {
  AgentConfigError,
  AgentDecodeError,
  AgentError,
  AgentNetworkError,
  isRetryable,
} from "../../src/agent/errors.ts";

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

Deno.test("agent errors: which are worth another try", () => {
  const table: [unknown, boolean][] = [
    [new AgentError("GET /x", 429, "rate limited"), true],
    [new AgentError("GET /x", 500, "rpc error"), true],
    [new AgentError("GET /x", 503, "No cluster leader"), true],
    [new AgentError("GET /x", 400, "bad request"), false],
    [new AgentError("GET /x", 403, "Permission denied"), false],
    [new AgentError("GET /x", 404, ""), false],
    [new AgentNetworkError("GET /x", "connection refused"), true],
    [new AgentDecodeError("GET /x", "$: expected object, got null"), true],
    [new AgentConfigError("CONSUL_HTTP_ADDR", "bad"), false],
    [new Error("anything else"), false],
    [new TypeError("fetch failed"), false],
    [undefined, false],
    ["503", false],
    [{ retryable: true }, false], // only our own errors say so
  ];
  for (const [err, want] of table) assert.equal(isRetryable(err), want, String(err));
});

Deno.test("agent errors: messages name the endpoint and keep the cause", () => {
  const cause = new Error("ECONNREFUSED");
  const net = new AgentNetworkError("GET /v1/agent/self", "connection refused", { cause });
  assert.equal(net.message, "GET /v1/agent/self: agent unreachable: connection refused");
  assert.equal(net.endpoint, "GET /v1/agent/self");
  assert.equal(net.cause, cause);
  assert.equal(net.name, "AgentNetworkError");
  const dec = new AgentDecodeError("GET /v1/agent/connect/ca/roots", "$.Roots: expected array");
  assert.equal(
    dec.message,
    "GET /v1/agent/connect/ca/roots: malformed response: $.Roots: expected array",
  );
  assert.equal(dec.detail, "$.Roots: expected array");
  const cfg = new AgentConfigError("CONSUL_HTTP_SSL", '"maybe" is not a boolean');
  assert.equal(cfg.message, 'CONSUL_HTTP_SSL: "maybe" is not a boolean');
  assert.equal(cfg.setting, "CONSUL_HTTP_SSL");
  assert.ok(cfg instanceof Error && !(cfg instanceof AgentError));
});

Deno.test("agent errors: Consul's text is trimmed; an empty body says the status in words", () => {
  const err = new AgentError("PUT /v1/agent/service/register", 400, "  Invalid Service Meta\n");
  assert.equal(err.message, "PUT /v1/agent/service/register: 400 Invalid Service Meta");
  assert.equal(err.consulMessage, "Invalid Service Meta");
  assert.equal(err.status, 400);
  assert.equal(new AgentError("GET /x", 500, "").message, "GET /x: 500 error");
  assert.equal(new AgentError("GET /x", 403, "").message, "GET /x: 403 forbidden");
  // Only a 403 gets the permission hint; a 500 from the same endpoint does not.
  assert.equal(
    new AgentError("GET /v1/discovery-chain/db", 500, "rpc error").message,
    "GET /v1/discovery-chain/db: 500 rpc error",
  );
  assert.equal(
    new AgentError("GET /x", 500, "lacks permission 'a:b'").missingPermission,
    undefined,
  );
  // The query string does not change which permission is named.
  assert.match(
    new AgentError("GET /v1/health/connect/db?passing=1&index=7", 403, "Permission denied")
      .message,
    /service:read on "db"/,
  );
});
