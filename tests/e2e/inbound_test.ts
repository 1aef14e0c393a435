import assert from "node:assert/strict";
import type { AgentClient } from "../../src/agent/client.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { AuthorizeResult, Intention } from "../../src/agent/types.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { type InboundOptions, startInbound } from "../../src/inbound/gateway.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import { clientFor, devAgent, eventually, nth } from "../_helpers.ts";
import { echoServer, outcome, roundTrip, tlsClient } from "./_net.ts";

async function setup(
  opts: Partial<
    Pick<
      InboundOptions,
      "authorizeTimeoutMs" | "maxConnections" | "handshakeTimeoutMs" | "authorize" | "intentions"
    >
  > = {},
) {
  const dev = await devAgent();
  const agent = clientFor(dev);
  const material = new TlsMaterial();
  await material.setRoots((await agent.roots()).value);
  await material.setLeaf((await agent.leaf("db")).value);
  const app = await echoServer();
  const events: ConnectionEvent[] = [];
  const gw = await startInbound({
    material,
    service: "db",
    authorize: (req, o) => agent.authorize(req, o),
    bind: { hostname: "127.0.0.1", port: 0 },
    app: { hostname: "127.0.0.1", port: app.port },
    onEvent: (e) => events.push(e),
    ...opts,
  });
  const web = (await agent.leaf("web")).value;
  const roots = material.roots!.pems;
  const refusals = () => events.flatMap((e) => e.type === "refused" ? [e.refusal.reason] : []);
  return {
    dev,
    agent,
    material,
    app,
    gw,
    web,
    roots,
    events,
    refusals,
    async [Symbol.asyncDispose]() {
      await gw.close();
      await app.close();
      await agent.close();
      await dev.close();
    },
  };
}

Deno.test("inbound: an authorized client's bytes flow both ways, with half-close", async () => {
  await using s = await setup();
  const client = await tlsClient(s.gw.address.port, {
    cert: s.web.CertPEM,
    key: s.web.PrivateKeyPEM,
    ca: s.roots,
  });
  const echoed = await roundTrip(client, "hello mesh");
  assert.equal(new TextDecoder().decode(echoed), "hello mesh");
  await eventually(() => s.events.some((e) => e.type === "closed"));
  const accepted = s.events.find((e) => e.type === "accepted");
  assert.equal(accepted?.type === "accepted" && accepted.peer, s.web.ServiceURI);
});

Deno.test("inbound: a 50 MB transfer arrives intact", async () => {
  await using s = await setup();
  const client = await tlsClient(s.gw.address.port, {
    cert: s.web.CertPEM,
    key: s.web.PrivateKeyPEM,
    ca: s.roots,
  });
  const payload = new Uint8Array(Number(Deno.env.get("MB") ?? 50) * 1024 * 1024);
  for (let i = 0; i < payload.length; i += 4096) payload[i] = (i / 4096) & 0xff;
  const echoed = await roundTrip(client, payload);
  assert.equal(echoed.length, payload.length);
  for (let i = 0; i < payload.length; i += 4096) assert.equal(echoed[i], payload[i]);
});

Deno.test("inbound: a denied intention refuses the connection before the app is dialled", async () => {
  await using s = await setup();
  await new OperatorClient(s.agent).upsertIntention("web", "db", { Action: "deny" });
  const client = await tlsClient(s.gw.address.port, {
    cert: s.web.CertPEM,
    key: s.web.PrivateKeyPEM,
    ca: s.roots,
  });
  assert.equal(await outcome(client, "let me in"), "closed");
  await eventually(() => s.refusals().includes("denied"));
  assert.equal(s.app.connections(), 0, "the application never saw the denied client");
});

