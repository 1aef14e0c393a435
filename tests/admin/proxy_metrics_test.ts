// createProxyMetrics() (src/admin/proxy_metrics.ts) on a proxy pair of the test double: counters
// and histograms fed by the event stream, gauges read at scrape time, in valid exposition
// (parsed strictly by ./_prometheus.ts).
import assert from "node:assert/strict";
import { createProxyMetrics } from "../../src/admin/proxy_metrics.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import { eventually, freePort, nth } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";
import { roundTrip, tcpClient } from "../e2e/_net.ts";
import { parseExposition } from "./_prometheus.ts";

const echo = async (port: number, text: string) =>
  new TextDecoder().decode(await roundTrip(await tcpClient(port), text));

Deno.test("proxy metrics: the proxy's counters and histograms, every refusal reason pre-set", async () => {
  await using m = await mesh();
  const dbMetrics = createProxyMetrics(m.dbProxy);
  const webMetrics = createProxyMetrics(m.webProxy);
  assert.equal(await echo(m.upstreamPort, "abc"), "abc");
  await new OperatorClient(m.agent).upsertIntention("web", "db", { Action: "deny" });
  await roundTrip(await tcpClient(m.upstreamPort), "no").catch(() => {});
  await eventually(() => m.events.some((e) => e.type === "refused"));
  await eventually(() => m.events.filter((e) => e.type === "closed").length >= 2);

  const db = parseExposition(dbMetrics.registry.render());
  const v = (name: string, labels: Record<string, string> = {}) => db.value(name, labels);
  assert.equal(v("meshgate_connections_accepted_total", { direction: "inbound" }), 1);
  assert.equal(
    v("meshgate_connections_refused_total", { direction: "inbound", reason: "denied" }),
    1,
  );
  assert.equal(
    v("meshgate_connections_refused_total", { direction: "inbound", reason: "no_cert" }),
    0,
  );
  // #17.2: the two timeouts are told apart, each series pre-set; no bare `timeout` any more.
  for (const direction of ["inbound", "outbound"]) {
    for (const reason of ["handshake_timeout", "authorize_timeout"]) {
      assert.equal(v("meshgate_connections_refused_total", { direction, reason }), 0, reason);
    }
    assert.ok(
      Number.isNaN(v("meshgate_connections_refused_total", { direction, reason: "timeout" })),
    );
  }
  assert.equal(v("meshgate_received_bytes_total", { listener: "inbound:db" }), 3);
  assert.equal(v("meshgate_sent_bytes_total", { listener: "inbound:db" }), 3);
  assert.equal(v("meshgate_connections_active", { listener: "inbound:db" }), 0);
  assert.equal(v("meshgate_authorize_seconds_count"), 1);
  assert.equal(v("meshgate_tls_handshake_seconds_count"), 1);
  assert.equal(v("meshgate_ready"), 1);
  assert.equal(v("meshgate_agent_reachable"), 1);
  assert.equal(v("meshgate_root_rotations_total"), 0);
  assert.equal(v("meshgate_leaf_chains_to_roots"), 1);
  const leafExpiry = v("meshgate_leaf_expiry_timestamp_seconds");
  assert.equal(leafExpiry, Math.floor(m.dbProxy.material.leaf!.info.notAfter.getTime() / 1000));
  assert.equal(db.type("meshgate_authorize_seconds"), "histogram");
  assert.equal(db.type("meshgate_connections_accepted_total"), "counter");
  assert.equal(db.type("meshgate_connections_active"), "gauge");

  const web = parseExposition(webMetrics.registry.render());
  assert.equal(
    web.value("meshgate_upstream_connect_seconds_count", {
      upstream: "db",
      target: "db.default.default.dc1",
    }),
    2,
  );
  assert.equal(web.value("meshgate_sent_bytes_total", { listener: "upstream:db" }), 5);
  dbMetrics.close();
  webMetrics.close();
});

Deno.test("proxy metrics: a root rotation, a live config change and an unreachable endpoint are counted", async () => {
  await using m = await mesh();
  const metrics = createProxyMetrics(m.webProxy);
  const scrape = () => parseExposition(metrics.registry.render());
  assert.equal(scrape().value("meshgate_config_changes_total"), 0);
  await m.dev.rotateCA();
  await eventually(() => scrape().value("meshgate_root_rotations_total") === 1);
  await m.agent.register(
    m.webRegistration([{ DestinationName: "api", LocalBindPort: freePort() }]),
  );
  await eventually(() => scrape().value("meshgate_config_changes_total") === 1);
  await m.dbProxy.close(); // its registration stays: web's dial fails
  await roundTrip(await tcpClient(m.upstreamPort), "x").catch(() => {});
  assert.equal(
    scrape().value("meshgate_upstream_connect_failures_total", {
      upstream: "db",
      target: "db.default.default.dc1",
    }),
    1,
  );
  // The failure is kept per endpoint (and shown in /v1/state while the endpoint is listed; its
  // health check may remove it from the list any moment now).
  const [failure] = nth(m.webProxy.upstreams, 0, "upstream").endpointFailures.values();
  assert.ok(failure, "the endpoint's failure is kept");
  assert.match(failure.error, /refused|ECONNREFUSED/i);
  metrics.close();
});

