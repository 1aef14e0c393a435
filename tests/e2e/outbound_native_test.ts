// `-outbound-tls native` end to end: web's sidecar serves its upstream with Deno.listen and
// dials db's sidecar with Deno.connectTls (the inbound side stays node:tls). Bytes, half-close,
// intentions, events and the open-connection view behave as on the node leg.
import assert from "node:assert/strict";
import { OperatorClient } from "../../src/agent/operator.ts";
import { createLogger } from "../../src/net/log.ts";
import { eventually, nth } from "../_helpers.ts";
import { mesh } from "./_mesh.ts";
import { outcome, roundTrip, tcpClient } from "./_net.ts";

Deno.test("proxy -outbound-tls native: 1 MiB both ways with half-close; open connections and events as on node; deny refuses", async () => {
  const logs: string[] = [];
  await using m = await mesh({
    webLimits: { outboundTls: "native" },
    webLog: createLogger({ level: "debug", json: true, write: (l) => logs.push(l) }),
  });
  const started = logs.find((l) => l.includes("upstream listener started"));
  assert.match(started ?? "", /"outboundTls":"native"/, "web's upstream listens natively");
  // The operator is told what the TLS layer trusts besides the mesh roots (this test process has
  // the default store: our own check is what keeps public roots out).
  const roots = Deno.env.get("DENO_TLS_CA_STORE") === "" ? "mesh-only" : "mesh-and-default";
  assert.match(started ?? "", new RegExp(`"tlsLayerRoots":"${roots}"`));

  // 1 MiB through web's upstream (native) and db's public listener (node:tls) to the echo
  // app; the client's end travels through both and the echo's end comes back.
  const payload = new Uint8Array(1024 * 1024).map((_, i) => i % 251);
  const client = await tcpClient(m.upstreamPort);
  const upstream = nth(m.webProxy.upstreams, 0, "web's upstream");
  const echoed = roundTrip(client, payload);
  await eventually(() => upstream.connections.size === 1, 5000, "the connection to be open");
  const open = nth([...upstream.connections], 0, "the open connection");
  assert.match(open.peer, /^db@127\.0\.0\.1:\d+$/);
  assert.equal(open.target, "db.default.default.dc1");
  assert.deepEqual(await echoed, payload);
  await eventually(() => upstream.connections.size === 0, 5000, "the connection to close");
  assert.equal(open.pipe.stats.aToB, payload.length);
  assert.equal(open.pipe.stats.bToA, payload.length);
  const outbound = m.events.filter((e) => e.direction === "outbound");
  assert.deepEqual(outbound.map((e) => e.type), ["accepted", "closed"]);
  const closed = outbound[1];
  assert.ok(closed?.type === "closed");
  assert.equal(closed.listener, "upstream:db");
  assert.equal(closed.bytesOut, payload.length);
  assert.equal(closed.bytesIn, payload.length);
  assert.equal(closed.error, undefined);

  assert.ok(!logs.some((l) => l.includes("falls back to node:tls")), "dialled natively");

  await new OperatorClient(m.agent).upsertIntention("web", "db", { Action: "deny" });
  assert.equal(await outcome(await tcpClient(m.upstreamPort), "ping"), "closed");
  await eventually(() =>
    m.events.some((e) => e.type === "refused" && e.refusal.reason === "denied")
  );
});
