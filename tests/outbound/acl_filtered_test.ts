// With ACLs on, Consul answers /v1/health/connect/U with `[]` and
// `X-Consul-Results-Filtered-By-ACLs: true` when the token lacks node:read or service:read on U's
// sidecar (measured on 1.22.7 in tests/integration/acl_test.ts): no error, no endpoints. The flag
// is carried from the client through the resolver to a warning, /v1/state and the refusal.
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import type { ProxyState } from "../../src/admin/state.ts";
import { BlockingQuery, type BlockingResult } from "../../src/agent/blocking.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { createLogger } from "../../src/net/log.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort, next } from "../_helpers.ts";
import { tcpClient } from "../e2e/_net.ts";

const WARNING = `/v1/health/connect/db: results filtered by ACLs; the token likely lacks ` +
  `node:read and service:read on "db-sidecar-proxy"`;
const TARGET = "db.default.default.dc1";

Deno.test("client: an answer filtered by ACLs says so (resultsFilteredByAcls); others do not", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const plain = await agent.healthConnect("db");
  assert.equal(plain.resultsFilteredByAcls, undefined);
  const remove = dev.faults.add({ path: "/v1/health/connect/db", filteredByAcls: true });
  await agent.register({ ID: "db-1", Name: "db", Port: 1, Connect: { SidecarService: {} } });
  const filtered = await agent.healthConnect("db", { passing: false });
  assert.deepEqual(filtered.value, []);
  assert.equal(filtered.resultsFilteredByAcls, true);
  assert.ok(filtered.index !== undefined && filtered.index > 0n, "the real index is kept");
  remove();
  assert.equal((await agent.healthConnect("db", { passing: false })).value.length, 1);
});

Deno.test("blocking query: the same body with the ACL filter flag turned on, then off, is delivered", async () => {
  // Each request waits for the test to answer it, so no answer overtakes another.
  const pending: ((r: BlockingResult<string[]>) => void)[] = [];
  const query = new BlockingQuery<string[]>(
    ({ signal }) =>
      new Promise((resolve, reject) => {
        pending.push(resolve);
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      }),
    { minIntervalMs: 0 },
  );
  const answer = async (index: bigint, resultsFilteredByAcls: boolean) => {
    await eventually(() => pending.length > 0, 5000, "a request");
    pending.shift()!({ value: [], index, resultsFilteredByAcls });
  };
  const stop = new AbortController();
  const it = query.subscribe(stop.signal);
  try {
    await answer(1n, false);
    assert.equal((await next(it)).resultsFilteredByAcls, undefined);
    await answer(2n, true);
    const on = await next(it);
    assert.equal(on.resultsFilteredByAcls, true);
    await answer(3n, true); // no news: the same body, still filtered
    await eventually(() => pending.length > 0, 5000, "the next request");
    assert.equal(query.latest, on);
    await answer(4n, false);
    const off = await next(it);
    assert.equal(off.resultsFilteredByAcls, undefined);
    assert.equal(off.index, 4n);
  } finally {
    stop.abort();
    await it.return?.();
  }
});

Deno.test("upstream: endpoints filtered by ACLs → one warning, on /v1/state, in the refusal; cleared when the token may see them", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const dbRegistration = (version: string) => ({
    ID: "db-1",
    Name: "db",
    Port: 1,
    Meta: { version },
    Connect: {
      SidecarService: { Port: freePort(), Check: { TTL: "10m", Status: "passing" as const } },
    },
  });
  await agent.register(dbRegistration("1"));
  const removeFault = dev.faults.add({ path: "/v1/health/connect/db", filteredByAcls: true });
  const logs: string[] = [];
  const events: ConnectionEvent[] = [];
  await using proxy = await startProxy({
    agent,
    config: {
      service: "web",
      upstreams: [{
        type: "service",
        name: "db",
        bind: { hostname: "127.0.0.1", port: 0 },
        connectTimeoutMs: 500,
      }],
    },
    log: createLogger({ level: "info", json: true, write: (l) => logs.push(l) }),
    onEvent: (e) => events.push(e),
  });
  const admin = createAdminApp({ proxy });
  const target = async () => {
    const state = await (await admin.request("/v1/state")).json() as ProxyState;
    return state.upstreams[0]?.targets.find((t) => t.id === TARGET);
  };
  const warnings = () =>
    logs.filter((l) => l.includes("upstream endpoints filtered by ACLs")).map((l) => JSON.parse(l));

  await eventually(async () => (await target())?.resultsFilteredByAcls === true, 5000, "flag");
  const filtered = await target();
  assert.deepEqual(filtered?.endpoints, []);
  assert.equal(filtered?.aclWarning, WARNING);

  // A client of the upstream is refused for no endpoint, and the refusal says why.
  const port = (proxy.upstreams[0]!.address as { port: number }).port;
  const client = await tcpClient(port);
  client.on("error", () => {});
  const refusals = () => events.flatMap((e) => e.type === "refused" ? [e.refusal] : []);
  await eventually(() => refusals().length > 0, 5000, "the refusal");
  client.destroy();
  const refusal = refusals()[0];
  assert.equal(refusal?.reason, "no_endpoint");
  assert.equal(refusal.detail, `no healthy instances of db (${WARNING})`);

  // More filtered answers while it holds: still one warning, naming the endpoint and permissions.
  const hits = dev.faults.hits.get("/v1/health/connect/db") ?? 0;
  await agent.register(dbRegistration("2"));
  await eventually(() => (dev.faults.hits.get("/v1/health/connect/db") ?? 0) > hits);
  const [warning, ...more] = warnings();
  assert.deepEqual(more, []);
  assert.equal(warning["@level"], "warn");
  assert.equal(warning.endpoint, "/v1/health/connect/db");
  assert.equal(warning.target, TARGET);
  assert.equal(warning.likelyMissing, `node:read and service:read on "db-sidecar-proxy"`);

  // The token may see them again (here: the filter goes): endpoints, no flag, no warning.
  // (The request already waiting matched the filter when it came: a change answers it filtered,
  // so db changes until an answer that is not filtered arrives.)
  removeFault();
  let version = 3;
  await eventually(
    async () => {
      await agent.register(dbRegistration(String(version++)));
      return (await target())?.endpoints.length === 1;
    },
    5000,
    "endpoints",
  );
  const clear = await target();
  assert.equal(clear?.resultsFilteredByAcls, false);
  assert.equal(clear?.aclWarning, undefined);
  assert.ok(logs.some((l) => l.includes("upstream endpoints no longer filtered by ACLs")));
  assert.equal(warnings().length, 1);
});
