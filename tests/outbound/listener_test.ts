// An upstream whose chain or endpoints never arrive refuses its clients after the connect
// timeout, with a reason of its own, counted and logged — never holds them open (issue #14).
import assert from "node:assert/strict";
import type net from "node:net";
import { AgentClient } from "../../src/agent/client.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { createLogger } from "../../src/net/log.ts";
import { startUpstream, type UpstreamListener } from "../../src/outbound/listener.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import { clientFor, devAgent, freePort } from "../_helpers.ts";
import { tcpClient } from "../e2e/_net.ts";

/** An upstream listener for `db` with events and warnings collected. */
async function dbUpstream(agent: AgentClient, connectTimeoutMs: number) {
  const events: ConnectionEvent[] = [];
  const logs: string[] = [];
  const listener = await startUpstream({
    agent,
    material: new TlsMaterial(),
    upstream: {
      type: "service",
      name: "db",
      bind: { hostname: "127.0.0.1", port: 0 },
      connectTimeoutMs,
    },
    log: createLogger({ level: "warn", json: true, write: (l) => logs.push(l) }),
    onEvent: (e) => events.push(e),
  });
  return { listener, events, logs };
}

/** Connects a client and resolves with how long it took until the proxy closed it (≤ 10 s). */
async function closedAfterMs(listener: UpstreamListener): Promise<number> {
  const started = Date.now();
  const client = await tcpClient((listener.address as { port: number }).port);
  client.on("error", () => {});
  client.write("hello?");
  const closed = new Promise<void>((r) => client.once("close", () => r()));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const held = new Promise<"held">((r) => (timer = setTimeout(() => r("held"), 10_000)));
  const result = await Promise.race([closed, held]);
  clearTimeout(timer);
  (client as net.Socket).destroy();
  assert.notEqual(result, "held", "the client was held open for 10 s");
  return Date.now() - started;
}

function refusals(events: ConnectionEvent[]) {
  return events.flatMap((e) => e.type === "refused" ? [e.refusal] : []);
}

Deno.test("upstream: the agent answers 403 for the chain → the client is refused (chain_unavailable)", async () => {
  await using dev = await devAgent();
  dev.faults.add({ path: "/v1/discovery-chain/db", status: 403, body: "Permission denied" });
  await using agent = clientFor(dev);
  const { listener, events, logs } = await dbUpstream(agent, 500);
  try {
    const ms = await closedAfterMs(listener);
    assert.ok(ms >= 450, `refused after ${ms} ms, before the connect timeout`);
    const [refusal] = refusals(events);
    assert.equal(refusal?.reason, "chain_unavailable");
    assert.match(refusal.detail, /no discovery chain for db from the agent within 500 ms/);
    assert.match(refusal.detail, /403 Permission denied/);
    assert.ok(
      logs.some((l) => l.includes("upstream connection failed") && l.includes("chain_unavailable")),
      logs.join("\n"),
    );
  } finally {
    await listener.close();
  }
});

Deno.test("upstream: the agent answers 403 for health → the client is refused (endpoints_unavailable)", async () => {
  await using dev = await devAgent();
  dev.faults.add({ path: "/v1/health/connect/db", status: 403, body: "Permission denied" });
  await using agent = clientFor(dev);
  const { listener, events } = await dbUpstream(agent, 500);
  try {
    await closedAfterMs(listener);
    const [refusal] = refusals(events);
    assert.equal(refusal?.reason, "endpoints_unavailable");
    assert.match(
      refusal.detail,
      /no endpoint list for db\.default\.default\.dc1 .*403 Permission denied/,
    );
  } finally {
    await listener.close();
  }
});

Deno.test("upstream: the agent is down at start → refused (chain_unavailable); once it is up, the agent decides", async () => {
  const port = freePort();
  await using agent = new AgentClient({
    address: `127.0.0.1:${port}`,
    watchDefaults: { minIntervalMs: 0, backoffBaseMs: 20, backoffMaxMs: 100 },
  });
  const { listener, events } = await dbUpstream(agent, 500);
  try {
    await closedAfterMs(listener);
    assert.equal(refusals(events)[0]?.reason, "chain_unavailable");
    // The agent comes up (nothing registered): the next client is refused for what the agent
    // says — no healthy db — not for want of an answer.
    await using _dev = await devAgent({ port });
    let reason: string | undefined;
    for (let i = 0; i < 20 && reason !== "no_endpoint"; i++) {
      await closedAfterMs(listener);
      reason = refusals(events).at(-1)?.reason;
    }
    assert.equal(reason, "no_endpoint");
  } finally {
    await listener.close();
  }
});
