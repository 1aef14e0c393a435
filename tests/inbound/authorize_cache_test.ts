// The authorize cache on its own: fresh answers, the outage fallback, joined calls, and the
// epoch that keeps an answer given before a change (intentions, roots) from being stored or
// used after it. Time is fake; the agent is a function whose answers the test resolves.
import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { AgentError } from "../../src/agent/errors.ts";
import type { AuthorizeResult } from "../../src/agent/types.ts";
import {
  type AuthorizeAnswer,
  AuthorizeCache,
  type AuthorizeCacheOptions,
  type AuthorizeCaller,
} from "../../src/inbound/authorize_cache.ts";
import { nth } from "../_helpers.ts";

const WEB: AuthorizeCaller = {
  uri: "spiffe://1111.consul/ns/default/dc/dc1/svc/web",
  serial: "01",
};
const ALLOW: AuthorizeResult = { Authorized: true, Reason: "Matched L4 intention: allow" };
const DENY: AuthorizeResult = { Authorized: false, Reason: "Default behavior configured by ACLs" };

/** Fake `setTimeout` and `Date`, uninstalled at the end of the scope. */
function fakeTime() {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  return Object.assign(clock, { [Symbol.dispose]: () => clock.uninstall() });
}

/** An agent whose calls wait until the test answers them, oldest first. */
function heldAgent() {
  const calls: {
    caller: AuthorizeCaller;
    signal: AbortSignal;
    answer: PromiseWithResolvers<AuthorizeResult>;
  }[] = [];
  const ask: AuthorizeCacheOptions["ask"] = (caller, { signal }) => {
    const answer = Promise.withResolvers<AuthorizeResult>();
    signal.addEventListener("abort", () => answer.reject(signal.reason), { once: true });
    calls.push({ caller, signal, answer });
    return answer.promise;
  };
  return {
    ask,
    calls,
    /** Answers call `i` (the last by default). */
    answer(result: AuthorizeResult | Error, i = calls.length - 1) {
      const call = nth(calls, i, "authorize call to answer");
      if (result instanceof Error) call.answer.reject(result);
      else call.answer.resolve(result);
    },
  };
}

/** Lets pending promise callbacks run (fake time does not move). */
const settle = (time: { tickAsync(ms: number): Promise<unknown> }) => time.tickAsync(0);

/** The answer's fields the tests compare. */
function gist(a: AuthorizeAnswer) {
  return a.ok
    ? { ok: true, authorized: a.result.Authorized, source: a.source, ageMs: a.ageMs }
    : { ok: false, reason: a.reason, detail: a.detail };
}

Deno.test("authorize cache: an answer is reused for freshMs without asking, then asked again", async () => {
  using time = fakeTime();
  const agent = heldAgent();
  const cache = new AuthorizeCache({ ask: agent.ask, freshMs: 10_000 });
  const first = cache.check(WEB);
  agent.answer(ALLOW);
  assert.deepEqual(gist(await first), { ok: true, authorized: true, source: "agent", ageMs: 0 });
  await time.tickAsync(10_000);
  assert.deepEqual(gist(await cache.check(WEB)), {
    ok: true,
    authorized: true,
    source: "fresh",
    ageMs: 10_000,
  });
  assert.equal(agent.calls.length, 1);
  await time.tickAsync(1);
  const third = cache.check(WEB);
  await settle(time);
  assert.equal(agent.calls.length, 2, "older than freshMs: asked again");
  agent.answer(DENY);
  assert.deepEqual(gist(await third), { ok: true, authorized: false, source: "agent", ageMs: 0 });
});

Deno.test("authorize cache: concurrent checks of one certificate join one call; another serial asks", async () => {
  using time = fakeTime();
  const agent = heldAgent();
  const cache = new AuthorizeCache({ ask: agent.ask });
  const checks = [cache.check(WEB), cache.check(WEB), cache.check({ ...WEB, serial: "02" })];
  await settle(time);
  assert.equal(agent.calls.length, 2);
  agent.answer(ALLOW, 0);
  agent.answer(DENY, 1);
  const answers = (await Promise.all(checks)).map(gist);
  assert.deepEqual(answers.map((a) => a.ok && a.source), ["agent", "joined", "agent"]);
  assert.deepEqual(answers.map((a) => a.ok && a.authorized), [true, true, false]);
  // Without freshMs nothing is reused once the call is over.
  const later = cache.check(WEB);
  await settle(time);
  assert.equal(agent.calls.length, 3);
  agent.answer(ALLOW);
  assert.equal((await later).ok, true);
});

Deno.test("authorize cache: an answer in flight across forget() is neither stored nor current; current() asks again", async () => {
  using time = fakeTime();
  const agent = heldAgent();
  const cache = new AuthorizeCache({ ask: agent.ask, freshMs: 60_000, cacheTtlMs: 60_000 });
  const before = cache.current(WEB);
  await settle(time);
  assert.equal(agent.calls.length, 1);
  cache.forget(); // the allow intention was deleted while the agent answered
  // A connection arriving now does not join the call that began before the change.
  const after = cache.check(WEB);
  await settle(time);
  assert.equal(agent.calls.length, 2, "no joining across a change");
  agent.answer(ALLOW, 0); // computed before the change
  await settle(time);
  // The overtaken allow is asked again: it joins the call that began after the change.
  assert.equal(agent.calls.length, 2);
  agent.answer(DENY, 1);
  assert.deepEqual(gist(await before), { ok: true, authorized: false, source: "joined", ageMs: 0 });
  const later = await after;
  assert.equal(cache.isCurrent(later), true);
  assert.equal(later.ok && later.result.Authorized, false);
  // What is stored is the answer after the change, never the allow from before it.
  const fresh = await cache.check(WEB);
  assert.deepEqual(gist(fresh), { ok: true, authorized: false, source: "fresh", ageMs: 0 });
  assert.equal(agent.calls.length, 2);
});

