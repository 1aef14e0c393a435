// What only the double does, over real HTTP: its TCP check runner (fast in tests; a real agent
// checks every 10 s) and fault injection. The wire rules of §0 and the endpoint behaviour of §1
// are contract cases now (tests/contract/cases.ts), run on the double and on a real Consul agent.
import assert from "node:assert/strict";
import { devAgent, eventually } from "../_helpers.ts";

Deno.test("double: health/connect lists sidecars; ?passing waits for the TCP check to pass", async () => {
  await using dev = await devAgent();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const accepting = (async () => {
    for await (const c of listener) c.close();
  })();
  await fetch(`${dev.url}/v1/agent/service/register`, {
    method: "PUT",
    body: JSON.stringify({
      ID: "db-1",
      Name: "db",
      Port: 5432,
      Connect: { SidecarService: { Port: port } },
    }),
  }).then((r) => r.body?.cancel());
  const all = await (await fetch(`${dev.url}/v1/health/connect/db`)).json();
  assert.equal(all.length, 1);
  assert.equal(all[0].Service.ID, "db-1-sidecar-proxy");
  assert.equal(all[0].Service.Proxy.DestinationServiceName, "db");
  assert.deepEqual(all[0].Service.TaggedAddresses["consul-virtual"].Port, port);
  assert.equal(all[0].Checks[0].CheckID, "serfHealth");
  await eventually(
    async () => {
      const passing = await (await fetch(`${dev.url}/v1/health/connect/db?passing`)).json();
      return passing.length === 1;
    },
    3000,
    "the sidecar's TCP check to pass",
  );
  // Plain instances are not mesh endpoints.
  assert.deepEqual(await (await fetch(`${dev.url}/v1/health/connect/web`)).json(), []);
  listener.close();
  await accepting;
});

Deno.test("double: fault injection: latency, status, dropped connection, backwards index", async () => {
  await using dev = await devAgent();
  const stop = dev.faults.add({ path: "/v1/agent/self", status: 503, body: "No cluster leader" });
  const r = await fetch(`${dev.url}/v1/agent/self`);
  assert.deepEqual([r.status, await r.text()], [503, "No cluster leader"]);
  stop();
  dev.faults.add({ path: "/v1/agent/connect/ca/roots", indexBackwards: true, times: 1 });
  const back = await fetch(`${dev.url}/v1/agent/connect/ca/roots`);
  assert.equal(back.headers.get("X-Consul-Index"), "1");
  await back.body?.cancel();
  const after = await fetch(`${dev.url}/v1/agent/connect/ca/roots`);
  assert.notEqual(after.headers.get("X-Consul-Index"), "1");
  await after.body?.cancel();
  // The same rules can be set over HTTP, for proxies in other processes.
  await fetch(`${dev.url}/v1/devagent/faults`, {
    method: "POST",
    body: JSON.stringify({ path: "/v1/agent/self", drop: true, times: 1 }),
  }).then((r) => r.body?.cancel());
  await assert.rejects(fetch(`${dev.url}/v1/agent/self`).then((r) => r.text()));
  const ok = await fetch(`${dev.url}/v1/agent/self`);
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
});
