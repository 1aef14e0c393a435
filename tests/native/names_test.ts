// Mesh host names in Consul's DNS forms, and every near miss refused with the accepted forms.
import assert from "node:assert/strict";
import { MeshAddressError, parseMeshHost } from "../../src/native/names.ts";

Deno.test("parseMeshHost: services and prepared queries, with or without a datacenter", () => {
  assert.deepEqual(parseMeshHost("api.service.consul"), { type: "service", name: "api" });
  assert.deepEqual(parseMeshHost("db.service.dc2.consul"), {
    type: "service",
    name: "db",
    datacenter: "dc2",
  });
  assert.deepEqual(parseMeshHost("near.query.consul"), { type: "prepared_query", name: "near" });
  assert.deepEqual(parseMeshHost("near.query.eu_west.consul"), {
    type: "prepared_query",
    name: "near",
    datacenter: "eu_west",
  });
});

Deno.test("parseMeshHost: case-insensitive, a trailing dot allowed, names lower-cased", () => {
  assert.deepEqual(parseMeshHost("API.Service.DC2.CONSUL."), {
    type: "service",
    name: "api",
    datacenter: "dc2",
  });
  assert.deepEqual(parseMeshHost("my_svc-2.service.consul"), { type: "service", name: "my_svc-2" });
});

Deno.test("parseMeshHost refuses every other host with a MeshAddressError naming it", () => {
  const bad = [
    "",
    "api",
    "api.consul",
    "api.service",
    "api.node.consul",
    "api.service.com",
    "a.b.c.d.consul",
    "api.service.dc1.dc2.consul",
    ".service.consul",
    "-api.service.consul",
    "api-.service.consul",
    "api.service.-dc.consul",
    "a pi.service.consul",
    "api.service..consul",
    "api.service.consul..",
    "127.0.0.1",
    "[::1]",
    "xn--api.service.cönsul",
    "api%2e.service.consul",
  ];
  for (const host of bad) {
    assert.throws(
      () => parseMeshHost(host),
      (e) =>
        e instanceof MeshAddressError && e instanceof TypeError &&
        e.message === `"${host}" is not a mesh address: use <service>.service[.<dc>].consul or ` +
            `<query>.query[.<dc>].consul`,
      JSON.stringify(host),
    );
  }
});
