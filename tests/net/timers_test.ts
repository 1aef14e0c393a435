// The one timer helper: deadlines that leave no timer behind and sleeps that an abort ends early.
// Deno's sanitizer does not count a pending setTimeout, so fake timers count them.
import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { deadline, idleTimer, sleep, timer, withTimeout } from "../../src/net/timers.ts";

/** Fake `setTimeout` and `performance.now()` (idleTimer's clock), uninstalled at scope end. */
function fakeTime() {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout", "performance"] });
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

Deno.test("timer calls fn once after ms, not a moment before, leaving no timer", async () => {
  using time = fakeTime();
  let calls = 0;
  const t = timer(1000, () => calls++);
  await time.tickAsync(999);
  assert.equal(calls, 0);
  await time.tickAsync(1);
  assert.equal(calls, 1);
  assert.equal(time.countTimers(), 0);
  t.clear(); // after it ran: harmless
  await time.tickAsync(5000);
  assert.equal(calls, 1);
});

Deno.test("timer.clear() before it is due drops the callback and the timer; twice is harmless", async () => {
  using time = fakeTime();
  let calls = 0;
  const t = timer(1000, () => calls++);
  assert.equal(time.countTimers(), 1);
  t.clear();
  assert.equal(time.countTimers(), 0);
  t.clear();
  await time.tickAsync(2000);
  assert.equal(calls, 0);
});

Deno.test("timer: beyond setTimeout's range or Infinity never fires and sets no timer; negative or NaN runs on the next turn", async () => {
  using time = fakeTime();
  let calls = 0;
  for (const ms of [2 ** 31, Infinity]) timer(ms, () => calls++);
  assert.equal(time.countTimers(), 0, "no timer that would fire at once");
  await time.tickAsync(2 ** 31);
  assert.equal(calls, 0);
  timer(2 ** 31 - 1, () => calls++);
  await time.tickAsync(2 ** 31 - 1);
  assert.equal(calls, 1, "the largest delay setTimeout takes still fires");
  timer(-5, () => calls++);
  timer(NaN, () => calls++);
  await time.tickAsync(0);
  assert.equal(calls, 3);
});

/** Runs `code` (importing timers.ts as `T`) in a fresh Deno process; returns what it printed. */
async function runAlone(code: string): Promise<string> {
  const url = new URL("../../src/net/timers.ts", import.meta.url).href;
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `import * as T from "${url}";\n${code}`],
    stdout: "piped",
    stderr: "inherit",
    signal: AbortSignal.timeout(20_000),
  }).output();
  assert.ok(success, "the child process failed");
  return new TextDecoder().decode(stdout);
}

Deno.test("timer: an unref'd timer does not keep the process alive; a plain one does", async () => {
  const refd = await runAlone(
    'T.timer(200, () => console.log("fired")); console.log("end of script");',
  );
  assert.equal(refd, "end of script\nfired\n");
  const unrefd = await runAlone(
    'T.timer(200, () => console.log("fired"), { unref: true }); console.log("end of script");',
  );
  assert.equal(unrefd, "end of script\n", "the process exited without waiting for it");
});

Deno.test("idleTimer fires once ms pass without a touch, counted from the last touch", async () => {
  using time = fakeTime();
  let idle = 0;
  const t = idleTimer(150, () => idle++);
  for (let i = 0; i < 4; i++) {
    await time.tickAsync(60);
    t.touch(); // at 60, 120, 180, 240: never 150 quiet
  }
  assert.equal(idle, 0);
  await time.tickAsync(149);
  assert.equal(idle, 0, "149 ms after the last touch");
  await time.tickAsync(1);
  assert.equal(idle, 1, "150 ms after the last touch");
  assert.equal(time.countTimers(), 0);
  t.touch(); // after it fired: nothing starts again
  assert.equal(time.countTimers(), 0);
  await time.tickAsync(1000);
  assert.equal(idle, 1);
  t.clear();
});

Deno.test("idleTimer: a touch re-arms nothing — one timer however many touches", async () => {
  using time = fakeTime();
  const t = idleTimer(1000, () => {});
  for (let i = 0; i < 1000; i++) t.touch();
  assert.equal(time.countTimers(), 1);
  await time.tickAsync(500);
  t.touch();
  await time.tickAsync(500); // the first check finds 500 ms of quiet and waits the other 500
  assert.equal(time.countTimers(), 1);
  t.clear();
  assert.equal(time.countTimers(), 0);
});

Deno.test("idleTimer.clear() stops it for good: no timer, touches start nothing", async () => {
  using time = fakeTime();
  let idle = 0;
  const t = idleTimer(100, () => idle++);
  await time.tickAsync(50);
  t.clear();
  assert.equal(time.countTimers(), 0);
  t.touch();
  t.clear();
  await time.tickAsync(1000);
  assert.equal(idle, 0);
  assert.equal(time.countTimers(), 0);
});

Deno.test("idleTimer is off for 0, negative, NaN and beyond setTimeout's range", async () => {
  using time = fakeTime();
  let idle = 0;
  for (const ms of [0, -1, NaN, 2 ** 31, Infinity]) {
    const t = idleTimer(ms, () => idle++);
    t.touch();
    assert.equal(time.countTimers(), 0, `idleTimer(${ms}) set a timer`);
    t.clear();
  }
  await time.tickAsync(2 ** 31);
  assert.equal(idle, 0);
});

Deno.test("withTimeout settles as the promise does and leaves no timer", async () => {
  using time = fakeTime();
  assert.equal(await withTimeout(Promise.resolve(7), 1000, () => new Error("late")), 7);
  assert.equal(time.countTimers(), 0);
  await assert.rejects(
    withTimeout(Promise.reject(new Error("refused")), 1000, () => new Error("late")),
    { message: "refused" },
  );
  assert.equal(time.countTimers(), 0);
  const later = withTimeout(sleep(500).then(() => "done"), 1000, () => new Error("late"));
  await time.tickAsync(500);
  assert.equal(await later, "done");
  assert.equal(time.countTimers(), 0);
});

Deno.test("withTimeout rejects with onTimeout()'s error at ms, describing that moment", async () => {
  using time = fakeTime();
  let state = "starting";
  const never = new Promise<never>(() => {});
  const p = withTimeout(never, 1000, () => new Error(`stuck while ${state}`));
  await time.tickAsync(999);
  assert.equal(await settled(p), false);
  state = "waiting for roots";
  await time.tickAsync(1);
  await assert.rejects(p, { message: "stuck while waiting for roots" });
  assert.equal(time.countTimers(), 0);
});

Deno.test("withTimeout: an onTimeout that throws rejects with what it threw; Infinity sets no timer", async () => {
  using time = fakeTime();
  const p = withTimeout(new Promise<never>(() => {}), 10, () => {
    throw new RangeError("describing failed");
  });
  const rejected = assert.rejects(p, RangeError);
  await time.tickAsync(10);
  await rejected;
  const { promise, resolve } = Promise.withResolvers<number>();
  const forever = withTimeout(promise, Infinity, () => new Error("never"));
  assert.equal(time.countTimers(), 0);
  resolve(1);
  assert.equal(await forever, 1);
});
