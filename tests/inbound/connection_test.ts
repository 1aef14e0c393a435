// One inbound connection (serveInbound) over real TLS on loopback, certificates from our CA. The
// test's TLS server checks nothing itself (rejectUnauthorized: false), so serveInbound's own
// checks are all there is. For every check of the fail-closed order, a caller tries to get past
// it: the application must not be dialled, and not one byte may reach it, before authorization.
import assert from "node:assert/strict";
import type net from "node:net";
import tls from "node:tls";
import type { Intention } from "../../src/agent/types.ts";
import { AuthorizeCache } from "../../src/inbound/authorize_cache.ts";
import {
  type AuthorizedConnection,
  type InboundContext,
  type InboundOutcome,
  serveInbound,
} from "../../src/inbound/connection.ts";
import { silentLogger } from "../../src/net/log.ts";
import { outcome, roundTrip, tlsClient } from "../e2e/_net.ts";
import {
  ALLOW,
  closedPort,
  CLUSTER,
  DENY,
  heldAgent,
  intention,
  mesh,
  recordingApp,
} from "./_inbound.ts";

interface Options {
  intentions?: () => readonly Intention[];
  handoff?: (connection: AuthorizedConnection) => void;
  authorizeTimeoutMs?: number;
  unreachableApp?: boolean;
}