Deno.test("inbound: concurrent connections of one caller share one authorize call; later ones ask again", async () => {
  // The agent's answer is held until every connection has asked: they must all wait on one call.
  let calls = 0;
  let answer = Promise.withResolvers<AuthorizeResult>();
  await using s = await setup({
    authorize: () => (calls++, answer.promise),
  });
  let verified = 0;
  const verifyPeer = s.material.verifyPeer.bind(s.material);
  s.material.verifyPeer = (...args) => (verified++, verifyPeer(...args));
  const connect = () =>
    tlsClient(s.gw.address.port, { cert: s.web.CertPEM, key: s.web.PrivateKeyPEM, ca: s.roots });
  const round = async (n: number, authorized: boolean) => {
    const clients = await Promise.all(Array.from({ length: n }, connect));
    const outcomes = clients.map((c) => outcome(c, "ping"));
    const target = verified + n;
    // Each connection asks right after its certificate is verified (same task).
    await eventually(() => verified >= target);
    answer.resolve({ Authorized: authorized, Reason: authorized ? "allowed" : "denied" });
    return await Promise.all(outcomes);
  };
  assert.deepEqual(await round(5, true), Array(5).fill("ping"));
  assert.equal(calls, 1, "five concurrent connections, one agent call");
  const joined = s.events.filter((e) => e.type === "accepted" && e.authorizeJoined).length;
  assert.equal(joined, 4);
  // A connection after the answer came asks anew (an answer is never older than its connection).
  answer = Promise.withResolvers();
  assert.deepEqual(await round(3, false), Array(3).fill("closed"));
  assert.equal(calls, 2);
  assert.equal(s.refusals().filter((r) => r === "denied").length, 3, "a shared deny refuses all");
  assert.equal(s.app.connections(), 5);
  // An intention change (forgetAuthorizations) while a call is in flight: later connections
  // do not join the call that began before the change.
  answer = Promise.withResolvers();
  const early = await connect();
  const earlyOutcome = outcome(early, "ping");
  await eventually(() => calls === 3);
  s.gw.forgetAuthorizations();
  const late = await connect();
  const lateOutcome = outcome(late, "ping");
  await eventually(() => calls === 4, 5000, "a new call after the change");
  answer.resolve({ Authorized: true, Reason: "allowed" });
  assert.deepEqual([await earlyOutcome, await lateOutcome], ["ping", "ping"]);
  console.log(`held: 10 connections, 4 authorize calls, 6 joined`);
});

Deno.test("inbound: a deny that arrives while the agent answers is not overruled by its older allow", async () => {
  // The agent's "allow" was computed before the change; the intentions watch already has the
  // deny. The connection must not open (the re-check round would not see it: it is not open).
  let intentions: Intention[] = [];
  let answer = Promise.withResolvers<AuthorizeResult>();
  let asked = Promise.withResolvers<void>();
  await using s = await setup({
    authorize: () => (asked.resolve(), answer.promise),
    intentions: () => intentions,
  });
  const connect = () =>
    tlsClient(s.gw.address.port, { cert: s.web.CertPEM, key: s.web.PrivateKeyPEM, ca: s.roots });
  const first = outcome(await connect(), "ping");
  await asked.promise;
  intentions = [await denyIntention(s.agent)];
  answer.resolve({ Authorized: true, Reason: "default allow" });
  assert.equal(await first, "closed");
  await eventually(() => s.refusals().includes("denied"));
  const refused = s.events.find((e) => e.type === "refused");
  assert.match(refused?.type === "refused" ? refused.refusal.detail : "", /Action: DENY/);
  assert.equal(s.app.connections(), 0, "the application was never dialled");
  // With the intentions allowing again (or silent), the agent's allow stands.
  intentions = [];
  answer = Promise.withResolvers();
  asked = Promise.withResolvers();
  const second = outcome(await connect(), "ping");
  await asked.promise;
  answer.resolve({ Authorized: true, Reason: "default allow" });
  assert.equal(await second, "ping");
  console.log("held: 1 connection refused by the newer deny, 1 allowed after it was lifted");
});

/** A web → db deny intention, as the intention-match watch would deliver it. */
async function denyIntention(agent: AgentClient): Promise<Intention> {
  await new OperatorClient(agent).upsertIntention("web", "db", { Action: "deny" });
  return nth((await agent.intentionMatch("destination", "db")).value, 0, "web → db intention");
}

Deno.test("inbound: no client certificate is refused as no_cert", async () => {
  await using s = await setup();
  const client = await tlsClient(s.gw.address.port, { ca: s.roots }).catch((e) => e);
  if (!(client instanceof Error)) assert.equal(await outcome(client, "x"), "closed");
  await eventually(() => s.refusals().includes("no_cert"));
  assert.equal(s.app.connections(), 0);
});

Deno.test("inbound: a certificate from another CA is refused", async () => {
  await using s = await setup();
  await using other = await devAgent();
  const foreign = (await clientFor(other).leaf("web")).value;
  const client = await tlsClient(s.gw.address.port, {
    cert: foreign.CertPEM,
    key: foreign.PrivateKeyPEM,
    ca: s.roots,
  })
    .catch((e) => e);
  if (!(client instanceof Error)) assert.equal(await outcome(client, "x"), "closed");
  await eventually(() => s.refusals().includes("bad_chain"));
  assert.equal(s.app.connections(), 0);
});

