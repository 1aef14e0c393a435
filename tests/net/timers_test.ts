// The one timer helper: deadlines that leave no timer behind and sleeps that an abort ends early.
// Deno's sanitizer does not count a pending setTimeout, so fake timers count them.
import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { deadline, sleep } from "../../src/net/timers.ts";

/** Fake `setTimeout`, uninstalled at the end of the scope. */
function fakeTime() {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  return Object.assign(clock, { [Symbol.dispose]: () => clock.uninstall() });
}

/** Whether `p` has settled after the microtasks queued so far ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
}

Deno.test("deadline: fires after its time, says so, and clear() is then a no-op", async () => {
  const limit = deadline(10);
  await new Promise<void>((r) => limit.signal.addEventListener("abort", () => r()));
  assert.equal(limit.timedOut(), true);
  assert.equal((limit.signal.reason as DOMException).name, "TimeoutError");
  limit.clear();
});

Deno.test("deadline: a parent that aborts aborts it and removes its timer (no clear() needed)", () => {
  using time = fakeTime();
  const parent = new AbortController();
  const limit = deadline(60_000, parent.signal);
  parent.abort(new Error("stopping"));
  assert.equal(limit.signal.aborted, true);
  assert.equal((limit.signal.reason as Error).message, "stopping");
  assert.equal(limit.timedOut(), false);
  assert.equal(time.countTimers(), 0, "the timer is gone without clear()");
});

Deno.test("deadline: a parent aborted already leaves it aborted without a timer", () => {
  using time = fakeTime();
  const limit = deadline(60_000, AbortSignal.abort(new Error("gone")));
  assert.equal(limit.signal.aborted, true);
  assert.equal(limit.timedOut(), false);
  assert.equal(time.countTimers(), 0);
});

Deno.test("deadline: beyond setTimeout's range (or Infinity) it never fires by itself", async () => {
  for (const ms of [2 ** 31, Infinity]) {
    const parent = new AbortController();
    const limit = deadline(ms, parent.signal);
    await sleep(30);
    assert.equal(limit.signal.aborted, false, `deadline(${ms}) fired`);
    parent.abort();
    assert.equal(limit.signal.aborted, true);
  }
});

Deno.test("sleep: resolves true after its time, false at once when aborted", async () => {
  assert.equal(await sleep(5), true);
  const stop = new AbortController();
  const slept = sleep(60_000, stop.signal);
  stop.abort();
  assert.equal(await slept, false);
});

Deno.test("sleep resolves true after ms, not a moment before, leaving no timer", async () => {
  using time = fakeTime();
  const p = sleep(1000);
  await time.tickAsync(999);
  assert.equal(await settled(p), false);
  await time.tickAsync(1);
  assert.equal(await p, true);
  assert.equal(time.countTimers(), 0);
});

Deno.test("sleep resolves false at once on abort and clears its timer", async () => {
  using time = fakeTime();
  const ac = new AbortController();
  const p = sleep(60_000, ac.signal);
  assert.equal(time.countTimers(), 1);
  ac.abort();
  assert.equal(await p, false);
  assert.equal(time.countTimers(), 0, "the 60 s timer is gone");
  // Already aborted: no timer is ever set.
  assert.equal(await sleep(60_000, ac.signal), false);
  assert.equal(time.countTimers(), 0);
});

Deno.test("sleep treats a negative or NaN delay as zero", async () => {
  using time = fakeTime();
  const neg = sleep(-5);
  await time.tickAsync(0);
  assert.equal(await neg, true);
  const nan = sleep(NaN);
  await time.tickAsync(0);
  assert.equal(await nan, true);
});

Deno.test("sleep removes its abort listener when it fires (no listener piles up on a long-lived signal)", async () => {
  using time = fakeTime();
  const ac = new AbortController();
  let calls = 0;
  const add = ac.signal.addEventListener.bind(ac.signal);
  const remove = ac.signal.removeEventListener.bind(ac.signal);
  let live = 0;
  ac.signal.addEventListener = ((...args: Parameters<typeof add>) => {
    live++;
    return add(...args);
  }) as typeof add;
  ac.signal.removeEventListener = ((...args: Parameters<typeof remove>) => {
    live--;
    calls++;
    return remove(...args);
  }) as typeof remove;
  for (let i = 0; i < 3; i++) {
    const p = sleep(10, ac.signal);
    await time.tickAsync(10);
    assert.equal(await p, true);
  }
  assert.equal(live, 0);
  assert.equal(calls, 3);
});

Deno.test("deadline aborts with a TimeoutError after ms and says it timed out", async () => {
  using time = fakeTime();
  const d = deadline(500);
  await time.tickAsync(499);
  assert.equal(d.signal.aborted, false);
  assert.equal(d.timedOut(), false);
  await time.tickAsync(1);
  assert.equal(d.signal.aborted, true);
  assert.equal(d.timedOut(), true);
  assert.ok(d.signal.reason instanceof DOMException);
  assert.equal(d.signal.reason.name, "TimeoutError");
  assert.equal(d.signal.reason.message, "timed out after 500 ms");
  assert.equal(time.countTimers(), 0);
});

Deno.test("deadline.clear() removes the timer and the parent listener: nothing fires later", async () => {
  using time = fakeTime();
  const parent = new AbortController();
  const d = deadline(1000, parent.signal);
  d.clear();
  assert.equal(time.countTimers(), 0);
  await time.tickAsync(2000);
  parent.abort();
  assert.equal(
    d.signal.aborted,
    false,
    "neither the timer nor the parent reaches a cleared deadline",
  );
  d.clear(); // twice is harmless
});

Deno.test("deadline: the largest delay setTimeout takes still fires; zero or less fires on the next turn", async () => {
  using time = fakeTime();
  const last = deadline(2 ** 31 - 1);
  await time.tickAsync(2 ** 31 - 2);
  assert.equal(last.timedOut(), false);
  await time.tickAsync(1);
  assert.equal(last.timedOut(), true);
  const now = deadline(-1);
  assert.equal(now.signal.aborted, false, "not synchronously");
  await time.tickAsync(0);
  assert.equal(now.timedOut(), true);
});
