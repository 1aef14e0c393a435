// TlsMaterial.verifyPeer: the attacks it must refuse and how it remembers verdicts (keyed by
// the whole presented chain and purpose, acceptances only, until the path's earliest expiry).
import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import { ConnectCA } from "../../src/devagent/ca.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import type { CARootList } from "../../src/agent/types.ts";
import { x509 } from "../../src/trust/_x509.ts";
import { importEcPrivateKeyPem } from "../../src/trust/keys.ts";
import { decodePem } from "../../src/trust/pem.ts";

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

function der(pem: string): Uint8Array {
  return decodePem(pem)[0]!.der;
}

function rootList(ca: ConnectCA): CARootList {
  return {
    ActiveRootID: ca.activeRoot.ID,
    TrustDomain: ca.trustDomain,
    Roots: ca.roots,
    QueryMeta: undefined,
  } as unknown as CARootList;
}

async function material(ca: ConnectCA, service = "db"): Promise<TlsMaterial> {
  const m = new TlsMaterial();
  await m.setRoots(rootList(ca));
  await m.setLeaf({ ...(await ca.signLeaf(service)).cert, CreateIndex: 1, ModifyIndex: 1 });
  return m;
}

/** A certificate for `uri`, signed with `signer`'s key (the attacker holds a leaf key). */
async function forge(
  uri: string,
  signer: { key: CryptoKey; cert?: x509.X509Certificate },
  extra: { notAfter?: Date; ca?: boolean; padBytes?: number } = {},
) {
  const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]) as CryptoKeyPair;
  const extensions: x509.Extension[] = [
    new x509.SubjectAlternativeNameExtension([{ type: "url", value: uri }], true),
    new x509.ExtendedKeyUsageExtension([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]),
  ];
  if (extra.ca) extensions.push(new x509.BasicConstraintsExtension(true, undefined, true));
  if (extra.padBytes) {
    extensions.push(
      new x509.Extension("1.3.6.1.4.1.99999.1", false, new Uint8Array(extra.padBytes)),
    );
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "0" + crypto.getRandomValues(new Uint8Array(8)).toHex(),
    subject: "",
    issuer: signer.cert?.subject ?? "",
    notBefore: new Date(Date.now() - 60_000),
    notAfter: extra.notAfter ?? new Date(Date.now() + 3600_000),
    signingAlgorithm: SIGN,
    publicKey: keys.publicKey,
    signingKey: signer.key ?? keys.privateKey,
    extensions,
  });
  return { cert, key: keys.privateKey, der: new Uint8Array(cert.rawData) };
}

async function leafKey(pem: string): Promise<CryptoKey> {
  return (await importEcPrivateKeyPem(pem)).key;
}

Deno.test("verifyPeer: a leaf signed with another service's leaf key is refused as bad_chain", async () => {
  const ca = await ConnectCA.create();
  const m = await material(ca);
  const web = (await ca.signLeaf("web")).cert;
  const webCert = new x509.X509Certificate(web.CertPEM);
  const admin = await forge(`spiffe://${ca.trustDomain}/ns/default/dc/dc1/svc/admin`, {
    key: await leafKey(web.PrivateKeyPEM),
    cert: webCert,
  });
  const v = await m.verifyPeer(admin.der, [der(web.CertPEM)], "clientAuth");
  assert.equal(v.ok, false);
  assert.equal(!v.ok && v.reason, "bad_chain");
  assert.match(!v.ok ? v.detail : "", /not a CA/);
  // The real leaf passes, so the refusal is about the forgery, not the setup.
  assert.equal((await m.verifyPeer(der(web.CertPEM), [], "clientAuth")).ok, true);
});

Deno.test("verifyPeer: a peer in another admin partition is refused as bad_identity", async () => {
  const ca = await ConnectCA.create();
  const m = await material(ca);
  const uri = (ap: string) => `spiffe://${ca.trustDomain}${ap}/ns/default/dc/dc1/svc/web`;
  const foreign = await ca.signIdentity(uri("/ap/finance"));
  const v = await m.verifyPeer(der(foreign.certPem), [], "clientAuth");
  assert.equal(!v.ok && v.reason, "bad_identity");
  assert.match(!v.ok ? v.detail : "", /partition/);
  // The same identity without /ap/ is the default partition: ours.
  const ours = await ca.signIdentity(uri(""));
  assert.equal((await m.verifyPeer(der(ours.certPem), [], "clientAuth")).ok, true);
});

