// TLS-layer handshake failures as refusals: the messages Deno's node:tls gives, classified, first
// as a table, then as they come from a real TLS server that requires a client certificate
// chaining to the mesh roots (the public listener's settings), on loopback.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import type { Refusal, RefusalReason } from "../../src/events/connection.ts";
import {
  classifyHandshakeError,
  handshakeReason,
  isProbeRefusal,
} from "../../src/inbound/handshake.ts";
import { tlsClient } from "../e2e/_net.ts";
import { mesh } from "./_inbound.ts";

const noRefusal = { authorizationError: undefined } as unknown as tls.TLSSocket;

Deno.test("handshakeReason: each message Deno's node:tls gives maps to its reason", () => {
  const table: [string, RefusalReason][] = [
    ["TLS handshake timeout", "handshake_timeout"],
    ["peer sent no certificates", "no_cert"],
    ["received fatal alert: CertificateRequired", "no_cert"],
    ["invalid peer certificate: UnknownIssuer", "bad_chain"],
    ["invalid peer certificate: Expired", "bad_chain"],
    ["received fatal alert: BadCertificate", "bad_chain"],
    ["socket hang up", "handshake"],
    ["received corrupt message of type InvalidContentType", "handshake"],
  ];
  for (const [message, reason] of table) {
    assert.equal(handshakeReason(new Error(message)), reason, message);
  }
});

Deno.test("classifyHandshakeError: a certificate the TLS layer refused is bad_chain whatever the error says; a missing one is no_cert by its code", () => {
  const refused = { authorizationError: new Error("UNABLE_TO_VERIFY_LEAF_SIGNATURE") };
  const bad = classifyHandshakeError(new Error("socket hang up"), refused as tls.TLSSocket);
  assert.equal(bad.reason, "bad_chain");
  assert.match(bad.detail, /refused by the TLS layer against the mesh roots.*UNABLE_TO_VERIFY/);
  const missing = Object.assign(new Error("alert"), {
    code: "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE",
  });
  assert.deepEqual(classifyHandshakeError(missing, noRefusal), {
    reason: "no_cert",
    detail: "no client certificate (alert)",
  });
  assert.deepEqual(classifyHandshakeError(new Error("TLS handshake timeout"), noRefusal), {
    reason: "handshake_timeout",
    detail: "TLS handshake timeout",
  });
});

Deno.test("isProbeRefusal: a connect-and-close or a silent connection is a probe; a refused certificate is not", () => {
  const table: [Refusal, boolean][] = [
    [{ reason: "handshake_timeout", detail: "TLS handshake timeout" }, true],
    [{ reason: "handshake", detail: "socket hang up" }, true],
    [{ reason: "handshake", detail: "received corrupt message" }, false],
    [{ reason: "no_cert", detail: "no client certificate" }, false],
    [{ reason: "bad_chain", detail: "socket hang up" }, false],
  ];
  for (const [refusal, probe] of table) {
    assert.equal(isProbeRefusal(refusal), probe, JSON.stringify(refusal));
  }
});

Deno.test("classifyHandshakeError on a real listener: no certificate, a foreign CA, a silent client, a connect-and-close", async () => {
  const m = await mesh();
  const seen: Refusal[] = [];
  const failed: (() => void)[] = [];
  const server = tls.createServer({
    ...m.material.serverOptions(),
    requestCert: true,
    rejectUnauthorized: true,
    handshakeTimeout: 300,
  }, (s) => s.destroy());
  server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
    seen.push(classifyHandshakeError(err, socket));
    socket.destroy();
    for (const wake of failed.splice(0)) wake();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const nextFailure = async (n: number) => {
    while (seen.length < n) await new Promise<void>((r) => failed.push(r));
    return seen[n - 1]!;
  };
  const attempt = async (cert?: { cert: string; key: string }) => {
    const c = await tlsClient(port, { ...cert, ca: m.roots }).catch((e: Error) => e);
    if (!(c instanceof Error)) {
      c.on("error", () => {});
      c.write("x");
      c.destroy();
    }
  };
  try {
    await attempt();
    assert.deepEqual(await nextFailure(1), {
      reason: "no_cert",
      detail: "no client certificate (peer sent no certificates)",
    });
    await attempt(await (await mesh()).client("web")); // same trust domain, foreign CA
    const foreign = await nextFailure(2);
    assert.equal(foreign.reason, "bad_chain");
    assert.match(foreign.detail, /refused by the TLS layer against the mesh roots/);
    const silent = net.connect({ host: "127.0.0.1", port });
    silent.on("error", () => {});
    const timedOut = await nextFailure(3);
    silent.destroy();
    assert.deepEqual(timedOut, { reason: "handshake_timeout", detail: "TLS handshake timeout" });
    assert.equal(isProbeRefusal(timedOut), true, "a silent connection is logged as a probe");
    const probe = net.connect({ host: "127.0.0.1", port }, () => probe.destroy());
    probe.on("error", () => {});
    const hangUp = await nextFailure(4);
    assert.deepEqual(hangUp, { reason: "handshake", detail: "socket hang up" });
    assert.equal(isProbeRefusal(hangUp), true, "a connect-and-close is logged as a probe");
    assert.equal(isProbeRefusal(seen[0]!) || isProbeRefusal(seen[1]!), false);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