Deno.test("inbound: non-service and foreign-trust-domain identities are refused as bad_identity", async () => {
  await using s = await setup();
  const td = s.material.trustDomain!;
  for (
    const uri of [
      `spiffe://${td}/agent/client/dc/dc1/id/node-1`,
      `spiffe://22222222-2222-2222-2222-222222222222.consul/ns/default/dc/dc1/svc/web`,
    ]
  ) {
    const id = await s.dev.ca.signIdentity(uri);
    const client = await tlsClient(s.gw.address.port, {
      cert: id.certPem,
      key: id.keyPem,
      ca: s.roots,
    });
    assert.equal(await outcome(client, "x"), "closed");
  }
  await eventually(() => s.refusals().filter((r) => r === "bad_identity").length === 2);
  assert.equal(s.app.connections(), 0);
});

Deno.test("inbound: an expired client certificate is refused", async () => {
  await using s = await setup();
  const expired = await s.dev.ca.signIdentity(
    `spiffe://${s.material.trustDomain}/ns/default/dc/dc1/svc/web`,
    { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) },
  );
  const client = await tlsClient(s.gw.address.port, {
    cert: expired.certPem,
    key: expired.keyPem,
    ca: s.roots,
  })
    .catch((e) => e);
  if (!(client instanceof Error)) assert.equal(await outcome(client, "x"), "closed");
  await eventually(() => s.refusals().includes("bad_chain"));
  assert.equal(s.app.connections(), 0);
});

Deno.test("inbound: an authorize call that times out refuses (fail closed)", async () => {
  await using s = await setup({ authorizeTimeoutMs: 200 });
  s.dev.faults.add({ path: "/v1/agent/connect/authorize", latencyMs: 3000 });
  const client = await tlsClient(s.gw.address.port, {
    cert: s.web.CertPEM,
    key: s.web.PrivateKeyPEM,
    ca: s.roots,
  });
  assert.equal(await outcome(client, "x"), "closed");
  assert.deepEqual(s.refusals(), ["authorize_timeout"]);
  s.dev.faults.clear();
  s.dev.faults.add({ path: "/v1/agent/connect/authorize", status: 500, body: "boom" });
  const again = await tlsClient(s.gw.address.port, {
    cert: s.web.CertPEM,
    key: s.web.PrivateKeyPEM,
    ca: s.roots,
  });
  assert.equal(await outcome(again, "x"), "closed");
  await eventually(() => s.refusals().includes("authorize_error"));
  assert.equal(s.app.connections(), 0);
});

Deno.test("inbound: a silent client is closed by the handshake timeout", async () => {
  await using s = await setup({ handshakeTimeoutMs: 200 });
  const net = await import("node:net");
  const silent = net.connect({ host: "127.0.0.1", port: s.gw.address.port });
  silent.on("error", () => {});
  await new Promise((r) => silent.on("close", r));
  await eventually(() => s.refusals().includes("handshake_timeout"));
});

Deno.test("inbound: connections over the limit are refused and counted", async () => {
  await using s = await setup({ maxConnections: 1 });
  const first = await tlsClient(s.gw.address.port, {
    cert: s.web.CertPEM,
    key: s.web.PrivateKeyPEM,
    ca: s.roots,
  });
  first.write("x");
  await eventually(() => s.gw.connections.size === 1);
  const second = await tlsClient(s.gw.address.port, {
    cert: s.web.CertPEM,
    key: s.web.PrivateKeyPEM,
    ca: s.roots,
  })
    .catch((e) => e);
  if (!(second instanceof Error)) assert.equal(await outcome(second, "y"), "closed");
  await eventually(() => s.refusals().includes("limit"));
  first.destroy();
});

Deno.test("inbound: a leaf renewal and a root rotation keep open connections; new ones use the new material", async () => {
  await using s = await setup();
  const client = await tlsClient(s.gw.address.port, {
    cert: s.web.CertPEM,
    key: s.web.PrivateKeyPEM,
    ca: s.roots,
  });
  const received: string[] = [];
  client.on("data", (d) => received.push(d.toString()));
  client.write("before;");
  await eventually(() => received.join("") === "before;");
  await s.dev.rotateCA();
  await s.material.setRoots((await s.agent.roots()).value);
  await s.material.setLeaf((await s.agent.leaf("db")).value);
  client.write("after;");
  await eventually(
    () => received.join("") === "before;after;",
    3000,
    "the open connection to keep flowing",
  );
  // A client with a leaf from the new root connects.
  const fresh = (await s.agent.leaf("web")).value;
  const next = await tlsClient(s.gw.address.port, {
    cert: fresh.CertPEM,
    key: fresh.PrivateKeyPEM,
    ca: s.material.roots!.pems,
  });
  // The server now presents the new leaf.
  assert.deepEqual(new Uint8Array(next.getPeerCertificate().raw), s.material.leaf!.info.der);
  assert.equal(new TextDecoder().decode(await roundTrip(next, "new")), "new");
  client.end();
});
