// reauthorize() (src/inbound/reauthorize.ts): one re-check round of open inbound connections
// after an intention change, on stand-in gateways and agent — what it closes, what it keeps, what
// it asks the agent, and what it reports. The whole path (a real proxy, the test double, a
// deny written while a connection is open) is tests/e2e/reauthorize_test.ts; the grace period on
// fake time is tests/runtime/mesh_runtime_test.ts.
import assert from "node:assert/strict";
import type { AgentClient } from "../../src/agent/client.ts";
import type { AuthorizeRequest, AuthorizeResult, Intention } from "../../src/agent/types.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import type { ReauthorizeRound } from "../../src/events/lifecycle.ts";
import type { InboundGateway } from "../../src/inbound/gateway.ts";
import { reauthorize } from "../../src/inbound/reauthorize.ts";
import { silentLogger } from "../../src/net/log.ts";

const spiffe = (svc: string) =>
  `spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/${svc}`;

/** An open connection whose pipe records whether (and why) it was cut. */
function openConnection(svc: string, remote = "127.0.0.1:5000") {
  const cut: (Error | undefined)[] = [];
  return {
    peer: spiffe(svc),
    remote,
    since: Date.now(),
    cut,
    pipe: {
      closed: new Promise<never>(() => {}),
      stats: { aToB: 0, bToA: 0 },
      destroy: (reason?: Error) => void cut.push(reason),
    },
  };
}

/** A gateway stand-in: its open connections, and how often its authorize answers were forgotten. */
function gateway(conns: ReturnType<typeof openConnection>[]) {
  const g = {
    forgotten: 0,
    connections: new Set(conns),
    forgetAuthorizations: () => g.forgotten++,
  };
  return g;
}

/** An agent that answers authorize from `answer` (or fails), counting the calls. */
function agent(answer: (req: AuthorizeRequest) => AuthorizeResult | Error) {
  const asked: AuthorizeRequest[] = [];
  const client = {
    authorize: (req: AuthorizeRequest) => {
      asked.push(req);
      const a = answer(req);
      return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
    },
  };
  return { client: client as unknown as AgentClient, asked };
}

const intention = (source: string, action: "allow" | "deny", precedence = 9): Intention =>
  ({
    SourceNS: "default",
    SourceName: source,
    DestinationNS: "default",
    DestinationName: "db",
    SourcePartition: "default",
    Action: action,
    Precedence: precedence,
  }) as Intention;

async function round(
  gws: ReturnType<typeof gateway>[],
  intentions: Intention[],
  ask: ReturnType<typeof agent>,
) {
  const events: (ConnectionEvent | ({ type: "reauthorized" } & ReauthorizeRound))[] = [];
  const result = await reauthorize({
    agent: ask.client,
    service: "db",
    gateways: () => gws as unknown as InboundGateway[],
    log: silentLogger,
    emit: (e) => events.push(e),
  }, intentions);
  return { result, events };
}

Deno.test("reauthorize: a caller a fresh intention denies has every open connection cut, in every gateway", async () => {
  const web1 = openConnection("web", "127.0.0.1:1");
  const web2 = openConnection("web", "127.0.0.1:2");
  const api = openConnection("api");
  const a = gateway([web1, api]);
  const b = gateway([web2]); // a retired listener still draining
  const ask = agent(() => new Error("the list decides: the agent is not asked"));
  const { result, events } = await round([a, b], [intention("web", "deny")], ask);
  assert.deepEqual(result.checked.sort(), [spiffe("api"), spiffe("web")]);
  assert.deepEqual(result.denied.map((d) => d.peer), [spiffe("web")]);
  assert.match(result.denied[0]!.reason, /Matched L4 intention: default\/web => default\/db/);
  assert.equal(web1.cut.length, 1);
  assert.equal(web2.cut.length, 1);
  assert.match(String(web1.cut[0]?.message), /authorization revoked/);
  assert.equal(api.cut.length, 0, "a caller no intention matches is asked of the agent, not cut");
  assert.deepEqual(ask.asked.map((r) => r.ClientCertURI), [spiffe("api")]);
  assert.equal(a.forgotten + b.forgotten, 2, "cached answers predate the change: forgotten");
  const revoked = events.filter((e) => e.type === "revoked");
  assert.equal(revoked.length, 2);
  assert.equal(events[0]?.type, "reauthorized", "the round is reported before the closes");
});

Deno.test("reauthorize: an allowing intention keeps the caller even when the agent (lagging) would deny", async () => {
  const web = openConnection("web");
  const ask = agent(() => ({ Authorized: false, Reason: "stale deny" }));
  const { result } = await round([gateway([web])], [intention("web", "allow")], ask);
  assert.deepEqual(result.denied, []);
  assert.equal(web.cut.length, 0);
  assert.equal(ask.asked.length, 0, "the list decided");
});

Deno.test("reauthorize: with no matching intention the agent decides; its deny cuts, its failure keeps", async () => {
  const denied = openConnection("billing");
  const unknown = openConnection("web");
  const ask = agent((req) =>
    req.ClientCertURI === spiffe("billing")
      ? { Authorized: false, Reason: "Default behavior configured by ACLs" }
      : new Error("agent unreachable")
  );
  const { result } = await round([gateway([denied, unknown])], [intention("api", "deny")], ask);
  assert.deepEqual(result.denied.map((d) => d.peer), [spiffe("billing")]);
  assert.deepEqual(result.failed, [spiffe("web")]);
  assert.equal(denied.cut.length, 1);
  assert.equal(unknown.cut.length, 0, "a control-plane outage must not cut healthy connections");
  assert.equal(ask.asked[0]?.Target, "db");
});

Deno.test("reauthorize: a precedence-ordered list decides by its first match (a wildcard deny below an exact allow)", async () => {
  const web = openConnection("web");
  const api = openConnection("api");
  const list = [intention("web", "allow", 9), intention("*", "deny", 8)];
  const { result } = await round([gateway([web, api])], list, agent(() => new Error("not asked")));
  assert.deepEqual(result.denied.map((d) => d.peer), [spiffe("api")]);
  assert.equal(web.cut.length, 0);
  assert.equal(api.cut.length, 1);
});
