import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import {
  type BlockingParams,
  BlockingQuery,
  type BlockingResult,
} from "../../src/agent/blocking.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import { clientFor, devAgent, eventually, next, nth } from "../_helpers.ts";

/** A scripted source: each call takes the next step (a value with an index, or an error). */
function scripted(steps: (BlockingResult<number> | Error)[]) {
  const calls: BlockingParams[] = [];
  const fetch = (p: BlockingParams) => {
    calls.push(p);
    const step = steps.shift();
    if (!step) {
      // Park like a blocking query until the loop stops.
      return new Promise<never>((_, reject) =>
        p.signal.addEventListener("abort", () => reject(p.signal.reason), { once: true })
      );
    }
    return step instanceof Error ? Promise.reject(step) : Promise.resolve(step);
  };
  return { calls, fetch };
}

Deno.test("a roots watch sees a CA rotation within one blocking round trip", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const ac = new AbortController();
  const it = agent.watchRoots().subscribe(ac.signal);
  const first = await next(it);
  assert.equal(first.value.Roots.length, 1);
  const before = agent.watchRoots().status;
  await dev.rotateCA();
  const second = await next(it);
  assert.equal(second.value.Roots.length, 2);
  assert.notEqual(second.value.ActiveRootID, first.value.ActiveRootID);
  assert.equal(second.value.Roots.find((r) => r.ID === second.value.ActiveRootID)!.Active, true);
  assert.equal(agent.watchRoots().status.failures, 0);
  assert.ok(before.running);
  ac.abort();
  await it.return?.();
  await agent.close();
});

Deno.test("blocking query sends the last index and resets it when the index goes backwards", async () => {
  const src = scripted([
    { value: 1, index: 50n },
    { value: 2, index: 60n },
    { value: 3, index: 7n }, // snapshot restore: index went backwards
    { value: 3, index: 7n },
  ]);
  const q = new BlockingQuery(src.fetch, { minIntervalMs: 0, waitMs: 1000 });
  const it = q.subscribe();
  await eventually(() => src.calls.length === 5, 2000, "the loop to park");
  // Consumers see the latest state; the loop went through every step.
  assert.equal((await next(it)).value, 3);
  await it.return?.();
  assert.deepEqual(src.calls.map((c) => c.index), [undefined, 50n, 60n, undefined, 7n]);
  assert.equal(nth(src.calls, 0, "call").waitMs, 1000);
});

Deno.test("blocking query uses index 1, not 0, when the agent sends 0 or no index", async () => {
  const src = scripted([{ value: 1, index: 0n }, { value: 2, index: 0n }]);
  const q = new BlockingQuery(src.fetch, { minIntervalMs: 0 });
  const it = q.subscribe();
  await next(it);
  await next(it);
  await it.return?.();
  assert.equal(nth(src.calls, 1, "second call").index, 1n);
});

Deno.test("blocking query does not deliver unchanged answers (idempotent writes wake watchers)", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const operator = new OperatorClient(agent);
  const it = agent.watchIntentions().subscribe();
  assert.deepEqual((await next(it)).value, []);
  await operator.upsertIntention("web", "db", { Action: "allow" });
  assert.equal((await next(it)).value.length, 1);
  // Same intention again: the index moves, the body does not.
  await operator.upsertIntention("web", "db", { Action: "allow", Description: "" });
  await operator.upsertIntention("api", "db", { Action: "deny" });
  const third = await next(it);
  assert.deepEqual(third.value.map((i) => i.SourceName).sort(), ["api", "web"]);
  await it.return?.();
  await agent.close();
});

Deno.test("blocking query backs off exponentially with full jitter, then recovers and forgets the index", async () => {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  try {
    const src = scripted([
      { value: 1, index: 10n },
      new Error("boom 1"),
      new Error("boom 2"),
      new Error("boom 3"),
      { value: 2, index: 11n },
    ]);
    const delays: number[] = [];
    const q = new BlockingQuery(src.fetch, {
      minIntervalMs: 0,
      backoffBaseMs: 1000,
      backoffMaxMs: 3000,
      random: () => 0.999,
      onError: (_e, info) => delays.push(info.retryInMs),
    });
    const it = q.subscribe();
    assert.equal((await it.next()).value!.value, 1);
    const second = it.next();
    await clock.tickAsync(0);
    assert.equal(q.status.failures, 1);
    await clock.tickAsync(999);
    assert.equal(q.status.failures, 2);
    await clock.tickAsync(1998);
    assert.equal(q.status.failures, 3);
    assert.ok(q.status.backoffUntil! > Date.now());
    await clock.tickAsync(2997);
    assert.equal((await second).value!.value, 2);
    assert.deepEqual(delays, [999, 1998, 2997]); // 1 s, 2 s, then capped at 3 s
    assert.equal(q.status.failures, 0);
    // After errors the index is forgotten: the recovery call does not block.
    assert.equal(nth(src.calls, 4, "recovery call").index, undefined);
    await it.return?.();
  } finally {
    clock.uninstall();
  }
});

