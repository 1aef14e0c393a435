// A stranger must not grow the proxy's memory: 2,000 handshakes against a running sidecar (its
// own process, so its resident memory is its own), each with a different 60 KB self-signed
// certificate carrying db's allowed SPIFFE ID. None reaches the app; RSS stays within a bound.
import assert from "node:assert/strict";
import tls from "node:tls";
import { x509 } from "../../src/trust/_x509.ts";
import { exportSec1Pem } from "../../src/trust/keys.ts";
import { clientFor, devAgent, eventually, spawnLogged } from "../_helpers.ts";
import { registerEchoDb } from "../_helpers.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const HANDSHAKES = Deno.env.get("MESHGATE_SOAK") === "1" ? 20_000 : 2000;
const CERT_BYTES = 60 * 1024;
// 120 MB offered in all: a verdict, a certificate or a buffer kept per stranger would show.
const BOUND_BYTES = 24 * 1024 * 1024;

function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

Deno.test({
  name: "resilience: 2,000 handshakes with different 60 KB self-signed certificates",
  ignore: Deno.build.os !== "linux",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const agent = clientFor(dev);
    const { app, port } = await registerEchoDb(agent);
    // Garbage collected often (see _gc_preload.ts) and a small old space: RSS growth then means
    // retention, and a proxy that kept every stranger's certificate would run out of memory.
    const p = spawnLogged(Deno.execPath(), [
      "run",
      "-A",
      "--v8-flags=--expose-gc,--max-old-space-size=64",
      "--preload",
      new URL("./_gc_preload.ts", import.meta.url).pathname,
      MAIN,
      "-sidecar-for",
      "db-1",
      "-http-addr",
      dev.address,
      "-admin-bind",
      "",
    ]);
    try {
      await eventually(() => p.logs().includes("proxy ready"), 30_000, "the proxy to be ready");
      const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]) as CryptoKeyPair;
      const template = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: "01",
        name: "",
        keys,
        signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
        extensions: [
          new x509.SubjectAlternativeNameExtension([{
            type: "url",
            value: `spiffe://${dev.ca.trustDomain}/ns/default/dc/dc1/svc/web`,
          }], true),
          new x509.Extension("1.3.6.1.4.1.99999.1", false, new Uint8Array(CERT_BYTES)),
        ],
      });
      const key = await exportSec1Pem(keys.privateKey);
      const der = new Uint8Array(template.rawData);
      const roots = (await agent.roots()).value.Roots.map((r) => r.RootCert);
      // Each certificate differs in its padding: no two are the same bytes.
      // Each attempt ends when the proxy closes it, or after 3 s (a TLS 1.3 client of Deno's
      // node:tls may not see a close that follows the handshake: a known limitation).
      const attempt = (i: number) =>
        new Promise<void>((resolve) => {
          const copy = der.slice();
          new DataView(copy.buffer).setUint32(copy.length - 1024, i);
          const cert = new x509.X509Certificate(copy).toString("pem");
          const c = tls.connect({
            host: "127.0.0.1",
            port,
            cert,
            key,
            ca: roots,
            checkServerIdentity: () => undefined,
          });
          const timer = setTimeout(() => c.destroy(), 3000);
          c.on("error", () => {});
          c.once("secureConnect", () => c.write("let me in"));
          c.once("close", () => {
            clearTimeout(timer);
            resolve();
          });
        });
      let next = 0;
      const run = async (count: number) => {
        const end = next + count;
        await Promise.all(Array.from({ length: 8 }, async () => {
          while (next < end) await attempt(next++);
        }));
      };
      await run(200); // warm up: code paths, TLS buffers and the allocator reach their size
      const base = rssOf(p.child.pid);
      await run(HANDSHAKES - 200);
      const grown = rssOf(p.child.pid) - base;
      console.log(
        `held: ${HANDSHAKES} handshakes × 60 KB self-signed, proxy RSS grew ${
          (grown / 2 ** 20).toFixed(1)
        } MiB (bound ${BOUND_BYTES / 2 ** 20} MiB), ${app.connections()} reached the app`,
      );
      assert.equal(app.connections(), 0);
      assert.ok(grown < BOUND_BYTES, `proxy RSS grew ${grown} bytes`);
    } finally {
      p.child.kill("SIGTERM");
      await p.exited();
      await app.close();
      await agent.close();
    }
  },
});
