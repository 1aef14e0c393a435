// hono helpers over a real hono app (app.request with the mesh request info as hono's env):
// callerOf reads the verified caller; allowCallers lets only listed services reach a route.
import assert from "node:assert/strict";
import { Hono } from "hono";
import { allowCallers, callerOf } from "../../src/native/hono.ts";
import type { MeshRequestInfo } from "../../src/native/http_server.ts";
import { formatSpiffeId, serviceSpiffeId } from "../../src/trust/spiffe.ts";

const TD = "11111111-2222-3333-4444-555555555555.consul";

function info(service: string): MeshRequestInfo {
  const id = serviceSpiffeId({ trustDomain: TD, datacenter: "dc1", service });
  return { caller: { spiffeId: formatSpiffeId(id), id, serial: "0a" }, remote: "10.0.0.9:5555" };
}

function app() {
  const handled: string[] = [];
  const hono = new Hono<{ Variables: { caller: MeshRequestInfo["caller"] } }>();
  hono.get("/whoami", (c) => c.text(callerOf(c)?.id.service ?? "nobody"));
  hono.post("/orders", allowCallers("web", "Billing"), (c) => {
    handled.push(c.get("caller").id.service);
    return c.json({ ok: true }, 201);
  });
  return { hono, handled };
}

Deno.test("callerOf: the verified caller from hono's env, undefined off the mesh", async () => {
  const { hono } = app();
  assert.equal(await (await hono.request("/whoami", {}, info("web"))).text(), "web");
  assert.equal(await (await hono.request("/whoami")).text(), "nobody");
  assert.equal(await (await hono.request("/whoami", {}, { remote: "x" })).text(), "nobody");
  assert.equal(callerOf({ env: undefined }), undefined);
  assert.equal(callerOf({ env: "not an object" }), undefined);
});

Deno.test("allowCallers: a listed service reaches the handler, with c.get('caller') set", async () => {
  const { hono, handled } = app();
  const res = await hono.request("/orders", { method: "POST" }, info("web"));
  assert.equal(res.status, 201);
  assert.deepEqual(await res.json(), { ok: true });
  // Service names compare without regard to case.
  assert.equal((await hono.request("/orders", { method: "POST" }, info("billing"))).status, 201);
  assert.deepEqual(handled, ["web", "billing"]);
});

Deno.test("allowCallers: any other caller, or none, gets 403 and never reaches the handler", async () => {
  const { hono, handled } = app();
  const other = await hono.request("/orders", { method: "POST" }, info("admin"));
  assert.equal(other.status, 403);
  assert.deepEqual(await other.json(), {
    error: `caller spiffe://${TD}/ns/default/dc/dc1/svc/admin may not use this route`,
  });
  const offMesh = await hono.request("/orders", { method: "POST" });
  assert.equal(offMesh.status, 403);
  assert.deepEqual(await offMesh.json(), {
    error: "caller (not on the mesh) may not use this route",
  });
  // A look-alike: the service name is compared whole, not as a prefix.
  assert.equal((await hono.request("/orders", { method: "POST" }, info("web-admin"))).status, 403);
  assert.deepEqual(handled, []);
});

Deno.test("allowCallers with no services lets nobody through", async () => {
  const hono = new Hono();
  hono.get("/", allowCallers(), (c) => c.text("reached"));
  assert.equal((await hono.request("/", {}, info("web"))).status, 403);
});
