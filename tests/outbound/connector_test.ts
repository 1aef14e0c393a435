// UpstreamConnector: pick (chain or prepared query, ejection, timeouts), dial (health kept per
// endpoint, dial_failed reported), connect (the refusal once every endpoint failed) — all as
// values, never exceptions. Real mTLS on loopback; the double is the agent.
import assert from "node:assert/strict";
import net from "node:net";
import { OperatorClient } from "../../src/agent/operator.ts";
import { ConnectCA } from "../../src/devagent/ca.ts";
import {
  type Candidate,
  refusalAfterDials,
  UpstreamConnector,
} from "../../src/outbound/connector.ts";
import type { DialFailure } from "../../src/outbound/dialer.ts";
import { eventually } from "../_helpers.ts";
import { identityOf, meshServer, upstreamWorld } from "./_upstream.ts";

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A candidate for db at `port` under the endpoint ID `id`. */
const candidate = (port: number, id = "node/db-x"): Candidate => ({
  endpoint: { address: "127.0.0.1", port, service: "db", id, target: "db.default.default.dc1" },
  timeoutMs: 2000,
});

Deno.test("refusalAfterDials: one certificate check failed by all → that reason; else upstream_unreachable; the detail is the last failure", () => {
  const f = (reason: DialFailure["reason"], detail: string = reason): DialFailure => ({
    reason,
    detail,
  });
  const table: [DialFailure[], string, string][] = [
    [[], "upstream_unreachable", "cancelled"],
    [[f("bad_chain"), f("bad_chain", "last")], "bad_chain", "bad_chain: last"],
    [[f("bad_identity")], "bad_identity", "bad_identity: bad_identity"],
    [[f("bad_identity"), f("bad_chain")], "upstream_unreachable", "bad_chain: bad_chain"],
    [[f("bad_identity"), f("connect", "refused")], "upstream_unreachable", "connect: refused"],
    [[f("no_cert")], "upstream_unreachable", "no_cert: no_cert"],
  ];
  for (const [failures, reason, detail] of table) {
    assert.deepEqual(refusalAfterDials(failures), { reason, detail }, JSON.stringify(failures));
  }
});

Deno.test("pick: no healthy instance → no_endpoint naming the upstream (a value, not an exception)", async () => {
  await using w = await upstreamWorld();
  const { connector } = await w.connector(0);
  assert.deepEqual(await connector.pick(), {
    ok: false,
    refusal: { reason: "no_endpoint", detail: "no healthy instances of db" },
  });
  const connected = await connector.connect();
  assert.ok(!connected.ok && connected.refusal.reason === "no_endpoint");
});

Deno.test("pick: while the agent refuses the chain it waits up to the connect timeout; a signal ends the wait at once", async () => {
  await using w = await upstreamWorld();
  w.dev.faults.add({ path: "/v1/discovery-chain/db", status: 403, body: "Permission denied" });
  const connector = new UpstreamConnector({
    agent: w.agent,
    material: w.material,
    upstream: { type: "service", name: "db", connectTimeoutMs: 30_000 },
  });
  try {
    const stop = new AbortController();
    await eventually(() => connector.resolver?.chainError !== undefined, 5000, "a refused read");
    const started = Date.now();
    const picking = connector.pick(stop.signal);
    stop.abort();
    const picked = await picking;
    assert.ok(Date.now() - started < 10_000, "ended by the signal, not the 30 s timeout");
    assert.ok(!picked.ok && picked.refusal.reason === "chain_unavailable");
    assert.match(picked.refusal.detail, /within 30000 ms: .*403 Permission denied/);
  } finally {
    await connector.close();
  }
});

Deno.test("pick: a prepared query's instances are candidates of its service; an unknown query is no_endpoint with the agent's answer", async () => {
  await using w = await upstreamWorld();
  await using db = await meshServer(await identityOf(w.dev.ca, "db"));
  await w.registerDb("db-1", db.port);
  await eventually(async () => (await w.agent.healthConnect("db")).value.length === 1);
  await new OperatorClient(w.agent).createPreparedQuery({
    Name: "db-q",
    Service: { Service: "db" },
  });
  const query = new UpstreamConnector({
    agent: w.agent,
    material: w.material,
    upstream: { type: "prepared_query", name: "db-q" },
  });
  const picked = await query.pick();
  assert.ok(picked.ok, picked.ok ? "" : picked.refusal.detail);
  assert.deepEqual(
    picked.candidates.map((c) => [c.endpoint.service, c.endpoint.port, c.endpoint.target]),
    [["db", db.port, "db-q"]],
  );
  const connected = await query.connect();
  assert.ok(connected.ok, connected.ok ? "" : connected.refusal.detail);
  connected.connection.socket.destroy();
  const unknown = new UpstreamConnector({
    agent: w.agent,
    material: w.material,
    upstream: { type: "prepared_query", name: "nope" },
  });
  const none = await unknown.pick();
  assert.ok(!none.ok && none.refusal.reason === "no_endpoint");
  assert.match(none.refusal.detail, /Query not found/);
});