Deno.test("verifyPeer: verdicts are keyed by the whole chain; refusals are not remembered", async () => {
  const ca = await ConnectCA.create();
  const m = await material(ca);
  const web = (await ca.signLeaf("web")).cert;
  const leaf = der(web.CertPEM);
  const a = await m.verifyPeer(leaf, [], "clientAuth");
  const b = await m.verifyPeer(leaf, [], "clientAuth");
  assert.equal(a, b, "the same chain and purpose reuse one verdict");
  // The same leaf with something else presented beside it is a different key: not reused.
  const stranger = await forge("spiffe://x.consul/ns/default/dc/dc1/svc/x", {
    key: (await crypto.subtle.generateKey(EC, false, ["sign"]) as CryptoKeyPair).privateKey,
  });
  const c = await m.verifyPeer(leaf, [stranger.der], "clientAuth");
  assert.notEqual(c, a);
  assert.equal(c.ok, true, "an extra stranger in the chain does not spoil a valid path");
  // A refusal is computed again each time (no entry per stranger's certificate).
  const r1 = await m.verifyPeer(stranger.der, [], "clientAuth");
  const r2 = await m.verifyPeer(stranger.der, [], "clientAuth");
  assert.equal(r1.ok, false);
  assert.notEqual(r1, r2);
});

Deno.test("verifyPeer: a remembered acceptance ends at the earliest expiry in its path", async () => {
  const ca = await ConnectCA.create();
  const m = await material(ca);
  const web = (await ca.signLeaf("web", { ttlMs: 2 * 3600_000 })).cert;
  const leaf = der(web.CertPEM);
  const first = await m.verifyPeer(leaf, [], "clientAuth");
  assert.equal(first.ok, true);
  assert.equal(first.ok && first.validUntil, new Date(web.ValidBefore).getTime());
  assert.equal(await m.verifyPeer(leaf, [], "clientAuth"), first, "remembered while valid");
  // Only Date is faked: the check's own promises and crypto run as usual.
  const clock = FakeTimers.install({ now: Date.now(), toFake: ["Date"] });
  try {
    clock.setSystemTime(new Date(web.ValidBefore).getTime() + 1000);
    const later = await m.verifyPeer(leaf, [], "clientAuth");
    assert.equal(later.ok, false, "an expired leaf is refused although it was accepted before");
    assert.equal(!later.ok && later.reason, "bad_chain");
    assert.match(!later.ok ? later.detail : "", /expired/);
  } finally {
    clock.uninstall();
  }
});

Deno.test("verifyPeer: a roots change forgets acceptances (a leaf of a removed root is refused)", async () => {
  const ca = await ConnectCA.create();
  const m = await material(ca);
  const web = der((await ca.signLeaf("web")).cert.CertPEM);
  assert.equal((await m.verifyPeer(web, [], "clientAuth")).ok, true);
  const other = await ConnectCA.create({ clusterId: ca.clusterId });
  await m.setRoots(rootList(other));
  const v = await m.verifyPeer(web, [], "clientAuth");
  assert.equal(v.ok, false);
});

Deno.test("verifyPeer: 2,000 different 60 KB self-signed certificates leave memory bounded", async () => {
  const ca = await ConnectCA.create();
  const m = await material(ca);
  const key = await crypto.subtle.generateKey(EC, false, ["sign", "verify"]) as CryptoKeyPair;
  const template = await forge(`spiffe://${ca.trustDomain}/ns/default/dc/dc1/svc/db`, {
    key: key.privateKey,
  }, { padBytes: 60 * 1024 });
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
  // Backing stores of ArrayBuffers are freed after a collection and a tick: collect a few times.
  const held = async () => {
    for (let i = 0; i < 4; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    const { heapUsed, external } = Deno.memoryUsage();
    return heapUsed + external;
  };
  // 120 MB offered in all; an entry per certificate would keep it. Each copy differs in its
  // padding (so no two are the same certificate), and none is signed by a mesh root.
  const bound = 8 * 1024 * 1024;
  const base = await held();
  for (let i = 0; i < 2000; i++) {
    const der = template.der.slice();
    new DataView(der.buffer).setUint32(der.length - 1024, i);
    const v = await m.verifyPeer(der, [], "clientAuth");
    assert.equal(v.ok, false);
  }
  const grown = (await held()) - base;
  console.log(`2000 × 60 KB refused: heap + external grew ${(grown / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(grown < bound, `memory grew ${grown} bytes (bound ${bound})`);
});
