// A token the agent refuses for authorize (403: it lacks service:write or intention:read on the
// proxy's service, e.g. a token for another service): every caller is refused, never forwarded,
// and /ready says why, naming the endpoint and Consul's text, until the agent answers again.
// The same against a real Consul with ACLs on: tests/integration/acl_test.ts.
import assert from "node:assert/strict";
import type { ProxyEvent } from "../../src/events/lifecycle.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";
import { readiness } from "./_proxy.ts";
import { echoServer, outcome, roundTrip, tlsClient } from "../e2e/_net.ts";

Deno.test("acl: authorize answering 403 refuses every caller and /ready names it, until the token works", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const app = await echoServer();
  const port = freePort();
  const proxy = await startProxy({
    agent,
    config: {
      service: "db",
      upstreams: [],
      publicListener: { hostname: "127.0.0.1", port },
      app: { hostname: "127.0.0.1", port: app.port },
    },
  });
  const events: ProxyEvent[] = [];
  const off = proxy.events.subscribe((e) => void events.push(e));
  const consulText = "Permission denied: token with AccessorID 'a1b2' lacks permission " +
    `'service:write' on "db"`;
  const denied = dev.faults.add({
    path: "/v1/agent/connect/authorize",
    status: 403,
    body: consulText,
  });
  try {
    await proxy.ready;
    assert.deepEqual(await readiness(proxy), { status: 200, problems: [] });
    const web = (await agent.leaf("web")).value;
    const roots = (await agent.roots()).value.Roots.map((r) => r.RootCert);
    const call = () => tlsClient(port, { cert: web.CertPEM, key: web.PrivateKeyPEM, ca: roots });

    assert.equal(await outcome(await call(), "let me in"), "closed");
    assert.equal(app.connections(), 0, "nothing reaches the application");
    const refused = events.find((e) => e.type === "refused");
    assert.ok(refused?.type === "refused");
    assert.equal(refused.refusal.reason, "authorize_error");
    assert.equal(refused.refusal.detail, `POST /v1/agent/connect/authorize: 403 ${consulText}`);
    assert.deepEqual(await readiness(proxy), {
      status: 503,
      problems: [
        `authorize: /v1/agent/connect/authorize: HTTP 403: ${consulText}; every inbound ` +
        "connection is refused",
      ],
    });

    denied(); // the token is fixed
    await eventually(
      async () => {
        try {
          return new TextDecoder().decode(await roundTrip(await call(), "ok")) === "ok";
        } catch {
          return false;
        }
      },
      5000,
      "a caller to be served again",
    );
    assert.deepEqual(await readiness(proxy), { status: 200, problems: [] });
  } finally {
    off();
    await proxy.close();
    await app.close();
    await agent.close();
  }
});

Deno.test("acl: -sidecar-for that finds nothing says the token may not see it", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  try {
    const err = await startProxy({ agent, sidecarFor: "db-1" }).catch((e) => e);
    assert.equal(
      err.message,
      "-sidecar-for: No sidecar proxy registered for db-1 (or none this ACL token can see: it " +
        "needs service:read on the sidecar's name)",
    );
  } finally {
    await agent.close();
  }
});
