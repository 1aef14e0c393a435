// OperatorClient (src/agent/operator.ts) against the in-process Consul test double over real
// HTTP: every method, its error shapes, and that it rides on the AgentClient it is given.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { AgentDecodeError, AgentError, AgentNetworkError } from "../../src/agent/errors.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { CAConfiguration, IntentionInput } from "../../src/agent/types.ts";
import { type RunningDevAgent, startDevAgent } from "../../src/devagent/server.ts";

function devAgent(): Promise<RunningDevAgent> {
  return startDevAgent({ blockingJitter: false, rotationJitterMs: 0 });
}

/** An operator client on a fresh agent client of the double. */
function operatorFor(dev: { address: string }): OperatorClient {
  return new OperatorClient({ address: dev.address });
}

/** The AgentError a failed call rejects with (fails the test when it resolves or throws another). */
async function agentError(call: Promise<unknown>): Promise<AgentError> {
  const err = await call.then(() => undefined, (e) => e);
  assert.ok(err instanceof AgentError, `expected an AgentError, got ${err}`);
  return err;
}

Deno.test("operator: CA configuration is read and written; new key bits rotate the root", async () => {
  await using dev = await devAgent();
  await using operator = operatorFor(dev);
  const before = await operator.caConfiguration();
  assert.equal(before.Provider, "consul");
  assert.equal(typeof before.Config.LeafCertTTL, "string");

  await operator.setCAConfiguration({
    Provider: "consul",
    Config: { ...before.Config, LeafCertTTL: "24h" },
  });
  const after = await operator.caConfiguration();
  assert.equal(after.Config.LeafCertTTL, "24h");
  assert.ok(after.ModifyIndex! > before.ModifyIndex!, "the write moved the index");

  const rootBefore = (await operator.agent.roots()).value.ActiveRootID;
  await operator.setCAConfiguration({
    Provider: "consul",
    Config: { ...after.Config, PrivateKeyType: "ec", PrivateKeyBits: 384 },
  });
  const roots = (await operator.agent.roots()).value;
  assert.notEqual(roots.ActiveRootID, rootBefore, "a new key is a new root");
});

Deno.test("operator: CA configuration errors name the endpoint and keep Consul's text", async () => {
  await using dev = await devAgent();
  await using operator = operatorFor(dev);
  const bad = await agentError(operator.setCAConfiguration({
    Provider: "consul",
    Config: {},
    Bogus: true,
  } as CAConfiguration));
  assert.equal(bad.status, 400);
  assert.equal(bad.endpoint, "PUT /v1/connect/ca/configuration");
  assert.equal(bad.consulMessage, 'Request decode failed: json: unknown field "Bogus"');
  assert.equal(bad.retryable, false);
  assert.match(bad.message, /^PUT \/v1\/connect\/ca\/configuration: 400 Request decode failed/);

  const ttl = await agentError(operator.setCAConfiguration({
    Provider: "consul",
    Config: { LeafCertTTL: "soon" },
  }));
  assert.equal(ttl.status, 500);
  assert.equal(ttl.consulMessage, "Invalid LeafCertTTL: soon");

  dev.faults.add({
    path: "/v1/connect/ca/configuration",
    status: 403,
    body: "Permission denied: token with AccessorID 'abc' lacks permission 'operator:read'",
  });
  const denied = await agentError(operator.caConfiguration());
  assert.equal(denied.endpoint, "GET /v1/connect/ca/configuration");
  assert.equal(denied.status, 403);
  assert.equal(denied.missingPermission, "operator:read");
});

