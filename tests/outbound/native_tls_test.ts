// The native-TLS outbound leg with real mTLS on loopback and certificates from our own PKI: the
// server must chain to the mesh roots (our check, not the TLS layer's store) and be the service
// we meant to reach; nothing is sent before that; where the runtime cannot show what our check
// needs, the result asks for the node:tls leg.
import assert from "node:assert/strict";
import net from "node:net";
import { dialMesh } from "../../src/outbound/dialer.ts";
import {
  detectNativeTls,
  dialMeshNative,
  type NativeDialResult,
  nativeTlsSupport,
} from "../../src/outbound/native_tls.ts";
import type { TlsMaterial } from "../../src/trust/material.ts";
import {
  endpoint,
  issue,
  materialFor,
  meshServer,
  readAll,
  rootList,
  simpleMesh,
  spiffe,
} from "./_native_fixtures.ts";

/** A failure that is final (no fallback asked). */
function finalFailure(r: NativeDialResult): { reason: string; detail: string } {
  assert.equal(r.ok, false, "failed");
  if (r.ok) throw new Error("unreachable");
  assert.equal(r.fallback, undefined, `final, not a fallback: ${JSON.stringify(r)}`);
  return r.failure!;
}

/** The node:tls leg's verdict on the same endpoint: "ok" or its failure reason. */
async function nodeLegVerdict(material: TlsMaterial, ep: ReturnType<typeof endpoint>) {
  const r = await dialMesh(material, ep, 2000);
  if (!r.ok) return r.failure.reason;
  r.connection.socket.destroy();
  return "ok";
}

Deno.test("native dial: this runtime offers the accessor; the TLS layer's extra roots are reported", () => {
  const support = nativeTlsSupport();
  assert.ok(support.available, JSON.stringify(support));
  assert.equal(typeof support.peerCertificate, "symbol");
  assert.equal(typeof support.serverName, "symbol");
  // This test process has no DENO_TLS_CA_STORE: Mozilla's roots are in the TLS layer's store.
  const expected = Deno.env.get("DENO_TLS_CA_STORE") === "" ? "mesh-only" : "mesh-and-default";
  assert.equal(support.tlsLayerRoots, expected);
});

Deno.test("native dial: the expected service is reached, sees our leaf and our SNI, and its first bytes are not lost", async () => {
  const { root, db, material } = await simpleMesh();
  await using server = await meshServer(db.pem, db.keyPem, [root.pem]);
  const sni = "db.default.dc1.internal." + "7e1f3c2a-1b2c-4d5e-8f90-a1b2c3d4e5f6.consul";
  const r = await dialMeshNative(material, endpoint(server.port, "db", "dc1"), {
    timeoutMs: 2000,
    sni,
  });
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.connection.peer, spiffe("db"));
  // The server wrote and closed before our check finished: all of it is still there.
  assert.equal(await readAll(r.connection.conn), "hello from the server");
  r.connection.conn.close();
  assert.equal(server.seen.length, 1);
  assert.equal(server.seen[0]!.clientUri, spiffe("web"));
  assert.equal(server.seen[0]!.servername, sni);
});

Deno.test("native dial: without an SNI, none is sent to an IP address (as the node:tls leg)", async () => {
  const { root, db, material } = await simpleMesh();
  await using server = await meshServer(db.pem, db.keyPem, [root.pem]);
  const r = await dialMeshNative(material, endpoint(server.port), { timeoutMs: 2000 });
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(await readAll(r.connection.conn), "hello from the server");
  r.connection.conn.close();
  assert.ok(!server.seen[0]!.servername, `servername ${server.seen[0]!.servername}`);
});

Deno.test("native dial: another service, or the right one in another datacenter, fails (bad_identity) before any byte is sent", async () => {
  const { root, material } = await simpleMesh();
  const api = await issue({ issuer: root, uri: spiffe("api") });
  const dbDc2 = await issue({ issuer: root, uri: spiffe("db", "dc2") });
  for (
    const [leaf, ep, want] of [
      [api, (p: number) => endpoint(p, "db"), /got spiffe:\/\/.*\/svc\/api, want service db$/],
      [dbDc2, (p: number) => endpoint(p, "db", "dc1"), /want service db in dc1$/],
    ] as const
  ) {
    await using server = await meshServer(leaf.pem, leaf.keyPem, [root.pem], () => {});
    const r = await dialMeshNative(material, ep(server.port), { timeoutMs: 2000 });
    const failure = finalFailure(r);
    assert.equal(failure.reason, "bad_identity");
    assert.match(failure.detail, want);
    // The server completed its handshake and then got nothing.
    assert.equal(server.seen[0]?.received ?? 0, 0);
  }
});

