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