Deno.test("operator: intention create, read, replace and delete; authorize follows", async () => {
  await using dev = await devAgent();
  await using agent = new AgentClient({ address: dev.address });
  const operator = new OperatorClient(agent);
  const uri = `spiffe://${dev.ca.trustDomain}/ns/default/dc/dc1/svc/web`;
  const authorized = async () =>
    (await agent.authorize({ Target: "db", ClientCertURI: uri })).Authorized;

  assert.equal(await operator.intention("web", "db"), undefined, "none yet: undefined, no error");
  assert.equal(await operator.upsertIntention("web", "db", { Action: "deny" }), true);
  const created = await operator.intention("web", "db");
  assert.equal(created?.SourceName, "web");
  assert.equal(created?.DestinationName, "db");
  assert.equal(created?.Action, "deny");
  assert.equal(created?.Precedence, 9);
  assert.equal(await authorized(), false);

  await operator.upsertIntention("web", "db", { Action: "allow", Description: "ok now" });
  const replaced = await operator.intention("web", "db");
  assert.equal(replaced?.Action, "allow");
  assert.equal(replaced?.Description, "ok now");
  assert.equal(await authorized(), true);

  await operator.upsertIntention("*", "db", { Action: "deny" });
  assert.deepEqual(
    (await agent.intentions()).value.map((i) => `${i.SourceName}->${i.DestinationName}`),
    ["web->db", "*->db"],
    "the proxy's read sees the operator's writes, highest precedence first",
  );
  await operator.deleteIntention("web", "db");
  await operator.deleteIntention("web", "db"); // a missing one is not an error
  assert.equal(await operator.intention("web", "db"), undefined);
  assert.equal(await authorized(), false, "the wildcard deny decides now");
  await operator.deleteIntention("*", "db");
  assert.deepEqual((await agent.intentions()).value, []);
});

Deno.test("operator: intention errors name the endpoint and keep Consul's text", async () => {
  await using dev = await devAgent();
  await using operator = operatorFor(dev);
  const unknown = await agentError(
    operator.upsertIntention("web", "db", { Action: "deny", Bogus: 1 } as IntentionInput),
  );
  assert.equal(unknown.status, 400);
  assert.equal(unknown.endpoint, "PUT /v1/connect/intentions/exact");
  assert.equal(unknown.consulMessage, 'Request decode failed: json: unknown field "Bogus"');

  const noAction = await agentError(operator.upsertIntention("web", "db", {}));
  assert.equal(noAction.status, 500);
  assert.equal(noAction.consulMessage, "Sources[0].Action must be set to 'allow' or 'deny'");

  const badName = await agentError(operator.intention("a/b/c/d", "db"));
  assert.equal(badName.endpoint, "GET /v1/connect/intentions/exact");
  assert.match(badName.consulMessage, /source "a\/b\/c\/d" is invalid/);

  const badDelete = await agentError(operator.deleteIntention("", "db"));
  assert.equal(badDelete.endpoint, "DELETE /v1/connect/intentions/exact");
  assert.equal(badDelete.consulMessage, "required query parameter 'source' not set");
});

Deno.test("operator: config entries are written and deleted; the discovery chain follows", async () => {
  await using dev = await devAgent();
  await using operator = operatorFor(dev);
  await operator.putConfigEntry({ Kind: "service-resolver", Name: "db", ConnectTimeout: "3s" });
  const chain = (await operator.agent.discoveryChain("db")).value;
  assert.equal(chain.Nodes["resolver:db.default.default.dc1"]?.Resolver?.ConnectTimeout, "3s");
  await operator.deleteConfigEntry("service-resolver", "db");
  await operator.deleteConfigEntry("service-resolver", "db"); // idempotent, as Consul's
  assert.equal((await operator.agent.discoveryChain("db")).value.Default, true);
});

Deno.test("operator: config entry errors name the endpoint and keep Consul's text", async () => {
  await using dev = await devAgent();
  await using operator = operatorFor(dev);
  const kind = await agentError(operator.putConfigEntry({ Kind: "nope", Name: "db" }));
  assert.equal(kind.status, 400);
  assert.equal(kind.endpoint, "PUT /v1/config");
  assert.equal(kind.consulMessage, "invalid config entry kind: nope");
  assert.equal(kind.message, "PUT /v1/config: 400 invalid config entry kind: nope");

  const name = await agentError(operator.putConfigEntry({ Kind: "service-defaults", Name: "" }));
  assert.equal(name.status, 400);
  assert.equal(name.consulMessage, "Name is required");

  const del = await agentError(operator.deleteConfigEntry("nope", "d b"));
  assert.equal(del.status, 400);
  assert.equal(del.endpoint, "DELETE /v1/config/nope/d%20b", "path segments are encoded");
  assert.equal(del.consulMessage, "invalid config entry kind: nope");
});