Deno.test("native dial: the right SPIFFE ID from a foreign CA of the same trust domain is refused by the TLS layer (bad_chain, final)", async () => {
  const { material } = await simpleMesh();
  const impostor = await issue({ ca: true });
  const forged = await issue({ issuer: impostor, uri: spiffe("db") });
  await using server = await meshServer(forged.pem, forged.keyPem, [impostor.pem], () => {});
  const r = await dialMeshNative(material, endpoint(server.port), { timeoutMs: 2000 });
  const failure = finalFailure(r);
  assert.equal(failure.reason, "bad_chain");
  // Same CA name, other key: the TLS layer finds our root by name and the signature fails.
  assert.match(failure.detail, /refused by the TLS layer.*BadSignature/);
  assert.equal(await nodeLegVerdict(material, endpoint(server.port)), "bad_chain");
});

Deno.test("native dial: a leaf under an intermediate the roots do not list asks for the node:tls leg, which accepts it; listed, the native leg accepts it itself", async () => {
  const root = await issue({ ca: true });
  const inter = await issue({ ca: true, issuer: root, name: "intermediate" });
  const web = await issue({ issuer: root, uri: spiffe("web") });
  const db = await issue({ issuer: inter, uri: spiffe("db") });
  await using server = await meshServer(db.pem + inter.pem, db.keyPem, [root.pem], (s) => {
    s.end("hi");
  });
  const leaf = { certPem: web.pem, keyPem: web.keyPem };

  const unlisted = await materialFor(rootList([{ pem: root.pem }]), leaf);
  const r = await dialMeshNative(unlisted, endpoint(server.port), { timeoutMs: 2000 });
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.fallback, `asks for node:tls: ${JSON.stringify(r)}`);
  assert.equal(!r.ok && r.failure?.reason, "bad_chain");
  assert.equal(await nodeLegVerdict(unlisted, endpoint(server.port)), "ok");

  const listed = await materialFor(rootList([{ pem: root.pem, intermediates: [inter.pem] }]), leaf);
  const ok = await dialMeshNative(listed, endpoint(server.port), { timeoutMs: 2000 });
  assert.ok(ok.ok, JSON.stringify(ok));
  assert.equal(await readAll(ok.connection.conn), "hi");
  ok.connection.conn.close();
});

Deno.test("native dial: an expired server certificate is refused by the TLS layer (bad_chain)", async () => {
  const { root, material } = await simpleMesh();
  const expired = await issue({
    issuer: root,
    uri: spiffe("db"),
    notBefore: new Date(Date.now() - 3 * 3600_000),
    notAfter: new Date(Date.now() - 3600_000),
  });
  await using server = await meshServer(expired.pem, expired.keyPem, [root.pem], () => {});
  const r = await dialMeshNative(material, endpoint(server.port), { timeoutMs: 2000 });
  const failure = finalFailure(r);
  assert.equal(failure.reason, "bad_chain");
  assert.match(failure.detail, /refused by the TLS layer.*expired/);
});

Deno.test("native dial: nothing listening, a server that never finishes the handshake, and a cancelled dial fail to connect", async () => {
  const { material } = await simpleMesh();
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const refused = await dialMeshNative(material, endpoint(port), { timeoutMs: 2000 });
  assert.equal(finalFailure(refused).reason, "connect");

  const silent = new Set<net.Socket>();
  const mute = net.createServer((s) => silent.add(s.on("error", () => {})));
  await new Promise<void>((r) => mute.listen(0, "127.0.0.1", r));
  const mutePort = (mute.address() as net.AddressInfo).port;
  try {
    const stalled = await dialMeshNative(material, endpoint(mutePort), { timeoutMs: 300 });
    assert.equal(finalFailure(stalled).reason, "connect");
    assert.match(finalFailure(stalled).detail, /timed out after 300 ms$/);

    const stop = new AbortController();
    setTimeout(() => stop.abort(), 50);
    const cancelled = await dialMeshNative(material, endpoint(mutePort), {
      timeoutMs: 5000,
      signal: stop.signal,
    });
    assert.equal(finalFailure(cancelled).reason, "connect");
    assert.match(finalFailure(cancelled).detail, /dial cancelled$/);
  } finally {
    for (const s of silent) s.destroy();
    await new Promise<void>((r) => mute.close(() => r()));
  }
});