/** serveInbound behind a TLS server that verifies nothing, db's side; web calls it. */
async function serving(opts: Options = {}) {
  const m = await mesh();
  const app = await recordingApp();
  const agent = heldAgent();
  const stop = new AbortController();
  const ctx: InboundContext = {
    material: m.material,
    authz: new AuthorizeCache({ ask: agent.ask, timeoutMs: opts.authorizeTimeoutMs }),
    service: "db",
    intentions: opts.intentions,
    app: opts.handoff
      ? undefined
      : opts.unreachableApp
      ? { hostname: "127.0.0.1", port: await closedPort() }
      : app.address,
    handoff: opts.handoff,
    connectTimeoutMs: 1000,
    connections: new Set(),
    signal: stop.signal,
    log: silentLogger,
  };
  const outcomes: Promise<InboundOutcome>[] = [];
  const arrived: (() => void)[] = [];
  const serverSockets: tls.TLSSocket[] = [];
  const server = tls.createServer({
    ...m.material.serverOptions(),
    requestCert: true,
    rejectUnauthorized: false,
    allowHalfOpen: true,
  }, (socket) => {
    serverSockets.push(socket);
    outcomes.push(
      serveInbound(socket, ctx).then((o) => {
        if (o.status !== "open") socket.destroy(); // as the gateway does
        return o;
      }),
    );
    for (const wake of arrived.splice(0)) wake();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    ctx,
    app,
    agent,
    stop,
    mesh: m,
    serverSockets,
    /** Connects with `cert` (none: no client certificate). */
    connect: (cert?: { cert: string; key: string }) => tlsClient(port, { ...cert, ca: m.roots }),
    /** What serveInbound returned for connection `i`. */
    async outcome(i = 0): Promise<InboundOutcome> {
      while (outcomes.length <= i) await new Promise<void>((r) => arrived.push(r));
      return await outcomes[i]!; // the loop waited until it exists
    },
    async [Symbol.asyncDispose]() {
      stop.abort();
      for (let i = 0; i < agent.calls.length; i++) agent.answer(DENY, i); // no timer left behind
      for (const o of await Promise.all(outcomes)) {
        if (o.status !== "open") continue;
        o.connection.pipe.destroy();
        await o.connection.pipe.closed;
      }
      for (const s of serverSockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await app.close();
    },
  };
}

/** The refusal of an outcome that must be one. */
function refusalOf(o: InboundOutcome) {
  assert.equal(o.status, "refused", `expected a refusal, got ${JSON.stringify(o.status)}`);
  return o.status === "refused" ? o.refusal : assert.fail();
}

// 1. Chain and identity.

Deno.test("serveInbound: a certificate from a foreign CA of the same trust domain is refused (bad_chain); authorize is not asked, the app not dialled", async () => {
  await using s = await serving();
  const impostor = await mesh(); // same cluster ID: same trust domain, byte-identical URI
  const forged = await impostor.client("web");
  const seen = outcome(await s.connect(forged), "let me in");
  const refusal = refusalOf(await s.outcome());
  assert.equal(refusal.reason, "bad_chain");
  assert.equal(await seen, "closed");
  assert.equal(s.agent.calls.length, 0, "authorize was not asked");
  assert.equal(s.app.connections(), 0, "the application was not dialled");
});

Deno.test("serveInbound: no client certificate is refused (no_cert)", async () => {
  await using s = await serving();
  const seen = outcome(await s.connect(), "let me in");
  assert.equal(refusalOf(await s.outcome()).reason, "no_cert");
  assert.equal(await seen, "closed");
  assert.equal(s.agent.calls.length, 0);
  assert.equal(s.app.connections(), 0);
});

Deno.test("serveInbound: a mesh certificate that is not a service's, or of another trust domain, is refused (bad_identity)", async () => {
  await using s = await serving();
  const td = s.mesh.ca.trustDomain;
  const uris = [
    `spiffe://${td}/agent/client/dc/dc1/id/node-1`,
    `spiffe://22222222-2222-2222-2222-222222222222.consul/ns/default/dc/dc1/svc/web`,
  ];
  for (const [i, uri] of uris.entries()) {
    const id = await s.mesh.ca.signIdentity(uri);
    const seen = outcome(await s.connect({ cert: id.certPem, key: id.keyPem }), "x");
    assert.equal(refusalOf(await s.outcome(i)).reason, "bad_identity", uri);
    assert.equal(await seen, "closed");
  }
  assert.equal(s.agent.calls.length, 0);
  assert.equal(s.app.connections(), 0);
});

Deno.test("serveInbound: an expired client certificate is refused (bad_chain)", async () => {
  await using s = await serving();
  const expired = await s.mesh.ca.signIdentity(
    `spiffe://${CLUSTER}.consul/ns/default/dc/dc1/svc/web`,
    { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) },
  );
  const seen = outcome(await s.connect({ cert: expired.certPem, key: expired.keyPem }), "x");
  assert.equal(refusalOf(await s.outcome()).reason, "bad_chain");
  assert.equal(await seen, "closed");
  assert.equal(s.agent.calls.length, 0);
  assert.equal(s.app.connections(), 0);
});

// 2. Authorize.

Deno.test("serveInbound: what the caller sends before the allow is held — the app is not dialled and gets no byte until then, then all of it in order", async () => {
  await using s = await serving();
  const web = await s.mesh.client("web");
  const client = await s.connect(web);
  const seen = outcome(client, "sent before the answer");
  await s.agent.called(1);
  // The bytes have reached our side of the connection, and wait there.
  const server = s.serverSockets[0]!;
  await new Promise<void>((r) => server.bytesRead > 0 ? r() : server.once("data", () => r()));
  assert.equal(s.app.connections(), 0, "the application was not dialled before the answer");
  s.agent.answer(ALLOW);
  const open = await s.outcome();
  assert.equal(open.status, "open");
  assert.equal(await seen, "sent before the answer", "echoed by the application");
  assert.equal(s.app.received(), "sent before the answer");
  assert.deepEqual(s.agent.calls.map((c) => c.caller.uri), [web.uri]);
});

Deno.test("serveInbound: a caller that sends and half-closes before the allow still gets its whole reply", async () => {
  await using s = await serving();
  const echoed = roundTrip(await s.connect(await s.mesh.client("web")), "all I have to say");
  await s.agent.called(1);
  // Time for the bytes and the end to arrive while the answer is held (not a timing assertion).
  await new Promise((r) => setTimeout(r, 200));
  s.agent.answer(ALLOW);
  assert.equal(new TextDecoder().decode(await echoed), "all I have to say");
  assert.equal(s.app.received(), "all I have to say");
});

Deno.test("serveInbound: the agent's deny refuses; the app is never dialled and never sees a byte", async () => {
  await using s = await serving();
  const seen = outcome(await s.connect(await s.mesh.client("web")), "secret");
  await s.agent.called(1);
  s.agent.answer(DENY);
  const refusal = refusalOf(await s.outcome());
  assert.deepEqual([refusal.reason, refusal.detail], ["denied", DENY.Reason]);
  assert.equal(await seen, "closed");
  assert.equal(s.app.connections(), 0);
  assert.equal(s.app.received(), "");
});

Deno.test("serveInbound: no answer within the deadline refuses (authorize_timeout); an agent error refuses (authorize_error)", async () => {
  await using s = await serving({ authorizeTimeoutMs: 100 });
  const web = await s.mesh.client("web");
  const first = outcome(await s.connect(web), "x");
  assert.equal(refusalOf(await s.outcome(0)).reason, "authorize_timeout");
  assert.equal(await first, "closed");
  const second = outcome(await s.connect(web), "x");
  await s.agent.called(2);
  s.agent.answer(new Error("connect ECONNREFUSED 127.0.0.1:8500"));
  const refusal = refusalOf(await s.outcome(1));
  assert.deepEqual([refusal.reason, refusal.detail], [
    "authorize_error",
    "connect ECONNREFUSED 127.0.0.1:8500",
  ]);
  assert.equal(await second, "closed");
  assert.equal(s.app.connections(), 0);
});

// 3. Intention overrule.

Deno.test("serveInbound: a deny intention overrules the agent's allow; an allow intention never overrules its deny", async () => {
  let intentions: Intention[] = [intention("deny")];
  await using s = await serving({ intentions: () => intentions });
  const web = await s.mesh.client("web");
  const first = outcome(await s.connect(web), "x");
  await s.agent.called(1);
  s.agent.answer(ALLOW);
  const overruled = refusalOf(await s.outcome(0));
  assert.equal(overruled.reason, "denied");
  assert.match(overruled.detail, /Matched L4 intention: default\/web => default\/db.*DENY/);
  assert.equal(await first, "closed");
  intentions = [intention("allow")];
  const second = outcome(await s.connect(web), "x");
  await s.agent.called(2);
  s.agent.answer(DENY);
  assert.deepEqual(refusalOf(await s.outcome(1)).detail, DENY.Reason);
  assert.equal(await second, "closed");
  assert.equal(s.app.connections(), 0);
});

// 4. Dial the application.

Deno.test("serveInbound: an unreachable app is refused (app_unreachable) only after the allow; a denied caller is refused as denied, not dialled", async () => {
  await using s = await serving({ unreachableApp: true });
  const web = await s.mesh.client("web");
  const denied = outcome(await s.connect(web), "x");
  await s.agent.called(1);
  s.agent.answer(DENY);
  assert.equal(refusalOf(await s.outcome(0)).reason, "denied");
  assert.equal(await denied, "closed");
  const allowed = outcome(await s.connect(web), "x");
  await s.agent.called(2);
  s.agent.answer(ALLOW);
  const refusal = refusalOf(await s.outcome(1));
  assert.equal(refusal.reason, "app_unreachable");
  assert.match(refusal.detail, /^connect 127\.0\.0\.1:\d+: /);
  assert.equal(refusal.peer, web.uri);
  assert.equal(await allowed, "closed");
});

// 5. Re-check.

Deno.test("serveInbound: an allow that a change overtook while the app was dialled is asked again; the new deny refuses and the app gets no byte", async () => {
  let changed = false;
  const s = await serving({
    // Consulted right before the dial: the change (answers forgotten) lands during it.
    intentions: () => {
      if (!changed) queueMicrotask(() => s.ctx.authz.forget());
      changed = true;
      return [];
    },
  });
  await using _ = s;
  const seen = outcome(await s.connect(await s.mesh.client("web")), "secret");
  await s.agent.called(1);
  s.agent.answer(ALLOW);
  await s.agent.called(2);
  s.agent.answer(DENY);
  const refusal = refusalOf(await s.outcome());
  assert.deepEqual([refusal.reason, refusal.detail], ["denied", DENY.Reason]);
  assert.equal(await seen, "closed");
  assert.equal(s.app.connections(), 1, "dialled while the allow stood, then dropped");
  assert.equal(s.app.received(), "", "not a byte reached it");
});

Deno.test("serveInbound: a deny intention that arrives while the app is dialled refuses before the connection opens", async () => {
  let consulted = 0;
  await using s = await serving({
    intentions: () => consulted++ === 0 ? [] : [intention("deny")],
  });
  const seen = outcome(await s.connect(await s.mesh.client("web")), "secret");
  await s.agent.called(1);
  s.agent.answer(ALLOW);
  const refusal = refusalOf(await s.outcome());
  assert.equal(refusal.reason, "denied");
  assert.match(refusal.detail, /DENY/);
  assert.equal(consulted, 2, "consulted before the dial and again before opening");
  assert.equal(await seen, "closed");
  assert.equal(s.app.received(), "");
  assert.equal(s.agent.calls.length, 1, "no change of epoch: the agent is not asked again");
});

// 6. Pipe, or hand off.

Deno.test("serveInbound: an allowed caller's connection opens and pipes both ways, with half-close", async () => {
  await using s = await serving();
  const web = await s.mesh.client("web");
  const seen = outcome(await s.connect(web), "hello mesh");
  await s.agent.called(1);
  s.agent.answer(ALLOW);
  const open = await s.outcome();
  assert.ok(open.status === "open");
  assert.equal(open.connection.peer, web.uri);
  assert.deepEqual([...s.ctx.connections], [open.connection], "it counts as open");
  assert.equal(open.answer.ok && open.answer.source, "agent");
  assert.equal(await seen, "hello mesh");
  const stats = await open.connection.pipe.closed;
  assert.deepEqual([stats.aToB, stats.bToA], [10, 10]);
});

Deno.test("serveInbound: handoff gets the socket unread with the verified caller, only after the allow", async () => {
  const handed = Promise.withResolvers<AuthorizedConnection>();
  const calls: AuthorizedConnection[] = [];
  await using s = await serving({
    handoff: (c) => {
      calls.push(c);
      handed.resolve(c);
    },
  });
  const web = await s.mesh.client("web");
  const denied = outcome(await s.connect(web), "x");
  await s.agent.called(1);
  s.agent.answer(DENY);
  assert.equal(refusalOf(await s.outcome(0)).reason, "denied");
  assert.equal(await denied, "closed");
  assert.equal(calls.length, 0, "a denied caller is never handed off");
  const client = await s.connect(web);
  const seen = outcome(client, "first bytes");
  await s.agent.called(2);
  s.agent.answer(ALLOW);
  const { socket, caller } = await handed.promise;
  assert.deepEqual([caller.spiffeId, caller.id.service], [web.uri, "web"]);
  // Nothing was read: the new owner gets the caller's bytes from the first one.
  const first = await new Promise<string>((r) => socket.once("data", (c) => r(String(c))));
  assert.equal(first, "first bytes");
  socket.end("answer");
  assert.equal(await seen, "answer");
  assert.equal(s.app.connections(), 0);
});

// Leaving before it opens.

Deno.test("serveInbound: a connection waiting for authorize when the gateway closes is dropped at once, the app never dialled", async () => {
  await using s = await serving({ authorizeTimeoutMs: 60_000 });
  const seen = outcome(await s.connect(await s.mesh.client("web")), "x");
  await s.agent.called(1);
  s.stop.abort();
  assert.deepEqual(await s.outcome(), { status: "dropped", detail: "the gateway is closing" });
  assert.equal(await seen, "closed");
  s.agent.answer(ALLOW); // too late: nothing opens
  assert.equal(s.app.connections(), 0);
});

Deno.test("serveInbound: a connection whose socket is gone (reset) while authorize is asked is dropped without dialling the app", async () => {
  await using s = await serving();
  const client = await s.connect(await s.mesh.client("web"));
  client.on("error", () => {});
  await s.agent.called(1);
  // A half-close is not leaving (the caller may send, end, and wait for the answer); a reset
  // destroys our socket, as this does.
  s.serverSockets[0]!.destroy();
  s.agent.answer(ALLOW);
  assert.deepEqual(await s.outcome(), { status: "dropped", detail: "the client left" });
  assert.equal(s.app.connections(), 0);
  client.destroy();
});
