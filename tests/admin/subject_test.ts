// AdminSubject is an interface that Proxy and ConnectService implement, each with what it has:
// a native service's servers are its inbound listeners and the upstreams it dialled are its
// connectors (no bind, connections owned by the caller); a proxy without a configuration yet
// has no service and says so among its problems.
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import { readinessProblems } from "../../src/admin/readiness.ts";
import type { ProxyState } from "../../src/admin/state.ts";
import type { AdminSubject } from "../../src/admin/subject.ts";
import { connect } from "../../src/native/service.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent } from "../_helpers.ts";

Deno.test("admin subject: a native service shows its servers and the connectors it dialled", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using api = await connect({ service: "api", agent });
  await using web = await connect({ service: "web", agent });
  const first = await api.serve(() => new Response("ok"), { hostname: "127.0.0.1", port: 0 });
  const second = await api.listen({ hostname: "127.0.0.1", port: 0 });
  await agent.register({
    ID: "api-1",
    Name: "api",
    Port: first.address.port,
    Connect: { Native: true },
  });
  assert.equal(await (await web.fetch("http://api.service.consul/")).text(), "ok");

  const apiSubject: AdminSubject = api;
  assert.deepEqual(
    apiSubject.inboundListeners.map((l) => l.address.port),
    [first.address.port, second.address.port],
  );
  assert.equal(apiSubject.service, "api");
  assert.equal(apiSubject.proxyId, undefined);
  assert.deepEqual(apiSubject.upstreams, [], "api dialled nothing");
  const apiState = await (await createAdminApp({ proxy: api }).request("/v1/state"))
    .json() as ProxyState;
  assert.equal(apiState.publicListener?.address, `127.0.0.1:${first.address.port}`);
  assert.equal(apiState.publicListener?.app, "(in-process handler)");
  assert.equal(apiState.connections.inbound, 1, "web's pooled connection, over both servers");

  const webState = await (await createAdminApp({ proxy: web }).request("/v1/state"))
    .json() as ProxyState;
  assert.equal(webState.publicListener, null, "web serves nothing");
  assert.equal(webState.upstreams.length, 1);
  const [up] = webState.upstreams;
  assert.equal(up!.name, "api");
  assert.equal(up!.listener, "native:api");
  assert.equal(up!.type, "service");
  assert.equal(up!.bind, "(in-process)");
  assert.equal(up!.connections, 0, "the fetch pool's connections are not the connector's");
  assert.deepEqual(
    up!.targets.map((t) => [t.id, t.endpoints.map((e) => e.address)]),
    [["api.default.default.dc1", [`127.0.0.1:${first.address.port}`]]],
  );
  await second.close();
  await first.close();
  await agent.close();
});

Deno.test("admin subject: a proxy without its registration yet has no service and says why", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using proxy = await startProxy({ agent, proxyId: "db-proxy" });
  const subject: AdminSubject = proxy;
  assert.equal(subject.service, undefined);
  assert.equal(subject.proxyId, undefined);
  assert.deepEqual(subject.inboundListeners, []);
  assert.deepEqual(subject.upstreams, []);
  assert.equal(subject.problems[0], "no configuration yet");
  assert.match(subject.problems[1]!, /^registration: /);
  // /ready: the phase, the leaf and roots checks, then what the proxy says (no leaf is asked
  // for before the registration names the service).
  const ready = readinessProblems(proxy);
  assert.deepEqual(ready.slice(0, 2), ["phase is starting", "no leaf certificate yet"]);
  assert.deepEqual(ready.slice(-2), subject.problems);
  await proxy.close();
  await agent.close();
});
