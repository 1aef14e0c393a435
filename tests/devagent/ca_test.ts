import assert from "node:assert/strict";
import { ConnectCA } from "../../src/devagent/ca.ts";
import { EKU, parseCertificate } from "../../src/trust/certificate.ts";
import { verifyChain } from "../../src/trust/chain.ts";
import { parseSpiffeId } from "../../src/trust/spiffe.ts";
import "reflect-metadata"; // @peculiar/x509 needs it loaded first
import * as x509 from "@peculiar/x509";
import { fixture, nth } from "../_helpers.ts";

Deno.test("test-double CA: roots and leaves have the fields and extensions Consul's built-in CA gives", async () => {
  const ca = await ConnectCA.create({ clusterId: "11111111-2222-3333-4444-555555555555" });
  const root = ca.activeRoot;
  const rootInfo = await parseCertificate(root.RootCert);
  assert.equal(root.ID, rootInfo.sha1Fingerprint);
  assert.equal(root.ID.length, 59);
  assert.equal(root.SigningKeyID, rootInfo.subjectKeyId);
  assert.equal(root.SigningKeyID.length, 95, "SHA-256 key id in colon-hex");
  assert.deepEqual(rootInfo.uris, ["spiffe://11111111-2222-3333-4444-555555555555.consul"]);
  assert.match(rootInfo.subject, /^CN=pri-[a-z0-9]{8}\.consul\.ca\.11111111\.consul$/);
  assert.equal(root.PrivateKeyType, "ec");
  assert.equal(root.PrivateKeyBits, 256);
  assert.equal(root.IntermediateCerts, null);
  assert.ok(root.RootCert.endsWith("-----END CERTIFICATE-----\n"));

  const issued = await ca.signLeaf("web");
  const leaf = await parseCertificate(issued.cert.CertPEM);
  assert.equal(leaf.subject, "", "current Consul leaves have no subject");
  assert.deepEqual(leaf.uris, [issued.cert.ServiceURI]);
  assert.equal(
    issued.cert.ServiceURI,
    "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web",
  );
  assert.ok(
    leaf.extendedKeyUsages.includes(EKU.clientAuth) &&
      leaf.extendedKeyUsages.includes(EKU.serverAuth),
  );
  assert.equal(leaf.authorityKeyId, root.SigningKeyID);
  assert.equal(leaf.isCA, false);
  // The subject is empty, so the SAN is critical (RFC 5280 §4.2.1.6), as in Consul's leaves.
  const san = new x509.X509Certificate(issued.cert.CertPEM)
    .getExtension(x509.SubjectAlternativeNameExtension);
  assert.equal(san?.critical, true);
  assert.match(issued.cert.SerialNumber, /^[0-9a-f]{2}(:[0-9a-f]{2})*$/);
  assert.equal(issued.cert.SerialNumber, leaf.serial);
  assert.match(issued.cert.PrivateKeyPEM, /^-----BEGIN EC PRIVATE KEY-----/);
  // NotBefore one minute in the past, whole seconds, 72 h lifetime.
  const lifetime = Date.parse(issued.cert.ValidBefore) - Date.parse(issued.cert.ValidAfter);
  assert.equal(lifetime, 72 * 3600_000);
  assert.ok(Date.now() - Date.parse(issued.cert.ValidAfter) >= 59_000);
  assert.match(issued.cert.ValidAfter, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  await verifyChain(leaf, [], [rootInfo]);
});

Deno.test("test-double CA: rotation keeps the old root, adds the new one, cross-signs it", async () => {
  const ca = await ConnectCA.create();
  const oldRoot = await parseCertificate(ca.activeRoot.RootCert);
  const oldLeaf = await parseCertificate((await ca.signLeaf("db")).cert.CertPEM);
  await ca.rotate();
  assert.deepEqual(ca.roots.map((r) => r.ID), ca.roots.map((r) => r.ID).sort(), "sorted by ID");
  const first = ca.roots.find((r) => !r.Active)!;
  const second = ca.activeRoot;
  assert.equal(first.ID, oldRoot.sha1Fingerprint);
  assert.equal(second.Active, true);
  assert.equal(second.IntermediateCerts!.length, 1);
  const cross = await parseCertificate(nth(second.IntermediateCerts!, 0, "cross-signed root"));
  const newRoot = await parseCertificate(second.RootCert);
  assert.equal(cross.subjectKeyId, newRoot.subjectKeyId);
  assert.equal(cross.authorityKeyId, oldRoot.subjectKeyId);
  assert.ok(cross.notAfter.getTime() - Date.now() <= 7 * 24 * 3600_000);
  // A new leaf's CertPEM carries the cross-signed cert, so old-root peers can verify it.
  const issued = await ca.signLeaf("web");
  assert.equal(issued.cert.CertPEM.match(/BEGIN CERTIFICATE/g)!.length, 2);
  const newLeaf = await parseCertificate(issued.cert.CertPEM);
  await verifyChain(newLeaf, [cross], [oldRoot]);
  await verifyChain(newLeaf, [], [newRoot]);
  await verifyChain(oldLeaf, [], [oldRoot, newRoot]);
  ca.pruneInactive();
  assert.equal(ca.roots.length, 1);
});

Deno.test("test-double CA: rotates to imported key material (Consul's fixture root ca2)", async () => {
  const ca = await ConnectCA.create({ clusterId: "11111111-2222-3333-4444-555555555555" });
  await ca.rotate({
    privateKeyPem: fixture("ca2-ca-vault.key.pem"),
    rootCertPem: fixture("ca2-ca-vault.cert.pem"),
  });
  assert.equal(ca.activeRoot.ID, "ab:d8:51:ff:21:44:e8:0a:fd:c7:a0:8b:35:b2:4d:45:d7:54:e0:bf");
  const leaf = await parseCertificate((await ca.signLeaf("web")).cert.CertPEM);
  await verifyChain(leaf, [], [await parseCertificate(fixture("ca2-ca-vault.cert.pem"))]);
  assert.equal(parseSpiffeId(nth(leaf.uris, 0, "URI SAN")).kind, "service");
});
