// Socket helpers: address formatting, connectPlain (half-open, refused, timed out, aborted) and
// peerChain (the DER a TLS peer presented, by Deno's raw handle and by the legacy fallback).
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import FakeTimers from "@sinonjs/fake-timers";
import { ConnectCA } from "../../src/devagent/ca.ts";
import { connectPlain, formatAddress, peerChain } from "../../src/net/sockets.ts";
import { decodePem } from "../../src/trust/pem.ts";
import { echoServer } from "../e2e/_net.ts";
import { root } from "../trust/_corpus.ts";

Deno.test("formatAddress: host:port, [v6]:port, unix:path", () => {
  assert.equal(formatAddress({ hostname: "127.0.0.1", port: 8080 }), "127.0.0.1:8080");
  assert.equal(formatAddress({ hostname: "::1", port: 443 }), "[::1]:443");
  assert.equal(formatAddress({ hostname: "db.local", port: 1 }), "db.local:1");
  assert.equal(formatAddress({ path: "/run/app.sock" }), "unix:/run/app.sock");
});

Deno.test("connectPlain connects a half-open socket: our end sent, theirs still read", async () => {
  const app = await echoServer();
  const socket = await connectPlain({ hostname: "127.0.0.1", port: app.port }, 5000);
  assert.equal(socket.allowHalfOpen, true);
  const got = new Promise<string>((resolve) => {
    let text = "";
    socket.on("data", (c) => (text += c));
    socket.on("end", () => resolve(text));
  });
  socket.end("hello"); // our side ends; the echo still comes back, then the server's end
  assert.equal(await got, "hello");
  socket.destroy();
  await app.close();
});

Deno.test("connectPlain over a unix socket", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/app.sock`;
  const server = net.createServer((s) => s.end("hi"));
  await new Promise<void>((r) => server.listen(path, r));
  try {
    const socket = await connectPlain({ path }, 5000);
    const text = await new Promise<string>((r) => {
      let t = "";
      socket.on("data", (c) => (t += c)).on("end", () => r(t));
    });
    assert.equal(text, "hi");
    socket.destroy();
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connectPlain: a refused port rejects naming the address and the reason", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  await assert.rejects(
    connectPlain({ hostname: "127.0.0.1", port }, 5000),
    new RegExp(`^Error: connect 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED|refused`, "i"),
  );
  await assert.rejects(
    connectPlain({ path: "/nonexistent/meshgate.sock" }, 5000),
    /^Error: connect unix:\/nonexistent\/meshgate\.sock: /,
  );
});

Deno.test("connectPlain: the timeout rejects with what it waited, and the socket is destroyed", async () => {
  const app = await echoServer();
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  let pending: Promise<net.Socket>;
  try {
    pending = connectPlain({ hostname: "127.0.0.1", port: app.port }, 1000);
    clock.tick(1000); // before the event loop can complete the connect
  } finally {
    clock.uninstall();
  }
  await assert.rejects(pending, /^Error: connect 127\.0\.0\.1:\d+: timed out after 1000 ms$/);
  await new Promise((r) => setTimeout(r, 50)); // the destroyed socket's close
  await app.close();
});

Deno.test("connectPlain: an abort rejects at once; an aborted signal never dials", async () => {
  const app = await echoServer();
  const ac = new AbortController();
  const pending = connectPlain({ hostname: "127.0.0.1", port: app.port }, 60_000, ac.signal);
  ac.abort();
  await assert.rejects(pending, /: aborted$/);
  await assert.rejects(
    connectPlain({ hostname: "127.0.0.1", port: app.port }, 60_000, AbortSignal.abort()),
    /: aborted$/,
  );
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(app.connections(), 0, "nothing reached the server");
  await app.close();
});

/** A TLS server asking for a client certificate; resolves the first accepted socket. */
async function tlsServer(cert: string, key: string) {
  const accepted = Promise.withResolvers<tls.TLSSocket>();
  const server = tls.createServer(
    { cert, key, requestCert: true, rejectUnauthorized: false },
    (s) => {
      s.on("error", () => {});
      accepted.resolve(s);
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: accepted.promise,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function dialWith(port: number, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  const socket = tls.connect({
    host: "127.0.0.1",
    port,
    rejectUnauthorized: false,
    ...options,
  });
  socket.on("error", () => {});
  await new Promise((r) => socket.once("secureConnect", r));
  return socket;
}

/** The legacy fallback: a socket without Deno's raw-chain handle. */
function withoutRawHandle(socket: tls.TLSSocket): tls.TLSSocket {
  return { getPeerCertificate: (d: boolean) => socket.getPeerCertificate(d) } as tls.TLSSocket;
}

Deno.test("peerChain: the presented leaf and chain, leaf first, by both paths", async () => {
  const ca = await ConnectCA.create();
  await ca.rotate(); // leaves now carry the cross-signed root after them
  const server = (await ca.signLeaf("db")).cert;
  const client = (await ca.signLeaf("web")).cert;
  const pems = client.CertPEM.split(/(?=-----BEGIN CERTIFICATE-----)/);
  assert.equal(pems.length, 2);
  const srv = await tlsServer(server.CertPEM, server.PrivateKeyPEM);
  const socket = await dialWith(srv.port, { cert: client.CertPEM, key: client.PrivateKeyPEM });
  const accepted = await srv.accepted;
  try {
    const want = { der: decodePem(pems[0]!)[0]!.der, chain: [decodePem(pems[1]!)[0]!.der] };
    const fast = peerChain(accepted);
    assert.deepEqual(new Uint8Array(fast.der!), want.der);
    assert.deepEqual(fast.chain.map((c) => new Uint8Array(c)), want.chain);
    const legacy = peerChain(withoutRawHandle(accepted));
    assert.deepEqual(legacy.der, want.der);
    assert.deepEqual(legacy.chain, want.chain);
  } finally {
    socket.destroy();
    accepted.destroy();
    await srv.close();
  }
});

Deno.test("peerChain: no client certificate is no DER and an empty chain", async () => {
  const ca = await ConnectCA.create();
  const server = (await ca.signLeaf("db")).cert;
  const srv = await tlsServer(server.CertPEM, server.PrivateKeyPEM);
  const socket = await dialWith(srv.port, {});
  const accepted = await srv.accepted;
  try {
    assert.deepEqual(peerChain(accepted), { chain: [] });
    assert.deepEqual(peerChain(withoutRawHandle(accepted)), { chain: [] });
  } finally {
    socket.destroy();
    accepted.destroy();
    await srv.close();
  }
});

Deno.test("peerChain keeps at most 8 certificates after the leaf, whatever a peer sends", async () => {
  const ca = await ConnectCA.create();
  const server = (await ca.signLeaf("db")).cert;
  const client = (await ca.signLeaf("web")).cert;
  const strangers = await Promise.all(
    Array.from({ length: 12 }, (_, i) => root(`Stranger ${i}`).then((c) => c.pem)),
  );
  const srv = await tlsServer(server.CertPEM, server.PrivateKeyPEM);
  const socket = await dialWith(srv.port, {
    cert: client.CertPEM + strangers.join(""),
    key: client.PrivateKeyPEM,
  });
  const accepted = await srv.accepted;
  try {
    const fast = peerChain(accepted);
    assert.equal(fast.chain.length, 8);
    assert.deepEqual(new Uint8Array(fast.chain[0]!), decodePem(strangers[0]!)[0]!.der);
    assert.ok(peerChain(withoutRawHandle(accepted)).chain.length <= 8);
  } finally {
    socket.destroy();
    accepted.destroy();
    await srv.close();
  }
});
