// The leaf and roots feeds on fake time, against a scripted agent that renews nothing unless
// told: the leaf watchdog (no renewal by the expiry margin → warn, ask again, back off), an
// expired leaf refused and asked for again, and problems set and cleared.
import assert from "node:assert/strict";
import { AgentError } from "../../src/agent/errors.ts";
import { ConnectCA } from "../../src/devagent/ca.ts";
import type { LifecycleEvent } from "../../src/events/lifecycle.ts";
import { createLogger } from "../../src/net/log.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import { describeFailure, feedLeaf, feedRoots } from "../../src/runtime/feed.ts";
import { scriptedAgent } from "./_agent.ts";
import { fakeTime, settled } from "../_fake_time.ts";

const LEAF = "/v1/agent/connect/ca/leaf/db";
const MINUTE = 60_000;

/** The roots and leaf feeds of `db` on a scripted agent, with what they report. */
function feeds(agent: ReturnType<typeof scriptedAgent>, expiryMarginMs?: number) {
  const material = new TlsMaterial();
  const stop = new AbortController();
  const events: LifecycleEvent[] = [];
  const warnings: string[] = [];
  const problems = {
    roots: undefined as string | undefined,
    leaf: undefined as string | undefined,
  };
  const log = createLogger({
    level: "warn",
    json: true,
    write: (line) => warnings.push(JSON.parse(line)["@message"]),
  });
  const common = {
    agent: agent.agent,
    material,
    signal: stop.signal,
    log,
    emit: events.push.bind(events),
  };
  const running = Promise.all([
    feedRoots({ ...common, problem: (t) => (problems.roots = t) }),
    feedLeaf({ ...common, problem: (t) => (problems.leaf = t), service: "db", expiryMarginMs }),
  ]);
  return {
    material,
    events,
    warnings,
    problems,
    async [Symbol.asyncDispose]() {
      stop.abort();
      await running;
      await agent.agent.close();
    },
  };
}

Deno.test("feedLeaf watchdog: no renewal by the expiry margin → warns and asks again after 1, 2, 4, 8, 16, 30, 30 s; a renewal ends it", async () => {
  const ca = await ConnectCA.create();
  // A 2 h leaf; a 10 min margin comes before 5 % of the lifetime (6 min).
  const issued = await ca.signLeaf("db", { ttlMs: 2 * 60 * MINUTE });
  using time = fakeTime();
  const agent = scriptedAgent(ca);
  agent.leaf("db", issued);
  await using f = feeds(agent, 10 * MINUTE);
  await settled(time, () => f.material.leaf !== undefined, "the leaf");
  assert.equal(agent.asks(LEAF).length, 1, "asked once; then blocking reads");
  const watchdogAt = issued.validBefore.getTime() - 10 * MINUTE;

  await time.tickAsync(watchdogAt - Date.now() - 1);
  assert.equal(agent.asks(LEAF).length, 1, "no re-ask before the margin");
  assert.deepEqual(f.warnings, []);
  await time.tickAsync(1);
  await settled(time, () => agent.asks(LEAF).length === 2, "the watchdog's re-ask");
  assert.deepEqual(f.warnings, ["no renewed leaf from the agent yet; asking again"]);
  for (const ms of [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]) {
    const n = agent.asks(LEAF).length;
    await time.tickAsync(ms - 1);
    assert.equal(agent.asks(LEAF).length, n, `not before ${ms} ms`);
    await time.tickAsync(1);
    await settled(time, () => agent.asks(LEAF).length === n + 1, `the re-ask after ${ms} ms`);
  }
  const asked = agent.asks(LEAF).map((q) => q.at - watchdogAt);
  assert.deepEqual(asked.slice(1), [0, 1000, 3000, 7000, 15_000, 31_000, 61_000, 91_000]);
  assert.equal(f.material.leaf!.cert.SerialNumber, issued.cert.SerialNumber, "kept meanwhile");

  // The agent renews: installed, and the watchdog stands down until the new leaf's margin.
  const renewed = await ca.signLeaf("db", { ttlMs: 2 * 60 * MINUTE });
  agent.leaf("db", renewed);
  await settled(
    time,
    () => f.material.leaf?.cert.SerialNumber === renewed.cert.SerialNumber,
    "the renewal",
  );
  const n = agent.asks(LEAF).length;
  await time.tickAsync(10 * MINUTE);
  assert.equal(agent.asks(LEAF).length, n, "no more re-asks after the renewal");
  assert.ok(
    f.events.some((e) => e.type === "leaf" && e.renewed && e.serial === renewed.cert.SerialNumber),
  );
});

Deno.test("feedLeaf watchdog: 95 % of the lifetime gone comes first when the margin is smaller", async () => {
  const ca = await ConnectCA.create();
  const issued = await ca.signLeaf("db", { ttlMs: 2 * 60 * MINUTE });
  using time = fakeTime();
  const agent = scriptedAgent(ca);
  agent.leaf("db", issued);
  await using f = feeds(agent, MINUTE); // 1 min < 5 % of 2 h (6 min)
  await settled(time, () => f.material.leaf !== undefined, "the leaf");
  const lifetime = issued.validBefore.getTime() - issued.validAfter.getTime();
  const watchdogAt = issued.validBefore.getTime() - lifetime * 0.05;
  await time.tickAsync(watchdogAt - Date.now() - 1);
  assert.equal(agent.asks(LEAF).length, 1);
  await time.tickAsync(1);
  await settled(time, () => agent.asks(LEAF).length === 2, "the watchdog's re-ask");
});

