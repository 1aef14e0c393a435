// Faults of the data plane: silent clients, garbage, old TLS, an application that refuses or
// resets, a peer that stops reading. `deno task soak` runs the same tests at full size.
import assert from "node:assert/strict";
import net from "node:net";
import { createAdminApp } from "../../src/admin/app.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { decodePem } from "../../src/trust/pem.ts";
import { parseExposition } from "../admin/_prometheus.ts";
import { clientFor, devAgent, eventually, freePort, nth } from "../_helpers.ts";
import { echoServer, roundTrip, tcpClient, tlsClient } from "../e2e/_net.ts";
import { floodUntilHeld } from "./_flood.ts";

const SOAK = Deno.env.get("MESHGATE_SOAK") === "1";

/** db behind a meshgate sidecar (short handshake timeout), with a client identity. */
async function inbound(opts: { app?: number } = {}) {
  const dev = await devAgent();
  const agent = clientFor(dev);
  const app = opts.app === undefined ? await echoServer() : undefined;
  const port = freePort();
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: opts.app ?? app!.port,
    Connect: { SidecarService: { Port: port } },
  });
  const proxy = await startProxy({
    agent,
    sidecarFor: "db-1",
    limits: { handshakeTimeoutMs: 500, localConnectTimeoutMs: 500 },
  });
  await proxy.ready;
  const web = (await agent.leaf("web")).value;
  const roots = (await agent.roots()).value.Roots.map((r) => r.RootCert);
  const admin = createAdminApp({ proxy });
  const refused = async (reason: string) =>
    parseExposition(await (await admin.request("/metrics")).text()).value(
      "meshgate_connections_refused_total",
      { direction: "inbound", reason },
    );
  const connect = () => tlsClient(port, { cert: web.CertPEM, key: web.PrivateKeyPEM, ca: roots });
  return {
    dev,
    agent,
    app,
    port,
    proxy,
    refused,
    connect,
    async [Symbol.asyncDispose]() {
      await proxy.close();
      await app?.close();
      await agent.close();
      await dev.close();
    },
  };
}

/** Resolves when the socket closes (or after `ms`, with false). */
function closed(s: net.Socket, ms = 5000): Promise<boolean> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    // Half-open sockets see the proxy's close as 'end' first.
    const done = () => {
      clearTimeout(t);
      resolve(true);
    };
    s.once("end", done);
    s.once("close", done);
    s.resume(); // 'end' comes only once what was sent (a TLS alert) has been read
  });
}

Deno.test("data plane: silent clients (slowloris) are closed by the handshake timeout; others get through", async () => {
  await using s = await inbound();
  const n = SOAK ? 1000 : 200;
  const silent: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = await tcpClient(s.port);
    c.on("error", () => {});
    silent.push(c);
  }
  // A legitimate client is served meanwhile.
  const ok = await s.connect();
  assert.equal(new TextDecoder().decode(await roundTrip(ok, "real")), "real");
  const all = await Promise.all(silent.map((c) => closed(c, 10_000)));
  assert.ok(all.every(Boolean), "every silent socket was closed");
  await eventually(async () => (await s.refused("handshake_timeout")) >= n, 10_000);
  console.log(`held: ${n} silent sockets closed by the 500 ms handshake timeout; 1 client served`);
});

Deno.test("data plane: garbage, truncated handshakes and TLS 1.0/1.1 are refused with a counted reason", async () => {
  await using s = await inbound();
  // Garbage instead of a ClientHello.
  const g = await tcpClient(s.port);
  g.on("error", () => {});
  g.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  assert.ok(await closed(g));
  // A truncated ClientHello: a record header that promises more than arrives.
  const t = await tcpClient(s.port);
  t.on("error", () => {});
  t.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
  assert.ok(await closed(t, 5000), "closed by the handshake timeout");
  // TLS 1.0 and 1.1 clients (our minimum is 1.2).
  for (const v of ["TLSv1", "TLSv1.1"] as const) {
    const web = (await s.agent.leaf("web")).value;
    const roots = (await s.agent.roots()).value.Roots.map((r) => r.RootCert);
    const r = await tlsClient(s.port, {
      cert: web.CertPEM,
      key: web.PrivateKeyPEM,
      ca: roots,
      minVersion: v,
      maxVersion: v,
    }).then((c) => {
      c.destroy();
      return "connected";
    }, (e) => String(e));
    assert.notEqual(r, "connected", `${v} must not connect`);
  }
  await eventually(
    async () => (await s.refused("handshake")) + (await s.refused("handshake_timeout")) >= 4,
    5000,
  );
  assert.equal(s.app!.connections(), 0, "nothing reached the application");
  console.log(
    `held: 4 bad clients refused (handshake ${await s.refused("handshake")}, handshake_timeout ` +
      `${await s.refused("handshake_timeout")}); 0 reached the application`,
  );
});

