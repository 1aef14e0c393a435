// The double's index and blocking machinery (src/devagent/store.ts): one counter for every write,
// a last-modified index per topic (never 0), waiters that wake only when their own condition
// holds, and Consul's ContentHash (64-bit FNV-1a of canonical JSON).
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import FakeTimers from "@sinonjs/fake-timers";
import { contentHash, Store } from "../../src/devagent/store.ts";

Deno.test("store: each write bumps the index and stamps its topics; an unwritten topic is at 1", () => {
  const store = new Store();
  const start = store.index;
  assert.ok(start > 1, "starts above 1, as a dev agent's raft index does");
  assert.equal(store.topicIndex("a"), 1, "never 0");
  assert.equal(store.seen("a"), false);
  const first = store.bump("a", "b");
  assert.equal(first, start + 1);
  assert.equal(store.bump("b"), start + 2);
  assert.equal(store.bump(), start + 3, "a write without topics moves only the index");
  assert.equal(store.index, start + 3);
  assert.equal(store.topicIndex("a"), first);
  assert.equal(store.topicIndex("b"), start + 2);
  assert.equal(store.topicIndex("a", "b", "never"), start + 2, "the latest of several");
  assert.equal(store.seen("a"), true);
  assert.equal(store.seen("never"), false);
});

Deno.test("store: waitUntil returns at once when ready, and wakes on the write that makes it so", async () => {
  const store = new Store();
  await store.waitUntil(() => true, 60_000); // no timer left behind (sanitizer)
  let wanted = false;
  let woke = false;
  const waiting = store.waitUntil(() => wanted, 60_000).then(() => (woke = true));
  store.bump("unrelated"); // re-checked, still not ready
  await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(woke, false, "a write that does not make it ready does not wake it");
  wanted = true;
  store.bump("wanted");
  await waiting;
  assert.equal(woke, true);
});

Deno.test("store: waitUntil ends after waitMs, on its signal, or when the store closes", async () => {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  try {
    const store = new Store();
    let timedOut = false;
    const waiting = store.waitUntil(() => false, 10_000).then(() => (timedOut = true));
    await clock.tickAsync(9_999);
    assert.equal(timedOut, false);
    await clock.tickAsync(1);
    await waiting;
    assert.equal(timedOut, true);

    const ac = new AbortController();
    const aborted = store.waitUntil(() => false, 10_000, ac.signal);
    ac.abort();
    await aborted;
    await store.waitUntil(() => false, 10_000, AbortSignal.abort()); // already aborted

    const closing = store.waitUntil(() => false, 10_000);
    store.close();
    await closing;
    assert.equal(store.closed.aborted, true);
    await store.waitUntil(() => false, 10_000); // closed: returns at once
    assert.equal(clock.countTimers(), 0, "every wait cleared its timer");
  } finally {
    clock.uninstall();
  }
});

Deno.test("contentHash: FNV-1a 64 of canonical JSON, in hex without leading zeros", () => {
  // Reference values computed independently (Python) for the canonical texts shown.
  assert.equal(contentHash({ b: [2, "x"], a: 1 }), "ed50380bd5a14fa5"); // {"a":1,"b":[2,"x"]}
  assert.equal(contentHash({}), "8f44b07b5901a25", "15 digits: no leading zero"); // {}
  assert.equal(contentHash("a"), "d4272417d7c77eea"); // "a"
  assert.equal(contentHash(null), "5b9bc4ba528108e4"); // null
  // Key order and undefined fields do not matter; array order and values do.
  assert.equal(contentHash({ a: 1, b: { c: 2, d: 3 } }), contentHash({ b: { d: 3, c: 2 }, a: 1 }));
  assert.equal(contentHash({ a: 1, u: undefined }), contentHash({ a: 1 }));
  assert.notEqual(contentHash([1, 2]), contentHash([2, 1]));
  assert.notEqual(contentHash({ a: "1" }), contentHash({ a: 1 }));
});

Deno.test("store: a finished wait leaves no listener on the store's or the caller's signal", async () => {
  const store = new Store();
  const ac = new AbortController();
  let ready = false;
  const waits = Array.from({ length: 100 }, () => store.waitUntil(() => ready, 60_000, ac.signal));
  ready = true;
  store.bump("x");
  await Promise.all(waits);
  // A long-lived double serves many blocking queries: each must not leave a closure behind.
  assert.equal(getEventListeners(store.closed, "abort").length, 0, "on the store's signal");
  assert.equal(getEventListeners(ac.signal, "abort").length, 0, "on the caller's signal");
});
