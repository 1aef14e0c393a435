// Issue #14: an attacker holding web's leaf key signs a certificate for another service with it
// and presents [forged, web's leaf]. `openssl` is the forger (a separate program, as an
// attacker's would be). Both layers must refuse: the TLS layer in the handshake (against the
// mesh roots) and our own path validation; these tests show the TLS layer's refusal end to end
// — counted, in the metrics, on the dashboard's event stream — and our own check's verdict on
// the same certificates.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { createAdminApp } from "../../src/admin/app.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { type Proxy, startProxy } from "../../src/proxy/proxy.ts";
import { decodePem, splitPemCertificates } from "../../src/trust/pem.ts";
import { clientFor, devAgent, eventually, freePort, nth } from "../_helpers.ts";
import { forge, type Forged, forgeV1 } from "./_forge.ts";
import { mesh } from "./_mesh.ts";
import { outcome, roundTrip, tcpClient, tlsClient } from "./_net.ts";

const HOUR = 3600_000;

/** The DER of each certificate in `pem`, leaf first. */
function ders(pem: string): Uint8Array[] {
  return decodePem(pem).map((b) => b.der);
}

/** The first certificate of a bundle. */
function first(pem: string): string {
  return nth(splitPemCertificates(pem), 0, "certificate");
}

/** `meshgate_connections_refused_total` for one direction and reason, from `/metrics`. */
async function refusedCount(
  admin: ReturnType<typeof createAdminApp>,
  direction: string,
  reason: string,
): Promise<number> {
  const text = await (await admin.request("/metrics")).text();
  const line = text.split("\n").find((l) =>
    l.startsWith("meshgate_connections_refused_total{") &&
    l.includes(`direction="${direction}"`) && l.includes(`reason="${reason}"`)
  );
  return line ? Number(line.split(" ").at(-1)) : 0;
}

/** Reads the admin event stream until `re` matches what arrived (replayed events included). */
async function eventStream(admin: ReturnType<typeof createAdminApp>, re: RegExp): Promise<string> {
  const ac = new AbortController();
  const res = await admin.request("/v1/events", { signal: ac.signal });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    const deadline = Date.now() + 5000;
    while (!re.test(text)) {
      if (Date.now() > deadline) throw new Error(`no ${re} in:\n${text.slice(-2000)}`);
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended");
      text += value;
    }
    return text;
  } finally {
    ac.abort();
    await reader.cancel().catch(() => {});
  }
}

/** Presents `cert` (a PEM bundle, leaf first) with `key` to `port`; resolves once it is over. */
async function present(port: number, roots: string[], cert: string, key: string) {
  const client = await tlsClient(port, { cert, key, ca: roots }).catch((e: Error) => e);
  if (client instanceof Error) return "handshake failed";
  const got = await outcome(client, "let me in");
  client.destroy();
  return got;
}