Deno.test("operator: prepared queries are created, executed by the proxy's client, deleted", async () => {
  await using dev = await devAgent();
  await using operator = operatorFor(dev);
  const id = await operator.createPreparedQuery({ Name: "db-near", Service: { Service: "db" } });
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.equal((await operator.agent.preparedQuery("db-near")).Service, "db");
  assert.equal((await operator.agent.preparedQuery(id)).Service, "db", "by ID as well");
  await operator.deletePreparedQuery(id);
  const gone = await agentError(operator.agent.preparedQuery("db-near"));
  assert.equal(gone.status, 404);
  assert.equal(gone.consulMessage, "Query not found");
});

Deno.test("operator: prepared-query errors name the endpoint and keep Consul's text", async () => {
  await using dev = await devAgent();
  await using operator = operatorFor(dev);
  const unbound = await agentError(operator.createPreparedQuery({ Service: { Service: "db" } }));
  assert.equal(unbound.endpoint, "POST /v1/query");
  assert.equal(unbound.status, 500);
  assert.equal(unbound.consulMessage, "Invalid prepared query: Must be bound to a session");

  await operator.createPreparedQuery({ Name: "q", Service: { Service: "db" } });
  const twice = await agentError(
    operator.createPreparedQuery({ Name: "q", Service: { Service: "db" } }),
  );
  assert.equal(twice.consulMessage, "raft apply failed: name 'q' aliases an existing query name");

  const missing = crypto.randomUUID();
  const del = await agentError(operator.deletePreparedQuery(missing));
  assert.equal(del.endpoint, `DELETE /v1/query/${missing}`);
  assert.equal(del.consulMessage, `Cannot modify non-existent prepared query: '${missing}'`);

  dev.faults.add({ path: "/v1/query", method: "POST", status: 403, body: "Permission denied" });
  const denied = await agentError(
    operator.createPreparedQuery({ Name: "r", Service: { Service: "db" } }),
  );
  assert.equal(denied.status, 403);
  assert.equal(denied.consulMessage, "Permission denied");
  assert.match(denied.message, /^POST \/v1\/query: 403 Permission denied/);
});

Deno.test("operator: a body that is not what the endpoint promises is a decode error", async () => {
  const operator = new OperatorClient({
    fetch: () => Promise.resolve(new Response(JSON.stringify({ Id: "lowercase" }))),
  });
  const err = await operator.createPreparedQuery({ Name: "q", Service: { Service: "db" } })
    .catch((e) => e);
  assert.ok(err instanceof AgentDecodeError, String(err));
  assert.equal(err.endpoint, "POST /v1/query");
  assert.equal(err.detail, "$.ID: expected a string");

  const notBool = new OperatorClient({ fetch: () => Promise.resolve(new Response('"yes"')) });
  const e2 = await notBool.upsertIntention("web", "db", { Action: "allow" }).catch((e) => e);
  assert.ok(e2 instanceof AgentDecodeError, String(e2));
  assert.equal(e2.endpoint, "PUT /v1/connect/intentions/exact");
});

Deno.test("operator: an unreachable agent is a network error naming the endpoint", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await using operator = new OperatorClient({ address: `127.0.0.1:${port}` });
  const err = await operator.deleteConfigEntry("service-resolver", "db").catch((e) => e);
  assert.ok(err instanceof AgentNetworkError, String(err));
  assert.match(err.message, /^DELETE \/v1\/config\/service-resolver\/db: agent unreachable/);
  assert.equal(err.retryable, true);
});

