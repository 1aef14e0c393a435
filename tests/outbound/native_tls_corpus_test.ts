// The trust-path corpus (tests/trust/_corpus.ts) on the wire, for the serverAuth purpose: each
// case's leaf and intermediates presented by a real TLS server on loopback, each case's roots as
// the mesh roots, dialled by the node:tls leg (dialMesh) and by the native leg (dialMeshNative,
// falling back to node:tls where it asks to). The two legs must reach the same verdict on every
// case. Verdicts are taken at the real time (a TLS stack's clock cannot be faked), so this test
// compares the legs with each other; the hand-written verdicts at the corpus's fixed time are
// x509_differential_test.ts's business.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { dialMesh } from "../../src/outbound/dialer.ts";
import { dialMeshNative } from "../../src/outbound/native_tls.ts";
import { x509 } from "../../src/trust/_x509.ts";
import type { TlsMaterial } from "../../src/trust/material.ts";
import { buildCorpus, type CorpusCase } from "../trust/_corpus.ts";
import { issue, keyToPem, materialFor, rootList } from "./_native_fixtures.ts";

/** The corpus's trust domain (its leaves are web in dc1 there). */
const CORPUS_TD = "11111111-2222-3333-4444-555555555555.consul";

/**
 * The corpus cases carry certificates, not keys: the keys are caught as the corpus generates
 * them (by SPKI), and Consul's fixture leaves come with their key files.
 */
async function corpusWithKeys(): Promise<{ cases: CorpusCase[]; keyOf: Map<string, string> }> {
  const subtle = crypto.subtle;
  const generated: CryptoKeyPair[] = [];
  const original = subtle.generateKey;
  Object.defineProperty(subtle, "generateKey", {
    configurable: true,
    value: async function (...args: Parameters<typeof original>) {
      const made = await original.apply(subtle, args);
      if ("privateKey" in made) generated.push(made);
      return made;
    },
  });
  let cases: CorpusCase[];
  try {
    cases = await buildCorpus();
  } finally {
    delete (subtle as { generateKey?: unknown }).generateKey; // the prototype's again
  }
  const keyOf = new Map<string, string>();
  for (const pair of generated) {
    try {
      const spki = new Uint8Array(await subtle.exportKey("spki", pair.publicKey)).toBase64();
      keyOf.set(spki, await keyToPem(pair.privateKey));
    } catch {
      // a key kind the runtime cannot export: its cases have no server
    }
  }
  const dir = new URL("../../../shared/fixtures/consul/", import.meta.url);
  for await (const entry of Deno.readDir(dir)) {
    // A file holding a certificate and its key together (cert-with-ec-384-key.pem, …).
    const text = await Deno.readTextFile(new URL(entry.name, dir));
    const keyBlock = /-----BEGIN [A-Z ]*PRIVATE KEY-----[^]*?-----END [A-Z ]*PRIVATE KEY-----\n?/
      .exec(text)?.[0];
    if (keyBlock && text.includes("BEGIN CERTIFICATE")) keyOf.set(spkiOf(text), keyBlock);
    if (!entry.name.endsWith(".key.pem")) continue;
    const base = entry.name.slice(0, -".key.pem".length);
    let certPem: string;
    try {
      certPem = await Deno.readTextFile(new URL(`${base}.cert.pem`, dir));
    } catch {
      continue;
    }
    keyOf.set(spkiOf(certPem), await Deno.readTextFile(new URL(entry.name, dir)));
  }
  return { cases, keyOf };
}

function spkiOf(pem: string): string {
  const first = pem.slice(0, pem.indexOf("-----END CERTIFICATE-----") + 25);
  return new Uint8Array(new x509.X509Certificate(first).publicKey.rawData).toBase64();
}