Deno.test("dial: failures are counted and reported as dial_failed; a success clears them and counts the open connection", async () => {
  await using w = await upstreamWorld();
  await using db = await meshServer(await identityOf(w.dev.ca, "db"));
  const { connector, events } = await w.connector(0, { ejectAfterFailures: 0 });
  const dead = candidate(await closedPort());
  for (let i = 1; i <= 2; i++) {
    const dialed = await connector.dial(dead);
    assert.ok(!dialed.ok && dialed.failure.reason === "connect");
    assert.equal(connector.endpointHealth.get("node/db-x")?.consecutiveFailures, i);
  }
  assert.match(connector.endpointFailures.get("node/db-x")?.error ?? "", /^connect: 127\.0\.0\.1/);
  assert.deepEqual(
    events.map((e) => e.type === "dial_failed" && [e.listener, e.target, e.endpoint]),
    [
      ["upstream:db", "db.default.default.dc1", "node/db-x"],
      ["upstream:db", "db.default.default.dc1", "node/db-x"],
    ],
  );
  // The same endpoint answers now.
  const dialed = await connector.dial(candidate(db.port));
  assert.ok(dialed.ok, dialed.ok ? "" : dialed.failure.detail);
  const health = connector.endpointHealth.get("node/db-x");
  assert.equal(health?.consecutiveFailures, 0);
  assert.equal(health?.lastError, undefined);
  assert.equal(connector.endpointFailures.size, 0);
  assert.equal(health?.active, 1);
  dialed.connection.socket.destroy();
  await eventually(() => health?.active === 0, 5000, "the closed connection uncounted");
});

Deno.test("pick: an endpoint ejected after consecutive failures is left out — unless all are", async () => {
  await using w = await upstreamWorld();
  await using db = await meshServer(await identityOf(w.dev.ca, "db"));
  await w.registerDb("db-1", await closedPort(), 9); // listed (checks pass), nothing listens
  await w.registerDb("db-2", db.port, 1);
  const { connector, events } = await w.connector(2, { ejectAfterFailures: 1 });
  const connected = await connector.connect();
  assert.ok(connected.ok, connected.ok ? "" : connected.refusal.detail);
  connected.connection.socket.destroy();
  assert.deepEqual(events.map((e) => e.type), ["dial_failed"]);
  const ejected = connector.endpointHealth.get("devagent/db-1-sidecar-proxy");
  assert.equal(ejected?.ejections, 1);
  assert.ok((ejected?.ejectedUntil ?? 0) > Date.now() + 5000, "ejected for 10 s");
  for (let i = 0; i < 3; i++) {
    const picked = await connector.pick();
    assert.ok(picked.ok);
    assert.deepEqual(picked.candidates.map((c) => c.endpoint.id), ["devagent/db-2-sidecar-proxy"]);
  }
  // With only the ejected one left it is tried again (Envoy's panic threshold).
  await w.agent.deregister("db-2");
  await eventually(() =>
    connector.resolver?.targets.get("db.default.default.dc1")?.endpoints.length === 1
  );
  const picked = await connector.pick();
  assert.ok(picked.ok);
  assert.deepEqual(picked.candidates.map((c) => c.endpoint.id), ["devagent/db-1-sidecar-proxy"]);
});

Deno.test("connect: every endpoint failing the same certificate check is refused with that reason; mixed failures are upstream_unreachable", async () => {
  await using w = await upstreamWorld();
  const forger = await ConnectCA.create({ clusterId: w.dev.ca.clusterId });
  await using api1 = await meshServer(await identityOf(w.dev.ca, "api"));
  await using api2 = await meshServer(await identityOf(w.dev.ca, "api"));
  await using forged = await meshServer(await identityOf(forger, "db"));
  await w.registerDb("db-1", api1.port, 9);
  await w.registerDb("db-2", api2.port, 1);
  const { connector } = await w.connector(2);
  const both = await connector.connect();
  assert.ok(!both.ok && both.refusal.reason === "bad_identity", "both impostors refused");
  assert.match(both.refusal.detail, /^bad_identity: peer certificate mismatch got .*\/svc\/api/);
  assert.equal(api1.accepted() + api2.accepted(), 2, "each tried once");
  // One impostor and one forger: no single check explains it.
  await w.registerDb("db-2", forged.port, 1);
  const { connector: mixed } = await w.connector(2);
  await eventually(() =>
    mixed.resolver?.targets.get("db.default.default.dc1")?.endpoints.some((e) =>
      e.port === forged.port
    ) === true
  );
  const refused = await mixed.connect();
  assert.ok(!refused.ok && refused.refusal.reason === "upstream_unreachable");
  assert.match(refused.refusal.detail, /^(bad_chain|bad_identity): /);
});

Deno.test("connect: an aborted signal dials nothing", async () => {
  await using w = await upstreamWorld();
  await using db = await meshServer(await identityOf(w.dev.ca, "db"));
  await w.registerDb("db-1", db.port);
  const { connector, events } = await w.connector(1);
  const connected = await connector.connect(AbortSignal.abort());
  assert.deepEqual(connected, {
    ok: false,
    refusal: { reason: "upstream_unreachable", detail: "cancelled" },
  });
  assert.equal(db.accepted(), 0);
  assert.deepEqual(events, []);
});