Deno.test("forged chain, inbound: [admin signed with web's leaf key, web's leaf], a self-signed admin, a foreign CA's admin and an expired admin are refused in the TLS handshake as bad_chain; the app is never dialled", async () => {
  await using m = await mesh();
  // Only admin may reach db.
  await new OperatorClient(m.agent).upsertIntention("*", "db", { Action: "deny" });
  await new OperatorClient(m.agent).upsertIntention("admin", "db", { Action: "allow" });
  const ac = new AbortController();
  const admin = createAdminApp({ proxy: m.dbProxy, tickMs: 60_000, signal: ac.signal });
  const port = m.dbProxy.inbound!.address.port;
  const roots = m.dbProxy.material.roots!.pems;
  const td = m.dbProxy.material.trustDomain!;
  const adminUri = `spiffe://${td}/ns/default/dc/dc1/svc/admin`;
  const web = (await m.agent.leaf("web")).value; // the stolen key and certificate

  const forgedAdmin = await forge({
    uri: adminUri,
    issuer: { certPem: web.CertPEM, keyPem: web.PrivateKeyPEM },
  });
  const selfSigned = await forge({ uri: adminUri });
  const foreignCa = await forge({ uri: `spiffe://${td}`, isCa: true, eku: [] });
  const foreign = await forge({ uri: adminUri, issuer: foreignCa });
  const expired = await m.dev.ca.signIdentity(adminUri, {
    notBefore: new Date(Date.now() - 2 * HOUR),
    notAfter: new Date(Date.now() - HOUR),
  });
  const cases: [string, Forged, string][] = [
    ["forged chain", forgedAdmin, forgedAdmin.certPem + first(web.CertPEM)],
    ["self-signed", selfSigned, selfSigned.certPem],
    ["foreign CA", foreign, foreign.certPem + foreignCa.certPem],
    ["expired", { certPem: expired.certPem, keyPem: expired.keyPem }, expired.certPem],
  ];
  for (const [name, forged, bundle] of cases) {
    // Our own path validation refuses each of them too (decides when the TLS layer lets one by).
    const [leaf, ...chain] = ders(bundle);
    const ours = await m.dbProxy.material.verifyPeer(leaf, chain, "clientAuth");
    assert.ok(
      !ours.ok && ours.reason === "bad_chain",
      `${name}: our check: ${JSON.stringify(ours)}`,
    );

    const before = m.events.filter((e) => e.type === "refused").length;
    assert.notEqual(await present(port, roots, bundle, forged.keyPem), "let me in", name);
    await eventually(
      () => m.events.filter((e) => e.type === "refused").length > before,
      5000,
      `${name}: a refusal`,
    );
    const refusal = m.events.filter((e) => e.type === "refused").at(-1) as Extract<
      ConnectionEvent,
      { type: "refused" }
    >;
    assert.equal(refusal.direction, "inbound", name);
    assert.equal(refusal.refusal.reason, "bad_chain", `${name}: ${refusal.refusal.detail}`);
    // Refused by the TLS layer itself, in the handshake, before our code saw the connection.
    assert.match(refusal.refusal.detail, /refused by the TLS layer against the mesh roots/, name);
  }
  assert.equal(m.db.connections(), 0, "the local app was never dialled");
  assert.equal(m.events.filter((e) => e.type === "accepted").length, 0);
  assert.equal(await refusedCount(admin, "inbound", "bad_chain"), cases.length);
  // The dashboard's refused list is fed by the event stream, which replays recent refusals.
  const stream = await eventStream(
    admin,
    /(event: refused\ndata: [^\n]*"reason":"bad_chain"[^\n]*\n[\s\S]*){4}/,
  );
  assert.match(stream, /"direction":"inbound"/);

  // The control: admin's real certificate is let through to the app, so each case above was
  // refused for its chain alone.
  const real = (await m.agent.leaf("admin")).value;
  const client = await tlsClient(port, { cert: real.CertPEM, key: real.PrivateKeyPEM, ca: roots });
  assert.equal(new TextDecoder().decode(await roundTrip(client, "hello")), "hello");
  assert.equal(m.db.connections(), 1);
  ac.abort();
});

Deno.test("forged chain, inbound: a client without a certificate is refused in the handshake as no_cert", async () => {
  await using m = await mesh();
  const port = m.dbProxy.inbound!.address.port;
  const roots = m.dbProxy.material.roots!.pems;
  for (const maxVersion of ["TLSv1.2", "TLSv1.3"] as const) {
    const before = m.events.filter((e) => e.type === "refused").length;
    const client = await tlsClient(port, { ca: roots, maxVersion }).catch((e: Error) => e);
    if (!(client instanceof Error)) assert.equal(await outcome(client, "x"), "closed");
    await eventually(() => m.events.filter((e) => e.type === "refused").length > before);
    const refusal = m.events.filter((e) => e.type === "refused").at(-1) as Extract<
      ConnectionEvent,
      { type: "refused" }
    >;
    assert.equal(refusal.refusal.reason, "no_cert", `${maxVersion}: ${refusal.refusal.detail}`);
    assert.match(refusal.refusal.detail, /peer sent no certificates/);
  }
  assert.equal(m.db.connections(), 0);
});

