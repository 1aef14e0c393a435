// connect() that cannot get its leaf or roots says what the agent answered (endpoint, status and
// Consul's own text), not only that time ran out.
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import { connect, ConnectService } from "../../src/native/service.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";

const DENIED = `Permission denied: token with AccessorID '3e4f…' lacks permission ` +
  `'service:write' on "web"`;

Deno.test("native: connect() with a leaf the agent refuses (403) says the endpoint, status and Consul's text", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  dev.faults.add({ path: "/v1/agent/connect/ca/leaf/web", status: 403, body: DENIED });
  const err = await connect({ service: "web", agent, readyTimeoutMs: 500 }).catch((e) => e);
  assert.ok(err instanceof Error, String(err));
  assert.equal(
    err.message,
    `web: no leaf certificate from the agent at ${agent.config.baseUrl} within 500 ms: ` +
      `leaf: /v1/agent/connect/ca/leaf/web: HTTP 403: ${DENIED}`,
  );
});

Deno.test("native: connect() to an agent that is down says it could not reach it, for both", async () => {
  await using agent = clientFor({ address: `127.0.0.1:${freePort()}` });
  const err = await connect({ service: "web", agent, readyTimeoutMs: 300 }).catch((e) => e);
  assert.match(
    String(err),
    /no leaf certificate and roots from the agent at .* within 300 ms: roots: \/v1\/agent\/connect\/ca\/roots: agent unreachable: .*; leaf: \/v1\/agent\/connect\/ca\/leaf\/web: agent unreachable: /,
  );
});

Deno.test("native: a refused leaf is a readiness problem on /ready until the agent hands one out", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const allow = dev.faults.add({
    path: "/v1/agent/connect/ca/leaf/web",
    status: 403,
    body: DENIED,
  });
  await using web = new ConnectService({ service: "web", agent }, false);
  const admin = createAdminApp({ proxy: web });
  const said = `leaf: /v1/agent/connect/ca/leaf/web: HTTP 403: ${DENIED}`;
  await eventually(() => web.problems.includes(said), 5000, "the refusal among the problems");
  const refused = await admin.request("/ready");
  assert.equal(refused.status, 503);
  assert.ok(((await refused.json()) as { problems: string[] }).problems.includes(said));
  allow();
  await web.ready;
  assert.deepEqual(web.problems, []);
  assert.equal((await admin.request("/ready")).status, 200);
});
