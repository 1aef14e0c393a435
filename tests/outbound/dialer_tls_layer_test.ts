// The dial's TLS layer (issue #14 point 2): it verifies the server against the mesh roots itself,
// in the handshake, without a hostname check, and the dial's skipping of the legacy certificate
// object it would build for that check ends with the handshake.
import assert from "node:assert/strict";
import type net from "node:net";
import tls from "node:tls";
import { ConnectCA, type IssuedLeaf } from "../../src/devagent/ca.ts";
import { dialMesh } from "../../src/outbound/dialer.ts";
import { TlsMaterial } from "../../src/trust/material.ts";

const CLUSTER = "11111111-2222-3333-4444-555555555555";

async function webMaterial(ca: ConnectCA): Promise<TlsMaterial> {
  const material = new TlsMaterial();
  await material.setRoots({
    ActiveRootID: ca.activeRoot.ID,
    TrustDomain: ca.trustDomain,
    Roots: ca.roots,
  });
  await material.setLeaf({ ...(await ca.signLeaf("web")).cert, CreateIndex: 1, ModifyIndex: 1 });
  return material;
}

/** A server presenting `leaf`; counts the handshakes it completed. */
async function server(leaf: IssuedLeaf) {
  let handshakes = 0;
  const sockets = new Set<tls.TLSSocket>();
  const srv = tls.createServer({
    cert: leaf.cert.CertPEM,
    key: leaf.cert.PrivateKeyPEM,
    requestCert: true,
    rejectUnauthorized: false,
  }, (s) => {
    handshakes++;
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  srv.on("tlsClientError", () => {});
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    handshakes: () => handshakes,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

const endpoint = (port: number) => ({ address: "127.0.0.1", port, service: "db", id: "db-1" });

Deno.test("dial: a mesh server without DNS or IP names is reached by address (no hostname check), and the socket's getPeerCertificate(true) is whole again after the handshake", async () => {
  const ca = await ConnectCA.create({ clusterId: CLUSTER });
  const material = await webMaterial(ca);
  const db = await ca.signLeaf("db");
  await using srv = await server(db);
  const dialed = await dialMesh(material, endpoint(srv.port), 2000);
  assert.ok(dialed.ok, dialed.ok ? "" : dialed.failure.detail);
  const { socket } = dialed.connection;
  try {
    assert.equal(socket.authorized, true, "the TLS layer verified the server");
    assert.equal(Object.hasOwn(socket, "getPeerCertificate"), false, "the stub is gone");
    const cert = socket.getPeerCertificate(true);
    assert.ok(cert.raw?.length, "a full legacy certificate object");
    assert.match(cert.subjectaltname ?? "", /URI:spiffe:\/\/.*\/svc\/db/);
  } finally {
    socket.destroy();
  }
});

Deno.test("dial: a server whose certificate does not chain to the mesh roots fails the handshake itself as bad_chain", async () => {
  const ca = await ConnectCA.create({ clusterId: CLUSTER });
  const impostor = await ConnectCA.create({ clusterId: CLUSTER });
  const material = await webMaterial(ca);
  await using srv = await server(await impostor.signLeaf("db"));
  const dialed = await dialMesh(material, endpoint(srv.port), 2000);
  assert.ok(!dialed.ok, "the dial was refused");
  assert.equal(dialed.failure.reason, "bad_chain");
  assert.match(dialed.failure.detail, /refused by the TLS layer against the mesh roots/);
  assert.equal(srv.handshakes(), 0, "the handshake never completed");
});
