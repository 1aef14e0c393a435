import assert from "node:assert/strict";
import {
  ChainError,
  EKU,
  importEcPrivateKeyPem,
  parseCertificate,
  splitPemCertificates,
  verifyChain,
} from "../../mod.ts";
import { fixture } from "../_helpers.ts";

const TD = "11111111-2222-3333-4444-555555555555.consul";
const AT = new Date("2026-01-01T00:00:00Z"); // inside set A's validity (to 2028-03-20)

Deno.test("fixtures: Consul's roots parse with the IDs and key IDs Consul reports", async () => {
  const ca1 = await parseCertificate(fixture("ca1-ca-consul-internal.cert.pem"));
  assert.equal(ca1.sha1Fingerprint, "a6:26:83:3f:9c:2e:af:75:64:d4:35:df:b3:ca:c4:77:fe:04:67:3e");
  assert.equal(
    ca1.subjectKeyId,
    "ab:9c:d4:32:d8:84:12:ef:70:a8:f5:66:eb:3d:7b:6a:fd:83:fd:4a:f2:01:38:9f:22:61:15:93:3b:18:c2:a9",
  );
  assert.deepEqual(ca1.uris, [`spiffe://${TD}`]);
  assert.ok(ca1.isCA);
  assert.equal(ca1.serial, "01");
  // The Vault root's file ends with a stray "----" line, as in Consul's repository.
  const ca2 = await parseCertificate(fixture("ca2-ca-vault.cert.pem"));
  assert.equal(ca2.sha1Fingerprint, "ab:d8:51:ff:21:44:e8:0a:fd:c7:a0:8b:35:b2:4d:45:d7:54:e0:bf");
  assert.equal(ca2.serial, "02");
});

Deno.test("fixtures: leaves carry the SPIFFE URI, client+server EKU, and verify against their root", async () => {
  const ca1 = await parseCertificate(fixture("ca1-ca-consul-internal.cert.pem"));
  const ca2 = await parseCertificate(fixture("ca2-ca-vault.cert.pem"));
  for (const svc of ["web", "db", "cache"]) {
    const leaf = await parseCertificate(fixture(`ca1-svc-${svc}.cert.pem`));
    assert.equal(leaf.uris[0], `spiffe://${TD}/ns/default/dc/dc01/svc/${svc}`);
    assert.ok(leaf.extendedKeyUsages.includes(EKU.clientAuth));
    assert.ok(leaf.extendedKeyUsages.includes(EKU.serverAuth));
    assert.equal(leaf.authorityKeyId, ca1.subjectKeyId);
    await verifyChain(leaf, [], [ca1], { at: AT });
    await assert.rejects(verifyChain(leaf, [], [ca2], { at: AT }), ChainError);
  }
});

Deno.test("fixtures: a ca2 leaf verifies against ca1 through the cross-signed intermediate (rotation)", async () => {
  const ca1 = await parseCertificate(fixture("ca1-ca-consul-internal.cert.pem"));
  const xc = await parseCertificate(fixture("ca2-xc-by-ca1.cert.pem"));
  const db2 = await parseCertificate(fixture("ca2-svc-db.cert.pem"));
  await verifyChain(db2, [xc], [ca1], { at: AT });
  const err = await verifyChain(db2, [], [ca1], { at: AT }).catch((e) => e);
  assert.ok(err instanceof ChainError);
  assert.equal(err.reason, "no_issuer");
});

Deno.test("fixtures: expiry is checked at the given time", async () => {
  const ca1 = await parseCertificate(fixture("ca1-ca-consul-internal.cert.pem"));
  const web = await parseCertificate(fixture("ca1-svc-web.cert.pem"));
  const err = await verifyChain(web, [], [ca1], { at: new Date("2030-01-01") }).catch((e) => e);
  assert.equal(err.reason, "expired");
});

Deno.test("fixtures: key types and sizes are derived as Consul derives PrivateKeyType/Bits", async () => {
  const expect: [string, string, number][] = [
    ["cert-with-ec-256-key.pem", "ec", 256],
    ["cert-with-ec-384-key.pem", "ec", 384],
    ["cert-with-rsa-4096-key.pem", "rsa", 4096],
  ];
  for (const [file, type, bits] of expect) {
    const c = await parseCertificate(fixture(file));
    assert.equal(c.keyType, type, file);
    assert.equal(c.keyBits, bits, file);
  }
});

Deno.test("fixtures: bundles split into their certificates; pre-1.9 key IDs stay opaque", async () => {
  assert.equal(splitPemCertificates(fixture("pem-with-two-certs.pem")).length, 2);
  assert.equal(splitPemCertificates(fixture("pem-with-three-certs.pem")).length, 3);
  const root = await parseCertificate(fixture("testca2-root.cert.pem"));
  const leaf = await parseCertificate(fixture("testca2-svc-web-dc1.cert.pem"));
  assert.equal(leaf.uris[0], `spiffe://${TD}/ns/default/dc/dc1/svc/web`);
  assert.equal(leaf.authorityKeyId, root.subjectKeyId);
  assert.ok(root.subjectKeyId!.length > 95, "the colon-hex text is itself the key ID bytes");
  await verifyChain(leaf, [], [root], { at: AT });
});

Deno.test("fixtures: SEC1 keys import and sign", async () => {
  for (
    const file of ["ca1-svc-web.key.pem", "ca2-ca-vault.key.pem", "testca2-svc-web-dc1.key.pem"]
  ) {
    const { key, curve } = await importEcPrivateKeyPem(fixture(file));
    assert.equal(curve, "P-256");
    const sig = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      new Uint8Array(8),
    );
    assert.equal(sig.byteLength, 64);
  }
});

Deno.test("certificate parsing rejects garbage with a CertificateError", async () => {
  await assert.rejects(parseCertificate("no pem"), /no CERTIFICATE block/);
  await assert.rejects(parseCertificate(new Uint8Array([0x30, 0x03, 1, 2, 3])), /unparseable DER/);
  await assert.rejects(
    parseCertificate("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----"),
    /invalid base64/,
  );
});
