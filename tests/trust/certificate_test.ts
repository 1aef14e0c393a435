import assert from "node:assert/strict";
import {
  CertificateError,
  type CertificateInfo,
  EKU,
  parseCertificate,
  x509Of,
} from "../../src/trust/certificate.ts";
import { ChainError, verifyChain } from "../../src/trust/chain.ts";
import { importEcPrivateKeyPem } from "../../src/trust/keys.ts";
import { decodePem, encodePem, splitPemCertificates } from "../../src/trust/pem.ts";
import { x509 } from "../../src/trust/_x509.ts";
import { fixture, issue, leaf, OID, root, unknownExtension } from "./_corpus.ts";

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

Deno.test("parseCertificate reads DER as it reads PEM, and the first CERTIFICATE of a bundle", async () => {
  const pem = fixture("ca1-svc-web.cert.pem");
  const fromPem = await parseCertificate(pem);
  const fromDer = await parseCertificate(decodePem(pem)[0]!.der);
  const { der: _a, ...a } = fromPem;
  const { der: _b, ...b } = fromDer;
  assert.deepEqual(a, b);
  const bundle = encodePem("EC PRIVATE KEY", new Uint8Array([1])) + pem +
    fixture("ca1-ca-consul-internal.cert.pem");
  assert.equal((await parseCertificate(bundle)).sha1Fingerprint, fromPem.sha1Fingerprint);
});

Deno.test("parseCertificate: serials in Consul's minimal colon hex", async () => {
  const r = await root("Serial Root");
  for (
    const [hex, want] of [["00ff", "ff"], ["0001", "01"], ["7f00", "7f:00"], ["0abc", "0a:bc"]]
  ) {
    const keys = await crypto.subtle.generateKey(
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["sign", "verify"],
    ) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: hex,
      subject: "CN=s",
      issuer: r.cert.subjectName,
      notBefore: new Date("2026-01-01T00:00:00Z"),
      notAfter: new Date("2027-01-01T00:00:00Z"),
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      publicKey: keys.publicKey,
      signingKey: r.keys.privateKey,
    });
    assert.equal((await parseCertificate(new Uint8Array(cert.rawData))).serial, want, hex);
  }
});

Deno.test("parseCertificate: the extensions a path check reads", async () => {
  const KU = x509.KeyUsageFlags;
  const ca = await root("Ext Root", {
    pathLen: 2,
    keyUsage: KU.keyCertSign | KU.cRLSign,
    permitDns: ["example.com"],
    excludeDns: [".bad.example.com"],
    permitUri: ["td.consul"],
    permitRaw: [[0x87, 8, 10, 0, 0, 0, 255, 0, 0, 0]],
  });
  const info = await parseCertificate(ca.pem);
  assert.equal(info.isCA, true);
  assert.equal(info.hasBasicConstraints, true);
  assert.equal(info.pathLenConstraint, 2);
  assert.equal(info.keyUsage, KU.keyCertSign | KU.cRLSign);
  assert.deepEqual(info.extendedKeyUsages, []);
  assert.equal(info.subject, "CN=Ext Root");
  assert.equal(info.rawSubject, info.rawIssuer, "self-signed");
  assert.equal(info.signatureAlgorithm, "ECDSA-SHA-256");
  assert.deepEqual(info.unhandledCriticalExtensions, [], "nameConstraints is handled");
  assert.deepEqual(info.nameConstraints, {
    permittedDns: ["example.com"],
    excludedDns: [".bad.example.com"],
    permittedUri: ["td.consul"],
    excludedUri: [],
    unsupported: ["iPAddress"],
  });

  const l = await parseCertificate(
    (await leaf(ca, {
      ca: "absent",
      keyUsage: "absent",
      eku: [OID.serverAuth],
      dns: ["api.example.com"],
      extra: [unknownExtension(true), new x509.Extension("1.2.3.4", false, new Uint8Array([5, 0]))],
    })).pem,
  );
  assert.equal(l.isCA, false);
  assert.equal(l.hasBasicConstraints, false);
  assert.equal(l.keyUsage, undefined);
  assert.deepEqual(l.extendedKeyUsages, [EKU.serverAuth]);
  assert.deepEqual(l.dnsNames, ["api.example.com"]);
  assert.equal(l.authorityKeyId, info.subjectKeyId);
  assert.equal(l.rawIssuer, info.rawSubject);
  assert.deepEqual(l.unhandledCriticalExtensions, [OID.unknown], "only the unknown critical one");
  assert.equal(l.nameConstraints, undefined);

  const rsa = await parseCertificate((await issue({ key: "RSA-2048", hash: "SHA-1" })).pem);
  assert.equal(rsa.keyType, "rsa");
  assert.equal(rsa.keyBits, 2048);
  assert.match(rsa.signatureAlgorithm, /SHA-1$/);
  const ed = await parseCertificate((await issue({ key: "Ed25519" })).pem);
  assert.equal(ed.keyType, "ed25519");
});

Deno.test("parseCertificate: a damaged extension is a CertificateError, not a crash", async () => {
  const r = await root("Root");
  const bad = await leaf(r, {
    uris: [],
    extra: [new x509.Extension("2.5.29.17", true, new Uint8Array([1, 2, 3]))],
  });
  await assert.rejects(
    parseCertificate(bad.pem),
    (e) => e instanceof CertificateError && /^certificate: unparseable/.test(e.message),
  );
});

Deno.test("x509Of knows only infos made by parseCertificate", async () => {
  const info = await parseCertificate(fixture("ca1-svc-web.cert.pem"));
  assert.deepEqual(new Uint8Array(x509Of(info).rawData), info.der);
  const copy: CertificateInfo = { ...info };
  assert.throws(() => x509Of(copy), CertificateError);
});