Deno.test("blocking query limits its request rate with a token bucket", async () => {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  try {
    let n = 0;
    const calls: number[] = [];
    const q = new BlockingQuery((_p) => {
      calls.push(Date.now());
      return Promise.resolve({ value: ++n, index: BigInt(n) });
    }, { minIntervalMs: 1000, burst: 2 });
    const it = q.subscribe();
    await clock.tickAsync(0);
    assert.equal(calls.length, 2, "the burst goes through at once");
    await clock.tickAsync(999);
    assert.equal(calls.length, 2);
    await clock.tickAsync(1);
    assert.equal(calls.length, 3);
    await it.return?.();
  } finally {
    clock.uninstall();
  }
});

Deno.test("several consumers of one watch share one request loop", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  let requests = 0;
  dev.faults.add({ path: "/v1/agent/connect/ca/roots", latencyMs: 0 });
  const a = agent.watchRoots().subscribe();
  const b = agent.watchRoots().subscribe();
  assert.equal(agent.watchRoots(), agent.watchRoots());
  const [ra, rb] = await Promise.all([next(a), next(b)]);
  assert.equal(ra, rb, "both consumers get the same snapshot object");
  await eventually(() => dev.faults.hits.get("/v1/agent/connect/ca/roots") === 2);
  await new Promise((r) => setTimeout(r, 100));
  requests = dev.faults.hits.get("/v1/agent/connect/ca/roots")!;
  assert.equal(requests, 2, "one initial read plus one parked blocking read, for both consumers");
  await a.return?.();
  assert.equal(agent.watchRoots().subscriberCount, 1);
  await b.return?.();
  assert.equal(agent.watchRoots().status.running, false);
});

Deno.test("aborting the last consumer stops the loop and its request in flight", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const ac = new AbortController();
  const query = agent.watchLeaf("web");
  const it = query.subscribe(ac.signal);
  await next(it);
  ac.abort();
  assert.deepEqual(await it.next(), { value: undefined, done: true });
  assert.equal(query.status.running, false);
  // The sanitizers verify no fetch or timer is left pending.
});

Deno.test("a fatal error ends the watch for its consumers with that error", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const q = agent.watchService("missing", { isFatal: () => true });
  await assert.rejects(next(q.subscribe()), /unknown service ID: missing/);
});

Deno.test("a watch exposes a ReadableStream view", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const ac = new AbortController();
  const reader = agent.watchRoots().stream(ac.signal).getReader();
  const { value } = await reader.read();
  assert.equal(value!.value.TrustDomain, dev.ca.trustDomain);
  ac.abort();
  await reader.cancel();
  await agent.close();
});

Deno.test("a watch keeps retrying through agent errors and resumes when the agent recovers", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const errors: unknown[] = [];
  dev.faults.add({
    path: "/v1/health/connect/db",
    status: 500,
    body: "No cluster leader",
    times: 3,
  });
  const q = agent.watchHealthConnect("db", {}, { onError: (e) => errors.push(e) });
  const it = q.subscribe();
  assert.deepEqual((await next(it)).value, []);
  assert.equal(errors.length, 3);
  assert.match(String(errors[0]), /500 No cluster leader/);
  await it.return?.();
});

Deno.test("blocking query by hash sends the last ContentHash, never an index", async () => {
  const src = scripted([
    { value: 1, hash: "aaa", index: 9n },
    { value: 2, hash: "bbb" },
  ]);
  const q = new BlockingQuery(src.fetch, { mode: "hash", minIntervalMs: 0 });
  const it = q.subscribe();
  await eventually(() => src.calls.length === 3, 2000, "the loop to park");
  assert.deepEqual(src.calls.map((c) => [c.hash, c.index]), [
    [undefined, undefined],
    ["aaa", undefined],
    ["bbb", undefined],
  ]);
  assert.equal((await next(it)).hash, "bbb");
  await it.return?.();
});

Deno.test("blocking query clamps wait to Consul's range (at most 10 minutes, at least 1 ms)", async () => {
  for (const [asked, sent] of [[20 * 60_000, 600_000], [0, 1], [-5, 1], [undefined, 300_000]]) {
    const src = scripted([]);
    const q = new BlockingQuery(src.fetch, { waitMs: asked, minIntervalMs: 0 });
    const it = q.subscribe();
    await eventually(() => src.calls.length === 1, 2000);
    assert.equal(src.calls[0]!.waitMs, sent, String(asked));
    await it.return?.();
  }
});