Deno.test("authorize cache: an answer given before forget() is not current, so the caller re-checks it", async () => {
  using time = fakeTime();
  const agent = heldAgent();
  const cache = new AuthorizeCache({ ask: agent.ask });
  const pending = cache.current(WEB);
  await settle(time);
  agent.answer(ALLOW);
  const answer = await pending;
  assert.equal(cache.isCurrent(answer), true);
  cache.forget(); // e.g. while the application is dialled
  assert.equal(cache.isCurrent(answer), false);
  const again = cache.current(WEB, answer);
  await settle(time);
  assert.equal(agent.calls.length, 2);
  agent.answer(DENY);
  const now = await again;
  assert.equal(cache.isCurrent(now), true);
  assert.equal(now.ok && now.result.Authorized, false);
  // A current answer is returned as is.
  assert.equal(await cache.current(WEB, now), now);
});

Deno.test("authorize cache: changes that keep overtaking the answer end in a refusal after maxReasks", async () => {
  using time = fakeTime();
  const agent = heldAgent();
  const cache = new AuthorizeCache({ ask: agent.ask, maxReasks: 2 });
  const pending = cache.current(WEB);
  for (let i = 0; i < 3; i++) {
    await settle(time);
    assert.equal(agent.calls.length, i + 1);
    cache.forget();
    agent.answer(ALLOW);
  }
  assert.deepEqual(gist(await pending), {
    ok: false,
    reason: "authorize_error",
    detail:
      `authorize: intentions or roots changed 3 times while the agent answered for ${WEB.uri}`,
  });
});

Deno.test("authorize cache: when the agent cannot answer, a recent answer within the TTL is used", async () => {
  using time = fakeTime();
  const agent = heldAgent();
  const cache = new AuthorizeCache({ ask: agent.ask, cacheTtlMs: 30_000 });
  const warm = cache.check(WEB);
  agent.answer(ALLOW);
  await warm;
  await time.tickAsync(20_000);
  const down = cache.check(WEB);
  await settle(time);
  assert.equal(agent.calls.length, 2, "without freshMs the agent is asked");
  const outage = new AgentError("/v1/agent/connect/authorize", 500, "No cluster leader");
  agent.answer(outage);
  const used = await down;
  assert.deepEqual(gist(used), { ok: true, authorized: true, source: "outage", ageMs: 20_000 });
  assert.equal(used.ok && used.error, outage);
  // A 4xx is an answer, not an outage: refused.
  const bad = cache.check(WEB);
  await settle(time);
  agent.answer(new AgentError("/v1/agent/connect/authorize", 403, "Permission denied"));
  assert.equal(gist(await bad).ok, false);
  // Past the TTL: refused (fail closed).
  await time.tickAsync(10_001);
  const late = cache.check(WEB);
  await settle(time);
  agent.answer(outage);
  assert.deepEqual(gist(await late), {
    ok: false,
    reason: "authorize_error",
    detail: outage.message,
  });
});

Deno.test("authorize cache: an allow in flight when forget() came is not kept for an outage", async () => {
  using time = fakeTime();
  const agent = heldAgent();
  const cache = new AuthorizeCache({ ask: agent.ask, cacheTtlMs: 60_000 });
  const pending = cache.check(WEB);
  await settle(time);
  cache.forget();
  agent.answer(ALLOW); // given for the state before the change
  assert.equal(cache.isCurrent(await pending), false);
  const down = cache.check(WEB);
  await settle(time);
  agent.answer(new AgentError("/v1/agent/connect/authorize", 500, "No cluster leader"));
  const answer = await down;
  assert.equal(answer.ok, false, "nothing stored from before the change lets the caller in");
});

Deno.test("authorize cache: no answer within timeoutMs is a timeout, shared by joined checks", async () => {
  using time = fakeTime();
  const agent = heldAgent();
  const cache = new AuthorizeCache({ ask: agent.ask, timeoutMs: 1000 });
  const checks = [cache.check(WEB), cache.check(WEB)];
  await time.tickAsync(999);
  const { signal } = nth(agent.calls, 0, "authorize call");
  assert.equal(signal.aborted, false);
  await time.tickAsync(1);
  assert.equal(signal.aborted, true);
  for (const a of await Promise.all(checks)) {
    assert.deepEqual(gist(a), {
      ok: false,
      reason: "authorize_timeout",
      detail: "authorize: no answer within 1000 ms",
    });
  }
  assert.equal(time.countTimers(), 0, "no timer left behind");
  // An answer clears its deadline too.
  const next = cache.check(WEB);
  await settle(time);
  agent.answer(ALLOW);
  await next;
  assert.equal(time.countTimers(), 0);
});

Deno.test("authorize cache: an ask that throws is an authorize_error, not a crash", async () => {
  using _time = fakeTime();
  const cache = new AuthorizeCache({
    ask: () => {
      throw new TypeError("fetch failed");
    },
  });
  assert.deepEqual(gist(await cache.check(WEB)), {
    ok: false,
    reason: "authorize_error",
    detail: "fetch failed",
  });
});
