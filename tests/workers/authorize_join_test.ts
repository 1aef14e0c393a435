// Authorize calls joined across threads through shared memory: the owner sends, the others wait
// for its broadcast answer; collisions, failures, stale owners and aborts send their own.
import assert from "node:assert/strict";
import { AuthorizeJoin, type JoinTable, newJoinTable } from "../../src/workers/authorize_join.ts";
import type { RelayResponse } from "../../src/workers/agent_relay.ts";

const answer = (body: string): RelayResponse => ({
  status: 200,
  statusText: "OK",
  headers: [["x-consul-index", "1"]],
  body,
});

/** A send that waits for `release()`, counting its calls. */
function gatedSend(body: string) {
  const gate = Promise.withResolvers<void>();
  let calls = 0;
  return {
    send: async () => {
      calls++;
      await gate.promise;
      return answer(body);
    },
    fail: async () => {
      calls++;
      await gate.promise;
      throw new TypeError("connection reset");
    },
    release: () => gate.resolve(),
    calls: () => calls,
  };
}

function pair(shared: JoinTable = newJoinTable(), staleMs?: number) {
  const a = new AuthorizeJoin(shared, { staleMs });
  const b = new AuthorizeJoin(shared, { staleMs });
  return { a, b, [Symbol.dispose]: () => (a.close(), b.close()) };
}

Deno.test("an identical call in flight elsewhere is joined: one send, the same answer", async () => {
  using p = pair();
  const owner = gatedSend("owner's answer");
  const other = gatedSend("never");
  const first = p.a.run("POST authorize web", owner.send);
  const second = p.b.run("POST authorize web", other.send);
  await new Promise((r) => setTimeout(r, 20));
  owner.release();
  assert.equal((await first).body, "owner's answer");
  assert.deepEqual(await second, answer("owner's answer"));
  assert.equal(owner.calls() + other.calls(), 1);
  assert.deepEqual([p.a.stats, p.b.stats], [
    { sent: 1, joined: 0, broadcast: 1 },
    { sent: 0, joined: 1, broadcast: 0 },
  ]);
  // Only while in flight: the next identical call is sent again.
  other.release();
  assert.equal((await p.b.run("POST authorize web", other.send)).body, "never");
});

Deno.test("nobody waits: the owner broadcasts nothing", async () => {
  using p = pair();
  const owner = gatedSend("x");
  owner.release();
  await p.a.run("k", owner.send);
  assert.deepEqual(p.a.stats, { sent: 1, joined: 0, broadcast: 0 });
});

Deno.test("a different call on the same slot (a hash collision) is never given another's answer", async () => {
  using p = pair(newJoinTable(1)); // one slot: every key collides
  const owner = gatedSend("web's answer");
  const other = gatedSend("api's own answer");
  const first = p.a.run("authorize web", owner.send);
  const second = p.b.run("authorize api", other.send);
  await new Promise((r) => setTimeout(r, 20));
  owner.release();
  other.release();
  assert.equal((await first).body, "web's answer");
  assert.equal((await second).body, "api's own answer");
  assert.equal(other.calls(), 1);
});

Deno.test("an owner that fails: the waiter sends its own call, the owner's caller gets the error", async () => {
  using p = pair();
  const owner = gatedSend("");
  const other = gatedSend("waiter's own");
  const first = p.a.run("k", owner.fail);
  const second = p.b.run("k", other.send);
  await new Promise((r) => setTimeout(r, 20));
  owner.release();
  other.release();
  await assert.rejects(first, /connection reset/);
  assert.equal((await second).body, "waiter's own");
});

Deno.test("an owner in flight longer than staleMs is not joined (a thread that died holds nobody)", async () => {
  using p = pair(newJoinTable(), 30);
  const owner = gatedSend("late");
  const other = gatedSend("fresh");
  const first = p.a.run("k", owner.send);
  await new Promise((r) => setTimeout(r, 60));
  other.release();
  assert.equal((await p.b.run("k", other.send)).body, "fresh");
  owner.release();
  await first;
});

Deno.test("a waiter that aborts rejects with its reason; the owner goes on", async () => {
  using p = pair();
  const owner = gatedSend("owner's");
  const first = p.a.run("k", owner.send);
  const stop = new AbortController();
  const second = p.b.run("k", () => Promise.reject(new Error("not sent")), stop.signal);
  await new Promise((r) => setTimeout(r, 20));
  stop.abort(new DOMException("connection gone", "AbortError"));
  await assert.rejects(second, (e: Error) => e.name === "AbortError");
  owner.release();
  assert.equal((await first).body, "owner's");
});

Deno.test("closing a thread's join: its waiters send their own calls", async () => {
  const shared = newJoinTable();
  const a = new AuthorizeJoin(shared);
  const b = new AuthorizeJoin(shared);
  const owner = gatedSend("owner's");
  const first = a.run("k", owner.send);
  const other = gatedSend("own");
  other.release();
  const second = b.run("k", other.send);
  await new Promise((r) => setTimeout(r, 20));
  b.close();
  assert.equal((await second).body, "own");
  owner.release();
  await first;
  a.close();
});

Deno.test("across threads: a worker joins the main thread's call through the shared table", async () => {
  const shared = newJoinTable();
  const main = new AuthorizeJoin(shared);
  const owner = gatedSend("main's answer");
  const worker = new Worker(new URL("./_join_worker.ts", import.meta.url), { type: "module" });
  try {
    const ready = Promise.withResolvers<void>();
    const reply = new Promise<{ body: string; sent: boolean }>((resolve) => {
      worker.onmessage = (e) => (e.data.ready ? ready.resolve() : resolve(e.data));
    });
    await ready.promise;
    const mine = main.run("POST authorize web serial 01", owner.send);
    worker.postMessage({ shared, key: "POST authorize web serial 01" });
    // Once the worker has flagged the slot, the owner finishes and broadcasts.
    // Only the slot words: the start times after them are odd half the time.
    const slots = (shared.table.byteLength / 4 - 1) / 2;
    const slotFlagged = () =>
      new Int32Array(shared.table).slice(1, 1 + slots).some((v) => (v & 1) === 1);
    for (let i = 0; i < 250 && !slotFlagged(); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(slotFlagged(), "the worker waits for the main thread's call");
    owner.release();
    assert.equal((await mine).body, "main's answer");
    const got = await reply;
    assert.equal(got.body, "main's answer");
    assert.equal(got.sent, false);
  } finally {
    worker.terminate();
    main.close();
  }
});