Deno.test("refresh() abandons the blocking request and asks again at once without an index", async () => {
  const src = scripted([{ value: 1, index: 40n }]);
  const q = new BlockingQuery(src.fetch, { minIntervalMs: 0 });
  const it = q.subscribe();
  assert.equal((await next(it)).value, 1);
  await eventually(() => src.calls.length === 2, 2000, "the blocking request");
  assert.equal(src.calls[1]!.index, 40n);
  q.refresh();
  await eventually(() => src.calls.length === 3, 2000, "the request after refresh()");
  assert.equal(src.calls[1]!.signal.aborted, true, "the blocking one was abandoned");
  assert.equal(src.calls[2]!.index, undefined, "no index: answered at once");
  assert.equal(q.status.failures, 0, "an abandoned request is no failure");
  await it.return?.();
});

Deno.test("blocking query: a slow consumer gets the latest state, not a queue of old ones", async () => {
  const src = scripted([1, 2, 3, 4].map((n) => ({ value: n, index: BigInt(n * 10) })));
  const q = new BlockingQuery(src.fetch, { minIntervalMs: 0 });
  const it = q.subscribe();
  await eventually(() => src.calls.length === 5, 2000, "four answers");
  assert.equal((await next(it)).value, 4);
  const pending = it.next();
  const raced = await Promise.race([
    pending,
    new Promise((r) => setTimeout(() => r("waiting"), 50)),
  ]);
  assert.equal(raced, "waiting", "nothing else is queued");
  await it.return?.();
  assert.equal((await pending).done, true);
});

Deno.test("blocking query: the same body filtered by ACLs (or no longer) is news", async () => {
  // Answered one request at a time, so the consumer sees every state.
  const answers: ((r: BlockingResult<number>) => void)[] = [];
  const q = new BlockingQuery<number>(
    () => new Promise((resolve) => answers.push(resolve)),
    { minIntervalMs: 0 },
  );
  const it = q.subscribe();
  const seen: (boolean | undefined)[] = [];
  const steps: BlockingResult<number>[] = [
    { value: 0, index: 1n },
    { value: 0, index: 2n, resultsFilteredByAcls: true },
    { value: 0, index: 3n, resultsFilteredByAcls: true }, // unchanged: not delivered
    { value: 0, index: 4n },
  ];
  for (const [i, step] of steps.entries()) {
    await eventually(() => answers.length === i + 1, 2000, `request ${i + 1}`);
    answers[i]!(step);
    if (i !== 2) seen.push((await next(it)).resultsFilteredByAcls);
  }
  assert.deepEqual(seen, [undefined, true, undefined]);
  assert.equal(q.latest?.index, 4n);
  const pending = it.return?.();
  await eventually(() => answers.length === 5, 2000);
  answers[4]!({ value: 0, index: 5n }); // the loop stops once its last request settles
  await pending;
});

Deno.test("blocking query counts index resets and reports each one", async () => {
  const resets: { from: bigint; to: bigint }[] = [];
  const src = scripted([{ value: 1, index: 90n }, { value: 2, index: 5n }, {
    value: 3,
    index: 3n,
  }]);
  const q = new BlockingQuery(src.fetch, { minIntervalMs: 0, onIndexReset: (r) => resets.push(r) });
  const it = q.subscribe();
  await eventually(() => src.calls.length === 4, 2000);
  assert.deepEqual(resets, [{ from: 90n, to: 5n }]);
  assert.equal(q.status.indexResets, 1, "5 → 3 after a reset to 0 is not a second one");
  assert.ok(q.status.lastSuccessAt! <= Date.now());
  await it.return?.();
});

Deno.test("blocking query: first() gives the latest snapshot; close() ends every consumer", async () => {
  const src = scripted([{ value: 7, index: 7n }]);
  const q = new BlockingQuery(src.fetch, { minIntervalMs: 0 });
  assert.equal((await q.first()).value, 7);
  const a = q.subscribe();
  const b = q.subscribe();
  assert.equal((await next(a)).value, 7, "a late subscriber gets the latest at once");
  assert.equal((await next(b)).value, 7);
  const pending = [a.next(), b.next()];
  await q.close();
  assert.deepEqual((await Promise.all(pending)).map((r) => r.done), [true, true]);
  assert.equal(q.subscriberCount, 0);
  assert.equal(q.status.running, false);
  // An aborted signal: the subscription ends at once.
  const ended = q.subscribe(AbortSignal.abort());
  assert.equal((await ended.next()).done, true);
});
