// TlsMaterial beyond verifyPeer's attack cases (material_verify_test.ts): readiness, the leaf it
// refuses to install, change notifications, the secure context, whether the leaf chains to the
// roots across a rotation, the identity refusals of verifyPeer, and leafExpiryMargin.
import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import type { CARootList, LeafCert } from "../../src/agent/types.ts";
import { ConnectCA } from "../../src/devagent/ca.ts";
import { CertificateError } from "../../src/trust/certificate.ts";
import { ChainError } from "../../src/trust/chain.ts";
import { leafExpiryMargin, type MaterialChange, TlsMaterial } from "../../src/trust/material.ts";
import { decodePem } from "../../src/trust/pem.ts";

function rootList(ca: ConnectCA): CARootList {
  return { ActiveRootID: ca.activeRoot.ID, TrustDomain: ca.trustDomain, Roots: ca.roots };
}

async function leafOf(
  ca: ConnectCA,
  service = "db",
  options: { ttlMs?: number; notBefore?: Date } = {},
): Promise<LeafCert> {
  return { ...(await ca.signLeaf(service, options)).cert, CreateIndex: 1, ModifyIndex: 1 };
}

function der(pem: string): Uint8Array {
  return decodePem(pem)[0]!.der;
}

/** Resolves once `leafTrusted` is `want` (it is computed in the background after a change). */
async function leafTrustedBecomes(m: TlsMaterial, want: boolean): Promise<void> {
  for (let i = 0; i < 200 && m.leafTrusted !== want; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(m.leafTrusted, want);
}

Deno.test("TlsMaterial is ready only once both a leaf and roots are set, in either order", async () => {
  const ca = await ConnectCA.create();
  for (const order of [["leaf", "roots"], ["roots", "leaf"]] as const) {
    const m = new TlsMaterial();
    let ready = false;
    void m.ready.then(() => (ready = true));
    assert.equal(m.isReady, false);
    assert.equal(m.secureContext, undefined);
    assert.throws(() => m.serverOptions(), /TLS material not loaded/);
    if (order[0] === "leaf") await m.setLeaf(await leafOf(ca));
    else await m.setRoots(rootList(ca));
    await Promise.resolve();
    assert.equal(m.isReady, false, order.join(" then "));
    assert.equal(ready, false);
    if (order[1] === "leaf") await m.setLeaf(await leafOf(ca));
    else await m.setRoots(rootList(ca));
    await m.ready;
    assert.equal(m.isReady, true);
    assert.notEqual(m.secureContext, undefined);
  }
});

Deno.test("TlsMaterial: serverOptions carry the leaf, its key and only the mesh roots", async () => {
  const ca = await ConnectCA.create();
  const m = new TlsMaterial({ minVersion: "TLSv1.3" });
  const leaf = await leafOf(ca);
  await m.setRoots(rootList(ca));
  await m.setLeaf(leaf);
  const o = m.serverOptions();
  assert.equal(o.cert, leaf.CertPEM);
  assert.equal(o.key, leaf.PrivateKeyPEM);
  assert.deepEqual(o.ca, ca.roots.map((r) => r.RootCert));
  assert.equal(o.minVersion, "TLSv1.3");
  const plain = new TlsMaterial();
  await plain.setRoots(rootList(ca));
  await plain.setLeaf(leaf);
  assert.equal(plain.serverOptions().minVersion, "TLSv1.2");
  assert.equal(m.trustDomain, ca.trustDomain.toLowerCase());
  assert.equal(m.leaf?.info.uris[0], leaf.ServiceURI);
  assert.equal(m.roots?.infos.length, 1);
});

Deno.test("TlsMaterial: listeners hear each change until they unsubscribe; the context is rebuilt", async () => {
  const ca = await ConnectCA.create();
  const m = new TlsMaterial();
  const heard: MaterialChange[] = [];
  const stop = m.onChange((c) => heard.push(c));
  await m.setRoots(rootList(ca));
  await m.setLeaf(await leafOf(ca));
  const first = m.secureContext;
  await m.setLeaf(await leafOf(ca));
  assert.notEqual(m.secureContext, first, "a new leaf, a new secure context");
  stop();
  await m.setRoots(rootList(ca));
  assert.deepEqual(heard, ["roots", "leaf", "leaf"]);
});

Deno.test("TlsMaterial.setLeaf refuses an expired leaf, a foreign key and garbage, keeping the current leaf", async () => {
  const ca = await ConnectCA.create();
  const m = new TlsMaterial();
  await m.setRoots(rootList(ca));
  const good = await leafOf(ca);
  await m.setLeaf(good);
  const other = await leafOf(ca, "web");
  const expired = await leafOf(ca, "db", {
    notBefore: new Date(Date.now() - 3 * 3600_000),
    ttlMs: 3600_000,
  });
  const bad: [string, LeafCert, (e: unknown) => boolean][] = [
    ["expired", expired, (e) => e instanceof ChainError && e.reason === "expired"],
    [
      "another leaf's key",
      { ...good, PrivateKeyPEM: other.PrivateKeyPEM },
      (e) => e instanceof CertificateError && /does not match the certificate/.test(e.message),
    ],
    [
      "a key that does not parse",
      {
        ...good,
        PrivateKeyPEM: "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
      },
      (e) => e instanceof CertificateError && /does not parse as a private key/.test(e.message),
    ],
    [
      "no key at all",
      { ...good, PrivateKeyPEM: "" },
      (e) => e instanceof CertificateError && /does not parse/.test(e.message),
    ],
    [
      "a certificate that does not parse",
      { ...good, CertPEM: "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n" },
      (e) => e instanceof CertificateError,
    ],
  ];
  for (const [what, leaf, check] of bad) {
    await assert.rejects(m.setLeaf(leaf), check, what);
    assert.equal(m.leaf?.cert, good, `${what}: the current leaf stays`);
  }
  // The refusal names the serial, for the log.
  await assert.rejects(m.setLeaf(expired), new RegExp(`leaf ${expired.SerialNumber} expired`));
});

Deno.test("TlsMaterial: leafExpired turns true when the clock passes the installed leaf's end", async () => {
  const ca = await ConnectCA.create();
  const m = new TlsMaterial();
  assert.equal(m.leafExpired, false, "no leaf: nothing has expired");
  const leaf = await leafOf(ca, "db", { ttlMs: 2 * 3600_000 });
  await m.setLeaf(leaf);
  assert.equal(m.leafExpired, false);
  const clock = FakeTimers.install({ now: Date.now(), toFake: ["Date"] });
  try {
    clock.setSystemTime(new Date(leaf.ValidBefore).getTime() + 1);
    assert.equal(m.leafExpired, true);
  } finally {
    clock.uninstall();
  }
});

Deno.test("TlsMaterial: leafChainsToRoots through a rotation (cross-signed root) and after a CA swap", async () => {
  const ca = await ConnectCA.create();
  const m = new TlsMaterial();
  assert.equal(await m.leafChainsToRoots(), false, "nothing loaded");
  assert.equal(m.leafTrusted, undefined);
  await m.setRoots(rootList(ca));
  await m.setLeaf(await leafOf(ca));
  assert.equal(await m.leafChainsToRoots(), true);
  await leafTrustedBecomes(m, true);
  // Rotation: the new root is trusted beside the old; our old leaf still chains.
  await ca.rotate();
  await m.setRoots(rootList(ca));
  assert.equal(await m.leafChainsToRoots(), true);
  // A leaf of the new root, with the cross-signed root in its CertPEM, chains to the old root
  // alone (peers that have not seen the rotation yet).
  const fresh = await leafOf(ca);
  const oldOnly = { ...rootList(ca), Roots: ca.roots.filter((r) => !r.Active) };
  const peer = new TlsMaterial();
  await peer.setRoots({ ...oldOnly, Roots: oldOnly.Roots.map((r) => ({ ...r })) });
  await peer.setLeaf(fresh);
  assert.equal(await peer.leafChainsToRoots(), true);
  // The old root pruned: the old leaf no longer chains; leafTrusted follows.
  ca.pruneInactive();
  await m.setRoots(rootList(ca));
  assert.equal(await m.leafChainsToRoots(), false);
  await leafTrustedBecomes(m, false);
  await m.setLeaf(fresh);
  await leafTrustedBecomes(m, true);
});

Deno.test("verifyPeer refuses no certificate, no roots and garbage before any identity check", async () => {
  const ca = await ConnectCA.create();
  const m = new TlsMaterial();
  for (const missing of [undefined, new Uint8Array()]) {
    const v = await m.verifyPeer(missing);
    assert.deepEqual(v, { ok: false, reason: "no_cert", detail: "no client certificate" });
  }
  const web = der((await leafOf(ca, "web")).CertPEM);
  const noRoots = await m.verifyPeer(web, [], "clientAuth");
  assert.equal(!noRoots.ok && noRoots.reason, "bad_chain");
  assert.match(!noRoots.ok ? noRoots.detail : "", /no roots loaded/);
  await m.setRoots(rootList(ca));
  const garbage = await m.verifyPeer(new Uint8Array([0x30, 0x03, 1, 2, 3]));
  assert.equal(!garbage.ok && garbage.reason, "bad_chain");
  assert.match(!garbage.ok ? garbage.detail : "", /certificate/);
  const garbageChain = await m.verifyPeer(web, [new Uint8Array([1, 2, 3])]);
  assert.equal(!garbageChain.ok && garbageChain.reason, "bad_chain");
});

Deno.test("verifyPeer wants a service identity in our trust domain", async () => {
  const ca = await ConnectCA.create();
  const m = new TlsMaterial();
  await m.setRoots(rootList(ca));
  await m.setLeaf(await leafOf(ca, "db"));
  const td = ca.trustDomain;
  const cases: [string, string | undefined, RegExp][] = [
    ["an agent identity", `spiffe://${td}/agent/client/dc/dc1/id/node-1`, /not a service/],
    ["the CA's own identity", `spiffe://${td}`, /not a service identity/],
    [
      "another trust domain",
      "spiffe://22222222-2222-2222-2222-222222222222.consul/ns/default/dc/dc1/svc/web",
      /not in trust domain/,
    ],
    ["not a SPIFFE ID", "https://web.example.com/", /spiffe/],
    ["no URI SAN", undefined, /no URI SAN/],
  ];
  for (const [what, uri, detail] of cases) {
    const issued = uri === undefined ? await ca.signIdentity("") : await ca.signIdentity(uri);
    const v = await m.verifyPeer(der(issued.certPem), [], "clientAuth");
    assert.equal(v.ok, false, what);
    assert.equal(!v.ok && v.reason, "bad_identity", what);
    assert.match(!v.ok ? v.detail : "", detail, what);
  }
  // The trust domain is compared without regard to case (hosts are case-insensitive).
  const upper = await ca.signIdentity(`spiffe://${td.toUpperCase()}/ns/default/dc/dc1/svc/web`);
  const v = await m.verifyPeer(der(upper.certPem), [], "clientAuth");
  assert.equal(v.ok, true);
  assert.equal(v.ok && v.id.service, "web");
});

Deno.test("verifyPeer remembers at most cacheSize acceptances, dropping the oldest", async () => {
  const ca = await ConnectCA.create();
  const m = new TlsMaterial({ cacheSize: 2 });
  await m.setRoots(rootList(ca));
  await m.setLeaf(await leafOf(ca));
  const peers = await Promise.all(
    ["a", "b", "c"].map(async (s) => der((await leafOf(ca, s)).CertPEM)),
  );
  const first = await Promise.all(peers.map((p) => m.verifyPeer(p, [], "clientAuth")));
  await new Promise((r) => setTimeout(r, 0)); // the cache settles after each verdict
  assert.ok(first.every((v) => v.ok));
  assert.notEqual(await m.verifyPeer(peers[0]!, [], "clientAuth"), first[0], "a was dropped");
  assert.equal(await m.verifyPeer(peers[2]!, [], "clientAuth"), first[2], "c is remembered");
  // The same certificate for another purpose is another entry.
  assert.notEqual(await m.verifyPeer(peers[2]!, [], "serverAuth"), first[2]);
});

Deno.test("leafExpiryMargin: the given margin, else 10 % of the lifetime, at most an hour", () => {
  const at = (h: number) => new Date(Date.UTC(2026, 0, 1) + h * 3600_000);
  const threeDays = { notBefore: at(0), notAfter: at(72) };
  assert.equal(leafExpiryMargin(threeDays), 3600_000, "7.2 h capped at 1 h");
  assert.equal(leafExpiryMargin({ notBefore: at(0), notAfter: at(2) }), 720_000, "10 % of 2 h");
  assert.equal(leafExpiryMargin(threeDays, 5000), 5000);
  assert.equal(leafExpiryMargin(threeDays, 0), 3600_000, "0 means the default");
  assert.equal(leafExpiryMargin(threeDays, -1), 3600_000, "a negative margin means the default");
});