/** A fake "db" sidecar: node:tls with `requestCert`, presenting `cert`; records what it gets. */
async function fakeSidecar(cert: string, key: string) {
  let handshakes = 0;
  let received = 0;
  let tcp = 0;
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ cert, key, requestCert: true, rejectUnauthorized: false });
  server.on("connection", (s: net.Socket) => {
    tcp++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("secureConnection", (s: tls.TLSSocket) => {
    handshakes++;
    s.on("data", (c: Uint8Array) => (received += c.length));
    s.on("error", () => {});
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    /** TCP connections accepted (the agent's TCP check opens some too). */
    tcp: () => tcp,
    /** Handshakes completed on the server's side. */
    handshakes: () => handshakes,
    /** Application bytes received. */
    received: () => received,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * web's sidecar with upstream db, whose only registered endpoint is `fake`; `body` gets it
 * with the events and an admin app, and the stolen web leaf.
 */
async function webSidecarTo(
  serve: (
    web: { CertPEM: string; PrivateKeyPEM: string },
    trustDomain: string,
    roots: string,
  ) => Promise<Forged & { bundle: string }>,
  body: (s: {
    fake: Awaited<ReturnType<typeof fakeSidecar>>;
    forged: Forged & { bundle: string };
    webProxy: Proxy;
    events: ConnectionEvent[];
    admin: ReturnType<typeof createAdminApp>;
    upstreamPort: number;
  }) => Promise<void>,
): Promise<void> {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const ac = new AbortController();
  try {
    const web = (await agent.leaf("web")).value; // the stolen key and certificate
    const roots = (await agent.roots()).value.Roots.map((r) => r.RootCert).join("");
    const forged = await serve(web, dev.ca.trustDomain, roots);
    await using fake = await fakeSidecar(forged.bundle, forged.keyPem);
    const upstreamPort = freePort();
    // The fake server is db's registered sidecar endpoint (its TCP check passes).
    await agent.register({
      ID: "db-1",
      Name: "db",
      Port: 1,
      Connect: { SidecarService: { Port: fake.port } },
    });
    await agent.register({
      ID: "web-1",
      Name: "web",
      Port: 1,
      Connect: {
        SidecarService: {
          Proxy: { Upstreams: [{ DestinationName: "db", LocalBindPort: upstreamPort }] },
        },
      },
    });
    const events: ConnectionEvent[] = [];
    await using webProxy: Proxy = await startProxy({
      agent,
      sidecarFor: "web-1",
      onEvent: (e) => events.push(e),
    });
    await webProxy.ready;
    await eventually(() =>
      webProxy.upstreams[0]?.resolver?.targets.get("db.default.default.dc1")?.endpoints.length ===
        1
    );
    const admin = createAdminApp({ proxy: webProxy, tickMs: 60_000, signal: ac.signal });
    await body({ fake, forged, webProxy, events, admin, upstreamPort });
  } finally {
    ac.abort();
    await agent.close();
  }
}

/** Sends bytes through web's upstream listener; resolves once the proxy refused the client. */
async function sendThrough(upstreamPort: number, events: ConnectionEvent[]) {
  const client = await tcpClient(upstreamPort);
  client.write("the client's secret bytes");
  assert.equal(await outcome(client, " and more"), "closed");
  await eventually(() => events.some((e) => e.type === "refused"));
  const failed = events.find((e) => e.type === "dial_failed");
  const refused = events.find((e) => e.type === "refused");
  assert.ok(failed?.type === "dial_failed" && refused?.type === "refused");
  assert.equal(refused.direction, "outbound");
  return { failed, refused };
}

Deno.test("forged chain, outbound: a fake db presenting [db signed with web's leaf key, web's leaf] gets none of the client's bytes; the dial fails in the handshake as bad_chain", async () => {
  await webSidecarTo(
    async (web, td) => {
      const forged = await forge({
        uri: `spiffe://${td}/ns/default/dc/dc1/svc/db`,
        issuer: { certPem: web.CertPEM, keyPem: web.PrivateKeyPEM },
      });
      return { ...forged, bundle: forged.certPem + first(web.CertPEM) };
    },
    async ({ fake, forged, webProxy, events, admin, upstreamPort }) => {
      // Our own check refuses the server's chain too.
      const [leaf, ...chain] = ders(forged.bundle);
      const ours = await webProxy.material.verifyPeer(leaf, chain, "serverAuth");
      assert.ok(!ours.ok && ours.reason === "bad_chain", JSON.stringify(ours));

      const tcpBefore = fake.tcp();
      const { failed, refused } = await sendThrough(upstreamPort, events);
      assert.ok(fake.tcp() > tcpBefore, "the dial reached the fake server");
      assert.equal(fake.received(), 0, "not one byte of the client reached the fake server");
      // Refused by the TLS layer, in the handshake.
      assert.match(failed.error, /^bad_chain: .*refused by the TLS layer against the mesh roots/);
      assert.equal(fake.handshakes(), 0, "the handshake did not complete");
      assert.equal(refused.refusal.reason, "bad_chain", refused.refusal.detail);
      assert.equal(await refusedCount(admin, "outbound", "bad_chain"), 1);
      // The endpoint's last dial error, as /v1/state (and the dashboard) show it.
      const state = await (await admin.request("/v1/state")).json();
      assert.match(JSON.stringify(state.upstreams), /bad_chain: [^"]*TLS layer/);
    },
  );
});

Deno.test("forged chain, outbound: an X.509 v1 certificate that names the mesh root as its issuer, signed by anyone, gets none of the client's bytes (Deno's TLS layer checks such a chain by names only; our check refuses it)", async () => {
  await webSidecarTo(
    async (_web, _td, roots) => {
      const forged = await forgeV1(roots);
      return { ...forged, bundle: forged.certPem };
    },
    async ({ fake, events, upstreamPort }) => {
      const { failed, refused } = await sendThrough(upstreamPort, events);
      assert.equal(fake.received(), 0, "not one byte of the client reached the fake server");
      assert.match(failed.error, /^bad_(chain|identity): /);
      assert.match(refused.refusal.reason, /^bad_(chain|identity)$/);
      console.log(
        `held: v1 certificate refused (${failed.error}); the TLS handshake ` +
          (fake.handshakes() ? "completed: Deno's TLS layer let it through" : "failed"),
      );
    },
  );
});
