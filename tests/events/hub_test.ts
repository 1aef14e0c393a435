// EventHub: delivery in order to every subscriber, a bounded history, and a subscriber that
// throws never stops the others (a closed SSE stream must not break the data path).
import assert from "node:assert/strict";
import { EventHub } from "../../src/events/hub.ts";

Deno.test("EventHub delivers each event to every subscriber, in publish order", () => {
  const hub = new EventHub<number>();
  const a: number[] = [];
  const b: number[] = [];
  hub.subscribe((n) => a.push(n));
  hub.subscribe((n) => b.push(n * 10));
  for (const n of [1, 2, 3]) hub.publish(n);
  assert.deepEqual(a, [1, 2, 3]);
  assert.deepEqual(b, [10, 20, 30]);
  assert.equal(hub.subscribers, 2);
});

Deno.test("EventHub: a subscriber that throws does not stop the others or the publisher", () => {
  const hub = new EventHub<string>();
  const seen: string[] = [];
  hub.subscribe(() => {
    throw new Error("stream closed");
  });
  hub.subscribe((e) => seen.push(`second:${e}`));
  hub.subscribe(() => {
    throw "not even an Error";
  });
  hub.subscribe((e) => seen.push(`fourth:${e}`));
  hub.publish("x"); // does not throw
  hub.publish("y");
  assert.deepEqual(seen, ["second:x", "fourth:x", "second:y", "fourth:y"]);
  assert.deepEqual(hub.recent(), ["x", "y"], "still recorded");
});

Deno.test("EventHub: the unsubscribe function stops delivery, once and for all", () => {
  const hub = new EventHub<number>();
  const seen: number[] = [];
  const stop = hub.subscribe((n) => seen.push(n));
  hub.publish(1);
  stop();
  stop(); // twice is harmless
  hub.publish(2);
  assert.deepEqual(seen, [1]);
  assert.equal(hub.subscribers, 0);
  // The same function subscribed twice is one subscriber (a Set), stopped by either.
  const fn = (n: number) => seen.push(n * 100);
  const s1 = hub.subscribe(fn);
  hub.subscribe(fn);
  assert.equal(hub.subscribers, 1);
  hub.publish(3);
  assert.deepEqual(seen, [1, 300]);
  s1();
  assert.equal(hub.subscribers, 0);
});

Deno.test("EventHub: a subscriber may unsubscribe itself while being called", () => {
  const hub = new EventHub<number>();
  const seen: string[] = [];
  const stop = hub.subscribe((n) => {
    seen.push(`once:${n}`);
    stop();
  });
  hub.subscribe((n) => seen.push(`always:${n}`));
  hub.publish(1);
  hub.publish(2);
  assert.deepEqual(seen, ["once:1", "always:1", "always:2"]);
});

Deno.test("EventHub keeps the last `keep` events, oldest first", () => {
  const hub = new EventHub<number>(3);
  assert.deepEqual(hub.recent(), []);
  for (let n = 1; n <= 10; n++) hub.publish(n);
  assert.deepEqual(hub.recent(), [8, 9, 10]);
  assert.deepEqual(hub.recent((n) => n % 2 === 0), [8, 10]);
  const none = new EventHub<number>(0);
  none.publish(1);
  assert.deepEqual(none.recent(), [], "keep 0 remembers nothing");
  const dflt = new EventHub<number>();
  for (let n = 0; n < 500; n++) dflt.publish(n);
  assert.equal(dflt.recent().length, 200, "200 by default");
  assert.equal(dflt.recent()[0], 300);
});

Deno.test("EventHub.recent returns a copy: changing it changes nothing in the hub", () => {
  const hub = new EventHub<number>(5);
  hub.publish(1);
  hub.publish(2);
  const copy = hub.recent();
  copy.push(99);
  copy.length = 0;
  assert.deepEqual(hub.recent(), [1, 2]);
  const filtered = hub.recent(() => true);
  filtered.pop();
  assert.deepEqual(hub.recent(), [1, 2]);
});

Deno.test("EventHub records an event before delivering it: a subscriber sees it in recent()", () => {
  const hub = new EventHub<string>(2);
  let inside: string[] = [];
  hub.subscribe(() => (inside = hub.recent()));
  hub.publish("a");
  assert.deepEqual(inside, ["a"]);
});