Deno.test("native dial: a runtime without the peer-certificate accessor asks for the node:tls leg without dialling", async () => {
  const noAccessor = detectNativeTls({ connectTls: Deno.connectTls, internal: Symbol("none") });
  assert.equal(noAccessor.available, false);
  assert.match(!noAccessor.available ? noAccessor.reason : "", /peer-certificate accessor/);
  assert.equal(detectNativeTls({}).available, false);

  const { root, db, material } = await simpleMesh();
  await using server = await meshServer(db.pem, db.keyPem, [root.pem]);
  const r = await dialMeshNative(material, endpoint(server.port), {
    timeoutMs: 2000,
    support: noAccessor,
  });
  assert.ok(!r.ok && r.fallback && !r.failure, JSON.stringify(r));
  assert.equal(server.handshakes(), 0, "nothing was dialled");
  assert.equal(await nodeLegVerdict(material, endpoint(server.port)), "ok");

  // An accessor that answers nothing after a handshake is a broken one: node:tls decides.
  const support = nativeTlsSupport();
  assert.ok(support.available);
  const broken = await dialMeshNative(material, endpoint(server.port), {
    timeoutMs: 2000,
    support: { ...support, peerCertificate: Symbol("absent") },
  });
  assert.ok(!broken.ok && broken.fallback && !broken.failure, JSON.stringify(broken));
  assert.match(!broken.ok ? broken.fallback ?? "" : "", /returned no certificate/);
});

// A process whose default store trusts a foreign CA (DENO_CERT: what a system or public root is
// to a public certificate): the TLS layer lets that CA's server through, our check refuses it.
Deno.test("native dial: roots the runtime's default store trusts are not mesh roots (DENO_CERT, DENO_TLS_CA_STORE=system|mozilla|empty)", async () => {
  const root = await issue({ ca: true });
  const foreign = await issue({ ca: true, name: "a CA the system trusts" });
  const dir = await Deno.makeTempDir({ prefix: "meshgate-native-" });
  try {
    const foreignFile = `${dir}/foreign.pem`;
    await Deno.writeTextFile(foreignFile, foreign.pem);
    const web = await issue({ issuer: root, uri: spiffe("web") });
    const impostor = await issue({ issuer: foreign, uri: spiffe("db") });
    await using server = await meshServer(impostor.pem, impostor.keyPem, [root.pem], () => {});
    const input = JSON.stringify({
      port: server.port,
      root: root.pem,
      web: { certPem: web.pem, keyPem: web.keyPem },
    });
    const run = async (env: Record<string, string>) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("./_native_store_probe.ts", import.meta.url).pathname],
        env: { MESH: input, ...env },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout).trim();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      return JSON.parse(text) as { native: string; fallback: boolean; node: string; roots: string };
    };
    const home: Record<string, string> = { HOME: Deno.env.get("HOME") ?? "/tmp" };
    const denoDir = Deno.env.get("DENO_DIR");
    if (denoDir) home.DENO_DIR = denoDir;
    // Trusted by the TLS layer: our check refuses it; node:tls (asked to decide) refuses it too.
    for (const stores of [undefined, "system", "mozilla", ""]) {
      const env = {
        ...home,
        DENO_CERT: foreignFile,
        ...(stores === undefined ? {} : { DENO_TLS_CA_STORE: stores }),
      };
      const got = await run(env);
      assert.deepEqual(
        got,
        { native: "bad_chain", fallback: true, node: "bad_chain", roots: "mesh-and-default" },
        `DENO_CERT with DENO_TLS_CA_STORE=${stores}`,
      );
    }
    // An empty default store: the TLS layer itself refuses it.
    const empty = await run({ ...home, DENO_TLS_CA_STORE: "" });
    assert.deepEqual(empty, {
      native: "bad_chain",
      fallback: false,
      node: "bad_chain",
      roots: "mesh-only",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
