// The outbound dial's identity check, with real TLS on loopback and certificates from our CA:
// the server must chain to the mesh roots and be the service we meant to reach. The TLS layer
// itself trusts nothing (TlsMaterial.secureContext), so these checks are all there is.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { ConnectCA, type IssuedLeaf } from "../../src/devagent/ca.ts";
import { peerChain } from "../../src/net/sockets.ts";
import { type DialFailure, dialMesh } from "../../src/outbound/dialer.ts";
import { parseCertificate } from "../../src/trust/certificate.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import { eventually } from "../_helpers.ts";

const CLUSTER = "11111111-2222-3333-4444-555555555555";

/** Our side: web's material from `ca`. */
async function webMaterial(ca: ConnectCA): Promise<TlsMaterial> {
  const material = new TlsMaterial();
  await material.setRoots({
    ActiveRootID: ca.activeRoot.ID,
    TrustDomain: ca.trustDomain,
    Roots: ca.roots,
  });
  const leaf = (await ca.signLeaf("web")).cert;
  await material.setLeaf({ ...leaf, CreateIndex: 1, ModifyIndex: 1 });
  return material;
}

/** A TLS server presenting `leaf`; records the client certificate's SPIFFE URI it was shown. */
async function meshServer(leaf: IssuedLeaf, roots: string[]) {
  const seen: Promise<string | undefined>[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({
    cert: leaf.cert.CertPEM,
    key: leaf.cert.PrivateKeyPEM,
    ca: roots,
    requestCert: true,
    rejectUnauthorized: false,
  }, (s) => {
    sockets.add(s);
    const { der } = peerChain(s);
    seen.push(der ? parseCertificate(der).then((c) => c.uris[0]) : Promise.resolve("none"));
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    s.end("hello from the server");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const endpoint = (port: number, service = "db", datacenter?: string) => ({
  address: "127.0.0.1",
  port,
  service,
  datacenter,
  id: `node/${service}-sidecar-proxy`,
});

/** The failure of a dial that must fail (never an exception). */
async function dialFailure(p: ReturnType<typeof dialMesh>): Promise<DialFailure> {
  const dialed = await p;
  if (dialed.ok) dialed.connection.socket.destroy();
  assert.ok(!dialed.ok, "expected the dial to fail");
  return dialed.failure;
}

Deno.test("dial: the expected service, chained to the roots, is reached and sees our leaf", async () => {
  const ca = await ConnectCA.create({ clusterId: CLUSTER });
  const material = await webMaterial(ca);
  await using server = await meshServer(await ca.signLeaf("db"), ca.roots.map((r) => r.RootCert));
  const dialed = await dialMesh(material, endpoint(server.port, "db", "dc1"), 2000);
  assert.ok(dialed.ok, dialed.ok ? "" : dialed.failure.detail);
  const { socket, held } = dialed.connection;
  // What arrived while the dial checked the server is held; the rest follows on the socket.
  const early = held.release();
  const got = await new Promise<string>((resolve) => {
    let data = early.chunks.map((c) => new TextDecoder().decode(c)).join("");
    if (early.ended) return resolve(data);
    socket.on("data", (c: Uint8Array) => (data += new TextDecoder().decode(c)));
    socket.on("end", () => resolve(data));
  });
  socket.destroy();
  assert.equal(got, "hello from the server");
  assert.deepEqual(await Promise.all(server.seen), [material.leaf!.cert.ServiceURI]);
});

Deno.test("dial: a mesh certificate of another service is refused (bad_identity)", async () => {
  const ca = await ConnectCA.create({ clusterId: CLUSTER });
  const material = await webMaterial(ca);
  await using server = await meshServer(await ca.signLeaf("api"), ca.roots.map((r) => r.RootCert));
  const err = await dialFailure(dialMesh(material, endpoint(server.port, "db"), 2000));
  assert.equal(err.reason, "bad_identity");
  assert.match(err.detail, /got spiffe:\/\/.*\/svc\/api, want service db/);
});

Deno.test("dial: the right service in another datacenter is refused (bad_identity)", async () => {
  const ca = await ConnectCA.create({ clusterId: CLUSTER });
  const material = await webMaterial(ca);
  await using server = await meshServer(await ca.signLeaf("db"), ca.roots.map((r) => r.RootCert));
  const err = await dialFailure(dialMesh(material, endpoint(server.port, "db", "dc2"), 2000));
  assert.equal(err.reason, "bad_identity");
  assert.match(err.detail, /want service db in dc2/);
});

Deno.test("dial: the right SPIFFE ID signed by a foreign CA of the same trust domain is refused (bad_chain)", async () => {
  // Same cluster ID, so the same trust domain and a byte-identical URI: only the chain differs.
  const ca = await ConnectCA.create({ clusterId: CLUSTER });
  const impostor = await ConnectCA.create({ clusterId: CLUSTER });
  const material = await webMaterial(ca);
  const forged = await impostor.signLeaf("db");
  await using server = await meshServer(forged, impostor.roots.map((r) => r.RootCert));
  const err = await dialFailure(dialMesh(material, endpoint(server.port, "db"), 2000));
  assert.equal(err.reason, "bad_chain");
});

Deno.test("dial: nothing listening, or a server that never finishes the handshake, is a connect failure", async () => {
  const ca = await ConnectCA.create({ clusterId: CLUSTER });
  const material = await webMaterial(ca);
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const refused = await dialFailure(dialMesh(material, endpoint(port), 2000));
  assert.equal(refused.reason, "connect");

  const silent = new Set<net.Socket>();
  const mute = net.createServer((s) => silent.add(s.on("error", () => {})));
  await new Promise<void>((r) => mute.listen(0, "127.0.0.1", r));
  try {
    const stalled = await dialFailure(
      dialMesh(material, endpoint((mute.address() as net.AddressInfo).port), 300),
    );
    assert.equal(stalled.reason, "connect");
    assert.match(stalled.detail, /timed out after 300 ms/);
  } finally {
    for (const s of silent) s.destroy();
    await new Promise<void>((r) => mute.close(() => r()));
  }
});

Deno.test("dial: a signal cuts a handshake in progress; an aborted one dials nothing", async () => {
  const ca = await ConnectCA.create({ clusterId: CLUSTER });
  const material = await webMaterial(ca);
  const silent = new Set<net.Socket>();
  const mute = net.createServer((s) => silent.add(s.on("error", () => {})));
  await new Promise<void>((r) => mute.listen(0, "127.0.0.1", r));
  try {
    const port = (mute.address() as net.AddressInfo).port;
    const stop = new AbortController();
    const dialing = dialFailure(dialMesh(material, endpoint(port), 30_000, stop.signal));
    await eventually(() => silent.size === 1, 5000, "the TCP connection");
    stop.abort();
    const cut = await dialing;
    assert.equal(cut.reason, "connect");
    assert.equal(cut.detail, `127.0.0.1:${port}: dial cancelled`);
    const before = silent.size;
    const none = await dialFailure(dialMesh(material, endpoint(port), 30_000, AbortSignal.abort()));
    assert.equal(none.detail, `127.0.0.1:${port}: dial cancelled`);
    assert.equal(silent.size, before, "no connection for an aborted signal");
  } finally {
    for (const s of silent) s.destroy();
    await new Promise<void>((r) => mute.close(() => r()));
  }
});

Deno.test("dial: without our leaf it waits for it; a signal ends the wait", async () => {
  const material = new TlsMaterial(); // never loaded
  const stop = new AbortController();
  const waiting = dialFailure(dialMesh(material, endpoint(1), 30_000, stop.signal));
  stop.abort();
  assert.deepEqual(await waiting, { reason: "connect", detail: "127.0.0.1:1: dial cancelled" });
});
