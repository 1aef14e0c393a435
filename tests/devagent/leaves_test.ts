// The double's leaf manager (src/devagent/leaves.ts): one cached leaf per service, issued once
// however many ask at the same time, re-issued when expired or signed by a root no longer
// active, renewed between 60 % and 90 % of its lifetime and after a rotation (fake time), and
// quiet after close(). Over HTTP: a blocking read returns the renewed leaf. The intention,
// authorize and discovery-chain checks that were in this file (intentions_chain_test.ts) are
// contract cases now (tests/contract/cases.ts), run on the double and on a real Consul agent.
import assert from "node:assert/strict";
import { ConnectCA } from "../../src/devagent/ca.ts";
import { leafTopic, Leaves } from "../../src/devagent/leaves.ts";
import { Store } from "../../src/devagent/store.ts";
import { clientFor, devAgent } from "../_helpers.ts";
import { fakeTime, settled } from "../_fake_time.ts";

const MINUTE = 60_000;
/** Leaves of 100 min on their own store and CA. */
async function leaves(options: { rotationJitterMs?: number } = {}) {
  const store = new Store();
  const ca = await ConnectCA.create({ leafTtlMs: 100 * MINUTE });
  const l = new Leaves(store, ca, options);
  return Object.assign(l, { store, ca, [Symbol.asyncDispose]: () => l.close() });
}

Deno.test("leaves: many readers at once get one leaf, issued once; it is cached", async () => {
  await using l = await leaves();
  assert.equal(l.index("web"), 0, "none yet");
  const start = l.store.index;
  const all = await Promise.all(Array.from({ length: 5 }, () => l.current("web")));
  assert.equal(new Set(all.map((c) => c.SerialNumber)).size, 1, "one serial for all");
  assert.equal(l.store.index, start + 1, "one write");
  assert.equal(l.store.topicIndex(leafTopic("web")), l.store.index);
  assert.equal(l.index("web"), l.store.index, "its ModifyIndex is the write's index");
  const [first] = all;
  assert.equal((await l.current("web")).SerialNumber, first!.SerialNumber, "cached");
  assert.equal(l.store.index, start + 1);
  const db = await l.current("db");
  assert.notEqual(db.SerialNumber, first!.SerialNumber, "one per service");
  assert.equal(db.Service, "db");
});

Deno.test("leaves: an expired leaf, or one whose root is no longer active, is re-issued on read", async () => {
  using time = fakeTime();
  await using l = await leaves();
  const first = await l.current("web");
  time.setSystemTime(new Date(first.ValidBefore).getTime()); // expired, no timer run
  const second = await l.current("web");
  assert.notEqual(second.SerialNumber, first.SerialNumber);
  assert.ok(new Date(second.ValidBefore) > new Date(first.ValidBefore));
  await l.ca.rotate(); // not announced: the read notices the stale signer itself
  const third = await l.current("web");
  assert.notEqual(third.SerialNumber, second.SerialNumber);
});

Deno.test("leaves: renewed between 60 % and 90 % of the lifetime, and then again", async () => {
  using time = fakeTime();
  await using l = await leaves();
  const first = await l.current("web");
  const validAfter = new Date(first.ValidAfter).getTime();
  const lifetime = new Date(first.ValidBefore).getTime() - validAfter;
  await time.tickAsync(validAfter + lifetime * 0.6 - Date.now() - 1);
  assert.equal((await l.current("web")).SerialNumber, first.SerialNumber, "not before 60 %");
  await time.tickAsync(lifetime * 0.3 + 1);
  await settled(time, () => l.index("web") > first.ModifyIndex, "the renewal");
  const second = await l.current("web");
  assert.notEqual(second.SerialNumber, first.SerialNumber);
  // The next renewal is armed for the new leaf.
  await time.tickAsync(new Date(second.ValidAfter).getTime() + lifetime * 0.9 - Date.now() + 1);
  await settled(time, () => l.index("web") > second.ModifyIndex, "the second renewal");
});

Deno.test("leaves: onRotation re-issues every cached leaf within the jitter", async () => {
  using time = fakeTime();
  await using l = await leaves({ rotationJitterMs: 10_000 });
  const web = await l.current("web");
  const db = await l.current("db");
  await l.ca.rotate();
  l.onRotation();
  await time.tickAsync(10_000);
  await settled(
    time,
    () => l.index("web") > web.ModifyIndex && l.index("db") > db.ModifyIndex,
    "both re-issued",
  );
  // What the rotation issued is current: a read re-issues nothing (its signer is active).
  const before = l.store.index;
  assert.notEqual((await l.current("web")).SerialNumber, web.SerialNumber);
  assert.equal(l.store.index, before);
});

Deno.test("leaves: an override applies to the next leaf only", async () => {
  await using l = await leaves();
  const notBefore = new Date(Date.now() - 2 * MINUTE);
  l.overrides.set("web", { notBefore, ttlMs: 5 * MINUTE });
  const short = await l.current("web");
  assert.equal(new Date(short.ValidAfter).getTime(), Math.floor(notBefore.getTime() / 1000) * 1000);
  assert.equal(
    new Date(short.ValidBefore).getTime() - new Date(short.ValidAfter).getTime(),
    5 * MINUTE,
  );
  const renewed = await l.renew("web");
  assert.equal(
    new Date(renewed.ValidBefore).getTime() - new Date(renewed.ValidAfter).getTime(),
    100 * MINUTE,
    "back to the CA's lifetime",
  );
});

Deno.test("leaves: after close(), no renewal or rotation timer runs", async () => {
  using time = fakeTime();
  const l = await leaves({ rotationJitterMs: 1000 });
  const first = await l.current("web");
  await l.close();
  l.onRotation();
  assert.equal(time.countTimers(), 0, "no timer left or armed");
  await time.tickAsync(200 * MINUTE);
  assert.equal(l.index("web"), first.ModifyIndex, "nothing re-issued");
});

Deno.test("double leaf: blocking returns a renewed certificate; non-blocking revalidates after rotation", async () => {
  await using dev = await devAgent({ rotationJitterMs: 60_000 });
  const agent = clientFor(dev);
  // (X-Cache and Age of leaf reads: the contract case "leaf: a plain read revalidates…".)
  const first = await agent.leaf("web");
  const blocked = agent.leaf("web", { index: first.index, waitMs: 10_000 });
  await dev.leaves.renew("web");
  const renewed = await blocked;
  assert.notEqual(renewed.value.SerialNumber, first.value.SerialNumber);
  assert.ok(renewed.index! > first.index!);
  // After a rotation, a non-blocking read re-issues at once (signed by the new root).
  await dev.rotateCA();
  const fresh = await agent.leaf("web");
  assert.notEqual(fresh.value.SerialNumber, renewed.value.SerialNumber);
  assert.equal(fresh.value.CertPEM.match(/BEGIN CERTIFICATE/g)!.length, 2);
});
