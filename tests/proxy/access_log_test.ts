// The access log from the event stream alone: one JSON line per closed, refused or revoked
// connection (nothing for other events), its fields, sampling, and stopping.
import assert from "node:assert/strict";
import { EventHub } from "../../src/events/hub.ts";
import type { ProxyEvent } from "../../src/events/lifecycle.ts";
import { type AccessLogRecord, startAccessLog } from "../../src/proxy/access_log.ts";

const AT = Date.UTC(2026, 4, 1, 12, 0, 0, 250);
const PEER = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web";

const closed: ProxyEvent = {
  type: "closed",
  direction: "inbound",
  listener: "inbound:db",
  peer: PEER,
  remote: "10.0.0.7:53122",
  bytesIn: 120,
  bytesOut: 4096,
  durationMs: 1234.6,
  at: AT,
};
const refused: ProxyEvent = {
  type: "refused",
  direction: "outbound",
  listener: "upstream:db@dc2",
  refusal: { reason: "no_endpoint", detail: "no healthy instance", remote: "127.0.0.1:40000" },
  at: AT,
};
const revoked: ProxyEvent = {
  type: "revoked",
  direction: "inbound",
  listener: "inbound:db",
  peer: PEER,
  remote: "10.0.0.7:53123",
  reason: "Matched L4 intention: default/web => default/db (Precedence: 9, Action: DENY)",
  at: AT,
};

function logged(options: { sample?: number; random?: () => number } = {}) {
  const hub = new EventHub<ProxyEvent>();
  const lines: string[] = [];
  const stop = startAccessLog(hub, { write: (l) => lines.push(l), ...options });
  return { hub, lines, stop, records: () => lines.map((l) => JSON.parse(l) as AccessLogRecord) };
}

Deno.test("access log: a closed connection is one line with bytes, duration and peer", () => {
  const { hub, lines, records } = logged();
  hub.publish(closed);
  assert.equal(lines.length, 1);
  assert.ok(!lines[0]!.includes("\n"), "one line");
  assert.deepEqual(records()[0], {
    time: "2026-05-01T12:00:00.250Z",
    direction: "inbound",
    listener: "inbound:db",
    outcome: "closed",
    peer: PEER,
    remote: "10.0.0.7:53122",
    bytesIn: 120,
    bytesOut: 4096,
    durationMs: 1235,
  });
  hub.publish({ ...closed, error: "ECONNRESET" });
  assert.equal(records()[1]!.reason, "ECONNRESET", "the error that ended it is the reason");
});

Deno.test("access log: refusals and revocations carry their reason; nothing else is logged", () => {
  const { hub, records } = logged();
  const others: ProxyEvent[] = [
    {
      type: "accepted",
      direction: "inbound",
      listener: "inbound:db",
      peer: PEER,
      remote: "x",
      at: AT,
    },
    { type: "phase", phase: "ready", at: AT },
    { type: "leaf", renewed: true, service: "db", serial: "01", validBefore: "", at: AT },
    {
      type: "dial_failed",
      direction: "outbound",
      listener: "upstream:db",
      target: "db.default.dc1",
      endpoint: "10.0.0.1:21000",
      error: "ECONNREFUSED",
      ms: 3,
      at: AT,
    },
    { type: "reauthorized", checked: [PEER], denied: [], failed: [], at: AT },
  ];
  for (const e of others) hub.publish(e);
  assert.equal(records().length, 0, "accepted and lifecycle events are not connection ends");
  hub.publish(refused);
  hub.publish(revoked);
  assert.deepEqual(records(), [
    {
      time: "2026-05-01T12:00:00.250Z",
      direction: "outbound",
      listener: "upstream:db@dc2",
      outcome: "refused",
      reason: "no_endpoint",
      remote: "127.0.0.1:40000",
    },
    {
      time: "2026-05-01T12:00:00.250Z",
      direction: "inbound",
      listener: "inbound:db",
      outcome: "revoked",
      reason: revoked.type === "revoked" ? revoked.reason : "",
      peer: PEER,
      remote: "10.0.0.7:53123",
    },
  ]);
});

Deno.test("access log: sampling keeps a line when random() is below the fraction", () => {
  const draws = [0.1, 0.25, 0.2499, 0.9];
  const { hub, records } = logged({ sample: 0.25, random: () => draws.shift()! });
  for (let i = 0; i < 4; i++) hub.publish({ ...closed, bytesIn: i });
  assert.deepEqual(records().map((r) => r.bytesIn), [0, 2]);
  // Sample 1 (the default) logs all and never draws; 0 logs none.
  let drawn = 0;
  const all = logged({ random: () => (drawn++, 0.99) });
  all.hub.publish(closed);
  assert.equal(all.lines.length, 1);
  assert.equal(drawn, 0);
  const none = logged({ sample: 0, random: () => 0 });
  none.hub.publish(closed);
  assert.equal(none.lines.length, 0);
  // Events that are not logged draw nothing either.
  const quiet = logged({ sample: 0.5, random: () => (drawn++, 0) });
  quiet.hub.publish({ type: "phase", phase: "ready", at: AT });
  assert.equal(drawn, 0);
});

Deno.test("access log: the stop function unsubscribes", () => {
  const { hub, lines, stop } = logged();
  hub.publish(closed);
  stop();
  hub.publish(closed);
  assert.equal(lines.length, 1);
  assert.equal(hub.subscribers, 0);
});

Deno.test("access log: a writer that throws does not break the event stream", () => {
  const hub = new EventHub<ProxyEvent>();
  startAccessLog(hub, {
    write: () => {
      throw new Error("disk full");
    },
  });
  const seen: string[] = [];
  hub.subscribe((e) => seen.push(e.type));
  hub.publish(closed);
  assert.deepEqual(seen, ["closed"]);
});
