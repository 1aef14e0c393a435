// The wire rules of §0 and the endpoint behaviour of §1, checked on the double over real HTTP.
import assert from "node:assert/strict";
import { devAgent, eventually } from "../_helpers.ts";

Deno.test("double: plain-text errors, 405 with Allow, OPTIONS, unknown paths", async () => {
  await using dev = await devAgent();
  const put = await fetch(`${dev.url}/v1/agent/connect/authorize`, { method: "PUT" });
  assert.equal(put.status, 405);
  assert.equal(put.headers.get("Allow"), "OPTIONS,POST");
  await put.body?.cancel();
  const opt = await fetch(`${dev.url}/v1/connect/intentions/exact`, { method: "OPTIONS" });
  assert.equal(opt.headers.get("Allow"), "OPTIONS,GET,PUT,DELETE");
  await opt.body?.cancel();
  const unknown = await fetch(`${dev.url}/v1/nope`);
  assert.equal(unknown.status, 404);
  assert.match(unknown.headers.get("Content-Type")!, /^text\/plain/);
  await unknown.body?.cancel();
  const r = await fetch(`${dev.url}/v1/agent/self`);
  assert.equal(r.headers.get("X-Consul-Default-ACL-Policy"), "allow");
  assert.match(await r.text(), /^\{\n {4}"Config"/, "dev mode pretty-prints with 4 spaces");
});

Deno.test("double: strict bodies, empty body EOF, CE rejects ns and partition", async () => {
  await using dev = await devAgent();
  const post = (path: string, body: string, method = "POST") =>
    fetch(`${dev.url}${path}`, { method, body }).then(async (r) => [r.status, await r.text()]);
  assert.deepEqual(await post("/v1/agent/connect/authorize", ""), [
    400,
    "Request decode failed: EOF",
  ]);
  assert.deepEqual(await post("/v1/agent/connect/authorize", '{"target":"db","Extra":1}'), [
    400,
    'Request decode failed: json: unknown field "Extra"',
  ]);
  assert.deepEqual(
    await post("/v1/agent/service/register", '{"Name":"web","Namespace":"x"}', "PUT"),
    [400, 'Request decode failed: json: unknown field "Namespace"'],
  );
  const [status, text] = await fetch(`${dev.url}/v1/health/connect/db?ns=default`).then(
    async (r) => [r.status, await r.text()],
  );
  assert.equal(status, 400);
  assert.match(text as string, /Namespaces are a Consul Enterprise feature/);
  // Field names match case-insensitively, like Go's encoding/json.
  const ok = await post(
    "/v1/agent/connect/authorize",
    `{"target":"db","clientcerturi":"spiffe://${dev.ca.trustDomain}/ns/default/dc/dc1/svc/web"}`,
  );
  assert.equal(ok[0], 200);
  const reg = await fetch(`${dev.url}/v1/agent/service/register`, {
    method: "PUT",
    body: '{"Name":"web","Port":1}',
  });
  assert.equal(reg.status, 200);
  assert.equal(await reg.text(), "", "handlers with no result answer an empty body");
});

Deno.test("double: sidecar sugar registers the proxy as Consul does, and removes it with its parent", async () => {
  await using dev = await devAgent();
  const reg = (body: unknown) =>
    fetch(`${dev.url}/v1/agent/service/register`, { method: "PUT", body: JSON.stringify(body) })
      .then((r) => r.text());
  await reg({
    ID: "web-1",
    Name: "web",
    Port: 8080,
    Tags: ["v2"],
    Check: { Name: "web alive", TTL: "30s", Status: "passing" },
    Connect: {
      SidecarService: {
        ID: "ignored",
        Proxy: {
          Config: { local_connect_timeout_ms: 2000 },
          Upstreams: [{ DestinationName: "db", LocalBindPort: 9191 }],
        },
      },
    },
  });
  const res = await fetch(`${dev.url}/v1/agent/service/web-1-sidecar-proxy`);
  const hash = res.headers.get("X-Consul-ContentHash");
  const svc = await res.json();
  assert.equal(svc.ContentHash, hash);
  assert.equal(svc.Kind, "connect-proxy");
  assert.equal(svc.Service, "web-sidecar-proxy");
  assert.equal(svc.Port, 21000);
  assert.deepEqual(svc.Tags, ["v2"]);
  assert.deepEqual(svc.Weights, { Passing: 1, Warning: 1 });
  assert.equal(svc.Proxy.DestinationServiceName, "web");
  assert.equal(svc.Proxy.DestinationServiceID, "web-1");
  assert.equal(svc.Proxy.LocalServiceAddress, "127.0.0.1");
  assert.equal(svc.Proxy.LocalServicePort, 8080);
  assert.deepEqual(svc.Proxy.Upstreams, [
    { DestinationType: "service", DestinationName: "db", LocalBindPort: 9191, MeshGateway: {} },
  ]);
  assert.deepEqual(svc.Proxy.MeshGateway, {});
  assert.equal(svc.Connect, undefined, "a SidecarService is never echoed back");
  const checks = dev.catalog.checksOf("web-1-sidecar-proxy");
  assert.deepEqual(checks.map((c) => [c.CheckID, c.Name, c.Type]), [
    ["service:web-1-sidecar-proxy:1", "Connect Sidecar Listening", "tcp"],
    ["service:web-1-sidecar-proxy:2", "Connect Sidecar Aliasing web-1", "alias"],
  ]);
  assert.equal(dev.catalog.checksOf("web-1")[0].CheckID, "service:web-1");
  // A second service gets the next sidecar port.
  await reg({ ID: "api-1", Name: "api", Port: 9000, Connect: { SidecarService: {} } });
  assert.equal(dev.catalog.get("api-1-sidecar-proxy")!.Port, 21001);
  const dereg = await fetch(`${dev.url}/v1/agent/service/deregister/web-1`, { method: "PUT" });
  assert.equal(dereg.status, 200);
  await dereg.body?.cancel();
  assert.equal(dev.catalog.get("web-1-sidecar-proxy"), undefined);
  const missing = await fetch(`${dev.url}/v1/agent/service/deregister/web-1`, { method: "PUT" });
  assert.equal(missing.status, 404);
  assert.match(await missing.text(), /Unknown service ID "web-1"/);
});

Deno.test("double: connect-proxy validation errors come back as Consul's multi-error", async () => {
  await using dev = await devAgent();
  const r = await fetch(`${dev.url}/v1/agent/service/register`, {
    method: "PUT",
    body: JSON.stringify({ Kind: "connect-proxy", Name: "p", Proxy: {} }),
  });
  assert.equal(r.status, 400);
  const text = await r.text();
  assert.match(text, /^Validation failed: 2 errors occurred:\n\t\* Port or SocketPath must be set/);
});

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

Deno.test("double: a blocked query wakes for its own resource only", async () => {
  await using dev = await devAgent();
  const first = await fetch(`${dev.url}/v1/health/connect/db`);
  const index = first.headers.get("X-Consul-Index");
  await first.body?.cancel();
  const started = Date.now();
  const blocked = fetch(`${dev.url}/v1/health/connect/db?index=${index}&wait=2s`);
  // A change to another service and to intentions must not wake it.
  await fetch(`${dev.url}/v1/agent/service/register`, {
    method: "PUT",
    body: JSON.stringify({ Name: "web", Port: 1, Connect: { SidecarService: {} } }),
  }).then((r) => r.body?.cancel());
  await fetch(`${dev.url}/v1/connect/intentions/exact?source=a&destination=b`, {
    method: "PUT",
    body: '{"Action":"allow"}',
  }).then((r) => r.body?.cancel());
  const r = await blocked;
  await r.body?.cancel();
  assert.equal(r.headers.get("X-Consul-Index"), index, "a timeout returns the same index");
  assert.ok(Date.now() - started >= 1900, "it blocked for the whole wait");
  // A change to db wakes it at once.
  const again = fetch(`${dev.url}/v1/health/connect/db?index=${index}&wait=10s`);
  await fetch(`${dev.url}/v1/agent/service/register`, {
    method: "PUT",
    body: JSON.stringify({ Name: "db", Port: 2, Connect: { SidecarService: {} } }),
  }).then((r) => r.body?.cancel());
  const woke = await again;
  assert.ok(Number(woke.headers.get("X-Consul-Index")) > Number(index));
  assert.equal((await woke.json()).length, 1);
});

Deno.test("double: bad wait and index are 400s", async () => {
  await using dev = await devAgent();
  for (const q of ["wait=forever", "index=abc"]) {
    const r = await fetch(`${dev.url}/v1/agent/connect/ca/roots?${q}`);
    assert.equal(r.status, 400);
    assert.match(await r.text(), /Invalid (wait time|index)/);
  }
});

Deno.test("double: hash blocking on /v1/agent/service/:id, and 404 when it disappears", async () => {
  await using dev = await devAgent();
  await fetch(`${dev.url}/v1/agent/service/register`, {
    method: "PUT",
    body: JSON.stringify({ ID: "web-1", Name: "web", Port: 1, Connect: { SidecarService: {} } }),
  }).then((r) => r.body?.cancel());
  const r0 = await fetch(`${dev.url}/v1/agent/service/web-1-sidecar-proxy`);
  const hash = r0.headers.get("X-Consul-ContentHash")!;
  await r0.body?.cancel();
  assert.match(hash, /^[0-9a-f]{1,16}$/);
  const garbage = await fetch(`${dev.url}/v1/agent/service/web-1-sidecar-proxy?hash=zzz&wait=5s`);
  assert.equal(garbage.headers.get("X-Consul-ContentHash"), hash, "any other hash returns at once");
  await garbage.body?.cancel();
  const blocked = fetch(`${dev.url}/v1/agent/service/web-1-sidecar-proxy?hash=${hash}&wait=10s`);
  await fetch(`${dev.url}/v1/agent/service/deregister/web-1`, { method: "PUT" }).then((r) =>
    r.body?.cancel()
  );
  const gone = await blocked;
  assert.equal(gone.status, 404);
  assert.equal(await gone.text(), "unknown service ID: web-1-sidecar-proxy");
});

Deno.test("double: TTL checks go critical with Consul's output when they expire", async () => {
  await using dev = await devAgent();
  await fetch(`${dev.url}/v1/agent/service/register`, {
    method: "PUT",
    body: JSON.stringify({ Name: "web", Port: 1, Check: { TTL: "200ms", Status: "passing" } }),
  }).then((r) => r.body?.cancel());
  await fetch(`${dev.url}/v1/agent/check/pass/service:web?note=ok`, { method: "PUT" }).then((r) =>
    r.body?.cancel()
  );
  await eventually(() => dev.catalog.checksOf("web")[0].Status === "critical", 2000);
  assert.equal(
    dev.catalog.checksOf("web")[0].Output,
    "TTL expired (last output before timeout follows): ok",
  );
  const r = await fetch(`${dev.url}/v1/agent/check/update/nope`, {
    method: "PUT",
    body: '{"Status":"passing"}',
  });
  assert.equal(r.status, 404);
  assert.match(await r.text(), /Unknown check ID "nope"/);
  const bad = await fetch(`${dev.url}/v1/agent/check/update/service:web`, {
    method: "PUT",
    body: '{"Status":"fine"}',
  });
  assert.equal(await bad.text(), "Invalid check status: 'fine'");
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