Deno.test("operator: rides on the agent client's transport, token, namespace and base URL", async () => {
  const seen: Request[] = [];
  let closed = 0;
  const fakeFetch = Object.assign(
    (input: string | URL | Request, init?: RequestInit) => {
      seen.push(new Request(input, init));
      return Promise.resolve(new Response("true"));
    },
    { close: () => void closed++ },
  );
  const agent = new AgentClient({
    address: "https://consul.internal:8501",
    token: "t0k",
    namespace: "team",
    fetch: fakeFetch,
  });
  const shared = new OperatorClient(agent);
  assert.equal(shared.agent, agent);
  await shared.upsertIntention("web", "db", { Action: "allow" });
  const [put] = seen;
  assert.ok(put);
  assert.equal(put.method, "PUT");
  assert.equal(put.headers.get("X-Consul-Token"), "t0k");
  const url = new URL(put.url);
  assert.equal(url.origin, "https://consul.internal:8501");
  assert.equal(url.pathname, "/v1/connect/intentions/exact");
  assert.equal(url.searchParams.get("ns"), "team");
  assert.equal(url.searchParams.get("source"), "web");
  assert.equal(url.searchParams.get("destination"), "db");
  assert.deepEqual(await put.json(), { SourceType: "consul", Action: "allow" });

  // Closing an operator client built on a shared agent client leaves that client open.
  await shared.close();
  assert.equal(closed, 0);
  // Built from options, it owns its agent client and closes it (and its fetch's pool), once.
  const own = new OperatorClient({ token: "t0k", fetch: fakeFetch });
  assert.notEqual(own.agent, agent);
  assert.equal(own.agent.hasToken, true);
  await own.putConfigEntry({ Kind: "service-defaults", Name: "db", Protocol: "tcp" });
  assert.equal(seen[1]?.headers.get("X-Consul-Token"), "t0k");
  await own[Symbol.asyncDispose]();
  assert.equal(closed, 1);
  await agent.close();
});

Deno.test("operator: the token stays out of logs", () => {
  const operator = new OperatorClient({ address: "127.0.0.1:8500", token: "s3cr3t" });
  const shown = Deno.inspect(operator);
  assert.equal(shown, "OperatorClient(http://127.0.0.1:8500, token: <redacted>)");
  assert.doesNotMatch(JSON.stringify(operator.agent), /s3cr3t/);
});

Deno.test("operator-only methods are not on AgentClient", () => {
  const agent = new AgentClient({ fetch: () => Promise.resolve(new Response("null")) });
  const moved = [
    "caConfiguration",
    "setCAConfiguration",
    "intention",
    "upsertIntention",
    "deleteIntention",
    "putConfigEntry",
    "deleteConfigEntry",
    "createPreparedQuery",
    "deletePreparedQuery",
  ] as const;
  for (const name of moved) {
    assert.equal(name in agent, false, `AgentClient.${name} is gone`);
    assert.equal(typeof OperatorClient.prototype[name], "function", `OperatorClient.${name}`);
  }
  // What a proxy uses stays: reads, watches, intention match, prepared-query execution.
  for (const name of ["intentions", "intentionMatch", "watchIntentionMatch", "preparedQuery"]) {
    assert.equal(typeof (agent as unknown as Record<string, unknown>)[name], "function", name);
  }
  // The same at the type level: each line below fails `deno check` if the method comes back.
  const typeLevel = (a: AgentClient) => [
    // @ts-expect-error operator-only: OperatorClient.caConfiguration
    a.caConfiguration,
    // @ts-expect-error operator-only: OperatorClient.setCAConfiguration
    a.setCAConfiguration,
    // @ts-expect-error operator-only: OperatorClient.intention
    a.intention,
    // @ts-expect-error operator-only: OperatorClient.upsertIntention
    a.upsertIntention,
    // @ts-expect-error operator-only: OperatorClient.deleteIntention
    a.deleteIntention,
    // @ts-expect-error operator-only: OperatorClient.putConfigEntry
    a.putConfigEntry,
    // @ts-expect-error operator-only: OperatorClient.deleteConfigEntry
    a.deleteConfigEntry,
    // @ts-expect-error operator-only: OperatorClient.createPreparedQuery
    a.createPreparedQuery,
    // @ts-expect-error operator-only: OperatorClient.deletePreparedQuery
    a.deletePreparedQuery,
  ];
  assert.deepEqual(typeLevel(agent), moved.map(() => undefined));
});