Deno.test("data plane: an application that refuses closes the mesh connection cleanly (app_unreachable)", async () => {
  const dead = freePort(); // nothing listens here
  await using s = await inbound({ app: dead });
  const c = await s.connect();
  c.on("error", () => {});
  c.write("hello?");
  assert.ok(await closed(c));
  assert.equal(await s.refused("app_unreachable"), 1);
  console.log("held: 1 mesh connection closed cleanly, counted as app_unreachable");
});

Deno.test("data plane: an application that resets mid-stream closes the mesh side too", async () => {
  const app = net.createServer((sock) => {
    sock.once("data", () => sock.resetAndDestroy());
  });
  await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
  await using s = await inbound({ app: (app.address() as net.AddressInfo).port });
  const c = await s.connect();
  c.on("error", () => {});
  c.write("boom");
  assert.ok(await closed(c), "the mesh connection closed after the reset");
  await eventually(() => s.proxy.inbound!.connections.size === 0);
  console.log("held: 1 reset by the application → the mesh connection closed, 0 left open");
  await new Promise<void>((r) => app.close(() => r()));
});

Deno.test("data plane: a reader that stops keeps memory bounded while a writer offers gigabytes", async () => {
  // The application accepts and never reads.
  const stalled = new Set<net.Socket>();
  const app = net.createServer((sock) => {
    sock.pause();
    stalled.add(sock);
  });
  await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
  await using s = await inbound({ app: (app.address() as net.AddressInfo).port });
  const web = (await s.agent.leaf("web")).value;
  const roots = (await s.agent.roots()).value.Roots.map((r) => r.RootCert);
  const offered = SOAK ? 1024 : 256; // MiB
  const flood = await floodUntilHeld(
    {
      PORT: String(s.port),
      CERT: web.CertPEM,
      KEY: web.PrivateKeyPEM,
      CA: roots.join("\n"),
      MIB: String(offered),
    },
    () => s.proxy.inbound!.connections.size === 1,
    () => [...s.proxy.inbound!.connections][0]?.pipe.stats.aToB ?? 0,
  );
  console.log(
    `held: ${offered} MiB offered; the proxy read ${flood.readMiB.toFixed(0)} MiB and stopped ` +
      `(writer: "${flood.last}"); proxy process grew ${flood.grownMiB.toFixed(0)} MiB`,
  );
  assert.ok(!flood.done, "the writer was held back");
  // Bound: the pipe's 64 MiB pause threshold for TLS sources plus TLS and kernel buffers.
  assert.ok(flood.readMiB < 100, `read ${flood.readMiB} MiB`);
  assert.ok(flood.grownMiB < 250, `memory grew ${flood.grownMiB} MiB`);
  for (const sock of stalled) sock.destroy();
  await new Promise<void>((r) => app.close(() => r()));
});

Deno.test("data plane: a client certificate with an RSA-1024 key or a SHA-1 signature is refused", async () => {
  await using s = await inbound();
  const roots = (await s.agent.roots()).value.Roots.map((r) => r.RootCert);
  const uri = `spiffe://${s.dev.ca.trustDomain}/ns/default/dc/dc1/svc/web`;
  // Our own check, whatever the TLS library lets through.
  for (
    const [weak, why] of [["rsa-1024", /weak RSA 1024-bit key/], [
      "sha-1",
      /weak .*SHA-1 signature/,
    ]] as const
  ) {
    const { certPem } = await s.dev.ca.signIdentity(uri, { weak });
    const { der } = nth(decodePem(certPem), 0, "certificate");
    const verdict = await s.proxy.material.verifyPeer(der, [], "clientAuth");
    assert.ok(!verdict.ok && verdict.reason === "bad_chain" && why.test(verdict.detail), weak);
  }
  // End to end: the SHA-1 client completes the handshake and is refused; an RSA-1024 key is
  // refused by the client's own TLS library ("key too small") before it can even try.
  const { certPem, keyPem } = await s.dev.ca.signIdentity(uri, { weak: "sha-1" });
  const c = await tlsClient(s.port, { cert: certPem, key: keyPem, ca: roots }).catch((e) => e);
  if (!(c instanceof Error)) {
    c.on("error", () => {});
    c.write("let me in");
    assert.ok(await closed(c), "closed");
  }
  await eventually(async () =>
    (await s.refused("bad_chain")) + (await s.refused("handshake")) >= 1
  );
  assert.equal(s.app!.connections(), 0);
  console.log("held: RSA-1024 and SHA-1 certificates refused by our check; 0 reached the app");
});