Deno.test("feedLeaf watchdog: a margin further than a day away still waits for it (no stale alarm after 24 h)", async () => {
  const ca = await ConnectCA.create();
  // Consul's default 72 h leaf: the watchdog is due at 95 % of the lifetime, 68.4 h in.
  const issued = await ca.signLeaf("db", { ttlMs: 72 * 60 * MINUTE });
  using time = fakeTime();
  const agent = scriptedAgent(ca);
  agent.leaf("db", issued);
  await using f = feeds(agent);
  await settled(time, () => f.material.leaf !== undefined, "the leaf");
  const lifetime = issued.validBefore.getTime() - issued.validAfter.getTime();
  const watchdogAt = issued.validBefore.getTime() - lifetime * 0.05;
  await time.tickAsync(24 * 60 * MINUTE + 1);
  await time.tickAsync(60_000); // any backoff re-ask would have come by now
  assert.deepEqual(f.warnings, [], "a valid leaf called stale after 24 h");
  assert.equal(agent.asks(LEAF).length, 1, "no re-ask a day in");
  await time.tickAsync(watchdogAt - Date.now() - 1);
  assert.equal(agent.asks(LEAF).length, 1, "no re-ask before the margin");
  await time.tickAsync(1);
  await settled(time, () => agent.asks(LEAF).length === 2, "the watchdog's re-ask at the margin");
  assert.deepEqual(f.warnings, ["no renewed leaf from the agent yet; asking again"]);
});

Deno.test("feedLeaf: an expired leaf is refused, said, and asked for again with backoff until a good one comes", async () => {
  const ca = await ConnectCA.create();
  const expired = await ca.signLeaf("db", {
    notBefore: new Date(Date.now() - 2 * 60 * MINUTE),
    ttlMs: 60 * MINUTE,
  });
  using time = fakeTime();
  const agent = scriptedAgent(ca);
  agent.leaf("db", expired);
  await using f = feeds(agent);
  await settled(time, () => f.problems.leaf !== undefined, "the refusal");
  assert.match(f.problems.leaf!, /^leaf: refused the agent's leaf: /);
  assert.equal(f.material.leaf, undefined, "never installed");
  assert.equal(agent.asks(LEAF).length, 1);
  for (const ms of [1000, 1000, 2000]) {
    const n = agent.asks(LEAF).length;
    await time.tickAsync(ms - 1);
    assert.equal(agent.asks(LEAF).length, n, `not before ${ms} ms`);
    await time.tickAsync(1);
    await settled(time, () => agent.asks(LEAF).length === n + 1, `the re-ask after ${ms} ms`);
  }
  const good = await ca.signLeaf("db");
  agent.leaf("db", good);
  await settled(time, () => f.material.leaf !== undefined, "the good leaf");
  assert.equal(f.material.leaf!.cert.SerialNumber, good.cert.SerialNumber);
  assert.equal(f.problems.leaf, undefined, "the problem is cleared");
  assert.ok(
    !f.events.some((e) => e.type === "leaf" && e.serial === expired.cert.SerialNumber),
    "the expired leaf was never announced",
  );
  const n = agent.asks(LEAF).length;
  await time.tickAsync(60_000);
  assert.equal(agent.asks(LEAF).length, n, "no more re-asks once a good leaf is in");
});

Deno.test("feedLeaf: the agent's refusal is the problem until it hands a leaf out", async () => {
  const ca = await ConnectCA.create();
  using time = fakeTime();
  const agent = scriptedAgent(ca);
  agent.leafError("db", 403, "Permission denied: token lacks permission 'service:write' on \"db\"");
  await using f = feeds(agent);
  await settled(time, () => f.problems.leaf !== undefined, "the problem");
  assert.equal(
    f.problems.leaf,
    "leaf: /v1/agent/connect/ca/leaf/db: HTTP 403: " +
      "Permission denied: token lacks permission 'service:write' on \"db\"",
  );
  assert.equal(f.problems.roots, undefined, "the roots came");
  agent.leaf("db", await ca.signLeaf("db"));
  await time.tickAsync(1000); // the watch's backoff after the 403
  await settled(time, () => f.material.leaf !== undefined, "the leaf");
  assert.equal(f.problems.leaf, undefined);
});

Deno.test("describeFailure: the path, the status and Consul's own text, or the error's message", () => {
  assert.equal(
    describeFailure(new AgentError("GET /v1/agent/service/web-proxy", 404, "")),
    "/v1/agent/service/web-proxy: HTTP 404: not found",
  );
  assert.equal(
    describeFailure(new AgentError("GET /v1/agent/connect/ca/leaf/web", 403, "Permission denied")),
    "/v1/agent/connect/ca/leaf/web: HTTP 403: Permission denied",
  );
  assert.equal(
    describeFailure(new Error("GET /v1/agent/connect/ca/roots: agent unreachable: refused")),
    "/v1/agent/connect/ca/roots: agent unreachable: refused",
  );
  assert.equal(describeFailure("plain"), "plain");
});