/** A server presenting `chain` with `keyPem`; undefined when the TLS stack will not load them. */
async function presenter(chain: string, keyPem: string) {
  let server: tls.Server;
  try {
    server = tls.createServer({ cert: chain, key: keyPem, allowHalfOpen: true }, (s) => {
      s.on("error", () => {});
      s.end();
    });
  } catch {
    return undefined;
  }
  server.on("tlsClientError", () => {});
  const raw = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => {
    raw.add(s);
    s.on("close", () => raw.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      for (const s of raw) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

type Verdict = string;

async function nodeLeg(material: TlsMaterial, port: number): Promise<Verdict> {
  const r = await dialMesh(material, endpointOf(port), 3000);
  if (!r.ok) return r.failure.reason;
  r.connection.socket.destroy();
  return "ok";
}

async function nativeLeg(material: TlsMaterial, port: number) {
  const r = await dialMeshNative(material, endpointOf(port), { timeoutMs: 3000 });
  if (r.ok) {
    r.connection.conn.close();
    return { verdict: "ok", fallback: false };
  }
  if (r.fallback !== undefined) return { verdict: await nodeLeg(material, port), fallback: true };
  return { verdict: r.failure.reason, fallback: false };
}

function endpointOf(port: number) {
  return { address: "127.0.0.1", port, service: "web", id: "corpus" };
}

Deno.test("native leg: on every trust-path corpus case (serverAuth), the same verdict as the node:tls leg", async () => {
  const { cases, keyOf } = await corpusWithKeys();
  const clientRoot = await issue({ ca: true });
  const client = await issue({
    issuer: clientRoot,
    uri: `spiffe://${CORPUS_TD}/ns/default/dc/dc1/svc/client`,
  });
  const ours = { certPem: client.pem, keyPem: client.keyPem };
  const rows: { name: string; node: Verdict; native: Verdict; fallback: boolean }[] = [];
  const skipped: string[] = [];
  for (const c of cases) {
    const key = keyOf.get(spkiOf(c.leaf));
    if (!key) {
      skipped.push(`${c.name} (no key for its leaf)`);
      continue;
    }
    let material: TlsMaterial;
    try {
      material = await materialFor(rootList(c.roots.map((pem) => ({ pem })), CORPUS_TD), ours);
    } catch (err) {
      // Roots the material will not load are refused alike on both legs (nothing to dial).
      skipped.push(`${c.name} (roots not loadable: ${(err as Error).message})`);
      continue;
    }
    const server = await presenter([c.leaf, ...c.intermediates].join(""), key);
    if (!server) {
      skipped.push(`${c.name} (the TLS server will not present it)`);
      continue;
    }
    try {
      const node = await nodeLeg(material, server.port);
      const native = await nativeLeg(material, server.port);
      rows.push({ name: c.name, node, native: native.verdict, fallback: native.fallback });
    } finally {
      await server.close();
    }
  }
  const differ = rows.filter((r) => r.node !== r.native);
  const rescued = rows.filter((r) => r.fallback && r.native === "ok").map((r) => r.name);
  const accepted = rows.filter((r) => r.native === "ok");
  const byItself = rows.filter((r) => !r.fallback);
  console.log(
    `corpus on the wire: ${rows.length} cases, ${accepted.length} accepted by both legs, ` +
      `${byItself.length} decided by the native leg itself, ${
        rows.length - byItself.length
      } by node:tls on its request (accepted there: ${rescued.join(", ") || "none"}); ` +
      `${skipped.length} skipped` +
      (skipped.length ? `:\n  ${skipped.join("\n  ")}` : ""),
  );
  assert.deepEqual(differ, [], "the legs disagree");
  assert.ok(rows.length >= cases.length - 12, `${skipped.length} of ${cases.length} skipped`);
  // The test can fail: the plain case is accepted while its leaf is valid, on both legs, and by
  // the native leg on its own.
  const plain = cases.find((c) => c.name === "valid/leaf-root")!;
  const notAfter = new x509.X509Certificate(plain.leaf).notAfter.getTime();
  if (Date.now() < notAfter) {
    const row = rows.find((r) => r.name === "valid/leaf-root");
    assert.deepEqual(row, { name: "valid/leaf-root", node: "ok", native: "ok", fallback: false });
  } else {
    console.error("# the corpus's leaves have expired: every case is a refusal on both legs");
  }
});