Deno.test("proxy metrics: bytes and open connections count live ones at scrape time; totalBytes sums all", async () => {
  await using m = await mesh();
  const metrics = createProxyMetrics(m.webProxy);
  const scrape = () => parseExposition(metrics.registry.render());
  assert.equal(await echo(m.upstreamPort, "closed"), "closed"); // 6 bytes each way, then closed
  await eventually(() => m.events.some((e) => e.type === "closed" && e.direction === "outbound"));
  const open = await tcpClient(m.upstreamPort);
  let back = "";
  open.on("data", (d) => (back += d));
  open.write("open");
  await eventually(() => back === "open");
  const labels = { listener: "upstream:db" };
  await eventually(() => scrape().value("meshgate_sent_bytes_total", labels) === 10);
  const s = scrape();
  assert.equal(s.value("meshgate_received_bytes_total", labels), 10);
  assert.equal(s.value("meshgate_connections_active", labels), 1);
  assert.deepEqual(metrics.totalBytes(), { in: 10, out: 10 });
  open.destroy();
  await eventually(() => scrape().value("meshgate_connections_active", labels) === 0);
  assert.equal(scrape().value("meshgate_sent_bytes_total", labels), 10, "kept once closed");
  assert.deepEqual(metrics.totalBytes(), { in: 10, out: 10 });

  // After close() the events no longer count (gauges still read the live state).
  metrics.close();
  const accepted = () =>
    scrape().value("meshgate_connections_accepted_total", { direction: "outbound" });
  assert.equal(accepted(), 2);
  assert.equal(await echo(m.upstreamPort, "later"), "later");
  await eventually(() => m.events.filter((e) => e.type === "accepted").length >= 6);
  assert.equal(accepted(), 2);
});

Deno.test("proxy metrics: meshgate_ready follows readiness with the options given", async () => {
  await using m = await mesh();
  const lifetime = m.webProxy.material.leaf!.info.notAfter.getTime() - Date.now();
  const strict = createProxyMetrics(m.webProxy, { leafExpiryMarginMs: lifetime + 3600_000 });
  const plain = createProxyMetrics(m.webProxy);
  assert.equal(parseExposition(strict.registry.render()).value("meshgate_ready"), 0);
  assert.equal(parseExposition(plain.registry.render()).value("meshgate_ready"), 1);
  await m.webProxy.close();
  assert.equal(parseExposition(plain.registry.render()).value("meshgate_ready"), 0);
  strict.close();
  plain.close();
});

Deno.test("proxy metrics: connections open in worker threads count in meshgate_connections_active", async () => {
  await using m = await mesh();
  const metrics = createProxyMetrics(m.webProxy);
  const active = () =>
    parseExposition(metrics.registry.render()).value("meshgate_connections_active", {
      direction: "outbound",
      listener: "upstream:db",
    });
  // What a worker's connections look like on the main thread: events with the worker's number.
  const base = { direction: "outbound" as const, listener: "upstream:db", remote: "127.0.0.1:1" };
  const accepted = { ...base, type: "accepted" as const, peer: "db@127.0.0.1:2", worker: 1 };
  m.webProxy.events.publish({ ...accepted, at: Date.now() });
  m.webProxy.events.publish({ ...accepted, worker: 2, at: Date.now() });
  assert.equal(active(), 2, "two connections open in two workers");
  m.webProxy.events.publish({
    ...base,
    type: "closed",
    peer: accepted.peer,
    bytesIn: 5,
    bytesOut: 7,
    durationMs: 1,
    worker: 1,
    at: Date.now(),
  });
  assert.equal(active(), 1, "one closed");
  const s = parseExposition(metrics.registry.render());
  assert.equal(s.value("meshgate_received_bytes_total", { listener: "upstream:db" }), 5);
  // The main thread's own connections are not counted from events (it reads their sockets).
  m.webProxy.events.publish({ ...accepted, worker: undefined, at: Date.now() });
  assert.equal(active(), 1);
  metrics.close();
});
